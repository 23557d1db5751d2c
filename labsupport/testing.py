"""Helpers for testing exercises: every problem is checked with its reference answer,
with realistic wrong answers and with the placeholder.

Used by ``tests/``. ``answers`` maps each of the problem's variables to a value, as a
notebook's namespace would.
"""

from __future__ import annotations

import ast
import difflib
import re
from collections.abc import Mapping
from typing import Any

from labsupport.checking import CheckResult, Problem, ProblemView

__all__ = ["assert_check_failed", "assert_check_passed", "assert_check_unattempted", "evaluate", "hint_leaks",
           "solution_answer"]


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


_CODE_TOKEN = re.compile(r"[A-Za-z_]\w*|\d+(?:\.\d+)?|[^\sA-Za-z_\d'\"`]")
_COMPOUND = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.If, ast.For, ast.While, ast.With, ast.Try)
_MIN_STATEMENT_TOKENS = 5
_LEAK_COVERAGE = 0.7


def _solution_statements(code: str) -> list[str]:
    """Every simple statement of the solution (assignments, calls, returns…), nested ones included."""
    tree = ast.parse(code)
    return [ast.get_source_segment(code, node) or "" for node in ast.walk(tree)
            if isinstance(node, ast.stmt) and not isinstance(node, _COMPOUND)]


def hint_leaks(problem: type[Problem]) -> list[tuple[int, str]]:
    """The (hint number, solution statement) pairs where a hint spells out a statement of the solution.

    A hint nudges; ``solution()`` answers. A statement of five or more code tokens counts as
    leaked when runs of at least three consecutive tokens of it, in order, cover 70 % of it in
    the hint. Quotes, backticks and spacing are ignored, and so are qualifiers the hint adds
    (``onnx.helper.make_…`` still matches ``helper.make_…``). Naming a function is fine; writing
    the call with its arguments is not.
    """
    if not problem.solution_is_code:
        return []
    statements = [(statement, _CODE_TOKEN.findall(statement)) for statement in _solution_statements(problem.solution)]
    leaks = []
    for number, hint in enumerate(problem.hints, start=1):
        hint_tokens = _CODE_TOKEN.findall(hint)
        for statement, tokens in statements:
            if len(tokens) < _MIN_STATEMENT_TOKENS:
                continue
            matcher = difflib.SequenceMatcher(None, tokens, hint_tokens, autojunk=False)
            covered = sum(block.size for block in matcher.get_matching_blocks() if block.size >= 3)
            if covered >= _LEAK_COVERAGE * len(tokens):
                leaks.append((number, statement))
    return leaks
