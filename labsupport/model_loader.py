"""Reading a model file safely: one module for every lab, one actionable line for any bad input.

Introduced in lab 07; ``python -m labsupport check``, the validation harness
(:mod:`labsupport.validate`), the exercises that take a saved file and the later labs'
helpers (bench, quantize, native, serving) all read models through :func:`load_model`.
Whatever the path holds — nothing, something the operating system will not open, an empty,
truncated or non-ONNX file, a protobuf message that is not a model, external data that is
missing, too short or outside the model's folder — it raises :class:`ModelInputError` whose
text is one line: the path, what is wrong, what to do. A library's traceback never reaches
the learner.

Inputs must fit in memory, too. :func:`check_input_bytes` refuses arrays before anything
allocates them when their total exceeds a budget: 1 GiB per run by default. The course runs
on a laptop; the labs' inputs take a few megabytes at most (a batch of 16 RGB images of
224×224 float32 pixels is 9.6 MB), and a run needs more again for activations and outputs.
1 GiB is a hundred times those inputs and still leaves room on an 8 GB machine, while a
graph that declares ``[100000, 100000, 100000]`` float32 (4 PB) is refused with one line
instead of a MemoryError or a machine lost to swapping. Raise the budget with
the ``max_input_bytes`` keyword, ``--max-input-bytes`` on the command line, or the
``LABSUPPORT_MAX_INPUT_BYTES`` environment variable.
"""

from __future__ import annotations

import errno
import math
import os
import re
import stat
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from labsupport.onnx_tools import first_line

__all__ = [
    "DEFAULT_MAX_INPUT_BYTES",
    "MAX_INPUT_BYTES_VARIABLE",
    "ModelInputError",
    "check_input_bytes",
    "format_bytes",
    "input_budget",
    "load_model",
]

DEFAULT_MAX_INPUT_BYTES = 1 << 30
MAX_INPUT_BYTES_VARIABLE = "LABSUPPORT_MAX_INPUT_BYTES"
_UNIT_POWERS = {"": 0, "b": 0, "kib": 1, "mib": 2, "gib": 3, "tib": 4, "pib": 5}
_PROTOBUF_LIMIT = (1 << 31) - 1  # protobuf cannot parse a message of 2 GiB or more
_MAGIC_PREFIXES = (
    (b"PK\x03\x04", "a ZIP archive (a PyTorch .pt/.pth checkpoint or a Keras .keras file?)"),
    (b"\x89HDF", "an HDF5 file (a Keras .h5 model?)"),
    (b"\x80", "a Python pickle (a scikit-learn or PyTorch checkpoint?)"),
    (b"{", "a JSON or text file"),
    (b"<", "an XML/HTML file"),
)
# ONNX messages saved where a model was expected: (type, a field every real one sets, what it is and what to do)
_OTHER_MESSAGES = (
    ("GraphProto", "node", "(a graph without the model around it); wrap it with onnx.helper.make_model and save that"),
    ("NodeProto", "op_type", "(a single node); build a graph and a model around it with onnx.helper"),
    ("TensorProto", "data_type", "(a single tensor, as onnx.save_tensor writes); give the path of the model instead"),
)
_SPECIAL_FILES = ((stat.S_ISFIFO, "a named pipe (FIFO)"), (stat.S_ISSOCK, "a socket"),
                  (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"))


class ModelInputError(ValueError):
    """A model or its inputs cannot be used; the message is one line that says what to do.

    ``reason`` is the message without the path in front, for callers that name the file
    their own way (an exercise says "`model_path` points to …").
    """

    def __init__(self, message: str, reason: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason or message


def _refuse(path: Path, reason: str) -> ModelInputError:
    return ModelInputError(f"{path}: {reason}", reason)


# ---------------------------------------------------------------------------
# Reading the file
# ---------------------------------------------------------------------------

def load_model(path: str | os.PathLike, *, external_data: bool = False) -> Any:
    """Parse the ONNX model at ``path`` or raise :class:`ModelInputError` saying why not.

    Args:
        path: the ``.onnx`` file.
        external_data: also read weights stored beside the file into the model. Either way
            every external data file must exist, lie inside the model's folder and be long
            enough for the tensors that point into it.

    Returns:
        The ``onnx.ModelProto``.
    """
    if not isinstance(path, (str, os.PathLike)):
        raise ModelInputError("expected the path of an .onnx file (a str or pathlib.Path), but got a value of type "
                              f"{type(path).__name__}.")
    path = Path(path)
    data = _read_bytes(path)
    model = _parse_model(path, data)
    _check_external_data(path, model)
    if external_data:
        import onnx

        try:
            onnx.load_external_data_for_model(model, str(path.parent))
        except Exception as error:
            raise _refuse(path, f"its external weights cannot be read ({first_line(error)}); copy the .data file "
                                "together with the .onnx file.") from None
    return model


def _read_bytes(path: Path) -> bytes:
    try:
        info = path.stat()
    except OSError as error:
        raise _refuse(path, _os_reason(path, error)) from None
    except ValueError:  # os.stat refuses a path with a NUL character in it; repr() shows where
        raise ModelInputError(f"{str(path)!r}: the path contains a NUL character ('\\0'); "
                              "check how it was built.") from None
    if stat.S_ISDIR(info.st_mode):
        raise _refuse(path, "is a folder; give the path of the .onnx file inside it.")
    special = next((name for test, name in _SPECIAL_FILES if test(info.st_mode)), None)
    if special:  # opening a FIFO would wait forever for a writer
        raise _refuse(path, f"is {special}, not a file; give the path of the .onnx file.")
    if info.st_size == 0:
        raise _refuse(path, "the file is empty (0 bytes): the export or copy did not finish; write it again.")
    if info.st_size > _PROTOBUF_LIMIT:
        raise _refuse(path, f"is {format_bytes(info.st_size)}, more than the 2 GiB protobuf can parse: a model that "
                            "large keeps its weights as external data; save it with "
                            "onnx.save_model(..., save_as_external_data=True).")
    try:
        return path.read_bytes()
    except OSError as error:
        raise _refuse(path, _os_reason(path, error)) from None


def _os_reason(path: Path, error: OSError) -> str:
    """What an operating-system error on ``path`` means, and what to do."""
    if isinstance(error, FileNotFoundError):
        if path.is_symlink():
            return (f"is a symbolic link to {os.readlink(path)}, which does not exist; "
                    "fix the link or give the real file.")
        folder = path.absolute().parent
        if not folder.is_dir():
            return (f"no such file: its folder {folder} does not exist either; "
                    "check the path, or export the model first.")
        return f"no such file (looked in {folder}); check the path, or export the model first."
    if isinstance(error, NotADirectoryError):
        blocking = next((parent for parent in reversed(path.parents) if parent.is_file()), path.parent)
        return f"{blocking} is a file, not a folder, so nothing is inside it; check the path."
    if isinstance(error, PermissionError):
        return ("permission denied: you may not read it or a folder on its path; check the permissions (ls -l), "
                "or copy the file somewhere you can read.")
    if error.errno == errno.ENAMETOOLONG:
        return (f"the path ({len(str(path))} characters) or a name in it is longer than the operating system "
                "allows; shorten it.")
    if error.errno == errno.ELOOP:
        return "its symbolic links form a loop; fix the links or give the real file."
    return f"cannot be read: {error.strerror or error}; check the path and the disk."


# ---------------------------------------------------------------------------
# Is it a model?
# ---------------------------------------------------------------------------

def _parse_model(path: Path, data: bytes) -> Any:
    import onnx

    model = onnx.ModelProto()
    try:
        model.ParseFromString(data)
    except Exception:  # protobuf's DecodeError: the bytes are not a ModelProto
        raise _refuse(path, _not_a_model_reason(data, None)) from None
    if model.ir_version == 0 or not model.HasField("graph"):
        raise _refuse(path, _not_a_model_reason(data, model))
    return model


def _not_a_model_reason(data: bytes, parsed: Any | None) -> str:
    """Why ``data`` is no ONNX model; ``parsed`` is the ModelProto protobuf made of it, if any."""
    looks_like = next((text for prefix, text in _MAGIC_PREFIXES if data.startswith(prefix)), None)
    if looks_like:
        return f"is not an ONNX file: it looks like {looks_like}; convert the model to ONNX first."
    other = _other_onnx_message(data)
    if other:
        return f"is a protobuf message but not an ONNX model: it reads as an onnx.{other}."
    if parsed is not None and parsed.HasField("graph"):
        return ("is an ONNX model without an ir_version: build it with onnx.helper.make_model, which sets one, "
                "and save it again.")
    if parsed is not None and parsed.ir_version:
        return ("is a protobuf message but not an ONNX model: it has an ir_version but no graph, so it was probably "
                "cut short; export or copy it again.")
    if parsed is not None:
        return "is a protobuf message but not an ONNX model (no ir_version, no graph); give the .onnx model file."
    if data.startswith(b"\x08"):  # field 1 (ir_version), varint: how every ONNX file starts
        return (f"starts like an ONNX file but cannot be parsed ({len(data):,} bytes): it is truncated or corrupted; "
                "export or copy it again.")
    return f"is not an ONNX file (protobuf cannot parse it, {len(data):,} byte(s)); give the path of an .onnx model."


def _other_onnx_message(data: bytes) -> str | None:
    """``"GraphProto (a graph without …); wrap it …"`` when ``data`` is exactly one of those messages, else None.

    Exactly: every byte belongs to a field of that type (nothing is left as an unknown field)
    and the field every real one sets is there.
    """
    import onnx

    for type_name, required, advice in _OTHER_MESSAGES:
        message = getattr(onnx, type_name)()
        try:
            message.ParseFromString(data)
        except Exception:
            continue
        message.DiscardUnknownFields()
        if message.ByteSize() == len(data) and getattr(message, required):
            return f"{type_name} {advice}"
    return None


# ---------------------------------------------------------------------------
# External data
# ---------------------------------------------------------------------------

def _tensors(graph: Any) -> Iterator[Any]:
    """Every tensor of a graph: initializers and node attributes, subgraphs included."""
    yield from graph.initializer
    for node in graph.node:
        for attribute in node.attribute:
            if attribute.HasField("t"):
                yield attribute.t
            yield from attribute.tensors
            for subgraph in ([attribute.g] if attribute.HasField("g") else []) + list(attribute.graphs):
                yield from _tensors(subgraph)


def _check_external_data(path: Path, model: Any) -> None:
    import onnx

    for tensor in _tensors(model.graph):
        if tensor.data_location != onnx.TensorProto.EXTERNAL:
            continue
        entry = {item.key: item.value for item in tensor.external_data}
        location = entry.get("location", "")
        if Path(location).is_absolute() or os.path.normpath(location).split(os.sep)[0] == "..":
            raise _refuse(path, f"tensor '{tensor.name}' keeps its weights in '{location}', outside the model's "
                                "folder, which ONNX and ONNX Runtime refuse to read; save the model again with its "
                                "data beside it.")
        data_file = path.parent / location
        if location and not data_file.resolve().is_relative_to(path.parent.resolve()):  # '..' is ruled out: a link
            raise _refuse(path, f"tensor '{tensor.name}' keeps its weights in '{location}', which resolves through a "
                                f"symbolic link to {data_file.resolve()}, outside the model's folder, which ONNX and "
                                "ONNX Runtime refuse to read; replace the link with the file itself.")
        if not location or not data_file.is_file():
            raise _refuse(path, f"its weights are stored in '{location}', which is not beside it in {path.parent}; "
                                "copy the .data file together with the .onnx file.")
        try:
            end = int(entry.get("offset", 0)) + int(entry.get("length", 0))
        except ValueError:
            raise _refuse(path, f"tensor '{tensor.name}' has a malformed external data entry {entry}; "
                                "export the model again.") from None
        size = data_file.stat().st_size
        if end > size:
            raise _refuse(path, f"its weights file '{location}' holds {size:,} bytes, but tensor '{tensor.name}' "
                                f"needs bytes up to {end:,}: the .data file is incomplete or from another save; "
                                "copy or save both files again.")


# ---------------------------------------------------------------------------
# The memory budget
# ---------------------------------------------------------------------------

def format_bytes(count: int) -> str:
    """``4000000000000000`` → ``"3.6 PiB"`` (binary units)."""
    units = ("bytes", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB")
    value, power = float(count), 0
    while value >= 1024 and power < len(units) - 1:
        value, power = value / 1024, power + 1
    return f"{count:,} bytes" if power == 0 else f"{value:.1f} {units[power]}"


def input_budget(limit: int | str | None = None) -> int:
    """The input budget in bytes: ``limit`` if given, else ``$LABSUPPORT_MAX_INPUT_BYTES``, else 1 GiB.

    Either may be a number of bytes or carry a binary unit: ``536870912``, ``512MiB``, ``4GiB``.
    """
    source = f"the input budget {limit!r}"
    if limit is None:
        limit = os.environ.get(MAX_INPUT_BYTES_VARIABLE) or DEFAULT_MAX_INPUT_BYTES
        source = f"{MAX_INPUT_BYTES_VARIABLE}={limit!r}"
    if isinstance(limit, int) and not isinstance(limit, bool) and limit > 0:
        return limit
    match = re.fullmatch(r"\s*(\d+)\s*([kmgtp]ib|b?)\s*", str(limit), re.IGNORECASE)
    if not match or int(match[1]) == 0:
        raise ModelInputError(f"{source} is not a positive number of bytes; give e.g. 1073741824, 512MiB or 4GiB.")
    return int(match[1]) * 1024 ** _UNIT_POWERS[match[2].lower()]


def check_input_bytes(label: str, arrays: Mapping[str, tuple[Sequence[int], Any]], *,
                      max_input_bytes: int | str | None = None) -> int:
    """Refuse, before anything allocates them, arrays that would not fit in the input budget.

    Args:
        label: what the arrays are for, first in the message (e.g. ``"model.onnx, sequence 512"``).
        arrays: input name → (shape, dtype) of the arrays one run needs at once.
        max_input_bytes: the budget; see :func:`input_budget` for the default.

    Returns:
        Their total size in bytes.

    Raises:
        ModelInputError: the total exceeds the budget; the message gives both.
    """
    limit = input_budget(max_input_bytes)
    sizes = {name: math.prod(int(size) for size in shape) * np.dtype(dtype).itemsize
             for name, (shape, dtype) in arrays.items()}
    total = sum(sizes.values())
    if total > limit:
        largest = max(sizes, key=sizes.get)
        shape, dtype = arrays[largest]
        amount = format_bytes(total) + (f" ({total:,} bytes)" if total >= 1024 else "")
        share = f", {format_bytes(sizes[largest])} of it for" if len(sizes) > 1 else " for"
        raise ModelInputError(
            f"{label}: the inputs would take {amount}{share} '{largest}' {list(shape)} {np.dtype(dtype)}, more than "
            f"the input budget of {format_bytes(limit)}: use smaller sizes, or raise the budget if this machine has "
            f"the memory (max_input_bytes=, --max-input-bytes or {MAX_INPUT_BYTES_VARIABLE}).")
    return total
