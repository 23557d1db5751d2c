"""Lab 02 — format internals: what is inside an .onnx file.

The exercises read a model's metadata and weights, name types and element sizes, do the
index arithmetic of row-major tensors, build a model by hand with ``onnx.helper`` and save
one with external data. The reference helpers at the bottom (:func:`affine_weights`,
:func:`reference_affine_model`, :func:`build_wide_model`) are what the notebook and the
checks share, so both always agree on the numbers.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from labsupport.checking import (
    EqualityProblem,
    FunctionProblem,
    Incorrect,
    NotAttempted,
    Problem,
    ThoughtExperiment,
    contains_placeholder,
    make_binder,
)
from labsupport.onnx_problems import ModelFileProblem, OnnxModelProblem
from labsupport.onnx_tools import FLOAT, INT64, elem_type_name

LAB = "02_format_internals"

FLOAT16 = 10  # onnx.TensorProto.FLOAT16


# ---------------------------------------------------------------------------
# Reference helpers shared by the notebook and the checks
# ---------------------------------------------------------------------------

def affine_weights() -> tuple[np.ndarray, np.ndarray]:
    """W (3×2) and b (2,) of the hand-built model ``y = Relu(x @ W + b)``, as float32."""
    weight = np.array([[0.5, -1.0],
                       [1.5, 0.25],
                       [-2.0, 0.75]], dtype=np.float32)
    bias = np.array([0.1, -0.2], dtype=np.float32)
    return weight, bias


def affine_input(batch: int = 4, seed: int = 2) -> np.ndarray:
    """A seeded float32 batch of shape (batch, 3) to feed the affine model."""
    return np.random.default_rng(seed).standard_normal((batch, 3)).astype(np.float32)


def affine_reference(x: np.ndarray) -> np.ndarray:
    """What the affine model must compute, in NumPy: ``max(x @ W + b, 0)``."""
    weight, bias = affine_weights()
    return np.maximum(x @ weight + bias, 0.0).astype(np.float32)


def reference_affine_model():
    """The model of exercise BuildAffineModel, so later cells never depend on an answer."""
    from onnx import TensorProto, helper, numpy_helper

    weight, bias = affine_weights()
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["xW"]),
         helper.make_node("Add", ["xW", "b"], ["z"]),
         helper.make_node("Relu", ["z"], ["y"])],
        "affine",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 2])],
        initializer=[numpy_helper.from_array(weight, "W"), numpy_helper.from_array(bias, "b")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])


def build_wide_model(width: int = 512, seed: int = 0):
    """A one-layer model whose weight (width × width float32, 1 MiB at 512) is worth storing outside.

    Input ``features`` [batch, width], output ``scores`` = features @ weight + bias.
    """
    from onnx import TensorProto, helper, numpy_helper

    weight, bias = _wide_weights(width, seed)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["features", "weight"], ["product"]),
         helper.make_node("Add", ["product", "bias"], ["scores"])],
        "wide",
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["batch", width])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["batch", width])],
        initializer=[numpy_helper.from_array(weight, "weight"), numpy_helper.from_array(bias, "bias")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])


def _wide_weights(width: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    weight = (rng.standard_normal((width, width)) / np.sqrt(width)).astype(np.float32)
    bias = rng.standard_normal(width).astype(np.float32)
    return weight, bias


# ---------------------------------------------------------------------------
# Metadata and initializers
# ---------------------------------------------------------------------------

def _metadata_cases():
    """(description, model, expected (ir_version, producer_name, opset)) for ReadMetadata."""
    from onnx import helper

    def model(ir_version, producer, opsets):
        graph = helper.make_graph([], "empty", [], [])
        return helper.make_model(graph, ir_version=ir_version, producer_name=producer,
                                 opset_imports=[helper.make_opsetid(domain, version) for domain, version in opsets])

    return [
        ("a model made with onnx.helper", model(10, "handmade", [("", 21)]), (10, "handmade", 21)),
        ("a model that imports a custom domain before the default one",
         model(8, "pytorch", [("com.microsoft", 1), ("", 17)]), (8, "pytorch", 17)),
        ("a model that spells the default domain 'ai.onnx' and also imports 'ai.onnx.ml'",
         model(9, "skl2onnx", [("ai.onnx.ml", 3), ("ai.onnx", 18)]), (9, "skl2onnx", 18)),
    ]


class ReadMetadata(Problem):
    prompt = "write read_metadata(model) returning (ir_version, producer_name, default-domain opset)"
    vars = ("read_metadata",)
    hints = ("`model.ir_version` and `model.producer_name` are plain fields; the opset lives in the list "
             "`model.opset_import`, one entry per operator domain.",
             "Do not take `opset_import[0]`: pick the entry whose `domain` is `''` or `'ai.onnx'` (both mean the "
             "default domain) and return its `version`.")
    solution = """def read_metadata(model):
    opset = next(entry.version for entry in model.opset_import if entry.domain in ("", "ai.onnx"))
    return model.ir_version, model.producer_name, opset"""

    def check(self, read_metadata):
        if not callable(read_metadata):
            raise Incorrect(f"`read_metadata` should be a function, but it is a {type(read_metadata).__name__}.")
        fields = ("ir_version", "producer_name", "opset")
        for description, model, expected in _metadata_cases():
            try:
                answer = read_metadata(model)
            except Exception as error:  # the learner's code failed: report it, do not crash
                detail = f" ({error})" if str(error) else ""
                raise Incorrect(f"`read_metadata(model)` raised {type(error).__name__}{detail} "
                                f"for {description}.") from None
            if contains_placeholder(answer):
                raise NotAttempted("`read_metadata` still returns the placeholder `____`.")
            if answer is None:
                raise Incorrect("`read_metadata(model)` returned None. Did you forget a `return` statement?")
            if not isinstance(answer, (tuple, list)) or len(answer) != 3:
                raise Incorrect("`read_metadata(model)` should return a tuple of three items "
                                "(ir_version, producer_name, opset).")
            for field, got, want in zip(fields, answer, expected):
                if isinstance(want, int) and (isinstance(got, bool) or not isinstance(got, (int, np.integer))):
                    raise Incorrect(f"`read_metadata(model)` returns a {type(got).__name__} as {field}; "
                                    "expected an int.")
                if got != want:
                    raise Incorrect(f"`read_metadata(model)` returns the wrong {field} for {description}.")


class CountParameters(EqualityProblem):
    prompt = "count the trainable numbers stored in the digits MLP's initializers"
    vars = ("parameter_count",)
    hints = ("Each initializer is a TensorProto; the number of values it holds is the product of its `dims`.",
             "Multiply out each initializer's `dims` (NumPy has a function for a product) and add the results over "
             "all of `mlp.graph.initializer`: values, not tensors and not bytes.")
    solution = "parameter_count = sum(int(np.prod(tensor.dims)) for tensor in mlp.graph.initializer)"

    def expected_value(self):
        pixels, hidden, classes = 64, 32, 10  # the shape of labsupport.models.build_digits_mlp
        return pixels * hidden + hidden + hidden * classes + classes


# ---------------------------------------------------------------------------
# Types and element types
# ---------------------------------------------------------------------------

def _type_kind(type_proto) -> str:
    return type_proto.WhichOneof("value") or "empty"


_KIND_WORDS = {"tensor_type": "a tensor", "sequence_type": "a sequence", "map_type": "a map",
               "optional_type": "an optional", "sparse_tensor_type": "a sparse tensor", "empty": "an empty type"}


class ProbabilitiesType(Problem):
    prompt = "declare the value info 'probabilities': a sequence of maps from int64 class to float score"
    vars = ("probabilities_info",)
    hints = ("Build the type from the inside out: a float tensor, a map from INT64 to it, a sequence of that map; "
             "`onnx.helper` has a `make_..._type_proto` function for each.",
             "Innermost first: `make_tensor_type_proto` for the score (a scalar has the shape `[]`), "
             "`make_map_type_proto` (key type first, then the value's type), `make_sequence_type_proto` around it; "
             "`make_value_info` names the result.")
    solution = """probabilities_info = helper.make_value_info(
    "probabilities",
    helper.make_sequence_type_proto(
        helper.make_map_type_proto(TensorProto.INT64, helper.make_tensor_type_proto(TensorProto.FLOAT, []))))"""

    def check(self, probabilities_info):
        import onnx

        name = "probabilities_info"
        if isinstance(probabilities_info, onnx.TypeProto):
            raise Incorrect(f"`{name}` is a TypeProto; wrap it with a name using `onnx.helper.make_value_info`.")
        if not isinstance(probabilities_info, onnx.ValueInfoProto):
            raise Incorrect(f"`{name}` should be an onnx.ValueInfoProto (made by `onnx.helper.make_value_info`), "
                            f"but it is a {type(probabilities_info).__name__}.")
        if probabilities_info.name != "probabilities":
            raise Incorrect(f"`{name}` is named {probabilities_info.name!r}; expected 'probabilities'.")
        outer = probabilities_info.type
        if _type_kind(outer) != "sequence_type":
            raise Incorrect(f"`{name}` declares {_KIND_WORDS[_type_kind(outer)]}; the outermost type should be a "
                            "sequence "
                            "(one entry per example in the batch).")
        element = outer.sequence_type.elem_type
        if _type_kind(element) != "map_type":
            raise Incorrect(f"`{name}` is a sequence whose elements are {_KIND_WORDS[_type_kind(element)]}; "
                            "they should be maps (class → score).")
        key_type = element.map_type.key_type
        if key_type != INT64:
            raise Incorrect(f"`{name}`'s map keys are {elem_type_name(key_type)}; "
                            "the keys are integer class labels, so INT64 is expected.")
        value = element.map_type.value_type
        if _type_kind(value) != "tensor_type":
            raise Incorrect(f"`{name}`'s map values are {_KIND_WORDS[_type_kind(value)]}; expected a float tensor.")
        if value.tensor_type.elem_type != FLOAT:
            raise Incorrect(f"`{name}`'s map values have element type "
                            f"{elem_type_name(value.tensor_type.elem_type)}; expected FLOAT.")


class Float16Bytes(EqualityProblem):
    prompt = "give FLOAT16's element-type code and the raw_data bytes of a float16 tensor of shape (3, 224, 224)"
    vars = ("float16_code", "float16_bytes")
    hints = ("The codes are the values of the enum `onnx.TensorProto.DataType` (try `TensorProto.FLOAT16`); "
             "the table above lists them.",
             "raw_data holds the values back to back with no padding: elements × bytes per element "
             "(a dtype's `itemsize`). Measuring the raw_data of such a tensor made with `numpy_helper.from_array` "
             "confirms your arithmetic.")
    solution = """float16_code = TensorProto.FLOAT16
float16_bytes = 3 * 224 * 224 * np.dtype(np.float16).itemsize"""

    def expected_value(self):
        return [FLOAT16, 3 * 224 * 224 * 2]

    def check(self, float16_code, float16_bytes):
        is_code = isinstance(float16_code, (int, np.integer)) and not isinstance(float16_code, bool)
        if is_code and float16_code != FLOAT16:
            import onnx

            if int(float16_code) not in onnx.TensorProto.DataType.values():
                raise Incorrect(f"`float16_code` = {float16_code} is not an element-type code at all; "
                                "the codes are the values of `TensorProto.DataType`.")
            raise Incorrect(f"`float16_code` = {float16_code} is the code of "
                            f"{elem_type_name(int(float16_code))}, not of FLOAT16.")
        super().check(float16_code, float16_bytes)


# ---------------------------------------------------------------------------
# Row-major layout
# ---------------------------------------------------------------------------

class FlatIndex(FunctionProblem):
    prompt = "write flat_index(shape, index): the position of element `index` in a row-major buffer"
    vars = ("flat_index",)
    hints = ("In row-major order the last axis moves fastest: stepping one along axis k skips the product of all "
             "the sizes after k.",
             "Horner's rule does it in one loop over the axes in order: multiply the running offset by the axis's "
             "size, then add the index along that axis. Starting from 0, it also gives 0 for a scalar, shape ().")
    solution = """def flat_index(shape, index):
    offset = 0
    for size, position in zip(shape, index):
        offset = offset * size + position
    return offset"""
    test_cases = [
        (((5,), (3,)), 3),
        (((3, 4), (2, 1)), 9),
        (((2, 3, 4), (1, 0, 2)), 14),
        (((4, 1, 3), (2, 0, 1)), 7),
        (((1, 3, 8, 8), (0, 2, 5, 7)), 175),
        (((2, 3, 4, 5), (1, 2, 3, 4)), 119),
        (((), ()), 0),
    ]


_DTYPE_OF_ITEMSIZE = {1: np.uint8, 2: np.float16, 4: np.float32, 8: np.float64}


class RowMajorStrides(FunctionProblem):
    prompt = "write row_major_strides(shape, itemsize): the byte step of each axis, as NumPy's `.strides` gives it"
    vars = ("row_major_strides",)
    hints = ("The last axis steps by one element, `itemsize` bytes; each earlier axis steps by the next axis's "
             "stride times the next axis's size.",
             "Walk the shape backwards with a running product that starts at `itemsize`: an axis's stride is the "
             "product *before* that axis's size is multiplied in. Return a tuple; a scalar (shape ()) has no "
             "strides at all.")
    solution = """def row_major_strides(shape, itemsize):
    strides = []
    step = itemsize
    for size in reversed(shape):
        strides.insert(0, step)
        step *= size
    return tuple(strides)"""

    def cases(self):
        arguments = [((2, 3, 4), 4), ((3, 224, 224), 2), ((5,), 8), ((4, 1, 3), 1), ((), 4)]
        return [((shape, itemsize), tuple(np.empty(shape, _DTYPE_OF_ITEMSIZE[itemsize]).strides))
                for shape, itemsize in arguments]


# ---------------------------------------------------------------------------
# Building and saving models
# ---------------------------------------------------------------------------

class BuildAffineModel(OnnxModelProblem):
    prompt = "build y = Relu(x @ W + b) by hand with onnx.helper: dynamic batch, opset 21"
    vars = ("affine_model",)
    hints = ("You need two `make_tensor_value_info` (x and y, with 'batch' as their first dimension), two "
             "initializers from `numpy_helper.from_array(array, name)`, three `make_node` calls, `make_graph` and "
             "`make_model`.",
             "Nodes connect by tensor names: each node's output name is the next node's input name, and the last "
             "node writes `y`. Pin the default domain's opset with `make_opsetid` in `make_model`'s `opset_imports`.")
    solution = """weight, bias = lab02.affine_weights()
x_info = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3])
y_info = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 2])
nodes = [helper.make_node("MatMul", ["x", "W"], ["xW"]),
         helper.make_node("Add", ["xW", "b"], ["z"]),
         helper.make_node("Relu", ["z"], ["y"])]
graph = helper.make_graph(nodes, "affine", [x_info], [y_info],
                          initializer=[numpy_helper.from_array(weight, "W"), numpy_helper.from_array(bias, "b")])
affine_model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])"""
    opset = 21
    input_names = ("x",)
    output_names = ("y",)
    input_types = {"x": FLOAT}
    output_types = {"y": FLOAT}
    dynamic_dims = {"x": (0,), "y": (0,)}
    required_ops = ("MatMul", "Add", "Relu")

    def check_model(self, name, model):
        initializers = {tensor.name for tensor in model.graph.initializer}
        for weight_name in ("W", "b"):
            if weight_name not in initializers:
                raise Incorrect(f"`{name}` has no initializer named '{weight_name}': the weights belong in the graph "
                                "(`make_graph(..., initializer=[numpy_helper.from_array(array, name), ...])`), "
                                "not in the feeds.")
        super().check_model(name, model)
        _check_static_dims(name, model, {"x": 3, "y": 2})

    def feeds(self):
        return {"x": affine_input(batch=5, seed=7)}

    def expected_outputs(self, feeds):
        return [affine_reference(feeds["x"])]


def _check_static_dims(name, model, last_dims):
    """Each named input/output must be rank 2 with the given size on axis 1."""
    values = {value.name: value for value in list(model.graph.input) + list(model.graph.output)}
    for value_name, size in last_dims.items():
        dims = values[value_name].type.tensor_type.shape.dim
        if len(dims) != 2:
            raise Incorrect(f"`{name}`'s '{value_name}' has rank {len(dims)}; expected rank 2: [batch, {size}].")
        if not dims[1].HasField("dim_value") or dims[1].dim_value != size:
            raise Incorrect(f"`{name}`'s '{value_name}' does not declare size {size} on axis 1; "
                            f"declare its shape as ['batch', {size}].")


class SaveWithExternalData(ModelFileProblem):
    prompt = "save the wide model with its weights in a separate .data file; store the .onnx path in wide_path"
    vars = ("wide_path",)
    hints = ("`onnx.save_model` has keyword arguments that send the weights to a separate file and name that file "
             "(a name relative to the .onnx file's folder).",
             "Build the path from `lab02_dir`, the folder the check looks in, and name the data file after the "
             "model file (`<name>.onnx.data`) so the pair is obvious.")
    solution = """wide_path = lab02_dir / "wide_external.onnx"
onnx.save_model(wide_model, wide_path, save_as_external_data=True, location="wide_external.onnx.data")"""
    external_data = True
    max_file_bytes = 16_384
    opset = 21
    input_names = ("features",)
    output_names = ("scores",)
    rtol = 1e-4
    atol = 1e-5

    def check(self, wide_path):
        if isinstance(wide_path, (str, os.PathLike)) and Path(wide_path).is_file():
            _check_in_lab_folder(Path(wide_path))
            _check_weights_were_written(Path(wide_path))
        super().check(wide_path)

    def feeds(self):
        return {"features": np.random.default_rng(3).standard_normal((3, 512)).astype(np.float32)}

    def expected_outputs(self, feeds):
        weight, bias = _wide_weights(512, 0)
        return [feeds["features"] @ weight + bias]


def _check_in_lab_folder(path: Path) -> None:
    from labsupport import artifacts_dir

    folder = artifacts_dir("02")
    if path.resolve().parent != folder.resolve():
        raise Incorrect(f"`wide_path` is in {path.parent}, but the exercise asks for the folder `lab02_dir` "
                        f"({folder}): save the model there and point `wide_path` at it.")


def _check_weights_were_written(path: Path) -> None:
    """Each external location the .onnx names must be a file beside it (a save of an emptied model writes none)."""
    import onnx

    try:
        skeleton = onnx.load(str(path), load_external_data=False)
    except Exception:  # not a readable model: ModelFileProblem.check reports it
        return
    locations = sorted({entry.value for tensor in skeleton.graph.initializer for entry in tensor.external_data
                        if entry.key == "location"})
    missing = [location for location in locations if not (path.parent / location).is_file()]
    if missing:
        raise Incorrect(f"`wide_path`'s weights should be in '{missing[0]}' beside it, in {path.parent}, but that file "
                        "is not there. Keep the .data file beside the .onnx file. If you had already saved this "
                        "`wide_model` once, that save moved its weights out of memory and this one wrote none: "
                        "re-run the cell that builds `wide_model`, then save again.")


# ---------------------------------------------------------------------------
# Check yourself
# ---------------------------------------------------------------------------

class IrVersionVersusOpset(ThoughtExperiment):
    prompt = "a model says ir_version 10 and opset_import ['': 20]. What does each number promise, and to whom?"
    hints = ("One number describes the file format (which fields exist), the other the meaning of operators.",
             "Think of a runtime that reads the file: which number decides whether it can parse it, and which "
             "whether it knows what `Gemm` means?")
    solution = (
        "`ir_version` versions the *container*: which protobuf fields and rules the file may use (for example, "
        "IR 4 stopped requiring initializers to be listed as graph inputs, IR 8 added optional types). A runtime "
        "must understand that IR version to parse and validate the file at all. `opset_import` versions the "
        "*operators*, per domain: opset 20 of the default domain fixes the inputs, attributes and semantics of "
        "every standard op such as Gemm or Relu. A runtime needs an implementation of each op as it was defined "
        "in that opset; an op's behaviour can change between opsets while the file format stays the same. "
        "They move independently, and both are promises from the producer (exporter) to the consumer (runtime).")


class ChannelsLastOffsets(ThoughtExperiment):
    prompt = ("a 224×224 RGB image decoded by PIL is HWC; the model wants CHW. Where is the green value of "
              "pixel (row 10, column 20) in each buffer, and what must preprocessing do?")
    hints = ("Apply the row-major formula with the index in the order of each layout: (h, w, c) for HWC, "
             "(c, h, w) for CHW.",
             "The values are the same; only their positions differ. Which NumPy call reorders the axes, and does "
             "it move any bytes?")
    solution = (
        "Green is channel 1. In HWC (shape 224, 224, 3) the offset is (10·224 + 20)·3 + 1 = 6,781; in CHW (shape "
        "3, 224, 224) it is 1·224·224 + 10·224 + 20 = 52,436. Same value, different place: reshaping the HWC "
        "buffer to (3, 224, 224) instead of reordering it raises no error at all, it silently scrambles channels and "
        "rows and the predictions are wrong. Preprocessing must reorder the axes, `np.transpose(image, (2, 0, 1))`, "
        "and then make "
        "the result contiguous (`np.ascontiguousarray`): the transpose alone only changes strides, while ONNX "
        "Runtime and raw_data want a dense row-major buffer, so the copy is where the bytes actually move. Add the "
        "batch axis last (`[None]`) to get NCHW.")


class MissingExternalData(ThoughtExperiment):
    prompt = ("you copy model.onnx exported by torch to a server, and ONNX Runtime fails to load it. What went "
              "wrong, and name two ways to fix it.")
    hints = ("Which files did `torch.onnx.export` write with its default arguments?",
             "The .onnx file stores a relative `location` for each external tensor: where does the loader look "
             "for it?")
    solution = (
        "`torch.onnx.export` saves weights as external data by default (`external_data=True`), so the export "
        "wrote model.onnx (the graph) and model.onnx.data. torch 2.13 saves through `onnx_ir.save`, which moves "
        "every initializer larger than 256 bytes to the .data file and keeps the smaller ones (biases, a tiny "
        "model's whole weights) inside model.onnx; the .data file is written even when nothing goes into it. The "
        "external initializers in model.onnx only hold a location, offset and length, resolved relative to the "
        ".onnx file's folder, so without the .data file beside it the load fails. Fixes: (1) copy both files and "
        "keep them in the same folder with the same names (or treat the folder as the artifact); (2) if the model "
        "is under 2 GiB, export with "
        "`external_data=False` or re-save with `onnx.save_model(onnx.load(path), new_path)` so the weights are "
        "inside one self-contained file. Renaming the .data file breaks the link unless the model is re-saved "
        "with a new `location`.")


PROBLEMS = {
    "q1": ReadMetadata,
    "q2": CountParameters,
    "q3": ProbabilitiesType,
    "q4": Float16Bytes,
    "q5": FlatIndex,
    "q6": RowMajorStrides,
    "q7": BuildAffineModel,
    "q8": SaveWithExternalData,
    "q9": IrVersionVersusOpset,
    "q10": ChannelsLastOffsets,
    "q11": MissingExternalData,
}
bind = make_binder(LAB, PROBLEMS)
