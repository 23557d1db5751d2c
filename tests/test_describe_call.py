"""A FunctionProblem's ``describe_call`` names the call in every message, wrong values included."""

import numpy as np

from labsupport.checking import FunctionProblem
from labsupport.testing import assert_check_failed, evaluate


class _Normalise(FunctionProblem):
    vars = ("normalise",)
    test_cases = (((np.arange(64, dtype=np.float32).reshape(8, 8),),
                   np.arange(64, dtype=np.float32).reshape(8, 8) / 63),)

    def describe_call(self, args):
        return "`normalise(images)` on an 8×8 image"


def test_a_wrong_value_is_named_by_describe_call_not_by_the_arguments():
    result = evaluate(_Normalise, {"normalise": lambda images: images / 64})
    assert result.status == "incorrect"
    assert result.message.startswith("`normalise(images)` on an 8×8 image has the right shape")
    assert "array(" not in result.message and "0." not in result.message.split("up to")[0]


def test_a_wrong_shape_is_named_by_describe_call():
    assert_check_failed(_Normalise, {"normalise": lambda images: images[:4] / 63},
                        "`normalise(images)` on an 8×8 image has shape (4, 8)")


def test_an_item_of_a_described_sequence_result_says_which_item():
    class Pair(FunctionProblem):
        vars = ("pair",)
        test_cases = (((3,), (3, 9)),)

        def describe_call(self, args):
            return "`pair(3)`"

    assert_check_failed(Pair, {"pair": lambda x: (x, x * 2)}, "item 1 of `pair(3)` = 6 is too small")


def test_without_an_override_the_call_is_written_out():
    class Square(FunctionProblem):
        vars = ("square",)
        test_cases = (((3,), 9),)

    assert_check_failed(Square, {"square": lambda x: x * 2}, "`square(3)` = 6 is too small")
