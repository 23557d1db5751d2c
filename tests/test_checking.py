"""Unit tests of labsupport.checking: the placeholder, comparisons, problem kinds and the view."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from labsupport import progress
from labsupport.checking import (
    EqualityProblem,
    FunctionProblem,
    Incorrect,
    IncorrectAnswerError,
    ProblemView,
    ThoughtExperiment,
    ____,
    assert_equal,
    bind_problems,
    contains_placeholder,
    make_binder,
)
from labsupport.testing import (
    assert_check_failed,
    assert_check_passed,
    assert_check_unattempted,
    evaluate,
)
from tests.test_display import assert_every_icon_has_a_word, capture_jupyter


@pytest.fixture(autouse=True)
def scratch_progress(tmp_path, monkeypatch):
    """Every test records progress in its own folder and starts outside strict mode."""
    monkeypatch.setenv("LABSUPPORT_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("LABSUPPORT_STRICT", raising=False)
    monkeypatch.delenv("LABSUPPORT_EXPECT_SOLVED", raising=False)


def incorrect_message(actual, expected, **tolerance) -> str:
    with pytest.raises(Incorrect) as outcome:
        assert_equal("answer", actual, expected, **tolerance)
    return str(outcome.value)


# ---------------------------------------------------------------------------
# The placeholder
# ---------------------------------------------------------------------------

def test_placeholder_is_a_singleton_that_survives_copying():
    import copy

    from labsupport.checking import _Placeholder

    assert _Placeholder() is ____
    assert copy.copy(____) is ____
    assert copy.deepcopy([____])[0] is ____
    assert repr(____) == "____"


@pytest.mark.parametrize("value", [____, [1, ____], (1, [2, ____]), {____}, {"a": ____}, {"a": {"b": [____]}}])
def test_placeholder_is_found_however_deeply_it_is_nested(value):
    assert contains_placeholder(value)


@pytest.mark.parametrize("value", [None, 0, "____", [1, 2], {"a": [1]}, np.zeros(3)])
def test_values_without_the_placeholder_are_not_mistaken_for_it(value):
    assert not contains_placeholder(value)


# ---------------------------------------------------------------------------
# assert_equal
# ---------------------------------------------------------------------------

def test_booleans_must_be_booleans_and_equal():
    assert_equal("answer", True, True)
    assert_equal("answer", np.bool_(False), False)
    assert "True or False" in incorrect_message(1, True)
    assert "which is not right" in incorrect_message(False, True)


def test_a_fraction_where_a_whole_number_is_expected_says_so():
    assert "whole number" in incorrect_message(3.5, 4)


def test_a_whole_float_is_accepted_for_an_integer():
    assert_equal("answer", 4.0, 4)
    assert_equal("answer", np.int64(4), 4)


def test_a_boolean_or_a_string_is_not_a_number():
    assert "should be a number" in incorrect_message(True, 1)
    assert "should be a number, but it is a str" in incorrect_message("4", 4)


def test_numbers_are_compared_within_the_tolerance():
    assert_equal("answer", 1.00001, 1.0, rtol=1e-4)
    assert_equal("answer", 0.5, 0.4, atol=0.2)
    assert "too large" in incorrect_message(1.001, 1.0, rtol=1e-4)


def test_numbers_say_whether_they_are_too_small_or_too_large():
    assert "`answer` = 2.5 is too small" in incorrect_message(2.5, 7.25)
    assert "`answer` = 9 is too large" in incorrect_message(9, 7)


def test_strings_are_compared_ignoring_surrounding_blanks():
    assert_equal("answer", "  Relu\n", "Relu")
    assert "is the string 'relu'" in incorrect_message("relu", "Relu")
    assert "should be a string, but it is a int" in incorrect_message(3, "Relu")


def test_dtypes_are_compared_as_dtypes():
    assert_equal("answer", "float32", np.float32)
    assert_equal("answer", np.dtype("int64"), np.dtype("int64"))
    assert "dtype `float64`" in incorrect_message(np.float64, np.float32)
    assert "should be a NumPy dtype" in incorrect_message(3.0, np.float32)


def test_arrays_report_a_wrong_shape():
    message = incorrect_message(np.zeros((2, 3), np.float32), np.zeros((3, 2), np.float32))
    assert "has shape (2, 3); expected shape (3, 2)" in message


def test_arrays_report_a_wrong_dtype():
    message = incorrect_message(np.zeros(3, np.float64), np.zeros(3, np.float32))
    assert "has dtype float64; expected dtype float32" in message


def test_float_arrays_report_how_far_the_values_are():
    message = incorrect_message(np.array([1.0, 2.5]), np.array([1.0, 2.0]))
    assert "values differ from the reference by up to 0.5" in message


def test_integer_arrays_report_how_many_entries_are_wrong():
    message = incorrect_message(np.array([1, 2, 3]), np.array([1, 0, 0]))
    assert "2 of its 3 entries are wrong" in message


def test_arrays_accept_lists_and_tolerance():
    assert_equal("answer", [[1.0, 2.0]], np.array([[1.0, 2.0]]))
    assert_equal("answer", np.array([1.0 + 1e-6]), np.array([1.0]), rtol=0, atol=1e-5)
    assert "should be an array of shape (2,)" in incorrect_message(3, np.zeros(2))


def test_sequences_report_their_length():
    assert "has 2 items; expected 3" in incorrect_message((1, 2), (1, 2, 3))
    assert "should be a tuple of 2 items, but it is a int" in incorrect_message(5, (1, 2))


def test_sequences_name_the_position_that_is_wrong():
    message = incorrect_message([1, 5, 3], (1, 3, 3))
    assert message.startswith("`answer[1]` = 5 is too large")


def test_a_shape_given_as_an_array_is_compared_as_a_sequence():
    assert_equal("shape", np.array([1, 64]), (1, 64))


def test_sets_ignore_order_and_duplicates_but_not_members():
    assert_equal("ops", ["Relu", "Add", "Relu"], {"Add", "Relu"})
    assert "has 1 distinct items; expected 2" in incorrect_message(["Add"], {"Add", "Relu"})
    assert "not the right items" in incorrect_message({"Add", "Gemm"}, {"Add", "Relu"})
    assert "should be a set" in incorrect_message("Add", {"Add"})


@pytest.mark.parametrize(
    "actual, expected, secret",
    [
        (False, True, "True"),
        (41.5, 7919, "7919"),
        (12.0, 7919.25, "7919.25"),
        ("Gemm", "MatMulInteger", "MatMulInteger"),
        (np.array([30.0, 0.0]), np.array([31.5, 0.0]), "31.5"),
        ([1, 2, 3], [1, 2, 98765], "98765"),
        ({"Add", "Relu"}, {"Add", "Softmax"}, "Softmax"),
        (np.float64, np.float16, "float16"),
    ],
)
def test_incorrect_messages_never_contain_the_expected_value(actual, expected, secret):
    assert secret not in incorrect_message(actual, expected)


# ---------------------------------------------------------------------------
# Problem kinds
# ---------------------------------------------------------------------------

class OpsetAnswer(EqualityProblem):
    vars = ("opset",)
    expected = 21
    hints = ("Look at `model.opset_import`.", "The default domain is the empty string.")
    solution = "opset = model.opset_import[0].version"


class ShapeAndDtype(EqualityProblem):
    vars = ("shape", "dtype")
    expected = ((1, 64), np.float32)


class ComputedMean(EqualityProblem):
    vars = ("mean",)
    rtol = 1e-3

    def expected_value(self):
        return float(np.mean([1.0, 2.0, 4.0]))


def test_equality_problem_passes_the_reference_and_fails_a_wrong_answer():
    assert_check_passed(OpsetAnswer, {"opset": 21})
    assert_check_failed(OpsetAnswer, {"opset": 13}, "`opset` = 13 is too small")
    assert_check_unattempted(OpsetAnswer)


def test_equality_problem_with_several_variables_names_the_wrong_one():
    assert_check_passed(ShapeAndDtype, {"shape": (1, 64), "dtype": np.float32})
    assert_check_failed(ShapeAndDtype, {"shape": (1, 64), "dtype": np.float64}, "`dtype`")
    assert_check_failed(ShapeAndDtype, {"shape": (64,), "dtype": np.float32}, "`shape` has 1 items; expected 2")


def test_equality_problem_uses_a_computed_expected_value():
    assert_check_passed(ComputedMean, {"mean": 2.3334})
    assert_check_failed(ComputedMean, {"mean": 2.5}, "too large")


def test_a_placeholder_in_any_of_several_variables_is_not_attempted():
    assert_check_unattempted(ShapeAndDtype, {"shape": (1, ____), "dtype": np.float32})


class Double(FunctionProblem):
    vars = ("double",)
    test_cases = [((2,), 4), ((-1.5,), -3.0)]


def test_function_problem_passes_the_reference():
    def double(x):
        return 2 * x

    assert_check_passed(Double, {"double": double})


def test_function_problem_rejects_something_that_is_not_callable():
    assert_check_failed(Double, {"double": 4}, "`double` should be a function, but it is a int")


def test_function_problem_reports_the_call_that_raised_and_the_exception():
    def double(x):
        return 2 * x / 0

    assert_check_failed(Double, {"double": double}, "`double(2)` raised ZeroDivisionError")


@pytest.mark.parametrize("library_message, ending", [
    ("operands could not be broadcast together with shapes (32,3,8,8) (3,) ", "shapes (32,3,8,8) (3,)."),
    ("division by zero.", "ZeroDivisionError: division by zero."),
])
def test_a_spliced_library_message_ends_in_one_full_stop_without_a_stray_space(library_message, ending):
    def double(x):
        raise ZeroDivisionError(library_message) if "zero" in library_message else ValueError(library_message)

    result = evaluate(Double, {"double": double})
    assert result.status == "incorrect" and result.message.endswith(ending), result.message


def test_function_problem_detects_a_missing_return():
    def double(x):
        2 * x

    assert_check_failed(Double, {"double": double}, "Did you forget a `return` statement?")


def test_function_problem_returning_the_placeholder_is_not_attempted():
    def double(x):
        return ____

    assert_check_unattempted(Double, {"double": double})


def test_function_problem_names_the_call_that_gave_a_wrong_value():
    def double(x):
        return x + 2

    assert_check_failed(Double, {"double": double}, "`double(-1.5)` = 0.5 is too large")


def test_function_problem_gives_each_call_its_own_copy_of_the_arguments():
    class Append(FunctionProblem):
        vars = ("append_one",)
        test_cases = [(([1],), [1, 1]), (([1],), [1, 1])]

    def append_one(items):
        items.append(1)
        return items

    assert_check_passed(Append, {"append_one": append_one})


class Explain(ThoughtExperiment):
    solution = "Because exporters and runtimes move at different speeds."


def test_thought_experiment_is_uncheckable():
    assert evaluate(Explain, {}).status == "uncheckable"


# ---------------------------------------------------------------------------
# The view
# ---------------------------------------------------------------------------

def view_of(problem, **answers) -> ProblemView:
    return ProblemView(problem(), "q1", "99_test", answers)


def test_a_variable_that_is_not_defined_is_not_attempted():
    result = view_of(OpsetAnswer).evaluate()
    assert result.status == "not_attempted"
    assert "`opset` is not defined yet" in result.message


def test_none_as_an_answer_is_incorrect_not_unattempted():
    assert_check_failed(OpsetAnswer, {"opset": None}, "should be a number, but it is a NoneType")


def test_a_checker_that_crashes_reports_incorrect_instead_of_raising():
    class Fragile(EqualityProblem):
        vars = ("value",)

        def check(self, value):
            return 1 / value

    assert_check_failed(Fragile, {"value": 0}, "Checking `value` failed with ZeroDivisionError")


def test_check_records_progress_only_when_correct():
    view_of(OpsetAnswer, opset=13).check()
    view_of(OpsetAnswer, opset=____).check()
    assert progress.load_progress()["passed"] == {}
    view_of(OpsetAnswer, opset=21).check()
    assert list(progress.load_progress()["passed"]) == ["99_test.OpsetAnswer"]


def test_check_prints_plain_text_outcomes_in_a_console(capsys):
    view_of(OpsetAnswer, opset=21).check()
    view_of(OpsetAnswer, opset=13).check()
    view_of(OpsetAnswer, opset=____).check()
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "Correct (q1): Well done."
    assert lines[1].startswith("Incorrect (q1): `opset` = 13 is too small.")
    assert lines[2].startswith("Not attempted (q1): Replace the `____` in `opset`")
    assert not any("**" in line or "✅" in line for line in lines)


MALFORMED_ENTRIES = {"a string": "passed", "null": None, "a number": 3, "a list": [1, 2],
                     "a string count": {"count": "three"}, "a null count": {"count": None},
                     "a boolean count": {"count": True}, "no count": {"first": "2026-01-01T00:00:00"}}


@pytest.mark.parametrize("entry", MALFORMED_ENTRIES.values(), ids=MALFORMED_ENTRIES.keys())
def test_a_correct_answer_is_shown_and_recorded_despite_a_malformed_progress_entry(tmp_path, capsys, entry):
    passed = {"99_test.OpsetAnswer": entry}
    (tmp_path / "progress.json").write_text(json.dumps({"version": 1, "passed": passed}))
    view_of(OpsetAnswer, opset=21).check()
    captured = capsys.readouterr()
    assert captured.out == "Correct (q1): Well done.\n"
    (warning,) = captured.err.splitlines()
    assert warning.startswith("labsupport: warning: your progress file ")
    assert "'99_test.OpsetAnswer'" in warning
    count = json.loads((tmp_path / "progress.json").read_text())["passed"]["99_test.OpsetAnswer"]["count"]
    assert count == (2 if isinstance(entry, dict) else 1)


def test_a_correct_answer_is_shown_when_progress_cannot_be_saved(tmp_path, capsys):
    (tmp_path / "progress.json").mkdir()
    view_of(OpsetAnswer, opset=21).check()
    captured = capsys.readouterr()
    assert captured.out == "Correct (q1): Well done.\n"
    (warning,) = captured.err.splitlines()
    assert warning.startswith("labsupport: warning: this pass was not recorded: could not read your progress file")


def test_outcomes_hints_and_solutions_in_jupyter_have_a_word_beside_every_icon(monkeypatch):
    published = capture_jupyter(monkeypatch)
    view_of(OpsetAnswer, opset=21).check()
    view_of(OpsetAnswer, opset=13).check()
    view_of(OpsetAnswer, opset=____).check()
    view_of(Explain).check()
    view_of(OpsetAnswer).hint()
    view_of(OpsetAnswer).solution()
    markdowns = [bundle["text/markdown"] for bundle in published]
    assert [markdown.split(" (q1)")[0] for markdown in markdowns[:4]] == [
        "✅ **Correct**", "❌ **Incorrect**", "✏️ **Not attempted**", "💭 **Your own words**"]
    for markdown in markdowns:
        assert_every_icon_has_a_word(markdown)
    assert all("✅" not in bundle["text/plain"] for bundle in published)


def test_next_step_advice_names_the_hint_command(capsys):
    view_of(OpsetAnswer, opset=13).check()
    view_of(OpsetAnswer).check()
    out = capsys.readouterr().out
    assert out.count("`q1.hint()`") == 2
    assert "`q1.solution()`" in out


def test_strict_mode_raises_on_an_incorrect_answer(monkeypatch, capsys):
    monkeypatch.setenv("LABSUPPORT_STRICT", "1")
    with pytest.raises(IncorrectAnswerError, match="99_test q1"):
        view_of(OpsetAnswer, opset=13).check()
    assert "Incorrect (q1)" in capsys.readouterr().out


def test_strict_mode_lets_an_unattempted_exercise_through(monkeypatch, capsys):
    monkeypatch.setenv("LABSUPPORT_STRICT", "1")
    view_of(OpsetAnswer, opset=____).check()
    view_of(Explain).check()
    assert "Not attempted (q1)" in capsys.readouterr().out


def test_expect_solved_mode_raises_on_an_unattempted_exercise(monkeypatch, capsys):
    monkeypatch.setenv("LABSUPPORT_EXPECT_SOLVED", "1")
    with pytest.raises(IncorrectAnswerError, match="is not answered"):
        view_of(OpsetAnswer, opset=____).check()
    view_of(Explain).check()


def test_hint_numbers_are_clamped_to_the_hints_available(capsys):
    view = view_of(OpsetAnswer)
    view.hint()
    view.hint(0)
    view.hint(99)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "Hint 1 (`q1.hint(2)` for another): Look at `model.opset_import`."
    assert lines[1] == lines[0]
    assert lines[2] == "Hint 2: The default domain is the empty string."


def test_a_hint_number_that_is_not_a_number_is_explained(capsys):
    view_of(OpsetAnswer).hint("next")
    assert capsys.readouterr().out.strip() == "q1.hint() takes a hint number such as 1 or 2."


def test_a_problem_without_hints_says_so(capsys):
    view_of(ShapeAndDtype).hint()
    assert capsys.readouterr().out.strip() == "There is no hint for q1."


def test_solution_prints_the_model_answer(capsys):
    view_of(OpsetAnswer).solution()
    assert capsys.readouterr().out == "Solution (q1):\nopset = model.opset_import[0].version\n"


def test_bind_problems_names_the_views_in_order():
    namespace = {"opset": 21}
    views = bind_problems("99_test", {"q1": OpsetAnswer, "q2": ShapeAndDtype, "q3": Explain}, namespace)
    assert [view.name for view in views] == ["q1", "q2", "q3"]
    assert views[1].problem_id == "99_test.ShapeAndDtype"
    assert views[0].evaluate().is_correct


def test_a_view_reads_answers_assigned_after_binding():
    namespace: dict = {}
    (q1,) = bind_problems("99_test", {"q1": OpsetAnswer}, namespace)
    namespace["opset"] = 21
    assert q1.evaluate().is_correct


def test_repr_of_a_view_shows_the_prompt_and_the_commands():
    class Prompted(OpsetAnswer):
        prompt = "read the opset of the model"

    text = repr(view_of(Prompted))
    assert text.startswith("Exercise q1: read the opset of the model")
    assert "q1.check(), q1.hint(), q1.solution()" in text


def test_a_message_without_a_full_stop_gets_one_before_the_next_step(capsys):
    class Spliced(EqualityProblem):
        vars = ("answer",)

        def check(self, answer):
            raise Incorrect("the checker refuses: w in initializer but not in graph input")

    ProblemView(Spliced(), "q1", "lab", {"answer": 1}).check()
    assert "but not in graph input. Fix it and run the cell again" in capsys.readouterr().out


@pytest.mark.parametrize("problems, fragment", [
    ({"Q1": OpsetAnswer}, "exercise label 'Q1' for OpsetAnswer should look like 'q7'"),
    ({"q0": OpsetAnswer}, "exercise label 'q0'"),
    ({"q1": OpsetAnswer, "q2": OpsetAnswer}, "a problem class is listed twice"),
])
def test_a_malformed_label_table_is_refused_when_the_lab_module_is_imported(problems, fragment):
    with pytest.raises(ValueError, match=re.escape(fragment)):
        make_binder("99_test", problems)
