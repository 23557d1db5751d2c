"""Crossing runtime boundaries: which operators a runtime implements, OpenVINO without telemetry, bf16 emulated.

Introduced in lab 12.

* :func:`compatibility_report` — every operator of a model file, with the version the model
  uses, and whether the ONNX standard defines it, ONNX Runtime's CPU provider has a kernel for
  that version (or runs the standard's function body instead), and OpenVINO's ONNX front end
  converts it;
* :func:`import_openvino` — ``import openvino`` with its usage telemetry off, and
  :func:`openvino_telemetry_active` to confirm it; :func:`recording_network_attempts` lists
  what a block of code tried to do on the network (or in a child process, which could);
* :func:`openvino_reason` — the line of an OpenVINO exception that says what went wrong;
* :func:`bfloat16_rounded` — a copy of a float32 model that rounds its input, weights and every
  intermediate tensor to bfloat16, to measure in ONNX Runtime what bf16 arithmetic costs.

Importing this module imports neither onnx, onnxruntime nor openvino.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from labsupport.onnx_tools import FLOAT, opset_versions

DEFAULT_DOMAIN = "ai.onnx"  # how opset_versions spells the default domain, whether a file says '' or 'ai.onnx'

__all__ = [
    "CompatibilityReport",
    "DEFAULT_DOMAIN",
    "OperatorSupport",
    "bfloat16_rounded",
    "compatibility_report",
    "import_openvino",
    "openvino_reason",
    "openvino_telemetry_active",
    "recording_network_attempts",
]


# ---------------------------------------------------------------------------
# OpenVINO without telemetry, and a way to see that nothing went out
# ---------------------------------------------------------------------------

def import_openvino() -> Any:
    """Import and return ``openvino`` with its usage telemetry switched off for this process.

    openvino 2026.4 imports its model converter (``openvino.tools.ovc``) from its own
    ``__init__``, and that module sends a usage event ("ov", "import") to Google Analytics
    through the ``openvino-telemetry`` package, from a child process, unless a consent file in
    ``~/intel`` says no or a ``CI`` variable is set; it also writes a client id into
    ``~/intel``. The converter falls back to a stub that sends nothing when
    ``openvino_telemetry`` cannot be imported, so this function makes that import fail (a
    ``None`` entry in ``sys.modules``) before ``openvino`` is first imported. Call it before
    anything else imports openvino; once imported, openvino is cached and this returns it.
    """
    if "openvino" not in sys.modules:
        sys.modules["openvino_telemetry"] = None  # `import openvino_telemetry` now raises ImportError
    import openvino

    return openvino


def openvino_telemetry_active() -> bool:
    """True if openvino was imported with its telemetry package live (False if it is the stub or not imported)."""
    utils = sys.modules.get("openvino.tools.ovc.telemetry_utils")
    return utils is not None and getattr(getattr(utils, "tm", None), "__name__", "") == "openvino_telemetry"


_NETWORK_EVENTS = frozenset({
    "socket.connect", "socket.getaddrinfo", "socket.gethostbyname", "socket.gethostbyaddr", "socket.sendto",
    "socket.sendmsg", "urllib.Request", "http.client.connect", "os.fork", "os.forkpty", "os.posix_spawn",
    "os.spawn", "subprocess.Popen",
})
_recordings: list[list[str]] = []
_hook_installed = False


def _record_audit_event(event: str, arguments: tuple) -> None:
    if _recordings and event in _NETWORK_EVENTS:
        text = f"{event} {arguments!r}"[:200]
        for recording in _recordings:
            recording.append(text)


@contextlib.contextmanager
def recording_network_attempts() -> Iterator[list[str]]:
    """List the network calls (and process starts) that Python code makes inside the block.

    Uses Python's audit hooks (PEP 578): sockets opened or resolved, URLs requested, and child
    processes started (forked, spawned or run), because a child can connect where this process
    cannot see it. Native code that opens sockets without going through Python is not seen.
    The hook, once installed, stays for the life of the process (audit hooks cannot be
    removed); outside a ``with`` block it records nothing.
    """
    global _hook_installed
    if not _hook_installed:
        sys.addaudithook(_record_audit_event)
        _hook_installed = True
    attempts: list[str] = []
    _recordings.append(attempts)
    try:
        yield attempts
    finally:
        _recordings.remove(attempts)


def openvino_reason(error: BaseException | str) -> str:
    """The line of an OpenVINO exception that says what went wrong.

    OpenVINO's messages start with the C++ source locations they passed through
    (``Exception from src/inference/src/cpp/core.cpp:132:``) and end with the reason, so the
    last non-blank line is kept, without the ``-- `` that marks items of a summary.
    """
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    if not lines:
        return type(error).__name__ if isinstance(error, BaseException) else ""
    return lines[-1].removeprefix("-- ")


# ---------------------------------------------------------------------------
# Which operators a runtime implements
# ---------------------------------------------------------------------------

@dataclass(frozen=True)
class OperatorSupport:
    """One operator of a model and who can run it.

    Attributes:
        domain: ``ai.onnx`` for the default domain, else the node's domain.
        op_type: the operator's name.
        version: the operator version the model uses: the newest ``since_version`` at or below
            the opset it imports for the domain (None when no schema is known for it).
        nodes: how many nodes of the model use it.
        standard: True if the ONNX standard defines it.
        onnxruntime: ``"kernel"`` (the CPU provider implements that version), ``"function"``
            (no kernel, but the standard defines it as a function of other operators, which
            ONNX Runtime expands) or ``"no"``.
        openvino: ``"yes"`` if OpenVINO's ONNX front end converts the nodes, else ``"no"``.
    """

    domain: str
    op_type: str
    version: int | None
    nodes: int
    standard: bool
    onnxruntime: str
    openvino: str

    @property
    def name(self) -> str:
        """``Conv`` for the default domain, ``com.microsoft::FusedConv`` otherwise."""
        return self.op_type if self.domain == DEFAULT_DOMAIN else f"{self.domain}::{self.op_type}"


class CompatibilityReport(tuple):
    """The :class:`OperatorSupport` rows of one model, shown as a table."""

    _HEADERS = ("operator", "version", "nodes", "ONNX standard", "ONNX Runtime CPU", "OpenVINO CPU")

    def unsupported(self, runtime: str) -> list[str]:
        """Names of the operators ``runtime`` (``"onnxruntime"`` or ``"openvino"``) cannot run."""
        return [row.name for row in self if getattr(row, runtime) == "no"]

    def _rows(self) -> list[tuple[str, ...]]:
        return [(row.name, "?" if row.version is None else str(row.version), str(row.nodes),
                 "yes" if row.standard else "no", row.onnxruntime, row.openvino) for row in self]

    def __str__(self) -> str:
        rows = [self._HEADERS, *self._rows()]
        widths = [max(len(row[column]) for row in rows) for column in range(len(self._HEADERS))]
        return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows)

    def _repr_markdown_(self) -> str:
        lines = ["| " + " | ".join(self._HEADERS) + " |", "|" + "---|" * len(self._HEADERS)]
        return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in self._rows()])

    def __repr__(self) -> str:
        return str(self)


def _ort_cpu_kernels() -> dict[tuple[str, str], list[tuple[int, int]]]:
    """(domain, op_type) → version ranges of ONNX Runtime's CPU kernels, from its kernel registry."""
    from onnxruntime.capi import _pybind_state

    kernels: dict[tuple[str, str], list[tuple[int, int]]] = {}
    for kernel in _pybind_state.get_all_opkernel_def():
        if kernel.provider == "CPUExecutionProvider":
            key = (kernel.domain or DEFAULT_DOMAIN, kernel.op_name)
            kernels.setdefault(key, []).append(tuple(kernel.version_range))
    return kernels


def _operator_version(domain: str, op_type: str, opset: int | None) -> tuple[int | None, bool, bool]:
    """(version the model uses, defined by the standard, has a function body) for one operator."""
    import onnx
    from onnxruntime.capi import _pybind_state

    onnx_domain = "" if domain == DEFAULT_DOMAIN else domain
    if opset is None:
        return None, False, False
    if onnx.defs.has(op_type, onnx_domain):
        try:
            schema = onnx.defs.get_schema(op_type, opset, onnx_domain)
        except onnx.defs.SchemaError:  # the operator is newer than the opset the model imports
            return None, True, False
        return schema.since_version, True, schema.has_function or schema.has_context_dependent_function
    versions = [schema.since_version for schema in _pybind_state.get_all_operator_schema()
                if schema.name == op_type and (schema.domain or DEFAULT_DOMAIN) == domain
                and schema.since_version <= opset]
    return (max(versions) if versions else None), False, False


def _openvino_unconverted(path: Path) -> set[tuple[str, str]]:
    """(domain, op_type) of the nodes OpenVINO's ONNX front end leaves unconverted."""
    import_openvino()
    from openvino.frontend import FrontEndManager

    manager = FrontEndManager()  # owns the front end's library: it must outlive everything made from it
    front_end = manager.load_by_framework("onnx")
    input_model = front_end.load(str(path))
    partial = front_end.convert_partially(input_model)
    unconverted = set()
    for operation in partial.get_ordered_ops():
        if operation.get_type_name() == "ONNXFrameworkNode":
            attributes = operation.get_attributes()
            unconverted.add((attributes.get("ONNX_META_domain") or DEFAULT_DOMAIN, attributes["ONNX_META_type"]))
        del operation
    del partial, input_model, front_end  # in reverse order of creation, before the manager goes
    del manager
    return unconverted


def compatibility_report(path: str | os.PathLike) -> CompatibilityReport:
    """Every distinct operator of the model at ``path``, and whether each target can run it.

    The targets are the ONNX standard (``onnx.defs``), ONNX Runtime's CPU provider (its kernel
    registry, the same one that decides whether a session can be created) and OpenVINO's
    ONNX front end (a partial conversion, which keeps what it cannot convert as placeholder
    nodes). The model is read with :func:`labsupport.model_loader.load_model`, so a file that
    cannot be read raises its one-line :class:`~labsupport.model_loader.ModelInputError`.
    Subgraphs (the bodies of If and Loop) are not inspected.
    """
    from labsupport.model_loader import load_model

    path = Path(path)
    model = load_model(path)
    opsets = opset_versions(model)
    counts: dict[tuple[str, str], int] = {}
    for node in model.graph.node:
        key = (node.domain or DEFAULT_DOMAIN, node.op_type)
        counts[key] = counts.get(key, 0) + 1
    kernels = _ort_cpu_kernels()
    unconverted = _openvino_unconverted(path)
    rows = []
    for (domain, op_type), nodes in counts.items():
        version, standard, has_function = _operator_version(domain, op_type, opsets.get(domain))
        covered = version is not None and any(start <= version <= end for start, end in kernels.get((domain, op_type),
                                                                                                      ()))
        onnxruntime = "kernel" if covered else "function" if has_function else "no"
        openvino = "no" if (domain, op_type) in unconverted else "yes"
        rows.append(OperatorSupport(domain, op_type, version, nodes, standard, onnxruntime, openvino))
    return CompatibilityReport(rows)


# ---------------------------------------------------------------------------
# bfloat16, emulated
# ---------------------------------------------------------------------------

def bfloat16_rounded(model: Any) -> Any:
    """A copy of a float32 ``model`` whose input, weights and intermediate tensors are rounded to bfloat16.

    bfloat16 keeps float32's 8 exponent bits but only 8 bits of significand (float32 has 24),
    so each rounding changes a value by up to 2⁻⁹ of itself. A CPU that computes in bf16
    rounds inputs, weights and the results of each layer like this and accumulates in
    float32; running this copy in ONNX Runtime (in float32) measures what that rounding does
    to a model's outputs on any machine. Weights are rounded in place (with ``ml_dtypes``);
    every float input and every float tensor a node produces passes through a
    Cast to BFLOAT16 and back. The graph's inputs and outputs keep their names and types.
    """
    import ml_dtypes
    import numpy as np
    import onnx
    from onnx import helper, numpy_helper

    rounded = onnx.ModelProto()
    rounded.CopyFrom(model)
    graph = rounded.graph
    for tensor in graph.initializer:
        if tensor.data_type == FLOAT:
            values = numpy_helper.to_array(tensor).astype(ml_dtypes.bfloat16).astype(np.float32)
            tensor.CopyFrom(numpy_helper.from_array(values, tensor.name))
    float_values = {value.name for value in onnx.shape_inference.infer_shapes(rounded).graph.value_info
                    if value.type.tensor_type.elem_type == FLOAT}
    float_values |= {value.name for value in [*graph.input, *graph.output] if value.type.tensor_type.elem_type == FLOAT}
    initializers = {tensor.name for tensor in graph.initializer}

    def round_trip(source: str, target: str) -> list[Any]:
        return [helper.make_node("Cast", [source], [f"{target}/bf16"], to=onnx.TensorProto.BFLOAT16),
                helper.make_node("Cast", [f"{target}/bf16"], [target], to=FLOAT)]

    nodes = []
    renamed_inputs = {}
    for value in graph.input:
        if value.name in float_values and value.name not in initializers:
            renamed_inputs[value.name] = f"{value.name}/rounded"
            nodes += round_trip(value.name, renamed_inputs[value.name])
    for original in graph.node:
        node = onnx.NodeProto()
        node.CopyFrom(original)
        for index, name in enumerate(node.input):
            if name in renamed_inputs:
                node.input[index] = renamed_inputs[name]
        outputs = list(node.output)
        for index, name in enumerate(outputs):
            if name in float_values:
                node.output[index] = f"{name}/float32"
        nodes.append(node)
        for name in outputs:
            if name in float_values:
                nodes += round_trip(f"{name}/float32", name)
    del graph.node[:]
    graph.node.extend(nodes)
    del graph.value_info[:]
    return rounded
