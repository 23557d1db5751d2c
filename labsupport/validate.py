"""Validation and parity: is an exported ONNX model right, and how close are its numbers?

Introduced in lab 07. Validation is layered; each layer assumes the ones before it passed:

1. **structure** — ``onnx.checker.check_model(full_check=True)``, which also runs strict
   shape inference;
2. **load** — an ONNX Runtime CPU session, created from the *path* so that weights stored
   as external data (``model.onnx.data``) are found;
3. **interface** — the axes the exporter was asked to make dynamic are symbolic in the graph;
4. **numbers** — outputs compared with a reference, per output within ``atol + rtol·|ref|``,
   at several batch sizes (rows sliced or repeated from sample feeds) and, when asked, at
   several sizes of another dynamic dimension such as a sequence length;
5. **precision** — a float16 copy of the model against the float32 one.

:func:`validate_model` returns a :class:`ValidationResult` (one row per check, shown as a
table in notebooks and by ``to_text()``); :func:`validate_models` puts many models in one
:class:`ValidationTable`. ``python -m labsupport check MODEL.onnx`` runs the same harness.

Bad input raises :class:`ValidationInputError` with one line that says what to do, before
anything runs: the file (read by :func:`labsupport.model_loader.load_model`: missing,
unreadable, empty, truncated, not a model, external data missing), a feed with an unknown
name, the wrong dtype or the wrong rank, a dimension name the model does not have, an input
type random feeds cannot be made for, or sizes that would not fit the input budget
(:func:`labsupport.model_loader.check_input_bytes`, 1 GiB per run unless raised).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from labsupport.display import VALIDATION_LABELS
from labsupport.model_loader import ModelInputError, check_input_bytes, load_model
from labsupport.onnx_tools import cpu_session, elem_type_name, first_line, opsets_text, tensor_dims

__all__ = [
    "DEFAULT_BATCH_SIZES",
    "DEFAULT_TOLERANCE",
    "FP16_TOLERANCE",
    "CheckRow",
    "TensorSignature",
    "Tolerance",
    "ValidationInputError",
    "ValidationResult",
    "ValidationTable",
    "check_dim_names",
    "check_feeds",
    "convert_to_float16",
    "describe_model",
    "max_abs_difference",
    "max_relative_difference",
    "model_signatures",
    "random_feeds",
    "validate_model",
    "validate_models",
]


class Tolerance(NamedTuple):
    """Two values match when ``|actual - reference| <= atol + rtol * |reference|``."""

    atol: float
    rtol: float


DEFAULT_TOLERANCE = Tolerance(atol=1e-5, rtol=1e-4)
"""float32 parity: rtol ≈ 800 float32 epsilons (1.19e-7) leaves room for summation order."""

FP16_TOLERANCE = Tolerance(atol=1e-2, rtol=1e-2)
"""float16 vs float32: rtol ≈ 10 float16 epsilons (9.8e-4); values are rounded at every op."""

DEFAULT_BATCH_SIZES = (1, 3, 16)


ValidationInputError = ModelInputError
"""The harness was given something it cannot validate; the message says what to fix (lab 07's name for
:class:`labsupport.model_loader.ModelInputError`, the same class)."""


# ---------------------------------------------------------------------------
# A model's interface
# ---------------------------------------------------------------------------

@dataclass(frozen=True)
class TensorSignature:
    """A graph input or output as declared: name, element type and dimensions.

    ``dims`` holds an int for a fixed size, the symbol (e.g. ``"batch"``) for a named dynamic
    dimension and None for an unnamed one; ``dims`` is None when the rank is unknown. ``kind``
    is ``"tensor"``, or for other values ONNX Runtime's spelling of their type, such as
    ``"seq(tensor(float))"``.
    """

    name: str
    elem_type: int
    dims: tuple[int | str | None, ...] | None
    kind: str = "tensor"

    @property
    def type_string(self) -> str:
        """ONNX Runtime's spelling, e.g. ``tensor(float)``."""

        return self.kind if self.kind != "tensor" else f"tensor({_elem_name(self.elem_type)})"

    @property
    def dtype(self) -> np.dtype:
        """The elements' NumPy dtype; ml_dtypes' for bfloat16, float8 and int4."""
        import onnx

        return np.dtype(onnx.helper.tensor_dtype_to_np_dtype(self.elem_type))

    @property
    def dynamic_axes(self) -> tuple[int, ...]:
        return tuple(axis for axis, dim in enumerate(self.dims or ()) if not isinstance(dim, int))

    def shape_text(self) -> str:
        if self.kind != "tensor":
            return ""
        if self.dims is None:
            return "[unknown rank]"
        return "[" + ", ".join("?" if dim is None else str(dim) for dim in self.dims) + "]"


def _elem_name(elem_type: int) -> str:
    return elem_type_name(elem_type).lower()


def _type_text(type_proto: Any) -> str:
    """ONNX Runtime's spelling of a type: ``tensor(float)``, ``seq(tensor(int64))``, ``map(string,tensor(float))``."""
    kind = type_proto.WhichOneof("value")
    if kind in ("tensor_type", "sparse_tensor_type"):
        return f"{kind[:-len('_type')]}({_elem_name(getattr(type_proto, kind).elem_type)})"
    if kind == "sequence_type":
        return f"seq({_type_text(type_proto.sequence_type.elem_type)})"
    if kind == "optional_type":
        return f"optional({_type_text(type_proto.optional_type.elem_type)})"
    if kind == "map_type":
        return f"map({_elem_name(type_proto.map_type.key_type)},{_type_text(type_proto.map_type.value_type)})"
    return "value of undeclared type"


def _signature(value: Any) -> TensorSignature:
    if value.type.WhichOneof("value") != "tensor_type":
        return TensorSignature(value.name, 0, None, kind=_type_text(value.type))
    return TensorSignature(value.name, value.type.tensor_type.elem_type, tensor_dims(value))


def model_signatures(model: Any) -> tuple[list[TensorSignature], list[TensorSignature]]:
    """The inputs a caller must feed (initializers excluded) and the outputs, as declared."""
    initializer_names = {tensor.name for tensor in model.graph.initializer}
    inputs = [_signature(value) for value in model.graph.input if value.name not in initializer_names]
    return inputs, [_signature(value) for value in model.graph.output]


def describe_model(path: str | os.PathLike, model: Any | None = None) -> str:
    """A few lines about a model file: versions, size, inputs and outputs with dynamic axes."""
    path = Path(path)
    model = model if model is not None else load_model(path)
    opsets = opsets_text(model)
    producer = f"{model.producer_name} {model.producer_version}".strip() or "unknown producer"
    lines = [f"{path}: {path.stat().st_size:,} bytes, ir_version {model.ir_version}, opsets [{opsets}], "
             f"{len(model.graph.node)} nodes, made by {producer}"]
    inputs, outputs = model_signatures(model)
    for title, signatures in (("inputs", inputs), ("outputs", outputs)):
        lines.append(f"{title}:")
        for signature in signatures:
            dynamic = ", ".join(f"axis {axis} ({signature.dims[axis] or 'unnamed'})" for axis in signature.dynamic_axes)
            lines.append(f"  {signature.name:<16} {signature.type_string:<16} {signature.shape_text():<20} "
                         f"{'dynamic: ' + dynamic if dynamic else 'all axes fixed'}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------
# Feeds
# ---------------------------------------------------------------------------

def check_feeds(label: str, inputs: Sequence[TensorSignature], feeds: Any) -> None:
    """Raise :class:`ValidationInputError` unless ``feeds`` fits the declared ``inputs``."""
    if not isinstance(feeds, Mapping):
        raise ValidationInputError(f"{label}: feeds should be a dict of input name → array, "
                                   f"but got a {type(feeds).__name__}.")
    names = [signature.name for signature in inputs]
    for name in feeds:
        if name not in names:
            raise ValidationInputError(f"{label}: input '{name}' is not an input of this model; "
                                       f"its inputs are {names}.")
    for signature in inputs:
        if signature.name not in feeds:
            raise ValidationInputError(f"{label}: no value for input '{signature.name}'; the model needs {names}.")
        value = feeds[signature.name]
        if signature.kind != "tensor":
            continue
        _check_elem_type(label, signature)
        if not isinstance(value, np.ndarray):
            raise ValidationInputError(f"{label}: input '{signature.name}' should be a NumPy array but got a "
                                       f"{type(value).__name__}: wrap it with "
                                       f"np.asarray(..., dtype={_dtype_spelling(signature.dtype)}).")
        if value.dtype != signature.dtype and not (signature.dtype.kind == "O" and value.dtype.kind in "OU"):
            raise ValidationInputError(f"{label}: input '{signature.name}' expects {signature.dtype} "
                                       f"({signature.type_string}) but got {value.dtype}: "
                                       f"convert with .astype({_dtype_spelling(signature.dtype)}).")
        if signature.dims is None:
            continue
        if value.ndim != len(signature.dims):
            raise ValidationInputError(f"{label}: input '{signature.name}' expects rank {len(signature.dims)} "
                                       f"{signature.shape_text()} but got shape {value.shape} (rank {value.ndim}): "
                                       "reshape it.")
        for axis, (size, dim) in enumerate(zip(value.shape, signature.dims)):
            if isinstance(dim, int) and size != dim:
                raise ValidationInputError(f"{label}: input '{signature.name}' expects size {dim} on axis {axis} "
                                           f"{signature.shape_text()} but got shape {value.shape}.")


def check_dim_names(label: str, inputs: Sequence[TensorSignature], names: Iterable[str]) -> None:
    """Raise :class:`ValidationInputError` unless each name is a named dynamic dimension beyond axis 0.

    Axis 0 is the batch: it is set by the batch sizes, never by name. The message lists the
    dimensions the model does have.
    """
    settable = sorted({dim for signature in inputs for axis, dim in enumerate(signature.dims or ())
                       if axis and isinstance(dim, str)})
    batch = sorted({signature.dims[0] for signature in inputs if signature.dims and isinstance(signature.dims[0], str)}
                   - set(settable))
    batch_text = f"axis 0 ({', '.join(map(repr, batch))}) is set by the batch sizes" if batch else ""
    for name in names:
        if name in settable:
            continue
        if name in batch:
            raise ValidationInputError(f"{label}: '{name}' is axis 0, the batch: set it with the batch sizes "
                                       "(batch_sizes= or --batch-sizes), not by name.")
        known = (f"its named dynamic dimensions are {settable}" if settable
                 else "it has no named dynamic dimension beyond axis 0")
        raise ValidationInputError(f"{label}: no input has a dynamic dimension named '{name}'; "
                                   + "; ".join(part for part in (known, batch_text) if part) + ".")


def _check_elem_type(label: str, signature: TensorSignature) -> None:
    """Raise unless an array can hold the input's element type (UNDEFINED or an unknown number cannot)."""
    import onnx

    if signature.elem_type not in onnx.helper.get_all_tensor_dtypes():
        raise ValidationInputError(f"{label}: input '{signature.name}' is a {signature.type_string}, an element type "
                                   "no array can hold: fix the type where the model is made.")


def _numpy_lacks(dtype: np.dtype) -> bool:
    """bfloat16, float8, int4…: NumPy has no such types; onnx takes them from the ml_dtypes package."""
    return dtype.type.__module__ == "ml_dtypes"


def _dtype_spelling(dtype: np.dtype) -> str:
    """How code names a dtype: ``np.float32``, ``ml_dtypes.bfloat16`` (NumPy has none), ``object``."""
    if dtype.kind == "O":
        return "object"
    return f"{'ml_dtypes' if _numpy_lacks(dtype) else 'np'}.{dtype.name}"


def _not_random_reason(label: str, signature: TensorSignature) -> tuple[str, str] | None:
    """Why random values cannot be made for this input, with how to write its feed; None if they can."""
    if signature.kind.startswith("seq("):
        return f"is a {signature.kind}", "[array, ...]"
    if signature.kind.startswith("map("):
        return f"is a {signature.kind}", "{key: value, ...}"
    if signature.kind != "tensor":
        return f"is {'an' if signature.kind.startswith('optional') else 'a'} {signature.kind}", "its value"
    if signature.dims is None:
        return f"is a {signature.type_string} with no declared rank", "an array of the shape it expects"
    _check_elem_type(label, signature)
    dtype = signature.dtype
    if _numpy_lacks(dtype):
        return (f"is a {signature.type_string}, which NumPy has no type for",
                f"np.asarray(values, dtype={_dtype_spelling(dtype)})")
    return None


def random_feeds(inputs: Sequence[TensorSignature], batch_size: int, *, dim_sizes: Mapping[str, int] | None = None,
                 other_size: int = 8, seed: int = 0, label: str = "random_feeds",
                 max_input_bytes: int | str | None = None) -> dict[str, np.ndarray]:
    """Random inputs of the declared types: axis 0, if dynamic, gets ``batch_size``.

    Other dynamic dimensions get ``dim_sizes[symbol]`` or ``other_size``. Floats are uniform
    in [0, 1), integers in [0, 10), booleans fair coins, strings ``"a"``.

    Raises:
        ValidationInputError: (starting with ``label``) ``dim_sizes`` names no dimension of the
            inputs; an input's type has no random values here (not a tensor, no declared rank,
            bfloat16, float8, int4…) — the message says how to pass your own feeds; or the arrays
            would exceed the input budget (``max_input_bytes``, see
            :func:`labsupport.model_loader.input_budget`), checked before allocating them.
    """
    check_dim_names(label, inputs, dim_sizes or {})
    shapes = {}
    for signature in inputs:
        not_random = _not_random_reason(label, signature)
        if not_random:
            reason, example = not_random
            raise ValidationInputError(f"{label}: input '{signature.name}' {reason}, so random values cannot be made "
                                       "for it; validate it from Python with your own feeds: "
                                       f"validate_model(path, feeds={{'{signature.name}': {example}}}).")
        if any(isinstance(dim, int) and dim < 0 for dim in signature.dims):
            raise ValidationInputError(f"{label}: input '{signature.name}' declares a negative size "
                                       f"{signature.shape_text()}: fix the export (a dynamic axis is named, not -1).")
        shapes[signature.name] = (tuple(dim if isinstance(dim, int) else batch_size if axis == 0
                                        else (dim_sizes or {}).get(dim, other_size)
                                        for axis, dim in enumerate(signature.dims)), signature.dtype)
    check_input_bytes(label, shapes, max_input_bytes=max_input_bytes)
    rng = np.random.default_rng(seed)
    feeds = {}
    for name, (shape, dtype) in shapes.items():
        try:
            if dtype.kind == "f":
                feeds[name] = rng.random(shape).astype(dtype)
            elif dtype.kind == "c":
                feeds[name] = (rng.random(shape) + 1j * rng.random(shape)).astype(dtype)
            elif dtype.kind in "iu":
                feeds[name] = rng.integers(0, 10, size=shape).astype(dtype)
            elif dtype.kind == "b":
                feeds[name] = rng.random(shape) < 0.5
            else:
                feeds[name] = np.full(shape, "a", dtype=object)
        except MemoryError:
            raise _out_of_memory(f"{label}: input '{name}' {list(shape)} {dtype}") from None
    return feeds


def _out_of_memory(what: str) -> ValidationInputError:
    return ValidationInputError(f"{what} does not fit in this machine's memory, although the input budget allows it: "
                                "use smaller sizes, and a budget this machine can hold.")


def _resize_axis(array: np.ndarray, axis: int, size: int) -> np.ndarray:
    """``size`` entries along ``axis``: the first ones, repeated cyclically when there are too few."""
    try:
        return np.take(array, np.arange(size) % array.shape[axis], axis=axis)
    except MemoryError:
        shape = [*array.shape[:axis], size, *array.shape[axis + 1:]]
        raise _out_of_memory(f"an input of shape {shape} {array.dtype}") from None


# ---------------------------------------------------------------------------
# Comparing outputs
# ---------------------------------------------------------------------------

def max_abs_difference(actual: Any, reference: Any) -> float:
    """max |actual - reference|, computed in float64."""
    actual, reference = np.asarray(actual, dtype=np.float64), np.asarray(reference, dtype=np.float64)
    return float(np.max(np.abs(actual - reference), initial=0.0))


def max_relative_difference(actual: Any, reference: Any, floor: float = 0.0) -> float:
    """max |actual - reference| / |reference| over the elements where |reference| > floor.

    Where the reference is at most ``floor`` (zero by default) the relative difference is
    meaningless — dividing by a tiny number — and the absolute tolerance decides, so those
    elements are left out; 0.0 when none remain. Computed in float64.
    """
    actual, reference = np.asarray(actual, dtype=np.float64), np.asarray(reference, dtype=np.float64)
    magnitude = np.abs(reference)
    kept = magnitude > floor
    if not kept.any():
        return 0.0
    return float(np.max(np.abs(actual - reference)[kept] / magnitude[kept]))


def _as_array(value: Any) -> np.ndarray:
    """An output as an array; a ZipMap list of {class: probability} dicts becomes a 2-D array."""
    if isinstance(value, list) and value and isinstance(value[0], dict):
        keys = sorted(value[0])
        return np.array([[row[key] for key in keys] for row in value])
    return np.asarray(value)


@dataclass(frozen=True)
class _Comparison:
    name: str
    ok: bool
    max_abs_diff: float | None
    max_rel_diff: float | None
    note: str


def _compare(name: str, actual: Any, reference: Any, tolerance: Tolerance) -> _Comparison:
    actual, reference = _as_array(actual), _as_array(reference)
    if actual.shape != reference.shape:
        return _Comparison(name, False, None, None,
                           f"'{name}' has shape {actual.shape} but the reference {reference.shape}")
    if actual.dtype.kind not in "fiub" or reference.dtype.kind not in "fiub":
        same = bool(np.array_equal(actual.astype(str), reference.astype(str)))
        wrong = int(np.sum(actual.astype(str) != reference.astype(str)))
        return _Comparison(name, same, None, None,
                           f"'{name}' {'equal' if same else f'{wrong} of {actual.size} differ'}")
    exact = actual.dtype.kind in "iub" and reference.dtype.kind in "iub"
    atol, rtol = (0.0, 0.0) if exact else tolerance
    close = np.isclose(actual.astype(np.float64), reference.astype(np.float64), rtol=rtol, atol=atol, equal_nan=True)
    finite = np.isfinite(actual) & np.isfinite(reference)
    abs_diff = max_abs_difference(actual[finite], reference[finite])
    rel_diff = max_relative_difference(actual[finite], reference[finite], floor=atol)
    rule = "exact equality (integers)" if exact else f"atol {atol:g}, rtol {rtol:g}"
    if close.all():
        return _Comparison(name, True, abs_diff, rel_diff, f"'{name}' {'equal' if exact else 'within ' + rule}")
    bad = int((~close).sum())
    worst = np.unravel_index(int(np.argmax(np.where(close, -np.inf, np.abs(actual.astype(np.float64) - reference)))),
                             actual.shape)
    return _Comparison(name, False, abs_diff, rel_diff,
                       f"'{name}': {bad} of {actual.size} values outside {rule} "
                       f"(worst at {tuple(int(i) for i in worst)}: "
                       f"{actual[worst]:.6g} vs reference {reference[worst]:.6g})")


# ---------------------------------------------------------------------------
# Results
# ---------------------------------------------------------------------------

def _number(value: float | None) -> str:
    return "" if value is None else f"{value:.2e}"


@dataclass(frozen=True)
class CheckRow:
    """One check: its name, ``ok``/``fail``/``skip``, what was found, and the differences measured."""

    check: str
    status: str
    detail: str
    max_abs_diff: float | None = None
    max_rel_diff: float | None = None
    batch_size: int | None = None


def _text_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows)]
    lines = ["  ".join(str(cell).ljust(width) for cell, width in zip(line, widths)).rstrip()
             for line in [headers, *rows]]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


def _markdown_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    def cell(text: str) -> str:
        return str(text).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cell(text) for text in row) + " |" for row in rows]
    return "\n".join(lines)


@dataclass
class ValidationResult:
    """What :func:`validate_model` found for one model: a row per check and a verdict."""

    name: str
    path: Path
    rows: list[CheckRow] = field(default_factory=list)

    def row(self, check: str) -> CheckRow | None:
        return next((row for row in self.rows if row.check == check), None)

    @property
    def failed_checks(self) -> list[str]:
        return [row.check for row in self.rows if row.status == "fail"]

    @property
    def ok(self) -> bool:
        return not self.failed_checks

    @property
    def verdict(self) -> str:
        return "pass" if self.ok else "fail (" + ", ".join(self.failed_checks) + ")"

    def _parity_rows(self) -> list[CheckRow]:
        return [row for row in self.rows if row.check != "fp16" and row.max_abs_diff is not None]

    @property
    def max_abs_diff(self) -> float | None:
        """The worst absolute difference from the reference over every batch and size checked."""
        return max((row.max_abs_diff for row in self._parity_rows()), default=None)

    @property
    def max_rel_diff(self) -> float | None:
        return max((row.max_rel_diff for row in self._parity_rows() if row.max_rel_diff is not None), default=None)

    @property
    def fp16_max_abs_diff(self) -> float | None:
        row = self.row("fp16")
        return row.max_abs_diff if row else None

    def _cells(self, marks: Mapping[str, str]) -> list[list[str]]:
        return [[row.check, marks[row.status], "" if row.batch_size is None else str(row.batch_size),
                 _number(row.max_abs_diff), _number(row.max_rel_diff), row.detail] for row in self.rows]

    _HEADERS = ("check", "status", "batch", "max abs diff", "max rel diff", "detail")

    def _title(self) -> str:
        return str(self.path) if self.name == self.path.name else f"{self.name} ({self.path})"

    def to_text(self) -> str:
        marks = {"ok": "ok", "fail": "FAIL", "skip": "skip"}
        return (f"{self._title()}: {self.verdict}\n"
                + _text_table(self._HEADERS, self._cells(marks)))

    def _repr_markdown_(self) -> str:
        marks = {status: str(label) for status, label in VALIDATION_LABELS.items()}
        verdict = f"{VALIDATION_LABELS['ok' if self.ok else 'fail'].icon} {self.verdict}"
        title = f"`{self.path}`" if self.name == self.path.name else f"**{self.name}** · `{self.path}`"
        return f"{title} · {verdict}\n\n" + _markdown_table(self._HEADERS, self._cells(marks))

    def __str__(self) -> str:
        return self.to_text()


@dataclass
class ValidationTable:
    """Many models, one row each: checker, load, batches, worst differences, fp16, verdict."""

    results: list[ValidationResult]

    _HEADERS = ("model", "checker", "load", "batches", "max abs diff", "max rel diff", "fp16 max abs diff", "verdict")

    def _cells(self, marks: Mapping[str, str], separator: str) -> list[list[str]]:
        table = []
        for result in self.results:
            checker, load, fp16 = (result.row(check) for check in ("checker", "load", "fp16"))
            batches = separator.join(f"{row.batch_size}: {marks[row.status]}" for row in result.rows
                                     if row.check.startswith("batch ") and row.status != "skip")
            fp16_text = "" if fp16 is None else (
                "skip" if fp16.status == "skip" else f"{_number(fp16.max_abs_diff)} {marks[fp16.status]}")
            table.append([result.name, marks[checker.status] if checker else "", marks[load.status] if load else "",
                          batches, _number(result.max_abs_diff), _number(result.max_rel_diff), fp16_text,
                          result.verdict])
        return table

    def to_text(self) -> str:
        return _text_table(self._HEADERS, self._cells({"ok": "ok", "fail": "FAIL", "skip": "skip"}, ", "))

    def _repr_markdown_(self) -> str:
        cells = self._cells({status: str(label) for status, label in VALIDATION_LABELS.items()}, ", ")
        for row, result in zip(cells, self.results):
            row[-1] = f"{VALIDATION_LABELS['ok' if result.ok else 'fail'].icon} {row[-1]}"
        return _markdown_table(self._HEADERS, cells)

    def __str__(self) -> str:
        return self.to_text()


# ---------------------------------------------------------------------------
# The harness
# ---------------------------------------------------------------------------

def _run(session: Any, output_names: Sequence[str], feeds: Mapping[str, Any]) -> list[Any]:
    """``session.run``; arrays of the types NumPy lacks (ml_dtypes' bfloat16, float8…) go in as OrtValues.

    ONNX Runtime's Python API accepts no such NumPy array, only an OrtValue told its ONNX type.
    """
    import onnx
    import onnxruntime

    def as_input(value: Any) -> Any:
        if isinstance(value, np.ndarray) and _numpy_lacks(value.dtype):
            onnx_type = onnx.helper.np_dtype_to_tensor_dtype(value.dtype)
            return onnxruntime.OrtValue.ortvalue_from_numpy_with_onnx_type(value, onnx_type)
        return value

    return session.run(list(output_names), {name: as_input(value) for name, value in feeds.items()})


def _checker_row(path: Path, model: Any) -> CheckRow:
    import onnx

    try:
        onnx.checker.check_model(str(path), full_check=True)  # by path: external data and > 2 GB work
    except Exception as error:
        return CheckRow("checker", "fail", first_line(error))
    return CheckRow("checker", "ok", f"full_check with strict shape inference; {len(model.graph.node)} nodes; "
                                     f"opsets {opsets_text(model)}")


def _dynamic_axes_row(label: str, inputs: Sequence[TensorSignature], declared: Mapping[str, Sequence[int]]) -> CheckRow:
    by_name = {signature.name: signature for signature in inputs}
    problems = []
    for name, axes in declared.items():
        if name not in by_name:
            raise ValidationInputError(f"{label}: dynamic_axes names input '{name}', which this model does not have; "
                                       f"its inputs are {list(by_name)}.")
        signature = by_name[name]
        for axis in axes:
            if signature.dims is None or axis >= len(signature.dims):
                problems.append(f"'{name}' has no axis {axis}")
            elif isinstance(signature.dims[axis], int):
                problems.append(f"'{name}' axis {axis} is fixed at {signature.dims[axis]}")
    if problems:
        return CheckRow("dynamic axes", "fail", "; ".join(problems) + ": the export did not make it dynamic")
    shown = ", ".join(f"{name}{by_name[name].shape_text()}" for name in declared)
    return CheckRow("dynamic axes", "ok", f"symbolic as declared: {shown}")


def _fp16_row(path: Path, model: Any, session: Any, feeds: Mapping[str, np.ndarray], output_names: Sequence[str],
              tolerance: Tolerance) -> CheckRow:
    batch = _batch_of(feeds)
    foreign = sorted({node.op_type for node in model.graph.node if node.domain not in ("", "ai.onnx")})
    if foreign:
        domains = sorted({node.domain for node in model.graph.node if node.domain not in ("", "ai.onnx")})
        return CheckRow("fp16", "skip", f"{', '.join(domains)} operators ({', '.join(foreign)}) have no float16 "
                                        "versions: the converter keeps them in float32, so there is nothing to measure")
    import onnx

    if not any(tensor.data_type == onnx.TensorProto.FLOAT for tensor in model.graph.initializer) and not any(
            value.type.tensor_type.elem_type == onnx.TensorProto.FLOAT for value in model.graph.input):
        return CheckRow("fp16", "skip", "no float32 weights or inputs to convert")
    try:
        half_session = cpu_session(convert_to_float16(path))
        half_outputs = _run(half_session, output_names, feeds)
        full_outputs = _run(session, output_names, feeds)
    except Exception as error:
        return CheckRow("fp16", "fail", f"the float16 copy did not run: {first_line(error)}", batch_size=batch)
    comparisons = [_compare(name, half, full, tolerance)
                   for name, half, full in zip(output_names, half_outputs, full_outputs)]
    measured = [item for item in comparisons if item.max_abs_diff is not None]
    notes = [item.note for item in comparisons]
    for name, half, full in zip(output_names, half_outputs, full_outputs):
        half, full = _as_array(half), _as_array(full)
        if full.ndim == 2 and full.dtype.kind == "f" and full.shape[1] > 1:
            agree = int(np.sum(half.argmax(axis=1) == full.argmax(axis=1)))
            notes.append(f"argmax of '{name}' agrees on {agree}/{len(full)} rows")
    return CheckRow("fp16", "ok" if all(item.ok for item in comparisons) else "fail",
                    "float16 copy vs float32 model: " + "; ".join(notes),
                    max((item.max_abs_diff for item in measured), default=None),
                    max((item.max_rel_diff for item in measured), default=None), batch)


def convert_to_float16(path: str | os.PathLike) -> Any:
    """A float16 copy of the model at ``path``, inputs and outputs kept float32.

    Uses ``onnxruntime.transformers.float16.convert_float_to_float16`` (ONNX Runtime's own
    converter, no extra package): weights become float16 and Cast nodes convert at the
    graph's edges. ONNX Runtime's CPU provider runs operators that lack a float16 kernel in
    float32 (it inserts Casts), so on CPU this measures float16 *storage and rounding*.
    """
    from onnxruntime.transformers.float16 import convert_float_to_float16

    return convert_float_to_float16(load_model(path, external_data=True), keep_io_types=True)


def _batch_of(feeds: Mapping[str, np.ndarray]) -> int | None:
    sizes = {value.shape[0] for value in feeds.values() if isinstance(value, np.ndarray) and value.ndim}
    return sizes.pop() if len(sizes) == 1 else None


def _run_row(check: str, session: Any, feeds: Mapping[str, np.ndarray], output_names: Sequence[str],
             expected: Sequence[Any], tolerances: Mapping[str, Tolerance], batch: int | None, against: str) -> CheckRow:
    try:
        outputs = _run(session, output_names, feeds)
    except Exception as error:
        return CheckRow(check, "fail", f"ONNX Runtime failed: {first_line(error)}", batch_size=batch)
    comparisons = [_compare(name, actual, reference, tolerances[name])
                   for name, actual, reference in zip(output_names, outputs, expected)]
    measured = [item for item in comparisons if item.max_abs_diff is not None]
    failed = [item.note for item in comparisons if not item.ok]
    detail = f"vs {against}: " + "; ".join(failed or [item.note for item in comparisons])
    return CheckRow(check, "fail" if failed else "ok", detail,
                    max((item.max_abs_diff for item in measured), default=None),
                    max((item.max_rel_diff for item in measured if item.max_rel_diff is not None), default=None), batch)


def _shape_only_row(check: str, session: Any, feeds: Mapping[str, np.ndarray], output_names: Sequence[str],
                    why: str = "no reference to compare with") -> CheckRow:
    """A run with nothing to be compared with (no reference, no other batch): it must run, with finite outputs."""
    try:
        outputs = [_as_array(value) for value in _run(session, output_names, feeds)]
    except Exception as error:
        return CheckRow(check, "fail", f"ONNX Runtime failed: {first_line(error)}", batch_size=_batch_of(feeds))
    shapes = ", ".join(f"'{name}' {output.shape}" for name, output in zip(output_names, outputs))
    infinite = [name for name, output in zip(output_names, outputs)
                if output.dtype.kind == "f" and not np.isfinite(output).all()]
    if infinite:
        return CheckRow(check, "fail", f"ran, but {infinite} hold NaN or infinity", batch_size=_batch_of(feeds))
    return CheckRow(check, "ok", f"ran ({why}): {shapes}", batch_size=_batch_of(feeds))


def validate_model(model: Any, feeds: Mapping[str, np.ndarray] | None = None,
                   reference: Callable[[Mapping[str, np.ndarray]], Sequence[Any]] | None = None, *,
                   name: str | None = None, output_names: Sequence[str] | None = None,
                   dynamic_axes: Mapping[str, Sequence[int]] | None = None,
                   batch_sizes: Sequence[int] = DEFAULT_BATCH_SIZES,
                   dim_sizes: Mapping[str, Sequence[int]] | None = None,
                   tolerances: Mapping[str, tuple[float, float]] | None = None,
                   default_tolerance: tuple[float, float] = DEFAULT_TOLERANCE, fp16: bool = True,
                   fp16_tolerance: tuple[float, float] = FP16_TOLERANCE,
                   max_input_bytes: int | str | None = None) -> ValidationResult:
    """Validate one model, layer by layer, and return a :class:`ValidationResult`.

    Args:
        model: an :class:`~labsupport.models.ExportedModel` (its path, sample feeds, framework
            reference, output names and declared dynamic axes are used) or a path.
        feeds: sample inputs by name, batch on axis 0 (default: the ExportedModel's, or random
            ones of the declared types for a path).
        reference: computes the expected outputs (in ``output_names`` order) for feeds. Without
            one the model is compared with itself at the largest batch size, which still
            catches outputs that depend on the batch size; a model whose axis 0 is fixed (or
            that has no inputs) is then run once and its outputs need only be finite.
        batch_sizes: each is cut from the feeds along axis 0 (first rows, repeated cyclically if
            there are too few) for every input whose axis 0 is dynamic in the graph.
        dim_sizes: symbolic dimension name (as in the graph, e.g. ``"sequence"``) → sizes to try;
            every input axis with that symbol is cut or repeated the same way. Without a
            reference these runs are only required to succeed with finite outputs.
        tolerances: output name → (atol, rtol); others get ``default_tolerance``. Integer outputs
            (labels) must match exactly.
        fp16: also measure a float16 copy against the float32 model (``fp16_tolerance``).
        max_input_bytes: the most the inputs of one run may take (default 1 GiB, or
            ``$LABSUPPORT_MAX_INPUT_BYTES``); larger runs are refused before anything is allocated.

    Raises:
        ValidationInputError: the file, the feeds or the sizes cannot be used (one actionable line).
    """
    plan = _plan(model, feeds, reference, name=name, output_names=output_names, dynamic_axes=dynamic_axes,
                 batch_sizes=batch_sizes, dim_sizes=dim_sizes or {}, tolerances=tolerances or {},
                 default_tolerance=default_tolerance, max_input_bytes=max_input_bytes)
    result = ValidationResult(plan.name, plan.path)
    result.rows.append(_checker_row(plan.path, plan.proto))                 # 1. structure
    try:                                                                    # 2. load
        session = cpu_session(plan.path)
    except Exception as error:
        result.rows.append(CheckRow("load", "fail", f"ONNX Runtime cannot load it: {first_line(error)}"))
        return result
    result.rows.append(CheckRow("load", "ok", "ONNX Runtime CPU session; inputs " + (", ".join(
        f"{signature.name}{signature.shape_text()} {signature.type_string}" for signature in plan.inputs) or "none")))
    if plan.dynamic_axes:                                                   # 3. interface
        result.rows.append(_dynamic_axes_row(plan.label, plan.inputs, plan.dynamic_axes))
    try:                                                                    # 4. numbers
        expected = _Expected.for_plan(plan, session)
    except _ReferenceRunFailed as failure:
        result.rows.append(failure.row)
        return result
    result.rows += _batch_rows(plan, session, expected)
    result.rows += _dimension_rows(plan, session, expected)
    if fp16:                                                                # 5. precision
        result.rows.append(_fp16_row(plan.path, plan.proto, session, plan.feeds, plan.output_names,
                                     Tolerance(*fp16_tolerance)))
    return result


@dataclass
class _Plan:
    """What a validation works from, once the file, the feeds and the sizes have been checked."""

    label: str
    path: Path
    name: str
    proto: Any
    inputs: list[TensorSignature]
    output_names: list[str]
    tolerances: dict[str, Tolerance]
    feeds: dict[str, Any]
    batched: list[str]
    batch_sizes: Sequence[int]
    dim_sizes: Mapping[str, Sequence[int]]
    dynamic_axes: Mapping[str, Sequence[int]] | None
    reference: Callable[[Mapping[str, np.ndarray]], Sequence[Any]] | None

    @property
    def feed_batch(self) -> int | None:
        return _batch_of({key: value for key, value in self.feeds.items() if key in self.batched or not self.batched})


def _plan(model: Any, feeds: Mapping[str, Any] | None, reference: Callable | None, *, name: str | None,
          output_names: Sequence[str] | None, dynamic_axes: Mapping[str, Sequence[int]] | None,
          batch_sizes: Sequence[int], dim_sizes: Mapping[str, Sequence[int]],
          tolerances: Mapping[str, tuple[float, float]], default_tolerance: tuple[float, float],
          max_input_bytes: int | str | None) -> _Plan:
    """Read the model, fill in what an ExportedModel knows, and refuse unusable arguments before anything runs."""
    exported = model if hasattr(model, "framework_outputs") else None
    path = Path(exported.path if exported else model)
    if exported:
        feeds = exported.sample_feeds if feeds is None else feeds
        reference = exported.framework_outputs if reference is None else reference
        output_names = exported.output_names if output_names is None else output_names
        dynamic_axes = exported.dynamic_axes if dynamic_axes is None else dynamic_axes
    label = str(path)
    proto = load_model(path)
    inputs, outputs = model_signatures(proto)
    all_outputs = [signature.name for signature in outputs]
    output_names = list(output_names or all_outputs)
    for output in output_names:
        if output not in all_outputs:
            raise ValidationInputError(f"{label}: output '{output}' is not an output of this model; "
                                       f"its outputs are {all_outputs}.")
    for output in tolerances:
        if output not in all_outputs:
            raise ValidationInputError(f"{label}: tolerances name output '{output}', which this model does not have; "
                                       f"its outputs are {all_outputs}.")
    batched = [signature.name for signature in inputs if 0 in signature.dynamic_axes]
    largest = max(batch_sizes) if batched else None
    check_dim_names(label, inputs, dim_sizes)
    if feeds is None:
        feeds = random_feeds(inputs, largest or 1, label=label, max_input_bytes=max_input_bytes)
    check_feeds(label, inputs, feeds)
    _check_run_sizes(label, inputs, feeds, batched, largest, dim_sizes, max_input_bytes)
    if largest is not None:  # enough rows for the largest batch: the first ones, repeated cyclically
        feeds = {key: _resize_axis(value, 0, max(largest, value.shape[0])) if key in batched else value
                 for key, value in feeds.items()}
    return _Plan(label, path, name or (exported.name if exported else path.name), proto, inputs, output_names,
                 {output: Tolerance(*tolerances.get(output, default_tolerance)) for output in output_names},
                 dict(feeds), batched, batch_sizes, dim_sizes, dynamic_axes, reference)


class _ReferenceRunFailed(Exception):
    def __init__(self, row: CheckRow) -> None:
        super().__init__(row.detail)
        self.row = row


@dataclass
class _Expected:
    """The expected outputs for any slice of the feeds, and what they are (``against``).

    With a reference, it is called. Without one, a batched model is run once at the largest
    batch and each smaller batch is compared with the first rows of that run; an unbatched
    model has nothing to compare with (``outputs_for`` is None).
    """

    plan: _Plan
    against: str
    outputs_for: Callable[[Mapping[str, np.ndarray]], Sequence[Any]] | None

    @classmethod
    def for_plan(cls, plan: _Plan, session: Any) -> _Expected:
        if plan.reference is not None:
            return cls(plan, "the reference", plan.reference)
        if not plan.batched:
            return cls(plan, "nothing (no reference given)", None)
        size = plan.feed_batch
        try:
            full_outputs = [_as_array(value) for value in _run(session, plan.output_names, plan.feeds)]
        except Exception as error:
            raise _ReferenceRunFailed(CheckRow(f"batch {size}", "fail", f"ONNX Runtime failed: {first_line(error)}",
                                               batch_size=size)) from None

        def first_rows(part: Mapping[str, np.ndarray]) -> list[np.ndarray]:
            rows = _batch_of({key: value for key, value in part.items() if key in plan.batched})
            return [output[:rows] if rows is not None and output.ndim and output.shape[0] == size else output
                    for output in full_outputs]

        return cls(plan, f"this model at batch {size} (no reference given)", first_rows)

    @property
    def given(self) -> bool:
        return self.plan.reference is not None

    def __call__(self, part: Mapping[str, np.ndarray]) -> list[Any]:
        values = list(self.outputs_for(part))
        if len(values) != len(self.plan.output_names):
            raise ValidationInputError(f"{self.plan.label}: the reference returned {len(values)} arrays for the "
                                       f"{len(self.plan.output_names)} outputs {self.plan.output_names}.")
        return values


def _batch_rows(plan: _Plan, session: Any, expected: _Expected) -> list[CheckRow]:
    """One row per batch size: cut from the feeds along axis 0 and compared with the expected outputs."""
    if not plan.batched:
        return _unbatched_rows(session, plan.inputs, plan.feeds, plan.output_names, plan.batch_sizes, plan.feed_batch,
                               expected(plan.feeds) if expected.given else None, plan.tolerances)
    rows = []
    for batch in plan.batch_sizes:
        fixed = [signature for signature in plan.inputs if signature.dims and isinstance(signature.dims[0], int)
                 and signature.dims[0] != batch]
        if fixed:
            rows.append(CheckRow(f"batch {batch}", "skip", f"input '{fixed[0].name}' has a fixed batch: "
                                 f"{fixed[0].shape_text()}", batch_size=batch))
        elif batch == plan.feed_batch and not expected.given:  # comparing this run with itself would prove nothing
            others = "the reference for the other batch sizes" if len(plan.batch_sizes) > 1 else "not compared"
            rows.append(CheckRow(f"batch {batch}", "ok", f"ran; its outputs are {others} (no reference given)",
                                 batch_size=batch))
        else:
            part = {key: _resize_axis(value, 0, batch) if key in plan.batched else value
                    for key, value in plan.feeds.items()}
            rows.append(_run_row(f"batch {batch}", session, part, plan.output_names, expected(part), plan.tolerances,
                                 batch, expected.against))
    return rows


def _dimension_rows(plan: _Plan, session: Any, expected: _Expected) -> list[CheckRow]:
    """One row per size of each other named dimension (``dim_sizes``).

    Without a reference the runs need only be finite.
    """
    rows = []
    for symbol, sizes in plan.dim_sizes.items():
        for size in sizes:
            part = dict(plan.feeds)
            for signature in plan.inputs:
                for axis, dim in enumerate(signature.dims or ()):
                    if dim == symbol and axis:
                        part[signature.name] = _resize_axis(part[signature.name], axis, size)
            if expected.given:
                rows.append(_run_row(f"{symbol} {size}", session, part, plan.output_names, expected(part),
                                     plan.tolerances, _batch_of(part), expected.against))
            else:
                rows.append(_shape_only_row(f"{symbol} {size}", session, part, plan.output_names))
    return rows


def _unbatched_rows(session: Any, inputs: Sequence[TensorSignature], feeds: Mapping[str, Any],
                    output_names: Sequence[str], batch_sizes: Sequence[int], feed_batch: int | None,
                    expected: Sequence[Any] | None, tolerances: Mapping[str, Tolerance]) -> list[CheckRow]:
    """No input has a dynamic axis 0: one run as fed, and a skipped row for each other batch size.

    Without a reference that run has nothing to be compared with (it is not compared with
    itself): it must only run with finite outputs. Without inputs, or without a batch axis,
    the run is called ``run``, not ``batch None``.
    """
    check = "run" if feed_batch is None else f"batch {feed_batch}"
    if expected is not None:
        run = _run_row(check, session, feeds, output_names, expected, tolerances, feed_batch, "the reference")
    elif not inputs:
        run = _shape_only_row(check, session, feeds, output_names, "the model has no inputs; no reference given")
    elif feed_batch is None:
        run = _shape_only_row(check, session, feeds, output_names,
                              "no input has a batch axis, so no other batch size to compare with; no reference given")
    else:
        run = _shape_only_row(check, session, feeds, output_names, "axis 0 is not dynamic, so there is no other "
                                                                   "batch size to compare with; no reference given")
    if feed_batch is None:
        return [run]
    fixed = next((signature for signature in inputs if signature.dims and isinstance(signature.dims[0], int)), None)
    reason = (f"input '{fixed.name}' has a fixed batch: {fixed.shape_text()}" if fixed
              else "no input has a dynamic axis 0")
    rows = [run if batch == feed_batch else CheckRow(f"batch {batch}", "skip", reason, batch_size=batch)
            for batch in batch_sizes]
    return rows if feed_batch in batch_sizes else rows + [run]


def _check_run_sizes(label: str, inputs: Sequence[TensorSignature], feeds: Mapping[str, Any], batched: Sequence[str],
                     largest: int | None, dim_sizes: Mapping[str, Sequence[int]],
                     max_input_bytes: int | str | None) -> None:
    """Refuse, before anything is allocated, the largest runs if their inputs would not fit the budget.

    The feeds are repeated up to the largest batch size, and each named dimension up to its
    largest size: those are the largest inputs any one run needs.
    """
    arrays = {name: value for name, value in feeds.items() if isinstance(value, np.ndarray)}
    base = {name: ((max(largest, value.shape[0]), *value.shape[1:]) if name in batched and largest else value.shape,
                   value.dtype) for name, value in arrays.items()}
    rows = max((base[name][0][0] for name in batched if name in base), default=None)
    check_input_bytes(label if rows is None else f"{label}, batch {rows}", base, max_input_bytes=max_input_bytes)
    dims = {signature.name: signature.dims or () for signature in inputs}
    for symbol, sizes in dim_sizes.items():
        size = max(sizes, default=0)
        shapes = {name: (tuple(size if 0 < axis < len(dims[name]) and dims[name][axis] == symbol else length
                               for axis, length in enumerate(shape)), dtype) for name, (shape, dtype) in base.items()}
        check_input_bytes(f"{label}, {symbol} {size}", shapes, max_input_bytes=max_input_bytes)


def validate_models(models: Sequence[Any], **options: Any) -> ValidationTable:
    """Validate every model with the same ``options`` (see :func:`validate_model`) into one table.

    A model whose file or feeds cannot be used gets a row saying why instead of stopping
    the others. To give one model its own options, validate it alone and build
    ``ValidationTable([...results])`` yourself.
    """
    results = []
    for model in models:
        try:
            results.append(validate_model(model, **options))
        except ValidationInputError as error:
            exported = model if hasattr(model, "framework_outputs") else None
            path = Path(exported.path if exported else model)
            results.append(ValidationResult(exported.name if exported else path.name, path,
                                            [CheckRow("input", "fail", str(error))]))
    return ValidationTable(results)
