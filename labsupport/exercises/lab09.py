"""Lab 09 — graph optimization: ONNX Runtime's levels, Conv+BatchNorm fusion, constant folding,
redundancy elimination, the optimizers on PyPI and the transformer optimizer.

The exercises save the graph ONNX Runtime optimizes at a level and count its operators, fold
a BatchNormalization into a convolution by hand (checked against the runtime's own fusion),
predict what the basic level leaves of a redundant graph, take an old model's initializers out
of its graph inputs so an optimizer may fold them, and make the transformer optimizer fuse a
correct ``Attention`` on both exports of an encoder layer. The small models below are what the
notebook and the checks share.
"""

from __future__ import annotations

import functools
import hashlib
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from labsupport.checking import FunctionProblem, Incorrect, Problem, ThoughtExperiment, make_binder
from labsupport.onnx_problems import ModelFileProblem, OnnxModelProblem
from labsupport.onnx_tools import FLOAT, first_line

LAB = "09_graph_optimization"


@functools.lru_cache(maxsize=1)
def _scratch() -> Path:
    """A private folder for the files the checks write (never the learner's artifacts)."""
    return Path(tempfile.mkdtemp(prefix="lab09-"))


# ---------------------------------------------------------------------------
# Small models shared by the notebook and the checks
# ---------------------------------------------------------------------------

def batchnorm_parameters(out_channels: int = 4, in_channels: int = 3, kernel: int = 3, epsilon: float = 1e-5,
                         seed: int = 0) -> dict[str, Any]:
    """Seeded parameters of a Conv followed by a BatchNormalization, as a trained layer might hold them."""
    rng = np.random.default_rng(seed)
    shape = (out_channels, in_channels, kernel, kernel)
    return {"weight": (rng.standard_normal(shape) * 0.3).astype(np.float32),
            "bias": (rng.standard_normal(out_channels) * 0.1).astype(np.float32),
            "gamma": rng.uniform(0.5, 1.5, out_channels).astype(np.float32),
            "beta": (rng.standard_normal(out_channels) * 0.2).astype(np.float32),
            "mean": (rng.standard_normal(out_channels) * 0.5).astype(np.float32),
            "var": rng.uniform(0.01, 2.0, out_channels).astype(np.float32),
            "epsilon": epsilon}


def conv_batchnorm_model(parameters: Mapping[str, Any] | None = None, *, relu: bool = True):
    """``y = [Relu](BatchNormalization(Conv(x, weight, bias)))`` on x [batch, in_channels, 8, 8], opset 21."""
    from onnx import helper, numpy_helper

    parameters = dict(parameters or batchnorm_parameters())
    out_channels, in_channels, kernel, _ = parameters["weight"].shape
    nodes = [helper.make_node("Conv", ["x", "weight", "bias"], ["features"], pads=[kernel // 2] * 4),
             helper.make_node("BatchNormalization", ["features", "gamma", "beta", "mean", "var"],
                              ["normalized" if relu else "y"], epsilon=float(parameters["epsilon"]))]
    if relu:
        nodes.append(helper.make_node("Relu", ["normalized"], ["y"]))
    initializers = [numpy_helper.from_array(np.asarray(parameters[name], np.float32), name)
                    for name in ("weight", "bias", "gamma", "beta", "mean", "var")]
    graph = helper.make_graph(nodes, "conv_batchnorm",
                              [helper.make_tensor_value_info("x", FLOAT, ["batch", in_channels, 8, 8])],
                              [helper.make_tensor_value_info("y", FLOAT, ["batch", out_channels, 8, 8])],
                              initializer=initializers)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)], producer_name="workbook-lab09")


def runtime_folded_parameters(parameters: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """The Conv weight and bias ONNX Runtime writes when it fuses :func:`conv_batchnorm_model` at the basic level."""
    from onnx import numpy_helper

    from labsupport.optimize import optimize_at_level

    saved = _scratch() / f"fold_{hashlib.sha1(parameters['weight'].tobytes()).hexdigest()[:12]}.onnx"
    optimized = optimize_at_level(conv_batchnorm_model(parameters, relu=False), "ORT_ENABLE_BASIC", saved)
    initializers = {tensor.name: numpy_helper.to_array(tensor) for tensor in optimized.graph.initializer}
    (conv,) = [node for node in optimized.graph.node if node.op_type == "Conv"]
    return initializers[conv.input[1]], initializers[conv.input[2]]


def prediction_model():
    """The graph of exercise 3: redundant nodes, a constant subexpression and one pair no basic rule removes."""
    from onnx import helper, numpy_helper

    nodes = [
        helper.make_node("Identity", ["x"], ["x_copy"]),
        helper.make_node("Transpose", ["x_copy"], ["swapped"], perm=[1, 0]),
        helper.make_node("Transpose", ["swapped"], ["restored"], perm=[1, 0]),
        helper.make_node("Cast", ["restored"], ["as_float"], to=FLOAT),
        helper.make_node("Sigmoid", ["as_float"], ["gate_a"]),
        helper.make_node("Sigmoid", ["as_float"], ["gate_b"]),
        helper.make_node("Mul", ["gate_a", "gate_b"], ["squared"]),
        helper.make_node("Dropout", ["squared"], ["kept"]),
        helper.make_node("Sqrt", ["variance"], ["deviation"]),
        helper.make_node("Div", ["kept", "deviation"], ["scaled"]),
        helper.make_node("Unsqueeze", ["scaled", "axes"], ["lifted"]),
        helper.make_node("Squeeze", ["lifted", "axes"], ["y"]),
    ]
    initializers = [numpy_helper.from_array(np.array([1.0, 4.0, 9.0, 16.0], np.float32), "variance"),
                    numpy_helper.from_array(np.array([0], np.int64), "axes")]
    graph = helper.make_graph(nodes, "prediction", [helper.make_tensor_value_info("x", FLOAT, ["batch", 4])],
                              [helper.make_tensor_value_info("y", FLOAT, ["batch", 4])], initializer=initializers)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)], producer_name="workbook-lab09")


def ir3_model(variant: int = 0):
    """A small IR-version-3 model that lists its initializers among its graph inputs, as every IR-3 file must.

    Variant 0: ``y = Relu(x · w + b)``; variant 1: ``y = (a + b) · scale`` with two real inputs
    ``a`` and ``b`` around one initializer; variant 2: variant 0 whose graph input for ``w`` is
    listed first.
    """
    from onnx import helper, numpy_helper

    rng = np.random.default_rng(variant)
    if variant == 1:
        nodes = [helper.make_node("Add", ["a", "b"], ["total"]), helper.make_node("Mul", ["total", "scale"], ["y"])]
        initializers = [numpy_helper.from_array(rng.uniform(0.5, 2, 3).astype(np.float32), "scale")]
        real_inputs = [helper.make_tensor_value_info(name, FLOAT, [2, 3]) for name in ("a", "b")]
        output = helper.make_tensor_value_info("y", FLOAT, [2, 3])
    else:
        nodes = [helper.make_node("MatMul", ["x", "w"], ["projected"]),
                 helper.make_node("Add", ["projected", "b"], ["shifted"]),
                 helper.make_node("Relu", ["shifted"], ["y"])]
        initializers = [numpy_helper.from_array(rng.standard_normal((4, 3)).astype(np.float32), "w"),
                        numpy_helper.from_array(rng.standard_normal(3).astype(np.float32), "b")]
        real_inputs = [helper.make_tensor_value_info("x", FLOAT, [2, 4])]
        output = helper.make_tensor_value_info("y", FLOAT, [2, 3])
    listed = [helper.make_tensor_value_info(tensor.name, tensor.data_type, list(tensor.dims))
              for tensor in initializers]
    inputs = listed + real_inputs if variant == 2 else real_inputs + listed
    graph = helper.make_graph(nodes, f"ir3_{variant}", inputs, [output], initializer=initializers)
    return helper.make_model(graph, ir_version=3, opset_imports=[helper.make_opsetid("", 9)])


def split_mask_unsqueeze(model):
    """A copy of the torch.export-based encoder export whose one two-axis mask Unsqueeze is two one-axis ones.

    The reference answer of exercise 6, so later cells never depend on a learner's graph surgery.
    """
    import onnx
    from onnx import helper, numpy_helper

    split = onnx.ModelProto()
    split.CopyFrom(model)
    graph = split.graph
    index, node = next((index, node) for index, node in enumerate(graph.node)
                       if node.op_type == "Unsqueeze" and node.input[0] == "mask")
    axis = numpy_helper.from_array(np.array([1], np.int64), "mask_axis_1")
    graph.initializer.append(axis)
    first = helper.make_node("Unsqueeze", ["mask", axis.name], ["mask_unsqueezed_once"])
    second = helper.make_node("Unsqueeze", ["mask_unsqueezed_once", axis.name], list(node.output))
    graph.node.remove(node)
    graph.node.insert(index, second)
    graph.node.insert(index, first)
    return split


def fuse_encoder(model_or_path: Any):
    """The transformer optimizer on an encoder export: BERT fusions, Python only, raw 2-D attention mask kept.

    Returns the optimizer's ``OnnxModel``. A ModelProto is copied first (the optimizer edits
    the one it is given). ``num_heads`` and ``hidden_size`` are passed for the record; the
    optimizer reads them from the graph's reshape shapes when it can.
    """
    import onnx
    from onnxruntime.transformers.fusion_options import FusionOptions
    from onnxruntime.transformers.optimizer import optimize_model

    from labsupport.models.bn_cnn import ENCODER_HEADS, ENCODER_HIDDEN

    if isinstance(model_or_path, onnx.ModelProto):
        copied = onnx.ModelProto()
        copied.CopyFrom(model_or_path)
        model_or_path = copied
    else:
        model_or_path = str(model_or_path)
    options = FusionOptions("bert")
    options.use_raw_attention_mask(True)
    return optimize_model(model_or_path, model_type="bert", num_heads=ENCODER_HEADS, hidden_size=ENCODER_HIDDEN,
                          opt_level=0, optimization_options=options)


def _encoder_expectations(side: str = "left") -> tuple[dict[str, np.ndarray], np.ndarray]:
    from labsupport.models import bn_cnn

    feeds = bn_cnn.encoder_feeds(side=side, seed=5)
    return feeds, bn_cnn.encoder_outputs(bn_cnn.build_encoder_layer(), feeds)


# ---------------------------------------------------------------------------
# Exercises
# ---------------------------------------------------------------------------

def _histogram_of(value: Any) -> dict[str, int] | None:
    """A learner's op counts as a plain dict without zero entries, or None when it is not a mapping of counts."""
    if not isinstance(value, Mapping):
        return None
    if not all(isinstance(key, str) and isinstance(count, (int, np.integer)) and not isinstance(count, bool)
               for key, count in value.items()):
        return None
    return {key: int(count) for key, count in value.items() if count}


class OptimizedOpCounts(FunctionProblem):
    prompt = ("write optimized_op_counts(model_path, level): the Counter of op types in the graph ONNX Runtime "
              "saves when it optimizes the model at `level`")
    vars = ("optimized_op_counts",)
    hints = ("Two settings of `onnxruntime.SessionOptions` do it: the optimization level, and the file path the "
             "runtime should write the optimized graph to. Creating the session is what writes it.",
             "Pick a path of your own for the saved graph (beside the model is fine), create an `InferenceSession` "
             "with those options and `providers=['CPUExecutionProvider']`, then `onnx.load` the saved file and "
             "count `node.op_type` over its `graph.node` with a `Counter`.")
    solution = """def optimized_op_counts(model_path, level):
    options = ort.SessionOptions()
    options.graph_optimization_level = level
    saved_path = Path(model_path).with_suffix(f".{level.name}.onnx")
    options.optimized_model_filepath = str(saved_path)
    ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])
    return Counter(node.op_type for node in onnx.load(saved_path).graph.node)"""
    level_names = ("ORT_DISABLE_ALL", "ORT_ENABLE_BASIC", "ORT_ENABLE_EXTENDED")

    def describe_call(self, args):
        path, level = args
        return f"`{self.vars[0]}({Path(path).name!r}, {level.name})`"

    def case_models(self) -> dict[str, Any]:
        return {"conv_batchnorm_relu.onnx": conv_batchnorm_model(), "prediction.onnx": prediction_model()}

    def check(self, fn):
        import onnx

        from labsupport.optimize import level_value, op_histogram, optimize_at_level

        self.require_function(fn)
        folder = Path(tempfile.mkdtemp(dir=_scratch()))
        for file_name, model in self.case_models().items():
            path = folder / file_name
            onnx.save_model(model, str(path))
            original = dict(op_histogram(model))
            for level_name in self.level_names:
                level = level_value(level_name)
                expected = dict(op_histogram(optimize_at_level(path, level, folder / f"reference_{level_name}.onnx")))
                call = self.describe_call((path, level))
                actual = self.call_answer(fn, (path, level))
                counts = _histogram_of(actual)
                if counts is None:
                    raise Incorrect(f"{call} returned a {type(actual).__name__}; it should return a Counter (or dict) "
                                    "from op type (a str) to a number of nodes.")
                if counts == expected:
                    continue
                if counts == original:
                    raise Incorrect(f"{call} counts the nodes of the original file. Count the graph ONNX Runtime "
                                    "saves after it optimized the model at that level.")
                wrong = sorted(op for op in set(counts) | set(expected) if counts.get(op, 0) != expected.get(op, 0))
                raise Incorrect(f"{call} gives {sum(counts.values())} nodes; the graph the runtime saves at that level "
                                f"differs from it in the count of {', '.join(wrong)}.")


class FoldBatchNorm(FunctionProblem):
    prompt = ("write fold_batchnorm(weight, bias, gamma, beta, mean, var, epsilon): the (weight, bias) of the one "
              "Conv that computes BatchNormalization(Conv(x, weight, bias))")
    vars = ("fold_batchnorm",)
    hints = ("Write BatchNormalization of y = W∗x + b per output channel c as s·y + t, with s = γ/√(σ²+ε): the "
             "scale s multiplies every weight of filter c, and what is left over is a new bias.",
             "The weight is [out_channels, in_channels, kH, kW] and s has one value per *output* channel: reshape s "
             "to [out_channels, 1, 1, 1] before multiplying. The new bias is (b − μ)·s + β.")
    solution = """def fold_batchnorm(weight, bias, gamma, beta, mean, var, epsilon):
    scale = gamma / np.sqrt(var + epsilon)
    fused_weight = weight * scale.reshape(-1, 1, 1, 1)
    fused_bias = (bias - mean) * scale + beta
    return fused_weight, fused_bias"""
    rtol = 1e-5
    atol = 1e-6
    shapes = ((4, 3, 3, 1e-5), (6, 6, 3, 1e-3), (8, 1, 1, 0.5))  # out channels, in channels, kernel, epsilon

    def describe_call(self, args):
        weight, *_, epsilon = args
        return f"`{self.vars[0]}(…)` on a weight of shape {list(weight.shape)} with epsilon {epsilon:g}"

    def cases(self):
        cases = []
        names = ("weight", "bias", "gamma", "beta", "mean", "var", "epsilon")
        for seed, (out_channels, in_channels, kernel, epsilon) in enumerate(self.shapes):
            parameters = batchnorm_parameters(out_channels, in_channels, kernel, epsilon, seed=seed + 10)
            arguments = tuple(parameters[name] for name in names)
            cases.append((arguments, runtime_folded_parameters(parameters)))
        return cases

    def check(self, fn):
        self.require_function(fn)
        for args, (want_weight, want_bias) in self.cases():
            call = self.describe_call(args)
            actual = self.call_answer(fn, args)
            if not isinstance(actual, (tuple, list)) or len(actual) != 2:
                raise Incorrect(f"{call} should return two arrays, (fused_weight, fused_bias); it returned a "
                                f"{type(actual).__name__}.")
            for label, got, want in (("fused weight", actual[0], want_weight), ("fused bias", actual[1], want_bias)):
                got = np.asarray(got)
                if got.shape != want.shape:
                    raise Incorrect(f"{call} gives a {label} of shape {list(got.shape)}; expected {list(want.shape)}.")
                if not np.allclose(got, want, rtol=self.rtol, atol=self.atol):
                    worst = float(np.max(np.abs(got.astype(np.float64) - want)))
                    raise Incorrect(f"{call} gives a {label} that differs from ONNX Runtime's fusion by up to "
                                    f"{worst:.3g}.")


class PredictBasicSurvivors(Problem):
    prompt = "predict which nodes of prediction_model survive ORT_ENABLE_BASIC: a dict from op type to count"
    vars = ("surviving_ops",)
    hints = ("Go node by node with the rules of section 4: which nodes do nothing at inference, which pairs undo "
             "each other, which two nodes compute the same thing from the same input, and which subexpression "
             "reads only initializers?",
             "Identity, Dropout at inference, a Cast to the type the tensor already has and two Transposes that "
             "undo each other all go; the two Sigmoids become one; Sqrt of an initializer becomes an initializer. "
             "Remember which pair of section 4 no basic rule removed.")
    solution = """surviving_ops = {"Sigmoid": 1, "Mul": 1, "Div": 1, "Unsqueeze": 1, "Squeeze": 1}"""

    def expected_value(self) -> dict[str, int]:
        from labsupport.optimize import op_histogram, optimize_at_level

        saved = _scratch() / "prediction_basic.onnx"
        return dict(op_histogram(optimize_at_level(prediction_model(), "ORT_ENABLE_BASIC", saved)))

    def check(self, surviving_ops):
        counts = _histogram_of(surviving_ops)
        if counts is None:
            raise Incorrect(f"`surviving_ops` should be a dict from op type (a str such as 'Relu') to a number of "
                            f"nodes, but it is a {type(surviving_ops).__name__} or holds other values.")
        expected = self.expected_value()
        if sum(counts.values()) != sum(expected.values()):
            raise Incorrect(f"`surviving_ops` predicts {sum(counts.values())} nodes in all, which is not how many "
                            "survive: go through the rules once more.")
        if counts != expected:
            wrong = sorted(op for op in set(counts) | set(expected) if counts.get(op, 0) != expected.get(op, 0))
            raise Incorrect(f"`surviving_ops` has the right number of nodes, but its count of {', '.join(wrong)} is "
                            "not right.")


class DropInitializerInputs(FunctionProblem):
    prompt = ("write drop_initializer_inputs(model): a copy of an IR-3 model whose graph inputs no longer list its "
              "initializers, still valid for the checker")
    vars = ("drop_initializer_inputs",)
    hints = ("Work on a copy (a new, empty ModelProto filled with `CopyFrom`, or `copy.deepcopy`), then rebuild the "
             "copy's `graph.input` without the names that `graph.initializer` holds, keeping the real inputs in order.",
             "The checker will still refuse the copy while it claims IR version 3, which required every initializer "
             "to be a graph input: raise `ir_version` to 4 or more.")
    solution = """def drop_initializer_inputs(model):
    copied = onnx.ModelProto()
    copied.CopyFrom(model)
    initializer_names = {tensor.name for tensor in copied.graph.initializer}
    real_inputs = [value for value in copied.graph.input if value.name not in initializer_names]
    del copied.graph.input[:]
    copied.graph.input.extend(real_inputs)
    copied.ir_version = 4
    return copied"""
    variants = (0, 1, 2)

    def describe_call(self, args):
        variant = args[0].graph.name.removeprefix("ir3_")
        return f"`{self.vars[0]}(model)` on the model of `lab09.ir3_model({variant})`"

    def check(self, fn):
        import onnx

        self.require_function(fn)
        for variant in self.variants:
            model = ir3_model(variant)
            before = model.SerializeToString()
            initializer_names = [tensor.name for tensor in model.graph.initializer]
            real_inputs = [value.name for value in model.graph.input if value.name not in initializer_names]
            call = self.describe_call((model,))
            result = self.call_answer(fn, (model,))
            if not isinstance(result, onnx.ModelProto):
                raise Incorrect(f"{call} returned a {type(result).__name__}; it should return an onnx.ModelProto.")
            try:
                onnx.checker.check_model(result, full_check=True)
            except Exception as error:
                raise Incorrect(f"{call} returns a model the checker refuses: {first_line(error)}") from None
            inputs = [value.name for value in result.graph.input]
            if inputs != real_inputs:
                raise Incorrect(f"{call} returns a model whose graph inputs are {inputs}; expected only the inputs "
                                "that are not initializers, in their original order.")
            if sorted(tensor.name for tensor in result.graph.initializer) != sorted(initializer_names):
                raise Incorrect(f"{call} returns a model that lost or renamed initializers: keep every weight, "
                                "only stop listing them as inputs.")
            fn(model)  # this time on the model itself: it must stay as it was
            if model.SerializeToString() != before:
                raise Incorrect(f"{call} changed the model it was given: work on a copy and return that, so the "
                                "original stays as it was.")


class _EncoderParity:
    """Feeds and eager-PyTorch reference of the encoder layer on left-padded inputs."""

    def feeds(self):
        return _encoder_expectations("left")[0]

    def expected_outputs(self, feeds):
        from labsupport.models import bn_cnn

        return [bn_cnn.encoder_outputs(bn_cnn.build_encoder_layer(), feeds)]


class FuseEncoderAttention(_EncoderParity, ModelFileProblem):
    prompt = ("fuse the TorchScript export of the encoder layer with the transformer optimizer so that it has an "
              "Attention node and still matches PyTorch on left-padded inputs; save it and set fused_encoder_path")
    vars = ("fused_encoder_path",)
    hints = ("`optimize_model` from `onnxruntime.transformers.optimizer` takes the file, `model_type='bert'`, the "
             "number of heads and the hidden size; `opt_level=0` runs its Python fusions only. The object it "
             "returns saves itself with `save_model_to_file(path)`.",
             "By default the fused Attention turns the 2-D mask into one length per row, which is only right when "
             "padding comes last. A `FusionOptions('bert')` object (from `onnxruntime.transformers.fusion_options`) "
             "has a method that keeps the raw mask; pass it as `optimization_options`.")
    solution = """options = FusionOptions("bert")
options.use_raw_attention_mask(True)
fused = optimize_model(str(torchscript_encoder_path), model_type="bert", num_heads=4, hidden_size=64, opt_level=0,
                       optimization_options=options)
fused_encoder_path = artifacts / "encoder_torchscript_fused.onnx"
fused.save_model_to_file(str(fused_encoder_path))"""
    input_names = ("x", "mask")
    output_names = ("y",)
    required_ops = ("Attention",)
    rtol = 1e-4
    atol = 1e-4

    def check_model(self, name, model):
        try:
            super().check_model(name, model)
        except Incorrect as outcome:
            if "values differ" in str(outcome):
                raise Incorrect(f"{outcome} These inputs are padded on the left: compare your fused model with "
                                "PyTorch on right- and on left-padded masks.") from None
            raise


class SplitMaskUnsqueeze(_EncoderParity, OnnxModelProblem):
    prompt = ("edit a copy of the torch.export-based encoder export so that the transformer optimizer fuses an "
              "Attention node in it; store the edited (unfused) ModelProto in split_export")
    vars = ("split_export",)
    hints = ("The optimizer's log said which path it could not match; `optimize.producer_chain` shows what the "
             "torch.export-based graph has on the mask path, and the TorchScript graph has one node more there.",
             "Replace the one Unsqueeze of `mask` (axes [1, 2]) by two Unsqueeze nodes of one axis each that give "
             "the same [batch, 1, 1, sequence] tensor: a new int64 initializer [1] for the axes, a new tensor name "
             "in between, and the second node writing the old node's output. Remove the old node and insert the new "
             "ones where it was, so the nodes stay in topological order.")
    solution = """split_export = onnx.ModelProto()
split_export.CopyFrom(dynamo_encoder)
old = next(node for node in split_export.graph.node if node.op_type == "Unsqueeze" and node.input[0] == "mask")
position = list(split_export.graph.node).index(old)
split_export.graph.initializer.append(numpy_helper.from_array(np.array([1], np.int64), "axis_one"))
split_export.graph.node.remove(old)
split_export.graph.node.insert(position, helper.make_node("Unsqueeze", ["mask_1d", "axis_one"], list(old.output)))
split_export.graph.node.insert(position, helper.make_node("Unsqueeze", ["mask", "axis_one"], ["mask_1d"]))"""
    input_names = ("x", "mask")
    output_names = ("y",)
    rtol = 1e-4
    atol = 1e-4

    def check_model(self, name, model):
        fused_ops = sorted({node.op_type for node in model.graph.node if node.domain == "com.microsoft"})
        if fused_ops:
            raise Incorrect(f"`{name}` already holds fused {', '.join(fused_ops)} nodes: store the edited graph "
                            "before the transformer optimizer runs (the check fuses it itself).")
        super().check_model(name, model)
        from labsupport.optimize import collect_log_messages

        with collect_log_messages("fusion_attention"):
            fused = fuse_encoder(model).model
        if not any(node.op_type == "Attention" for node in fused.graph.node):
            raise Incorrect(f"`{name}` computes the right numbers, but the transformer optimizer still fuses no "
                            "Attention in it: collect the `fusion_attention` logger's DEBUG messages to see which "
                            "path it cannot match.")


# ---------------------------------------------------------------------------
# Check yourself
# ---------------------------------------------------------------------------

class SavedGraphInProduction(ThoughtExperiment):
    prompt = ("to save start-up time you ship the graph ONNX Runtime saved at ORT_ENABLE_ALL on your laptop and load "
              "it with optimizations disabled in production. What can go wrong, and what would you ship instead?")
    hints = ("Which nodes of the ALL graph exist in no ONNX specification, and what did the runtime warn when it "
             "saved them?",
             "Think of another CPU, another execution provider, another runtime version, another runtime.")
    solution = (
        "The ALL level rewrote the convolutions into the `com.microsoft.nchwc` domain, with activations and weights "
        "in a blocked channel layout sized for this CPU's vector registers (MLAS uses blocks of 8 channels with "
        "AVX2 and 16 with AVX-512), and ONNX Runtime warned that such a file 'should only be used in the same "
        "environment the model was optimized in'. On a server with another instruction set the layout no longer "
        "fits the kernels; another execution provider (CUDA, TensorRT, OpenVINO) has no kernels for the nchwc "
        "operators, ReorderOutput or FusedConv and falls back to the CPU or fails; another runtime, or a reduced "
        "ONNX Runtime build without the contrib operators, cannot load it at all; and a new ONNX Runtime version "
        "may optimize better than the frozen file. The extended level's FusedConv has the same portability "
        "problem to a lesser degree. Ship the original model, or the BASIC-level graph, which holds only standard "
        "operators and stays portable across providers, and let each deployment optimize at start-up for its own "
        "hardware; measure whether that start-up cost matters at all, and if it does, save the optimized graph on "
        "the target machine itself, with the same runtime version, as part of deployment.")


class FoldingOnlyAtInference(ThoughtExperiment):
    prompt = ("Conv+BatchNorm folding gave the same outputs to float32 rounding here. Why is it only valid for "
              "inference, and when can folding change results noticeably?")
    hints = ("Which statistics does BatchNorm use while training, and do they stay fixed from batch to batch?",
             "Look at the scale γ/√(σ²+ε) when a channel's variance is tiny, and think of what quantization does to a "
             "weight tensor afterwards.")
    solution = (
        "In eval mode BatchNorm is a fixed per-channel affine map, s·y + t with s = γ/√(σ²+ε) computed from the stored "
        "running statistics, and an affine map after a linear one is still linear: W' = W·s, b' = (b − μ)·s + β. "
        "While training, BatchNorm normalises with the statistics of the current batch (they change every step), "
        "updates the running averages and back-propagates through the batch mean and variance; a folded Conv does "
        "none of that, so you fold after training (or use a frozen BatchNorm when fine-tuning). Numerically the fold "
        "is a rounding-level change, but it can grow: a channel whose variance is near zero gets a huge s, so the "
        "folded weights span a much wider range than the original ones, and float16 or int8 quantization of those "
        "weights then loses precision (per-channel quantization helps). ONNX Runtime's quantization pre-processing "
        "(`quant_pre_process`) runs the basic level first, which folds BatchNorm, so the weights it quantizes are the "
        "ones that will run. Check parity after folding, on real data, at the precision you deploy.")


class ReadingWhatAnOptimizerDid(ThoughtExperiment):
    prompt = ("an optimizer (ONNX Runtime, onnxscript, onnxsim, onnxslim or the transformer optimizer) changed your "
              "model. How do you find out what it did, and whether the model is still right and faster?")
    hints = ("This lab used four or five instruments: list them, and say what each can and cannot tell you.",
             "Fewer nodes is not the goal; correct outputs on inputs like production's, and measured time, are.")
    solution = (
        "What it did: compare operator histograms and node counts before and after (op_histogram, a plot), save ONNX "
        "Runtime's optimized graph with `optimized_model_filepath` and open both files in Netron, read fused-operator "
        "statistics (`get_fused_operator_statistics()`), and turn on the optimizer's own logs (the transformer "
        "optimizer's `fusion_attention` logger said which path it could not match; onnx_ir's warnings said which "
        "initializers were inputs). Walking the producers of a tensor shows the exact pattern a fusion expects. "
        "Whether it is right: run the original and the optimized file on the same realistic inputs and compare "
        "every output within a stated tolerance — including the inputs that break assumptions (left padding broke "
        "the default Attention fusion, which matched perfectly on right padding). Whether it is faster: measure "
        "latency with warm-up and repeats, each variant in its own block; fewer nodes is not faster by itself (the "
        "CNN's ALL graph has more nodes than its EXTENDED graph), and a simplifier can even add nodes. Also check "
        "portability: custom-domain operators (com.microsoft, nchwc) tie the file to one runtime and machine.")


PROBLEMS = {
    "q1": OptimizedOpCounts,
    "q2": FoldBatchNorm,
    "q3": PredictBasicSurvivors,
    "q4": DropInitializerInputs,
    "q5": FuseEncoderAttention,
    "q6": SplitMaskUnsqueeze,
    "q7": SavedGraphInProduction,
    "q8": FoldingOnlyAtInference,
    "q9": ReadingWhatAnOptimizerDid,
}
bind = make_binder(LAB, PROBLEMS)
