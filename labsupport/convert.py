"""The course's conversion tool: a saved PyTorch, Keras/TensorFlow or scikit-learn model → ONNX, validated.

Introduced in lab 15. ``python -m labsupport convert SOURCE -o OUT.onnx`` recognises the source
by its content, converts it the way labs 04–06 do, then validates the ONNX file against the
source framework with lab 07's harness (:func:`labsupport.validate.validate_model`):

* **PyTorch** — the torch.export-based ``torch.onnx.export`` with a dynamic batch, from an
  example input given as ``--input NAME:DIMS:DTYPE`` (``pixels:1x1x8x8:float32``):

  - a ``state_dict`` (``torch.save(model.state_dict(), path)``) is read with
    ``torch.load(weights_only=True)``, which builds tensors and nothing else; the module comes
    from your own code, ``--architecture package.module:function``. This is the safe path.
  - a whole pickled module (``torch.save(model, path)``) needs ``torch.load(weights_only=False)``
    and an ``ExportedProgram`` (``torch.export.save``) needs ``torch.export.load``, whose
    documentation says it uses pickle: both run code from the file, so both need ``--trust-pickle``.
  - a TorchScript archive (``torch.jit.save``) is refused: torch 2.13's exporter traces with
    ``torch.export``, which cannot trace a ScriptModule.

* **Keras / TensorFlow** — a ``.keras`` file (read with ``safe_mode=True``, which refuses Lambda
  layers' code) or a SavedModel folder (its ``serving_default`` signature), converted by
  ``tf2onnx.convert.from_function`` from a ``tf.function`` whose input signature has a ``None``
  batch — the path that works for every Keras 3 model (lab 05). A SavedModel is a TensorFlow
  program: validation calls it, and its graph could hold file operations.
* **scikit-learn** — an estimator saved with ``pickle`` or ``joblib``, converted by skl2onnx
  (no ZipMap: probabilities as a tensor, lab 06). Unpickling runs whatever code the file names
  (lab 01), so it happens only with ``--trust-pickle``.

Every refusal and failure raises :class:`ConversionError` with one line that says what to do.
"""

from __future__ import annotations

import importlib
import os
import pickle
import re
import zipfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from labsupport.onnx_tools import first_line

__all__ = [
    "DTYPES",
    "ConversionError",
    "ConversionResult",
    "InputSpec",
    "convert_model",
    "detect_source",
    "parse_input_spec",
]

DTYPES = ("float32", "float64", "float16", "int64", "int32", "int8", "uint8", "bool")
"""The element types an ``--input`` spec may name."""

_PICKLE_SUFFIXES = (".pkl", ".pickle", ".joblib")
_TRUST = ("unpickling runs whatever code the file names (lab 01): pass --trust-pickle only if you trust where it came "
          "from")


class ConversionError(ValueError):
    """A source that cannot be converted, or a conversion that failed; the message is one actionable line."""


@dataclass(frozen=True)
class InputSpec:
    """An example input: its name, dimensions (axis 0 is the batch) and NumPy dtype name."""

    name: str
    dims: tuple[int, ...]
    dtype: str

    def example(self, batch: int | None = None) -> np.ndarray:
        """A seeded example array, with ``batch`` rows if given: floats in [0, 1), integers 0, booleans False."""
        shape = (batch if batch is not None else self.dims[0], *self.dims[1:])
        if np.dtype(self.dtype).kind == "f":
            return np.random.default_rng(0).random(shape).astype(self.dtype)
        return np.zeros(shape, self.dtype)


@dataclass(frozen=True)
class ConversionResult:
    """What :func:`convert_model` did: the source ``kind`` (:func:`detect_source`), the ``framework``
    that read it, the ONNX ``path``, the validation result against that framework, and notes."""

    kind: str
    framework: str
    source: Path
    path: Path
    validation: Any
    notes: tuple[str, ...] = ()


def parse_input_spec(text: str) -> InputSpec:
    """``"pixels:1x1x8x8:float32"`` → :class:`InputSpec`; one-line :class:`ConversionError` otherwise."""
    example = "e.g. --input pixels:1x1x8x8:float32"
    parts = text.split(":")
    if len(parts) != 3:
        raise ConversionError(f"--input {text!r}: expected NAME:DIMS:DTYPE, {example}.")
    name, dims_text, dtype = (part.strip() for part in parts)
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.\-]*", name):
        raise ConversionError(f"--input {text!r}: the name {name!r} should be a word such as pixels; {example}.")
    if not re.fullmatch(r"\d+(x\d+)*", dims_text) or any(int(size) < 1 for size in dims_text.split("x")):
        raise ConversionError(f"--input {text!r}: the dimensions {dims_text!r} should be positive sizes joined by x, "
                              f"batch first; {example}.")
    if dtype not in DTYPES:
        raise ConversionError(f"--input {text!r}: the type {dtype!r} is not one of {', '.join(DTYPES)}.")
    return InputSpec(name, tuple(int(size) for size in dims_text.split("x")), dtype)


# ---------------------------------------------------------------------------
# What is the source?
# ---------------------------------------------------------------------------

def detect_source(path: str | os.PathLike) -> str:
    """The kind of saved model at ``path``, from its content.

    Returns one of ``"savedmodel"``, ``"keras"``, ``"torch"`` (``torch.save``: a module or a
    state_dict), ``"exported_program"``, ``"torchscript"`` or ``"pickle"``; raises
    :class:`ConversionError` for anything else, saying what it looks like.
    """
    path = Path(path)
    if path.is_dir():
        if (path / "saved_model.pb").is_file():
            return "savedmodel"
        raise ConversionError(f"{path}: is a folder without saved_model.pb; give a SavedModel folder "
                              "(model.export(folder) in Keras) or a model file.")
    if not path.exists():
        raise ConversionError(f"{path}: no such file or folder; check the path.")
    try:
        with path.open("rb") as file:
            head = file.read(8)
    except OSError as error:
        raise ConversionError(f"{path}: cannot be read: {error.strerror or error}; check the permissions.") from None
    if zipfile.is_zipfile(path):
        return _zip_kind(path)
    if head.startswith(b"\x89HDF"):
        raise ConversionError(f"{path}: is an HDF5 file (a legacy Keras .h5 model): load it in Keras and save it as "
                              "a .keras file (model.save('model.keras')), then convert that.")
    if head.startswith(b"\x80") or path.suffix.lower() in _PICKLE_SUFFIXES:
        return "pickle"
    if head.startswith(b"\x08") and path.suffix.lower() == ".onnx":
        raise ConversionError(f"{path}: is already an ONNX model; validate it with `python -m labsupport check "
                              f"{path}`.")
    raise ConversionError(f"{path}: unknown model format; convert reads a PyTorch file (torch.save or "
                          "torch.export.save), a .keras file, a SavedModel folder, or a pickled scikit-learn "
                          "estimator (.pkl/.joblib).")


def _zip_kind(path: Path) -> str:
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError) as error:
        raise ConversionError(f"{path}: is a damaged ZIP archive ({first_line(error)}); save the model "
                              "again.") from None
    if "config.json" in names and any(name.endswith(".weights.h5") for name in names):
        return "keras"
    if any("/code/__torch__/" in name for name in names):
        return "torchscript"
    if any(name.endswith("/archive_format") for name in names):
        return "exported_program"
    if any(name.endswith("data.pkl") for name in names):
        return "torch"
    raise ConversionError(f"{path}: is a ZIP archive but not a model convert knows (no Keras config.json, no "
                          "PyTorch data.pkl); give a .keras or PyTorch file.")


# ---------------------------------------------------------------------------
# Loading, with the trust each format needs
# ---------------------------------------------------------------------------

def _load_architecture(text: str) -> Any:
    module_name, _, function_name = text.partition(":")
    if not module_name or not function_name:
        raise ConversionError(f"--architecture {text!r}: expected MODULE:FUNCTION, e.g. "
                              "labsupport.models:build_digits_mlp.")
    try:
        function = getattr(importlib.import_module(module_name), function_name)
    except (ImportError, AttributeError) as error:
        raise ConversionError(f"--architecture {text!r}: {first_line(error)}; name an importable module and a "
                              "function in it that builds the model.") from None
    return function()


def _torch_module(path: Path, kind: str, *, trust_pickle: bool, architecture: str | None) -> Any:
    """The nn.Module (or ExportedProgram) a PyTorch file holds, loaded no less safely than it must be."""
    import torch

    if kind == "torchscript":
        raise ConversionError(f"{path}: is a TorchScript archive (torch.jit.save); torch 2.13's ONNX exporter traces "
                              "with torch.export, which cannot trace a ScriptModule: save the original module with "
                              "torch.save(model.state_dict(), ...) and convert it with --architecture.")
    if kind == "exported_program":
        if not trust_pickle:
            raise ConversionError(f"{path}: is a torch.export program; torch.export.load uses pickle (its "
                                  f"documentation says so), and {_TRUST}.")
        return _run_loader(path, "torch.export.load", lambda: torch.export.load(path))
    try:
        content = torch.load(path, weights_only=True, map_location="cpu")
    except pickle.UnpicklingError:  # weights_only refuses anything but tensors and plain containers: a module
        if not trust_pickle:
            raise ConversionError(f"{path}: is a pickled PyTorch module (torch.save(model)); loading it needs "
                                  f"torch.load(weights_only=False), and {_TRUST}. Safer: save the state_dict and "
                                  "pass --architecture.") from None
        content = _run_loader(path, "torch.load", lambda: torch.load(path, weights_only=False, map_location="cpu"))
    except Exception as error:
        raise ConversionError(f"{path}: torch.load cannot read it ({first_line(error)}); save it again.") from None
    if isinstance(content, torch.nn.Module):
        return content.eval()
    if isinstance(content, Mapping) and content and all(isinstance(value, torch.Tensor) for value in content.values()):
        if architecture is None:
            raise ConversionError(f"{path}: holds only weights (a state_dict of {len(content)} tensors); name the "
                                  "code that builds the module: --architecture package.module:function.")
        module = _load_architecture(architecture)
        try:
            module.load_state_dict(content)
        except Exception as error:
            raise ConversionError(f"{path}: the weights do not fit {architecture}: {first_line(error)}") from None
        return module.eval()
    raise ConversionError(f"{path}: holds a {type(content).__name__}, neither a module nor a state_dict; save "
                          "torch.save(model.state_dict(), path) and pass --architecture.")


def _run_loader(path: Path, loader: str, load: Callable[[], Any]) -> Any:
    try:
        return load()
    except Exception as error:
        raise ConversionError(f"{path}: {loader} failed: {first_line(error)}") from None


def _unpickle(path: Path, *, trust_pickle: bool) -> Any:
    if not trust_pickle:
        raise ConversionError(f"{path}: is a Python pickle; {_TRUST}.")
    import joblib

    return _run_loader(path, "joblib.load", lambda: joblib.load(path))


# ---------------------------------------------------------------------------
# Converting
# ---------------------------------------------------------------------------

@dataclass
class _Converted:
    model: Any                                          # the ONNX ModelProto, or None when written to the path
    reference: Callable[[Mapping[str, np.ndarray]], Sequence[Any]] | None
    framework: str                                      # what computes the reference outputs
    notes: tuple[str, ...] = ()


def _dynamic_batch_note(dynamic_batch: bool) -> str:
    return "axis 0 of every input is dynamic" if dynamic_batch else "axis 0 kept at its example size (--static-batch)"


def _convert_torch(module: Any, out: Path, specs: Sequence[InputSpec], output_names: Sequence[str] | None, *,
                   dynamic_batch: bool, opset: int | None) -> _Converted:
    import torch

    from labsupport.models import quiet_exporter_logs

    quiet_exporter_logs()
    exported_program = isinstance(module, torch.export.ExportedProgram)
    if exported_program:
        specs = specs or _program_specs(module)
        _check_program_batch(module, dynamic_batch)
    elif not specs:
        raise ConversionError("a PyTorch module needs an example input: --input NAME:DIMS:DTYPE, e.g. "
                              "--input pixels:1x1x8x8:float32 (one --input per argument of forward).")
    # torch.export specializes a dimension whose example size is 1: trace a dynamic batch with two rows
    batch = max(2, specs[0].dims[0]) if dynamic_batch else None
    examples = tuple(torch.from_numpy(spec.example(batch)) for spec in specs)
    dynamic_shapes = tuple({0: torch.export.Dim("batch")} for _ in specs) if dynamic_batch else None
    try:
        torch.onnx.export(module, () if exported_program else examples, str(out),
                          input_names=[spec.name for spec in specs], output_names=list(output_names or []) or None,
                          dynamic_shapes=None if exported_program else dynamic_shapes, opset_version=opset,
                          external_data=False, verbose=False)
    except Exception as error:
        raise ConversionError(f"torch.onnx.export failed: {_exporter_reason(error)}") from None
    runnable = module.module() if exported_program else module

    def reference(feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        with torch.no_grad():
            outputs = runnable(*(torch.from_numpy(np.asarray(feeds[spec.name])) for spec in specs))
        outputs = outputs if isinstance(outputs, (tuple, list)) else (outputs,)
        return [output.numpy() for output in outputs]

    return _Converted(None, reference, "PyTorch", (_dynamic_batch_note(dynamic_batch),))


def _exporter_reason(error: Exception) -> str:
    """The exporter's reason, without its ANSI colours and step banners."""
    lines = [re.sub(r"\x1b\[[0-9;]*m", "", line).strip() for line in str(error).splitlines()]
    meaningful = [line for line in lines if line and not line.startswith(("This is step", "Next steps", "- "))]
    return (meaningful[0] if meaningful else type(error).__name__) + "; check the --input spec against forward()."


def _program_specs(program: Any) -> list[InputSpec]:
    """Input specs read from an ExportedProgram's own placeholders (names, example shapes and types)."""
    specs = []
    for node in program.graph.nodes:
        if node.op == "placeholder" and node.name in program.graph_signature.user_inputs:
            value = node.meta["val"]
            dims = tuple(int(size) if isinstance(size, int) else 2 for size in value.shape)
            specs.append(InputSpec(node.name, dims, str(value.dtype).removeprefix("torch.")))
    return specs


def _check_program_batch(program: Any, dynamic_batch: bool) -> None:
    if not dynamic_batch:
        return
    for node in program.graph.nodes:
        if node.op == "placeholder" and node.name in program.graph_signature.user_inputs:
            shape = node.meta["val"].shape
            if shape and isinstance(shape[0], int):
                raise ConversionError(f"the program was exported with a fixed batch of {shape[0]} for '{node.name}' "
                                      "and its graph is specialized to it: export it again with dynamic_shapes="
                                      "({0: torch.export.Dim('batch')},), or pass --static-batch to keep it.")


def _keras_tools() -> tuple[Any, Any, Any]:
    """keras, tensorflow and tf2onnx, imported the course's quiet way (lab 05's start-up notices held back)."""
    from labsupport.models import keras_models

    tf2onnx = importlib.import_module("tf2onnx")  # only now: it imports TensorFlow, which keras_models loads quietly
    return keras_models.keras, keras_models.tf, tf2onnx


def _tensor_specs(tf: Any, specs: Sequence[InputSpec], declared: Sequence[tuple[str, tuple, Any]],
                  dynamic_batch: bool) -> list[Any]:
    """``tf.TensorSpec`` per input: from --input when given, else as declared; a None batch unless static."""
    if specs:
        if len(specs) != len(declared):
            names = ", ".join(name for name, _, _ in declared)
            raise ConversionError(f"the model has {len(declared)} input(s) ({names}) but {len(specs)} --input spec(s) "
                                  "were given.")
        declared = [(spec.name, spec.dims, tf.as_dtype(spec.dtype)) for spec in specs]
    tensor_specs = []
    for name, shape, dtype in declared:
        shape = tuple(shape)
        if not shape:
            raise ConversionError(f"input '{name}' has no dimensions declared; give --input {name}:DIMS:DTYPE.")
        tensor_specs.append(tf.TensorSpec((None if dynamic_batch else shape[0], *shape[1:]), dtype, name=name))
    return tensor_specs


def _convert_keras(path: Path, out: Path, specs: Sequence[InputSpec], output_names: Sequence[str] | None, *,
                   dynamic_batch: bool, opset: int | None) -> _Converted:
    keras, tf, tf2onnx = _keras_tools()
    try:
        model = keras.models.load_model(path, compile=False, safe_mode=True)
    except Exception as error:
        raise ConversionError(f"{path}: Keras cannot load it ({first_line(error)}); save it again with "
                              "model.save('model.keras').") from None
    if not getattr(model, "inputs", None):
        raise ConversionError(f"{path}: the model was never built, so its inputs are unknown; build it (call it once, "
                              "or start it with keras.Input) before saving.")
    declared = [(tensor.name, tuple(tensor.shape), tf.as_dtype(tensor.dtype)) for tensor in model.inputs]
    signature = _tensor_specs(tf, specs, declared, dynamic_batch)
    names = list(output_names or getattr(model, "output_names", None) or
                 [f"output_{index}" for index in range(len(model.outputs))])
    if len(names) != len(model.outputs):
        raise ConversionError(f"the model has {len(model.outputs)} output(s) but {len(names)} --output name(s) "
                              "were given.")

    @tf.function(input_signature=signature)
    def predict(*tensors):
        outputs = model(list(tensors) if len(tensors) > 1 else tensors[0], training=False)
        return dict(zip(names, outputs if isinstance(outputs, (list, tuple)) else [outputs]))

    _run_tf2onnx(tf2onnx, predict, signature, out, opset)

    def reference(feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        outputs = predict(*(feeds[spec.name] for spec in signature))
        return [np.asarray(outputs[name]) for name in names]

    return _Converted(None, reference, "Keras", (_dynamic_batch_note(dynamic_batch),))


def _convert_savedmodel(path: Path, out: Path, specs: Sequence[InputSpec], output_names: Sequence[str] | None, *,
                        dynamic_batch: bool, opset: int | None) -> _Converted:
    _, tf, tf2onnx = _keras_tools()
    try:
        loaded = tf.saved_model.load(str(path))
    except Exception as error:
        raise ConversionError(f"{path}: TensorFlow cannot load the SavedModel ({first_line(error)}).") from None
    signatures = dict(loaded.signatures)
    if not signatures:
        raise ConversionError(f"{path}: the SavedModel has no signatures; export it with model.export(folder).")
    key = "serving_default" if "serving_default" in signatures else sorted(signatures)[0]
    function = signatures[key]
    _, keyword_specs = function.structured_input_signature
    declared = [(name, tuple(spec.shape), spec.dtype) for name, spec in sorted(keyword_specs.items())]
    if not dynamic_batch or specs:
        signature = _tensor_specs(tf, specs, declared, dynamic_batch)
    else:
        signature = [tf.TensorSpec(shape, dtype, name=name) for name, shape, dtype in declared]
        fixed = [name for name, shape, _ in declared if shape and shape[0] is not None]
        if fixed:
            raise ConversionError(f"{path}: the signature '{key}' fixes the batch of {', '.join(fixed)}; export it "
                                  "with a None batch dimension, or pass --static-batch to keep it.")
    keys = [name for name, _, _ in declared]
    returned = sorted(function.structured_outputs)
    names = list(output_names or returned)
    if len(names) != len(returned):
        raise ConversionError(f"the signature returns {len(returned)} output(s) ({', '.join(returned)}) but "
                              f"{len(names)} --output name(s) were given.")

    @tf.function(input_signature=signature)
    def predict(*tensors):
        outputs = function(**dict(zip(keys, tensors)))
        return {name: outputs[original] for name, original in zip(names, returned)}

    _run_tf2onnx(tf2onnx, predict, signature, out, opset)

    def reference(feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        outputs = predict(*(feeds[spec.name] for spec in signature))
        return [np.asarray(outputs[name]) for name in names]

    return _Converted(None, reference, "TensorFlow", (f"signature '{key}'", _dynamic_batch_note(dynamic_batch)))


def _run_tf2onnx(tf2onnx: Any, function: Any, signature: Sequence[Any], out: Path, opset: int | None) -> None:
    try:
        tf2onnx.convert.from_function(function, input_signature=signature, opset=opset or 17, output_path=str(out))
    except Exception as error:
        raise ConversionError(f"tf2onnx failed: {first_line(error)}") from None


_SKL2ONNX_TYPES = {"float32": "FloatTensorType", "float64": "DoubleTensorType", "int64": "Int64TensorType",
                   "int32": "Int32TensorType", "bool": "BooleanTensorType"}


def _convert_sklearn(estimator: Any, path: Path, specs: Sequence[InputSpec], output_names: Sequence[str] | None, *,
                     dynamic_batch: bool, opset: int | None) -> _Converted:
    from skl2onnx import convert_sklearn
    from skl2onnx.common import data_types
    from sklearn.base import is_classifier

    if len(specs) > 1:
        raise ConversionError("a scikit-learn estimator takes one input array: give at most one --input.")
    if specs:
        spec = specs[0]
        if spec.dtype not in _SKL2ONNX_TYPES:
            raise ConversionError(f"--input type {spec.dtype} is not one skl2onnx takes; use one of "
                                  f"{', '.join(_SKL2ONNX_TYPES)}.")
    else:
        features = getattr(estimator, "n_features_in_", None)
        if features is None:
            raise ConversionError(f"{path}: the estimator does not say how many features it takes (is it fitted?); "
                                  "give --input input:1xFEATURES:float32.")
        spec = InputSpec("input", (1, int(features)), "float32")
    tensor_type = getattr(data_types, _SKL2ONNX_TYPES[spec.dtype])
    initial_types = [(spec.name, tensor_type([None if dynamic_batch else spec.dims[0], *spec.dims[1:]]))]
    classifier = is_classifier(estimator)
    try:
        model = convert_sklearn(estimator, initial_types=initial_types, target_opset=opset,
                                options={id(_final_step(estimator)): {"zipmap": False}} if classifier else None)
    except Exception as error:
        raise ConversionError(f"skl2onnx cannot convert the {type(estimator).__name__}: {first_line(error)}") from None
    if output_names:
        _rename_outputs(model, output_names)

    def reference(feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        features = np.asarray(feeds[spec.name])
        if classifier:
            return [np.asarray(estimator.predict(features)).astype(np.int64),
                    np.asarray(estimator.predict_proba(features)).astype(np.float32)]
        predicted = np.asarray(estimator.predict(features) if hasattr(estimator, "predict")
                               else estimator.transform(features))
        return [predicted.reshape(len(features), -1)]

    return _Converted(model, reference, "scikit-learn", (f"a {type(estimator).__name__}",
                                                         _dynamic_batch_note(dynamic_batch)))


def _final_step(estimator: Any) -> Any:
    """A pipeline's last estimator (the classifier the zipmap option belongs to), or the estimator itself."""
    steps = getattr(estimator, "steps", None)
    return _final_step(steps[-1][1]) if steps else estimator


def _rename_outputs(model: Any, names: Sequence[str]) -> None:
    outputs = list(model.graph.output)
    if len(names) != len(outputs):
        raise ConversionError(f"the model has {len(outputs)} output(s) ({', '.join(value.name for value in outputs)})"
                              f" but {len(names)} --output name(s) were given.")
    renamed = dict(zip((value.name for value in outputs), names))
    for node in model.graph.node:
        node.output[:] = [renamed.get(name, name) for name in node.output]
    for value in outputs:
        value.name = renamed[value.name]


def _is_torch_module(value: Any) -> bool:
    return any(klass.__module__.startswith("torch.nn") and klass.__name__ == "Module" for klass in type(value).__mro__)


def _is_estimator(value: Any) -> bool:
    return hasattr(value, "fit") and hasattr(value, "get_params")


def convert_model(source: str | os.PathLike, out: str | os.PathLike, *, inputs: Sequence[InputSpec | str] = (),
                  output_names: Sequence[str] | None = None, trust_pickle: bool = False,
                  architecture: str | None = None, dynamic_batch: bool = True, opset: int | None = None,
                  validate: bool = True) -> ConversionResult:
    """Convert the saved model at ``source`` to the ONNX file ``out``, then validate it against its framework.

    Args:
        source: a PyTorch file, a ``.keras`` file, a SavedModel folder or a pickled scikit-learn estimator.
        out: the ``.onnx`` file to write (folders are created; nothing is written if conversion fails).
        inputs: example-input specs (:class:`InputSpec` or ``"NAME:DIMS:DTYPE"`` text): required for
            a PyTorch module, optional elsewhere (to rename inputs or set their shapes).
        output_names: names for the graph outputs, in order (default: the framework's).
        trust_pickle: allow loading that unpickles (a pickled estimator or module, an ExportedProgram).
        architecture: ``"module:function"`` that builds the module a state_dict belongs to.
        dynamic_batch: make axis 0 of every input dynamic (the default) or keep the example's size.
        opset: the ONNX opset to target (default: the converter's).
        validate: run lab 07's harness on the result, against the framework's own outputs.

    Raises:
        ConversionError: one line saying why nothing was converted and what to do.
    """
    from labsupport.model_loader import ModelInputError
    from labsupport.validate import model_signatures, random_feeds, validate_model

    source, out = Path(source), Path(out)
    specs = [spec if isinstance(spec, InputSpec) else parse_input_spec(spec) for spec in inputs]
    kind = detect_source(source)
    if len({spec.name for spec in specs}) != len(specs):
        raise ConversionError("two --input specs share a name; give each input its own name.")
    options = {"dynamic_batch": dynamic_batch, "opset": opset}
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(f".{out.name}.partial")
    try:
        if kind == "keras":
            converted = _convert_keras(source, partial, specs, output_names, **options)
        elif kind == "savedmodel":
            converted = _convert_savedmodel(source, partial, specs, output_names, **options)
        elif kind == "pickle":
            content = _unpickle(source, trust_pickle=trust_pickle)
            if _is_torch_module(content):
                converted = _convert_torch(content.eval(), partial, specs, output_names, **options)
            elif _is_estimator(content):
                converted = _convert_sklearn(content, source, specs, output_names, **options)
            else:
                raise ConversionError(f"{source}: the pickle holds a {type(content).__name__}; convert takes a "
                                      "scikit-learn estimator or a PyTorch module.")
        else:
            module = _torch_module(source, kind, trust_pickle=trust_pickle, architecture=architecture)
            converted = _convert_torch(module, partial, specs, output_names, **options)
        if converted.model is not None:
            partial.write_bytes(converted.model.SerializeToString())
        partial.replace(out)
    finally:
        partial.unlink(missing_ok=True)
    validation = None
    if validate:
        from labsupport.model_loader import load_model

        try:
            declared, _ = model_signatures(load_model(out))
            feeds = random_feeds(declared, 16, label=str(out))
            validation = validate_model(out, feeds, converted.reference, name=f"{out.name} vs {converted.framework}",
                                        fp16=False,
                                        dynamic_axes={signature.name: (0,) for signature in declared}
                                        if dynamic_batch else None)
        except ModelInputError as error:
            raise ConversionError(f"{out} was written, but cannot be validated: {error}") from None
    return ConversionResult(kind, converted.framework, source, out, validation, converted.notes)
