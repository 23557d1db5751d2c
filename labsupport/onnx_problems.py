"""Exercise kinds for ONNX answers: a model, a running session, a file on disk.

Introduced in lab 01. Each kind checks, in order, what a learner most often gets wrong
first: the type of the answer, the checker, the opset, the graph's interface (names,
element types, dynamic dimensions), the operators, and finally the numbers it computes
in ONNX Runtime compared with a reference.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from labsupport.checking import Incorrect, Problem, assert_equal
from labsupport.model_loader import ModelInputError, load_model
from labsupport.onnx_tools import cpu_session, elem_type_name, first_line, opset_versions

__all__ = ["ModelFileProblem", "OnnxModelProblem", "SessionParityProblem"]


def _value_infos(values: Sequence[Any]) -> dict[str, Any]:
    return {value.name: value for value in values}


def _run_model(model: Any, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
    try:
        session = cpu_session(model)
    except Exception as error:
        raise Incorrect(f"ONNX Runtime could not load the model: {first_line(error)}") from None
    try:
        return session.run(None, dict(feeds))
    except Exception as error:
        raise Incorrect(f"ONNX Runtime loaded the model but running it failed: {first_line(error)}") from None


class OnnxModelProblem(Problem):
    """The variable must be an ``onnx.ModelProto`` with the declared properties.

    Every attribute left at ``None`` is not checked. ``input_types`` and ``output_types``
    map names to ``onnx.TensorProto`` element types; ``dynamic_dims`` maps an input or
    output name to the axes that must be symbolic (a ``dim_param`` or left unknown).
    Override :meth:`feeds` and :meth:`expected_outputs` to compare what the model computes.
    """

    full_check: bool = True
    opset: int | None = None
    min_opset: int | None = None
    required_ops: Sequence[str] = ()
    forbidden_ops: Sequence[str] = ()
    input_names: Sequence[str] | None = None
    output_names: Sequence[str] | None = None
    input_types: Mapping[str, int] | None = None
    output_types: Mapping[str, int] | None = None
    dynamic_dims: Mapping[str, Sequence[int]] | None = None
    rtol: float = 1e-5
    atol: float = 1e-6

    def feeds(self) -> Mapping[str, np.ndarray] | None:
        """Inputs to run the model on, or None to skip running it."""
        return None

    def expected_outputs(self, feeds: Mapping[str, np.ndarray]) -> Sequence[np.ndarray]:
        raise NotImplementedError(f"{type(self).__name__} defines feeds() and must also define expected_outputs(feeds)")

    def check(self, model: Any) -> None:
        self.check_model(self.vars[0], self._as_model(model))

    def _as_model(self, model: Any) -> Any:
        import onnx

        if isinstance(model, onnx.ModelProto):
            return model
        if isinstance(model, (str, os.PathLike)):
            raise Incorrect(f"`{self.vars[0]}` is a path; this exercise wants the ModelProto itself: "
                            "load it with `onnx.load(path)`.")
        raise Incorrect(f"`{self.vars[0]}` should be an onnx.ModelProto (made by `onnx.helper.make_model` "
                        f"or `onnx.load`), but it is a {type(model).__name__}.")

    def check_model(self, name: str, model: Any) -> None:
        """Check an already-typed ModelProto; ``name`` is what messages call it."""
        import onnx

        try:
            onnx.checker.check_model(model, full_check=self.full_check)
        except Exception as error:
            raise Incorrect(f"`{name}` does not pass `onnx.checker.check_model`: {first_line(error)}") from None
        self._check_opset(name, model)
        graph = model.graph
        initializer_names = {tensor.name for tensor in graph.initializer}
        inputs = [value for value in graph.input if value.name not in initializer_names]
        self._check_names(name, "inputs", [value.name for value in inputs], self.input_names)
        self._check_names(name, "outputs", [value.name for value in graph.output], self.output_names)
        self._check_types(name, "input", _value_infos(inputs), self.input_types)
        self._check_types(name, "output", _value_infos(graph.output), self.output_types)
        self._check_dynamic(name, _value_infos(list(inputs) + list(graph.output)))
        self._check_ops(name, {node.op_type for node in graph.node})
        feeds = self.feeds()
        if feeds is not None:
            produced = _run_model(model, feeds)
            for output, actual, expected in zip(graph.output, produced, self.expected_outputs(feeds)):
                assert_equal(f"{name}'s output '{output.name}'", actual, np.asarray(expected),
                             rtol=self.rtol, atol=self.atol)

    def _check_opset(self, name: str, model: Any) -> None:
        versions = opset_versions(model)
        if "ai.onnx" not in versions:
            raise Incorrect(f"`{name}` does not import the default ONNX domain: pass "
                            "`opset_imports=[onnx.helper.make_opsetid('', N)]` to `make_model`.")
        version = versions["ai.onnx"]
        if self.opset is not None and version != self.opset:
            raise Incorrect(f"`{name}` imports opset {version} of the default domain; "
                            f"this exercise asks for opset {self.opset}.")
        if self.min_opset is not None and version < self.min_opset:
            raise Incorrect(f"`{name}` imports opset {version}; this exercise needs opset {self.min_opset} or newer.")

    def _check_names(self, name: str, kind: str, actual: list[str], expected: Sequence[str] | None) -> None:
        if expected is None:
            return
        if len(actual) != len(expected):
            raise Incorrect(f"`{name}` has {len(actual)} graph {kind}; expected {len(expected)}.")
        if list(actual) != list(expected):
            raise Incorrect(f"`{name}`'s graph {kind} are named {actual}; expected {list(expected)}.")

    def _check_types(self, name: str, kind: str, values: dict[str, Any], expected: Mapping[str, int] | None) -> None:
        for value_name, elem_type in (expected or {}).items():
            value = values.get(value_name)
            if value is None:
                raise Incorrect(f"`{name}` has no {kind} named '{value_name}'.")
            actual = value.type.tensor_type.elem_type
            if actual != elem_type:
                raise Incorrect(f"`{name}`'s {kind} '{value_name}' has element type {elem_type_name(actual)}; "
                                f"expected {elem_type_name(elem_type)}.")

    def _check_dynamic(self, name: str, values: dict[str, Any]) -> None:
        for value_name, axes in (self.dynamic_dims or {}).items():
            value = values.get(value_name)
            if value is None:
                raise Incorrect(f"`{name}` has no input or output named '{value_name}'.")
            dims = value.type.tensor_type.shape.dim
            for axis in axes:
                if axis >= len(dims):
                    raise Incorrect(f"`{name}`'s '{value_name}' has rank {len(dims)}; "
                                    f"expected at least {axis + 1} dimensions.")
                if dims[axis].HasField("dim_value"):
                    raise Incorrect(f"`{name}`'s '{value_name}' has a fixed size {dims[axis].dim_value} "
                                    f"on axis {axis}; that axis should be dynamic (a named dimension such as 'batch').")

    def _check_ops(self, name: str, op_types: set[str]) -> None:
        missing = [op for op in self.required_ops if op not in op_types]
        if missing:
            raise Incorrect(f"`{name}` has no {', '.join(missing)} node; this exercise needs one.")
        present = [op for op in self.forbidden_ops if op in op_types]
        if present:
            raise Incorrect(f"`{name}` uses {', '.join(present)}, which this exercise asks you to avoid.")


class ModelFileProblem(OnnxModelProblem):
    """The variable must be the path of an ONNX file with the declared properties.

    Besides the model checks, ``external_data`` (True/False/None) asks that the weights
    be stored beside the file (``model.onnx.data``) or inside it, and ``max_file_bytes``
    bounds the size of the ``.onnx`` file itself. The file is read by
    :func:`labsupport.model_loader.load_model`, whose reason is the message when it cannot be.
    """

    external_data: bool | None = None
    max_file_bytes: int | None = None

    def check(self, path: Any) -> None:
        import onnx

        name = self.vars[0]
        if not isinstance(path, (str, os.PathLike)):
            raise Incorrect(f"`{name}` should be the path of an .onnx file (a str or pathlib.Path), "
                            f"but it is a {type(path).__name__}.")
        path = Path(path)
        model = self._load(name, path, external_data=False)
        uses_external = any(tensor.data_location == onnx.TensorProto.EXTERNAL for tensor in model.graph.initializer)
        if self.external_data is True and not uses_external:
            raise Incorrect(f"`{name}` keeps its weights inside the file; save them as external data "
                            "(`onnx.save_model(..., save_as_external_data=True)`).")
        if self.external_data is False and uses_external:
            raise Incorrect(f"`{name}` stores weights in a separate file; "
                            "this exercise wants them inside the .onnx file.")
        size = path.stat().st_size  # after the layout check, whose advice is more useful
        if self.max_file_bytes is not None and size > self.max_file_bytes:
            raise Incorrect(f"`{name}` is {size:,} bytes; this exercise expects at most {self.max_file_bytes:,}.")
        self.check_model(name, self._load(name, path, external_data=True))

    @staticmethod
    def _load(name: str, path: Path, *, external_data: bool) -> Any:
        try:
            return load_model(path, external_data=external_data)
        except ModelInputError as error:
            raise Incorrect(f"`{name}` points to {path}: {error.reason}") from None


class SessionParityProblem(Problem):
    """The variable must be outputs (or a session) matching a reference within tolerance.

    Override :meth:`feeds` and :meth:`expected_outputs`. If the variable is an
    ``onnxruntime.InferenceSession`` it is run on :meth:`feeds`; if it is an array or a
    list of arrays it is taken as the outputs already computed.
    """

    rtol: float = 1e-4
    atol: float = 1e-5

    def feeds(self) -> Mapping[str, np.ndarray]:
        raise NotImplementedError(f"{type(self).__name__} must define feeds(): the inputs to run the session on")

    def expected_outputs(self) -> Sequence[np.ndarray]:
        raise NotImplementedError(f"{type(self).__name__} must define expected_outputs(): the reference outputs")

    def check(self, answer: Any) -> None:
        name = self.vars[0]
        if hasattr(answer, "run") and hasattr(answer, "get_inputs"):
            feeds = self.feeds()
            expected_inputs = sorted(feeds)
            actual_inputs = sorted(value.name for value in answer.get_inputs())
            if actual_inputs != expected_inputs:
                raise Incorrect(f"`{name}` takes inputs {actual_inputs}; expected {expected_inputs}.")
            try:
                outputs = answer.run(None, dict(feeds))
            except Exception as error:
                raise Incorrect(f"Running `{name}` failed: {first_line(error)}") from None
        elif isinstance(answer, np.ndarray):
            outputs = [answer]
        elif isinstance(answer, (list, tuple)):
            outputs = list(answer)
        else:
            raise Incorrect(f"`{name}` should be an onnxruntime.InferenceSession or its outputs, "
                            f"but it is a {type(answer).__name__}.")
        expected = list(self.expected_outputs())
        if len(outputs) < len(expected):
            raise Incorrect(f"`{name}` gives {len(outputs)} output(s); expected {len(expected)}.")
        for index, (actual, want) in enumerate(zip(outputs, expected)):
            assert_equal(f"{name} output {index}", actual, np.asarray(want), rtol=self.rtol, atol=self.atol)
