"""Lab 04 — PyTorch export: two exporters, dynamic shapes, control flow, custom operators, parity."""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Mapping
from typing import Any

import numpy as np

from labsupport.checking import EqualityProblem, FunctionProblem, Incorrect, ThoughtExperiment, make_binder
from labsupport.onnx_problems import ModelFileProblem
from labsupport.onnx_tools import cpu_session, first_line

LAB = "04_pytorch_export"

SMOOTH_CLIP_LIMIT = 4.0
"""The ``limit`` the lab's soft-clipped digits model passes to ``workbook::smooth_clip``."""


@functools.lru_cache(maxsize=1)
def reference_digits():
    """The digits split and the trained reference CNN (eval mode), built once per process."""
    from labsupport.models import load_digits_split
    from labsupport.models.torch_models import train_digits_cnn

    data = load_digits_split()
    return data, train_digits_cnn(data)


def reference_cnn_logits(images: np.ndarray) -> np.ndarray:
    """What eager PyTorch's reference CNN gives for ``images`` of shape [N, 1, 8, 8]."""
    import torch

    _, model = reference_digits()
    with torch.no_grad():
        return model(torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32))).numpy()


def digits_test_images(count: int) -> np.ndarray:
    """The first ``count`` test images as a [count, 1, 8, 8] float32 batch."""
    data, _ = reference_digits()
    return data.x_test[:count].reshape(-1, 1, 8, 8)


@functools.lru_cache(maxsize=1)
def reference_sequence_model():
    """The trained reference token classifier (eval mode), built once per process."""
    from labsupport.models.torch_models import train_sequence_model

    return train_sequence_model()


def _run(model: Any, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
    session = cpu_session(model)
    try:
        return session.run(None, dict(feeds))
    except Exception as error:
        raise Incorrect(f"ONNX Runtime could not run the model: {first_line(error)}") from None


class LegacyCnnExport(ModelFileProblem):
    prompt = "export the digits CNN with the TorchScript-based exporter, with a dynamic batch"
    vars = ("legacy_path",)
    hints = ("Pass `dynamo=False` to `torch.onnx.export`. The TorchScript exporter does not read `dynamic_shapes`: "
             "it takes `dynamic_axes`, a dict from input/output name to {axis: name}.",
             "`dynamic_axes={'pixels': {0: 'batch'}, 'logits': {0: 'batch'}}`, with `input_names=['pixels']` and "
             "`output_names=['logits']`.")
    solution = """legacy_path = artifacts / "digits_cnn_torchscript_dynamic.onnx"
torch.onnx.export(cnn, (example,), str(legacy_path), dynamo=False, input_names=["pixels"], output_names=["logits"],
                  dynamic_axes={"pixels": {0: "batch"}, "logits": {0: "batch"}}, verbose=False)"""
    external_data = False
    input_names = ("pixels",)
    output_names = ("logits",)
    required_ops = ("Conv", "Gemm")
    dynamic_dims = {"pixels": (0,), "logits": (0,)}

    def feeds(self):
        return {"pixels": digits_test_images(13)}

    def expected_outputs(self, feeds):
        return [reference_cnn_logits(feeds["pixels"])]

    def check_model(self, name, model):
        super().check_model(name, model)
        if any(entry.key.startswith("pkg.torch.onnx") for node in model.graph.node for entry in node.metadata_props):
            raise Incorrect(f"`{name}` was written by the torch.export-based exporter (its nodes carry "
                            "`pkg.torch.onnx` metadata); this exercise wants the TorchScript one: pass `dynamo=False`.")


class SequenceExport(ModelFileProblem):
    prompt = "export the token classifier with a dynamic batch AND a dynamic sequence length"
    vars = ("sequence_path",)
    hints = ("`dynamic_shapes` holds one entry per argument of `forward`; here one dict mapping axis → "
             "`torch.export.Dim`, with an entry for axis 0 and one for axis 1.",
             "`dynamic_shapes=({0: torch.export.Dim('batch'), 1: torch.export.Dim('sequence')},)`, an int64 example "
             "such as `torch.zeros(3, 7, dtype=torch.int64)` (avoid sizes 0 and 1, which torch.export specialises), "
             "and `external_data=False`.")
    solution = """sequence_path = artifacts / "token_classifier.onnx"
torch.onnx.export(sequence_model, (torch.zeros(3, 7, dtype=torch.int64),), str(sequence_path),
                  input_names=["tokens"], output_names=["logits"],
                  dynamic_shapes=({0: torch.export.Dim("batch"), 1: torch.export.Dim("sequence")},),
                  external_data=False, verbose=False)"""
    external_data = False
    input_names = ("tokens",)
    output_names = ("logits",)
    dynamic_dims = {"tokens": (0, 1), "logits": (0,)}

    @property
    def input_types(self):
        import onnx

        return {"tokens": onnx.TensorProto.INT64}

    def feeds(self):
        from labsupport.models.torch_models import make_sequence_data

        tokens, _ = make_sequence_data(count=9, length=23, seed=7)
        return {"tokens": tokens}

    def expected_outputs(self, feeds):
        import torch

        model = reference_sequence_model()
        with torch.no_grad():
            return [model(torch.from_numpy(feeds["tokens"])).numpy()]


def scale_to_unit(pixels: np.ndarray) -> np.ndarray:
    """The reference of exercise 3: halve the whole batch until no value exceeds 1."""
    scaled = np.asarray(pixels, dtype=np.float32)
    while scaled.max() > 1:
        scaled = scaled / np.float32(2)
    return scaled


def _scaled_pixels(scale: float) -> np.ndarray:
    return (digits_test_images(6) * np.float32(scale)).astype(np.float32)


class LoopExport(ModelFileProblem):
    prompt = "export ScaleToUnit with torch.while_loop so the ONNX graph keeps a Loop"
    vars = ("loop_path",)
    hints = ("`torch.while_loop(cond_fn, body_fn, carried_inputs)`: `carried_inputs` is a tuple of tensors, "
             "`cond_fn` takes them and returns a boolean scalar tensor, `body_fn` takes them and returns a tuple "
             "of the same shapes.",
             "Here the carried tuple holds only the pixels: the condition asks the same question as the Python "
             "`while` above, the body returns a one-element tuple with the halved pixels, and the result is a "
             "one-element tuple to unpack. Export as in exercise 2, with only axis 0 dynamic, `pixels` in, "
             "`scaled` out and the weights inside the file.")
    solution = """class ScaleToUnit(torch.nn.Module):
    def forward(self, pixels):
        (scaled,) = torch.while_loop(lambda p: p.max() > 1, lambda p: (p / 2,), (pixels,))
        return scaled

loop_path = artifacts / "scale_to_unit.onnx"
torch.onnx.export(ScaleToUnit().eval(), (raw_example,), str(loop_path), input_names=["pixels"], output_names=["scaled"],
                  dynamic_shapes=({0: torch.export.Dim("batch")},), external_data=False, verbose=False)"""
    external_data = False
    input_names = ("pixels",)
    output_names = ("scaled",)
    required_ops = ("Loop",)
    dynamic_dims = {"pixels": (0,), "scaled": (0,)}

    def feeds(self):
        return {"pixels": _scaled_pixels(16)}

    def expected_outputs(self, feeds):
        return [scale_to_unit(feeds["pixels"])]

    def check_model(self, name, model):
        super().check_model(name, model)
        for scale in (1, 255):
            pixels = _scaled_pixels(scale)
            (scaled,) = _run(model, {"pixels": pixels})[:1]
            if not np.allclose(scaled, scale_to_unit(pixels), rtol=self.rtol, atol=self.atol):
                raise Incorrect(f"`{name}` is right for images scaled to 0–16 but wrong for images scaled to "
                                f"0–{scale}: the number of halvings must depend on the data.")


def clipped_reference(images: np.ndarray) -> np.ndarray:
    """The soft-clipped logits of the reference CNN: limit · tanh(logits / limit)."""
    logits = reference_cnn_logits(images).astype(np.float64)
    return (SMOOTH_CLIP_LIMIT * np.tanh(logits / SMOOTH_CLIP_LIMIT)).astype(np.float32)


class DecomposedCustomOp(ModelFileProblem):
    prompt = "export the soft-clipped CNN with smooth_clip translated into standard ONNX operators"
    vars = ("decomposed_path",)
    hints = ("A translation is a Python function taking the ONNX values (and the op's other arguments) and "
             "returning ONNX values; build it from `op.Div`, `op.Tanh` and `op.Mul` (`from onnxscript import "
             "opset20 as op`).",
             "smooth_clip is limit · tanh(x / limit): nest the three calls in that order, the division innermost, "
             "and return the product. Then hand the exporter a `custom_translation_table` that maps the operator's "
             "overload (`torch.ops.workbook.smooth_clip.default`) to your function.")
    solution = """def smooth_clip_standard(x, limit: float):
    return op.Mul(op.Tanh(op.Div(x, limit)), limit)

decomposed_path = artifacts / "clipped_cnn_standard.onnx"
torch.onnx.export(clipped_cnn, (example,), str(decomposed_path), input_names=["pixels"], output_names=["logits"],
                  dynamic_shapes=({0: torch.export.Dim("batch")},), external_data=False, verbose=False,
                  custom_translation_table={torch.ops.workbook.smooth_clip.default: smooth_clip_standard})"""
    external_data = False
    input_names = ("pixels",)
    output_names = ("logits",)
    required_ops = ("Tanh",)
    dynamic_dims = {"pixels": (0,)}

    def feeds(self):
        return {"pixels": digits_test_images(11)}

    def expected_outputs(self, feeds):
        return [clipped_reference(feeds["pixels"])]

    def check_model(self, name, model):
        custom = sorted({f"{node.domain}::{node.op_type}" for node in model.graph.node
                         if node.domain not in ("", "ai.onnx")})
        if custom:
            raise Incorrect(f"`{name}` still contains {', '.join(custom)}, which ONNX Runtime cannot run; translate "
                            "smooth_clip into standard operators (the default domain).")
        super().check_model(name, model)


FOLDED_BY_OPTIMIZER = {"Constant": 2, "Add": 1, "Sqrt": 1, "Reciprocal": 1, "Mul": 1}
"""Nodes the torch.export-based exporter's optimizer removes from the lab's Standardize model (torch 2.13)."""


class RemovedByFolding(EqualityProblem):
    prompt = "which nodes (op type → count) did the exporter's optimizer fold away?"
    vars = ("removed_ops",)
    hints = ("Count the op types of both graphs with `collections.Counter` and compare them.",
             "`Counter(before) - Counter(after)` keeps only the positive differences: that is what was removed. "
             "A set difference would miss an op type that is still present, just fewer times.")
    solution = """removed_ops = Counter(node.op_type for node in unoptimized.graph.node) - Counter(
    node.op_type for node in optimized.graph.node)"""
    expected = FOLDED_BY_OPTIMIZER

    def check(self, removed_ops):
        if isinstance(removed_ops, (set, frozenset, list, tuple)):
            raise Incorrect("`removed_ops` should map each op type to how many of its nodes were removed "
                            "(a dict or a Counter), not just list op types.")
        if not isinstance(removed_ops, Mapping):
            raise Incorrect(f"`removed_ops` should be a dict or a Counter, but it is a {type(removed_ops).__name__}.")
        answer = Counter({op_type: count for op_type, count in removed_ops.items() if count})
        if any(count < 0 for count in answer.values()):
            raise Incorrect("`removed_ops` has negative counts: subtract the optimized graph's counts from the "
                            "unoptimized graph's, not the other way round.")
        expected = Counter(self.expected)
        if set(answer) != set(expected):
            missing = sorted(set(expected) - set(answer))
            extra = sorted(set(answer) - set(expected))
            parts = []
            if missing:
                parts.append(f"{len(missing)} op type(s) that were removed are missing")
            if extra:
                parts.append(f"{', '.join(extra)} {'was' if len(extra) == 1 else 'were'} not removed")
            raise Incorrect(f"`removed_ops`: {'; '.join(parts)}. Compare the two graphs' op-type counts.")
        wrong = sorted(op_type for op_type in expected if answer[op_type] != expected[op_type])
        if wrong:
            raise Incorrect(f"`removed_ops` has the right op types but the wrong count for {', '.join(wrong)}.")


def reference_parity_metrics(reference: np.ndarray, candidate: np.ndarray) -> tuple[float, float, float]:
    reference = np.asarray(reference, dtype=np.float64)
    candidate = np.asarray(candidate, dtype=np.float64)
    max_abs_diff = float(np.abs(candidate - reference).max())
    max_rel_diff = max_abs_diff / float(np.abs(reference).max())
    argmax_agreement = float((candidate.argmax(axis=-1) == reference.argmax(axis=-1)).mean())
    return max_abs_diff, max_rel_diff, argmax_agreement


class ParityMetrics(FunctionProblem):
    prompt = "write parity_metrics(reference, candidate) → (max_abs_diff, max_rel_diff, argmax_agreement)"
    vars = ("parity_metrics",)
    hints = ("`max_abs_diff` is the largest |candidate − reference|; `max_rel_diff` divides it by the largest "
             "|reference| (the output's scale), not element by element.",
             "`argmax_agreement` is the *fraction* of rows whose argmax over the last axis agrees: compare the two "
             "arrays of row-wise winners element by element, and average the booleans (a sum would be a count).")
    solution = """def parity_metrics(reference, candidate):
    reference = np.asarray(reference, dtype=np.float64)
    candidate = np.asarray(candidate, dtype=np.float64)
    max_abs_diff = float(np.abs(candidate - reference).max())
    max_rel_diff = max_abs_diff / float(np.abs(reference).max())
    argmax_agreement = float((candidate.argmax(axis=-1) == reference.argmax(axis=-1)).mean())
    return max_abs_diff, max_rel_diff, argmax_agreement"""
    rtol = 1e-5

    def cases(self):
        # Each pair is chosen so that a common slip gives a different answer: the largest error
        # is negative (forgotten abs), sits on a reference value near zero (element-wise relative
        # difference), argmax over the wrong axis differs, and agreement is a fraction below one.
        pairs = [
            (np.array([[2.0, -1.0, 0.5], [0.25, 3.0, -4.0]], dtype=np.float32),
             np.array([[2.0, -1.0, 0.5], [0.25, 3.0, -4.5]], dtype=np.float32)),
            (np.array([[1.0, 0.001, -2.0, 8.0], [3.0, 1.0, 0.0, -1.0], [0.5, 0.5, 6.0, 0.1]], dtype=np.float32),
             np.array([[1.0, 0.011, -2.0, 7.99], [3.0, 3.5, 0.0, -1.0], [0.5, 0.5, 6.0, 0.1]], dtype=np.float32)),
            (np.array([[0.1, 0.2], [0.4, 0.3]], dtype=np.float32),
             np.array([[0.1, 0.2], [0.4, 0.3]], dtype=np.float32)),
        ]
        return [((reference, candidate), reference_parity_metrics(reference, candidate))
                for reference, candidate in pairs]


class TracingRisk(ThoughtExperiment):
    prompt = "an export with dynamo=False raised no error and matched on the test set; why can it still be wrong?"
    solution = (
        "Tracing records the operations that ran for the example input, nothing else. A Python `if`/`while` that "
        "depends on tensor values is evaluated once, in Python, and only the path taken is recorded (the "
        "TracerWarning is the only sign); shapes, Python numbers and lengths read during the trace become "
        "constants. If the test set exercises the same branch as the example, parity is perfect and the model is "
        "still wrong for inputs that take the other path (raw 0–255 images, a longer sequence, an empty batch). "
        "Check: read the warnings; inspect the graph for the If/Loop you expect; run parity on inputs chosen to "
        "take every branch and on several shapes; prefer the torch.export-based exporter, which refuses "
        "data-dependent Python control flow instead of silently specialising, and express it with "
        "`torch.cond`/`torch.while_loop`.")


class CustomDomainTradeoff(ThoughtExperiment):
    prompt = ("when would you keep a custom-domain operator instead of decomposing it, "
              "and what must ship with the model?")
    solution = (
        "Keep it when the target runtime has a faster or more exact fused kernel for it (a vendor plugin for "
        "TensorRT or OpenVINO, an ONNX Runtime contrib or custom op), when the decomposition would be large or "
        "numerically worse, or when the operator cannot be expressed in standard ONNX at all. The price is "
        "portability: every runtime that loads the file must be told how to run the node, so ship with the model "
        "either the custom-operator library registered in each runtime (lab 13 builds one) or a model-local function "
        "(FunctionProto) in that domain whose body uses standard operators, which runtimes without a kernel "
        "inline. Document the domain, version and semantics, and test parity for each runtime you support. "
        "Otherwise decompose: a file of standard operators runs everywhere.")


PROBLEMS = {
    "q1": LegacyCnnExport,
    "q2": SequenceExport,
    "q3": LoopExport,
    "q4": DecomposedCustomOp,
    "q5": RemovedByFolding,
    "q6": ParityMetrics,
    "q7": TracingRisk,
    "q8": CustomDomainTradeoff,
}
bind = make_binder(LAB, PROBLEMS)
