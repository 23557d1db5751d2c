"""Progress: which checks a learner has passed, and the self-ticking checklist.

Introduced in lab 00. Every Correct ``check()`` is recorded in a small JSON file in the
user's data directory (``platformdirs``), or in ``$LABSUPPORT_DATA_DIR`` when that is
set (the test suite points it at a temporary folder). Writes are atomic; a corrupt file
is reported, moved aside and replaced, and never stops a lab.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import platformdirs

__all__ = [
    "CHECKLIST",
    "ChecklistItem",
    "checklist_status",
    "load_progress",
    "progress_path",
    "record_pass",
    "render_checklist",
    "reset_progress",
    "show_checklist",
]

_FORMAT_VERSION = 1


def progress_path() -> Path:
    """Where the progress file lives."""
    folder = os.environ.get("LABSUPPORT_DATA_DIR") or platformdirs.user_data_dir("onnx-workbook", appauthor=False)
    return Path(folder) / "progress.json"


def _empty() -> dict:
    return {"version": _FORMAT_VERSION, "passed": {}}


class _UnreadableProgress(OSError):
    """The progress file exists but cannot be read: never overwrite it."""


def _read_progress() -> dict:
    path = progress_path()
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return _empty()
    except OSError as error:
        raise _UnreadableProgress(f"Could not read your progress file {path}: {error}.") from error
    try:
        data = json.loads(raw)  # bytes: a file that is not valid UTF-8 is a ValueError like bad JSON
        if not isinstance(data, dict) or not isinstance(data.get("passed"), dict):
            raise ValueError("it does not hold a 'passed' table")
    except ValueError as error:
        aside = path.with_name(f"{path.name}.corrupt-{time.strftime('%Y%m%d-%H%M%S')}")
        try:
            os.replace(path, aside)
        except OSError as move_error:
            raise _UnreadableProgress(f"Your progress file {path} is unreadable ({error}) and could not be moved "
                                      f"aside ({move_error}).") from move_error
        warnings.warn(
            f"Your progress file {path} was unreadable ({error}); it was moved to {aside} and "
            "progress starts afresh. Passing the checks again records them again.",
            stacklevel=3,
        )
        return _empty()
    return data


def load_progress() -> dict:
    """Read the progress file; a missing file is empty progress, a corrupt one is set aside.

    A file that cannot be read at all (permissions, a folder in the way) gives a warning
    and empty progress; it is left untouched.
    """
    try:
        return _read_progress()
    except _UnreadableProgress as error:
        warnings.warn(f"{error} Set LABSUPPORT_DATA_DIR to a folder you can read and write.", stacklevel=2)
        return _empty()


def _write_atomically(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".progress-", suffix=".json")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            json.dump(data, stream, indent=1, sort_keys=True)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def record_pass(problem_id: str) -> None:
    """Record that the check ``problem_id`` passed. Failing to read or write only warns."""
    try:
        data = _read_progress()
    except _UnreadableProgress as error:
        warnings.warn(f"{error} This pass was not recorded; set LABSUPPORT_DATA_DIR to a folder "
                      "you can read and write.", stacklevel=2)
        return
    now = time.strftime("%Y-%m-%dT%H:%M:%S")
    entry = data["passed"].setdefault(problem_id, {"first": now, "count": 0})
    entry["last"] = now
    entry["count"] = int(entry.get("count", 0)) + 1
    try:
        _write_atomically(progress_path(), data)
    except OSError as error:
        warnings.warn(f"Could not save your progress to {progress_path()}: {error}. "
                      "Set LABSUPPORT_DATA_DIR to a writable folder.", stacklevel=2)


def reset_progress() -> None:
    """Forget every recorded pass."""
    progress_path().unlink(missing_ok=True)


@dataclass(frozen=True)
class ChecklistItem:
    """A self-assessment item of the syllabus and the checks that evidence it.

    ``evidence`` lists problem ids (``lab.ClassName``) that must all pass. ``planned_labs``
    names the labs of the syllabus that will add evidence but are not in this edition yet.
    """

    text: str
    evidence: tuple[str, ...]
    planned_labs: tuple[str, ...] = ()


CHECKLIST: tuple[ChecklistItem, ...] = (
    ChecklistItem("Export a PyTorch model to ONNX with dynamic shapes",
                  ("01_interoperability.ExportDigitsMlp", "04_pytorch_export.SequenceExport")),
    ChecklistItem("Convert a TensorFlow model to ONNX and validate the conversion",
                  ("05_tensorflow_export.SequentialFromFunction", "05_tensorflow_export.ParityReport",
                   "07_validation_and_parity.ValidateKerasConversion")),
    ChecklistItem("Load and run inference with ONNX Runtime in Python and in C++",
                  ("01_interoperability.RoundTripParity", "02_format_internals.BuildAffineModel"),
                  ("13_cpp_and_cross_runtime",)),
    ChecklistItem("Identify and fix common operator compatibility issues",
                  ("03_opsets_and_validation.UpgradeLegacyModel", "03_opsets_and_validation.FixBrokenModel",
                   "04_pytorch_export.DecomposedCustomOp", "06_classical_ml_export.DoublePrecisionExport"),
                  ("12_interoperability_challenges",)),
    ChecklistItem("Optimize ONNX models using quantization and graph optimization",
                  (), ("09_graph_optimization", "10_quantization")),
    ChecklistItem("Handle data preprocessing differences between frameworks",
                  ("02_format_internals.FlatIndex", "05_tensorflow_export.ChannelsFirst",
                   "05_tensorflow_export.NchwExport", "06_classical_ml_export.ConvertMixedPipeline"),
                  ("12_interoperability_challenges",)),
    ChecklistItem("Profile model performance and identify bottlenecks",
                  (), ("11_benchmarking_and_profiling",)),
    ChecklistItem("Deploy ONNX models with different execution providers",
                  ("00_setup.CpuProvider",), ("08_runtime_and_providers",)),
)


@dataclass(frozen=True)
class ItemStatus:
    """How far one checklist item is: ticked, and what to revisit if not."""

    item: ChecklistItem
    ticked: bool
    missing: tuple[str, ...]


def checklist_status(passed: dict | None = None) -> list[ItemStatus]:
    """Tick each item whose evidence has all passed (and that has evidence at all)."""
    passed = load_progress()["passed"] if passed is None else passed
    statuses = []
    for item in CHECKLIST:
        missing = tuple(problem for problem in item.evidence if problem not in passed)
        statuses.append(ItemStatus(item, bool(item.evidence) and not missing, missing))
    return statuses


def _advice(status: ItemStatus) -> str:
    if status.missing:
        labs = sorted({problem.split(".")[0] for problem in status.missing})
        return "revisit " + ", ".join(labs) + f" ({len(status.missing)} check(s) to pass)"
    if not status.item.evidence:
        return "evidenced by labs not in this edition yet: " + ", ".join(status.item.planned_labs)
    if status.item.planned_labs:
        return "ticked from the labs so far; these labs, not in this edition yet, will add evidence: " + ", ".join(
            status.item.planned_labs)
    return ""


def render_checklist(passed: dict | None = None) -> str:
    """The checklist as plain text, one line per item, with what to revisit."""
    lines = ["Self-assessment checklist (ticked from the checks you passed)"]
    statuses = checklist_status(passed)
    for status in statuses:
        mark = "[x]" if status.ticked else "[ ]"
        advice = _advice(status)
        lines.append(f"{mark} {status.item.text}" + (f"  — {advice}" if advice else ""))
    done = sum(status.ticked for status in statuses)
    lines.append(f"{done} of {len(CHECKLIST)} items ticked. Progress file: {progress_path()}")
    return "\n".join(lines)


def _checklist_markdown(statuses: list[ItemStatus]) -> str:
    rows = ["| | self-assessment item | what next |", "|---|---|---|"]
    for status in statuses:
        rows.append(f"| {'✅' if status.ticked else '⬜'} | {status.item.text} | {_advice(status) or 'done'} |")
    done = sum(status.ticked for status in statuses)
    return "\n".join(rows) + f"\n\n**{done} of {len(statuses)} items ticked.** Progress file: `{progress_path()}`"


def show_checklist() -> None:
    """Show the checklist: a table in JupyterLab, the plain text of :func:`render_checklist` elsewhere."""
    from labsupport.checking import _show

    passed = load_progress()["passed"]
    _show(_checklist_markdown(checklist_status(passed)), render_checklist(passed))
