"""Lab 01 — interoperability: why an interchange format, and a first round trip."""

from __future__ import annotations

import functools

import numpy as np

from labsupport.checking import EqualityProblem, FunctionProblem, Incorrect, ThoughtExperiment, make_binder
from labsupport.onnx_problems import ModelFileProblem, SessionParityProblem

LAB = "01_interoperability"


class ConverterCount(FunctionProblem):
    prompt = "how many converters do N frameworks and M runtimes need, with and without a shared format?"
    vars = ("converters_needed",)
    hints = ("Without a shared format every framework needs its own converter to every runtime.",
             "With one intermediate representation each framework needs one exporter and each runtime one importer.")
    solution = """def converters_needed(frameworks, runtimes, through_ir):
    if through_ir:
        return frameworks + runtimes
    return frameworks * runtimes"""
    test_cases = [((3, 4, False), 12), ((3, 4, True), 7), ((1, 1, False), 1), ((1, 1, True), 2),
                  ((10, 6, False), 60), ((10, 6, True), 16)]


class PickleOpcode(EqualityProblem):
    prompt = "which pickle opcode calls a function while the file is being loaded?"
    vars = ("calling_opcode",)
    hints = ("Read the `pickletools.dis` listing above from the bottom: the last opcodes build the object.",
             "`STACK_GLOBAL` only *looks up* a callable by name; the opcode after the arguments are pushed calls it.")
    solution = 'calling_opcode = "REDUCE"'
    expected = "REDUCE"

    def check(self, calling_opcode):
        if isinstance(calling_opcode, str) and calling_opcode.strip().upper() in {"GLOBAL", "STACK_GLOBAL"}:
            raise Incorrect(f"`calling_opcode` = {calling_opcode!r} finds the callable by module and name but does "
                            "not call it; "
                            "look for the opcode that applies it to its arguments.")
        super().check(calling_opcode.strip().upper() if isinstance(calling_opcode, str) else calling_opcode)


@functools.lru_cache(maxsize=1)
def reference_logits() -> tuple[np.ndarray, np.ndarray]:
    """The test images and the logits eager PyTorch gives for them with the reference MLP."""
    import torch

    from labsupport.models import load_digits_split, train_digits_mlp

    data = load_digits_split()
    model = train_digits_mlp(data)
    with torch.no_grad():
        logits = model(torch.from_numpy(data.x_test)).numpy()
    return data.x_test, logits


class ExportDigitsMlp(ModelFileProblem):
    prompt = "export the trained MLP to ONNX with a dynamic batch dimension"
    vars = ("onnx_path",)
    hints = ("`torch.onnx.export` takes `input_names` and `output_names` (lists of strings) and `external_data` "
             "(whether the weights go to a separate file).",
             "`dynamic_shapes` holds one entry per argument of `forward`: a dict from the axis number to a "
             "`torch.export.Dim` that you name.")
    solution = """onnx_path = artifacts / "digits_mlp.onnx"
torch.onnx.export(mlp, (example,), str(onnx_path), input_names=["pixels"], output_names=["logits"],
                  dynamic_shapes=({0: torch.export.Dim("batch")},), external_data=False, verbose=False)"""
    external_data = False
    input_names = ("pixels",)
    output_names = ("logits",)
    required_ops = ("Gemm",)
    dynamic_dims = {"pixels": (0,), "logits": (0,)}

    def feeds(self):
        pixels, _ = reference_logits()
        return {"pixels": pixels[:7]}

    def expected_outputs(self, feeds):
        return [reference_logits()[1][:7]]


class RoundTripParity(SessionParityProblem):
    prompt = "run the exported model in ONNX Runtime on every test image"
    vars = ("onnx_logits",)
    hints = ("`session.run` takes the names of the outputs you want (`None` for all of them) and a dict from each "
             "input's name to its array; this model's input is named `pixels`.",
             "`run` returns a list with one array per output, even when the model has a single output.")
    solution = 'onnx_logits = session.run(None, {"pixels": data.x_test})[0]'

    def feeds(self):
        return {"pixels": reference_logits()[0]}

    def expected_outputs(self):
        return [reference_logits()[1]]


class WhyIrNotPickle(ThoughtExperiment):
    prompt = "why is loading an untrusted .onnx file safer than unpickling an untrusted .pt file?"
    solution = (
        "A pickle is a small program for a stack machine: GLOBAL/STACK_GLOBAL import any callable and REDUCE calls it, "
        "so loading runs whatever the author wrote. An ONNX file is a protobuf message, pure data: parsing it builds "
        "message objects and never imports or calls anything; the runtime only executes the operators the spec "
        "defines. (A runtime can still have bugs, and custom-operator libraries are native code you choose to load, "
        "so keep those to trusted sources. `torch.load(weights_only=True)` is PyTorch's own mitigation.)")


class WhenNotOnnx(ThoughtExperiment):
    prompt = "name two situations where exporting to ONNX is the wrong choice, and why"
    solution = (
        "1. While still training or doing research: ONNX is an inference format (training support is limited), and "
        "the framework's own checkpoints keep optimizer state and Python-level flexibility. "
        "2. When the model relies on operators or dynamic Python behaviour that no ONNX opset expresses well "
        "(data-dependent control flow with side effects, exotic custom kernels) and the only deployment target is "
        "the training framework's own runtime: the conversion costs effort and risks parity for no portability gain.")


PROBLEMS = {
    "q1": ConverterCount,
    "q2": PickleOpcode,
    "q3": ExportDigitsMlp,
    "q4": RoundTripParity,
    "q5": WhyIrNotPickle,
    "q6": WhenNotOnnx,
}
bind = make_binder(LAB, PROBLEMS)
