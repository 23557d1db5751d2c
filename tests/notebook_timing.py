"""pytest plugin for the notebook runs (``-p tests.notebook_timing``, see the Makefile).

* Points ``LABSUPPORT_DATA_DIR`` at a scratch folder, so running the course in CI never
  touches a learner's real progress file (kernels inherit this process's environment).
* Adds up each notebook's execution time (kernel start plus every cell), prints a table
  at the end, and fails the run if a notebook takes longer than its budget: 60 s
  (``NOTEBOOK_BUDGET_SECONDS`` overrides it), except the labs in ``LAB_BUDGETS_SECONDS``
  (serving starts a C++ service and a Ray cluster: 150 s, as the syllabus allows).
"""

from __future__ import annotations

import os
import tempfile
from collections import defaultdict

_seconds_by_notebook: dict[str, float] = defaultdict(float)
_over_budget: list[str] = []


LAB_BUDGETS_SECONDS = {"14_serving": 150.0}


def budget_for(notebook: str) -> float:
    """The time allowed to ``notebook`` (a path such as ``solutions/14_serving.ipynb``), in seconds."""
    lab = os.path.splitext(os.path.basename(notebook))[0]
    return LAB_BUDGETS_SECONDS.get(lab, float(os.environ.get("NOTEBOOK_BUDGET_SECONDS", "60")))


def pytest_configure(config) -> None:
    if not os.environ.get("LABSUPPORT_DATA_DIR"):
        os.environ["LABSUPPORT_DATA_DIR"] = tempfile.mkdtemp(prefix="labsupport-progress-")


def pytest_runtest_logreport(report) -> None:
    notebook = report.nodeid.split("::")[0]
    if notebook.endswith(".ipynb"):
        _seconds_by_notebook[notebook] += report.duration


def pytest_sessionfinish(session, exitstatus) -> None:
    _over_budget.extend(name for name, seconds in _seconds_by_notebook.items() if seconds > budget_for(name))
    if _over_budget and session.exitstatus == 0:
        session.exitstatus = 1


def pytest_terminal_summary(terminalreporter) -> None:
    if not _seconds_by_notebook:
        return
    terminalreporter.section("notebook execution time")
    for name, seconds in sorted(_seconds_by_notebook.items()):
        flag = f"  OVER its {budget_for(name):.0f} s budget" if name in _over_budget else ""
        terminalreporter.write_line(f"{seconds:7.1f} s  {name}{flag}")
    if _over_budget:
        terminalreporter.write_line(f"{len(_over_budget)} notebook(s) over budget: make them faster "
                                    "(smaller data, fewer epochs) before they land.", red=True)
