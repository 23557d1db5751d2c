"""A wrong answer in a solution region makes the strict notebook run fail at that check.

This runs a real kernel on a real lab (00, the quickest) with one answer made wrong, the
way `make test` runs solutions/.
"""

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

ROOT = Path(__file__).resolve().parent.parent


def _run(notebook, tmp_path, monkeypatch, **environment):
    monkeypatch.setenv("LABSUPPORT_DATA_DIR", str(tmp_path / "progress"))
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    client = NotebookClient(notebook, timeout=120, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}})
    client.execute()


def _lab00_with_wrong_core_count():
    notebook = nbformat.read(str(ROOT / "solutions" / "00_setup.ipynb"), as_version=4)
    cell = next(cell for cell in notebook.cells if "usable_cores =" in cell.source)
    cell.source = "usable_cores = os.cpu_count() + 1  # a wrong answer"
    return notebook


def test_wrong_solution_fails_the_strict_run_at_its_check(tmp_path, monkeypatch):
    with pytest.raises(CellExecutionError) as failure:
        _run(_lab00_with_wrong_core_count(), tmp_path, monkeypatch, LABSUPPORT_STRICT="1")
    assert "IncorrectAnswerError" in str(failure.value)
    assert "q2.check()" in str(failure.value)


def test_wrong_answer_in_a_student_notebook_only_reports(tmp_path, monkeypatch):
    monkeypatch.delenv("LABSUPPORT_STRICT", raising=False)
    notebook = _lab00_with_wrong_core_count()
    _run(notebook, tmp_path, monkeypatch)
    check_cell = next(cell for cell in notebook.cells if cell.source.strip() == "q2.check()")
    shown = check_cell.outputs[0]["data"]["text/markdown"]
    assert "Incorrect" in shown and "too large" in shown
