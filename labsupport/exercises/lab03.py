"""Lab 03 — opsets and validation: operator versions, version conversion, the checker,
shape inference and the reference evaluator.

The exercises resolve which definition of an operator a model uses, upgrade an opset-9
model, compute Conv output sizes and the output shapes of a ceil-mode MaxPool and of a
small graph, and repair a broken model. The reference helpers below are what the
notebook and the checks share: the ResNet-50 shipped in the onnx wheel (with seeded
weights where the file has none), the small opset-9 ``legacy`` model and the broken
``softmax`` model, each with its input and the numbers it must produce.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from labsupport.checking import (
    EqualityProblem,
    FunctionProblem,
    Incorrect,
    ThoughtExperiment,
    make_binder,
)
from labsupport.onnx_problems import OnnxModelProblem
from labsupport.onnx_tools import FLOAT, tensor_dims

LAB = "03_opsets_and_validation"



# ---------------------------------------------------------------------------
# ResNet-50 from the onnx wheel
# ---------------------------------------------------------------------------

def light_model_path(name: str = "resnet50") -> Path:
    """Path of a test model the onnx wheel ships, e.g. ``light_resnet50.onnx`` (opset 9)."""
    import onnx

    path = Path(onnx.__file__).parent / "backend" / "test" / "data" / "light" / f"light_{name}.onnx"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is not in this onnx installation; the light models ship with onnx>=1.16. "
                                "Reinstall the pinned onnx (`make lab` sets up .venv from the lock).")
    return path


RESNET_INPUT = "gpu_0/data_0"
RESNET_LOGITS = "r174"  # the Gemm output, before the final Softmax


def _random_weight(name: str, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    """Seeded values that keep activations in a sensible range, chosen by caffe2's name suffix."""
    if name.endswith("pred_w_0"):  # the classifier: small, so the softmax is not saturated
        scale = 0.01
    elif name.endswith("_w_0"):  # convolution kernels: He initialisation, std sqrt(2 / fan_in)
        scale = np.sqrt(2.0 / np.prod(shape[1:]))
    elif name.endswith("branch2c_bn_s_0"):  # last BatchNorm of a residual branch: small, so depth does not blow up
        return rng.uniform(0.1, 0.3, shape).astype(np.float32)
    elif name.endswith("_bn_s_0"):  # other BatchNorm scales
        return rng.uniform(0.5, 1.0, shape).astype(np.float32)
    elif name.endswith("_bn_riv_0"):  # BatchNorm running variances: positive
        return rng.uniform(0.5, 1.5, shape).astype(np.float32)
    else:  # biases and running means
        scale = 0.1
    return (rng.standard_normal(shape, dtype=np.float32) * np.float32(scale)).astype(np.float32)


def resnet50_with_weights(seed: int = 0):
    """ResNet-50 at opset 9 from the onnx wheel, with seeded weights where the file has none.

    The wheel's "light" models keep the real architecture but, to stay small, replace
    every large weight by a ``ConstantOfShape`` node that fills it with 0.02. This swaps
    each such node for an initializer of the same shape and name holding seeded random
    values (the few small tensors the file does store, trained values, stay as they are),
    drops the one initializer no node reads (a left-over of caffe2's data queue, which ONNX
    Runtime would warn about), and adds the logits (``r174``, the Gemm output)
    as a second graph output next to the softmax probabilities. The file is IR version 3,
    which lists every initializer among the graph inputs as well; the result does too.
    """
    import onnx
    from onnx import helper, numpy_helper

    light = onnx.load(light_model_path("resnet50"))
    rng = np.random.default_rng(seed)
    stored = {tensor.name: tensor for tensor in light.graph.initializer}
    used = {name for node in light.graph.node for name in node.input}
    shape_names, filled, nodes = set(), [], []
    for node in light.graph.node:
        if node.op_type == "ConstantOfShape":
            shape_names.add(node.input[0])
            shape = tuple(int(size) for size in numpy_helper.to_array(stored[node.input[0]]))
            filled.append(numpy_helper.from_array(_random_weight(node.output[0], shape, rng), node.output[0]))
        else:
            nodes.append(node)
    dropped = shape_names | {name for name in stored if name not in used}
    kept = [tensor for tensor in light.graph.initializer if tensor.name not in dropped]
    inputs = [value for value in light.graph.input if value.name not in dropped]
    inputs += [helper.make_tensor_value_info(tensor.name, tensor.data_type, list(tensor.dims)) for tensor in filled]
    outputs = list(light.graph.output) + [helper.make_tensor_value_info(RESNET_LOGITS, FLOAT, [1, 1000])]
    graph = helper.make_graph(nodes, light.graph.name, inputs, outputs, initializer=kept + filled)
    return helper.make_model(graph, ir_version=light.ir_version, opset_imports=list(light.opset_import),
                             producer_name=light.producer_name)


def resnet_input(seed: int = 1) -> np.ndarray:
    """A seeded float32 image batch of shape (1, 3, 224, 224), standard-normal like a normalised image."""
    return np.random.default_rng(seed).standard_normal((1, 3, 224, 224)).astype(np.float32)


# ---------------------------------------------------------------------------
# The small opset-9 model of exercise UpgradeLegacyModel
# ---------------------------------------------------------------------------

def legacy_model():
    """A small opset-9 model whose operators all changed signature later.

    Clip (min/max attributes until opset 11), Split (split attribute until 13), ReduceSum
    and Unsqueeze (axes attribute until 13), Pad (pads attribute until 11) and Upsample
    (deprecated at opset 10 in favour of Resize). Input ``x`` [1, 2, 4, 6], output ``y``
    [1, 1, 2, 8, 8].
    """
    from onnx import helper, numpy_helper

    nodes = [
        helper.make_node("Clip", ["x"], ["clipped"], min=-1.0, max=1.0),
        helper.make_node("Split", ["clipped"], ["left", "right"], axis=3, split=[2, 4]),
        helper.make_node("ReduceSum", ["right"], ["summed"], axes=[3], keepdims=1),
        helper.make_node("Pad", ["left"], ["padded"], pads=[0, 0, 0, 0, 0, 0, 0, 1], mode="constant", value=0.0),
        helper.make_node("Concat", ["padded", "summed"], ["joined"], axis=3),
        helper.make_node("Upsample", ["joined", "scales"], ["upsampled"], mode="nearest"),
        helper.make_node("Unsqueeze", ["upsampled"], ["y"], axes=[0]),
    ]
    scales = numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales")
    graph = helper.make_graph(nodes, "legacy",
                              [helper.make_tensor_value_info("x", FLOAT, [1, 2, 4, 6])],
                              [helper.make_tensor_value_info("y", FLOAT, [1, 1, 2, 8, 8])],
                              initializer=[scales])
    return helper.make_model(graph, ir_version=4, opset_imports=[helper.make_opsetid("", 9)],
                             producer_name="workbook-lab03")


def legacy_input(seed: int = 0) -> np.ndarray:
    """A seeded float32 input of shape (1, 2, 4, 6) for the legacy model (values beyond ±1, so Clip acts)."""
    return (np.random.default_rng(seed).standard_normal((1, 2, 4, 6)) * 1.5).astype(np.float32)


def legacy_reference(x: np.ndarray) -> np.ndarray:
    """What the legacy model computes, in NumPy."""
    clipped = np.clip(x, -1.0, 1.0)
    left, right = clipped[..., :2], clipped[..., 2:]
    summed = right.sum(axis=3, keepdims=True)
    padded = np.pad(left, [(0, 0), (0, 0), (0, 0), (0, 1)])
    joined = np.concatenate([padded, summed], axis=3)
    upsampled = joined.repeat(2, axis=2).repeat(2, axis=3)
    return upsampled[None].astype(np.float32)


def upgraded_legacy_model():
    """The legacy model converted to opset 18, so later cells never depend on an answer."""
    from onnx import version_converter

    return version_converter.convert_version(legacy_model(), 18)


# ---------------------------------------------------------------------------
# The broken model of exercise FixBrokenModel
# ---------------------------------------------------------------------------

SOFTMAX_SCALE = np.array([0.5, 2.0, -1.0], np.float32)
SOFTMAX_OFFSET = np.array([1, -2, 0], np.int64)


def broken_softmax_model():
    """``y = Softmax(x * scale + offset, axis=1)`` on x [batch, 4, 3], with two faults.

    The offset was stored as int64, and the Softmax node spells its attribute ``axes``.
    Each call returns a fresh copy.
    """
    from onnx import helper, numpy_helper

    nodes = [helper.make_node("Mul", ["x", "scale"], ["scaled"]),
             helper.make_node("Add", ["scaled", "offset"], ["shifted"]),
             helper.make_node("Softmax", ["shifted"], ["y"], axes=1)]
    graph = helper.make_graph(nodes, "scaled_softmax",
                              [helper.make_tensor_value_info("x", FLOAT, ["batch", 4, 3])],
                              [helper.make_tensor_value_info("y", FLOAT, ["batch", 4, 3])],
                              initializer=[numpy_helper.from_array(SOFTMAX_SCALE, "scale"),
                                           numpy_helper.from_array(SOFTMAX_OFFSET, "offset")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)], producer_name="workbook-lab03")


def softmax_input(batch: int = 5, seed: int = 3) -> np.ndarray:
    """A seeded float32 input of shape (batch, 4, 3) for the softmax model."""
    return np.random.default_rng(seed).standard_normal((batch, 4, 3)).astype(np.float32)


def softmax_reference(x: np.ndarray) -> np.ndarray:
    """What the repaired model must compute: softmax over axis 1 of ``x * scale + offset``."""
    shifted = x * SOFTMAX_SCALE + SOFTMAX_OFFSET.astype(np.float32)
    exponentials = np.exp(shifted - shifted.max(axis=1, keepdims=True))
    return (exponentials / exponentials.sum(axis=1, keepdims=True)).astype(np.float32)


# ---------------------------------------------------------------------------
# Shapes
# ---------------------------------------------------------------------------

def conv_model(size: int, kernel: int, stride: int = 1, pad_begin: int = 0, pad_end: int = 0,
               dilation: int = 1, channels: int = 3, filters: int = 8):
    """A single square Conv node on input [1, channels, size, size]; the output shape is left to inference."""
    from onnx import helper, numpy_helper

    weight = np.zeros((filters, channels, kernel, kernel), np.float32)
    node = helper.make_node("Conv", ["x", "w"], ["y"], kernel_shape=[kernel, kernel], strides=[stride, stride],
                            pads=[pad_begin, pad_begin, pad_end, pad_end], dilations=[dilation, dilation])
    graph = helper.make_graph([node], "conv", [helper.make_tensor_value_info("x", FLOAT, [1, channels, size, size])],
                              [helper.make_tensor_value_info("y", FLOAT, None)],
                              initializer=[numpy_helper.from_array(weight, "w")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])


def inferred_output_shape(model) -> tuple:
    """The first graph output's shape after strict shape inference: ints, and names for symbolic dims."""
    from onnx import shape_inference

    inferred = shape_inference.infer_shapes(model, strict_mode=True)
    return tensor_dims(inferred.graph.output[0])


def puzzle_model():
    """Conv (8 filters, 5×5, stride 2, pads 2) → Relu → MaxPool (3×3, stride 2) → Flatten on x ['N', 3, 32, 32]."""
    from onnx import helper, numpy_helper

    weight = np.zeros((8, 3, 5, 5), np.float32)
    nodes = [helper.make_node("Conv", ["x", "w"], ["features"], kernel_shape=[5, 5], strides=[2, 2], pads=[2, 2, 2, 2]),
             helper.make_node("Relu", ["features"], ["activated"]),
             helper.make_node("MaxPool", ["activated"], ["pooled"], kernel_shape=[3, 3], strides=[2, 2]),
             helper.make_node("Flatten", ["pooled"], ["y"], axis=1)]
    graph = helper.make_graph(nodes, "puzzle", [helper.make_tensor_value_info("x", FLOAT, ["N", 3, 32, 32])],
                              [helper.make_tensor_value_info("y", FLOAT, None)],
                              initializer=[numpy_helper.from_array(weight, "w")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])


POOL_INPUT_SHAPE = (1, 192, 56, 42)  # GoogLeNet's second max-pool, on a 4:3 image (224 × 168)
POOL_KERNEL = 3
POOL_STRIDE = 2


def ceil_pool_model():
    """One MaxPool (3×3, stride 2, no pads, ``ceil_mode=1``) on x [1, 192, 56, 42], at opset 21.

    The output shape is left to inference, as in :func:`conv_model`.
    """
    from onnx import helper

    node = helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=[POOL_KERNEL, POOL_KERNEL],
                            strides=[POOL_STRIDE, POOL_STRIDE], ceil_mode=1)
    graph = helper.make_graph([node], "ceil_pool", [helper.make_tensor_value_info("x", FLOAT, list(POOL_INPUT_SHAPE))],
                              [helper.make_tensor_value_info("y", FLOAT, None)])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])


# ---------------------------------------------------------------------------
# Exercises
# ---------------------------------------------------------------------------

class DefinitionInForce(FunctionProblem):
    prompt = ("write definition_in_force(op_type, opset): the since_version of the definition a model importing "
              "`opset` uses")
    vars = ("definition_in_force",)
    hints = ("A model that imports opset N uses, for each operator, the newest definition whose since_version is "
             "at most N — not necessarily one introduced at N.",
             "`onnx.defs.get_schema` takes an operator name and a *maximum* version (its parameter is called "
             "`max_inclusive_version`) and returns the newest definition at or below it; a schema knows the "
             "version it was introduced in.")
    solution = """def definition_in_force(op_type, opset):
    return onnx.defs.get_schema(op_type, opset).since_version"""
    arguments = [("Clip", 9), ("Clip", 18), ("ReduceSum", 17), ("Softmax", 12), ("Relu", 21),
                 ("Conv", 9), ("BatchNormalization", 9), ("Reshape", 18), ("Split", 13)]

    def cases(self):
        from onnx import defs

        return [((op_type, opset), defs.get_schema(op_type, opset).since_version) for op_type, opset in self.arguments]


class UpgradeLegacyModel(OnnxModelProblem):
    prompt = "upgrade legacy_model (opset 9) to opset 18 with the version converter; store it in upgraded_model"
    vars = ("upgraded_model",)
    hints = ("Editing `opset_import[0].version` only changes the label: Clip would still carry `min`/`max` "
             "attributes that opset 18 no longer has. The version converter rewrites the nodes.",
             "`onnx.version_converter` has one function for this: it takes the model and the target opset "
             "number, and returns a new model (the original is left as it was).")
    solution = "upgraded_model = version_converter.convert_version(legacy_model, 18)"
    opset = 18
    input_names = ("x",)
    output_names = ("y",)
    input_types = {"x": FLOAT}
    output_types = {"y": FLOAT}
    required_ops = ("Resize",)
    forbidden_ops = ("Upsample",)

    def feeds(self):
        return {"x": legacy_input(seed=5)}

    def expected_outputs(self, feeds):
        return [legacy_reference(feeds["x"])]


class ConvOutputSize(FunctionProblem):
    prompt = ("write conv_output_size(size, kernel, stride, pad_begin, pad_end, dilation): "
              "one spatial size of a Conv output")
    vars = ("conv_output_size",)
    hints = ("A dilated kernel spans d·(k − 1) + 1 input positions; count how many times a window of that span "
             "fits in the padded input when it moves `stride` positions at a time.",
             "Subtract the span from the padded size: that is how far the window can still move. Count the "
             "moves of `stride` that fit, rounding down as ONNX does (Conv has no ceil mode), and add one for the "
             "window's first position.")
    solution = """def conv_output_size(size, kernel, stride=1, pad_begin=0, pad_end=0, dilation=1):
    return (size + pad_begin + pad_end - dilation * (kernel - 1) - 1) // stride + 1"""
    arguments = [(32, 3, 1, 1, 1, 1), (224, 7, 2, 3, 3, 1), (56, 3, 2, 1, 1, 1), (10, 3, 1, 0, 0, 2),
                 (11, 3, 2, 0, 1, 1), (8, 5, 3, 2, 1, 1), (28, 3, 1, 2, 2, 2), (7, 7, 1, 0, 0, 1)]

    def cases(self):
        """Each expected size is what ONNX shape inference gives for a real Conv node."""
        return [(arguments, inferred_output_shape(conv_model(*arguments))[2]) for arguments in self.arguments]


class PuzzleShape(EqualityProblem):
    prompt = "give the output shape of puzzle_model as a tuple, symbolic batch included, without running inference"
    vars = ("puzzle_output_shape",)
    hints = ("Go node by node with the Conv formula: the Conv and the MaxPool both shrink 32 × 32; MaxPool "
             "without pads follows the same formula (with ceil_mode=0, the default, it floors).",
             "Conv: (32 + 2 + 2 − 5) // 2 + 1 = 16; MaxPool: (16 − 3) // 2 + 1. Flatten(axis=1) keeps axis 0 and "
             "multiplies the rest; the batch stays the name 'N'.")
    solution = """puzzle_output_shape = ("N", 8 * 7 * 7)"""

    def expected_value(self):
        return inferred_output_shape(puzzle_model())

    def check(self, puzzle_output_shape):
        if isinstance(puzzle_output_shape, (tuple, list)) and len(puzzle_output_shape) == 2:
            batch = puzzle_output_shape[0]
            if isinstance(batch, (int, np.integer)) and not isinstance(batch, bool):
                raise Incorrect("`puzzle_output_shape[0]` is a number, but the input's batch is the symbolic "
                                "dimension 'N': shape inference carries the name through.")
        super().check(puzzle_output_shape)


class CeilModePoolShape(EqualityProblem):
    prompt = "give the output shape of ceil_pool_model's MaxPool (3×3, stride 2, ceil_mode=1) on x [1, 192, 56, 42]"
    vars = ("pooled_shape",)
    hints = ("Pooling uses the Conv output-size formula; `ceil_mode=1` changes only its rounding. Apply it to "
             "each spatial axis on its own: the height and the width differ.",
             "No pads and no dilation here: the window can move (size − kernel) positions. Count the moves of the "
             "stride rounding *up*, then add one for the window's first position. Batch and channels pass "
             "through; the answer is a 4-tuple of ints.")
    solution = "pooled_shape = (1, 192, int(np.ceil((56 - 3) / 2)) + 1, int(np.ceil((42 - 3) / 2)) + 1)"

    def expected_value(self):
        return inferred_output_shape(ceil_pool_model())

    def check(self, pooled_shape):
        batch, channels, *spatial = POOL_INPUT_SHAPE
        floored = (batch, channels, *((size - POOL_KERNEL) // POOL_STRIDE + 1 for size in spatial))
        if isinstance(pooled_shape, (tuple, list)) and tuple(pooled_shape) == floored:
            raise Incorrect("`pooled_shape` is the shape MaxPool gives with ceil_mode=0, rounding down; this node "
                            "sets ceil_mode=1. Round the number of stride steps up on each spatial axis.")
        super().check(pooled_shape)


class FixBrokenModel(OnnxModelProblem):
    prompt = ("repair broken_model so that the full checker accepts it and it computes softmax(x*scale + offset) "
              "over axis 1")
    vars = ("fixed_model",)
    hints = ("Run `onnx.checker.check_model(model, full_check=True)` after each change and read the message: "
             "there are two faults, and the plain check only finds the first.",
             "The Softmax node must carry `axis` instead of `axes`: a node's attributes are a repeated field you "
             "can empty and refill (`helper.make_attribute` builds one). The initializer 'offset' must hold the "
             "same values as float32: convert it to NumPy, cast, and copy a new tensor of the same name over it "
             "(`numpy_helper` converts both ways, `CopyFrom` overwrites a message).")
    solution = """fixed_model = lab03.broken_softmax_model()
softmax_node = fixed_model.graph.node[2]
del softmax_node.attribute[:]
softmax_node.attribute.append(helper.make_attribute("axis", 1))
offset = next(tensor for tensor in fixed_model.graph.initializer if tensor.name == "offset")
offset.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(offset).astype(np.float32), "offset"))"""
    opset = 21
    input_names = ("x",)
    output_names = ("y",)
    input_types = {"x": FLOAT}
    output_types = {"y": FLOAT}
    required_ops = ("Softmax",)

    def feeds(self):
        return {"x": softmax_input(batch=6, seed=11)}

    def expected_outputs(self, feeds):
        return [softmax_reference(feeds["x"])]


# ---------------------------------------------------------------------------
# Check yourself
# ---------------------------------------------------------------------------

class AxesAttributeAtOpset17(ThoughtExperiment):
    prompt = ("a hand-edited model imports opset 17 and has a ReduceSum node with an `axes` attribute; the checker "
              "rejects it. Why, and name two fixes.")
    hints = ("Which definition of ReduceSum does a model importing opset 17 use, "
             "and where does that one take its axes?",
             "One fix changes the node, the other changes the opset the node claims to be written for.")
    solution = (
        "A model that imports opset 17 uses the newest ReduceSum definition with since_version ≤ 17, which is "
        "ReduceSum-13. Since opset 13 the axes are an optional int64 *input*, not an attribute, so the checker "
        "reports an unrecognized attribute `axes`. The node was written for ReduceSum-1/11 (opset ≤ 12). Fix 1: "
        "rewrite the node for opset 17 — remove the attribute and feed the axes as a second input (an int64 "
        "initializer or Constant). Fix 2: declare the opset the node was really written for (e.g. 12) and let "
        "`onnx.version_converter.convert_version(model, 17)` rewrite it, which is what the converter's ReduceSum "
        "adapter does. Bumping the opset number alone never upgrades a model; it relabels it.")


class CheckerPassesRuntimeFails(ThoughtExperiment):
    prompt = ("`onnx.checker.check_model(model, full_check=True)` passes, yet ONNX Runtime refuses to load the model. "
              "Give three different reasons this can happen.")
    hints = ("What can the checker not know about, because it only has the ONNX specification?",
             "Think of custom domains, of versions (of the opset and of the file format), "
             "and of files beside the model.")
    solution = (
        "The checker validates against the ONNX specification; a runtime needs an implementation. (1) A node in a "
        "custom domain (`com.example.Swish`) has no schema the checker could verify, so it is accepted, but the "
        "runtime has no kernel and no model-local function for it (`is not a registered function/op`). (2) The "
        "model imports an opset, IR version or data type newer than, or absent from, the runtime build (an old "
        "ONNX Runtime, a reduced or mobile build with only some operators, an execution provider without a "
        "float16/bfloat16 kernel). (3) External data: the checker was given the graph but the `.data` file is "
        "missing or moved, so loading the weights fails. The converse also happens: ONNX Runtime leniently merges "
        "a declared output shape that contradicts inference (it warns), while the full checker rejects it. "
        "Validate with both, and run the model on real inputs.")


class ReferenceVersusRuntime(ThoughtExperiment):
    prompt = ("why keep a slow Python reference evaluator when ONNX Runtime exists, and what do you do when the two "
              "disagree, as they did on the opset-9 ResNet block?")
    hints = ("One of them is written to be read, the other to be fast: which one would you trust to define the "
             "semantics of an operator version?",
             "Disagreement is a bug somewhere: how do you find the first node where the outputs part, and what do "
             "you read then?")
    solution = (
        "The reference evaluator implements each operator version in a few lines of NumPy, next to the spec text: "
        "it is an executable specification for small inputs, useful to test converters, new runtimes and "
        "hand-built graphs, and to settle what an operator is meant to compute. ONNX Runtime is optimised (fused "
        "kernels, different summation orders, threads), so tiny float differences (~1e-6 relative) are normal "
        "and judged with a tolerance. A large disagreement means one of them implements the operator version "
        "differently: expose intermediate tensors, compare node by node to find the first one that parts, then "
        "read that operator's definition *for the version the model imports*. On the ResNet block the culprit was "
        "BatchNormalization-9, whose test/training mode depends on the number of outputs; onnx 1.23's reference "
        "code decides it from the momentum attribute, whose schema default (0.9) is always filled in, so a "
        "one-output node normalises with neither the stored statistics (inference) nor the batch's (training) but "
        "with a blend, 0.9·stored + 0.1·batch, the running statistics a training step would write back (a known "
        "bug, onnx/onnx PR #8442). Upgrading the block to BatchNormalization-15, "
        "whose training_mode attribute defaults to 0 (inference), made both agree: knowing the operator versions is "
        "how you fix it.")


PROBLEMS = {
    "q1": DefinitionInForce,
    "q2": UpgradeLegacyModel,
    "q3": ConvOutputSize,
    "q4": PuzzleShape,
    "q5": FixBrokenModel,
    "q6": AxesAttributeAtOpset17,
    "q7": CheckerPassesRuntimeFails,
    "q8": ReferenceVersusRuntime,
    "q9": CeilModePoolShape,  # placed after q3, in section 4
}
bind = make_binder(LAB, PROBLEMS)
