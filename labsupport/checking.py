"""Exercise checking: problems are declared as small classes, notebooks get a view.

Introduced in lab 00. A *problem* knows which notebook variables it reads, how to
judge them, its hints and its solution. A *view* (what a notebook calls ``q1``) reads
the variables from the notebook's namespace and offers ``check()``, ``hint(n)`` and
``solution()``.

A problem's ``check`` returns normally when the answer is right and raises
:class:`NotAttempted`, :class:`Incorrect` or :class:`Uncheckable` otherwise. Messages
name the variable and what was expected (a shape, an opset, an op type) without
giving the answer away.

Environment variables (set by the test suite, never needed by learners):

``LABSUPPORT_STRICT=1``
    An Incorrect outcome raises :class:`IncorrectAnswerError` after it is shown, so a
    wrong solution fails CI. Not attempted never raises.
``LABSUPPORT_EXPECT_SOLVED=1``
    Used for ``solutions/`` only: a Not attempted outcome raises too, so a solution
    notebook that forgot to answer an exercise fails CI.
"""

from __future__ import annotations

import copy
import numbers
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from labsupport import display, progress

__all__ = [
    "____",
    "CheckResult",
    "EqualityProblem",
    "FunctionProblem",
    "Incorrect",
    "IncorrectAnswerError",
    "LabExercises",
    "NotAttempted",
    "Problem",
    "ProblemView",
    "ThoughtExperiment",
    "Uncheckable",
    "assert_equal",
    "bind_problems",
    "call_learner",
    "contains_placeholder",
    "is_strict",
    "make_binder",
]


class _Placeholder:
    """The blank a learner replaces. Its only instance is ``____``."""

    _instance: _Placeholder | None = None

    def __new__(cls) -> _Placeholder:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "____"

    def __copy__(self) -> _Placeholder:
        return self

    def __deepcopy__(self, memo: dict) -> _Placeholder:
        return self


____ = _Placeholder()


def contains_placeholder(value: Any) -> bool:
    """True if ``value`` is the placeholder or a list/tuple/set/dict holding one."""
    if value is ____:
        return True
    if isinstance(value, (list, tuple, set, frozenset)):
        return any(contains_placeholder(item) for item in value)
    if isinstance(value, dict):
        return any(contains_placeholder(k) or contains_placeholder(v) for k, v in value.items())
    return False


class CheckOutcome(Exception):
    """Base of the outcomes a problem's ``check`` may raise."""


class NotAttempted(CheckOutcome):
    """The learner has not filled in the blank yet."""


class Incorrect(CheckOutcome):
    """The answer is wrong; the message says what was expected and what to do."""


class Uncheckable(CheckOutcome):
    """There is nothing to check automatically (a question for the learner's own words)."""


class IncorrectAnswerError(AssertionError):
    """Raised in strict mode so that a wrong solution fails the notebook run."""


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


def is_strict() -> bool:
    """True when ``LABSUPPORT_STRICT`` asks for Incorrect outcomes to raise."""
    return _env_flag("LABSUPPORT_STRICT")


def _expect_solved() -> bool:
    return _env_flag("LABSUPPORT_EXPECT_SOLVED")


# ---------------------------------------------------------------------------
# Comparing values without leaking them
# ---------------------------------------------------------------------------

def _type_name(value: Any) -> str:
    return type(value).__name__


def _named(name: str) -> str:
    """How a message names the value: a bare variable name in backticks, a description as it is."""
    return name if "`" in name else f"`{name}`"


def _item_name(name: str, position: int) -> str:
    return f"item {position} of {name}" if "`" in name else f"{name}[{position}]"


def assert_equal(name: str, actual: Any, expected: Any, *, rtol: float = 1e-7, atol: float = 0.0) -> None:
    """Raise :class:`Incorrect` unless ``actual`` matches ``expected``.

    Numbers and arrays are compared with ``rtol``/``atol``; sequences position by
    position; everything else with ``==``. Messages name ``name`` and the kind of
    value expected, never the expected value itself. ``name`` is a variable name, shown in
    backticks, or a description that already carries its own (``"`f(x)` on the digits"``).
    """
    if isinstance(expected, (bool, np.bool_)):
        if not isinstance(actual, (bool, np.bool_)):
            raise Incorrect(f"{_named(name)} should be True or False, but it is a {_type_name(actual)}.")
        if bool(actual) != bool(expected):
            raise Incorrect(f"{_named(name)} is {bool(actual)}, which is not right.")
        return
    if isinstance(expected, np.dtype) or (isinstance(expected, type) and issubclass(expected, np.generic)):
        try:
            actual_dtype = np.dtype(actual)
        except TypeError:
            raise Incorrect(f"{_named(name)} should be a NumPy dtype such as `np.float32`, "
                            f"but it is a {_type_name(actual)}.") from None
        if actual_dtype != np.dtype(expected):
            raise Incorrect(f"{_named(name)} is the dtype `{actual_dtype}`, which is not the one expected.")
        return
    if isinstance(expected, numbers.Number):
        _assert_number(name, actual, expected, rtol=rtol, atol=atol)
        return
    if isinstance(expected, str):
        if not isinstance(actual, str):
            raise Incorrect(f"{_named(name)} should be a string, but it is a {_type_name(actual)}.")
        if actual.strip() != expected.strip():
            raise Incorrect(f"{_named(name)} is the string {actual!r}, which is not the one expected.")
        return
    if isinstance(expected, np.ndarray):
        _assert_array(name, actual, expected, rtol=rtol, atol=atol)
        return
    if isinstance(expected, (tuple, list)):
        _assert_sequence(name, actual, expected, rtol=rtol, atol=atol)
        return
    if isinstance(expected, (set, frozenset)):
        if not isinstance(actual, (set, frozenset, list, tuple)):
            raise Incorrect(f"{_named(name)} should be a set, but it is a {_type_name(actual)}.")
        actual_set = set(actual)
        if len(actual_set) != len(expected):
            raise Incorrect(f"{_named(name)} has {len(actual_set)} distinct items; expected {len(expected)}.")
        if actual_set != set(expected):
            raise Incorrect(f"{_named(name)} has the right number of items, but not the right items.")
        return
    if actual != expected:
        raise Incorrect(f"{_named(name)} is not the value expected.")


def _assert_number(name: str, actual: Any, expected: numbers.Number, *, rtol: float, atol: float) -> None:
    if isinstance(actual, (bool, np.bool_)) or not isinstance(actual, (numbers.Number, np.generic)):
        raise Incorrect(f"{_named(name)} should be a number, but it is a {_type_name(actual)}.")
    if isinstance(expected, numbers.Integral) and not float(actual).is_integer():
        raise Incorrect(f"{_named(name)} should be a whole number, but it is {actual!r}.")
    if not np.isclose(float(actual), float(expected), rtol=rtol, atol=atol):
        if float(actual) < float(expected):
            raise Incorrect(f"{_named(name)} = {actual!r} is too small.")
        raise Incorrect(f"{_named(name)} = {actual!r} is too large.")


def _assert_sequence(name: str, actual: Any, expected: Sequence, *, rtol: float, atol: float) -> None:
    if isinstance(actual, np.ndarray):
        actual = actual.tolist()
    if not isinstance(actual, (tuple, list)):
        raise Incorrect(f"{_named(name)} should be a {_type_name(expected)} of {len(expected)} items, "
                        f"but it is a {_type_name(actual)}.")
    if len(actual) != len(expected):
        raise Incorrect(f"{_named(name)} has {len(actual)} items; expected {len(expected)}.")
    for position, (got, want) in enumerate(zip(actual, expected)):
        assert_equal(_item_name(name, position), got, want, rtol=rtol, atol=atol)


def _assert_array(name: str, actual: Any, expected: np.ndarray, *, rtol: float, atol: float) -> None:
    if not isinstance(actual, (np.ndarray, list, tuple)) and not hasattr(actual, "__array__"):
        raise Incorrect(f"{_named(name)} should be an array of shape {expected.shape}, "
                        f"but it is a {_type_name(actual)}.")
    actual_array = np.asarray(actual)
    if actual_array.shape != expected.shape:
        raise Incorrect(f"{_named(name)} has shape {actual_array.shape}; expected shape {expected.shape}.")
    if isinstance(actual, np.ndarray) and actual_array.dtype != expected.dtype:
        raise Incorrect(f"{_named(name)} has dtype {actual_array.dtype}; expected dtype {expected.dtype}.")
    if expected.dtype.kind in "fc":
        if not np.allclose(actual_array, expected, rtol=rtol, atol=atol, equal_nan=True):
            worst = float(np.nanmax(np.abs(actual_array.astype(np.float64) - expected.astype(np.float64))))
            raise Incorrect(f"{_named(name)} has the right shape, but its values differ from the reference "
                            f"by up to {worst:.3g}.")
    elif not np.array_equal(actual_array, expected):
        wrong = int(np.sum(actual_array != expected))
        raise Incorrect(f"{_named(name)} has the right shape, but {wrong} of its {expected.size} entries are wrong.")


# ---------------------------------------------------------------------------
# Problems
# ---------------------------------------------------------------------------

class Problem:
    """One exercise. Subclasses set ``vars`` and implement ``check``.

    Attributes:
        vars: names of the notebook variables the check reads, in argument order.
        hints: hints in the order ``hint(1)``, ``hint(2)`` … reveal them.
        solution: the model answer (Python code unless ``solution_is_code`` is False).
        prompt: one line saying what the exercise asks, shown by ``repr(qN)``.
    """

    vars: tuple[str, ...] = ()
    hints: tuple[str, ...] = ()
    solution: str = ""
    solution_is_code: bool = True
    prompt: str = ""

    def check(self, *values: Any) -> None:
        raise NotImplementedError(f"{type(self).__name__} does not define check()")

    @classmethod
    def problem_id(cls, lab: str) -> str:
        """The stable id progress is recorded under, e.g. ``02_format_internals.FlatIndex``."""
        return f"{lab}.{cls.__name__}"


class EqualityProblem(Problem):
    """The variable must equal ``expected`` (numbers within ``rtol``/``atol``).

    Override :meth:`expected_value` when the reference is computed rather than fixed.
    """

    expected: Any = None
    rtol: float = 1e-7
    atol: float = 0.0

    def expected_value(self) -> Any:
        return self.expected

    def check(self, *values: Any) -> None:
        expected = self.expected_value()
        if len(self.vars) == 1:
            assert_equal(self.vars[0], values[0], expected, rtol=self.rtol, atol=self.atol)
            return
        for name, value, want in zip(self.vars, values, expected):
            assert_equal(name, value, want, rtol=self.rtol, atol=self.atol)


def _sentence(text: str) -> str:
    """``text`` ending as one sentence: trailing spaces dropped, a full stop added unless it ends with one.

    A library's message spliced in at the end may end with a space (NumPy's broadcasting error
    does) or with its own full stop; either way the sentence ends once, without a stray space.
    """
    text = text.rstrip()
    return text if not text or text.endswith((".", "!", "?")) else text + "."


def call_learner(fn: Callable, args: tuple, *, name: str, call: str, copy_arguments: bool = True,
                 must_return: bool = True) -> Any:
    """Call a learner's function ``name`` safely; ``call`` is how messages name the call (in backticks).

    An exception it raises, a placeholder it returns or a missing ``return`` becomes the outcome
    (Incorrect or Not attempted) instead of a traceback. The arguments are deep-copied so that a
    function that changes them cannot spoil the next case; pass ``copy_arguments=False`` for
    arguments that cannot be copied (ONNX Runtime sessions), built afresh for each call.
    """
    try:
        actual = fn(*(copy.deepcopy(args) if copy_arguments else args))
    except Exception as error:  # the learner's code failed: report it, do not crash
        raise Incorrect(_sentence(f"{call} raised {type(error).__name__}: {error}")) from None
    if contains_placeholder(actual):
        raise NotAttempted(f"`{name}` still returns the placeholder `____`.")
    if actual is None and must_return:
        raise Incorrect(f"{call} returned None. Did you forget a `return` statement?")
    return actual


class FunctionProblem(Problem):
    """The variable must be a function that returns the expected value on each test case.

    ``test_cases`` holds ``(args, expected)`` pairs; override :meth:`cases` to compute them.
    """

    test_cases: Sequence[tuple[tuple, Any]] = ()
    rtol: float = 1e-7
    atol: float = 0.0

    def cases(self) -> Sequence[tuple[tuple, Any]]:
        return self.test_cases

    def describe_call(self, args: tuple) -> str:
        """How messages name one call, in backticks; override when the arguments are large."""
        return f"`{self._call_text(args)}`"

    def _call_text(self, args: tuple) -> str:
        return f"{self.vars[0]}({', '.join(repr(a) for a in args)})"

    def require_function(self, fn: Any) -> None:
        if not callable(fn):
            raise Incorrect(f"`{self.vars[0]}` should be a function, but it is a {_type_name(fn)}.")

    def call_answer(self, fn: Callable, args: tuple, *, must_return: bool = True) -> Any:
        """Call the learner's function on a copy of ``args``, as :func:`call_learner` does."""
        return call_learner(fn, args, name=self.vars[0], call=self.describe_call(args), must_return=must_return)

    def check(self, fn: Any) -> None:
        self.require_function(fn)
        for args, expected in self.cases():
            actual = self.call_answer(fn, args, must_return=expected is not None)
            assert_equal(self.describe_call(args), actual, expected, rtol=self.rtol, atol=self.atol)


class ThoughtExperiment(Problem):
    """A question answered in the learner's own words; ``solution()`` shows a model answer."""

    solution_is_code = False

    def check(self, *values: Any) -> None:
        raise Uncheckable("This question is answered in your own words, so there is nothing to check.")


# ---------------------------------------------------------------------------
# The view a notebook sees
# ---------------------------------------------------------------------------

@dataclass(frozen=True)
class CheckResult:
    """What one ``check()`` concluded: status is correct, incorrect, not_attempted or uncheckable."""

    status: str
    message: str

    @property
    def is_correct(self) -> bool:
        return self.status == "correct"


class ProblemView:
    """What a notebook calls ``q1``: ``check()``, ``hint(n)`` and ``solution()``."""

    def __init__(self, problem: Problem, name: str, lab: str, namespace: Mapping[str, Any]) -> None:
        self.problem = problem
        self.name = name
        self.lab = lab
        self._namespace = namespace

    @property
    def problem_id(self) -> str:
        return self.problem.problem_id(self.lab)

    def __repr__(self) -> str:
        prompt = f": {self.problem.prompt}" if self.problem.prompt else ""
        module = type(self.problem).__module__
        lab_file = module.replace(".", "/") + ".py"
        test_file = f"tests/test_exercises_{module.rsplit('.', 1)[-1]}.py"
        return (f"Exercise {self.name}{prompt}\n"
                f"Problem {type(self.problem).__name__} in {lab_file}, tested in {test_file}\n"
                f"Commands: {self.name}.check(), {self.name}.hint(), {self.name}.solution()")

    def evaluate(self) -> CheckResult:
        """Run the check and return its outcome without showing or recording anything."""
        values = []
        for var in self.problem.vars:
            if var not in self._namespace:
                return CheckResult("not_attempted",
                                   f"`{var}` is not defined yet: fill in and run the cell that sets it.")
            values.append(self._namespace[var])
        if any(contains_placeholder(value) for value in values):
            names = ", ".join(f"`{var}`" for var in self.problem.vars)
            return CheckResult("not_attempted", f"Replace the `____` in {names} with your answer and run the cell.")
        try:
            self.problem.check(*values)
        except NotAttempted as outcome:
            return CheckResult("not_attempted", str(outcome))
        except Incorrect as outcome:
            return CheckResult("incorrect", str(outcome))
        except Uncheckable as outcome:
            return CheckResult("uncheckable", str(outcome))
        except Exception as error:  # an answer so unexpected that judging it failed
            names = ", ".join(f"`{var}`" for var in self.problem.vars)
            return CheckResult("incorrect", _sentence(f"Checking {names} failed with {type(error).__name__}: {error}"))
        return CheckResult("correct", "")

    def _next_step(self, status: str) -> str:
        if status == "incorrect":
            return f"Fix it and run the cell again; `{self.name}.hint()` gives a nudge."
        if status == "not_attempted":
            return f"Stuck? `{self.name}.hint()` gives a nudge and `{self.name}.solution()` the answer."
        if status == "uncheckable":
            return f"Write your answer, then compare it with `{self.name}.solution()`."
        return ""

    def check(self) -> None:
        """Judge the answer, show the outcome and record a pass in the learner's progress."""
        result = self.evaluate()
        icon, label = display.CHECK_LABELS[result.status]
        message = _sentence(result.message)  # a library's message spliced in at the end has no full stop of its own
        text = " ".join(part for part in (message, self._next_step(result.status)) if part)
        if result.is_correct:
            text = "Well done."
        display.show(f"{icon} **{label}** ({self.name}): {text}", f"{label} ({self.name}): {text}")
        if result.is_correct:
            progress.record_pass(self.problem_id)
        if result.status == "incorrect" and is_strict():
            raise IncorrectAnswerError(f"{self.lab} {self.name}: {result.message}")
        if result.status == "not_attempted" and _expect_solved():
            raise IncorrectAnswerError(f"{self.lab} {self.name} is not answered: {result.message}")

    def hint(self, n: int = 1) -> None:
        """Show hint ``n`` (1-based)."""
        hints = self.problem.hints
        if not hints:
            display.show(f"There is no hint for {self.name}.", f"There is no hint for {self.name}.")
            return
        try:
            n = min(max(int(n), 1), len(hints))
        except (TypeError, ValueError):
            display.show(f"`{self.name}.hint()` takes a hint number such as 1 or 2.",
                         f"{self.name}.hint() takes a hint number such as 1 or 2.")
            return
        more = f" (`{self.name}.hint({n + 1})` for another)" if n < len(hints) else ""
        display.show(f"💡 **Hint {n}**{more}: {hints[n - 1]}", f"Hint {n}{more}: {hints[n - 1]}")

    def solution(self) -> None:
        """Show the model answer."""
        body = self.problem.solution.strip()
        markdown = f"```python\n{body}\n```" if self.problem.solution_is_code else body
        display.show(f"📖 **Solution** ({self.name}):\n\n{markdown}", f"Solution ({self.name}):\n{body}")


_LABEL = re.compile(r"q[1-9]\d*")


def _labelled(problems: Mapping[str, type[Problem]]) -> dict[str, type[Problem]]:
    """A lab's problems by label, checked: labels look like ``q7`` and no class is listed twice."""
    for label, problem in problems.items():
        if not _LABEL.fullmatch(label):
            raise ValueError(f"exercise label {label!r} for {problem.__name__} should look like 'q7'")
    classes = [problem.__name__ for problem in problems.values()]
    if len(set(classes)) != len(classes):
        raise ValueError(f"a problem class is listed twice in {classes}")
    return dict(problems)


class LabExercises(tuple):
    """The views a lab binds, in the order its module lists them; shown as a table of labels."""

    def __repr__(self) -> str:
        return "\n".join(f"{view.name:>4}  {view.problem.__class__.__name__:<28} {view.problem.prompt}"
                         for view in self)

    def _repr_markdown_(self) -> str:
        rows = [f"| `{view.name}` | {view.problem.__class__.__name__} | {view.problem.prompt} |" for view in self]
        return "| exercise | problem | what it asks |\n|---|---|---|\n" + "\n".join(rows)


def bind_problems(lab: str, problems: Mapping[str, type[Problem]], namespace: dict[str, Any]) -> LabExercises:
    """Bind a lab's exercises into ``namespace`` under their labels (``q1``, ``q7``…) and return them.

    A label belongs to its problem, not to its position: adding, removing or moving an exercise
    renames no other. Binding also puts the placeholder ``____`` into ``namespace``, so the blanks
    of the lab's exercise cells run untouched without the first cell showing ``____`` as a blank.
    """
    namespace["____"] = ____
    views = LabExercises(ProblemView(problem(), label, lab, namespace)
                         for label, problem in _labelled(problems).items())
    namespace.update({view.name: view for view in views})
    return views


def make_binder(lab: str, problems: Mapping[str, type[Problem]]) -> Callable[[dict[str, Any]], LabExercises]:
    """Give a lab module its ``bind(globals())`` function."""
    labels = ", ".join(_labelled(problems))

    def bind(namespace: dict[str, Any]) -> LabExercises:
        return bind_problems(lab, problems, namespace)

    bind.__doc__ = f"Bind the exercises {labels} of lab {lab} into ``namespace`` (the notebook's ``globals()``)."
    return bind
