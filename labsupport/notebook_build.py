"""The generator: student notebooks are rendered from the solution notebooks.

Used by instructors (``python -m labsupport build-notebooks``), described in the README.
``solutions/NN_topic.ipynb`` is the single source of truth; ``notebooks/NN_topic.ipynb`` is
made from it:

* a ``### BEGIN SOLUTION`` … ``### END SOLUTION`` region becomes ``# YOUR CODE HERE``
  followed by ``name = ____`` for every name the region assigns at its top level, or by
  ``return ____`` alone if it returns (a function body), at the region's indentation, so
  the untouched notebook still runs;
* a line ``x = expr  # SOLUTION`` becomes ``x = ____``;
* cells tagged ``solution-only`` are dropped;
* outputs and execution counts are stripped and metadata reduced to the kernelspec and
  language info (notebook) and tags (cell), in both folders.

Nested, unterminated or unopened regions are errors that name the notebook and the cell.
"""

from __future__ import annotations

import ast
import copy
import re
import textwrap
from dataclasses import dataclass
from pathlib import Path

import nbformat

__all__ = ["BuildError", "build_all", "clean_notebook", "render_source", "render_student"]

BEGIN = "### BEGIN SOLUTION"
END = "### END SOLUTION"
_ONE_LINE = re.compile(r"^(?P<code>.*?)\s*#\s*SOLUTION\s*$")
_KERNELSPEC = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}
_LANGUAGE_INFO = {"name": "python"}


class BuildError(ValueError):
    """A solution notebook cannot be rendered; the message names the notebook and cell."""


def _assigned_names(region_code: str) -> tuple[list[str], bool]:
    """Names a region binds at its top level, and whether it returns."""
    try:
        tree = ast.parse(region_code)
    except SyntaxError:
        # A region inside a function body or loop is not parseable on its own: wrap it.
        tree = ast.parse("def _region():\n" + textwrap.indent(region_code, "    "))
        body = tree.body[0].body  # type: ignore[attr-defined]
    else:
        body = tree.body
    names: list[str] = []
    returns = False

    def add_target(target: ast.expr) -> None:
        if isinstance(target, ast.Name) and target.id not in names:
            names.append(target.id)
        elif isinstance(target, (ast.Tuple, ast.List)):
            for element in target.elts:
                add_target(element)

    for statement in body:
        if isinstance(statement, ast.Assign):
            for target in statement.targets:
                add_target(target)
        elif isinstance(statement, (ast.AnnAssign, ast.AugAssign)):
            add_target(statement.target)
        elif isinstance(statement, (ast.FunctionDef, ast.ClassDef)) and statement.name not in names:
            names.append(statement.name)
        elif isinstance(statement, ast.Return):
            returns = True
    return names, returns


def render_source(source: str, where: str) -> str:
    """Replace the solution regions and one-line solutions of one cell's source."""
    lines = source.split("\n")
    output: list[str] = []
    region: list[str] | None = None
    indent = ""
    begin_line = 0
    for number, line in enumerate(lines, start=1):
        stripped = line.strip()
        if stripped.startswith(BEGIN):
            if region is not None:
                raise BuildError(f"{where}: line {number} opens a solution region inside the one opened on line {begin_line}; regions cannot nest.")
            region, indent, begin_line = [], line[: len(line) - len(line.lstrip())], number
            continue
        if stripped.startswith(END):
            if region is None:
                raise BuildError(f"{where}: line {number} closes a solution region that was never opened.")
            output.extend(_placeholder_lines(region, indent, where))
            region = None
            continue
        if region is not None:
            region.append(line)
            continue
        match = _ONE_LINE.match(line)
        output.append(_blank_assignment(match.group("code"), f"{where}, line {number}") if match else line)
    if region is not None:
        raise BuildError(f"{where}: the solution region opened on line {begin_line} is never closed with '{END}'.")
    return "\n".join(output)


def _blank_assignment(code: str, where: str) -> str:
    """``x = expr`` (or ``x: T = expr``) becomes ``x = ____``; anything else is an error."""
    indent = code[: len(code) - len(code.lstrip())]
    try:
        statement = ast.parse(code.strip()).body
    except SyntaxError:
        statement = []
    if len(statement) != 1 or not isinstance(statement[0], (ast.Assign, ast.AnnAssign)) or statement[0].value is None:
        raise BuildError(f"{where}: '# SOLUTION' marks a single assignment such as `x = expr`; "
                         "use a ### BEGIN SOLUTION region for anything else.")
    targets = statement[0].targets if isinstance(statement[0], ast.Assign) else [statement[0].target]
    return f"{indent}{' = '.join(ast.unparse(target) for target in targets)} = ____"


def _placeholder_lines(region: list[str], indent: str, where: str) -> list[str]:
    code = textwrap.dedent("\n".join(region))
    try:
        names, returns = _assigned_names(code)
    except SyntaxError as error:
        raise BuildError(f"{where}: the solution region is not valid Python ({error.msg}, line {error.lineno}).") from None
    lines = [f"{indent}# YOUR CODE HERE"]
    if returns:  # a function body: its local names are the learner's business
        lines.append(f"{indent}return ____")
    else:
        lines += [f"{indent}{name} = ____" for name in names]
    if len(lines) == 1:
        lines.append(f"{indent}pass")
    return lines


def clean_notebook(notebook: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """Strip outputs and counts; keep only kernelspec/language and cell tags."""
    notebook.metadata = nbformat.from_dict({"kernelspec": _KERNELSPEC, "language_info": _LANGUAGE_INFO})
    for cell in notebook.cells:
        tags = cell.get("metadata", {}).get("tags", [])
        cell.metadata = nbformat.from_dict({"tags": list(tags)} if tags else {})
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
    notebook.nbformat, notebook.nbformat_minor = 4, 5
    return notebook


def render_student(notebook: nbformat.NotebookNode, name: str) -> nbformat.NotebookNode:
    """The student rendering of a (clean) solution notebook."""
    student = copy.deepcopy(notebook)
    cells = []
    for index, cell in enumerate(student.cells, start=1):
        if "solution-only" in cell.get("metadata", {}).get("tags", []):
            continue
        if cell.cell_type == "code":
            cell.source = render_source(cell.source, f"{name}, cell {index} (id {cell.get('id', '?')})")
        elif BEGIN in cell.source or END in cell.source:
            raise BuildError(f"{name}, cell {index}: solution markers belong in code cells, not {cell.cell_type} cells.")
        cells.append(cell)
    student.cells = cells
    return clean_notebook(student)


def _dumps(notebook: nbformat.NotebookNode) -> str:
    return nbformat.writes(notebook, version=4) + "\n"


@dataclass(frozen=True)
class Drift:
    """A file whose content differs from what the generator would write."""

    path: Path
    reason: str


def build_all(root: Path, *, check: bool = False) -> list[Drift]:
    """Clean ``solutions/`` and render ``notebooks/`` under ``root``.

    With ``check=True`` nothing is written; the returned list names every file that
    would change. Otherwise the files are written and the list names what changed.
    """
    solutions, students = root / "solutions", root / "notebooks"
    drifts: list[Drift] = []
    expected: dict[Path, str] = {}
    for source in sorted(solutions.glob("*.ipynb")):
        original = source.read_text(encoding="utf-8")
        try:
            notebook = nbformat.reads(original, as_version=4)
        except Exception as error:
            raise BuildError(f"{source}: not a readable notebook ({error}).") from None
        clean = clean_notebook(notebook)
        expected[source] = _dumps(clean)
        expected[students / source.name] = _dumps(render_student(clean, source.name))
    for stray in sorted(set(students.glob("*.ipynb")) - set(expected)):
        drifts.append(Drift(stray, "has no solution notebook of the same name"))
    for path, text in expected.items():
        current = path.read_text(encoding="utf-8") if path.exists() else None
        if current == text:
            continue
        drifts.append(Drift(path, "is missing" if current is None else "differs from what the generator makes"))
        if not check:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
    return drifts
