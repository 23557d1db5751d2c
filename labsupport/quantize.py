"""Helpers for quantizing a model and judging the result: size, accuracy, speed and error.

Introduced in lab 10. ONNX Runtime's quantizer (``onnxruntime.quantization``) does the
quantizing; this module holds what the lab needs around it:

* :class:`DigitsCalibrationReader` — a calibration data reader over held-out digit images,
  batch by batch, with an optional ``tqdm.auto`` progress bar;
* :func:`quiet_calibration` — silences the status lines the histogram calibrators print;
* :func:`strip_exporter_metadata` — removes the exporter's per-node and per-value metadata
  (stack traces, FX node names) before sizes are compared, and says how many bytes it was;
* :func:`accuracy`, :func:`measure_variants`, :func:`time_variants`, :class:`VariantTable` and
  :func:`plot_variants` — each variant's file size, held-out accuracy and latency, as a table
  and a plot;
* :func:`quantization_ranges` — the float range each QuantizeLinear of a QDQ model can represent;
* :func:`profile_operator_times` — the runtime profiler's kernel time and calls per operator
  type in a typical run (each run summed by :func:`labsupport.profiling.operator_times`, lab
  11's helper, then the median over runs);
* :func:`sqnr_db`, :func:`channel_sqnr_db` and :func:`tensor_order` — signal-to-quantization-noise
  ratios, per tensor and per channel, in graph order;
* :func:`add_massive_activation` — a function-preserving edit that gives a hidden layer one huge
  constant channel, the kind of outlier that makes int8 collapse.

Importing this module imports onnxruntime (the reader subclasses its CalibrationDataReader).
"""

from __future__ import annotations

import bisect
import contextlib
import functools
import io
import math
import os
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from onnxruntime.quantization import CalibrationDataReader

from labsupport.bench import BenchResult, measure, progress
from labsupport.model_loader import load_model
from labsupport.onnx_tools import cpu_session

__all__ = [
    "DigitsCalibrationReader",
    "OperatorTime",
    "Variant",
    "VariantTable",
    "accuracy",
    "add_massive_activation",
    "channel_sqnr_db",
    "measure_variants",
    "plot_variants",
    "profile_operator_times",
    "quantization_ranges",
    "quiet_calibration",
    "sqnr_db",
    "strip_exporter_metadata",
    "tensor_order",
    "time_variants",
]

_QUANTIZED_RANGES = {"uint8": (0, 255), "int8": (-128, 127), "uint16": (0, 65535), "int16": (-32768, 32767)}


# ---------------------------------------------------------------------------
# Calibration
# ---------------------------------------------------------------------------

class DigitsCalibrationReader(CalibrationDataReader):
    """Feeds images to a calibrator, ``batch_size`` rows at a time, then says it is done.

    ``get_next`` returns ``{input_name: batch}`` (float32, C-contiguous) until the images run
    out and ``None`` from then on, which is how ONNX Runtime's calibrators know to stop. A
    reader is used up after one pass: make a new one for each calibration.

    Args:
        images: the calibration images, one per row (held-out data, never the test set).
        batch_size: rows per batch.
        input_name: the model input the batches feed.
        show_progress: draw a ``tqdm.auto`` bar that advances with each batch.
    """

    def __init__(self, images: np.ndarray, *, batch_size: int = 32, input_name: str = "pixels",
                 show_progress: bool = False) -> None:
        images = np.ascontiguousarray(images, dtype=np.float32)
        if images.ndim < 2 or len(images) == 0:
            raise ValueError(f"calibration needs at least one image, one per row; got an array of shape {images.shape}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.input_name = input_name
        self.batch_count = math.ceil(len(images) / batch_size)
        starts = range(0, len(images), batch_size)
        batches: Iterable[np.ndarray] = (images[start:start + batch_size] for start in starts)
        if show_progress:
            batches = progress(batches, desc="calibration batches", total=self.batch_count)
        self._batches: Iterator[np.ndarray] = iter(batches)

    def get_next(self) -> dict[str, np.ndarray] | None:
        batch = next(self._batches, None)
        return None if batch is None else {self.input_name: batch}

    def __len__(self) -> int:
        return self.batch_count


@contextlib.contextmanager
def quiet_calibration() -> Iterator[None]:
    """Silence what ONNX Runtime 1.32's histogram calibrators print.

    The Entropy and Percentile calibrators report their progress with ``print`` (four lines
    per calibration: "Collecting tensor data and making histogram ...", the bin counts…);
    they say nothing about your model, so they are sent to a string and dropped. Warnings
    and errors, which go to stderr or raise, are not affected.
    """
    with contextlib.redirect_stdout(io.StringIO()):
        yield


# ---------------------------------------------------------------------------
# Files: metadata and quantization ranges
# ---------------------------------------------------------------------------

def _strip_graph(graph: Any) -> None:
    for node in graph.node:
        del node.metadata_props[:]
        node.ClearField("doc_string")
        for attribute in node.attribute:
            if attribute.HasField("g"):
                _strip_graph(attribute.g)
            for subgraph in attribute.graphs:
                _strip_graph(subgraph)
    for value in [*graph.input, *graph.output, *graph.value_info]:
        del value.metadata_props[:]
        value.ClearField("doc_string")
    for tensor in graph.initializer:
        del tensor.metadata_props[:]


def strip_exporter_metadata(model: Any) -> int:
    """Remove per-node and per-value metadata from ``model`` in place; return the bytes saved.

    The torch.export-based exporter annotates every node with ``metadata_props`` (the Python
    stack trace, the FX node, module names) and every value with its export-signature role.
    No runtime reads them. They do not shrink when weights are quantized, and their size
    depends on the exporter version and on file paths, so they are removed before file
    sizes are compared. The model-level ``metadata_props`` (e.g. the quantizer's
    pre-processing mark) are kept.
    """
    before = model.ByteSize()
    _strip_graph(model.graph)
    return before - model.ByteSize()


def quantization_ranges(model_or_path: Any) -> dict[str, tuple[float, float]]:
    """For each QuantizeLinear of a QDQ model: tensor name → the (low, high) float range it can represent.

    The range is ``(qmin − zero_point) · scale`` to ``(qmax − zero_point) · scale`` for the
    quantized type; values outside it are clipped. Per-tensor quantization only (a scalar
    scale), which is what QDQ activations use.
    """
    from onnx import numpy_helper

    model = load_model(model_or_path) if isinstance(model_or_path, (str, os.PathLike)) else model_or_path
    constants = {tensor.name: numpy_helper.to_array(tensor) for tensor in model.graph.initializer}
    ranges = {}
    for node in model.graph.node:
        if node.op_type != "QuantizeLinear" or node.input[1] not in constants:
            continue
        scale = float(np.asarray(constants[node.input[1]]).reshape(-1)[0])
        zero_point = np.asarray(constants[node.input[2]]) if len(node.input) > 2 else np.zeros((), np.uint8)
        low, high = _QUANTIZED_RANGES[str(zero_point.dtype)]
        offset = int(zero_point.reshape(-1)[0])
        ranges[node.input[0]] = ((low - offset) * scale, (high - offset) * scale)
    return ranges


# ---------------------------------------------------------------------------
# Size, accuracy and latency of each variant
# ---------------------------------------------------------------------------

def accuracy(model_or_path: Any, images: np.ndarray, labels: np.ndarray, *, input_name: str = "pixels") -> float:
    """The fraction of ``images`` whose largest logit is at the right label (the first output)."""
    logits = cpu_session(model_or_path).run(None, {input_name: np.ascontiguousarray(images, dtype=np.float32)})[0]
    return float(np.mean(np.argmax(logits, axis=1) == labels))


@dataclass
class Variant:
    """One file of the comparison: its size and held-out accuracy, and later its latencies.

    ``latency`` maps a batch size to the :class:`labsupport.bench.BenchResult` timed for it.
    """

    name: str
    path: Path
    size_bytes: int
    accuracy: float
    latency: dict[int, BenchResult] = field(default_factory=dict)


def measure_variants(paths: Mapping[str, str | os.PathLike], images: np.ndarray, labels: np.ndarray) -> list[Variant]:
    """Size on disk and accuracy on (``images``, ``labels``) of each named model file, in order.

    The first entry is the reference the table compares the others with.
    """
    return [Variant(name, Path(path), Path(path).stat().st_size, accuracy(path, images, labels))
            for name, path in paths.items()]


def time_variants(variants: Sequence[Variant], images: np.ndarray, *, batch_sizes: Sequence[int] = (1, 64),
                  threads: int = 1, min_seconds: float = 0.25, input_name: str = "pixels") -> None:
    """Time every variant at every batch size with :func:`labsupport.bench.measure`; fill ``latency``.

    Each (variant, batch size) pair gets its own session and its own timing block, one after
    the other: never interleaved, which distorts ONNX Runtime's timings. ``threads`` sets the
    session's intra-op threads (1: the kernels' own speed, undisturbed by other work on a
    shared machine). A ``tqdm.auto`` bar counts the blocks.
    """
    import onnxruntime

    blocks = [(variant, batch) for variant in variants for batch in batch_sizes]
    for variant, batch in progress(blocks, desc="timing blocks", total=len(blocks)):
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.log_severity_level = 3
        feeds = {input_name: np.ascontiguousarray(np.resize(images, (batch, *images.shape[1:])), dtype=np.float32)}
        run = functools.partial(cpu_session(variant.path, options).run, None, feeds)
        variant.latency[batch] = measure(run, warmup=10, repeats=50, batch_size=batch,
                                         label=f"{variant.name} @ {batch}", min_seconds=min_seconds)


class VariantTable:
    """The variants side by side, compared with the first one (shown as a table in JupyterLab)."""

    def __init__(self, variants: Sequence[Variant]) -> None:
        if not variants:
            raise ValueError("VariantTable needs at least one variant: the reference, first")
        self.variants = list(variants)

    @property
    def reference(self) -> Variant:
        return self.variants[0]

    def size_ratio(self, name: str) -> float:
        """File size of ``name`` divided by the reference's."""
        return self.variant(name).size_bytes / self.reference.size_bytes

    def accuracy_loss_points(self, name: str) -> float:
        """Reference accuracy minus ``name``'s, in percentage points (positive: ``name`` is worse)."""
        return 100.0 * (self.reference.accuracy - self.variant(name).accuracy)

    def speedup(self, name: str, batch_size: int) -> float:
        """Reference p50 latency divided by ``name``'s at ``batch_size`` (above 1: ``name`` is faster)."""
        return self.reference.latency[batch_size].p50_ms / self.variant(name).latency[batch_size].p50_ms

    def variant(self, name: str) -> Variant:
        for variant in self.variants:
            if variant.name == name:
                return variant
        raise KeyError(f"no variant named {name!r}; the table has {[variant.name for variant in self.variants]}")

    def _rows(self) -> tuple[list[str], list[list[str]]]:
        batches = sorted({batch for variant in self.variants for batch in variant.latency})
        headers = ["variant", "size (KB)", "× size", "accuracy (%)", "loss (points)"]
        headers += [f"p50 ms @ {batch}" for batch in batches] + [f"speed-up @ {batch}" for batch in batches]
        rows = []
        for variant in self.variants:
            row = [variant.name, f"{variant.size_bytes / 1000:,.1f}", f"{self.size_ratio(variant.name):.3f}",
                   f"{100 * variant.accuracy:.2f}", f"{self.accuracy_loss_points(variant.name):+.2f}"]
            row += [f"{variant.latency[batch].p50_ms:.4f}" if batch in variant.latency else "–" for batch in batches]
            row += [f"{self.speedup(variant.name, batch):.2f}×" if batch in variant.latency
                    and batch in self.reference.latency else "–" for batch in batches]
            rows.append(row)
        return headers, rows

    def to_text(self) -> str:
        headers, rows = self._rows()
        widths = [max(len(cell) for cell in column) for column in zip(headers, *rows)]
        return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip()
                         for line in [headers, *rows])

    def _repr_markdown_(self) -> str:
        headers, rows = self._rows()
        lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
        return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])

    def __str__(self) -> str:
        return self.to_text()


def plot_variants(table: VariantTable):
    """Three panels: file size, held-out accuracy, and p50 latency relative to the reference per batch size.

    Returns the matplotlib figure.
    """
    import matplotlib.pyplot as plt

    names = [variant.name for variant in table.variants]
    positions = np.arange(len(names))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    figure, (size_axes, accuracy_axes, latency_axes) = plt.subplots(1, 3, figsize=(12, 3.6))
    sizes = [variant.size_bytes / 1000 for variant in table.variants]
    size_axes.bar(positions, sizes, color=colours[:len(names)])
    for position, variant, size in zip(positions, table.variants, sizes):
        size_axes.annotate(f"{table.size_ratio(variant.name):.2f}×", (position, size), ha="center", va="bottom")
    size_axes.set_ylabel("file size (KB)")
    size_axes.set_title("Size on disk")
    accuracies = [100 * variant.accuracy for variant in table.variants]
    accuracy_axes.bar(positions, accuracies, color=colours[:len(names)])
    accuracy_axes.set_ylim(min(accuracies) - 3, 100)
    accuracy_axes.set_ylabel("held-out accuracy (%)")
    accuracy_axes.set_title("Accuracy on the test digits")
    batches = sorted({batch for variant in table.variants for batch in variant.latency})
    width = 0.8 / max(len(batches), 1)
    for index, batch in enumerate(batches):
        relative = [variant.latency[batch].p50_ms / table.reference.latency[batch].p50_ms for variant in table.variants]
        latency_axes.bar(positions + (index - (len(batches) - 1) / 2) * width, relative, width, label=f"batch {batch}")
    latency_axes.axhline(1.0, color="black", linewidth=0.8)
    latency_axes.set_ylabel(f"p50 latency / {table.reference.name}'s")
    latency_axes.set_title("Latency (below 1: faster)")
    if batches:
        latency_axes.legend(fontsize=8)
    for axes in (size_axes, accuracy_axes, latency_axes):
        axes.set_xticks(positions, names, rotation=20)
    figure.tight_layout()
    return figure


# ---------------------------------------------------------------------------
# The profiler
# ---------------------------------------------------------------------------

class OperatorTime(NamedTuple):
    """One operator type's share of a typical run: its kernel time (µs) and kernel calls, medians over runs."""

    microseconds: float
    calls: float


def profile_operator_times(model_or_path: Any, feeds: Mapping[str, np.ndarray], *, runs: int = 100, warmup: int = 10,
                           threads: int = 1, folder: str | os.PathLike | None = None) -> dict[str, OperatorTime]:
    """Run the model with ONNX Runtime's profiler on; per run, the kernel time and calls of each operator type.

    The profiler writes a Chrome-trace JSON file (``enable_profiling``) into ``folder`` (the
    current folder by default); it is read and deleted. ``warmup`` runs come first and are
    left out. The node events of each later run are summed by operator type with
    :func:`labsupport.profiling.operator_times` (lab 11's helper), and each operator type gets
    the *median* over the ``runs`` runs, so a run disturbed by other work on the machine does
    not move the figure. The operator types are those the runtime ran, after its graph
    optimizations (``FusedGemm``, ``QGemm``…). Profiling adds a little time to every node it
    records, which matters most for the smallest kernels.
    """
    import onnxruntime

    from labsupport.profiling import operator_times, read_profile

    if runs < 1 or warmup < 0:
        raise ValueError(f"profiling needs runs >= 1 and warmup >= 0, got runs={runs}, warmup={warmup}")
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.log_severity_level = 3
    options.enable_profiling = True
    options.profile_file_prefix = str(Path(folder or ".") / "ort_profile")
    session = cpu_session(model_or_path, options)
    for _ in range(warmup + runs):
        session.run(None, dict(feeds))
    trace = Path(session.end_profiling())
    try:
        events = read_profile(trace)
    finally:
        trace.unlink(missing_ok=True)
    run_starts = sorted(event["ts"] for event in events
                        if event.get("cat") == "Session" and event.get("name") == "model_run")
    by_run: list[list[Mapping[str, Any]]] = [[] for _ in run_starts]
    for event in events:
        if event.get("cat") == "Node":
            by_run[max(bisect.bisect_right(run_starts, event["ts"]) - 1, 0)].append(event)
    timed = by_run[warmup:]
    totals = [operator_times(run_events) for run_events in timed]
    calls = [Counter(event["args"]["op_name"] for event in run_events) for run_events in timed]
    op_types = sorted({op_type for run_totals in totals for op_type in run_totals})
    medians = {op_type: OperatorTime(float(np.median([run_totals.get(op_type, 0.0) for run_totals in totals])),
                                     float(np.median([run_calls[op_type] for run_calls in calls])))
               for op_type in op_types}
    return dict(sorted(medians.items(), key=lambda item: -item[1].microseconds))


# ---------------------------------------------------------------------------
# Quantization error
# ---------------------------------------------------------------------------

def _flat(values: np.ndarray | Sequence[np.ndarray]) -> np.ndarray:
    arrays = [values] if isinstance(values, np.ndarray) else list(values)
    return np.concatenate([np.asarray(array, dtype=np.float64).reshape(-1) for array in arrays])


def sqnr_db(reference: np.ndarray | Sequence[np.ndarray], approximation: np.ndarray | Sequence[np.ndarray]) -> float:
    """Signal-to-quantization-noise ratio ``20·log10(‖reference‖ / ‖reference − approximation‖)`` in dB.

    The same formula as ``onnxruntime.quantization.qdq_loss_debug``'s error function: each
    argument may be one array or a list of arrays (one per batch); norms are floored at the
    float64 epsilon, so identical tensors give a large finite number rather than infinity.
    Every 6 dB is one bit: 8-bit quantization of a well-spread signal gives about 50 dB.
    """
    signal, approximate = _flat(reference), _flat(approximation)
    if signal.shape != approximate.shape:
        raise ValueError(f"the two tensors hold {signal.size} and {approximate.size} values; they must match")
    epsilon = np.finfo(np.float64).eps
    return 20 * math.log10(max(np.linalg.norm(signal), epsilon) / max(np.linalg.norm(signal - approximate), epsilon))


def channel_sqnr_db(reference: np.ndarray | Sequence[np.ndarray], approximation: np.ndarray | Sequence[np.ndarray],
                    channels: int) -> np.ndarray:
    """SQNR (dB) of each channel of a [rows, channels] activation, given flat or batched arrays.

    A per-tensor SQNR is an energy ratio, so one large channel can hide many ruined small
    ones; this gives one number per channel.
    """
    signal = _flat(reference).reshape(-1, channels)
    approximate = _flat(approximation).reshape(-1, channels)
    epsilon = np.finfo(np.float64).eps
    signal_norm = np.maximum(np.linalg.norm(signal, axis=0), epsilon)
    noise_norm = np.maximum(np.linalg.norm(signal - approximate, axis=0), epsilon)
    return 20 * np.log10(signal_norm / noise_norm)


def tensor_order(model_or_path: Any) -> list[str]:
    """The graph's inputs, then every node's outputs, in the order the nodes run (ONNX stores them sorted)."""
    model = load_model(model_or_path) if isinstance(model_or_path, (str, os.PathLike)) else model_or_path
    initializers = {tensor.name for tensor in model.graph.initializer}
    names = [value.name for value in model.graph.input if value.name not in initializers]
    for node in model.graph.node:
        names += [output for output in node.output if output]
    return names


def _node_named(model: Any, name: str) -> Any:
    for node in model.graph.node:
        if node.name == name:
            return node
    raise ValueError(f"the model has no node named {name!r}; its nodes are {[node.name for node in model.graph.node]}")


def _transposed_b(node: Any) -> bool:
    return any(attribute.name == "transB" and attribute.i == 1 for attribute in node.attribute)


def add_massive_activation(model: Any, first_gemm: str, second_gemm: str, value: float) -> Any:
    """A copy of ``model`` whose hidden layer between two Gemm nodes has one extra, constant channel.

    The new channel of ``first_gemm`` has zero weights and bias ``value``, so after the ReLU it
    always equals ``value``; ``second_gemm`` gives it zero weights, so the outputs do not change
    at all. Only the *range* of the hidden activation grows — to ``value`` — like the few huge
    "massive activations" found in large trained networks. Both Gemm nodes must use
    ``transB=1`` (as torch's exporter writes ``nn.Linear``) and ``second_gemm`` must read the
    ReLU of ``first_gemm``'s output. The declared shapes of intermediate values are dropped,
    since the hidden width changes; shape inference restores them.
    """
    from onnx import numpy_helper

    edited = type(model)()
    edited.CopyFrom(model)
    first, second = _node_named(edited, first_gemm), _node_named(edited, second_gemm)
    if not (_transposed_b(first) and _transposed_b(second)) or len(first.input) < 3:
        raise ValueError("both Gemm nodes must have transB=1 and the first one a bias, as torch exports nn.Linear")
    feeders = {output: node for node in edited.graph.node for output in node.output}
    between = feeders.get(second.input[0])
    if between is None or between.op_type != "Relu" or between.input[0] != first.output[0]:
        raise ValueError(f"{second_gemm!r} must read the Relu of {first_gemm!r}'s output")
    tensors = {tensor.name: tensor for tensor in edited.graph.initializer}
    weight, bias = numpy_helper.to_array(tensors[first.input[1]]), numpy_helper.to_array(tensors[first.input[2]])
    next_weight = numpy_helper.to_array(tensors[second.input[1]])
    replacements = {
        first.input[1]: np.vstack([weight, np.zeros((1, weight.shape[1]), weight.dtype)]),
        first.input[2]: np.append(bias, bias.dtype.type(value)),
        second.input[1]: np.hstack([next_weight, np.zeros((next_weight.shape[0], 1), next_weight.dtype)]),
    }
    for name, array in replacements.items():
        tensors[name].CopyFrom(numpy_helper.from_array(array, name))
    del edited.graph.value_info[:]
    return edited
