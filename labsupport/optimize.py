"""Graph optimization, inspected: what ONNX Runtime and the PyPI optimizers do to a graph.

Introduced in lab 09. ONNX Runtime rewrites every graph it loads, at one of four levels
(:data:`LEVEL_NAMES`), and can save the graph it will actually run
(``SessionOptions.optimized_model_filepath``). These helpers make sessions at a level, save
and reload that graph, count its operators, plot the counts, fold a BatchNormalization into
the convolution before it the way the runtime does, drop initializers from an old model's
graph inputs, and catch a library's Python log messages so a cell can show them on purpose.
"""

from __future__ import annotations

import contextlib
import logging
from collections import Counter
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from labsupport.model_loader import load_model
from labsupport.onnx_tools import cpu_session

__all__ = [
    "LEVEL_NAMES",
    "collect_log_messages",
    "drop_initializer_inputs",
    "fold_batchnorm",
    "level_value",
    "make_session",
    "max_output_difference",
    "op_histogram",
    "optimize_at_level",
    "plot_op_histograms",
    "producer_chain",
]

LEVEL_NAMES = ("ORT_DISABLE_ALL", "ORT_ENABLE_BASIC", "ORT_ENABLE_EXTENDED", "ORT_ENABLE_ALL")
QUIET = 3  # ONNX Runtime's log severity "error": warnings are not printed


def level_value(level: Any):
    """The ``onnxruntime.GraphOptimizationLevel`` for a level or its name (``"ORT_ENABLE_BASIC"``, ``"basic"``)."""
    import onnxruntime

    if isinstance(level, onnxruntime.GraphOptimizationLevel):
        return level
    members = onnxruntime.GraphOptimizationLevel.__members__
    if isinstance(level, str):
        for name in (level, level.upper(), f"ORT_ENABLE_{level.upper()}", f"ORT_{level.upper()}"):
            if name in members:
                return members[name]
    raise ValueError(f"{level!r} is not an optimization level; use one of {', '.join(members)} "
                     "(onnxruntime.GraphOptimizationLevel).")


def make_session(model: Any, level: Any = "ORT_ENABLE_ALL", *, save_to: str | Path | None = None,
                 log_severity: int = QUIET, threads: int = 0):
    """An ONNX Runtime CPU session on ``model`` (a path or a ModelProto) at optimization ``level``.

    ``save_to`` makes the runtime write the graph it optimized — the one it will run — to
    that file. ``log_severity`` 3 (the default) prints errors only; pass 2 to see the
    runtime's warnings, such as the one it gives when saving a layout-optimized graph.
    ``threads`` sets the intra-op thread count (0: the runtime's default, one per core).
    """
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = level_value(level)
    options.log_severity_level = log_severity
    options.intra_op_num_threads = threads
    if save_to is not None:
        Path(save_to).parent.mkdir(parents=True, exist_ok=True)
        options.optimized_model_filepath = str(save_to)
    return cpu_session(model, options)


def optimize_at_level(model: Any, level: Any, path: str | Path, *, log_severity: int = QUIET):
    """Let ONNX Runtime optimize ``model`` at ``level``, save the result to ``path`` and return it as a ModelProto."""
    make_session(model, level, save_to=path, log_severity=log_severity)
    return load_model(path)


def op_histogram(model: Any, *, with_domain: bool = False) -> Counter:
    """How many nodes of each operator type the main graph of ``model`` has.

    With ``with_domain``, operators outside the default domain are keyed ``domain:op_type``
    (``com.microsoft:FusedConv``), so a runtime-specific Conv is not counted as a standard one.
    """
    def key(node) -> str:
        return f"{node.domain}:{node.op_type}" if with_domain and node.domain not in ("", "ai.onnx") else node.op_type

    return Counter(key(node) for node in model.graph.node)


def plot_op_histograms(histograms: Mapping[str, Counter], *, title: str = "", top: int = 12):
    """Horizontal grouped bars: for each operator type, its node count in each graph of ``histograms``.

    ``histograms`` maps a label (a level, a tool) to an :func:`op_histogram`. The ``top``
    operator types by largest count are drawn, the rest summed as "other". Returns the Figure.
    """
    import matplotlib.pyplot as plt

    largest = Counter()
    for histogram in histograms.values():
        for op_type, count in histogram.items():
            largest[op_type] = max(largest[op_type], count)
    shown = [op_type for op_type, _ in largest.most_common(top)]
    rows = shown + (["other"] if len(largest) > len(shown) else [])
    height = 0.8 / max(len(histograms), 1)
    figure, axes = plt.subplots(figsize=(8, 0.22 * len(rows) * max(len(histograms), 2) / 2 + 1.5))
    for index, (label, histogram) in enumerate(histograms.items()):
        counts = [histogram.get(op_type, 0) for op_type in shown]
        if "other" in rows:
            counts.append(sum(count for op_type, count in histogram.items() if op_type not in shown))
        positions = [row + index * height for row in range(len(rows))]
        bars = axes.barh(positions, counts, height=height, label=f"{label} ({sum(histogram.values())} nodes)")
        axes.bar_label(bars, [str(count) if count else "" for count in counts], fontsize=7, padding=2)
    axes.set_yticks([row + height * (len(histograms) - 1) / 2 for row in range(len(rows))], rows)
    axes.invert_yaxis()
    axes.set_xlabel("nodes")
    axes.set_title(title)
    axes.legend(fontsize=8, loc="lower right")
    figure.tight_layout()
    return figure


def fold_batchnorm(weight: np.ndarray, bias: np.ndarray | None, gamma: np.ndarray, beta: np.ndarray,
                   mean: np.ndarray, var: np.ndarray, epsilon: float = 1e-5) -> tuple[np.ndarray, np.ndarray]:
    """Fold ``BatchNormalization(Conv(x, weight, bias))`` into one Conv; returns its (weight, bias).

    Per output channel c, with ``s = gamma[c] / sqrt(var[c] + epsilon)``:
    ``W'[c] = W[c] · s`` and ``b'[c] = (b[c] − mean[c]) · s + beta[c]`` (a missing bias is 0).
    Computed in float32, as ONNX Runtime's ConvBNFusion does.
    """
    weight = np.asarray(weight, np.float32)
    channels = weight.shape[0]
    bias = np.zeros(channels, np.float32) if bias is None else np.asarray(bias, np.float32)
    scale = np.asarray(gamma, np.float32) / np.sqrt(np.asarray(var, np.float32) + np.float32(epsilon))
    fused_weight = weight * scale.reshape((channels,) + (1,) * (weight.ndim - 1))
    fused_bias = (bias - np.asarray(mean, np.float32)) * scale + np.asarray(beta, np.float32)
    return fused_weight.astype(np.float32), fused_bias.astype(np.float32)


def drop_initializer_inputs(model):
    """A copy of ``model`` whose graph inputs no longer list its initializers (IR version raised to at least 4).

    Before IR version 4, every initializer had to be a graph input too, as a default value a
    caller could override. Optimizers that honour that (onnxscript's) will not fold or fuse
    any weight still listed as an input.
    """
    import onnx

    copied = onnx.ModelProto()
    copied.CopyFrom(model)
    initializers = {tensor.name for tensor in copied.graph.initializer}
    kept = [value for value in copied.graph.input if value.name not in initializers]
    del copied.graph.input[:]
    copied.graph.input.extend(kept)
    copied.ir_version = max(copied.ir_version, 4)
    return copied


def max_output_difference(reference: Any, candidate: Any, feeds: Mapping[str, np.ndarray]) -> float:
    """Largest |difference| over all outputs of two models on ``feeds``, each run with ONNX Runtime unoptimized.

    Running both at ``ORT_DISABLE_ALL`` compares what the two *files* compute, not what the
    runtime makes of them. Outputs are matched by position.
    """
    outputs = [make_session(model, "ORT_DISABLE_ALL").run(None, dict(feeds)) for model in (reference, candidate)]
    return max(float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))
               for a, b in zip(*outputs))


def producer_chain(model, tensor: str, length: int = 6) -> list[str]:
    """The op types met walking up from ``tensor`` through each node's first input made by a non-Constant node.

    A quick way to read the path a pattern-matching optimizer expects, e.g. from the Add before
    a Softmax back to the attention mask. Walking stops at a graph input or initializer.
    """
    producers = {output: node for node in model.graph.node for output in node.output}
    chain = []
    node = producers.get(tensor)
    while node is not None and len(chain) < length:
        chain.append(node.op_type)
        node = next((producers[name] for name in node.input
                     if name in producers and producers[name].op_type != "Constant"), None)
    return chain


@contextlib.contextmanager
def collect_log_messages(logger_name: str, level: int = logging.WARNING) -> Iterator[list[str]]:
    """Collect what a Python logger (and its children) emits at ``level`` or above into a list, instead of stderr.

    Libraries such as onnx_ir and onnxruntime.transformers report through Python's logging;
    this lets a cell count or show their messages deliberately. The logger's level, handlers
    and propagation are restored on exit.
    """
    messages: list[str] = []

    class _ListHandler(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            messages.append(record.getMessage())

    logger = logging.getLogger(logger_name)
    saved = (logger.level, logger.propagate, list(logger.handlers))
    handler = _ListHandler(level)
    logger.handlers = [handler]
    logger.setLevel(level)
    logger.propagate = False
    try:
        yield messages
    finally:
        logger.setLevel(saved[0])
        logger.propagate = saved[1]
        logger.handlers = saved[2]
