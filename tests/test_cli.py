"""Tests of the command line. ``progress`` and the drift check run as ``python -m labsupport``
like a learner or CI would; the other build-notebooks cases call ``main`` in-process, because
every new process pays about 2 s to import nbformat.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from labsupport.cli import main


def run_labsupport(*arguments: str, cwd, data_dir) -> subprocess.CompletedProcess:
    environment = {**os.environ, "LABSUPPORT_DATA_DIR": str(data_dir)}
    return subprocess.run([sys.executable, "-m", "labsupport", *arguments], cwd=cwd, env=environment,
                          capture_output=True, text=True, timeout=120)


@pytest.fixture
def data_dir(tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    return folder


@pytest.fixture
def repo(tmp_path):
    """A repository copy whose student notebook is in sync with its one solution notebook."""
    root = tmp_path / "repo"
    (root / "solutions").mkdir(parents=True)
    notebook = new_notebook(cells=[
        new_markdown_cell("# Demo"),
        new_code_cell("### BEGIN SOLUTION\nanswer = 42\n### END SOLUTION"),
    ])
    nbformat.write(notebook, root / "solutions" / "01_demo.ipynb")
    return root


def test_progress_prints_the_checklist_with_recorded_passes(tmp_path, data_dir):
    from labsupport.progress import CHECKLIST

    providers = next(item.evidence for item in CHECKLIST if "execution providers" in item.text)
    passed = {problem: {"count": 1} for problem in providers}
    (data_dir / "progress.json").write_text(json.dumps({"version": 1, "passed": passed}))
    completed = run_labsupport("progress", cwd=tmp_path, data_dir=data_dir)
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.startswith("Self-assessment checklist")
    assert "[x] Deploy ONNX models with different execution providers" in completed.stdout
    assert "[ ] Export a PyTorch model to ONNX with dynamic shapes" in completed.stdout


def test_progress_reset_removes_the_progress_file(tmp_path, data_dir):
    (data_dir / "progress.json").write_text('{"version": 1, "passed": {}}')
    completed = run_labsupport("progress", "--reset", cwd=tmp_path, data_dir=data_dir)
    assert completed.returncode == 0, completed.stderr
    assert not (data_dir / "progress.json").exists()
    assert "Progress forgotten" in completed.stdout


def test_build_notebooks_writes_the_student_copies_then_finds_no_drift(repo, monkeypatch, capsys):
    monkeypatch.chdir(repo)
    assert main(["build-notebooks"]) == 0
    assert "wrote notebooks/01_demo.ipynb" in capsys.readouterr().out
    student = nbformat.read(repo / "notebooks" / "01_demo.ipynb", as_version=4)
    assert student.cells[1].source == "# YOUR CODE HERE\nanswer = ____"
    assert main(["build-notebooks", "--check"]) == 0
    assert "exactly what the generator makes" in capsys.readouterr().out
    assert main(["build-notebooks"]) == 0
    assert "Everything was already up to date." in capsys.readouterr().out


def test_build_notebooks_check_reports_drift_and_the_fix(repo, data_dir, monkeypatch):
    monkeypatch.chdir(repo)
    assert main(["build-notebooks"]) == 0
    student_path = repo / "notebooks" / "01_demo.ipynb"
    student_path.write_text(student_path.read_text().replace("answer = ____", "answer = 42"))
    completed = run_labsupport("build-notebooks", "--check", cwd=repo, data_dir=data_dir)
    assert completed.returncode == 1
    assert "drift: notebooks/01_demo.ipynb differs from what the generator makes" in completed.stderr
    assert "`python -m labsupport build-notebooks`" in completed.stderr
    assert "answer = 42" in student_path.read_text()


def test_build_notebooks_rejects_a_malformed_region_naming_notebook_and_cell(repo, monkeypatch, capsys):
    broken = nbformat.read(repo / "solutions" / "01_demo.ipynb", as_version=4)
    broken.cells[1].source = "### BEGIN SOLUTION\nanswer = 42"
    nbformat.write(broken, repo / "solutions" / "01_demo.ipynb")
    monkeypatch.chdir(repo)
    assert main(["build-notebooks", "--check"]) == 2
    stderr = capsys.readouterr().err
    assert stderr.startswith("error: 01_demo.ipynb, cell 2 ")
    assert "is never closed" in stderr


def test_an_unknown_command_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exit_status:
        main(["teleport"])
    assert exit_status.value.code == 2
    assert "invalid choice" in capsys.readouterr().err
