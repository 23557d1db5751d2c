"""The capstone's bookkeeping: every model file of the pipeline, measured the same way, in one table and one plot.

Introduced in lab 15. The lab trains the digits CNN in PyTorch and in Keras and a
scikit-learn baseline, exports each, optimizes and quantizes the two CNN exports, and deploys
one file natively and in a browser. Each file is a :class:`ModelFile`: which framework it
came from, which variant it is, and how it reads the digits (its input name and one image's
shape: ``[1, 8, 8]`` channels first, ``[8, 8, 1]`` channels last, or 64 flat pixels).

:func:`measure_models` measures every file alike: its size on disk, its accuracy on the
held-out digits and its p50 latency in ONNX Runtime (lab 11's :func:`labsupport.bench.measure`,
one intra-op thread, each file and batch size in its own block). A deployed copy run by
another runtime (lab 13's C++ CLI, the browser) adds a row measured from that runtime's own
outputs and timings (:func:`deployment_row`). :class:`ComparisonTable` shows the rows as one
table and gives the plain records a selection rule reads; :func:`plot_comparison` draws
accuracy, size and latency side by side.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from labsupport.bench import BenchResult, measure, progress
from labsupport.onnx_tools import cpu_session

__all__ = [
    "BATCH_SIZES",
    "PYTHON_RUNTIME",
    "ComparisonTable",
    "MeasuredModel",
    "ModelFile",
    "deployment_row",
    "measure_models",
    "plot_comparison",
    "predicted_digits",
]

BATCH_SIZES = (1, 64)
"""The batch sizes every file is timed at: one request, and a batch of requests."""

PYTHON_RUNTIME = "Python ORT"
"""The runtime column of the rows :func:`measure_models` measures."""


@dataclass(frozen=True)
class ModelFile:
    """One ONNX file of the pipeline and how it reads the digits.

    Attributes:
        framework: where the model was trained, e.g. ``"PyTorch"``.
        variant: what was done to the export, e.g. ``"fp32"`` or ``"int8 static"``.
        path: the ``.onnx`` file.
        input_name: its one input.
        image_shape: one digit as the input reads it: ``(1, 8, 8)``, ``(8, 8, 1)`` or ``(64,)``.
    """

    framework: str
    variant: str
    path: Path
    input_name: str = "pixels"
    image_shape: tuple[int, ...] = (1, 8, 8)

    @property
    def name(self) -> str:
        """The row label: framework and variant."""
        return f"{self.framework} {self.variant}"

    def feeds(self, features: np.ndarray) -> dict[str, np.ndarray]:
        """Flat digits ``[N, 64]`` as this file's input: ``{input_name: [N, *image_shape] float32}``."""
        images = np.asarray(features, dtype=np.float32).reshape(-1, *self.image_shape)
        return {self.input_name: np.ascontiguousarray(images)}

    def outputs(self, features: np.ndarray) -> dict[str, np.ndarray]:
        """What Python's ONNX Runtime computes for flat digits ``[N, 64]``, keyed by output name."""
        session = _session(self.path, threads=1)
        names = [output.name for output in session.get_outputs()]
        return dict(zip(names, session.run(None, self.feeds(features))))

    def predict(self, features: np.ndarray) -> np.ndarray:
        """The digit this file predicts for each row of ``features`` (flat ``[N, 64]``), in Python's ONNX Runtime."""
        return predicted_digits(self.outputs(features))


def predicted_digits(outputs: Mapping[str, Any]) -> np.ndarray:
    """The predicted digit of each row from a model's outputs, by output name.

    A classifier converted from scikit-learn has an integer ``label`` output: it is the
    prediction. A network has scores (``logits``): the prediction is the largest one's index.
    Works for any runtime's outputs (Python's, read back from the C++ CLI's ``.npy`` files, or
    from the browser), as long as they are keyed by the graph's output names.
    """
    if "label" in outputs:
        return np.asarray(outputs["label"]).astype(np.int64).reshape(-1)
    scores = np.asarray(next(iter(outputs.values())))
    if scores.ndim != 2:
        raise ValueError(f"expected scores of shape [rows, classes], got {scores.shape}; name the outputs as the "
                         "graph does")
    return scores.argmax(axis=1)


@dataclass
class MeasuredModel:
    """One row of the comparison: a file, the runtime that ran it, and what was measured.

    ``latency`` maps a batch size to its :class:`labsupport.bench.BenchResult`; a runtime timed
    at batch 1 only has just that entry.
    """

    model: ModelFile
    runtime: str
    size_bytes: int
    accuracy: float
    latency: dict[int, BenchResult] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.model.name if self.runtime == PYTHON_RUNTIME else f"{self.model.name} · {self.runtime}"

    def p50_ms(self, batch_size: int) -> float | None:
        """The median latency at ``batch_size``, or None where it was not timed."""
        result = self.latency.get(batch_size)
        return None if result is None else result.p50_ms

    def record(self) -> dict[str, Any]:
        """The row as plain values: what a selection rule reads."""
        return {"name": self.name, "framework": self.model.framework, "variant": self.model.variant,
                "runtime": self.runtime, "size_kb": self.size_bytes / 1000, "accuracy_pct": 100 * self.accuracy,
                **{f"p50_ms_batch{batch}": self.p50_ms(batch) for batch in BATCH_SIZES}}


def _session(path: str | os.PathLike, threads: int):
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.log_severity_level = 3
    return cpu_session(path, options)


def measure_models(models: Sequence[ModelFile], features: np.ndarray, labels: np.ndarray, *,
                   batch_sizes: Sequence[int] = BATCH_SIZES, threads: int = 1,
                   min_seconds: float = 0.1) -> ComparisonTable:
    """Size, accuracy on (``features``, ``labels``) and p50 latency of every file, in Python's ONNX Runtime.

    Each (file, batch size) pair gets its own session with ``threads`` intra-op threads and its
    own timing block (10 warm-up calls, then at least 50 timed ones and ``min_seconds``), one
    after the other, never interleaved (lab 11). The batches are the first test digits,
    repeated when there are too few. A ``tqdm.auto`` bar counts the blocks.
    """
    rows = [MeasuredModel(model, PYTHON_RUNTIME, model.path.stat().st_size,
                          float(np.mean(model.predict(features) == np.asarray(labels)))) for model in models]
    blocks = [(row, batch) for row in rows for batch in batch_sizes]
    for row, batch in progress(blocks, desc="timing blocks", total=len(blocks)):
        feeds = row.model.feeds(np.resize(features, (batch, features.shape[-1])))
        run = functools.partial(_session(row.model.path, threads).run, None, feeds)
        row.latency[batch] = measure(run, warmup=10, repeats=50, batch_size=batch, label=f"{row.name} @ {batch}",
                                     min_seconds=min_seconds)
    return ComparisonTable(rows)


def deployment_row(model: ModelFile, runtime: str, outputs: Mapping[str, Any], labels: np.ndarray,
                   latency_ms: Sequence[float] | None = None) -> MeasuredModel:
    """A row for ``model`` run by another runtime: accuracy from that runtime's own ``outputs`` on the test digits.

    ``latency_ms`` are per-call times at batch 1 that the runtime measured itself (the C++
    CLI's ``--time``), summarised like any other timing; None when it was not timed.
    """
    row = MeasuredModel(model, runtime, model.path.stat().st_size,
                        float(np.mean(predicted_digits(outputs) == np.asarray(labels))))
    if latency_ms is not None:
        row.latency[1] = BenchResult.from_times(latency_ms, label=f"{row.name} @ 1")
    return row


def _cells(row: MeasuredModel) -> list[str]:
    latencies = [f"{row.p50_ms(batch):.4f}" if row.p50_ms(batch) is not None else "–" for batch in BATCH_SIZES]
    return [row.model.framework, row.model.variant, row.runtime, f"{row.size_bytes / 1000:,.1f}",
            f"{100 * row.accuracy:.2f}", *latencies]


class ComparisonTable:
    """Every measured row, shown as one table (markdown in JupyterLab, aligned text elsewhere)."""

    _HEADERS = ("framework", "variant", "runtime", "size (KB)", "accuracy (%)",
                *(f"p50 ms @ {batch}" for batch in BATCH_SIZES))

    def __init__(self, rows: Sequence[MeasuredModel]) -> None:
        self.rows = list(rows)

    def add(self, row: MeasuredModel) -> None:
        """Append a row (a deployment measured by its own runtime)."""
        self.rows.append(row)

    def row(self, name: str) -> MeasuredModel:
        """The row called ``name`` (framework and variant, plus `` · runtime`` for a deployment)."""
        for row in self.rows:
            if row.name == name:
                return row
        raise KeyError(f"no row named {name!r}; the rows are {[row.name for row in self.rows]}")

    def records(self, runtime: str | None = PYTHON_RUNTIME) -> list[dict[str, Any]]:
        """The rows run by ``runtime`` (every row when None) as plain dicts: see :meth:`MeasuredModel.record`."""
        return [row.record() for row in self.rows if runtime is None or row.runtime == runtime]

    def to_text(self) -> str:
        lines = [list(self._HEADERS), *(_cells(row) for row in self.rows)]
        widths = [max(len(cell) for cell in column) for column in zip(*lines)]
        text = ["  ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip() for line in lines]
        text.insert(1, "  ".join("-" * width for width in widths))
        return "\n".join(text)

    def _repr_markdown_(self) -> str:
        lines = ["| " + " | ".join(self._HEADERS) + " |", "|" + "---|" * len(self._HEADERS)]
        return "\n".join(lines + ["| " + " | ".join(_cells(row)) + " |" for row in self.rows])

    def __str__(self) -> str:
        return self.to_text()


def plot_comparison(table: ComparisonTable, *, highlight: str | None = None, accuracy_floor: float | None = None):
    """Three panels, one bar per row: accuracy, size on disk, and p50 latency at each batch size (log scale).

    Bars are coloured by framework; ``highlight`` (a row name, e.g. the deployed file) is drawn
    with a black edge; ``accuracy_floor`` (in %) draws the lowest accuracy a selection rule
    allows as a dashed line. Missing latencies (a runtime timed at batch 1 only) have no bar.
    Returns the matplotlib figure.
    """
    import matplotlib.pyplot as plt

    rows = table.rows
    names = [row.name for row in rows]
    positions = np.arange(len(rows))
    palette = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    frameworks = list(dict.fromkeys(row.model.framework for row in rows))
    colours = [palette[frameworks.index(row.model.framework) % len(palette)] for row in rows]
    edges = ["black" if row.name == highlight else "none" for row in rows]
    figure, (accuracy_axes, size_axes, latency_axes) = plt.subplots(
        1, 3, figsize=(13, 0.38 * len(rows) + 1.6), sharey=True)
    accuracies = [100 * row.accuracy for row in rows]
    accuracy_axes.barh(positions, accuracies, color=colours, edgecolor=edges, linewidth=1.5)
    accuracy_axes.set_xlim(min([*accuracies, accuracy_floor or 100]) - 2, 100)
    accuracy_axes.set_xlabel("accuracy on the test digits (%)")
    if accuracy_floor is not None:
        accuracy_axes.axvline(accuracy_floor, color="black", linestyle="--", linewidth=1)
        accuracy_axes.set_xlabel(f"accuracy on the test digits (%); dashed: {accuracy_floor:.2f}")
    sizes = [row.size_bytes / 1000 for row in rows]
    size_axes.barh(positions, sizes, color=colours, edgecolor=edges, linewidth=1.5)
    size_axes.set_xlabel("size on disk (KB)")
    height = 0.8 / len(BATCH_SIZES)
    for index, (batch, hatch) in enumerate(zip(BATCH_SIZES, ("", "//"))):
        offsets = positions + (index - (len(BATCH_SIZES) - 1) / 2) * height
        values = [np.nan if row.p50_ms(batch) is None else row.p50_ms(batch) for row in rows]
        latency_axes.barh(offsets, values, height, color=colours, edgecolor="white", hatch=hatch,
                          label=f"batch {batch}")
    latency_axes.set_xscale("log")
    latency_axes.set_xlabel("p50 latency (ms, log scale)")
    latency_axes.legend(fontsize=8, loc="lower right")
    accuracy_axes.set_yticks(positions, names, fontsize=8)
    accuracy_axes.invert_yaxis()
    for axes in (accuracy_axes, size_axes, latency_axes):
        axes.grid(axis="x", alpha=0.3)
    figure.suptitle("Every file of the pipeline: accuracy, size and latency, measured here")
    figure.tight_layout()
    return figure
