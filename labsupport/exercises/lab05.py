"""Lab 05 — TensorFlow and Keras export: tf2onnx, image layouts and parity.

The exercises convert the Keras 3 Sequential digits CNN through a ``tf.function``, move
images from channels-last to channels-first, predict and then produce the graph that
``inputs_as_nchw`` makes, and compute a parity report. TensorFlow is imported only when a
check needs the reference model, so importing this module stays cheap.
"""

from __future__ import annotations

import functools
import numbers
from typing import Any

import numpy as np

from labsupport.checking import (
    EqualityProblem,
    FunctionProblem,
    Incorrect,
    ThoughtExperiment,
    assert_equal,
    make_binder,
)
from labsupport.onnx_problems import ModelFileProblem
from labsupport.onnx_tools import tensor_dims

LAB = "05_tensorflow_export"

OPSET = 17  # the opset the exercises ask for; equals labsupport.models.keras_models.OPSET


@functools.lru_cache(maxsize=1)
def reference_logits() -> tuple[np.ndarray, np.ndarray]:
    """The test images in NHWC ``[N, 8, 8, 1]`` and the logits the reference Keras CNN gives for them."""
    from labsupport.models import load_digits_split
    from labsupport.models.keras_models import digits_images, train_digits_keras_cnn

    images = digits_images(load_digits_split().x_test)
    model = train_digits_keras_cnn()
    return images, np.asarray(model(images, training=False))


def _dims(value: Any) -> list:
    """A value info's dimensions: an int for a fixed size, None for a symbolic one."""
    return [dim if isinstance(dim, int) else None for dim in tensor_dims(value) or ()]


def _shape_text(dims: list) -> str:
    return "[" + ", ".join("batch" if dim is None else str(dim) for dim in dims) + "]"


class _DigitsCnnFile(ModelFileProblem):
    """A converted digits CNN: names, opset, dynamic batch, layout, and Keras's numbers."""

    opset = OPSET
    input_names = ("pixels",)
    output_names = ("logits",)
    dynamic_dims = {"pixels": (0,), "logits": (0,)}
    required_ops = ("Conv", "MaxPool")
    rtol = 1e-4
    atol = 1e-5
    input_dims: tuple = (None, 8, 8, 1)
    layout_advice = ""

    def check_model(self, name, model):
        outputs = [value.name for value in model.graph.output]
        if outputs and outputs != list(self.output_names) and (outputs[0].startswith(("Identity", "output_"))):
            raise Incorrect(f"`{name}`'s graph output is named {outputs}; expected {list(self.output_names)}. "
                            "Return a dict `{'logits': ...}` from your tf.function: tf2onnx names outputs after "
                            "its keys.")
        inputs = {value.name: value for value in model.graph.input}
        if "pixels" in inputs:
            dims = _dims(inputs["pixels"])
            if len(dims) == 4 and dims[1:] != list(self.input_dims[1:]):
                raise Incorrect(f"`{name}`'s input 'pixels' has shape {_shape_text(dims)}; this exercise expects "
                                f"{_shape_text(list(self.input_dims))}. {self.layout_advice}")
        super().check_model(name, model)

    def images(self) -> np.ndarray:
        return reference_logits()[0][:7]

    def feeds(self):
        return {"pixels": self.images()}

    def expected_outputs(self, feeds):
        return [reference_logits()[1][:7]]


class SequentialFromFunction(_DigitsCnnFile):
    prompt = "convert the Keras 3 Sequential CNN through a tf.function with tf2onnx.convert.from_function"
    vars = ("sequential_onnx_path",)
    hints = ("Decorate a small function with `@tf.function` and the input signature. Inside, call the model in "
             "inference mode and return a dict: its key becomes the ONNX output's name.",
             "`tf2onnx.convert.from_function` takes that function, the same signature, the opset and an "
             "`output_path` (a string) to write the file; the `None` batch in `signature` keeps the batch axis "
             "dynamic.")
    solution = """signature = (tf.TensorSpec((None, 8, 8, 1), tf.float32, name="pixels"),)

@tf.function(input_signature=signature)
def predict_sequential(pixels):
    return {"logits": sequential(pixels, training=False)}

sequential_onnx_path = artifacts / "digits_sequential.onnx"
tf2onnx.convert.from_function(predict_sequential, input_signature=signature, opset=17,
                              output_path=str(sequential_onnx_path))"""
    layout_advice = "Keep TensorFlow's channels-last layout here: do not pass `inputs_as_nchw`."


class ChannelsFirst(FunctionProblem):
    prompt = "write to_channels_first(images): a batch in NHWC (channels last) to NCHW (channels first)"
    vars = ("to_channels_first",)
    hints = ("Axis 3 (channels) must move to position 1; batch, height and width keep their order.",
             "`np.transpose` takes the new order of the axes: for each new position, the old axis that goes there. "
             "A `reshape` to the new shape keeps the memory order, so it scrambles the pixels whenever there is more "
             "than one channel.")
    solution = """def to_channels_first(images):
    return np.transpose(images, (0, 3, 1, 2))"""

    def cases(self):
        rng = np.random.default_rng(5)
        colour = rng.standard_normal((2, 4, 5, 3)).astype(np.float32)
        grey = rng.standard_normal((3, 8, 8, 1)).astype(np.float32)
        return [(colour, np.transpose(colour, (0, 3, 1, 2))), (grey, np.transpose(grey, (0, 3, 1, 2)))]

    def describe_call(self, args):
        return f"`{self.vars[0]}` on a batch of shape {args[0].shape}"

    def check(self, fn):
        self.require_function(fn)
        for images, expected in self.cases():
            call = self.describe_call((images,))
            actual = np.asarray(self.call_answer(fn, (images,)))
            if actual.shape != expected.shape:
                raise Incorrect(f"{call} returned shape {actual.shape}; expected {expected.shape} "
                                "(batch, channels, height, width).")
            if not np.array_equal(actual, expected):
                raise Incorrect(f"{call} has the right shape, but the pixels are in the wrong places. A reshape keeps "
                                "the memory order; moving an axis needs a transpose.")


class NchwInputShape(EqualityProblem):
    prompt = "predict the ONNX input shape after converting with inputs_as_nchw=['pixels']"
    vars = ("nchw_input_shape",)
    hints = ("`inputs_as_nchw` changes the layout the graph *declares* for that input; the rest of the graph is "
             "unchanged.",
             "Channels first: (batch, channels, height, width), with None for the dynamic batch.")
    solution = "nchw_input_shape = (None, 1, 8, 8)"
    expected = (None, 1, 8, 8)

    def check(self, nchw_input_shape):
        if not isinstance(nchw_input_shape, (tuple, list)) or len(nchw_input_shape) != 4:
            raise Incorrect("`nchw_input_shape` should be a tuple of 4 entries: (batch, channels, height, width).")
        if nchw_input_shape[0] is not None:
            raise Incorrect("`nchw_input_shape[0]` should be None: the batch axis stays dynamic after the conversion.")
        if tuple(nchw_input_shape) == (None, 8, 8, 1):
            raise Incorrect("`nchw_input_shape` is the channels-last shape the graph declares without "
                            "`inputs_as_nchw`; "
                            "the option moves the channel axis.")
        super().check(tuple(nchw_input_shape))


class NchwExport(_DigitsCnnFile):
    prompt = "convert the functional CNN with from_keras so that its ONNX input is channels first"
    vars = ("nchw_onnx_path",)
    hints = ("The functional model converts directly with `tf2onnx.convert.from_keras`: the same signature and opset "
             "as before, one more keyword for the layout, and `output_path` to write the file.",
             "`inputs_as_nchw` takes a list of input *names*: `['pixels']`.")
    solution = """nchw_onnx_path = artifacts / "digits_keras_nchw.onnx"
tf2onnx.convert.from_keras(model, input_signature=signature, opset=17, inputs_as_nchw=["pixels"],
                           output_path=str(nchw_onnx_path))"""
    input_dims = (None, 1, 8, 8)
    layout_advice = "Pass `inputs_as_nchw=['pixels']` to the converter."

    def images(self) -> np.ndarray:
        return np.transpose(reference_logits()[0][:7], (0, 3, 1, 2))


class ParityReport(FunctionProblem):
    prompt = "write parity_report(reference, candidate) -> (max_abs_diff, argmax_agreement)"
    vars = ("parity_report",)
    hints = ("Take absolute values of the differences before the maximum: a signed `max` misses differences where "
             "the candidate is *smaller*.",
             "Compare decisions row by row: the position of the largest logit in each row of both arrays, then the "
             "*fraction* of rows where they agree (the mean of a boolean array).")
    solution = """def parity_report(reference, candidate):
    max_abs_diff = float(np.abs(candidate - reference).max())
    argmax_agreement = float((candidate.argmax(axis=1) == reference.argmax(axis=1)).mean())
    return max_abs_diff, argmax_agreement"""

    def cases(self):
        agree = (np.array([[1.0, 2.0, 3.0], [3.0, 2.0, 1.0]], np.float32),
                 np.array([[1.0, 2.0, 3.5], [3.0, 2.2, 1.0]], np.float32))
        smaller = (np.array([[0.0, 5.0], [1.0, 0.0]], np.float32),
                   np.array([[0.0, 4.0], [1.0, 0.25]], np.float32))
        disagree = (np.array([[2.0, 0.0, 1.0], [0.0, 1.0, 0.5], [1.0, 0.0, 0.0], [0.0, 3.0, 1.0]], np.float32),
                    np.array([[0.0, 2.0, 1.0], [0.0, 1.0, 0.5], [1.0, 0.0, 0.0], [0.0, 3.0, 1.0]], np.float32))
        return [(agree, (0.5, 1.0)), (smaller, (1.0, 1.0)), (disagree, (2.0, 0.75))]

    def describe_call(self, args):
        return f"`{self.vars[0]}` on logits of shape {args[0].shape}"

    def check(self, fn):
        self.require_function(fn)
        for (reference, candidate), (want_diff, want_agreement) in self.cases():
            call = self.describe_call((reference, candidate))
            result = self.call_answer(fn, (reference, candidate))
            if not isinstance(result, (tuple, list)) or len(result) != 2:
                raise Incorrect(f"{call} should return two numbers, (max_abs_diff, argmax_agreement).")
            max_abs_diff, argmax_agreement = result
            for label, value in (("max_abs_diff", max_abs_diff), ("argmax_agreement", argmax_agreement)):
                if isinstance(value, (bool, np.bool_)) or not isinstance(value, (numbers.Number, np.generic)):
                    raise Incorrect(f"{call}: {label} should be a number, but it is a {type(value).__name__}.")
            if float(argmax_agreement) > 1.0:
                raise Incorrect(f"{call}: argmax_agreement is {float(argmax_agreement):g}, more than 1. "
                                "Report the fraction of rows that agree, not their count.")
            assert_equal(f"{call}: `max_abs_diff`", float(max_abs_diff), want_diff, rtol=1e-6)
            assert_equal(f"{call}: `argmax_agreement`", float(argmax_agreement), want_agreement, rtol=1e-6)


class WhySequentialFails(ThoughtExperiment):
    prompt = "why does from_keras fail on a Keras 3 Sequential model but work on the functional twin?"
    solution = (
        "tf2onnx traces the model into a TensorFlow graph and then looks up the model's *output names* in that graph. "
        "A functional model has `output_names` (its output layers' names, here `logits`), and the traced function "
        "returns its outputs keyed by those names, so the lookup succeeds. A Keras 3 Sequential model has no "
        "`output_names`; tf2onnx then falls back to the Keras 2 convention of taking the output tensor's name up to "
        "the first '/', which in Keras 2 was a graph tensor such as `logits/BiasAdd:0`. In Keras 3 the symbolic output "
        "is a KerasTensor called `keras_tensor_N`, a name that exists nowhere in the traced graph, hence "
        "`KeyError: 'keras_tensor_N'`. Nothing is wrong with the model: converting a `tf.function` that calls it "
        "(`from_function`), or its SavedModel (`model.export` + `python -m tf2onnx.convert --saved-model`), avoids "
        "the name lookup entirely.")


class LayoutAtTheBoundary(ThoughtExperiment):
    prompt = ("your service receives NCHW images from a PyTorch pipeline: convert with inputs_as_nchw or transpose "
              "on the client?")
    solution = (
        "Convert with `inputs_as_nchw`. The converter inserts one Transpose after the input, and its optimizer cancels "
        "it against the Transpose it had already put before the first convolution (ONNX's Conv is channels-first), so "
        "the graph costs no more than the NHWC one — here it only declares a different input shape. A client-side "
        "`np.transpose` is an extra copy of every batch outside the graph, and every client must remember it and get "
        "it right (a `reshape` to the NCHW shape instead of a transpose scrambles colour images without any error). "
        "Either way, write the expected "
        "layout into the model's input shape and documentation, and test parity with inputs laid out as the "
        "clients really send them.")


class QuietButNotBlind(ThoughtExperiment):
    prompt = "why must TF_CPP_MIN_LOG_LEVEL be set before importing TensorFlow, and why 2 rather than 3?"
    solution = (
        "TensorFlow's C++ core reads the variable once, when its shared library is loaded by `import tensorflow`; "
        "changing `os.environ` afterwards changes nothing in that process (a subprocess would read it again). "
        "Level 2 hides INFO and WARNING lines (CPU instruction-set notices, the GPU search, Grappler's "
        "'Starting new session'), which say nothing about your model, but still shows ERROR lines, the ones that "
        "explain a real failure. Level 3 hides those too, and you would debug a crash without its explanation. "
        "(In TensorFlow 2.21 one notice ignores the variable at any level: oneDNN's 'custom operations are on', "
        "printed while the libraries load. It is harmless; switching oneDNN off to hide it would change the "
        "numerics, so `keras_models` holds that line back instead.)")


PROBLEMS = {
    "q1": SequentialFromFunction,
    "q2": ChannelsFirst,
    "q3": NchwInputShape,
    "q4": NchwExport,
    "q5": ParityReport,
    "q6": WhySequentialFails,
    "q7": LayoutAtTheBoundary,
    "q8": QuietButNotBlind,
}
bind = make_binder(LAB, PROBLEMS)
