"""The small ONNX plumbing every part of labsupport shares: one way to do each thing.

Introduced in lab 01 and used by the exercise kinds, the validation harness and the later
labs' helpers. Reading a model *file* is :mod:`labsupport.model_loader`'s job; this module
works on what was read:

* :func:`cpu_session` — an ONNX Runtime session on the CPU provider, from a path or a ModelProto;
* :func:`tensor_dims` — the declared dimensions of a graph input or output;
* :func:`opset_versions` / :func:`default_opset` / :func:`opsets_text` — the opset table, with
  the default domain spelled ``ai.onnx`` whether the file says ``''`` or ``'ai.onnx'``;
* :func:`elem_type_name` and the element-type constants (``FLOAT``, ``INT64``…), which are
  ``onnx.TensorProto``'s numbers spelled out so that importing this module stays cheap;
* :func:`first_line` — the first meaningful line of a library's error, for one-line messages.

Importing it imports neither onnx nor onnxruntime; the functions import them when called.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

__all__ = [
    "BOOL",
    "DOUBLE",
    "FLOAT",
    "FLOAT16",
    "INT32",
    "INT64",
    "STRING",
    "UINT8",
    "INT8",
    "cpu_session",
    "default_opset",
    "elem_type_name",
    "first_line",
    "opset_versions",
    "opsets_text",
    "tensor_dims",
]

# onnx.TensorProto.DataType numbers (fixed by the ONNX standard; a test checks them against onnx)
FLOAT, UINT8, INT8, INT32, INT64, STRING, BOOL, FLOAT16, DOUBLE = 1, 2, 3, 6, 7, 8, 9, 10, 11

DEFAULT_DOMAIN = "ai.onnx"


def first_line(error: BaseException | str) -> str:
    """The first non-blank line of an error's message (or of a text), or the error's class name when it has none."""
    lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
    if lines:
        return lines[0]
    return type(error).__name__ if isinstance(error, BaseException) else ""


def elem_type_name(elem_type: int) -> str:
    """``1`` → ``"FLOAT"``; an undefined number is named as such instead of raising."""
    import onnx

    try:
        return onnx.TensorProto.DataType.Name(elem_type)
    except ValueError:
        return f"element type {elem_type}"


def tensor_dims(value_info: Any) -> tuple[int | str | None, ...] | None:
    """Declared dimensions of a graph input or output: an int for a fixed size, the symbol for a
    named dynamic one (``"batch"``), None for an unnamed one; None when the rank is not declared
    or the value is not a tensor."""
    if value_info.type.WhichOneof("value") != "tensor_type":
        return None
    tensor_type = value_info.type.tensor_type
    if not tensor_type.HasField("shape"):
        return None
    return tuple(dim.dim_value if dim.HasField("dim_value") else (dim.dim_param or None)
                 for dim in tensor_type.shape.dim)


def opset_versions(model: Any) -> dict[str, int]:
    """Domain → imported opset version; the default domain is keyed ``"ai.onnx"`` however it is written."""
    return {entry.domain or DEFAULT_DOMAIN: entry.version for entry in model.opset_import}


def default_opset(model: Any) -> int | None:
    """The default domain's opset: the entry whose domain is ``''`` or ``'ai.onnx'``, never ``opset_import[0]``."""
    return opset_versions(model).get(DEFAULT_DOMAIN)


def opsets_text(model: Any) -> str:
    """``ai.onnx 20, ai.onnx.ml 1``: every domain once, sorted."""
    return ", ".join(f"{domain} {version}" for domain, version in sorted(opset_versions(model).items()))


def cpu_session(model_or_path: Any, options: Any = None, *, quiet: bool = True) -> Any:
    """An ``onnxruntime.InferenceSession`` on the CPU provider.

    ``model_or_path`` is a path (weights stored as external data are found beside it) or a
    ModelProto. ``quiet`` logs only errors: ONNX Runtime's warnings (unused initializers,
    for instance) are noise in a lab that did not ask for them. Raises what ONNX Runtime
    raises; callers turn it into their own one-line message with :func:`first_line`.
    """
    import onnxruntime

    if options is None:
        options = onnxruntime.SessionOptions()
        if quiet:
            options.log_severity_level = 3
    source = os.fspath(model_or_path) if isinstance(model_or_path, (str, Path)) else model_or_path.SerializeToString()
    return onnxruntime.InferenceSession(source, options, providers=["CPUExecutionProvider"])
