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

Nested, unterminated or unopened regions are errors that name the notebook and the cell, and
so is any comment that resembles a marker without being it exactly (``###BEGIN SOLUTION``,
``# begin solution``, ``### END SOLUTON``, ``x = 1  # solution``): such a line would otherwise
copy the answer into the student notebook. A student notebook without a solution twin is
removed; notebooks are written through a temporary file, so an interrupted build never
leaves half of one. Unreadable input is a :class:`BuildError` of one line naming the file.
"""

from __future__ import annotations

import ast
import contextlib
import copy
import json
import os
import re
import secrets
import shutil
import textwrap
import warnings
from dataclasses import dataclass
from pathlib import Path

import nbformat
from nbformat.corpus.words import generate_corpus_id
from nbformat.warnings import MissingIDFieldWarning

__all__ = ["BuildError", "build_all", "clean_notebook", "render_source", "render_student"]

BEGIN = "### BEGIN SOLUTION"
END = "### END SOLUTION"
ONE_LINE = "# SOLUTION"
_ONE_LINE = re.compile(r"^(?P<code>.*?)\s*#\s*SOLUTION\s*$")
# What a marker reads as once case, '#', spaces and punctuation are ignored, how many edits
# (insert, delete, substitute, swap two neighbours) still count as a near miss, and the marker.
_NEAR_MISSES = (("BEGINSOLUTION", 2, BEGIN), ("ENDSOLUTION", 2, END), ("SOLUTION", 1, ONE_LINE))
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
        _reject_near_miss(line, f"{where}, line {number}", markdown=False)
        if stripped == BEGIN:
            if region is not None:
                raise BuildError(f"{where}: line {number} opens a solution region inside the one opened on line "
                                 f"{begin_line}; regions cannot nest.")
            region, indent, begin_line = [], line[: len(line) - len(line.lstrip())], number
            continue
        if stripped == END:
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


def _resembles(word: str, text: str, tolerance: int) -> bool:
    """Whether at most ``tolerance`` edits (insert, delete, substitute, swap two neighbours) turn a prefix of
    ``text`` into ``word``. Rows of the edit-distance table never get a smaller minimum, so it stops early."""
    text = text[: len(word) + tolerance]
    before, previous = [], list(range(len(text) + 1))
    for row in range(1, len(word) + 1):
        current = [row]
        for column in range(1, len(text) + 1):
            cost = min(previous[column] + 1, current[column - 1] + 1,
                       previous[column - 1] + (word[row - 1] != text[column - 1]))
            if row > 1 and column > 1 and word[row - 1] == text[column - 2] and word[row - 2] == text[column - 1]:
                cost = min(cost, before[column - 2] + 1)
            current.append(cost)
        if min(current) > tolerance:
            return False
        before, previous = previous, current
    return min(previous) <= tolerance


def _near_miss(line: str, *, markdown: bool) -> tuple[str, str] | None:
    """The text of ``line`` that resembles a solution marker without being it, and the marker it resembles.

    In code, every comment (the text from each ``#``) is compared; in markdown, the whole line,
    and only with the region markers (prose may well begin with "Solution").
    """
    stripped = line.strip()
    if stripped in (BEGIN, END):
        return None
    candidates = [stripped] if markdown else [line[match.start():].strip() for match in re.finditer("#+", line)]
    exact_one_line = markdown or _ONE_LINE.match(line) is not None
    for candidate in candidates:
        letters = re.sub("[^A-Z0-9]", "", candidate.upper())
        for word, tolerance, marker in _NEAR_MISSES:
            if marker == ONE_LINE and exact_one_line:
                continue
            if _resembles(word, letters, tolerance):
                return candidate, marker
    return None


def _reject_near_miss(line: str, where: str, *, markdown: bool) -> None:
    """Raise :class:`BuildError` if ``line`` resembles a solution marker without being it exactly."""
    near_miss = _near_miss(line, markdown=markdown)
    if near_miss is None:
        return
    text, marker = near_miss
    if markdown:
        raise BuildError(f"{where}: {text!r} looks like the marker '{marker}', but markdown is copied to the student "
                         "notebook as it is; put the answer in a code cell between the exact markers "
                         f"'{BEGIN}' and '{END}', or reword the line.")
    usage = "on a line of its own" if marker != ONE_LINE else "at the end of an assignment: `x = expr  # SOLUTION`"
    raise BuildError(f"{where}: {text!r} looks like a solution marker but is not one, so the answer would reach the "
                     f"student notebook; write exactly '{marker}' {usage}, or reword the comment.")


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
        problem = f"{error.msg}, line {error.lineno}"
        raise BuildError(f"{where}: the solution region is not valid Python ({problem}).") from None
    lines = [f"{indent}# YOUR CODE HERE"]
    if returns:  # a function body: its local names are the learner's business
        lines.append(f"{indent}return ____")
    else:
        lines += [f"{indent}{name} = ____" for name in names]
    if len(lines) == 1:
        lines.append(f"{indent}pass")
    return lines


def clean_notebook(notebook: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """Strip outputs and counts; keep only kernelspec/language and cell tags; give every cell an id (nbformat 4.5)."""
    notebook.metadata = nbformat.from_dict({"kernelspec": _KERNELSPEC, "language_info": _LANGUAGE_INFO})
    for cell in notebook.cells:
        cell.setdefault("id", generate_corpus_id())
        tags = cell.get("metadata", {}).get("tags", [])
        cell.metadata = nbformat.from_dict({"tags": list(tags)} if tags else {})
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
    notebook.nbformat, notebook.nbformat_minor = 4, 5
    return notebook


def _source_text(source: object, where: str) -> str:
    """A cell's source as one string: nbformat allows a list of lines; anything else is an error."""
    if isinstance(source, str):
        return source
    if isinstance(source, list) and all(isinstance(line, str) for line in source):
        return "".join(source)
    raise BuildError(f"{where}: the cell source is {source!r:.40} ({type(source).__name__}), not text or a list of "
                     "lines of text; open the notebook in JupyterLab and save it again.")


def render_student(notebook: nbformat.NotebookNode, name: str) -> nbformat.NotebookNode:
    """The student rendering of a (clean) solution notebook."""
    student = copy.deepcopy(notebook)
    cells = []
    for index, cell in enumerate(student.cells, start=1):
        if "solution-only" in cell.get("metadata", {}).get("tags", []):
            continue
        cell.source = _source_text(cell.get("source", ""), f"{name}, cell {index}")
        if cell.cell_type == "code":
            cell.source = render_source(cell.source, f"{name}, cell {index} (id {cell.get('id', '?')})")
        elif BEGIN in cell.source or END in cell.source:
            raise BuildError(f"{name}, cell {index}: solution markers belong in code cells, "
                             f"not {cell.cell_type} cells.")
        else:
            for number, line in enumerate(cell.source.split("\n"), start=1):
                _reject_near_miss(line, f"{name}, cell {index}, line {number}", markdown=True)
        cells.append(cell)
    student.cells = cells
    return clean_notebook(student)


def _dumps(notebook: nbformat.NotebookNode) -> str:
    return nbformat.writes(notebook, version=4) + "\n"


def _os_reason(error: OSError) -> str:
    """``Permission denied`` or ``Not a directory: /path``: an OSError in a few words."""
    reason = error.strerror or type(error).__name__
    return f"{reason}: {error.filename}" if error.filename else reason


def _read_notebook(path: Path, shown: str) -> nbformat.NotebookNode:
    """Read a solution notebook, or raise :class:`BuildError` with one line saying what is wrong with the file."""
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise BuildError(f"{shown}: cannot be read ({_os_reason(error)}).") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise BuildError(f"{shown}: is not UTF-8 text (byte {error.start} is {raw[error.start]:#04x}); "
                         "save it as UTF-8.") from None
    try:
        content = json.loads(text)
    except json.JSONDecodeError as error:
        raise BuildError(f"{shown}: is not valid JSON ({error.msg} at line {error.lineno}, column {error.colno}); "
                         "fix the JSON or restore the file from git.") from None
    if not isinstance(content, dict) or content.get("nbformat") != 4 or not isinstance(content.get("cells"), list):
        raise BuildError(f"{shown}: is not an nbformat 4 notebook (a JSON object with 'nbformat': 4 and a list of "
                         "'cells'); save it from JupyterLab.")
    for index, cell in enumerate(content["cells"], start=1):
        if not isinstance(cell, dict):
            raise BuildError(f"{shown}, cell {index}: is {type(cell).__name__}, not a cell; save it from JupyterLab.")
        cell["source"] = _source_text(cell.get("source", ""), f"{shown}, cell {index}")
    notebook = nbformat.from_dict(content)
    try:
        with warnings.catch_warnings():  # a missing cell id is added here, and written back to the solution
            warnings.simplefilter("ignore", MissingIDFieldWarning)
            nbformat.validate(notebook)
    except nbformat.ValidationError as error:
        location = "/".join(str(part) for part in error.absolute_path) or "the top level"
        problem = f"{location}: {error.message if len(error.message) <= 80 else error.message[:77] + '...'}"
        raise BuildError(f"{shown}: is not a valid notebook ({problem}); save it from JupyterLab.") from None
    return notebook


def _notebook_paths(folder: Path, shown: str) -> list[Path]:
    """The ``*.ipynb`` files of ``folder``; anything else with that name is an error."""
    paths = sorted(folder.glob("*.ipynb"))
    for path in paths:
        if not path.is_file():
            kind = "a folder" if path.is_dir() else "not a regular file"
            raise BuildError(f"{shown}/{path.name}: is {kind}, not a notebook; rename or remove it.")
    return paths


def _read_text(path: Path, shown: str) -> str | None:
    """The current text of a file the generator owns: None if it is missing or not UTF-8 (so it is rewritten)."""
    try:
        return path.read_text(encoding="utf-8")
    except (FileNotFoundError, UnicodeDecodeError):
        return None
    except OSError as error:
        raise BuildError(f"{shown}: cannot be read ({_os_reason(error)}).") from None


def _write_atomically(path: Path, text: str, shown: str) -> None:
    """Write through a temporary file in the same folder and ``os.replace``: readers see the old or the new file."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            temporary.write_text(text, encoding="utf-8", newline="\n")
            if path.exists():
                shutil.copymode(path, temporary)
            os.replace(temporary, path)
        except BaseException:
            with contextlib.suppress(OSError):
                temporary.unlink(missing_ok=True)
            raise
    except OSError as error:
        raise BuildError(f"{shown}: cannot be written ({_os_reason(error)}).") from None


@dataclass(frozen=True)
class Drift:
    """A file whose content differs from what the generator would write, or that it would remove."""

    path: Path
    reason: str
    removed: bool = False


def build_all(root: Path, *, check: bool = False, lab: str | None = None) -> list[Drift]:
    """Clean ``solutions/`` and render ``notebooks/`` under ``root``.

    ``lab`` (``"03"``) limits the build to that lab's notebooks, so an author touches no other
    lab's files; a stray student notebook of another lab is then left for a full build.

    With ``check=True`` nothing is written; the returned list names every file that would
    change. Otherwise the files are written, student notebooks without a solution twin are
    removed, and the list names what changed. Every solution is read and rendered before
    anything is written, so a :class:`BuildError` leaves both folders as they were.
    """
    solutions, students = root / "solutions", root / "notebooks"
    if not solutions.is_dir():
        raise BuildError(f"{solutions}: no such folder; run this from the repository root, which holds solutions/.")
    if students.exists() and not students.is_dir():
        raise BuildError(f"{students}: is a file, not a folder; move it away so the student notebooks can be written.")
    sources = _notebook_paths(solutions, "solutions")
    if not sources:
        raise BuildError(f"{solutions}: holds no notebooks, so there is nothing to render notebooks/ from; "
                         "run this from the repository root.")
    if lab is not None:
        labs = ", ".join(sorted({source.name[:2] for source in sources}))
        sources = [source for source in sources if source.name.startswith(f"{lab}_")]
        if not sources:
            raise BuildError(f"no solutions/{lab}_*.ipynb: the labs are {labs}.")
    expected: dict[Path, str] = {}
    for source in sources:
        clean = clean_notebook(_read_notebook(source, f"solutions/{source.name}"))
        expected[source] = _dumps(clean)
        expected[students / source.name] = _dumps(render_student(clean, source.name))
    strays = [path for path in _notebook_paths(students, "notebooks") if path not in expected
              and (lab is None or path.name.startswith(f"{lab}_"))]
    drifts: list[Drift] = []
    for path, text in expected.items():
        shown = path.relative_to(root).as_posix()
        current = _read_text(path, shown)
        if current == text:
            continue
        drifts.append(Drift(path, "is missing" if not path.exists() else "differs from what the generator makes"))
        if not check:
            _write_atomically(path, text, shown)
    for stray in strays:
        drifts.append(Drift(stray, "has no solution notebook of the same name", removed=True))
        if not check:
            try:
                stray.unlink()
            except OSError as error:
                raise BuildError(f"notebooks/{stray.name}: cannot be removed ({_os_reason(error)}).") from None
    return drifts
