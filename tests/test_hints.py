"""Hints nudge; ``solution()`` answers: no hint of any exercise spells out its solution's code."""

import pytest

from labsupport.checking import EqualityProblem
from labsupport.exercises import iter_problems
from labsupport.testing import hint_leaks

CODE_PROBLEMS = [(lab, problem) for lab, problem in iter_problems() if problem.solution_is_code]


@pytest.mark.parametrize("lab, problem", CODE_PROBLEMS,
                         ids=[f"{lab}.{problem.__name__}" for lab, problem in CODE_PROBLEMS])
def test_no_hint_contains_the_solutions_code(lab, problem):
    leaks = hint_leaks(problem)
    assert not leaks, "\n".join(f"{lab}.{problem.__name__}.hints[{number - 1}] spells out `{statement}`: "
                                "say what to do, not the code" for number, statement in leaks)


class _Leaky(EqualityProblem):
    vars = ("info",)
    solution = ('info = helper.make_value_info("p", '
                'helper.make_sequence_type_proto(helper.make_tensor_type_proto(1, [])))')
    hints = ("Build it from the inside out.",
             "`onnx.helper.make_value_info('p', onnx.helper.make_sequence_type_proto("
             "onnx.helper.make_tensor_type_proto(1, [])))`")


class _Nudging(_Leaky):
    hints = ("Build it from the inside out.",
             "`helper.make_sequence_type_proto` wraps an element type; `helper.make_value_info` names the result.")


def test_a_hint_that_writes_the_call_out_with_other_qualifiers_and_quotes_is_a_leak():
    assert [number for number, _ in hint_leaks(_Leaky)] == [2]


def test_a_hint_that_names_the_functions_without_their_arguments_is_not_a_leak():
    assert hint_leaks(_Nudging) == []


def test_a_loop_body_statement_written_out_in_a_hint_is_a_leak():
    class Strides(EqualityProblem):
        vars = ("row_major_strides",)
        solution = ("def row_major_strides(shape, itemsize):\n    strides, step = [], itemsize\n"
                    "    for size in reversed(shape):\n        strides.insert(0, step)\n        step *= size\n"
                    "    return tuple(strides)\n")
        hints = ("Walk the shape backwards keeping a running product.", "Then `strides.insert(0, step)`.")

    assert [number for number, _ in hint_leaks(Strides)] == [2]
