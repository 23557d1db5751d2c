"""Unit tests of labsupport.notebook_build: student notebooks rendered from solutions."""

from __future__ import annotations

import json
import re
import textwrap
import warnings
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from labsupport import cli
from labsupport.notebook_build import BEGIN, END, BuildError, build_all, render_source, render_student

WHERE = "nb.ipynb, cell 3"


def render(source: str) -> str:
    return render_source(textwrap.dedent(source).strip("\n"), WHERE)


def lines(source: str) -> str:
    return textwrap.dedent(source).strip("\n")


# ---------------------------------------------------------------------------
# render_source
# ---------------------------------------------------------------------------

def test_a_region_becomes_a_placeholder_for_every_name_it_assigns():
    rendered = render("""
        import numpy as np
        ### BEGIN SOLUTION
        scale = 2.0
        rows, (cols, depth) = 4, (3, 1)
        total: int = rows * cols
        count += 1
        ### END SOLUTION
        print(scale)
    """)
    assert rendered == lines("""
        import numpy as np
        # YOUR CODE HERE
        scale = ____
        rows = ____
        cols = ____
        depth = ____
        total = ____
        count = ____
        print(scale)
    """)


def test_functions_and_classes_defined_in_a_region_become_placeholders():
    rendered = render("""
        ### BEGIN SOLUTION
        def normalise(x):
            return x / 255
        class Wrapper:
            pass
        ### END SOLUTION
    """)
    assert rendered == "# YOUR CODE HERE\nnormalise = ____\nWrapper = ____"


def test_a_region_in_a_function_body_keeps_its_indentation_and_returns_the_placeholder():
    rendered = render("""
        def double(x):
            ### BEGIN SOLUTION
            result = 2 * x
            return result
            ### END SOLUTION
    """)
    assert rendered == "def double(x):\n    # YOUR CODE HERE\n    return ____"


def test_a_region_in_a_loop_body_is_understood():
    rendered = render("""
        for step in range(3):
            ### BEGIN SOLUTION
            if step == 1:
                continue
            latest = step
            ### END SOLUTION
    """)
    assert rendered == "for step in range(3):\n    # YOUR CODE HERE\n    latest = ____"


def test_a_region_that_binds_nothing_becomes_pass():
    rendered = render("""
        if True:
            ### BEGIN SOLUTION
            print("side effects only")
            ### END SOLUTION
    """)
    assert rendered == "if True:\n    # YOUR CODE HERE\n    pass"


def test_the_one_line_form_keeps_the_target_and_blanks_the_value():
    assert render("x = compute(a=1)  # SOLUTION") == "x = ____"
    assert render_source("    model.ir_version = 10 # SOLUTION", WHERE) == "    model.ir_version = ____"


def test_the_exact_markers_are_accepted_with_indentation_and_trailing_spaces():
    source = "if True:\n    ### BEGIN SOLUTION   \n    x = 1\n    ### END SOLUTION\t\ny = 2  #SOLUTION"
    assert render_source(source, WHERE) == "if True:\n    # YOUR CODE HERE\n    x = ____\ny = ____"


NEAR_MISSES = [
    ("###BEGIN SOLUTION", BEGIN), ("### begin solution", BEGIN), ("### Begin Solution", BEGIN),
    ("## BEGIN SOLUTION", BEGIN), ("# BEGIN SOLUTION", BEGIN), ("#### BEGIN SOLUTION", BEGIN),
    ("### BEGIN SOLUTON", BEGIN), ("### BEGINSOLUTION", BEGIN), ("### BEGIN_SOLUTION", BEGIN),
    ("### BEGIN SOLUTION (part 1)", BEGIN), ("x = 1  ### BEGIN SOLUTION", BEGIN),
    ("###END SOLUTION", END), ("### end solution", END), ("# END SOLUTION", END),
    ("### END SOLUTON", END), ("### END SOLUITON", END), ("### END OF SOLUTION", END),
    ("answer = 42  # solution", "# SOLUTION"), ("answer = 42  # Solution", "# SOLUTION"),
    ("answer = 42  # SOLUTON", "# SOLUTION"), ("answer = 42  #SOLUTON", "# SOLUTION"),
    ("answer = 42  # SOLUTIONS", "# SOLUTION"), ("answer = 42  # SOLUTION.", "# SOLUTION"),
    ("answer = 42  # SOLUTION: the mean", "# SOLUTION"), ("    answer = 42  # S0LUTION", "# SOLUTION"),
    ("# solution", "# SOLUTION"),
]


@pytest.mark.parametrize(("line", "marker"), NEAR_MISSES, ids=[line for line, _ in NEAR_MISSES])
def test_a_near_miss_marker_is_an_error_naming_the_line_and_the_exact_marker(line, marker):
    source = f"import numpy as np\n{line}\nanswer = 42"
    with pytest.raises(BuildError) as error:
        render_source(source, WHERE)
    message = str(error.value)
    assert message.startswith(f"{WHERE}, line 2: ")
    assert f"write exactly '{marker}'" in message
    assert "\n" not in message


@pytest.mark.parametrize("line", [
    "# the solution uses np.abs", "x = resolution  # image resolution", "# evolution of the loss",
    "# Solved in lab 03; see q2.solution()", "# begin with the solutions folder", "# see the end of the section",
    "print('#')  # absolute error", "# End of the warm-up",
])
def test_ordinary_comments_that_mention_solutions_are_left_alone(line):
    assert render_source(line, WHERE) == line


@pytest.mark.parametrize("line", ["x == y  # SOLUTION", "assert x == y  # SOLUTION", "# SOLUTION",
                                  "f(a=1)  # SOLUTION", "x += 1  # SOLUTION", "x <= y  # SOLUTION"])
def test_a_one_line_solution_that_is_not_an_assignment_is_an_error_naming_the_line(line):
    with pytest.raises(BuildError, match=r"nb\.ipynb, cell 3, line 1: '# SOLUTION' marks a single assignment"):
        render_source(line, WHERE)


def test_code_without_solutions_is_unchanged():
    source = "import onnx\n\nmodel = onnx.load('m.onnx')\n"
    assert render_source(source, WHERE) == source


def test_nested_regions_are_an_error_naming_the_notebook_and_cell():
    with pytest.raises(BuildError, match=r"^nb\.ipynb, cell 3: line 3 opens a solution region inside the one opened "
                                         r"on line 1"):
        render("""
            ### BEGIN SOLUTION
            x = 1
            ### BEGIN SOLUTION
            y = 2
            ### END SOLUTION
            ### END SOLUTION
        """)


def test_an_unterminated_region_is_an_error_naming_the_notebook_and_cell():
    with pytest.raises(BuildError, match=r"^nb\.ipynb, cell 3: the solution region opened on line 2 is never closed"):
        render("""
            import onnx
            ### BEGIN SOLUTION
            x = 1
        """)


def test_an_end_without_a_begin_is_an_error_naming_the_notebook_and_cell():
    with pytest.raises(BuildError, match=r"^nb\.ipynb, cell 3: line 2 closes a solution region that was never opened"):
        render("""
            x = 1
            ### END SOLUTION
        """)


def test_a_region_that_is_not_python_is_an_error_naming_the_notebook_and_cell():
    with pytest.raises(BuildError, match=r"^nb\.ipynb, cell 3: the solution region is not valid Python"):
        render("""
            ### BEGIN SOLUTION
            x = = 1
            ### END SOLUTION
        """)


# ---------------------------------------------------------------------------
# render_student
# ---------------------------------------------------------------------------

def solution_notebook() -> nbformat.NotebookNode:
    """A solution notebook as an author leaves it: outputs, counts and editor metadata included."""
    notebook = new_notebook(metadata={
        "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
        "language_info": {"name": "python", "version": "3.11.7"},
        "widgets": {"state": {}},
    })
    notebook.cells = [
        new_markdown_cell("# Demo\n\nRun each cell."),
        new_code_cell("answer = 6 * 7  # SOLUTION\nq1.check()", execution_count=4, metadata={"scrolled": True},
                      outputs=[new_output("stream", name="stdout", text="Correct (q1): Well done.\n")]),
        new_code_cell("print('for instructors')", metadata={"tags": ["solution-only"]}),
        new_code_cell("1 / 0", execution_count=5, metadata={"tags": ["raises-exception"], "collapsed": False},
                      outputs=[new_output("error", ename="ZeroDivisionError", evalue="division by zero",
                                          traceback=[])]),
    ]
    return notebook


def test_student_rendering_drops_solution_only_cells_and_blanks_answers():
    student = render_student(solution_notebook(), "01_demo.ipynb")
    assert [cell.source for cell in student.cells] == ["# Demo\n\nRun each cell.", "answer = ____\nq1.check()", "1 / 0"]


def test_student_rendering_keeps_tags_and_strips_outputs_counts_and_metadata():
    student = render_student(solution_notebook(), "01_demo.ipynb")
    assert student.metadata == {
        "kernelspec": {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"},
        "language_info": {"name": "python"},
    }
    code_cells = [cell for cell in student.cells if cell.cell_type == "code"]
    assert all(cell.outputs == [] and cell.execution_count is None for cell in code_cells)
    assert [cell.metadata for cell in student.cells] == [{}, {}, {"tags": ["raises-exception"]}]


def test_student_rendering_leaves_the_solution_notebook_untouched():
    solution = solution_notebook()
    render_student(solution, "01_demo.ipynb")
    assert solution.cells[1].source.startswith("answer = 6 * 7")
    assert len(solution.cells) == 4


def test_solution_markers_in_a_markdown_cell_are_an_error():
    notebook = solution_notebook()
    notebook.cells[0].source = "### BEGIN SOLUTION\nThe answer is 42.\n### END SOLUTION"
    with pytest.raises(BuildError, match=r"^01_demo\.ipynb, cell 1: solution markers belong in code cells"):
        render_student(notebook, "01_demo.ipynb")


def test_a_malformed_region_names_the_notebook_and_cell_number():
    notebook = solution_notebook()
    notebook.cells[3].source = "### BEGIN SOLUTION\nx = 1"
    with pytest.raises(BuildError, match=r"^01_demo\.ipynb, cell 4 \(id .+\): the solution region opened on line 1"):
        render_student(notebook, "01_demo.ipynb")


# ---------------------------------------------------------------------------
# build_all
# ---------------------------------------------------------------------------

@pytest.fixture
def repo(tmp_path):
    """A repository with one solution notebook and no student notebooks yet."""
    (tmp_path / "solutions").mkdir()
    nbformat.write(solution_notebook(), tmp_path / "solutions" / "01_demo.ipynb")
    return tmp_path


def test_build_all_writes_student_notebooks_and_cleans_solutions(repo):
    drifts = build_all(repo)
    assert {(drift.path.relative_to(repo).as_posix(), drift.reason) for drift in drifts} == {
        ("solutions/01_demo.ipynb", "differs from what the generator makes"),
        ("notebooks/01_demo.ipynb", "is missing"),
    }
    solution = nbformat.read(repo / "solutions" / "01_demo.ipynb", as_version=4)
    student = nbformat.read(repo / "notebooks" / "01_demo.ipynb", as_version=4)
    assert solution.cells[1].source == "answer = 6 * 7  # SOLUTION\nq1.check()"
    assert solution.cells[1].outputs == [] and "widgets" not in solution.metadata
    assert student.cells[1].source == "answer = ____\nq1.check()"


def test_build_all_is_idempotent(repo):
    build_all(repo)
    written = {path: path.read_bytes() for path in repo.rglob("*.ipynb")}
    assert build_all(repo) == []
    assert build_all(repo, check=True) == []
    assert {path: path.read_bytes() for path in repo.rglob("*.ipynb")} == written


def test_check_mode_reports_drift_without_writing(repo):
    build_all(repo)
    student_path = repo / "notebooks" / "01_demo.ipynb"
    hand_edited = student_path.read_text().replace("answer = ____", "answer = 42")
    student_path.write_text(hand_edited)
    drifts = build_all(repo, check=True)
    assert [(drift.path, drift.reason) for drift in drifts] == [(student_path, "differs from what the generator makes")]
    assert student_path.read_text() == hand_edited


def test_a_student_notebook_without_a_solution_is_reported(repo):
    build_all(repo)
    stray = repo / "notebooks" / "02_orphan.ipynb"
    nbformat.write(new_notebook(), stray)
    drifts = build_all(repo, check=True)
    assert [(drift.path, drift.reason) for drift in drifts] == [(stray, "has no solution notebook of the same name")]


def test_build_removes_a_student_notebook_without_a_solution(repo):
    build_all(repo)
    stray = repo / "notebooks" / "02_orphan.ipynb"
    nbformat.write(new_notebook(), stray)
    drifts = build_all(repo)
    assert [(drift.path, drift.reason, drift.removed) for drift in drifts] == [
        (stray, "has no solution notebook of the same name", True)]
    assert not stray.exists()
    assert build_all(repo, check=True) == []


def test_a_near_miss_in_a_solution_notebook_stops_the_build_before_anything_is_written(repo):
    notebook = nbformat.read(repo / "solutions" / "01_demo.ipynb", as_version=4)
    notebook.cells.append(new_code_cell("###BEGIN SOLUTION\nsecret = 6 * 7\n###END SOLUTION"))
    nbformat.write(notebook, repo / "solutions" / "01_demo.ipynb")
    with pytest.raises(BuildError, match=r"^01_demo\.ipynb, cell 5 \(id .+\), line 1: '###BEGIN SOLUTION' looks like"):
        build_all(repo)
    assert not (repo / "notebooks").exists()


# ---------------------------------------------------------------------------
# cell sources
# ---------------------------------------------------------------------------

def test_a_near_miss_marker_in_markdown_is_an_error_naming_notebook_cell_and_line():
    notebook = solution_notebook()
    notebook.cells[0].source = "# Demo\n## Begin solution\nThe answer is 42."
    with pytest.raises(BuildError, match=r"^01_demo\.ipynb, cell 1, line 2: '## Begin solution' looks like the "
                                         r"marker '### BEGIN SOLUTION'"):
        render_student(notebook, "01_demo.ipynb")


def test_markdown_prose_about_solutions_is_left_alone():
    notebook = solution_notebook()
    notebook.cells[0].source = "Solutions: `q1.solution()` shows the model answer.\n## End of part 1"
    assert render_student(notebook, "01_demo.ipynb").cells[0].source == notebook.cells[0].source


def test_a_source_given_as_a_list_of_lines_is_rendered():
    notebook = solution_notebook()
    notebook.cells[1].source = ["answer = 6 * 7  # SOLUTION\n", "q1.check()"]
    assert render_student(notebook, "01_demo.ipynb").cells[1].source == "answer = ____\nq1.check()"


@pytest.mark.parametrize("source", [42, None, ["x = 1\n", 2]], ids=["number", "null", "list-with-a-number"])
def test_a_source_that_is_not_text_is_an_error_naming_the_notebook_and_cell(repo, source):
    content = json.loads((repo / "solutions" / "01_demo.ipynb").read_text())
    content["cells"][1]["source"] = source
    (repo / "solutions" / "01_demo.ipynb").write_text(json.dumps(content))
    with pytest.raises(BuildError, match=r"^solutions/01_demo\.ipynb, cell 2: the cell source is .+, not text"):
        build_all(repo, check=True)


def test_cells_without_ids_get_one_that_both_renderings_share_without_a_warning(repo):
    content = json.loads((repo / "solutions" / "01_demo.ipynb").read_text())
    for cell in content["cells"]:
        del cell["id"]
    (repo / "solutions" / "01_demo.ipynb").write_text(json.dumps(content))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        build_all(repo)
    solution = nbformat.read(repo / "solutions" / "01_demo.ipynb", as_version=4)
    student = nbformat.read(repo / "notebooks" / "01_demo.ipynb", as_version=4)
    assert all(cell.get("id") for cell in solution.cells)
    assert [cell.id for cell in student.cells] == [solution.cells[index].id for index in (0, 1, 3)]


# ---------------------------------------------------------------------------
# files that cannot be read or written: one line naming the file
# ---------------------------------------------------------------------------

def one_line_error(repo, *, check: bool = True) -> str:
    with pytest.raises(BuildError) as error:
        build_all(repo, check=check)
    message = str(error.value)
    assert "\n" not in message
    return message


def test_a_solution_notebook_that_is_not_json_is_an_error_naming_it_and_the_position(repo):
    (repo / "solutions" / "02_broken.ipynb").write_text("{ not a notebook")
    assert one_line_error(repo).startswith("solutions/02_broken.ipynb: is not valid JSON (Expecting property name "
                                           "enclosed in double quotes at line 1, column 3)")


def test_a_solution_notebook_that_is_not_utf8_is_an_error_naming_it(repo):
    (repo / "solutions" / "02_latin1.ipynb").write_bytes('{"cells": [], "note": "café"}'.encode("latin-1"))
    assert one_line_error(repo).startswith("solutions/02_latin1.ipynb: is not UTF-8 text (byte 26 is 0xe9)")


@pytest.mark.parametrize("content", [[], {"cells": []}, {"nbformat": 4, "nbformat_minor": 5, "cells": "none"}],
                         ids=["a-list", "no-version", "cells-not-a-list"])
def test_json_that_is_not_a_notebook_is_an_error_naming_it(repo, content):
    (repo / "solutions" / "02_other.ipynb").write_text(json.dumps(content))
    assert one_line_error(repo).startswith("solutions/02_other.ipynb: is not an nbformat 4 notebook")


def test_a_notebook_that_fails_the_schema_is_an_error_naming_the_field(repo):
    content = json.loads((repo / "solutions" / "01_demo.ipynb").read_text())
    content["cells"][0]["cell_type"] = "heading"
    (repo / "solutions" / "01_demo.ipynb").write_text(json.dumps(content))
    assert re.match(r"solutions/01_demo\.ipynb: is not a valid notebook \(cells/0: .{1,80}\); "
                    r"save it from JupyterLab\.$", one_line_error(repo))


@pytest.mark.parametrize("folder", ["solutions", "notebooks"])
def test_a_folder_named_like_a_notebook_is_an_error_naming_it(repo, folder):
    (repo / folder / "01_demo.ipynb").unlink(missing_ok=True)
    (repo / folder / "01_demo.ipynb").mkdir(parents=True)
    assert one_line_error(repo) == f"{folder}/01_demo.ipynb: is a folder, not a notebook; rename or remove it."


def test_an_unreadable_solution_notebook_is_an_error_naming_it(repo, monkeypatch):
    denied = repo / "solutions" / "01_demo.ipynb"

    def refuse(path, *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(Path, "read_bytes", refuse)
    monkeypatch.setattr(Path, "read_text", refuse)
    assert one_line_error(repo) == f"solutions/01_demo.ipynb: cannot be read (Permission denied: {denied})."


def test_a_notebook_that_cannot_be_written_is_an_error_naming_it(repo, monkeypatch):
    def refuse(path, *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(Path, "write_text", refuse)
    message = one_line_error(repo, check=False)
    assert message.startswith("solutions/01_demo.ipynb: cannot be written (Permission denied: ")


def test_a_file_in_place_of_the_notebooks_folder_is_an_error_naming_it(repo):
    (repo / "notebooks").write_text("not a folder")
    assert one_line_error(repo, check=False).startswith(f"{repo / 'notebooks'}: is a file, not a folder")


def test_a_missing_solutions_folder_is_an_error_and_removes_no_student_notebook(tmp_path):
    (tmp_path / "notebooks").mkdir()
    nbformat.write(new_notebook(), tmp_path / "notebooks" / "01_demo.ipynb")
    assert one_line_error(tmp_path, check=False).startswith(f"{tmp_path / 'solutions'}: no such folder")
    (tmp_path / "solutions").mkdir()
    assert one_line_error(tmp_path, check=False).startswith(f"{tmp_path / 'solutions'}: holds no notebooks")
    assert (tmp_path / "notebooks" / "01_demo.ipynb").exists()


# ---------------------------------------------------------------------------
# atomic writes
# ---------------------------------------------------------------------------

def test_an_interrupted_write_leaves_the_previous_notebook_whole_and_no_temporary_file(repo, monkeypatch):
    build_all(repo)
    student_path = repo / "notebooks" / "01_demo.ipynb"
    before = student_path.read_bytes()
    notebook = nbformat.read(repo / "solutions" / "01_demo.ipynb", as_version=4)
    notebook.cells[0].source = "# Demo, second edition"
    nbformat.write(notebook, repo / "solutions" / "01_demo.ipynb")
    write_text = Path.write_text

    def write_half_then_stop(path, text, *args, **kwargs):
        write_text(path, text[: len(text) // 2], *args, **kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(Path, "write_text", write_half_then_stop)
    with pytest.raises(KeyboardInterrupt):
        build_all(repo)
    assert student_path.read_bytes() == before
    assert sorted(path.name for path in (repo / "notebooks").iterdir()) == ["01_demo.ipynb"]
    nbformat.read(repo / "solutions" / "01_demo.ipynb", as_version=4)


def test_rewriting_a_notebook_keeps_its_permissions(repo):
    build_all(repo)
    student_path = repo / "notebooks" / "01_demo.ipynb"
    student_path.chmod(0o640)
    student_path.write_text(student_path.read_text().replace("answer = ____", "answer = 42"))
    build_all(repo)
    assert student_path.stat().st_mode & 0o777 == 0o640
    assert "answer = 42" not in student_path.read_text()


# ---------------------------------------------------------------------------
# the command line: exit 2 and one line, never a traceback
# ---------------------------------------------------------------------------

def test_the_command_removes_a_stray_student_notebook_and_says_so(repo, monkeypatch, capsys):
    monkeypatch.chdir(repo)
    build_all(repo)
    nbformat.write(new_notebook(), repo / "notebooks" / "02_orphan.ipynb")
    assert cli.main(["build-notebooks", "--check"]) == 1
    assert "drift: notebooks/02_orphan.ipynb has no solution notebook of the same name" in capsys.readouterr().err
    assert cli.main(["build-notebooks"]) == 0
    assert capsys.readouterr().out == "removed notebooks/02_orphan.ipynb\n0 notebook(s) written, 1 removed.\n"
    assert cli.main(["build-notebooks", "--check"]) == 0


def test_the_command_reports_an_unreadable_notebook_in_one_line_with_exit_2(repo, monkeypatch, capsys):
    (repo / "solutions" / "02_latin1.ipynb").write_bytes(b'{"cells": "\xe9"}')
    monkeypatch.chdir(repo)
    assert cli.main(["build-notebooks", "--check"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("error: solutions/02_latin1.ipynb: is not UTF-8 text")
    assert captured.err.count("\n") == 1


def test_the_command_without_a_solutions_folder_exits_2_with_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(cli, "__file__", str(tmp_path / "site-packages" / "labsupport" / "cli.py"))
    assert cli.main(["build-notebooks", "--check"]) == 2
    stderr = capsys.readouterr().err
    assert stderr == (f"error: no solutions/ folder in {tmp_path} or {tmp_path / 'site-packages'}; "
                      "run this from the repository root.\n")


def test_a_one_lab_build_writes_only_that_labs_notebook(tmp_path):
    from labsupport.notebook_build import build_all

    (tmp_path / "solutions").mkdir()
    (tmp_path / "notebooks").mkdir()
    for name in ("03_a.ipynb", "04_b.ipynb"):
        notebook = nbformat.v4.new_notebook()
        notebook.cells = [nbformat.v4.new_code_cell("x = 1  # SOLUTION")]
        nbformat.write(notebook, str(tmp_path / "solutions" / name))
    (tmp_path / "notebooks" / "04_stray.ipynb").write_text("{}")
    drifts = build_all(tmp_path, lab="03")
    assert [drift.path.name for drift in drifts if drift.path.parent.name == "notebooks"] == ["03_a.ipynb"]
    assert not (tmp_path / "notebooks" / "04_b.ipynb").exists() and (tmp_path / "notebooks" / "04_stray.ipynb").exists()
    with pytest.raises(BuildError, match=r"no solutions/05_\*\.ipynb: the labs are 03, 04"):
        build_all(tmp_path, lab="05")
