"""Lab 04's exercises: reference answers pass, wrong answers fail, blanks are not attempted."""

import re
from collections import Counter
from pathlib import Path

import nbformat
import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper
from onnxscript import opset20 as op

from labsupport.checking import ____
from labsupport.exercises import lab04
from labsupport.models import quiet_exporter_logs
from labsupport.models.torch_models import (
    build_digits_cnn,
    export_digits_cnn,
    export_scale_to_unit,
    export_sequence_model,
)
from labsupport.testing import assert_check_failed, assert_check_passed, assert_check_unattempted

DYNAMIC_BATCH = ({0: torch.export.Dim("batch")},)
ROOT = Path(__file__).resolve().parent.parent


# The exporters' own messages, read and explained in the lab, are not what these tests are about.
pytestmark = [
    pytest.mark.filterwarnings("ignore:You are using the legacy TorchScript-based ONNX export:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:The feature will be removed:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning"),
    pytest.mark.filterwarnings("ignore:.*isinstance.treespec, LeafSpec.:FutureWarning"),
]


@pytest.fixture(scope="module", autouse=True)
def quiet():
    quiet_exporter_logs()


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return tmp_path_factory.mktemp("lab04")


def _example():
    return torch.from_numpy(lab04.digits_test_images(3))


def _export_torchscript(model, path, **options):
    torch.onnx.export(model, (_example(),), str(path), dynamo=False, input_names=["pixels"], output_names=["logits"],
                      verbose=False, **options)
    return path


def _export(model, path, example, output_name, **options):
    torch.onnx.export(model, (example,), str(path), input_names=["pixels"], output_names=[output_name],
                      dynamic_shapes=DYNAMIC_BATCH, external_data=False, verbose=False, **options)
    return path


def _save(model, path):
    onnx.save_model(model, str(path))
    return path


def _all_nodes(graph):
    for node in graph.node:
        yield node
        for attribute in node.attribute:
            if attribute.type == onnx.AttributeProto.GRAPH:
                yield from _all_nodes(attribute.g)


# q1 LegacyCnnExport — the TorchScript exporter with dynamic_axes

@pytest.fixture(scope="module")
def legacy_reference(folder):
    cnn = lab04.reference_digits()[1]
    return _export_torchscript(cnn, folder / "legacy.onnx",
                               dynamic_axes={"pixels": {0: "batch"}, "logits": {0: "batch"}})


def test_legacy_export_reference_passes(legacy_reference):
    assert_check_passed(lab04.LegacyCnnExport, {"legacy_path": legacy_reference})


@pytest.fixture(scope="module")
def dynamo_cnn(folder):
    """The reference CNN through the torch.export-based exporter, without any clipping."""
    return export_digits_cnn(folder / "dynamo.onnx", lab04.reference_digits()[1])


def test_legacy_export_made_by_the_new_exporter_is_asked_for_dynamo_false(dynamo_cnn):
    assert_check_failed(lab04.LegacyCnnExport, {"legacy_path": dynamo_cnn}, "pass `dynamo=False`")


def test_legacy_export_without_dynamic_axes_is_asked_to_be_dynamic(folder):
    path = _export_torchscript(lab04.reference_digits()[1], folder / "fixed.onnx")
    assert_check_failed(lab04.LegacyCnnExport, {"legacy_path": path}, "should be dynamic")


def test_legacy_export_of_an_untrained_cnn_differs_from_the_reference(folder):
    path = _export_torchscript(build_digits_cnn().eval(), folder / "untrained.onnx",
                               dynamic_axes={"pixels": {0: "batch"}, "logits": {0: "batch"}})
    assert_check_failed(lab04.LegacyCnnExport, {"legacy_path": path}, "differ from the reference")


def test_legacy_export_given_the_onnx_program_instead_of_a_path_is_told_to_give_a_path():
    assert_check_failed(lab04.LegacyCnnExport, {"legacy_path": object()}, "should be the path")


def test_legacy_export_placeholder_is_not_attempted():
    assert_check_unattempted(lab04.LegacyCnnExport)


# q2 SequenceExport — dynamic batch and sequence

@pytest.fixture(scope="module")
def sequence_reference(folder):
    return export_sequence_model(folder / "sequence.onnx", lab04.reference_sequence_model())


def test_sequence_export_reference_passes(sequence_reference):
    assert_check_passed(lab04.SequenceExport, {"sequence_path": sequence_reference})


def test_sequence_export_with_a_fixed_sequence_length_names_axis_1(sequence_reference, folder):
    model = onnx.load(str(sequence_reference))
    model.graph.input[0].type.tensor_type.shape.dim[1].dim_value = 7
    assert_check_failed(lab04.SequenceExport, {"sequence_path": _save(model, folder / "fixed_length.onnx")}, "axis 1")


def test_sequence_export_with_int32_tokens_is_told_the_element_type(sequence_reference, folder):
    model = onnx.load(str(sequence_reference))
    model.graph.input[0].type.tensor_type.elem_type = onnx.TensorProto.INT32
    assert_check_failed(lab04.SequenceExport, {"sequence_path": _save(model, folder / "int32_tokens.onnx")},
                        "expected INT64")


def test_sequence_export_with_other_weights_differs_from_the_reference(sequence_reference, folder):
    model = onnx.load(str(sequence_reference))
    embedding = next(tensor for tensor in model.graph.initializer if tensor.name == "embedding.weight")
    embedding.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(embedding) * 2, embedding.name))
    assert_check_failed(lab04.SequenceExport, {"sequence_path": _save(model, folder / "other.onnx")},
                        "differ from the reference")


def test_sequence_export_placeholder_is_not_attempted():
    assert_check_unattempted(lab04.SequenceExport)


# q3 LoopExport — torch.while_loop becomes Loop

class ScaleToUnit(torch.nn.Module):
    def forward(self, pixels):
        (scaled,) = torch.while_loop(lambda p: p.max() > 1, lambda p: (p / 2,), (pixels,))
        return scaled


class ScaleToUnitPython(torch.nn.Module):
    def forward(self, pixels):
        while pixels.max() > 1:
            pixels = pixels / 2
        return pixels


class AtMostFourHalvings(torch.nn.Module):
    def forward(self, pixels):
        _, scaled = torch.while_loop(lambda step, p: (p.max() > 1) & (step < 4), lambda step, p: (step + 1, p / 2),
                                     (torch.zeros((), dtype=torch.int64), pixels))
        return scaled


@pytest.fixture(scope="module")
def loop_reference(folder):
    return _export(ScaleToUnit().eval(), folder / "loop.onnx", _example() * 16, "scaled")


def test_loop_export_reference_passes(loop_reference):
    assert_check_passed(lab04.LoopExport, {"loop_path": loop_reference})


def test_loop_export_traced_python_loop_has_no_loop_node(folder):
    path = folder / "unrolled.onnx"
    torch.onnx.export(ScaleToUnitPython(), (_example() * 16,), str(path), dynamo=False, input_names=["pixels"],
                      output_names=["scaled"], dynamic_axes={"pixels": {0: "batch"}, "scaled": {0: "batch"}},
                      verbose=False)
    assert_check_failed(lab04.LoopExport, {"loop_path": path}, "has no Loop node")


def test_loop_export_that_halves_once_too_often_differs(loop_reference, folder):
    model = onnx.load(str(loop_reference))
    for node in _all_nodes(model.graph):
        if node.op_type == "Greater":
            node.op_type = "GreaterOrEqual"
    assert_check_failed(lab04.LoopExport, {"loop_path": _save(model, folder / "greater_or_equal.onnx")},
                        "differ from the reference")


def test_loop_export_with_a_fixed_trip_count_fails_on_larger_scales(folder):
    path = _export(AtMostFourHalvings().eval(), folder / "four.onnx", _example() * 16, "scaled")
    assert_check_failed(lab04.LoopExport, {"loop_path": path}, "0–255")


def test_loop_export_placeholder_is_not_attempted():
    assert_check_unattempted(lab04.LoopExport)


def test_loop_export_that_the_lab_shows_after_the_exercise_is_a_correct_answer(folder):
    assert_check_passed(lab04.LoopExport, {"loop_path": export_scale_to_unit(folder / "labsupport_loop.onnx")})


def _code_cells(folder):
    notebook = nbformat.read(str(ROOT / folder / f"{lab04.LAB}.ipynb"), as_version=4)
    return [cell.source for cell in notebook.cells if cell.cell_type == "code"]


def test_student_notebook_shows_and_runs_the_reference_loop_without_the_learners_answer():
    cells = _code_cells("notebooks")
    after_check = cells[next(index for index, source in enumerate(cells) if "q3.check()" in source) + 1:]
    assert any("export_scale_to_unit(" in source for source in after_check), "no later cell builds the reference Loop"
    assert any("ScaleToUnitLoop(" in source and ".run(" in source for source in after_check), (
        "no later cell runs the reference Loop against eager PyTorch")
    for source in after_check:
        assert not re.search(r"\b(loop_path|ScaleToUnit)\b", source), (
            f"a later cell depends on the learner's answer to exercise 3:\n{source}")


def test_lab_types_no_exporter_step_number_the_library_owns():
    for source in _code_cells("solutions"):
        assert not re.search(r"step \d+ (of|/) ?\d+", source), f"a cell types the exporter's step count:\n{source}"


# q4 DecomposedCustomOp — the custom operator, decomposed

@torch.library.custom_op("workbook::smooth_clip", mutates_args=())
def smooth_clip(x: torch.Tensor, limit: float) -> torch.Tensor:
    return limit * torch.tanh(x / limit)


@smooth_clip.register_fake
def _(x, limit):
    return torch.empty_like(x)


class ClippedDigits(torch.nn.Module):
    def __init__(self, cnn):
        super().__init__()
        self.cnn = cnn

    def forward(self, pixels):
        return smooth_clip(self.cnn(pixels), lab04.SMOOTH_CLIP_LIMIT)


def smooth_clip_standard(x, limit: float):
    return op.Mul(op.Tanh(op.Div(x, limit)), limit)


@pytest.fixture(scope="module")
def decomposed_reference(folder):
    table = {torch.ops.workbook.smooth_clip.default: smooth_clip_standard}
    return _export(ClippedDigits(lab04.reference_digits()[1]).eval(), folder / "decomposed.onnx", _example(), "logits",
                   custom_translation_table=table)


def test_decomposed_reference_passes(decomposed_reference):
    assert_check_passed(lab04.DecomposedCustomOp, {"decomposed_path": decomposed_reference})


def test_decomposed_export_that_kept_the_custom_node_is_told_the_runtime_cannot_run_it(decomposed_reference, folder):
    model = onnx.load(str(decomposed_reference))
    tanh = next(node for node in model.graph.node if node.op_type == "Tanh")
    tanh.op_type, tanh.domain = "SmoothClip", "com.workbook"
    model.opset_import.append(onnx.helper.make_opsetid("com.workbook", 1))
    assert_check_failed(lab04.DecomposedCustomOp, {"decomposed_path": _save(model, folder / "custom.onnx")},
                        "com.workbook::SmoothClip, which ONNX Runtime cannot run")


def test_decomposed_export_without_the_clip_has_no_tanh(dynamo_cnn):
    assert_check_failed(lab04.DecomposedCustomOp, {"decomposed_path": dynamo_cnn}, "has no Tanh node")


def test_decomposed_export_that_forgot_to_multiply_by_the_limit_differs(decomposed_reference, folder):
    model = onnx.load(str(decomposed_reference))
    tanh = next(node for node in model.graph.node if node.op_type == "Tanh")
    final = next(node for node in model.graph.node if node.op_type == "Mul" and tanh.output[0] in node.input)
    tanh.output[0] = final.output[0]
    model.graph.node.remove(final)
    assert_check_failed(lab04.DecomposedCustomOp, {"decomposed_path": _save(model, folder / "no_multiply.onnx")},
                        "differ from the reference")


def test_decomposed_placeholder_is_not_attempted():
    assert_check_unattempted(lab04.DecomposedCustomOp)


# q5 RemovedByFolding — what constant folding removed

def test_removed_ops_reference_passes_as_counter_or_dict():
    assert_check_passed(lab04.RemovedByFolding, {"removed_ops": Counter(lab04.FOLDED_BY_OPTIMIZER)})
    assert_check_passed(lab04.RemovedByFolding, {"removed_ops": dict(lab04.FOLDED_BY_OPTIMIZER, Gemm=0)})


def test_removed_ops_as_a_set_of_names_asks_for_counts():
    assert_check_failed(lab04.RemovedByFolding, {"removed_ops": set(lab04.FOLDED_BY_OPTIMIZER)},
                        "not just list op types")


def test_removed_ops_from_a_set_difference_misses_the_multiplication():
    answer = {op_type: count for op_type, count in lab04.FOLDED_BY_OPTIMIZER.items() if op_type != "Mul"}
    assert_check_failed(lab04.RemovedByFolding, {"removed_ops": answer}, "1 op type(s) that were removed are missing")


def test_removed_ops_subtracted_the_wrong_way_round_is_told_so():
    answer = {op_type: -count for op_type, count in lab04.FOLDED_BY_OPTIMIZER.items()}
    assert_check_failed(lab04.RemovedByFolding, {"removed_ops": answer}, "negative counts")


def test_removed_ops_with_a_wrong_count_names_the_op_type():
    assert_check_failed(lab04.RemovedByFolding, {"removed_ops": dict(lab04.FOLDED_BY_OPTIMIZER, Constant=1)},
                        "wrong count for Constant")


def test_removed_ops_listing_a_surviving_op_names_it():
    assert_check_failed(lab04.RemovedByFolding, {"removed_ops": dict(lab04.FOLDED_BY_OPTIMIZER, Gemm=1)},
                        "Gemm was not removed")


def test_removed_ops_placeholder_is_not_attempted():
    assert_check_unattempted(lab04.RemovedByFolding)


# q6 ParityMetrics — parity metrics

def parity_reference(reference, candidate):
    return lab04.reference_parity_metrics(reference, candidate)


def test_parity_metrics_reference_passes():
    assert_check_passed(lab04.ParityMetrics, {"parity_metrics": parity_reference})


def test_parity_metrics_element_wise_relative_difference_fails():
    def element_wise(reference, candidate):
        max_abs_diff, _, agreement = parity_reference(reference, candidate)
        with np.errstate(divide="ignore", invalid="ignore"):
            element_wise_rel = float(np.nanmax(np.abs(candidate - reference) / np.abs(reference)))
        return max_abs_diff, element_wise_rel, agreement

    assert_check_failed(lab04.ParityMetrics, {"parity_metrics": element_wise}, "parity_metrics(")


def test_parity_metrics_agreement_as_a_count_fails():
    def counted(reference, candidate):
        max_abs_diff, max_rel_diff, _ = parity_reference(reference, candidate)
        return max_abs_diff, max_rel_diff, int((candidate.argmax(axis=-1) == reference.argmax(axis=-1)).sum())

    assert_check_failed(lab04.ParityMetrics, {"parity_metrics": counted}, "too large")


def test_parity_metrics_without_abs_fails():
    def signed(reference, candidate):
        _, _, agreement = parity_reference(reference, candidate)
        largest = float((candidate - reference).max())
        return largest, largest / float(np.abs(reference).max()), agreement

    assert_check_failed(lab04.ParityMetrics, {"parity_metrics": signed}, "parity_metrics(")


def test_parity_metrics_argmax_over_the_batch_axis_fails():
    def wrong_axis(reference, candidate):
        max_abs_diff, max_rel_diff, _ = parity_reference(reference, candidate)
        return max_abs_diff, max_rel_diff, float((candidate.argmax(axis=0) == reference.argmax(axis=0)).mean())

    assert_check_failed(lab04.ParityMetrics, {"parity_metrics": wrong_axis}, "parity_metrics(")


def test_parity_metrics_without_return_is_told_about_return():
    def no_return(reference, candidate):
        parity_reference(reference, candidate)

    assert_check_failed(lab04.ParityMetrics, {"parity_metrics": no_return}, "forget a `return`")


def test_parity_metrics_placeholder_body_is_not_attempted():
    def untouched(reference, candidate):
        return ____

    assert_check_unattempted(lab04.ParityMetrics, {"parity_metrics": untouched})
