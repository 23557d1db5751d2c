"""The validation harness of lab 07, on tiny models built with onnx.helper (no framework needed)."""

from __future__ import annotations

import zipfile

import ml_dtypes
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from labsupport.models import ExportedModel
from labsupport.validate import (
    DEFAULT_TOLERANCE,
    TensorSignature,
    ValidationInputError,
    ValidationTable,
    check_feeds,
    describe_model,
    max_abs_difference,
    max_relative_difference,
    model_signatures,
    random_feeds,
    validate_model,
    validate_models,
)
from tests.test_display import assert_every_icon_has_a_word

WEIGHTS = np.arange(12, dtype=np.float32).reshape(4, 3) / 10


def _save(graph: onnx.GraphProto, path, *, opsets=(("", 20),), **save_options):
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid(domain, version) for domain, version in opsets])
    model.ir_version = 10
    onnx.save_model(model, str(path), **save_options)
    return path


def affine_model(path, batch="batch", weights=WEIGHTS, **save_options):
    """y = x @ weights + 1 with x [batch, 4] float32 (batch fixed when an int)."""
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["xw"]), helper.make_node("Add", ["xw", "one"], ["y"])], "affine",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, 3])],
        [numpy_helper.from_array(weights, "w"), numpy_helper.from_array(np.ones(3, np.float32), "one")])
    return _save(graph, path, **save_options)


def affine_reference(feeds):
    return [feeds["x"].astype(np.float64) @ WEIGHTS.astype(np.float64) + 1]


def sample_x(rows=16):
    return np.random.default_rng(0).random((rows, 4), dtype=np.float32)


@pytest.fixture(scope="module")
def affine(tmp_path_factory):
    return affine_model(tmp_path_factory.mktemp("validate") / "affine.onnx")


# The layers on a valid model

def test_valid_model_passes_every_layer_with_one_row_per_check(affine):
    result = validate_model(affine, {"x": sample_x()}, affine_reference)
    assert [row.check for row in result.rows] == ["checker", "load", "batch 1", "batch 3", "batch 16", "fp16"]
    assert result.ok and result.verdict == "pass"
    assert [row.batch_size for row in result.rows[2:5]] == [1, 3, 16]
    assert result.max_abs_diff < 1e-5 and result.fp16_max_abs_diff is not None


def test_batch_sizes_larger_than_the_sample_repeat_its_rows(affine):
    result = validate_model(affine, {"x": sample_x(2)}, affine_reference, batch_sizes=(5,), fp16=False)
    assert result.row("batch 5").status == "ok"


def test_exported_model_contract_gives_feeds_reference_outputs_and_dynamic_axes(affine):
    exported = ExportedModel("affine (hand-made)", affine, {"x": sample_x()}, affine_reference, ("y",), {"x": (0,)})
    result = validate_model(exported)
    assert result.name == "affine (hand-made)"
    assert result.row("dynamic axes").status == "ok"
    assert "vs the reference" in result.row("batch 3").detail


def test_an_axis_declared_dynamic_but_fixed_in_the_graph_fails_the_dynamic_axes_row(tmp_path):
    path = affine_model(tmp_path / "fixed.onnx", batch=16)
    exported = ExportedModel("fixed", path, {"x": sample_x()}, affine_reference, ("y",), {"x": (0,)})
    row = validate_model(exported, fp16=False).row("dynamic axes")
    assert row.status == "fail" and "'x' axis 0 is fixed at 16" in row.detail


def test_a_fixed_batch_is_run_at_its_size_and_other_sizes_are_skipped(tmp_path):
    path = affine_model(tmp_path / "fixed.onnx", batch=3)
    result = validate_model(path, {"x": sample_x(3)}, affine_reference, fp16=False)
    assert [row.status for row in result.rows[2:]] == ["skip", "ok", "skip"]
    assert "fixed batch" in result.row("batch 1").detail


@pytest.mark.parametrize("batch_sizes", [(1, 3, 16), (1, 16)])
def test_a_fixed_batch_without_a_reference_is_run_once_and_never_compared_with_itself(tmp_path, batch_sizes):
    path = affine_model(tmp_path / "fixed.onnx", batch=3)
    result = validate_model(path, batch_sizes=batch_sizes, fp16=False)
    run = result.row("batch 3")
    assert run.status == "ok" and run.max_abs_diff is None
    assert run.detail == ("ran (axis 0 is not dynamic, so there is no other batch size to compare with; "
                          "no reference given): 'y' (3, 3)")
    assert [row.check for row in result.rows if row.status != "skip"] == ["checker", "load", "batch 3"]


def _constant_model(path):
    """No inputs: y = [1, 2] from a Constant node."""
    constant = helper.make_node("Constant", [], ["y"], value=numpy_helper.from_array(np.array([1.0, 2.0], np.float32)))
    graph = helper.make_graph([constant], "constant", [], [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])])
    return _save(graph, path)


def test_a_model_without_inputs_is_run_once_in_a_row_called_run_not_batch_none(tmp_path):
    path = _constant_model(tmp_path / "constant.onnx")
    result = validate_model(path)
    assert [row.check for row in result.rows] == ["checker", "load", "run", "fp16"]
    assert result.row("run").detail == "ran (the model has no inputs; no reference given): 'y' (2,)"
    assert "None" not in result.to_text() and result.ok
    with_reference = validate_model(path, reference=lambda feeds: [np.array([1.0, 2.0])], fp16=False)
    assert with_reference.row("run").status == "ok" and with_reference.max_abs_diff == 0.0


# Numbers and tolerances

def test_a_reference_off_by_more_than_the_tolerance_fails_and_names_the_worst_element(affine):
    def wrong_bias(feeds):
        return [affine_reference(feeds)[0] + 0.01]

    result = validate_model(affine, {"x": sample_x()}, wrong_bias, fp16=False)
    row = result.row("batch 16")
    assert row.status == "fail" and "48 of 48 values outside atol 1e-05, rtol 0.0001" in row.detail
    assert "worst at" in row.detail and result.verdict.startswith("fail (batch 1, batch 3, batch 16")
    assert row.max_abs_diff == pytest.approx(0.01, rel=1e-3)


def test_per_output_tolerances_override_the_default(affine):
    def slightly_off(feeds):
        return [affine_reference(feeds)[0] * (1 + 1e-3)]

    assert not validate_model(affine, {"x": sample_x()}, slightly_off, fp16=False).ok
    assert validate_model(affine, {"x": sample_x()}, slightly_off, tolerances={"y": (0, 2e-3)}, fp16=False).ok


def test_tolerances_for_an_unknown_output_are_an_input_error(affine):
    with pytest.raises(ValidationInputError, match=r"tolerances name output 'Y'.*its outputs are \['y'\]"):
        validate_model(affine, {"x": sample_x()}, affine_reference, tolerances={"Y": (1e-3, 0)})


def test_default_tolerance_is_atol_and_rtol():
    assert DEFAULT_TOLERANCE.atol > 0 and DEFAULT_TOLERANCE.rtol > 0


def test_max_relative_difference_divides_by_the_reference_and_skips_values_at_the_floor():
    reference = np.array([2.0, -4.0, 0.0, 1e-9])
    actual = np.array([2.2, -4.0, 0.5, 1.0])
    assert max_relative_difference(actual, reference) == pytest.approx(1.0 / 1e-9)
    assert max_relative_difference(actual, reference, floor=1e-6) == pytest.approx(0.1)
    assert max_relative_difference(actual[2:3], reference[2:3]) == 0.0
    assert max_abs_difference(actual, reference) == pytest.approx(1.0)


def test_integer_outputs_must_match_exactly(tmp_path):
    graph = helper.make_graph([helper.make_node("ArgMax", ["x"], ["label"], axis=1, keepdims=0)], "argmax",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
                              [helper.make_tensor_value_info("label", TensorProto.INT64, ["batch"])])
    path = _save(graph, tmp_path / "argmax.onnx")
    x = sample_x()
    assert validate_model(path, {"x": x}, lambda feeds: [feeds["x"].argmax(axis=1)], fp16=False).ok
    row = validate_model(path, {"x": x}, lambda feeds: [(feeds["x"].argmax(axis=1) + 1) % 4], fp16=False).row("batch 3")
    assert row.status == "fail" and "outside exact equality (integers)" in row.detail


def test_without_a_reference_a_batch_dependent_model_fails_against_itself(tmp_path):
    """x - mean over the batch: each row's output depends on the other rows."""
    graph = helper.make_graph(
        [helper.make_node("ReduceMean", ["x"], ["mean"], axes=[0], keepdims=1),
         helper.make_node("Sub", ["x", "mean"], ["y"])],
        "centre", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])])
    path = _save(graph, tmp_path / "centre.onnx", opsets=(("", 17),))
    result = validate_model(path, fp16=False)
    assert result.row("batch 3").status == "fail" and result.row("batch 16").status == "ok"
    assert "no reference given" in validate_model(path, batch_sizes=(16,), fp16=False).row("batch 16").detail


# Other dynamic dimensions

@pytest.fixture(scope="module")
def pooled(tmp_path_factory):
    """x [batch, sequence, 2] → mean over the sequence [batch, 2]."""
    graph = helper.make_graph([helper.make_node("ReduceMean", ["x"], ["y"], axes=[1], keepdims=0)], "pool",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "sequence", 2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 2])])
    return _save(graph, tmp_path_factory.mktemp("validate") / "pool.onnx", opsets=(("", 17),))


def test_dim_sizes_vary_a_named_dynamic_dimension(pooled):
    x = np.random.default_rng(1).random((4, 6, 2), dtype=np.float32)
    result = validate_model(pooled, {"x": x}, lambda feeds: [feeds["x"].mean(axis=1)], dim_sizes={"sequence": (2, 9)},
                            fp16=False)
    assert result.row("sequence 2").status == "ok" and result.row("sequence 9").status == "ok"


def test_dim_sizes_with_an_unknown_symbol_list_the_model_symbols(pooled):
    x = np.zeros((4, 6, 2), np.float32)
    with pytest.raises(ValidationInputError, match=r"no input has a dynamic dimension named 'seq'.*\['sequence'\]"):
        validate_model(pooled, {"x": x}, dim_sizes={"seq": (3,)})


def test_random_feeds_refuse_a_dimension_name_the_model_lacks_and_list_its_dimensions(pooled):
    inputs, _ = model_signatures(onnx.load(str(pooled)))
    with pytest.raises(ValidationInputError) as caught:
        random_feeds(inputs, 2, dim_sizes={"seq": 3}, label="pool.onnx")
    assert str(caught.value) == ("pool.onnx: no input has a dynamic dimension named 'seq'; its named dynamic "
                                 "dimensions are ['sequence']; axis 0 ('batch') is set by the batch sizes.")
    with pytest.raises(ValidationInputError, match=r"'batch' is axis 0, the batch: set it with the batch sizes"):
        random_feeds(inputs, 2, dim_sizes={"batch": 3})


def test_a_dimension_name_on_a_model_with_fixed_axes_says_it_has_none(tmp_path):
    inputs, _ = model_signatures(onnx.load(str(affine_model(tmp_path / "fixed.onnx", batch=3))))
    with pytest.raises(ValidationInputError, match=r"'seq'; it has no named dynamic dimension beyond axis 0\.$"):
        random_feeds(inputs, 2, dim_sizes={"seq": 3})


# Sizes that would not fit in memory: refused before anything is allocated

def _declared_model(path, dims, elem_type=TensorProto.FLOAT):
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "identity",
                              [helper.make_tensor_value_info("x", elem_type, dims)],
                              [helper.make_tensor_value_info("y", elem_type, dims)])
    return _save(graph, path)


def test_a_declared_shape_too_large_for_memory_is_refused_with_its_size_and_the_budget(tmp_path, monkeypatch):
    monkeypatch.delenv("LABSUPPORT_MAX_INPUT_BYTES", raising=False)
    path = _declared_model(tmp_path / "huge.onnx", [100000, 100000, 100000])
    with pytest.raises(ValidationInputError) as caught:
        validate_model(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: the inputs would take 3.6 PiB (4,000,000,000,000,000 bytes) for 'x' ")
    assert "more than the input budget of 1.0 GiB" in message


def test_a_budget_raised_beyond_this_machines_memory_still_ends_in_one_line(tmp_path):
    path = _declared_model(tmp_path / "huge.onnx", [100000, 100000, 100000])
    with pytest.raises(ValidationInputError) as caught:
        validate_model(path, max_input_bytes="5PiB")
    assert str(caught.value) == (f"{path}: input 'x' [100000, 100000, 100000] float32 does not fit in this machine's "
                                 "memory, although the input budget allows it: use smaller sizes, and a budget this "
                                 "machine can hold.")


@pytest.mark.parametrize("options, label", [({"batch_sizes": (10**12,)}, "batch 1000000000000"),
                                            ({"dim_sizes": {"sequence": (10**12,)}}, "sequence 1000000000000")])
def test_requested_sizes_beyond_the_budget_are_refused_before_allocating(pooled, options, label):
    x = np.zeros((4, 6, 2), np.float32)
    with pytest.raises(ValidationInputError, match=f"^{pooled}, {label}: the inputs would take .* input budget"):
        validate_model(pooled, {"x": x}, **options)


def test_the_budget_is_set_by_keyword_or_environment_variable(affine, monkeypatch):
    with pytest.raises(ValidationInputError, match=r"would take 256 bytes for 'x' \[16, 4\] float32, more than the "
                                                   r"input budget of 200 bytes"):
        validate_model(affine, {"x": sample_x()}, max_input_bytes=200)
    monkeypatch.setenv("LABSUPPORT_MAX_INPUT_BYTES", "200")
    with pytest.raises(ValidationInputError, match=r"budget of 200 bytes"):
        validate_model(affine, {"x": sample_x()})
    assert validate_model(affine, {"x": sample_x()}, max_input_bytes="1MiB", fp16=False).ok


# Input types random feeds cannot be made for

@pytest.mark.parametrize("value_info, reason, example", [
    (helper.make_tensor_value_info("x", TensorProto.BFLOAT16, ["batch", 4]),
     "is a tensor(bfloat16), which NumPy has no type for", "np.asarray(values, dtype=ml_dtypes.bfloat16)"),
    (helper.make_tensor_value_info("x", TensorProto.FLOAT8E4M3FN, ["batch", 4]),
     "is a tensor(float8e4m3fn), which NumPy has no type for", "np.asarray(values, dtype=ml_dtypes.float8_e4m3fn)"),
    (helper.make_tensor_value_info("x", TensorProto.FLOAT8E5M2, ["batch", 4]),
     "is a tensor(float8e5m2), which NumPy has no type for", "np.asarray(values, dtype=ml_dtypes.float8_e5m2)"),
    (helper.make_tensor_value_info("x", TensorProto.FLOAT, None),
     "is a tensor(float) with no declared rank", "an array of the shape it expects"),
    (helper.make_tensor_value_info("x", TensorProto.STRING, None),
     "is a tensor(string) with no declared rank", "an array of the shape it expects"),
    (helper.make_tensor_sequence_value_info("x", TensorProto.FLOAT, None), "is a seq(tensor(float))", "[array, ...]"),
    (helper.make_value_info("x", helper.make_map_type_proto(TensorProto.INT64, helper.make_tensor_type_proto(
        TensorProto.FLOAT, None))), "is a map(int64,tensor(float))", "{key: value, ...}"),
    (helper.make_value_info("x", helper.make_optional_type_proto(helper.make_tensor_type_proto(TensorProto.FLOAT,
                                                                                                [2]))),
     "is an optional(tensor(float))", "its value"),
])
def test_random_feeds_for_an_input_type_they_cannot_make_say_how_to_pass_your_own(value_info, reason, example):
    graph = helper.make_graph([], "g", [value_info], [])
    inputs, _ = model_signatures(helper.make_model(graph))
    with pytest.raises(ValidationInputError) as caught:
        random_feeds(inputs, 2, label="m.onnx")
    assert str(caught.value) == (f"m.onnx: input 'x' {reason}, so random values cannot be made for it; validate it "
                                 f"from Python with your own feeds: validate_model(path, feeds={{'x': {example}}}).")


def test_an_undefined_element_type_or_a_negative_size_is_named_with_the_file(tmp_path):
    undefined = _declared_model(tmp_path / "undefined.onnx", ["batch", 4], TensorProto.UNDEFINED)
    with pytest.raises(ValidationInputError,
                       match=r"undefined.onnx: input 'x' is a tensor\(undefined\), an element type "
                             r"no array can hold: fix the type where the model is made\.$"):
        validate_model(undefined)
    negative = _declared_model(tmp_path / "negative.onnx", [-1, 4])
    with pytest.raises(ValidationInputError, match=r"negative.onnx: input 'x' declares a negative size \[-1, 4\]: "
                                                   r"fix the export \(a dynamic axis is named, not -1\)\.$"):
        validate_model(negative)


def test_a_bfloat16_input_validates_with_your_own_feeds(tmp_path):
    """ONNX Runtime's Python API takes no bfloat16 NumPy array; the harness passes it as an OrtValue."""
    graph = helper.make_graph([helper.make_node("Cast", ["x"], ["y"], to=TensorProto.FLOAT)], "widen",
                              [helper.make_tensor_value_info("x", TensorProto.BFLOAT16, ["batch", 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])])
    path = _save(graph, tmp_path / "widen.onnx", opsets=(("", 21),))
    x = sample_x().astype(ml_dtypes.bfloat16)
    result = validate_model(path, {"x": x}, lambda feeds: [feeds["x"].astype(np.float32)], fp16=False)
    assert result.ok and result.max_abs_diff == 0.0


def test_a_wrong_dtype_for_a_type_numpy_lacks_names_the_ml_dtypes_type():
    with pytest.raises(ValidationInputError, match=r"convert with \.astype\(ml_dtypes\.bfloat16\)\.$"):
        check_feeds("m.onnx", [TensorSignature("x", TensorProto.BFLOAT16, ("batch", 4))], {"x": sample_x()})


# float16 precision

def test_fp16_is_measured_against_the_float32_model_and_judged_with_its_own_tolerance(affine):
    x = sample_x()
    row = validate_model(affine, {"x": x}, affine_reference).row("fp16")
    assert row.status == "ok" and 0 < row.max_abs_diff < 1e-2 and "argmax of 'y' agrees on 16/16 rows" in row.detail
    strict = validate_model(affine, {"x": x}, affine_reference, fp16_tolerance=(1e-6, 0)).row("fp16")
    assert strict.status == "fail" and strict.max_abs_diff == row.max_abs_diff


def test_fp16_is_skipped_with_a_reason_for_ai_onnx_ml_operators(tmp_path):
    graph = helper.make_graph([helper.make_node("Normalizer", ["x"], ["y"], domain="ai.onnx.ml", norm="L1")], "ml",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])])
    path = _save(graph, tmp_path / "ml.onnx", opsets=(("", 17), ("ai.onnx.ml", 1)))
    row = validate_model(path).row("fp16")
    assert row.status == "skip" and "ai.onnx.ml operators (Normalizer) have no float16 versions" in row.detail


# Structure and load

def test_a_run_failing_without_a_reference_is_a_failed_row_not_an_exception(tmp_path):
    graph = helper.make_graph([helper.make_node("Reshape", ["x", "shape"], ["y"])], "reshape",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              [numpy_helper.from_array(np.array([5], np.int64), "shape")])
    result = validate_model(_save(graph, tmp_path / "reshape.onnx"), fp16=False)
    assert result.row("batch 16").status == "fail" and result.row("batch 16").detail.startswith("ONNX Runtime failed: ")


def test_checker_failure_is_a_failed_row_not_an_exception(tmp_path):
    graph = helper.make_graph([helper.make_node("Add", ["x", "missing"], ["y"])], "dangling",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])])
    path = _save(graph, tmp_path / "dangling.onnx")
    result = validate_model(path, {"x": sample_x()})
    assert result.row("checker").status == "fail" and "missing" in result.row("checker").detail
    assert result.row("load").status == "fail" and not result.ok


def test_a_model_with_external_data_is_validated_from_its_path(tmp_path):
    path = affine_model(tmp_path / "external.onnx", save_as_external_data=True, location="external.onnx.data",
                        size_threshold=0)
    assert (tmp_path / "external.onnx.data").is_file()
    assert validate_model(path, {"x": sample_x()}, affine_reference).ok


# Bad input: one actionable line each

def test_missing_file_says_where_it_looked(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValidationInputError, match=r"^nowhere\.onnx: no such file \(looked in .*\); check the path"):
        validate_model("nowhere.onnx")


def test_empty_file_says_the_write_did_not_finish(tmp_path):
    (tmp_path / "empty.onnx").write_bytes(b"")
    with pytest.raises(ValidationInputError, match=r"empty \(0 bytes\)"):
        validate_model(tmp_path / "empty.onnx")


def test_a_folder_is_not_a_model(tmp_path):
    with pytest.raises(ValidationInputError, match="is a folder"):
        validate_model(tmp_path)


def test_truncated_file_is_recognised_as_a_cut_onnx_file(affine, tmp_path):
    data = affine.read_bytes()
    (tmp_path / "cut.onnx").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValidationInputError, match="starts like an ONNX file but cannot be parsed.*truncated"):
        validate_model(tmp_path / "cut.onnx")


def test_a_zip_checkpoint_is_named_as_such(tmp_path):
    with zipfile.ZipFile(tmp_path / "model.pt", "w") as archive:
        archive.writestr("data.pkl", b"not a model")
    with pytest.raises(ValidationInputError, match="not an ONNX file: it looks like a ZIP archive"):
        validate_model(tmp_path / "model.pt")


def test_text_file_is_not_an_onnx_model(tmp_path):
    (tmp_path / "notes.onnx").write_text("hello, this is not a model\n")
    with pytest.raises(ValidationInputError, match="not an ONNX file|holds no ONNX model"):
        validate_model(tmp_path / "notes.onnx")


def test_missing_external_data_names_the_file_to_copy(tmp_path):
    path = affine_model(tmp_path / "external.onnx", save_as_external_data=True, location="external.onnx.data",
                        size_threshold=0)
    (tmp_path / "external.onnx.data").unlink()
    with pytest.raises(ValidationInputError, match="stored in 'external.onnx.data', which is not beside it"):
        validate_model(path)


def test_unknown_input_name_lists_the_model_inputs(affine):
    with pytest.raises(ValidationInputError) as caught:
        validate_model(affine, {"X": sample_x()})
    assert str(caught.value) == f"{affine}: input 'X' is not an input of this model; its inputs are ['x']."


def test_missing_input_names_what_the_model_needs(affine):
    with pytest.raises(ValidationInputError, match=r"no value for input 'x'; the model needs \['x'\]"):
        validate_model(affine, {})


def test_wrong_dtype_says_how_to_convert(affine):
    with pytest.raises(ValidationInputError) as caught:
        validate_model(affine, {"x": sample_x().astype(np.float64)})
    assert str(caught.value) == (f"{affine}: input 'x' expects float32 (tensor(float)) but got float64: "
                                 "convert with .astype(np.float32).")


def test_wrong_rank_shows_the_declared_shape(affine):
    with pytest.raises(ValidationInputError, match=r"input 'x' expects rank 2 \[batch, 4\] but got shape \(16, 2, 2\)"):
        validate_model(affine, {"x": sample_x().reshape(16, 2, 2)})


def test_wrong_fixed_size_names_the_axis(affine):
    with pytest.raises(ValidationInputError, match=r"expects size 4 on axis 1 \[batch, 4\] but got shape \(16, 3\)"):
        validate_model(affine, {"x": sample_x()[:, :3]})


def test_a_list_instead_of_an_array_is_reported(affine):
    with pytest.raises(ValidationInputError, match=r"should be a NumPy array but got a list"):
        validate_model(affine, {"x": sample_x().tolist()})


def test_a_reference_with_the_wrong_number_of_outputs_is_reported(affine):
    with pytest.raises(ValidationInputError, match=r"the reference returned 2 arrays for the 1 outputs \['y'\]"):
        validate_model(affine, {"x": sample_x()}, lambda feeds: affine_reference(feeds) * 2)


def test_input_errors_carry_no_chained_traceback(tmp_path):
    (tmp_path / "cut.onnx").write_bytes(b"\x08\x0a\x12")
    with pytest.raises(ValidationInputError) as caught:
        validate_model(tmp_path / "cut.onnx")
    assert caught.value.__cause__ is None and caught.value.__suppress_context__
    assert "\n" not in str(caught.value)


# Reports

def test_result_renders_as_text_and_markdown(affine):
    result = validate_model(affine, {"x": sample_x()}, affine_reference, name="affine")
    text = result.to_text()
    assert text.splitlines()[0] == f"affine ({affine}): pass"
    assert "batch 16" in text and "max abs diff" in text
    markdown = result._repr_markdown_()
    assert markdown.startswith("**affine**") and "| batch 3 | ✅ ok | 3 |" in markdown


def test_many_models_make_one_table_and_bad_input_becomes_a_row(affine, tmp_path):
    table = validate_models([affine, tmp_path / "gone.onnx"], fp16=False)
    assert isinstance(table, ValidationTable) and len(table.results) == 2
    lines = table.to_text().splitlines()
    assert lines[0].split()[:3] == ["model", "checker", "load"] and len(lines) == 4
    assert "1: ok, 3: ok, 16: ok" in lines[2] and "fail (input)" in lines[3]
    assert table._repr_markdown_().count("\n") == 3
    assert "1: ✅ ok, 3: ✅ ok, 16: ✅ ok" in table._repr_markdown_()
    assert_every_icon_has_a_word(table._repr_markdown_())
    assert_every_icon_has_a_word(table.results[0]._repr_markdown_())


def test_random_feeds_follow_declared_types_and_dynamic_sizes(pooled):
    inputs, _ = model_signatures(onnx.load(str(pooled)))
    feeds = random_feeds(inputs, 5, dim_sizes={"sequence": 7})
    assert feeds["x"].shape == (5, 7, 2) and feeds["x"].dtype == np.float32


def test_describe_model_lists_inputs_outputs_and_dynamic_axes(pooled):
    text = describe_model(pooled)
    assert "ir_version 10" in text and "opsets [ai.onnx 17]" in text
    assert "x                tensor(float)    [batch, sequence, 2]" in text
    assert "dynamic: axis 0 (batch), axis 1 (sequence)" in text


def test_without_a_reference_other_dimension_sizes_must_only_run(pooled):
    x = np.random.default_rng(1).random((4, 6, 2), dtype=np.float32)
    row = validate_model(pooled, {"x": x}, dim_sizes={"sequence": (3,)}, fp16=False).row("sequence 3")
    assert row.status == "ok" and row.detail == "ran (no reference to compare with): 'y' (16, 2)"
    assert row.max_abs_diff is None
