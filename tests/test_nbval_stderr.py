"""The stderr rule of the notebook runs (tests/nbval_stderr.py), on small notebooks run by real nbval."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from tests.nbval_stderr import STDERR_TAG, stderr_problem

ROOT = Path(__file__).resolve().parent.parent


def _run_nbval(tmp_path: Path, cells: list[tuple[str, list[str]]], *,
               solutions_run: bool) -> subprocess.CompletedProcess:
    notebook = nbformat.v4.new_notebook()
    notebook.metadata["kernelspec"] = {"display_name": "Python 3", "language": "python", "name": "python3"}
    notebook.cells = [nbformat.v4.new_code_cell(source, metadata={"tags": tags}) for source, tags in cells]
    path = tmp_path / "lab.ipynb"
    nbformat.write(notebook, str(path))
    env = {key: value for key, value in os.environ.items() if key != "LABSUPPORT_EXPECT_SOLVED"}
    if solutions_run:
        env["LABSUPPORT_EXPECT_SOLVED"] = "1"
    return subprocess.run([sys.executable, "-m", "pytest", "--nbval-lax", "--nbval-current-env",
                           "-p", "tests.nbval_stderr", "-q", "-p", "no:cacheprovider", str(path)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


def test_untagged_stderr_fails_and_shows_what_was_printed_while_tagged_stderr_passes(tmp_path):
    completed = _run_nbval(tmp_path, [
        ("import sys; print('loud library notice', file=sys.stderr)", []),
        ("import sys; print('explained notice', file=sys.stderr)", [STDERR_TAG]),
        ("print('to stdout is fine')", []),
    ], solutions_run=False)
    assert completed.returncode == 1, completed.stdout
    assert "1 failed, 2 passed" in completed.stdout
    assert "Cell 0" in completed.stdout and "loud library notice" in completed.stdout
    assert f"tag the cell '{STDERR_TAG}'" in completed.stdout


def test_native_code_writing_to_file_descriptor_2_is_caught_as_jupyterlab_would_show_it(tmp_path):
    completed = _run_nbval(tmp_path, [("import os; os.write(2, b'from C++ logging\\n')", [])], solutions_run=False)
    assert completed.returncode == 1 and "from C++ logging" in completed.stdout


def test_a_stale_tag_fails_the_solutions_run_but_not_the_student_run(tmp_path):
    quiet_but_tagged = [("x = 1", [STDERR_TAG])]
    assert _run_nbval(tmp_path, quiet_but_tagged, solutions_run=False).returncode == 0
    completed = _run_nbval(tmp_path, quiet_but_tagged, solutions_run=True)
    assert completed.returncode == 1 and "wrote nothing to stderr" in completed.stdout


@pytest.mark.parametrize("tags, stderr, solutions_run, fragment", [
    ([], "", True, None),
    ([], "warning\n", False, "not tagged"),
    ([STDERR_TAG], "warning\n", True, None),
    ([STDERR_TAG], "", True, "wrote nothing"),
    ([STDERR_TAG], "", False, None),
])
def test_the_rule(tags, stderr, solutions_run, fragment):
    problem = stderr_problem(tags, stderr, solutions_run=solutions_run)
    assert (problem is None) if fragment is None else (fragment in problem)


def test_native_stderr_arriving_after_its_cell_is_blamed_on_that_cell_not_the_next(tmp_path):
    late_writer = ("import os, threading, time\n"
                   "threading.Thread(target=lambda: (time.sleep(0.005), os.write(2, b'late native line\\n'))).start()")
    completed = _run_nbval(tmp_path, [(late_writer, [STDERR_TAG]), ("x = 1", [])], solutions_run=True)
    assert completed.returncode == 0, completed.stdout
