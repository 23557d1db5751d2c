"""Lab 12 — interoperability challenges: preprocessing, dtypes, operators, shapes, leaving ONNX, strangers' models.

The exercises write a PyTorch-style preprocessing function for raw camera frames, decompose
ONNX Runtime's fused convolution into standard operators, make a fixed batch dimension
dynamic, write the preprocessing as an ONNX graph, and choose the OpenVINO configuration that
keeps float32 precision on any CPU.

The data are scikit-learn's digits photographed, so to speak: :func:`camera_frames` paints each
8×8 digit in blue ink on cream paper under slightly varying light, with sensor noise, as uint8
RGB frames in height × width × channel order (what a camera or an image library hands you).
Two classifiers learn them, each with its framework's usual preprocessing: a PyTorch CNN on
channels-first frames normalized per channel with :data:`MEAN` and :data:`STD`
(:func:`torch_style`, torchvision's convention), and a Keras CNN on channels-last frames scaled
to [-1, 1] (:func:`keras_style`, what ``keras.applications.mobilenet_v2.preprocess_input``
does).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from labsupport.checking import (
    FunctionProblem,
    Incorrect,
    Problem,
    ThoughtExperiment,
    assert_equal,
    make_binder,
)
from labsupport.onnx_problems import OnnxModelProblem
from labsupport.onnx_tools import FLOAT, UINT8, first_line

LAB = "12_interop_challenges"

INK = (40, 60, 170)
"""RGB of the ink: a blue ballpoint."""
PAPER = (235, 225, 200)
"""RGB of the paper: cream."""
MEAN = (0.671, 0.669, 0.731)
"""Per-channel (R, G, B) mean of the training frames scaled to [0, 1], rounded as published constants are."""
STD = (0.286, 0.244, 0.073)
"""Per-channel (R, G, B) standard deviation of the training frames scaled to [0, 1], rounded likewise."""

CNN_INPUT = "pixels"
CNN_OUTPUT = "logits"
RAW_INPUT = "frames"
CNN_OPSET = 20
"""The opset torch 2.13's exporter writes, which a graph merged with the exported CNN must share."""
FRAME_SHAPE = (8, 8, 3)


# ---------------------------------------------------------------------------
# Frames and the two frameworks' preprocessing
# ---------------------------------------------------------------------------

@dataclass(frozen=True)
class ColourDigits:
    """Raw uint8 RGB frames [N, 8, 8, 3] of the digits, with integer labels."""

    train_frames: np.ndarray
    test_frames: np.ndarray
    y_train: np.ndarray
    y_test: np.ndarray


def camera_frames(features: np.ndarray, seed: int) -> np.ndarray:
    """Paint flattened digits (64 values in [0, 1] each, 1 = ink) as uint8 RGB frames [N, 8, 8, 3].

    Each pixel mixes :data:`PAPER` and :data:`INK` by the digit's ink coverage; each frame gets
    its own brightness (0.85 to 1.1, the light) and each pixel Gaussian noise (σ = 6 grey
    levels, the sensor). Seeded, so the same call gives the same frames.
    """
    rng = np.random.default_rng(seed)
    coverage = np.asarray(features, dtype=np.float64).reshape(-1, 8, 8, 1)
    light = rng.uniform(0.85, 1.1, (len(coverage), 1, 1, 1))
    painted = (np.array(PAPER) * (1 - coverage) + np.array(INK) * coverage) * light
    noisy = painted + rng.normal(0.0, 6.0, painted.shape)
    return np.clip(np.round(noisy), 0, 255).astype(np.uint8)


@functools.lru_cache(maxsize=1)
def colour_digits() -> ColourDigits:
    """The digits split of ``labsupport.models.load_digits_split`` as camera frames (train seed 1, test seed 2)."""
    from labsupport.models import load_digits_split

    data = load_digits_split()
    return ColourDigits(camera_frames(data.x_train, 1), camera_frames(data.x_test, 2), data.y_train, data.y_test)


def torch_style(frames: np.ndarray) -> np.ndarray:
    """What the PyTorch CNN was trained on: [0, 1], normalized per channel, channels first (float32 NCHW)."""
    unit = np.asarray(frames).astype(np.float32) / 255
    normalized = (unit - np.array(MEAN, dtype=np.float32)) / np.array(STD, dtype=np.float32)
    return np.ascontiguousarray(normalized.transpose(0, 3, 1, 2))


def keras_style(frames: np.ndarray) -> np.ndarray:
    """What the Keras CNN was trained on: [-1, 1], channels last (float32 NHWC)."""
    return np.asarray(frames).astype(np.float32) / 127.5 - 1


# ---------------------------------------------------------------------------
# The two classifiers
# ---------------------------------------------------------------------------

def build_colour_cnn(seed: int = 0):
    """Lab 04's digits CNN with three input channels (PyTorch), untrained and seeded."""
    from labsupport.models.torch_models import build_digits_cnn

    return build_digits_cnn(seed, in_channels=3)


def train_colour_cnn(digits: ColourDigits | None = None, *, epochs: int = 40, seed: int = 0):
    """Train :func:`build_colour_cnn` on :func:`torch_style` frames (full-batch Adam, a few seconds)."""
    import torch

    from labsupport.models.torch_models import fit_classifier

    digits = digits or colour_digits()
    return fit_classifier(build_colour_cnn(seed), torch.from_numpy(torch_style(digits.train_frames)),
                          torch.from_numpy(digits.y_train), epochs=epochs, learning_rate=0.02, seed=seed)


def export_colour_cnn(path: str | Path, model, *, dynamic_batch: bool = True) -> Path:
    """Export the colour CNN with torch.export: ``pixels`` [batch, 3, 8, 8] → ``logits`` [batch, 10].

    With ``dynamic_batch=False`` the example's batch of 1 is fixed in the graph, as an export
    without ``dynamic_shapes`` fixes it.
    """
    import torch

    from labsupport.models import quiet_exporter_logs

    quiet_exporter_logs()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    example = torch.zeros(2 if dynamic_batch else 1, 3, 8, 8)
    dynamic_shapes = ({0: torch.export.Dim("batch")},) if dynamic_batch else None
    torch.onnx.export(model, (example,), str(path), input_names=[CNN_INPUT], output_names=[CNN_OUTPUT],
                      dynamic_shapes=dynamic_shapes, external_data=False, verbose=False)
    return path


def build_colour_keras(seed: int = 0):
    """Lab 05's digits CNN for channels-last RGB frames (Keras 3), untrained and seeded."""
    from labsupport.models import keras_models

    keras = keras_models.keras  # imported there, with TensorFlow's start-up notices held back
    keras.utils.set_random_seed(seed)
    inputs = keras.Input(FRAME_SHAPE, name=CNN_INPUT)
    outputs = inputs
    for layer in (keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="conv1"),
                  keras.layers.MaxPooling2D(2, name="pool"),
                  keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="conv2"),
                  keras.layers.Flatten(name="flatten"),
                  keras.layers.Dense(10, name=CNN_OUTPUT)):
        outputs = layer(outputs)
    return keras.Model(inputs, outputs, name="colour_digits_cnn")


def train_colour_keras(digits: ColourDigits | None = None, *, epochs: int = 10, seed: int = 0):
    """Train :func:`build_colour_keras` on :func:`keras_style` frames (Adam, batches of 128, a few seconds)."""
    from labsupport.models import keras_models

    keras = keras_models.keras
    digits = digits or colour_digits()
    model = build_colour_keras(seed)
    model.compile(optimizer=keras.optimizers.Adam(0.01),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(keras_style(digits.train_frames), digits.y_train, epochs=epochs, batch_size=128, verbose=0)
    return model


def export_colour_keras(path: str | Path, model) -> Path:
    """Convert the Keras CNN with tf2onnx (as lab 05 does): ``pixels`` [batch, 8, 8, 3] → ``logits``."""
    import tensorflow as tf
    import tf2onnx

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    signature = (tf.TensorSpec((None, *FRAME_SHAPE), tf.float32, name=CNN_INPUT),)

    @tf.function(input_signature=signature)
    def predict_logits(pixels):
        return {CNN_OUTPUT: model(pixels, training=False)}

    tf2onnx.convert.from_function(predict_logits, input_signature=signature, opset=17, output_path=str(path))
    return path


# ---------------------------------------------------------------------------
# Reference graphs
# ---------------------------------------------------------------------------

def preprocessing_model():
    """Exercise 4's reference answer: :func:`torch_style` as an ONNX graph, ``frames`` → ``pixels``.

    Input ``frames`` uint8 [batch, 8, 8, 3], output ``pixels`` float [batch, 3, 8, 8], opset
    :data:`CNN_OPSET`: the model ``q4.solution()`` builds, node for node. ``helper.make_model``
    stamps it with the newest IR version the installed onnx knows; ``onnx.compose.merge_models``
    wants the exported CNN's, which the notebook sets before merging.
    """
    from onnx import TensorProto, helper, numpy_helper

    constants = [numpy_helper.from_array(np.array(255, dtype=np.float32), "scale"),
                 numpy_helper.from_array(np.array(MEAN, dtype=np.float32).reshape(1, 1, 1, 3), "mean"),
                 numpy_helper.from_array(np.array(STD, dtype=np.float32).reshape(1, 1, 1, 3), "std")]
    nodes = [helper.make_node("Cast", [RAW_INPUT], ["as_float"], to=TensorProto.FLOAT),
             helper.make_node("Div", ["as_float", "scale"], ["unit"]),
             helper.make_node("Sub", ["unit", "mean"], ["centred"]),
             helper.make_node("Div", ["centred", "std"], ["normalized"]),
             helper.make_node("Transpose", ["normalized"], [CNN_INPUT], perm=[0, 3, 1, 2])]
    graph = helper.make_graph(
        nodes, "preprocessing",
        [helper.make_tensor_value_info(RAW_INPUT, TensorProto.UINT8, ["batch", *FRAME_SHAPE])],
        [helper.make_tensor_value_info(CNN_INPUT, TensorProto.FLOAT, ["batch", 3, 8, 8])], constants)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", CNN_OPSET)])


def fused_conv_model(activation: str = "Relu", activation_params: Sequence[float] = (), *, seed: int = 0):
    """One ``com.microsoft::FusedConv`` node (3 → 4 channels, 3×3, padding 1) as ONNX Runtime's optimizer writes it.

    Input ``x`` [batch, 3, 6, 6], output ``y``; the weights ``W`` and bias ``B`` are seeded.
    """
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    attributes = {"activation": activation, "kernel_shape": [3, 3], "pads": [1, 1, 1, 1], "strides": [1, 1],
                  "dilations": [1, 1], "group": 1, "auto_pad": "NOTSET"}
    if activation_params:
        attributes["activation_params"] = [float(value) for value in activation_params]
    node = helper.make_node("FusedConv", ["x", "W", "B"], ["y"], name="fused_conv", domain="com.microsoft",
                            **attributes)
    graph = helper.make_graph(
        [node], "fused_conv", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3, 6, 6])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4, 6, 6])],
        [numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), "W"),
         numpy_helper.from_array(rng.standard_normal(4).astype(np.float32), "B")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", CNN_OPSET),
                                                    helper.make_opsetid("com.microsoft", 1)])
    model.ir_version = 10
    return model


_ACTIVATION_PARAMETERS = {"LeakyRelu": ("alpha",), "HardSigmoid": ("alpha", "beta")}


def unfused_conv(node) -> list:
    """The reference decomposition of a FusedConv node: a Conv, then its activation (exercise 2's answer).

    Later cells use this one, so that they run whatever a learner's answer is.
    """
    from onnx import helper

    attributes = {attribute.name: helper.get_attribute_value(attribute) for attribute in node.attribute}
    activation = attributes.pop("activation").decode()
    parameters = attributes.pop("activation_params", [])
    conv = helper.make_node("Conv", list(node.input), [node.output[0] + "_conv"], name=node.name + "_conv",
                            **attributes)
    activation_attributes = dict(zip(_ACTIVATION_PARAMETERS.get(activation, ()), parameters))
    return [conv, helper.make_node(activation, conv.output, list(node.output), name=node.name + "_activation",
                                   **activation_attributes)]


def static_cnn_model(batch: int = 1, *, seed: int = 0):
    """The colour CNN's graph as an export without dynamic shapes writes it, with a fixed ``batch``.

    The flattening Reshape's shape constant holds the batch (``[batch, 256]``, ``allowzero=1``,
    as torch 2.13 writes it) and ``value_info`` declares every intermediate tensor with it, as
    ONNX shape inference fills it in. Weights are seeded, not trained.
    """
    from onnx import TensorProto, helper, numpy_helper, shape_inference

    rng = np.random.default_rng(seed)

    def weight(name, *shape):
        return numpy_helper.from_array((rng.standard_normal(shape) * 0.3).astype(np.float32), name)

    conv = {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1]}
    nodes = [helper.make_node("Conv", [CNN_INPUT, "conv1.weight", "conv1.bias"], ["conv1"], name="node_conv1", **conv),
             helper.make_node("Relu", ["conv1"], ["relu1"], name="node_relu1"),
             helper.make_node("MaxPool", ["relu1"], ["pool"], name="node_pool", kernel_shape=[2, 2], strides=[2, 2]),
             helper.make_node("Conv", ["pool", "conv2.weight", "conv2.bias"], ["conv2"], name="node_conv2", **conv),
             helper.make_node("Relu", ["conv2"], ["relu2"], name="node_relu2"),
             helper.make_node("Reshape", ["relu2", "flat_shape"], ["flat"], name="node_view", allowzero=1),
             helper.make_node("Gemm", ["flat", "fc.weight", "fc.bias"], [CNN_OUTPUT], name="node_linear", transB=1)]
    initializers = [weight("conv1.weight", 8, 3, 3, 3), weight("conv1.bias", 8), weight("conv2.weight", 16, 8, 3, 3),
                    weight("conv2.bias", 16), weight("fc.weight", 10, 256), weight("fc.bias", 10),
                    numpy_helper.from_array(np.array([batch, 256], dtype=np.int64), "flat_shape")]
    graph = helper.make_graph(nodes, "static_cnn",
                              [helper.make_tensor_value_info(CNN_INPUT, TensorProto.FLOAT, [batch, 3, 8, 8])],
                              [helper.make_tensor_value_info(CNN_OUTPUT, TensorProto.FLOAT, [batch, 10])],
                              initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", CNN_OPSET)])
    model.ir_version = 10
    return shape_inference.infer_shapes(model)


def static_mlp_model(batch: int = 4, *, seed: int = 1):
    """A 192 → 32 → 10 perceptron on flattened frames with a fixed ``batch`` and no Reshape (value_info filled in)."""
    from onnx import TensorProto, helper, numpy_helper, shape_inference

    rng = np.random.default_rng(seed)
    nodes = [helper.make_node("Gemm", ["features", "w1", "b1"], ["hidden"], name="node_fc1", transB=1),
             helper.make_node("Relu", ["hidden"], ["active"], name="node_relu"),
             helper.make_node("Gemm", ["active", "w2", "b2"], [CNN_OUTPUT], name="node_fc2", transB=1)]
    initializers = [numpy_helper.from_array((rng.standard_normal(shape) * 0.2).astype(np.float32), name)
                    for name, shape in (("w1", (32, 192)), ("b1", (32,)), ("w2", (10, 32)), ("b2", (10,)))]
    graph = helper.make_graph(nodes, "static_mlp",
                              [helper.make_tensor_value_info("features", TensorProto.FLOAT, [batch, 192])],
                              [helper.make_tensor_value_info(CNN_OUTPUT, TensorProto.FLOAT, [batch, 10])],
                              initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", CNN_OPSET)])
    model.ir_version = 10
    return shape_inference.infer_shapes(model)


# ---------------------------------------------------------------------------
# Exercise 1 and 4: the preprocessing, in Python and as a graph
# ---------------------------------------------------------------------------

def _pixel_mistakes(frames: np.ndarray) -> list[tuple[np.ndarray, str]]:
    """What the usual preprocessing mistakes produce from ``frames``, and what to say about each."""
    unit = frames.astype(np.float32) / 255
    mean, std = np.array(MEAN, dtype=np.float32), np.array(STD, dtype=np.float32)
    normalized = (unit - mean) / std
    return [
        (normalized.reshape(-1, 3, 8, 8),
         "reshapes the frames to (N, 3, 8, 8) instead of moving the channel axis: a reshape keeps the memory "
         "order, so each 'channel' holds a mix of rows and colours; move the axis with a transpose"),
        (normalized.transpose(0, 3, 2, 1),
         "has its axes in the order (N, channel, width, height): rows and columns are swapped; the model wants "
         "(N, channel, height, width)"),
        (torch_style(frames[..., ::-1]),
         "has the colour channels in BGR order; the frames and the model are RGB: keep the channel order"),
        (unit.transpose(0, 3, 1, 2),
         "scales the pixels to [0, 1] but does not normalize them with MEAN and STD"),
        (keras_style(frames).transpose(0, 3, 1, 2),
         "scales the pixels to [-1, 1], the Keras model's convention; the PyTorch model was trained on "
         "(x / 255 − MEAN) / STD"),
        (((frames.astype(np.float32) - mean) / std).transpose(0, 3, 1, 2),
         "normalizes the raw 0–255 values; MEAN and STD are for pixels scaled to [0, 1] first"),
        ((unit - mean).transpose(0, 3, 1, 2),
         "subtracts MEAN but does not divide by STD"),
    ]


def _check_pixels(call: str, actual: Any, frames: np.ndarray) -> None:
    """Raise Incorrect unless ``actual`` is :func:`torch_style` of ``frames``, naming the mistake it matches."""
    expected = torch_style(frames)
    if not isinstance(actual, np.ndarray):
        raise Incorrect(f"{call} returned a {type(actual).__name__}; return a NumPy array, which is what ONNX "
                        "Runtime takes.")
    if actual.dtype == np.float64:
        raise Incorrect(f"{call} returned float64 values: NumPy promotes float32 to float64 when it meets a "
                        "float64 array or constant, and ONNX Runtime refuses float64 for a float input; return "
                        "float32.")
    if actual.shape == (len(frames), *FRAME_SHAPE):
        raise Incorrect(f"{call} returned shape {actual.shape}, still channels last; the PyTorch model wants "
                        f"{expected.shape} (N, channel, height, width).")
    if actual.shape != expected.shape:
        raise Incorrect(f"{call} returned shape {actual.shape}; expected {expected.shape} (N, channel, height, "
                        "width).")
    if actual.dtype != np.float32:
        raise Incorrect(f"{call} returned {actual.dtype} values; the model's input is float32.")
    if np.allclose(actual, expected, rtol=1e-5, atol=1e-5):
        return
    for mistaken, what in _pixel_mistakes(frames):
        if np.allclose(actual, mistaken, rtol=1e-5, atol=1e-5):
            raise Incorrect(f"{call} {what}.")
    assert_equal(call, actual, expected, rtol=1e-5, atol=1e-5)


def _sample_frames() -> list[tuple[str, np.ndarray]]:
    digits = colour_digits()
    random_colours = np.random.default_rng(12).integers(0, 256, (5, *FRAME_SHAPE), dtype=np.uint8)
    return [("32 test frames", digits.test_frames[:32]), ("one test frame", digits.test_frames[:1]),
            ("5 frames of random colours", random_colours)]


class TorchPreprocess(FunctionProblem):
    prompt = "turn raw uint8 RGB frames [N, 8, 8, 3] into the PyTorch CNN's input (float32, NCHW, normalized)"
    vars = ("torch_preprocess",)
    hints = ("Three steps, in the order the model card gives them: scale the 0–255 values to [0, 1], normalize "
             "each channel with MEAN and STD (broadcasting over the last axis, where the channels are), then move "
             "the channel axis to position 1.",
             "Moving an axis is a transpose with the permutation (0, 3, 1, 2), not a reshape. Keep everything "
             "float32: a constant array made with np.array(...) without a dtype is float64 and drags the result "
             "with it.")
    solution = """def torch_preprocess(frames):
    unit = frames.astype(np.float32) / 255
    mean = np.array(lab12.MEAN, dtype=np.float32)
    std = np.array(lab12.STD, dtype=np.float32)
    return ((unit - mean) / std).transpose(0, 3, 1, 2)"""

    def describe_call(self, args):
        (frames,) = args
        return f"`torch_preprocess` on {len(frames)} frame(s)"

    def check(self, fn):
        self.require_function(fn)
        if fn is torch_style:
            raise Incorrect("`torch_preprocess` is `lab12.torch_style` itself, the reference this check compares "
                            "with, so there is nothing to check: write the three steps of the model card yourself.")
        if "torch_style" in getattr(getattr(fn, "__code__", None), "co_names", ()):
            raise Incorrect("`torch_preprocess` calls `lab12.torch_style`, the reference this check compares with, "
                            "so there is nothing to check: write the three steps of the model card yourself.")
        for description, frames in _sample_frames():
            actual = self.call_answer(fn, (frames,))
            _check_pixels(f"`torch_preprocess` on {description}", actual, frames)


class PreprocessingGraph(OnnxModelProblem):
    prompt = "write the PyTorch preprocessing as an ONNX graph: uint8 frames [batch, 8, 8, 3] in, pixels out"
    vars = ("preprocessing",)
    hints = ("Five nodes do it: a Cast from uint8 to float, a Div by 255, a Sub of the mean, a Div by the "
             "standard deviation, and a Transpose. The constants are initializers; shape MEAN and STD as "
             "[1, 1, 1, 3] so that they broadcast over the channel axis, which is last until the Transpose.",
             "Build it inside out with onnx.helper: a node reads an initializer by naming it as an input, "
             "make_tensor_value_info takes a string where an axis is dynamic, make_graph gathers the nodes, the "
             "input, the output and the initializers, and make_model takes the opset imports. Make every constant "
             "float32, 255 included: NumPy's default is float64, and the checker refuses a Div of a float by a "
             "double.")
    solution = """preprocessing = helper.make_model(
    helper.make_graph(
        [helper.make_node("Cast", ["frames"], ["as_float"], to=TensorProto.FLOAT),
         helper.make_node("Div", ["as_float", "scale"], ["unit"]),
         helper.make_node("Sub", ["unit", "mean"], ["centred"]),
         helper.make_node("Div", ["centred", "std"], ["normalized"]),
         helper.make_node("Transpose", ["normalized"], ["pixels"], perm=[0, 3, 1, 2])],
        "preprocessing",
        [helper.make_tensor_value_info("frames", TensorProto.UINT8, ["batch", 8, 8, 3])],
        [helper.make_tensor_value_info("pixels", TensorProto.FLOAT, ["batch", 3, 8, 8])],
        [numpy_helper.from_array(np.array(255, dtype=np.float32), "scale"),
         numpy_helper.from_array(np.array(lab12.MEAN, dtype=np.float32).reshape(1, 1, 1, 3), "mean"),
         numpy_helper.from_array(np.array(lab12.STD, dtype=np.float32).reshape(1, 1, 1, 3), "std")]),
    opset_imports=[helper.make_opsetid("", lab12.CNN_OPSET)])"""
    opset = CNN_OPSET
    input_names = (RAW_INPUT,)
    output_names = (CNN_INPUT,)
    input_types = {RAW_INPUT: UINT8}
    output_types = {CNN_INPUT: FLOAT}
    dynamic_dims = {RAW_INPUT: (0,), CNN_INPUT: (0,)}

    def check_model(self, name, model):
        super().check_model(name, model)
        from labsupport.onnx_tools import cpu_session

        for description, frames in _sample_frames():
            try:
                (actual,) = cpu_session(model).run([CNN_INPUT], {RAW_INPUT: frames})
            except Exception as error:
                raise Incorrect(f"ONNX Runtime could not run `{name}` on {description}: {first_line(error)}") from None
            _check_pixels(f"`{name}` on {description}", actual, frames)


# ---------------------------------------------------------------------------
# Exercise 2: FusedConv into standard operators
# ---------------------------------------------------------------------------

_FUSED_CASES = (("Relu", ()), ("LeakyRelu", (0.1,)), ("HardSigmoid", (0.3, 0.4)), ("Sigmoid", ()), ("Tanh", ()))


def _with_nodes(model, nodes):
    import onnx

    replaced = onnx.ModelProto()
    replaced.CopyFrom(model)
    del replaced.graph.node[:]
    replaced.graph.node.extend(nodes)
    del replaced.opset_import[:]
    replaced.opset_import.extend([onnx.helper.make_opsetid("", CNN_OPSET)])
    return replaced


def _require_node_list(call: str, nodes: Any) -> None:
    """Raise Incorrect unless ``nodes`` is a list (or tuple) of NodeProto, naming the first item that is not one."""
    import onnx

    if not isinstance(nodes, (list, tuple)):
        raise Incorrect(f"{call} returned a {type(nodes).__name__}; return a list of onnx.NodeProto, the nodes "
                        "that replace it.")
    for position, item in enumerate(nodes):
        if not isinstance(item, onnx.NodeProto):
            raise Incorrect(f"{call} returned a {type(nodes).__name__} whose item {position} is a "
                            f"{type(item).__name__}, not a NodeProto; every item must be a node made with "
                            "onnx.helper.make_node.")


def _checker_reason(error: Exception) -> str:
    """What onnx's checker says, in one line; its message on node order spans lines, joined here, with the fix."""
    if "topologically sorted" in str(error):
        return (" ".join(str(error).split()) + " Return the nodes in the order they run: the Conv before the "
                "activation that reads its output.")
    return first_line(error)


class UnfuseConv(FunctionProblem):
    prompt = "replace ONNX Runtime's com.microsoft::FusedConv node by standard nodes: a Conv, then its activation"
    vars = ("unfuse_conv",)
    hints = ("A FusedConv is a Conv with two extra attributes, `activation` (the name of a standard operator, as "
             "bytes) and optionally `activation_params` (its float parameters, in the order of that operator's "
             "attributes: alpha for LeakyRelu, alpha then beta for HardSigmoid). Every other attribute belongs to "
             "the Conv.",
             "Read the attributes into a dict with onnx.helper.get_attribute_value, take the two extra ones out, "
             "and make two nodes: the Conv writes a new intermediate name, the activation reads it and writes the "
             "FusedConv's own output name, which the rest of the graph reads.")
    solution = """def unfuse_conv(node):
    attributes = {attribute.name: helper.get_attribute_value(attribute) for attribute in node.attribute}
    activation = attributes.pop("activation").decode()
    parameters = attributes.pop("activation_params", [])
    conv = helper.make_node("Conv", list(node.input), [node.output[0] + "_conv"], name=node.name + "_conv",
                            **attributes)
    names = {"LeakyRelu": ["alpha"], "HardSigmoid": ["alpha", "beta"]}.get(activation, [])
    return [conv, helper.make_node(activation, conv.output, list(node.output), name=node.name + "_activation",
                                   **dict(zip(names, parameters)))]"""

    def describe_call(self, args):
        (node,) = args
        attributes = {attribute.name: attribute for attribute in node.attribute}
        activation = attributes["activation"].s.decode()
        parameters = [f"{value:.6g}" for value in attributes["activation_params"].floats] \
            if "activation_params" in attributes else []
        detail = f" and activation_params [{', '.join(parameters)}]" if parameters else ""
        return f"`unfuse_conv` on a FusedConv with activation {activation}{detail}"

    def check(self, fn):
        import onnx

        from labsupport.onnx_tools import cpu_session

        self.require_function(fn)
        probe = np.random.default_rng(3).standard_normal((2, 3, 6, 6)).astype(np.float32)
        for activation, parameters in _FUSED_CASES:
            fused = fused_conv_model(activation, parameters)
            (node,) = fused.graph.node
            call = self.describe_call((node,))
            nodes = self.call_answer(fn, (node,))
            _require_node_list(call, nodes)
            custom = sorted({f"{item.domain}::{item.op_type}" for item in nodes if item.domain not in ("", "ai.onnx")})
            if custom:
                raise Incorrect(f"{call} still returns {', '.join(custom)}; use operators of the default ONNX "
                                "domain only.")
            writers = [item for item in nodes if node.output[0] in item.output]
            if not writers:
                raise Incorrect(f"{call}: no returned node writes '{node.output[0]}', the FusedConv's output, which "
                                "the rest of the graph reads; the activation must write it.")
            if writers[-1].op_type != activation:
                raise Incorrect(f"{call}: the node that writes '{node.output[0]}' is a {writers[-1].op_type}; it "
                                f"should be the activation the `activation` attribute names, {activation} here.")
            replaced = _with_nodes(fused, nodes)
            try:
                onnx.checker.check_model(replaced, full_check=True)
            except Exception as error:
                raise Incorrect(f"{call}: the graph with your nodes fails the checker: {_checker_reason(error)}") \
                    from None
            try:
                actual = cpu_session(replaced).run(None, {"x": probe})[0]
            except Exception as error:
                raise Incorrect(f"{call}: ONNX Runtime cannot run the graph with your nodes: "
                                f"{first_line(error)}") from None
            expected = cpu_session(fused).run(None, {"x": probe})[0]
            if not np.allclose(actual, expected, rtol=1e-5, atol=1e-5):
                worst = float(np.abs(actual - expected).max())
                if parameters:
                    raise Incorrect(f"{call} computes values up to {worst:.3g} away from the FusedConv's: pass "
                                    "activation_params on to the activation's attributes, in order.")
                raise Incorrect(f"{call} computes values up to {worst:.3g} away from the FusedConv's: the Conv "
                                "keeps every attribute but the two extra ones, and the activation follows it.")


# ---------------------------------------------------------------------------
# Exercise 3: a fixed batch made dynamic
# ---------------------------------------------------------------------------

def _static_cases() -> list[tuple[str, Any, int, str]]:
    return [("the static CNN (batch 1)", static_cnn_model(1), 1, CNN_INPUT),
            ("the static CNN (batch 2)", static_cnn_model(2, seed=4), 2, CNN_INPUT),
            ("the static MLP (batch 4)", static_mlp_model(4), 4, "features")]


class MakeBatchDynamic(FunctionProblem):
    prompt = "repair a model exported with a fixed batch so that it runs at any batch size"
    vars = ("make_batch_dynamic",)
    hints = ("Three places hold the old batch size: axis 0 of every graph input and output, the shape constant "
             "of each flattening Reshape, and the intermediate shapes shape inference wrote into value_info. "
             "ONNX Runtime infers the output's shape from those, and warns when the real one differs.",
             "Give axis 0 a name (dim_param) instead of a size, set the first entry of each Reshape's shape "
             "initializer to -1 (these Reshapes have allowzero=1, so 0 would mean an empty axis, not 'copy'), "
             "and delete the value_info entries. Work on a copy of the model, not on the one you are given.")
    solution = """def make_batch_dynamic(model):
    dynamic = onnx.ModelProto()
    dynamic.CopyFrom(model)
    for value in [*dynamic.graph.input, *dynamic.graph.output]:
        value.type.tensor_type.shape.dim[0].dim_param = "batch"
    constants = {tensor.name: tensor for tensor in dynamic.graph.initializer}
    for node in dynamic.graph.node:
        if node.op_type == "Reshape" and node.input[1] in constants:
            shape = numpy_helper.to_array(constants[node.input[1]]).copy()
            shape[0] = -1
            constants[node.input[1]].CopyFrom(numpy_helper.from_array(shape, node.input[1]))
    del dynamic.graph.value_info[:]
    return dynamic"""

    def describe_call(self, args):
        return "`make_batch_dynamic`"

    def check(self, fn):
        import onnx

        self.require_function(fn)
        for description, static, batch, input_name in _static_cases():
            call = f"`make_batch_dynamic` on {description}"
            dynamic = self.call_answer(fn, (static,))
            if not isinstance(dynamic, onnx.ModelProto):
                raise Incorrect(f"{call} returned a {type(dynamic).__name__}; return the repaired onnx.ModelProto.")
            for kind, values in (("input", dynamic.graph.input), ("output", dynamic.graph.output)):
                for value in values:
                    dims = value.type.tensor_type.shape.dim
                    if dims and dims[0].HasField("dim_value"):
                        raise Incorrect(f"{call} leaves the graph {kind} '{value.name}' with a fixed size "
                                        f"{dims[0].dim_value} on axis 0; give that axis a name such as 'batch'.")
            try:
                onnx.checker.check_model(dynamic, full_check=True)
            except Exception as error:
                raise Incorrect(f"{call}: the result fails the checker: {first_line(error)}") from None
            for size in (batch, 3 * batch, 8 * batch):
                self._check_run(call, static, dynamic, batch, input_name, size)

    @staticmethod
    def _check_run(call, static, dynamic, batch, input_name, size):
        import onnxruntime

        from labsupport.onnx_tools import cpu_session
        from labsupport.runtime import capture_ort_logs

        shape = [dim.dim_value for dim in static.graph.input[0].type.tensor_type.shape.dim][1:]
        inputs = np.random.default_rng(size).standard_normal((size, *shape)).astype(np.float32)
        reference_session = cpu_session(static)
        expected = np.concatenate([reference_session.run(None, {input_name: inputs[start:start + batch]})[0]
                                   for start in range(0, size, batch)])
        options = onnxruntime.SessionOptions()
        options.log_severity_level = 2
        with capture_ort_logs(severity=2) as log:
            try:
                actual = cpu_session(dynamic, options).run(None, {input_name: inputs})[0]
            except Exception as error:
                reason = first_line(error)
                if "cannot be reshaped" in reason and "requested shape:{0," in str(error):
                    raise Incorrect(f"{call} fails at batch {size}: a Reshape's shape starts with 0, which with "
                                    "allowzero=1 asks for an empty axis; use -1, which infers the size.") from None
                if "cannot be reshaped" in str(error):
                    raise Incorrect(f"{call} fails at batch {size}: a Reshape still has the old batch size in its "
                                    "shape constant.") from None
                raise Incorrect(f"{call} fails at batch {size}: {reason}") from None
        mismatched = [record.message for record in log if "Expected shape from model" in record.message]
        if mismatched:
            raise Incorrect(f"{call} runs at batch {size}, but ONNX Runtime warns \"{mismatched[0]}\": the graph "
                            "still declares intermediate shapes with the old batch (value_info); remove them.")
        assert_equal(f"{call}'s output at batch {size}", actual, expected, rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------------------
# Exercise 5: OpenVINO in float32 on any CPU
# ---------------------------------------------------------------------------

def precise_openvino_config() -> dict:
    """Exercise 5's reference answer: the configuration under which OpenVINO's CPU plugin computes in float32."""
    from labsupport.interop import import_openvino

    ov = import_openvino()
    from openvino.properties import hint

    return {hint.inference_precision: ov.Type.f32}


class PreciseOpenVino(Problem):
    prompt = "an OpenVINO configuration under which the CPU plugin computes in float32 on every CPU"
    vars = ("precise_config",)
    hints = ("The CPU plugin's default inference precision depends on the CPU: bf16 where the CPU has bf16 "
             "instructions, f32 elsewhere. Your configuration must say which precision to use instead of relying "
             "on the default; `core.get_property('CPU', 'SUPPORTED_PROPERTIES')` lists the properties.",
             "It is a dict passed to `core.compile_model(model, 'CPU', config)`: one entry, whose key is the "
             "inference precision hint (`openvino.properties.hint.inference_precision`, or its name as a "
             "string) and whose value names float32 (`openvino.Type.f32` or 'f32').")
    solution = "precise_config = {hints.inference_precision: ov.Type.f32}"

    def check(self, config):
        from labsupport.interop import import_openvino, openvino_reason

        if not isinstance(config, Mapping):
            raise Incorrect(f"`precise_config` should be a dict of OpenVINO properties (property → value), but it "
                            f"is a {type(config).__name__}.")
        ov = import_openvino()
        core = ov.Core()
        default = core.get_property("CPU", "INFERENCE_PRECISION_HINT").get_type_name()
        try:
            core.set_property("CPU", dict(config))
        except Exception as error:
            raise Incorrect(f"OpenVINO's CPU plugin refuses `precise_config`: {openvino_reason(error)}") from None
        # A property called with its value, hints.inference_precision(ov.Type.f32), gives (name, OVAny): read the value.
        settings = {str(key): value.value if isinstance(value, ov.OVAny) else value for key, value in config.items()}
        accuracy_mode = str(core.get_property("CPU", "EXECUTION_MODE_HINT")).endswith("ACCURACY")
        if "INFERENCE_PRECISION_HINT" in settings:
            asked = settings["INFERENCE_PRECISION_HINT"]
            asked = asked.get_type_name() if hasattr(asked, "get_type_name") else str(asked).strip().lower()
            if asked not in ("f32", "fp32"):
                raise Incorrect(f"`precise_config` asks for {asked}; the model was trained and checked in float32, "
                                "which OpenVINO calls f32.")
        elif "EXECUTION_MODE_HINT" in settings:
            if not accuracy_mode:
                raise Incorrect("`precise_config` sets the execution mode to PERFORMANCE, which lets the plugin "
                                "lower the precision; set the inference precision itself.")
        elif default == "f32":
            raise Incorrect("`precise_config` does not say which precision to compute in, so the plugin uses its "
                            "default: f32 on this CPU, which has no bf16 instructions, but bf16 on CPUs that have "
                            "them. Set the inference precision hint.")
        else:
            raise Incorrect(f"`precise_config` does not say which precision to compute in, so the plugin uses its "
                            f"default, {default} on this CPU. Set the inference precision hint.")
        self._compile_with(ov, core, config)

    @staticmethod
    def _compile_with(ov, core, config):
        import openvino.opset13 as ops

        values = ops.parameter([2, 4], ov.Type.f32, name="x")
        compiled = core.compile_model(ov.Model([ops.relu(values)], [values], "probe"), "CPU", dict(config))
        precision = compiled.get_property("INFERENCE_PRECISION_HINT")
        accuracy_mode = str(compiled.get_property("EXECUTION_MODE_HINT")).endswith("ACCURACY")
        if precision != ov.Type.f32 and not accuracy_mode:
            raise Incorrect(f"A model compiled with `precise_config` computes in {precision.get_type_name()}, not "
                            "f32.")


# ---------------------------------------------------------------------------
# Check yourself
# ---------------------------------------------------------------------------

class SilentAccuracyDrop(ThoughtExperiment):
    prompt = "a converted model runs without error but scores 8 points lower in production: how do you find why?"
    solution = (
        "Start from one input and compare tensors, not accuracies. Run the original framework and the deployed "
        "runtime on the same raw input and record the tensor each one actually feeds the model: if those differ, "
        "the preprocessing is wrong, not the model. Check, in order: the layout (NCHW vs NHWC, and a reshape used "
        "where a transpose was needed), the colour order (RGB vs BGR from an image library), the scaling and "
        "normalization (/255, mean and std per channel, [-1, 1]), the dtype, and the resize or crop. If the inputs "
        "match, compare the model's outputs with a tolerance (max |Δ| on logits) and bisect the graph by exposing "
        "intermediate outputs until the first node that disagrees: an operator implemented differently, a precision "
        "the runtime lowered (bf16, fp16), or a shape that was fixed at export. Then fix it at the source — put the "
        "preprocessing into the model or a shared function — and keep the parity test in CI.")


class Bf16Parity(ThoughtExperiment):
    prompt = "OpenVINO's logits differ from ONNX Runtime's by 0.1 while the accuracy is the same: is that a bug?"
    solution = (
        "Not necessarily: it is the precision, not the model. On CPUs with bf16 instructions OpenVINO's CPU "
        "plugin computes in bfloat16 by default, which keeps float32's range but only about three significant "
        "decimal digits, so each layer's output moves by a fraction of a per cent and logits in the tens move by "
        "a few hundredths to a few tenths. Labels rarely change, which is why the accuracy holds. It matters when the "
        "numbers themselves are used: probabilities compared with a threshold, calibrated scores, regression "
        "outputs, embeddings compared by distance, or a parity test in CI that must separate a real regression "
        "from rounding. Decide which you need: set the inference precision hint to f32 (or the ACCURACY execution "
        "mode) for parity and reproducibility across machines, or keep bf16 for speed and test with a tolerance and "
        "on task metrics measured on the target CPU.")


class StrangersModel(ThoughtExperiment):
    prompt = "what do you check before deploying an ONNX model someone else made, and why?"
    solution = (
        "Loading ONNX runs no code from the file, unlike unpickling, but the file still decides what the runtime "
        "reads and does. Check where its external data points: every location must be a relative path inside the "
        "model's folder and not a symbolic link out of it (onnx, ONNX Runtime, OpenVINO and labsupport refuse the "
        "others). Check sizes: the file and its data, and the input shapes it declares, against a memory budget. "
        "Check the operators and domains: anything outside the standard needs a custom-operator library, which is "
        "native code you would have to trust, and may not exist on your target. Read the metadata (producer, "
        "version, opsets, doc string, metadata_props) and compare them with what you were told. Then validate it "
        "like any model: the checker, runs at several batch sizes, and parity on data whose answers you know — "
        "the file can be well-formed and still compute the wrong thing.")


PROBLEMS = {
    "q1": TorchPreprocess,
    "q2": UnfuseConv,
    "q3": MakeBatchDynamic,
    "q4": PreprocessingGraph,
    "q5": PreciseOpenVino,
    "q6": SilentAccuracyDrop,
    "q7": Bf16Parity,
    "q8": StrangersModel,
}
bind = make_binder(LAB, PROBLEMS)
