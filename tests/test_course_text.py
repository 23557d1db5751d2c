"""The course's own text keeps its promises: references point at things that exist.

* every "lab NN" names a lab of this edition, or its sentence says the lab is coming;
* every prose reference to a Check-yourself question names a question heading of the same
  notebook, and every such heading is followed by the cell that reveals that exercise's answer;
* the first cell binds the placeholder without showing ``____`` as a blank to fill in.
"""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
SOLUTIONS = sorted((ROOT / "solutions").glob("*.ipynb"))
STUDENTS = sorted((ROOT / "notebooks").glob("*.ipynb"))
EXISTING_LABS = {path.name[:2] for path in SOLUTIONS}
TEXT_FILES = [ROOT / "README.md", *sorted((ROOT / "labsupport").rglob("*.py"))]

_LAB_REFERENCE = re.compile(r"\b[Ll]abs?\s+\(?(\d\d(?:\s*(?:[–-]|,|and|or|to)\s*\d\d)*)")
_QUESTION_HEADING = re.compile(r"\*\*(?:Question\s+|Q)(\d+)\.\*\*")
_QUESTION_REFERENCE = re.compile(r"\b(?:[Qq]uestion\s+|Q)(\d+)\b(?!\.\*\*)")
_COMING = re.compile(r"\bcoming\b|not in this edition", re.IGNORECASE)


def _lab_numbers(group: str) -> list[str]:
    numbers, previous, in_range = [], None, False
    for token in re.findall(r"\d\d|[–-]|to", group):
        if token in ("–", "-", "to"):
            in_range = True
            continue
        if in_range and previous is not None:
            numbers += [f"{number:02d}" for number in range(int(previous) + 1, int(token) + 1)]
        else:
            numbers.append(token)
        previous, in_range = token, False
    return numbers


def _sentences(text: str) -> list[str]:
    return [part for part in re.split(r"(?<=[.!?])\s+|\n\s*\n|\n\s*[-*|#]", text) if part.strip()]


def missing_lab_references(text: str) -> list[str]:
    """Sentences naming a lab that does not exist without saying it is coming."""
    bad = []
    for sentence in _sentences(text):
        for match in _LAB_REFERENCE.finditer(sentence):
            absent = [number for number in _lab_numbers(match.group(1)) if number not in EXISTING_LABS]
            if absent and not _COMING.search(sentence):
                bad.append(f"lab(s) {', '.join(absent)}: {' '.join(sentence.split())[:160]}")
    return bad


def _notebook_texts() -> list[tuple[str, str]]:
    texts = []
    for path in SOLUTIONS:
        for index, cell in enumerate(nbformat.read(str(path), as_version=4).cells, start=1):
            texts.append((f"{path.relative_to(ROOT)} cell {index}", cell.source))
    return texts


@pytest.mark.parametrize("where, text", _notebook_texts() + [(str(path.relative_to(ROOT)), path.read_text())
                                                          for path in TEXT_FILES],
                         ids=lambda value: value if isinstance(value, str) and len(value) < 80 else "")
def test_every_lab_reference_points_at_a_lab_that_exists_or_says_it_is_coming(where, text):
    assert not missing_lab_references(text), f"{where}: " + "; ".join(missing_lab_references(text))


def test_the_lab_reference_rule_flags_an_absent_lab_and_accepts_a_coming_one():
    assert missing_lab_references("Performance labs (97, 99) set thread counts.") == [
        "lab(s) 97, 99: Performance labs (97, 99) set thread counts."]
    assert missing_lab_references("Labs 03–07 build on it. Lab 98 builds C++.") == ["lab(s) 98: Lab 98 builds C++."]
    assert missing_lab_references("The coming lab 98 builds C++.") == []
    assert missing_lab_references("As lab 02 showed, and labs 05 to 07 use.") == []
    assert _lab_numbers("05 to 09") == ["05", "06", "07", "08", "09"]


@pytest.mark.parametrize("path", SOLUTIONS, ids=lambda path: path.name)
def test_check_yourself_references_name_a_question_of_the_same_notebook(path):
    cells = nbformat.read(str(path), as_version=4).cells
    headings = {int(number) for cell in cells if cell.cell_type == "markdown"
                for number in _QUESTION_HEADING.findall(cell.source)}
    for index, cell in enumerate(cells, start=1):
        if cell.cell_type != "markdown":
            continue
        prose = _QUESTION_HEADING.sub("", cell.source)
        for number in _QUESTION_REFERENCE.findall(prose):
            assert int(number) in headings, (f"{path.name} cell {index} refers to question {number}, but the "
                                             f"Check-yourself questions are {sorted(headings)}")


@pytest.mark.parametrize("path", SOLUTIONS, ids=lambda path: path.name)
def test_each_question_heading_is_followed_by_the_cell_revealing_that_exercise(path):
    cells = nbformat.read(str(path), as_version=4).cells
    for index, cell in enumerate(cells):
        if cell.cell_type != "markdown":
            continue
        for number in _QUESTION_HEADING.findall(cell.source):
            following = next((later for later in cells[index + 1:] if later.cell_type == "code"), None)
            assert following is not None and f"q{number}.solution()" in following.source, (
                f"{path.name}: the heading Question {number} is not followed by a cell calling q{number}.solution()")


@pytest.mark.parametrize("path", STUDENTS, ids=lambda path: path.name)
def test_no_import_shows_the_placeholder_as_a_blank_to_fill_in(path):
    for cell in nbformat.read(str(path), as_version=4).cells:
        if cell.cell_type == "code":
            for line in cell.source.splitlines():
                assert not (re.match(r"\s*(from|import)\b", line) and "____" in line), (
                    f"{path.name}: `{line.strip()}` shows ____ as a blank; bind(globals()) provides the placeholder")


def test_bind_puts_the_placeholder_into_the_namespace():
    from labsupport.checking import ____
    from labsupport.exercises import lab00

    namespace: dict = {}
    lab00.bind(namespace)
    assert namespace["____"] is ____
