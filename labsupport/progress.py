"""Progress: which checks a learner has passed, and the self-ticking checklist.

Introduced in lab 00. Every Correct ``check()`` is recorded in a small JSON file in the
user's data directory (``platformdirs``), or in ``$LABSUPPORT_DATA_DIR`` when that is
set (the test suite points it at a temporary folder). Each change happens under a lock
(``progress.json.lock`` beside the file), so two notebooks passing checks at the same
moment both count, and is written atomically. A corrupt file is reported, moved aside and
replaced; a malformed entry is reported and ignored or repaired. None of this ever stops
a lab: problems are one warning line (see :func:`labsupport.display.warn`).
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import platformdirs
from filelock import FileLock, Timeout

from labsupport import display

__all__ = [
    "CHECKLIST",
    "ChecklistItem",
    "ProgressError",
    "checklist_status",
    "load_progress",
    "progress_path",
    "record_pass",
    "render_checklist",
    "reset_progress",
    "show_checklist",
]

_FORMAT_VERSION = 1
_LOCK_TIMEOUT_S = 10.0
_LISTED_ENTRIES = 3
_FIX = "set LABSUPPORT_DATA_DIR to a folder you can read and write"


class ProgressError(OSError):
    """The progress file cannot be read, changed or removed; the message says why and what to do."""


def progress_path() -> Path:
    """Where the progress file lives."""
    folder = os.environ.get("LABSUPPORT_DATA_DIR") or platformdirs.user_data_dir("onnx-workbook", appauthor=False)
    return Path(folder) / "progress.json"


def _empty() -> dict:
    return {"version": _FORMAT_VERSION, "passed": {}}


def _reason(error: OSError) -> str:
    """The operating system's reason (``Is a directory``) without Python's ``[Errno 21]`` and path."""
    return error.strerror or str(error)


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Hold the lock that every change to ``path`` takes, creating its folder first."""
    if path.parent.exists() and not path.parent.is_dir():
        raise ProgressError(f"the data folder {path.parent} is a file, not a folder; {_FIX}")
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        lock = FileLock(path.with_name(f"{path.name}.lock"), timeout=_LOCK_TIMEOUT_S).acquire()
    except Timeout:
        raise ProgressError(f"your progress file {path} stayed locked by another notebook or process for "
                            f"{_LOCK_TIMEOUT_S:g} s; run this again once it has finished") from None
    with lock:
        yield


def _describe_json(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    return {str: "a string", list: "a list"}.get(type(value), type(value).__name__)


def _short_json(value: Any) -> str:
    text = json.dumps(value)
    return text if len(text) <= 40 else text[:39] + "…"


def _list_some(items: list[str]) -> str:
    listed = ", ".join(items[:_LISTED_ENTRIES])
    return listed + (f" and {len(items) - _LISTED_ENTRIES} more" if len(items) > _LISTED_ENTRIES else "")


def _clean_entries(passed: dict, path: Path) -> dict:
    """The well-formed entries of ``passed``, with unusable counts repaired; one warning names the rest.

    An entry that is not a table (a string, null, a number, a list) is ignored: that check
    counts as not passed until it passes again. A table whose count is not a whole number
    of at least 1 still records a pass; its count restarts at 1.
    """
    clean, ignored, repaired = {}, [], []
    for problem_id, entry in passed.items():
        if not isinstance(entry, dict):
            ignored.append(f"{problem_id!r} ({_describe_json(entry)}, not a table)")
            continue
        count = entry.get("count")
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            repaired.append(f"{problem_id!r} ({'count ' + _short_json(count) if 'count' in entry else 'no count'})")
            entry = {**entry, "count": 1}
        clean[problem_id] = entry
    parts = []
    if ignored:
        one = len(ignored) == 1
        parts.append(f"ignored {len(ignored)} malformed {'entry' if one else 'entries'}, {_list_some(ignored)}: "
                     f"pass {'that check' if one else 'those checks'} again to record {'it' if one else 'them'}")
    if repaired:
        one = len(repaired) == 1
        parts.append(f"repaired {len(repaired)} {'entry' if one else 'entries'} whose count was not a whole number "
                     f"of passes, {_list_some(repaired)}, so {'its count restarts' if one else 'their counts restart'} "
                     "at 1")
    if parts:
        display.warn(f"your progress file {path}: " + "; ".join(parts) + ".")
    return clean


def _read_progress(path: Path) -> dict:
    """Read ``path``: missing is empty, corrupt is set aside, malformed entries are cleaned."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return _empty()
    except OSError as error:
        raise ProgressError(f"could not read your progress file {path} ({_reason(error)}); move it away "
                            f"or {_FIX}") from error
    try:
        data = json.loads(raw)  # bytes: a file that is not valid UTF-8 is a ValueError like bad JSON
        if not isinstance(data, dict) or not isinstance(data.get("passed"), dict):
            raise ValueError("it does not hold a 'passed' table")
    except ValueError as error:
        aside = path.with_name(f"{path.name}.corrupt-{time.strftime('%Y%m%d-%H%M%S')}")
        try:
            os.replace(path, aside)
        except OSError as move_error:
            raise ProgressError(f"your progress file {path} is unreadable ({error}) and could not be moved "
                                f"aside ({_reason(move_error)}); {_FIX}") from move_error
        display.warn(f"your progress file {path} was unreadable ({error}); it was moved to {aside} and progress "
                     "starts afresh. Passing the checks again records them again.")
        return _empty()
    data["passed"] = _clean_entries(data["passed"], path)
    return data


def load_progress() -> dict:
    """Read the progress file; a missing file is empty progress, a corrupt one is set aside.

    A file that cannot be read at all (permissions, a folder in the way) gives a warning
    and empty progress; it is left untouched.
    """
    path = progress_path()
    try:
        return _read_progress(path)
    except ProgressError as error:
        display.warn(f"no passes are shown: {error}.")
        return _empty()


def _write_atomically(path: Path, data: dict) -> None:
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".progress-", suffix=".json")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            json.dump(data, stream, indent=1, sort_keys=True)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def record_pass(problem_id: str) -> None:
    """Record that the check ``problem_id`` passed. Failing to read or write only warns.

    Reading, counting and writing happen under the progress file's lock, so passes recorded
    at the same moment by several notebooks or processes are all counted.
    """
    path = progress_path()
    try:
        with _locked(path):
            data = _read_progress(path)
            now = time.strftime("%Y-%m-%dT%H:%M:%S")
            entry = data["passed"].setdefault(problem_id, {"first": now, "count": 0})
            entry["last"] = now
            entry["count"] += 1
            _write_atomically(path, data)
    except ProgressError as error:
        display.warn(f"this pass was not recorded: {error}.")
    except OSError as error:
        display.warn(f"this pass was not recorded: could not save your progress to {path} ({_reason(error)}); "
                     f"{_FIX}.")


def reset_progress() -> None:
    """Forget every recorded pass.

    Raises:
        ProgressError: the file could not be removed (a folder in its place, a read-only
            folder); the message names the path and what to do.
    """
    path = progress_path()
    if not path.parent.exists():
        return
    try:
        with _locked(path):
            if path.is_dir():
                raise ProgressError(f"{path} is a folder, not a progress file, so it was left alone; move it away "
                                    f"or {_FIX}")
            path.unlink(missing_ok=True)
    except ProgressError:
        raise
    except OSError as error:
        raise ProgressError(f"could not remove your progress file {path} ({_reason(error)}); remove it yourself "
                            f"or {_FIX}") from error


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
                  ("01_interoperability.RoundTripParity", "02_format_internals.BuildAffineModel",
                   "08_runtime_and_providers.SymbolicAxes", "08_runtime_and_providers.BindAndRun",
                   "13_native_deployment.CppTensorShape", "13_native_deployment.LoaderPath", "14_serving.SplitRows")),
    ChecklistItem("Identify and fix common operator compatibility issues",
                  ("03_opsets_and_validation.UpgradeLegacyModel", "03_opsets_and_validation.FixBrokenModel",
                   "04_pytorch_export.DecomposedCustomOp", "06_classical_ml_export.DoublePrecisionExport",
                   "09_graph_optimization.DropInitializerInputs", "09_graph_optimization.SplitMaskUnsqueeze",
                   "12_interop_challenges.UnfuseConv", "12_interop_challenges.MakeBatchDynamic")),
    ChecklistItem("Optimize ONNX models using quantization and graph optimization",
                  ("09_graph_optimization.OptimizedOpCounts", "09_graph_optimization.FoldBatchNorm",
                   "09_graph_optimization.FuseEncoderAttention", "10_quantization.CalibrationReader",
                   "10_quantization.SizeAndAccuracy", "10_quantization.LargestSqnrDrop",
                   "15_capstone.ChooseVariant", "15_capstone.SizeRatio")),
    ChecklistItem("Handle data preprocessing differences between frameworks",
                  ("02_format_internals.FlatIndex", "05_tensorflow_export.ChannelsFirst",
                   "05_tensorflow_export.NchwExport", "06_classical_ml_export.ConvertMixedPipeline",
                   "12_interop_challenges.TorchPreprocess", "12_interop_challenges.PreprocessingGraph")),
    ChecklistItem("Profile model performance and identify bottlenecks",
                  ("11_benchmarking_and_profiling.OperatorTotals", "11_benchmarking_and_profiling.FractionOfPeak",
                   "14_serving.ThroughputOptimalBatch", "14_serving.LittlesLaw", "14_serving.BucketQuantile")),
    ChecklistItem("Deploy ONNX models with different execution providers",
                  ("00_setup.CpuProvider", "08_runtime_and_providers.ChooseProviders",
                   "08_runtime_and_providers.NodesPerProvider")),
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
    rows = ["| ticked | self-assessment item | what next |", "|---|---|---|"]
    for status in statuses:
        label = display.CHECKLIST_LABELS[status.ticked]
        rows.append(f"| {label} | {status.item.text} | {_advice(status) or 'done'} |")
    done = sum(status.ticked for status in statuses)
    return "\n".join(rows) + f"\n\n**{done} of {len(statuses)} items ticked.** Progress file: `{progress_path()}`"


def show_checklist() -> None:
    """Show the checklist: a table in JupyterLab, the plain text of :func:`render_checklist` elsewhere."""
    passed = load_progress()["passed"]
    display.show(_checklist_markdown(checklist_status(passed)), render_checklist(passed))
