"""Each lab's exercises, one module per lab (``lab00`` … ). A notebook binds them with::

    from labsupport.exercises import lab02
    lab02.bind(globals())

which defines ``q1``, ``q2``, … — the labels the module's ``PROBLEMS`` gives its exercises.
"""

from __future__ import annotations

import importlib
import pkgutil
import re
from collections.abc import Iterator
from pathlib import Path

from labsupport.checking import Problem

__all__ = ["LAB_MODULES", "all_problem_ids", "iter_problems"]

LAB_MODULES = tuple(sorted(module.name for module in pkgutil.iter_modules([str(Path(__file__).parent)])
                           if re.fullmatch(r"lab\d\d", module.name)))


def iter_problems() -> Iterator[tuple[str, type[Problem]]]:
    """Every (lab, problem class) of the course, in order."""
    for module_name in LAB_MODULES:
        module = importlib.import_module(f"labsupport.exercises.{module_name}")
        for view in module.bind({}):
            yield module.LAB, type(view.problem)


def all_problem_ids() -> list[str]:
    """The ids progress is recorded under, e.g. ``02_format_internals.FlatIndex``."""
    return [problem.problem_id(lab) for lab, problem in iter_problems()]
