"""Helpers for testing exercises: every problem is checked with its reference answer,
with realistic wrong answers and with the placeholder.

Used by ``tests/``. ``answers`` maps each of the problem's variables to a value, as a
notebook's namespace would.
"""

from __future__ import annotations

from typing import Any, Mapping

from labsupport.checking import CheckResult, Problem, ProblemView

__all__ = ["assert_check_failed", "assert_check_passed", "assert_check_unattempted", "evaluate", "solution_answer"]


def evaluate(problem: type[Problem] | Problem, answers: Mapping[str, Any], lab: str = "test") -> CheckResult:
    """Judge ``answers`` with ``problem`` without showing or recording anything."""
    instance = problem() if isinstance(problem, type) else problem
    return ProblemView(instance, "q1", lab, dict(answers)).evaluate()


def assert_check_passed(problem: type[Problem] | Problem, answers: Mapping[str, Any]) -> None:
    result = evaluate(problem, answers)
    assert result.status == "correct", f"expected a pass, got {result.status}: {result.message}"


def assert_check_failed(problem: type[Problem] | Problem, answers: Mapping[str, Any], fragment: str = "") -> None:
    """The answer must be Incorrect and the message must contain ``fragment``."""
    result = evaluate(problem, answers)
    assert result.status == "incorrect", f"expected Incorrect, got {result.status}: {result.message}"
    assert fragment in result.message, f"{fragment!r} is not in the message {result.message!r}"


def assert_check_unattempted(problem: type[Problem] | Problem, answers: Mapping[str, Any] | None = None) -> None:
    """With the placeholder in every variable (the default) the outcome is Not attempted."""
    from labsupport.checking import ____

    instance = problem() if isinstance(problem, type) else problem
    answers = {name: ____ for name in instance.vars} if answers is None else answers
    result = evaluate(instance, answers)
    assert result.status == "not_attempted", f"expected Not attempted, got {result.status}: {result.message}"


def solution_answer(problem: type[Problem], **context: Any) -> Any:
    """The first variable a problem's declared ``solution`` code defines, run for real.

    Tests use it as the reference answer, so the solution learners are shown is the one
    proven to pass. ``context`` supplies names the code uses besides ``np`` (e.g. ``onnx``).
    """
    import numpy

    namespace: dict[str, Any] = {"np": numpy, **context}
    exec(compile(problem.solution, f"<{problem.__name__}.solution>", "exec"), namespace)
    return namespace[problem.vars[0]]
