"""Showing things to a learner: rich markdown in JupyterLab, plain text everywhere else.

Introduced in lab 00. ``checking`` (exercise outcomes), ``progress`` (the checklist) and
``doctor`` (the environment report) all show their results through :func:`show` and
label their statuses with the :class:`Label` tables below, so every icon has a word
beside it and stays readable where a browser has no emoji font. :func:`warn` is how
labsupport reports a problem that does not stop a lab: one plain line on stderr.
"""

from __future__ import annotations

import sys
from typing import NamedTuple

__all__ = ["CHECKLIST_LABELS", "CHECK_LABELS", "DOCTOR_LABELS", "Label", "VALIDATION_LABELS", "in_jupyter", "show",
           "warn"]


class Label(NamedTuple):
    """A status icon and the word that says the same thing without it."""

    icon: str
    word: str

    def __str__(self) -> str:
        return f"{self.icon} {self.word}"


#: Outcomes of ``qN.check()``, keyed by ``CheckResult.status``.
CHECK_LABELS: dict[str, Label] = {
    "correct": Label("✅", "Correct"),
    "incorrect": Label("❌", "Incorrect"),
    "not_attempted": Label("✏️", "Not attempted"),
    "uncheckable": Label("💭", "Your own words"),
}

#: Lines of the environment doctor's report, keyed by ``Finding.status``.
DOCTOR_LABELS: dict[str, Label] = {
    "ok": Label("✅", "ok"),
    "warn": Label("⚠️", "warning"),
    "fail": Label("❌", "fail"),
}

#: Rows of a validation report (lab 07), keyed by ``CheckRow.status``.
VALIDATION_LABELS: dict[str, Label] = {
    "ok": Label("✅", "ok"),
    "fail": Label("❌", "FAIL"),
    "skip": Label("➖", "skip"),
}

#: Items of the self-assessment checklist, keyed by whether the item is ticked.
CHECKLIST_LABELS: dict[bool, Label] = {
    True: Label("✅", "yes"),
    False: Label("⬜", "not yet"),
}


def in_jupyter() -> bool:
    """True inside a Jupyter kernel (JupyterLab, Notebook, VS Code), where markdown is rendered."""
    try:
        from IPython import get_ipython
    except ImportError:  # IPython is part of the course stack, but stay usable without it
        return False
    shell = get_ipython()
    return shell is not None and type(shell).__name__ == "ZMQInteractiveShell"


def show(markdown: str, plain: str) -> None:
    """Show ``markdown`` rendered in a Jupyter kernel, and print ``plain`` in a console or a script."""
    if in_jupyter():
        from IPython.display import display

        display({"text/markdown": markdown, "text/plain": plain}, raw=True)
    else:
        print(plain)


def warn(message: str) -> None:
    """Report a problem that does not stop the lab as one line on stderr: ``labsupport: warning: …``."""
    one_line = " ".join(message.splitlines())
    print(f"labsupport: warning: {one_line}", file=sys.stderr, flush=True)
