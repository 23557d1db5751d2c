"""The learner's workspace: where ``make lab`` opens JupyterLab.

Learners never type into the tracked ``notebooks/``: their answers would conflict with the
next course update, and ``make test`` would stop testing the pristine copies. ``make lab``
seeds a workspace folder outside git's view (``workspace/``, ignored by git) from
``notebooks/`` and never overwrites a notebook that is already there, so a course update
adds new labs without touching a learner's answers.
"""

from __future__ import annotations

import filecmp
import shutil
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["SeedReport", "seed_workspace"]


@dataclass
class SeedReport:
    """What :func:`seed_workspace` did: notebooks copied, kept, and kept although the course changed them."""

    copied: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    updated_upstream: list[str] = field(default_factory=list)

    def to_text(self, workspace: Path) -> str:
        lines = [f"Workspace {workspace}: {len(self.copied)} notebook(s) copied from notebooks/, "
                 f"{len(self.kept)} of yours kept as they are."]
        if self.updated_upstream:
            lines.append("The course's copies of " + ", ".join(self.updated_upstream) + " differ from yours "
                         "(your answers, or a course update): the pristine versions are in notebooks/.")
        return "\n".join(lines)


def seed_workspace(source: Path, workspace: Path) -> SeedReport:
    """Copy every ``source/*.ipynb`` missing from ``workspace``; never overwrite one that exists.

    Raises:
        OSError: the workspace cannot be created or written (a file in its place, no permission).
    """
    workspace.mkdir(parents=True, exist_ok=True)
    report = SeedReport()
    for notebook in sorted(source.glob("*.ipynb")):
        target = workspace / notebook.name
        if target.exists():
            report.kept.append(notebook.name)
            if not filecmp.cmp(notebook, target, shallow=False):
                report.updated_upstream.append(notebook.name)
            continue
        shutil.copyfile(notebook, target)
        report.copied.append(notebook.name)
    return report
