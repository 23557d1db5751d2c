"""The production-readiness gate: tick each "prod ready" item from evidence gathered here.

Introduced in lab 15. The step a model's own CI/CD pipeline runs before deployment: given
the candidate ONNX file, the reference it replaces (the float export of the original model)
and labelled data, :func:`run_gate` measures, and ticks an item only from what it measured:

1. **validated with the checker** — lab 07's harness: ``onnx.checker.check_model(full_check=True)``
   (strict shape inference included), then an ONNX Runtime session loads it;
2. **graph optimized for the target** — ONNX Runtime optimizes the file again at
   ``optimization_level`` (``ORT_ENABLE_EXTENDED`` by default: the fusions the CPU provider
   implements; ``ORT_ENABLE_ALL`` adds layouts specific to this machine's CPU, lab 09) for the
   chosen provider and saves the graph it would run: the item passes when that graph has the
   same operators as the file, i.e. nothing is left for the runtime to fuse or fold;
3. **dynamic axes for batching** — axis 0 of every input is symbolic, and the model runs at
   several batch sizes, each giving the same rows as the largest batch (lab 07's batch rows).
   A dynamically quantized model fails here: it measures activation ranges per call, so a
   row's outputs depend on the rows batched with it;
4. **execution provider chosen on purpose** — a file cannot show intent, so the evidence is
   what can be checked: a provider was named, this onnxruntime build has it, and the sessions
   really ran on it (ONNX Runtime falls back to the CPU silently when a provider fails to
   start). Whether it is the *best* provider for the hardware is a decision the gate records,
   not one it can make; the latency rows measure its consequence on this machine;
5. **quantization applied where it pays** — a quantized model (integer operators, or
   int8/uint8/int4/float16 weights) pays when its accuracy drop is within the limit and it is
   at most :data:`PAYING_SIZE_RATIO` of the reference's size on disk or at least
   :data:`PAYING_SPEEDUP` times as fast. A float model is measured against the same rule: the
   gate quantizes the reference's weights to int8 itself (``quantize_dynamic``, no calibration
   data needed) and fails the item when that copy would pay;
6. **benchmarked against the original** — p50 latency of the model and of the reference,
   measured the same way (:func:`labsupport.bench.measure`, same provider, threads, batch and
   inputs, each in its own block; lab 11), and of the original framework too when the
   reference is an :class:`~labsupport.models.ExportedModel`.

Two thresholds follow: the **accuracy drop** against the reference on the data (default at
most 0.01, one percentage point) and, when given, the model's **p50 latency** in ms.
:class:`GateReport` holds the rows and the measurements; ``passed`` is False when any row
fails. ``python -m labsupport gate MODEL.onnx --reference REF.onnx --data DATA.npz`` prints
the table and exits 1 when an item fails or a threshold is missed.

Bad input (a model, reference or data file that cannot be read, data without the model's
inputs or ``labels``) raises :class:`~labsupport.model_loader.ModelInputError` with one line.
"""

from __future__ import annotations

import os
import tempfile
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from labsupport.display import VALIDATION_LABELS
from labsupport.model_loader import ModelInputError, load_model
from labsupport.onnx_tools import first_line

__all__ = [
    "GATE_ITEMS",
    "PAYING_SIZE_RATIO",
    "PAYING_SPEEDUP",
    "QUANTIZED_OPERATORS",
    "GateItem",
    "GateReport",
    "load_gate_data",
    "run_gate",
]

GATE_ITEMS = (
    "validated with the checker",
    "graph optimized for the target",
    "dynamic axes for batching",
    "execution provider chosen on purpose",
    "quantization applied where it pays",
    "benchmarked against the original",
    "accuracy drop",
    "latency",
)
"""The rows of every report, in order: the six "prod ready" items, then the two thresholds."""

PAYING_SIZE_RATIO = 0.75
"""Quantization pays in size when the file is at most this fraction of the reference's."""

PAYING_SPEEDUP = 1.25
"""Quantization pays in speed when the reference's p50 latency is at least this multiple of the model's."""

QUANTIZED_OPERATORS = frozenset({
    "QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear", "QLinearConv", "QLinearMatMul", "MatMulInteger",
    "ConvInteger", "QGemm", "QLinearAdd", "QLinearMul", "QLinearSigmoid", "QLinearLeakyRelu", "QLinearAveragePool",
    "QLinearGlobalAveragePool", "QLinearConcat", "QLinearSoftmax", "QAttention", "DynamicQuantizeMatMul",
    "MatMulIntegerToFloat", "MatMulNBits", "GatherBlockQuantized", "DynamicQuantizeLSTM",
})
"""Operators that only a quantized graph contains (standard and ``com.microsoft``)."""

_DYNAMIC_QUANTIZATION_OPERATORS = frozenset({"DynamicQuantizeLinear", "DynamicQuantizeMatMul", "DynamicQuantizeLSTM"})
_REDUCED_WEIGHT_TYPES = {3: "int8", 2: "uint8", 22: "int4", 21: "uint4", 10: "float16"}
_LABELS_KEY = "labels"
_BATCH_SIZES = (1, 3, 64)


@dataclass(frozen=True)
class GateItem:
    """One row of the gate: ``name`` (one of :data:`GATE_ITEMS`), ``status`` (``ok``, ``fail`` or
    ``skip``: not required, e.g. no latency limit given) and the ``evidence`` that decided it."""

    name: str
    status: str
    evidence: str


@dataclass
class GateReport:
    """What :func:`run_gate` found: one :class:`GateItem` per row of :data:`GATE_ITEMS`, and the figures.

    Attributes:
        model: the gated file.
        reference: the reference file.
        items: the rows, in the order of :data:`GATE_ITEMS`.
        provider: the execution provider the measurements ran on.
        accuracy, reference_accuracy: fractions of the data's rows classified right (None: not measured).
        size_bytes, reference_size_bytes: on disk, external data included.
        latency, reference_latency, framework_latency: :class:`labsupport.bench.BenchResult` (None: not timed).
        validation: lab 07's :class:`labsupport.validate.ValidationResult` for the model.
    """

    model: Path
    reference: Path
    items: list[GateItem] = field(default_factory=list)
    provider: str = "CPUExecutionProvider"
    accuracy: float | None = None
    reference_accuracy: float | None = None
    size_bytes: int = 0
    reference_size_bytes: int = 0
    latency: Any = None
    reference_latency: Any = None
    framework_latency: Any = None
    validation: Any = None

    @property
    def timing_warnings(self) -> list[str]:
        """Why a latency figure may mislead (:attr:`labsupport.bench.BenchResult.warnings`), one line per warning."""
        results = (self.reference_latency, self.latency, self.framework_latency)
        return [f"{result.label}: {text}" for result in results if result is not None for text in result.warnings]

    @property
    def passed(self) -> bool:
        """True when no row failed (a skipped row is not required)."""
        return not self.failed

    @property
    def failed(self) -> list[str]:
        """The names of the rows that failed."""
        return [item.name for item in self.items if item.status == "fail"]

    def item(self, name: str) -> GateItem:
        """The row called ``name`` (one of :data:`GATE_ITEMS`)."""
        for item in self.items:
            if item.name == name:
                return item
        raise KeyError(f"no gate item {name!r}; the items are {[item.name for item in self.items]}")

    @property
    def verdict(self) -> str:
        if self.passed:
            return f"{self.model}: ready — every item ticked from evidence, every threshold met."
        return f"{self.model}: NOT ready — failed: {', '.join(self.failed)}."

    def to_text(self) -> str:
        marks = {"ok": "ok", "fail": "FAIL", "skip": "skip"}
        width = max(len(name) for name in GATE_ITEMS)
        lines = [f"Production-readiness gate: {self.model} vs reference {self.reference} on {self.provider}",
                 f"{'item':<{width}}  status  evidence", f"{'-' * width}  ------  --------"]
        lines += [f"{item.name:<{width}}  {marks[item.status]:<6}  {item.evidence}" for item in self.items]
        lines += [f"timing warning: {text}" for text in self.timing_warnings]
        return "\n".join([*lines, self.verdict])

    def _repr_markdown_(self) -> str:
        def cell(text: str) -> str:
            return text.replace("|", "\\|").replace("\n", " ")

        lines = [f"**Production-readiness gate** · `{self.model}` vs reference `{self.reference}` on {self.provider}",
                 "", "| item | status | evidence |", "|---|---|---|"]
        lines += [f"| {item.name} | {VALIDATION_LABELS[item.status]} | {cell(item.evidence)} |" for item in self.items]
        notes = [f"- ⚠️ timing warning: {cell(text)}" for text in self.timing_warnings]
        icon = VALIDATION_LABELS["ok" if self.passed else "fail"].icon
        return "\n".join([*lines, "", *notes, *([""] if notes else []), f"{icon} {cell(self.verdict)}"])

    def __str__(self) -> str:
        return self.to_text()


# ---------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------

_NPZ_MAGIC = b"PK\x03\x04"  # an .npz is a zip archive of .npy files
_NPY_MAGIC = b"\x93NUMPY"


def load_gate_data(data: str | os.PathLike | Mapping[str, np.ndarray],
                   input_names: Sequence[str] = ()) -> dict[str, np.ndarray]:
    """The gate's data as a dict: one array per model input (keyed by input name) and ``labels``.

    ``data`` is such a mapping or an ``.npz`` file holding it (``np.savez(path, pixels=..., labels=...)``).
    ``input_names`` (the model's inputs) only make the refusal of an unreadable file name them.
    A file that is not an ``.npz`` archive is refused before NumPy reads it: never with pickle.
    """
    if isinstance(data, Mapping):
        return {str(key): np.asarray(value) for key, value in data.items()}
    if not isinstance(data, (str, os.PathLike)):
        raise ModelInputError(f"data should be a dict of arrays or the path of an .npz file, but got a "
                              f"{type(data).__name__}.")
    path = Path(data)
    if not path.is_file():
        reason = "is a folder" if path.is_dir() else "no such file"
        raise ModelInputError(f"{path}: {reason}; give an .npz file saved with np.savez(path, INPUT=..., labels=...).")
    arrays = ", ".join(f"{name}=array" for name in input_names) or "INPUT_NAME=array"
    save = f"np.savez(FILE, {arrays}, labels=labels)"
    with open(path, "rb") as file:
        magic = file.read(len(_NPZ_MAGIC))
    if magic != _NPZ_MAGIC:
        npy = bool(magic) and magic == _NPY_MAGIC[:len(magic)]
        kind = "a single .npy array, not an .npz file" if npy else "not an .npz file"
        raise ModelInputError(f"{path} is {kind}; save one with {save}.")
    try:
        with np.load(path, allow_pickle=False) as archive:
            return {key: archive[key] for key in archive.files}
    except Exception as error:  # a broken archive, or an object array (which would need pickle: never loaded)
        reason = ("it holds an array of Python objects" if "pickle" in str(error) else
                  f"it cannot be read ({first_line(error)})")
        raise ModelInputError(f"{path} is an .npz file, but {reason}; save numbers only with {save}.") from None


def _split_data(label: str, data: Mapping[str, np.ndarray], inputs: Sequence[Any]) -> tuple[dict, np.ndarray]:
    """(feeds for ``inputs``, labels), or a one-line refusal naming what is missing."""
    from labsupport.validate import check_feeds

    names = [signature.name for signature in inputs]
    missing = [name for name in [*names, _LABELS_KEY] if name not in data]
    if missing:
        raise ModelInputError(f"{label}: the data has no {', '.join(map(repr, missing))}; it holds {sorted(data)}: "
                              f"give one array per model input ({names}) and the expected classes as 'labels'.")
    labels = np.asarray(data[_LABELS_KEY])
    feeds = {name: data[name] for name in names}
    rows = {len(labels), *(len(value) for value in feeds.values())}
    if labels.ndim != 1 or len(rows) != 1 or not len(labels):
        raise ModelInputError(f"{label}: 'labels' should be one class per row, as many as the inputs' rows; "
                              f"got labels {labels.shape} and inputs {[value.shape for value in feeds.values()]}.")
    try:
        check_feeds(label, inputs, {name: _rows(value, _fixed_batch(inputs) or len(value)) for name, value in
                                    feeds.items()})
    except ModelInputError as error:
        advice = _layout_advice(inputs, feeds)
        if advice is None:
            raise
        raise ModelInputError(f"{str(error).rstrip('.')}: {advice}") from None
    return feeds, labels


def _layout_advice(inputs: Sequence[Any], feeds: Mapping[str, np.ndarray]) -> str | None:
    """What to do when an input's rows have the wrong shape (None: the shapes fit)."""
    for signature in inputs:
        value = feeds[signature.name]
        if signature.dims is None or not signature.dims:
            continue
        expected, got = signature.dims[1:], value.shape[1:]
        if len(expected) == len(got) and all(not isinstance(dim, int) or dim == size
                                             for dim, size in zip(expected, got)):
            continue
        wanted = "[" + ", ".join(str(dim) if isinstance(dim, int) else "?" for dim in expected) + "]"
        if len(expected) == len(got) and sorted(got) == sorted(dim for dim in expected if isinstance(dim, int)):
            return (f"the data's layout does not match this model's input (NHWC vs NCHW?); save data for this model's "
                    f"input, {wanted} per row (transpose the arrays, or save the data this model was exported for).")
        return f"the data was saved for another input shape; save data for this model's input, {wanted} per row."
    return None


def _fixed_batch(inputs: Sequence[Any]) -> int | None:
    """The size of axis 0 when an input fixes it, else None."""
    return next((signature.dims[0] for signature in inputs if signature.dims and isinstance(signature.dims[0], int)),
                None)


def _rows(array: np.ndarray, count: int, start: int = 0) -> np.ndarray:
    """``count`` rows from ``start``, wrapping around to the first rows when the array runs out."""
    return np.ascontiguousarray(np.take(array, (start + np.arange(count)) % len(array), axis=0))


# ---------------------------------------------------------------------------
# Sessions and predictions
# ---------------------------------------------------------------------------

def _session(path: Path, provider: str, *, threads: int = 1, level: str | None = None,
             save_to: Path | None = None) -> Any:
    import onnxruntime

    from labsupport.optimize import level_value

    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3
    options.intra_op_num_threads = threads
    if level is not None:
        options.graph_optimization_level = level_value(level)
    if save_to is not None:
        options.optimized_model_filepath = str(save_to)
    return onnxruntime.InferenceSession(os.fspath(path), options, providers=[provider])


def _classes(output: Any) -> np.ndarray:
    """Predicted classes from a first output: integer labels as they are, scores by their argmax."""
    if isinstance(output, list) and output and isinstance(output[0], dict):  # a ZipMap: one dict per row
        keys = sorted(output[0])
        output = np.array([[row[key] for key in keys] for row in output])
    output = np.asarray(output)
    if output.dtype.kind in "iu" and output.ndim == 1:
        return output
    if output.ndim == 2:
        return output.argmax(axis=1)
    raise ModelInputError(f"the first output has shape {output.shape} {output.dtype}: the gate reads classes from "
                          "integer labels [N] or scores [N, classes].")


def _predict(predict: Callable[[dict], Any], feeds: Mapping[str, np.ndarray], chunk: int | None) -> np.ndarray:
    """Classes for every row, ``chunk`` rows per call (a fixed batch; the last chunk is padded, then cut)."""
    rows = len(next(iter(feeds.values())))
    chunk = chunk or rows
    parts = [_classes(predict({name: _rows(value, chunk, start) for name, value in feeds.items()}))
             for start in range(0, rows, chunk)]
    return np.concatenate(parts)[:rows]


def _external_locations(graph: Any) -> set[str]:
    """The external data files the initializers of ``graph`` and its subgraphs point to."""
    locations = {entry.value for tensor in graph.initializer for entry in tensor.external_data
                 if entry.key == "location"}
    for node in graph.node:
        for attribute in node.attribute:
            for subgraph in ([attribute.g] if attribute.HasField("g") else []) + list(attribute.graphs):
                locations |= _external_locations(subgraph)
    return locations


def _file_bytes(path: Path, model: Any) -> int:
    """The file and the external data files it names."""
    locations = _external_locations(model.graph)
    return path.stat().st_size + sum((path.parent / location).stat().st_size for location in locations)


# ---------------------------------------------------------------------------
# The items
# ---------------------------------------------------------------------------

def _validation_items(path: Path, feeds: Mapping[str, np.ndarray], inputs: Sequence[Any]) -> tuple[Any, list]:
    """Lab 07's harness once: its checker and load rows make item 1, its axes and batch rows item 3."""
    from labsupport.onnx_tools import default_opset
    from labsupport.validate import validate_model

    result_model = load_model(path)
    sample = {name: _rows(value, _fixed_batch(inputs) or max(_BATCH_SIZES)) for name, value in feeds.items()}
    result = validate_model(path, sample, batch_sizes=_BATCH_SIZES, fp16=False,
                            dynamic_axes={signature.name: (0,) for signature in inputs})
    checker, load = result.row("checker"), result.row("load")
    if checker.status == "fail":
        validated = GateItem(GATE_ITEMS[0], "fail", f"onnx.checker.check_model(full_check=True) fails: "
                                                    f"{checker.detail}; fix the export (lab 07).")
    elif load.status == "fail":
        validated = GateItem(GATE_ITEMS[0], "fail", f"the checker passes, but {load.detail}.")
    else:
        validated = GateItem(GATE_ITEMS[0], "ok", f"passes onnx.checker.check_model(full_check=True) with strict "
                                                  f"shape inference ({len(result_model.graph.node)} nodes, ai.onnx "
                                                  f"opset {default_opset(result_model)}); loads in ONNX Runtime.")
    axes = result.row("dynamic axes")
    batches = [row for row in result.rows if row.check.startswith("batch ")]
    if load.status == "fail":
        batching = GateItem(GATE_ITEMS[2], "fail", "not measured: ONNX Runtime cannot load the model.")
    elif axes is not None and axes.status == "fail":
        batching = GateItem(GATE_ITEMS[2], "fail", f"{axes.detail}; export with a dynamic batch "
                                                   "(dynamic_shapes / a None dimension, labs 04–06).")
    elif any(row.status == "fail" for row in batches):
        bad = next(row for row in batches if row.status == "fail")
        dynamic_ops = sorted({node.op_type for node in result_model.graph.node} & _DYNAMIC_QUANTIZATION_OPERATORS)
        why = (f"; its {', '.join(dynamic_ops)} measure activation ranges over the whole batch, so a row's result "
               "depends on its batch mates: quantize statically to batch safely (lab 10)" if dynamic_ops else "")
        batching = GateItem(GATE_ITEMS[2], "fail", f"axis 0 is symbolic, but at batch {bad.batch_size}: "
                                                   f"{bad.detail.rstrip('.')}{why}.")
    else:
        shapes = ", ".join(f"{signature.name}{signature.shape_text()}" for signature in inputs)
        batching = GateItem(GATE_ITEMS[2], "ok", f"{shapes}; ran at batch sizes "
                                                 f"{', '.join(str(row.batch_size) for row in batches)}, each the same "
                                                 f"rows as at batch {max(_BATCH_SIZES)} (atol 1e-5, rtol 1e-4).")
    return result, [validated, batching]


def _histogram_change(before: Counter, after: Counter) -> str:
    changes = [(op_type, after[op_type] - before[op_type]) for op_type in sorted(set(before) | set(after))
               if after[op_type] != before[op_type]]
    return ", ".join(f"{op_type} {change:+d}" for op_type, change in changes)


def _optimization_item(path: Path, model: Any, provider: str, level: str, folder: Path) -> GateItem:
    from labsupport.optimize import op_histogram

    saved = folder / "reoptimized.onnx"
    try:
        _session(path, provider, level=level, save_to=saved)
        again = load_model(saved)
    except Exception as error:
        return GateItem(GATE_ITEMS[1], "fail", f"ONNX Runtime could not optimize it again: {first_line(error)}.")
    before, after = op_histogram(model, with_domain=True), op_histogram(again, with_domain=True)
    count, optimized_count = sum(before.values()), sum(after.values())
    where = f"ONNX Runtime at {level} for {provider}"
    if before == after:
        return GateItem(GATE_ITEMS[1], "ok", f"{count} nodes; {where} leaves the same {optimized_count}: nothing "
                                             "left to fuse or fold.")
    return GateItem(GATE_ITEMS[1], "fail", f"{count} nodes; {where} still changes it to {optimized_count} "
                                           f"({_histogram_change(before, after)}): save the graph it makes "
                                           "(labsupport.optimize.optimize_at_level, lab 09) and gate that file.")


def _provider_item(provider: str | None, available: Sequence[str], used: Sequence[str] | None) -> GateItem:
    listed = ", ".join(available)
    if provider is None:
        return GateItem(GATE_ITEMS[3], "fail", f"no provider named, so ONNX Runtime's default order decides "
                                               f"(available here: {listed}); name the one you deploy on "
                                               "(provider= or --provider), e.g. CPUExecutionProvider.")
    if provider not in available:
        return GateItem(GATE_ITEMS[3], "fail", f"{provider} is not in this onnxruntime build (available here: "
                                               f"{listed}); install the build that has it, or name one of these.")
    if used is None:
        return GateItem(GATE_ITEMS[3], "fail", f"{provider} named and available here, but not shown in use: ONNX "
                                               "Runtime cannot load the model, so no session ran on it.")
    if not used or used[0] != provider:
        return GateItem(GATE_ITEMS[3], "fail", f"{provider} was asked for, but the session runs on {used}: ONNX "
                                               "Runtime fell back; see its log (log_severity_level=0).")
    return GateItem(GATE_ITEMS[3], "ok", f"{provider} named; available here: {listed}; the sessions ran on it "
                                         "(session.get_providers(), no fallback). The gate checks the choice was made "
                                         "and honoured; whether it suits the hardware is yours to judge from the "
                                         "latency rows.")


def _quantization(model: Any) -> str | None:
    """How ``model`` is quantized, or None for a float model."""
    from labsupport.optimize import op_histogram

    operators = {op_type: count for op_type, count in op_histogram(model).items() if op_type in QUANTIZED_OPERATORS}
    weights = Counter()
    for tensor in model.graph.initializer:
        if tensor.data_type in _REDUCED_WEIGHT_TYPES:
            weights[_REDUCED_WEIGHT_TYPES[tensor.data_type]] += 1  # zero points count too: they are uint8/int8
    parts = [", ".join(f"{count} {op_type}" for op_type, count in sorted(operators.items()))] if operators else []
    parts += [", ".join(f"{count} {kind} initializers" for kind, count in sorted(weights.items()))] if weights else []
    return "; ".join(parts) or None


def _pays(size_ratio: float, drop: float, max_drop: float, speedup: float | None) -> tuple[bool, str]:
    """Whether a quantized copy pays, and the figures that say so."""
    accurate = drop <= max_drop + 1e-12
    smaller = size_ratio <= PAYING_SIZE_RATIO
    faster = speedup is not None and speedup >= PAYING_SPEEDUP
    speed = "" if speedup is None else f", runs at {speedup:.2f}× the reference's speed (p50)"
    figures = (f"{size_ratio:.2f}× the reference's size{speed}, accuracy drop {100 * drop:.2f} points "
               f"(limit {100 * max_drop:.2f})")
    return accurate and (smaller or faster), figures


def _quantization_item(report: GateReport, model: Any, max_drop: float, trial: Callable[[], tuple] | None) -> GateItem:
    rule = (f"it pays when the accuracy drop is within the limit and the file is ≤ {PAYING_SIZE_RATIO:.2f}× the "
            f"reference's size or ≥ {PAYING_SPEEDUP:.2f}× as fast")
    quantized = _quantization(model)
    if quantized is not None:
        if report.accuracy is None or report.reference_accuracy is None:
            return GateItem(GATE_ITEMS[4], "fail", f"quantized ({quantized}), but its accuracy was not measured.")
        speedup = (report.reference_latency.p50_ms / report.latency.p50_ms
                   if report.latency is not None and report.reference_latency is not None else None)
        pays, figures = _pays(report.size_bytes / report.reference_size_bytes,
                              report.reference_accuracy - report.accuracy, max_drop, speedup)
        if pays:
            return GateItem(GATE_ITEMS[4], "ok", f"quantized ({quantized}) and it pays: {figures}.")
        return GateItem(GATE_ITEMS[4], "fail", f"quantized ({quantized}), but it does not pay: {figures}; {rule}. "
                                               "Calibrate on representative data, or keep the float model (lab 10).")
    if trial is None:
        return GateItem(GATE_ITEMS[4], "skip", "not quantized; no trial was possible: not measured.")
    try:
        size_ratio, drop, speedup = trial()
    except Exception as error:
        return GateItem(GATE_ITEMS[4], "skip", f"not quantized, and ONNX Runtime's quantize_dynamic cannot quantize "
                                               f"the reference ({first_line(error)}): nothing to apply.")
    pays, figures = _pays(size_ratio, drop, max_drop, speedup)
    trial_text = f"an int8 copy of the reference's weights made here (quantize_dynamic) is {figures}"
    if pays:
        return GateItem(GATE_ITEMS[4], "fail", f"not quantized, yet {trial_text}: quantization pays here; "
                                               "quantize the model (lab 10) and gate the result.")
    return GateItem(GATE_ITEMS[4], "ok", f"not quantized, and rightly: {trial_text}; {rule}.")


def _benchmark_item(report: GateReport, batch: int, threads: int, framework_name: str | None,
                    error: str | None) -> GateItem:
    if error is not None:
        return GateItem(GATE_ITEMS[5], "fail", error)
    model, reference = report.latency, report.reference_latency
    ratio = reference.p50_ms / model.p50_ms
    comparison = f"{ratio:.2f}× as fast" if ratio >= 1 else f"{1 / ratio:.2f}× slower"
    text = (f"p50 at batch {batch}, {threads} thread(s), {report.provider}: model {model.p50_ms:.4f} ms, reference "
            f"{reference.p50_ms:.4f} ms ({comparison})")
    if report.framework_latency is not None:
        text += f"; {framework_name} itself {report.framework_latency.p50_ms:.4f} ms (its own thread settings)"
    if report.timing_warnings:
        text += f"; {len(report.timing_warnings)} timing warning(s), listed under the table"
    return GateItem(GATE_ITEMS[5], "ok", text + ".")


def _accuracy_item(report: GateReport, max_drop: float, rows: int) -> GateItem:
    if report.accuracy is None or report.reference_accuracy is None:
        return GateItem(GATE_ITEMS[6], "fail", "not measured: the model or the reference did not run on the data.")
    drop = report.reference_accuracy - report.accuracy
    text = (f"{100 * report.accuracy:.2f}% vs reference {100 * report.reference_accuracy:.2f}% on {rows} rows: "
            f"drop {100 * drop:.2f} points (limit {100 * max_drop:.2f})")
    if drop <= max_drop + 1e-12:
        return GateItem(GATE_ITEMS[6], "ok", text + ".")
    return GateItem(GATE_ITEMS[6], "fail", text + ": over the limit.")


def _latency_item(report: GateReport, max_latency_ms: float | None) -> GateItem:
    if max_latency_ms is None:
        return GateItem(GATE_ITEMS[7], "skip", "no limit given (max_latency_ms= or --max-latency-ms).")
    if report.latency is None:
        return GateItem(GATE_ITEMS[7], "fail", f"not measured (limit {max_latency_ms:g} ms).")
    p50 = report.latency.p50_ms
    status = "ok" if p50 <= max_latency_ms else "fail"
    return GateItem(GATE_ITEMS[7], status, f"p50 {p50:.4f} ms (limit {max_latency_ms:g} ms)"
                                           + ("." if status == "ok" else ": over the limit."))


# ---------------------------------------------------------------------------
# The gate
# ---------------------------------------------------------------------------

def run_gate(model: str | os.PathLike, *, reference: Any, data: str | os.PathLike | Mapping[str, np.ndarray],
             max_accuracy_drop: float = 0.01, max_latency_ms: float | None = None, provider: str | None = None,
             batch_size: int = 1, threads: int = 1, optimization_level: str = "ORT_ENABLE_EXTENDED",
             min_seconds: float = 0.25) -> GateReport:
    """Gather the evidence for every "prod ready" item and threshold; return the :class:`GateReport`.

    Args:
        model: the candidate ``.onnx`` file.
        reference: the model it replaces: the float ``.onnx`` export of the original, or an
            :class:`~labsupport.models.ExportedModel` (its file is the reference, and its
            ``framework_outputs`` are timed too, as the original framework).
        data: labelled rows: a dict or ``.npz`` with one array per model input and ``labels``
            (:func:`load_gate_data`); the reference reads the same input names.
        max_accuracy_drop: the most the accuracy may fall below the reference's, as a fraction
            (0.01 = one percentage point); at least 0 and below 1 (1 would be 100 points).
        max_latency_ms: the most the model's p50 latency at ``batch_size`` may be (None: no limit).
        provider: the execution provider you deploy on; None fails the provider item and measures
            on ``CPUExecutionProvider``.
        batch_size: rows per timed call.
        threads: intra-op threads of every session (1: the kernels' own speed, steady on a busy machine).
        optimization_level: the level whose result the file must already be (item 2).
        min_seconds: each timed block runs at least this long (and at least 50 calls).

    Raises:
        ModelInputError: the model, the reference or the data cannot be read or do not fit each other, or
            ``max_accuracy_drop`` is not a fraction below 1.
    """
    import onnxruntime

    from labsupport.bench import measure
    from labsupport.validate import model_signatures

    _check_accuracy_limit(max_accuracy_drop)
    exported = reference if hasattr(reference, "framework_outputs") else None
    model_path = Path(model)
    reference_path = Path(exported.path if exported else reference)
    proto, reference_proto = load_model(model_path), load_model(reference_path)
    inputs, _ = model_signatures(proto)
    reference_inputs, _ = model_signatures(reference_proto)
    table = load_gate_data(data, [signature.name for signature in inputs])
    feeds, labels = _split_data(f"{model_path}", table, inputs)
    _split_data(f"{reference_path} (the reference)", table, reference_inputs)
    available = onnxruntime.get_available_providers()
    chosen = provider if provider in available else "CPUExecutionProvider"
    report = GateReport(model_path, reference_path, provider=chosen, size_bytes=_file_bytes(model_path, proto),
                        reference_size_bytes=_file_bytes(reference_path, reference_proto))
    report.validation, (validated, batching) = _validation_items(model_path, feeds, inputs)
    try:
        session = _session(model_path, chosen, threads=threads)
    except Exception as error:
        not_loaded = f"not measured: ONNX Runtime cannot load the model on {chosen}: {first_line(error)}"
        report.items = [validated, GateItem(GATE_ITEMS[1], "fail", not_loaded), batching,
                        _provider_item(provider, available, None), GateItem(GATE_ITEMS[4], "fail", not_loaded),
                        GateItem(GATE_ITEMS[5], "fail", not_loaded), GateItem(GATE_ITEMS[6], "fail", not_loaded),
                        _latency_item(report, max_latency_ms)]
        return report
    try:
        reference_session = _session(reference_path, chosen, threads=threads)
    except Exception as error:
        raise ModelInputError(f"{reference_path}: the reference does not load in ONNX Runtime on {chosen} "
                              f"({first_line(error)}); `python -m labsupport check {reference_path}` says "
                              "more.") from None
    model_batch, reference_batch = _fixed_batch(inputs), _fixed_batch(reference_inputs)

    def run_model(part):
        return session.run(None, part)[0]

    def run_reference(part):
        return reference_session.run(None, part)[0]

    report.accuracy = float(np.mean(_predict(run_model, feeds, model_batch) == labels))
    report.reference_accuracy = float(np.mean(_predict(run_reference, feeds, reference_batch) == labels))
    timed_batch = model_batch or batch_size
    timed = {name: _rows(value, timed_batch) for name, value in feeds.items()}
    benchmark_error = None
    timings = [("reference", "reference_latency", lambda: reference_session.run(None, timed)),
               ("model", "latency", lambda: session.run(None, timed))]
    if exported is not None:
        timings.append((exported.name, "framework_latency", lambda: exported.framework_outputs(timed)))
    for label, attribute, call in timings:
        try:
            setattr(report, attribute, measure(call, warmup=10, repeats=50, batch_size=timed_batch, label=label,
                                               min_seconds=min_seconds))
        except Exception as error:
            benchmark_error = f"timing the {label} at batch {timed_batch} failed: {first_line(error)}."
            break

    with tempfile.TemporaryDirectory(prefix="labsupport-gate-") as scratch:
        folder = Path(scratch)

        def trial() -> tuple[float, float, float | None]:
            return _quantization_trial(reference_path, folder, chosen, feeds, labels, reference_batch, report,
                                       timed, threads, min_seconds)

        report.items = [
            validated,
            _optimization_item(model_path, proto, chosen, optimization_level, folder),
            batching,
            _provider_item(provider, available, session.get_providers()),
            _quantization_item(report, proto, max_accuracy_drop, trial),
            _benchmark_item(report, timed_batch, threads, exported.name if exported else None, benchmark_error),
            _accuracy_item(report, max_accuracy_drop, len(labels)),
            _latency_item(report, max_latency_ms),
        ]
    return report


def _check_accuracy_limit(limit: float) -> None:
    """Refuse a ``max_accuracy_drop`` that is not a fraction below 1 (1 would allow 100 points)."""
    if isinstance(limit, bool) or not isinstance(limit, (int, float, np.number)) or not np.isfinite(limit):
        raise ModelInputError(f"the accuracy limit {limit!r} is not a number: give a fraction such as 0.01 (one "
                              "point).")
    if limit >= 1:
        meant = "0.01 (one point)" if limit == 1 else f"{limit / 100:g} ({limit:g} points)"
        raise ModelInputError(f"an accuracy limit of {limit:g} would allow a drop of {100 * limit:g} points: it is a "
                              f"fraction: did you mean {meant}?")
    if limit < 0:
        raise ModelInputError(f"the accuracy limit {limit:g} is negative: give a fraction between 0 and 1, such as "
                              "0.01 (one point).")


def _quantization_trial(reference_path: Path, folder: Path, provider: str, feeds: Mapping[str, np.ndarray],
                        labels: np.ndarray, batch: int | None, report: GateReport, timed: Mapping[str, np.ndarray],
                        threads: int, min_seconds: float) -> tuple[float, float, float | None]:
    """Quantize the reference's weights to int8 (``quantize_dynamic``); its size ratio, accuracy drop and speed-up.

    The speed-up is measured only when the size alone does not pay.
    """
    import logging

    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from labsupport.bench import measure
    from labsupport.optimize import collect_log_messages

    standard = [node for node in onnx.load(reference_path, load_external_data=False).graph.node
                if node.domain in ("", "ai.onnx")]
    if not standard:  # quantize_dynamic would fail with "Failed to find proper ai.onnx domain"
        raise ValueError("its operators are all outside the ai.onnx domain (e.g. ai.onnx.ml's tree and linear "
                         "models), which ONNX Runtime's quantization does not handle")
    trial_path = folder / "int8_trial.onnx"
    with collect_log_messages("root", logging.WARNING):  # "consider pre-processing before quantization": not ours
        quantize_dynamic(reference_path, trial_path, weight_type=QuantType.QInt8)
    size_ratio = trial_path.stat().st_size / report.reference_size_bytes
    session = _session(trial_path, provider, threads=threads)
    trial_accuracy = float(np.mean(_predict(lambda part: session.run(None, part)[0], feeds, batch) == labels))
    drop = report.reference_accuracy - trial_accuracy
    speedup = None
    if size_ratio > PAYING_SIZE_RATIO and report.reference_latency is not None:
        trial_latency = measure(lambda: session.run(None, dict(timed)), warmup=10, repeats=50,
                                min_seconds=min_seconds)
        speedup = report.reference_latency.p50_ms / trial_latency.p50_ms
    return size_ratio, drop, speedup
