"""Unit tests of labsupport.notebook_build: student notebooks rendered from solutions."""

from __future__ import annotations

import textwrap

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from labsupport.notebook_build import BuildError, build_all, render_source, render_student

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


def test_a_line_marked_solutions_with_an_s_is_left_alone():
    assert render("x = 1  # SOLUTIONS") == "x = 1  # SOLUTIONS"


@pytest.mark.parametrize("line", ["x == y  # SOLUTION", "assert x == y  # SOLUTION", "# SOLUTION",
                                  "f(a=1)  # SOLUTION", "x += 1  # SOLUTION", "x <= y  # SOLUTION"])
def test_a_one_line_solution_that_is_not_an_assignment_is_an_error_naming_the_line(line):
    with pytest.raises(BuildError, match=r"nb\.ipynb, cell 3, line 1: '# SOLUTION' marks a single assignment"):
        render_source(line, WHERE)


def test_code_without_solutions_is_unchanged():
    source = "import onnx\n\nmodel = onnx.load('m.onnx')\n"
    assert render_source(source, WHERE) == source


def test_nested_regions_are_an_error_naming_the_notebook_and_cell():
    with pytest.raises(BuildError, match=r"^nb\.ipynb, cell 3: line 3 opens a solution region inside the one opened on line 1"):
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
                      outputs=[new_output("error", ename="ZeroDivisionError", evalue="division by zero", traceback=[])]),
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


def test_an_unreadable_solution_notebook_is_an_error_naming_it(repo):
    (repo / "solutions" / "02_broken.ipynb").write_text("{ not a notebook")
    with pytest.raises(BuildError, match="02_broken.ipynb: not a readable notebook"):
        build_all(repo, check=True)
