"""Notebook hygiene: the two folders are in sync, clean, well-formed and fully checked."""

import ast
import importlib
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from labsupport.checking import ThoughtExperiment
from labsupport.exercises import LAB_MODULES
from labsupport.notebook_build import BEGIN, END, render_student

ROOT = Path(__file__).resolve().parent.parent
SOLUTIONS = sorted((ROOT / "solutions").glob("*.ipynb"))
STUDENTS = sorted((ROOT / "notebooks").glob("*.ipynb"))
LABS = {module: importlib.import_module(f"labsupport.exercises.{module}") for module in LAB_MODULES}


def _read(path: Path) -> nbformat.NotebookNode:
    return nbformat.read(str(path), as_version=4)


def _code(notebook: nbformat.NotebookNode) -> str:
    return "\n".join(cell.source for cell in notebook.cells if cell.cell_type == "code")


def test_generator_reports_no_drift():
    completed = subprocess.run([sys.executable, "-m", "labsupport", "build-notebooks", "--check"],
                               cwd=ROOT, capture_output=True, text=True)
    assert completed.returncode == 0, completed.stderr + "\nRun `python -m labsupport build-notebooks` and commit."


def test_both_folders_hold_the_same_notebook_names():
    assert [path.name for path in STUDENTS] == [path.name for path in SOLUTIONS]
    assert SOLUTIONS, "no solution notebooks found"


@pytest.mark.parametrize("path", SOLUTIONS, ids=lambda path: path.name)
def test_notebook_name_is_number_and_snake_topic(path):
    assert re.fullmatch(r"\d\d_[a-z0-9_]+\.ipynb", path.name)


@pytest.mark.parametrize("path", SOLUTIONS + STUDENTS, ids=lambda path: f"{path.parent.name}/{path.name}")
def test_no_outputs_or_execution_counts_are_committed(path):
    for cell in _read(path).cells:
        if cell.cell_type == "code":
            assert not cell.outputs and cell.execution_count is None, f"{path}: cell {cell.id} has outputs"


@pytest.mark.parametrize("path", STUDENTS, ids=lambda path: path.name)
def test_no_solution_is_left_in_student_notebooks(path):
    code = _code(_read(path))
    assert BEGIN not in code and END not in code
    assert not re.search(r"#\s*SOLUTION\s*$", code, flags=re.MULTILINE)
    render_student(_read(path), path.name)  # a near-miss marker (###BEGIN SOLUTION, # solution…) raises BuildError


@pytest.mark.parametrize("path", SOLUTIONS, ids=lambda path: path.name)
def test_rendering_is_idempotent(path):
    once = render_student(_read(path), path.name)
    twice = render_student(nbformat.from_dict(once), path.name)
    assert nbformat.writes(once) == nbformat.writes(twice)


@pytest.mark.parametrize("path", SOLUTIONS, ids=lambda path: path.name)
def test_every_lab_has_its_exercise_module_with_the_same_name(path):
    labs = {module.LAB for module in LABS.values()}
    assert path.stem in labs, f"no labsupport.exercises module declares LAB = {path.stem!r}"


@pytest.mark.parametrize("path", SOLUTIONS, ids=lambda path: path.name)
def test_lab_has_title_learning_goals_summary_and_review_questions(path):
    markdown = "\n".join(cell.source for cell in _read(path).cells if cell.cell_type == "markdown")
    assert re.match(r"# Lab \d\d — ", markdown), "the first cell starts with '# Lab NN — title'"
    for heading in ("**You will learn**", "**Self-assessment items this lab evidences:**", "## Summary",
                    "## Check yourself"):
        assert heading in markdown, f"{path.name} lacks {heading}"


@pytest.mark.parametrize("module", LABS.values(), ids=lambda module: module.LAB)
def test_every_exercise_is_bound_and_checked_in_its_solution_notebook(module):
    notebook = _read(ROOT / "solutions" / f"{module.LAB}.ipynb")
    code = _code(notebook)
    first_code = next(cell.source for cell in notebook.cells if cell.cell_type == "code")
    assert re.search(rf"^{module.__name__.rsplit('.', 1)[1]}\.bind\(globals\(\)\)$", first_code, flags=re.MULTILINE), (
        f"{module.LAB}: the first code cell binds the exercises with `labNN.bind(globals())` on a line of its own")
    ast.parse(code)
    for view in module.bind({}):
        call = "solution" if isinstance(view.problem, ThoughtExperiment) else "check"
        assert re.search(rf"^{view.name}\.{call}\(\)", code, flags=re.MULTILINE), (
            f"{module.LAB}: {view.name}.{call}() never runs")


def test_readme_lists_every_lab():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for path in SOLUTIONS:
        assert f"notebooks/{path.name}" in readme, f"README's lab table lacks {path.name}"
