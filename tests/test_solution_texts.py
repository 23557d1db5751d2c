"""A solution is written twice — in the notebook's solution region and in the problem's ``solution``
text that ``qN.solution()`` shows — and this test proves the two cannot drift.

For every checked exercise, the cells between the previous ``check()`` and this one that hold a
solution region (or a ``# SOLUTION`` line) are compared statement by statement, as parsed
code (formatting and comments do not matter):

* every statement of the region is in the problem's ``solution`` — the learner is shown what the
  notebook does;
* every statement of the problem's ``solution`` is in the notebook before the check — the answer
  shown runs in the notebook as it stands (context such as a signature defined a few cells up is
  allowed).
"""

from __future__ import annotations

import ast
import importlib
import re
import textwrap
from collections import Counter
from pathlib import Path

import nbformat
import pytest

from labsupport.checking import ThoughtExperiment
from labsupport.exercises import LAB_MODULES
from labsupport.notebook_build import BEGIN, END

ROOT = Path(__file__).resolve().parent.parent
_COMPOUND = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.If, ast.For, ast.While, ast.With, ast.Try)
_ONE_LINE = re.compile(r"^(?P<code>.*?)\s*#\s*SOLUTION\s*$")
_CHECK_CALL = re.compile(r"\bq\d+\.check\(\)")


def simple_statements(code: str) -> Counter:
    """Every simple statement (assignment, call, return…) of ``code``, nested ones included, as parsed."""
    code = textwrap.dedent(code)
    try:
        tree = ast.parse(code)
    except SyntaxError:  # a region inside a function body: parse it as one
        tree = ast.parse("def _region():\n" + textwrap.indent(code, "    "))
    return Counter(ast.unparse(node) for node in ast.walk(tree) if isinstance(node, ast.stmt)
                   and not isinstance(node, _COMPOUND))


def solution_regions(source: str) -> list[str]:
    """The code inside a cell's solution regions and one-line solutions."""
    regions, region = [], None
    for line in source.split("\n"):
        if line.strip() == BEGIN:
            region = []
        elif line.strip() == END:
            regions.append(textwrap.dedent("\n".join(region)))
            region = None
        elif region is not None:
            region.append(line)
        elif match := _ONE_LINE.match(line):
            regions.append(match.group("code").strip())
    return regions


def _unmarked(source: str) -> str:
    lines = [line for line in source.split("\n") if line.strip() not in (BEGIN, END)]
    return "\n".join(_ONE_LINE.sub(r"\g<code>", line) for line in lines)


def _cases():
    for module_name in LAB_MODULES:
        module = importlib.import_module(f"labsupport.exercises.{module_name}")
        for view in module.bind({}):
            if not isinstance(view.problem, ThoughtExperiment):
                yield pytest.param(module, view, id=f"{module.LAB}.{view.name}.{type(view.problem).__name__}")


@pytest.mark.parametrize("module, view", list(_cases()))
def test_the_notebook_region_and_the_declared_solution_are_the_same_code(module, view):
    cells = nbformat.read(str(ROOT / "solutions" / f"{module.LAB}.ipynb"), as_version=4).cells
    check_index = next((index for index, cell in enumerate(cells)
                        if cell.cell_type == "code" and f"{view.name}.check()" in cell.source), None)
    assert check_index is not None, f"{module.LAB} has no cell calling {view.name}.check()"
    solution_cells = []
    for cell in reversed(cells[:check_index]):
        if cell.cell_type != "code":
            continue
        if _CHECK_CALL.search(cell.source):
            break
        if solution_regions(cell.source):
            solution_cells.insert(0, cell)
    assert solution_cells, f"{module.LAB} {view.name}: no solution region between the previous check and this one"
    region = sum((simple_statements(code) for cell in solution_cells for code in solution_regions(cell.source)),
                 Counter())
    declared = simple_statements(view.problem.solution)
    notebook = sum((simple_statements(_unmarked(cell.source)) for cell in cells[:check_index]
                    if cell.cell_type == "code"), Counter())
    name = f"{module.LAB} {view.name} ({type(view.problem).__name__})"
    missing = region - declared
    assert not missing, f"{name}: the notebook's region does what its declared solution lacks: " + "; ".join(missing)
    not_run = declared - notebook
    assert not not_run, f"{name}: the declared solution has statement(s) the notebook never runs: " + "; ".join(not_run)
