"""Where the time and memory of a model go: FLOPs from the graph, the runtime profiler's trace, peak memory.

Introduced in lab 11.

* **FLOPs.** :func:`count_flops` walks a model's graph and counts the floating-point
  operations of its Conv, Gemm and MatMul nodes, the ones that dominate a network's arithmetic,
  with the shapes ONNX shape inference gives for concrete input sizes. A multiply–add is two
  FLOPs; biases, activations and pooling are not counted (they add a few per cent at most).
  The formulas are :func:`conv_flops`, :func:`gemm_flops` and :func:`matmul_flops`.
* **The profiler's trace.** With ``SessionOptions.enable_profiling = True``, ONNX Runtime
  writes every node's kernel time to a JSON trace (Chrome's trace-event format) that
  ``session.end_profiling()`` returns the path of. :func:`read_profile` loads it and
  :func:`operator_times` sums the kernel times per operator type, leaving out warm-up runs.
* **Memory.** ``tracemalloc`` sees only allocations made through Python's allocator; ONNX
  Runtime allocates its tensors in C++ (its *arena*), so :func:`current_rss_bytes` (the
  process's resident memory now, from psutil) and :func:`peak_rss_bytes` (its high-water mark)
  are what measure it. :func:`peak_memory_by_batch` runs a model in a
  fresh process at increasing batch sizes, where each new high-water mark belongs to one batch.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "FlopCount",
    "NodeFlops",
    "conv_flops",
    "count_flops",
    "current_rss_bytes",
    "gemm_flops",
    "matmul_flops",
    "operator_times",
    "peak_memory_by_batch",
    "peak_rss_bytes",
    "read_profile",
]

COUNTED_OPS = ("Conv", "Gemm", "MatMul")


# ---------------------------------------------------------------------------
# FLOPs
# ---------------------------------------------------------------------------

def conv_flops(output_shape: Sequence[int], weight_shape: Sequence[int]) -> int:
    """FLOPs of a convolution: ``2 · N · C_out · (output positions) · (C_in / group) · (kernel area)``.

    Every output value is a dot product over one filter, whose weights are ``weight_shape[1:]``
    (``C_in / group`` channels times the kernel window), so grouped and depthwise
    convolutions need no special case.

    Args:
        output_shape: ``(N, C_out, *spatial_out)``, e.g. ``(64, 16, 4, 4)``.
        weight_shape: ``(C_out, C_in / group, *kernel)``, e.g. ``(16, 8, 3, 3)``.
    """
    batch, channels_out, *spatial = (int(size) for size in output_shape)
    return 2 * batch * channels_out * math.prod(spatial) * math.prod(int(size) for size in weight_shape[1:])


def gemm_flops(a_shape: Sequence[int], b_shape: Sequence[int], *, trans_a: bool = False, trans_b: bool = False) -> int:
    """FLOPs of ``Gemm``'s product ``A · B`` (``M × K`` times ``K × N``): ``2 · M · N · K``."""
    rows, inner = (a_shape[1], a_shape[0]) if trans_a else (a_shape[0], a_shape[1])
    columns = b_shape[0] if trans_b else b_shape[1]
    return 2 * int(rows) * int(columns) * int(inner)


def matmul_flops(a_shape: Sequence[int], b_shape: Sequence[int]) -> int:
    """FLOPs of ``MatMul`` with NumPy's rules: ``2 · (broadcast batch) · M · N · K``; a 1-D operand is a vector."""
    a_dims = [1, *a_shape] if len(a_shape) == 1 else list(a_shape)
    b_dims = [*b_shape, 1] if len(b_shape) == 1 else list(b_shape)
    batch = _broadcast(a_dims[:-2], b_dims[:-2])
    return 2 * math.prod(batch) * int(a_dims[-2]) * int(b_dims[-1]) * int(a_dims[-1])


def _broadcast(a: Sequence[int], b: Sequence[int]) -> list[int]:
    width = max(len(a), len(b))
    a, b = [1] * (width - len(a)) + list(a), [1] * (width - len(b)) + list(b)
    return [max(int(x), int(y)) for x, y in zip(a, b)]


@dataclass(frozen=True)
class NodeFlops:
    """The FLOPs of one counted node."""

    name: str
    op_type: str
    flops: int


@dataclass(frozen=True)
class FlopCount:
    """FLOPs per node of a model at given input sizes (Conv, Gemm and MatMul only)."""

    nodes: tuple[NodeFlops, ...]
    input_shapes: Mapping[str, tuple[int, ...]]

    @property
    def total(self) -> int:
        return sum(node.flops for node in self.nodes)

    def by_op_type(self) -> dict[str, int]:
        totals: dict[str, int] = {}
        for node in self.nodes:
            totals[node.op_type] = totals.get(node.op_type, 0) + node.flops
        return totals

    def to_text(self) -> str:
        shapes = ", ".join(f"{name} {list(shape)}" for name, shape in self.input_shapes.items())
        width = max([len(node.name) for node in self.nodes] + [4])
        lines = [f"FLOPs at {shapes} (Conv, Gemm, MatMul; a multiply-add is 2 FLOPs):"]
        lines += [f"  {node.name:<{width}}  {node.op_type:<6}  {node.flops:>15,}" for node in self.nodes]
        lines.append(f"  {'total':<{width}}  {'':<6}  {self.total:>15,}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.to_text()


def count_flops(model: Any, input_shapes: Mapping[str, Sequence[int]]) -> FlopCount:
    """Count the FLOPs of ``model``'s Conv, Gemm and MatMul nodes for inputs of ``input_shapes``.

    Args:
        model: an ``onnx.ModelProto`` (read files with :func:`labsupport.model_loader.load_model`).
        input_shapes: input name → concrete shape, e.g. ``{"pixels": (64, 1, 8, 8)}``; every
            graph input that is not an initializer needs one.

    Raises:
        ValueError: an input shape is missing or names no input, or shape inference leaves the
            shape a counted node needs unknown (the message names the node).
    """
    import onnx

    sized = onnx.ModelProto()
    sized.CopyFrom(model)
    initializers = {tensor.name: tuple(tensor.dims) for tensor in sized.graph.initializer}
    graph_inputs = [value for value in sized.graph.input if value.name not in initializers]
    unknown = sorted(set(input_shapes) - {value.name for value in graph_inputs})
    if unknown:
        raise ValueError(f"input_shapes names {unknown}, which are not inputs of the model; its inputs are "
                         f"{[value.name for value in graph_inputs]}.")
    for value in graph_inputs:
        if value.name not in input_shapes:
            raise ValueError(f"input_shapes has no shape for input '{value.name}'; give one, e.g. "
                             f"{{'{value.name}': (1, ...)}}.")
        dims = value.type.tensor_type.shape.dim
        del dims[:]
        for size in input_shapes[value.name]:
            dims.add().dim_value = int(size)
    inferred = onnx.shape_inference.infer_shapes(sized)
    shapes = dict(initializers)
    for value in [*inferred.graph.input, *inferred.graph.value_info, *inferred.graph.output]:
        dims = value.type.tensor_type.shape.dim
        if value.type.HasField("tensor_type") and dims and all(dim.HasField("dim_value") for dim in dims):
            shapes[value.name] = tuple(dim.dim_value for dim in dims)

    def shape_of(node: Any, name: str) -> tuple[int, ...]:
        if name not in shapes:
            raise ValueError(f"cannot count the FLOPs of {node.op_type} node '{node.name}': the shape of '{name}' "
                             "is unknown after shape inference.")
        return shapes[name]

    counted = []
    for index, node in enumerate(inferred.graph.node):
        if node.domain not in ("", "ai.onnx") or node.op_type not in COUNTED_OPS:
            continue
        name = node.name or f"{node.op_type}_{index}"
        if node.op_type == "Conv":
            flops = conv_flops(shape_of(node, node.output[0]), shape_of(node, node.input[1]))
        elif node.op_type == "Gemm":
            attributes = {attribute.name: attribute.i for attribute in node.attribute}
            flops = gemm_flops(shape_of(node, node.input[0]), shape_of(node, node.input[1]),
                               trans_a=bool(attributes.get("transA", 0)), trans_b=bool(attributes.get("transB", 0)))
        else:
            flops = matmul_flops(shape_of(node, node.input[0]), shape_of(node, node.input[1]))
        counted.append(NodeFlops(name, node.op_type, flops))
    return FlopCount(tuple(counted), {name: tuple(int(size) for size in shape) for name, shape in input_shapes.items()})


# ---------------------------------------------------------------------------
# The profiler's trace
# ---------------------------------------------------------------------------

def read_profile(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The events of an ONNX Runtime profile: a list of dicts with ``cat``, ``name``, ``ts``, ``dur`` (µs), ``args``."""
    with open(path, encoding="utf-8") as trace:
        return json.load(trace)


def operator_times(events: Sequence[Mapping[str, Any]], *, skip_runs: int = 0) -> dict[str, float]:
    """Total kernel time in microseconds per operator type, largest first.

    Node events (``cat == "Node"``) carry the kernel time in ``dur`` and the operator type the
    runtime ran in ``args["op_name"]`` — after graph optimization, so fused and layout operators
    (``FusedConv``, ``ReorderInput``) appear under their own names. ``skip_runs`` leaves out the
    node events of the first runs (warm-up), which end with their ``model_run`` session event.
    """
    runs = sorted(event["ts"] + event["dur"] for event in events
                  if event.get("cat") == "Session" and event.get("name") == "model_run")
    start = runs[skip_runs - 1] if 0 < skip_runs <= len(runs) else (math.inf if skip_runs > len(runs) else -math.inf)
    totals: dict[str, float] = {}
    for event in events:
        if event.get("cat") == "Node" and event["ts"] > start:
            op_type = event.get("args", {}).get("op_name", event.get("name", "?"))
            totals[op_type] = totals.get(op_type, 0.0) + float(event["dur"])
    return dict(sorted(totals.items(), key=lambda item: -item[1]))


# ---------------------------------------------------------------------------
# Memory
# ---------------------------------------------------------------------------

def current_rss_bytes() -> int:
    """This process's resident memory now (psutil): what the operating system has given it and it still holds."""
    import psutil

    return int(psutil.Process().memory_info().rss)


def peak_rss_bytes() -> int:
    """This process's peak resident memory since it started: a high-water mark that never goes down.

    On Linux it is ``VmHWM`` from ``/proc/self/status``, the high-water mark of this process's
    own memory. ``resource.getrusage(RUSAGE_SELF).ru_maxrss`` is *not* used there, because Linux
    carries it across ``exec``: a child started from a kernel holding 1 GB reports at least 1 GB
    (lab 11 measures it). Elsewhere: ``ru_maxrss`` (bytes on macOS), or psutil's ``peak_wset`` on
    Windows, which has no ``resource`` module.
    """
    status = Path("/proc/self/status")
    if sys.platform.startswith("linux") and status.is_file():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    try:
        import resource
    except ImportError:  # Windows
        import psutil

        return int(psutil.Process().memory_info().peak_wset)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


_CHILD = """
import json, sys
import numpy as np
from labsupport.onnx_tools import cpu_session
from labsupport.profiling import peak_rss_bytes
path, input_name, shape, batch_sizes = json.loads(sys.argv[1])
report = {"imported": peak_rss_bytes()}
session = cpu_session(path)
report["session"] = peak_rss_bytes()
rng = np.random.default_rng(0)
for batch in sorted(batch_sizes):
    session.run(None, {input_name: rng.random((batch, *shape), dtype=np.float32)})
    report[str(batch)] = peak_rss_bytes()
print(json.dumps(report))
"""


def peak_memory_by_batch(model_path: str | os.PathLike, input_name: str, sample_shape: Sequence[int],
                         batch_sizes: Sequence[int]) -> dict[str, int]:
    """Peak resident memory of a fresh process running a float32 model at increasing batch sizes.

    The child imports numpy and ONNX Runtime, creates a CPU session and runs the model once per
    batch size, smallest first, reading the high-water mark after each step. Because each batch
    needs more memory than the last, each step raises the mark, so the differences between
    steps belong to the batches (in the notebook's own process an earlier peak, such as
    importing TensorFlow, would hide them).

    Returns:
        ``{"imported": bytes, "session": bytes, "1": bytes, …}``: the peak after imports, after
        creating the session and after each batch.
    """
    argument = json.dumps([str(Path(model_path)), input_name, [int(size) for size in sample_shape],
                           [int(size) for size in batch_sizes]])
    completed = subprocess.run([sys.executable, "-c", _CHILD, argument], capture_output=True, text=True, timeout=300)
    if completed.returncode != 0:
        lines = [line for line in completed.stderr.strip().splitlines() if line.strip()]
        raise RuntimeError(f"the memory measurement process failed: {lines[-1] if lines else completed.returncode}")
    return json.loads(completed.stdout)
