"""The learner's workspace: seeded from notebooks/, never overwriting a learner's notebook."""

import subprocess
import sys
from pathlib import Path

from labsupport.workspace import seed_workspace

ROOT = Path(__file__).resolve().parent.parent


def test_seeding_copies_missing_notebooks_and_keeps_the_learners(tmp_path):
    source = tmp_path / "notebooks"
    source.mkdir()
    (source / "00_setup.ipynb").write_text("course 00")
    (source / "01_interop.ipynb").write_text("course 01")
    workspace = tmp_path / "workspace"
    workspace.mkdir()
    (workspace / "00_setup.ipynb").write_text("my answers")
    report = seed_workspace(source, workspace)
    assert report.copied == ["01_interop.ipynb"] and report.kept == ["00_setup.ipynb"]
    assert (workspace / "00_setup.ipynb").read_text() == "my answers"
    assert report.updated_upstream == ["00_setup.ipynb"]
    assert "pristine versions are in notebooks/" in report.to_text(workspace)
    again = seed_workspace(source, workspace)
    assert again.copied == [] and again.kept == ["00_setup.ipynb", "01_interop.ipynb"]


def test_a_file_in_place_of_the_workspace_is_one_line_and_exit_2(tmp_path):
    blocked = tmp_path / "workspace"
    blocked.write_text("not a folder")
    completed = subprocess.run([sys.executable, "-m", "labsupport", "seed-workspace", "--workspace", str(blocked)],
                               cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert completed.returncode == 2 and completed.stdout == ""
    assert (completed.stderr.count("\n") == 1
            and completed.stderr.startswith(f"error: cannot prepare the workspace {blocked}"))
