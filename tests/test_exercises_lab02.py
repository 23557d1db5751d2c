"""Lab 02's exercises: every reference answer passes, realistic slips fail with a useful message."""

from __future__ import annotations

import inspect
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from labsupport.checking import ____
from labsupport.exercises import lab02
from labsupport.testing import assert_check_failed, assert_check_passed, assert_check_unattempted, solution_answer

# ---------------------------------------------------------------------------
# Reference answers: each problem's declared solution, run
# ---------------------------------------------------------------------------

read_metadata = solution_answer(lab02.ReadMetadata)
flat_index = solution_answer(lab02.FlatIndex)
row_major_strides = solution_answer(lab02.RowMajorStrides)


def probabilities_info(key_type=TensorProto.INT64, value_type=TensorProto.FLOAT, name="probabilities"):
    value = helper.make_tensor_type_proto(value_type, [])
    return helper.make_value_info(name, helper.make_sequence_type_proto(helper.make_map_type_proto(key_type, value)))


def affine_model(*, opset=21, batch="batch", ops=("MatMul", "Add", "Relu"), weight=None, features=3,
                 weights_as_inputs=False):
    """The affine model with one knob per realistic slip; the defaults give the right answer."""
    reference_weight, bias = lab02.affine_weights()
    weight = reference_weight if weight is None else weight
    names = {"MatMul": (["x", "W"], "xW"), "Add": (["xW", "b"], "z"), "Relu": (["z"], "y")}
    nodes = []
    for position, op_type in enumerate(ops):
        inputs, output = names[op_type]
        if position > 0:
            inputs = [nodes[-1].output[0]] + inputs[1:]
        nodes.append(helper.make_node(op_type, inputs, ["y" if position == len(ops) - 1 else output]))
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, features])]
    initializers = [numpy_helper.from_array(weight, "W"), numpy_helper.from_array(bias, "b")]
    if weights_as_inputs:
        inputs += [helper.make_tensor_value_info("W", TensorProto.FLOAT, [3, 2]),
                   helper.make_tensor_value_info("b", TensorProto.FLOAT, [2])]
        initializers = []
    graph = helper.make_graph(nodes, "affine", inputs,
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, 2])],
                              initializer=initializers)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


@pytest.fixture
def wide_model():
    return lab02.build_wide_model()


# ---------------------------------------------------------------------------
# q1 ReadMetadata
# ---------------------------------------------------------------------------

def test_read_metadata_reference_passes():
    assert_check_passed(lab02.ReadMetadata, {"read_metadata": read_metadata})


def test_read_metadata_taking_the_first_opset_entry_is_reported():
    def first_entry(model):
        return model.ir_version, model.producer_name, model.opset_import[0].version

    assert_check_failed(lab02.ReadMetadata, {"read_metadata": first_entry},
                        "wrong opset for a model that imports a custom domain before the default one")


def test_read_metadata_ignoring_the_ai_onnx_spelling_is_reported():
    def empty_domain_only(model):
        return model.ir_version, model.producer_name, next(e.version for e in model.opset_import if e.domain == "")

    assert_check_failed(lab02.ReadMetadata, {"read_metadata": empty_domain_only},
                        "raised StopIteration for a model that spells the default domain 'ai.onnx'")


def test_read_metadata_returning_producer_version_is_reported():
    def producer_version(model):
        return model.ir_version, model.producer_version, read_metadata(model)[2]

    assert_check_failed(lab02.ReadMetadata, {"read_metadata": producer_version}, "wrong producer_name")


def test_read_metadata_missing_return_and_wrong_kind_are_reported():
    assert_check_failed(lab02.ReadMetadata, {"read_metadata": lambda model: None}, "forget a `return`")
    assert_check_failed(lab02.ReadMetadata, {"read_metadata": lambda model: model.ir_version}, "tuple of three items")
    assert_check_failed(lab02.ReadMetadata, {"read_metadata": None}, "should be a function")


def test_read_metadata_string_version_is_reported():
    def as_strings(model):
        ir_version, producer, opset = read_metadata(model)
        return str(ir_version), producer, opset

    assert_check_failed(lab02.ReadMetadata, {"read_metadata": as_strings}, "returns a str as ir_version")


def test_read_metadata_placeholder_is_not_attempted():
    assert_check_unattempted(lab02.ReadMetadata)
    assert_check_unattempted(lab02.ReadMetadata, {"read_metadata": lambda model: ____})


# ---------------------------------------------------------------------------
# q2 CountParameters
# ---------------------------------------------------------------------------

def test_count_parameters_reference_passes():
    shapes = [(32, 64), (32,), (10, 32), (10,)]  # the exported MLP's initializers
    assert_check_passed(lab02.CountParameters, {"parameter_count": sum(int(np.prod(s)) for s in shapes)})


@pytest.mark.parametrize("wrong, fragment", [
    (4, "is too small"),  # the number of initializers
    (2410 * 4, "is too large"),  # bytes instead of values
    (64 * 32 + 32 * 10, "is too small"),  # biases forgotten
    ("2410", "should be a number"),
])
def test_count_parameters_slips_are_reported(wrong, fragment):
    assert_check_failed(lab02.CountParameters, {"parameter_count": wrong}, fragment)


def test_count_parameters_placeholder_is_not_attempted():
    assert_check_unattempted(lab02.CountParameters)


# ---------------------------------------------------------------------------
# q3 ProbabilitiesType
# ---------------------------------------------------------------------------

def test_probabilities_type_reference_passes():
    assert_check_passed(lab02.ProbabilitiesType, {"probabilities_info": probabilities_info()})


@pytest.mark.parametrize("answer, fragment", [
    (helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", 10]), "declares a tensor"),
    (helper.make_value_info("probabilities", helper.make_map_type_proto(
        TensorProto.INT64, helper.make_tensor_type_proto(TensorProto.FLOAT, []))), "declares a map"),
    (helper.make_value_info("probabilities", helper.make_sequence_type_proto(
        helper.make_tensor_type_proto(TensorProto.FLOAT, []))), "elements are a tensor"),
    (probabilities_info(key_type=TensorProto.STRING), "map keys are STRING"),
    (probabilities_info(value_type=TensorProto.DOUBLE), "element type DOUBLE; expected FLOAT"),
    (probabilities_info(name="output_probability"), "named 'output_probability'"),
    (probabilities_info().type, "wrap it with a name"),
    (None, "should be an onnx.ValueInfoProto"),
])
def test_probabilities_type_slips_are_reported(answer, fragment):
    assert_check_failed(lab02.ProbabilitiesType, {"probabilities_info": answer}, fragment)


def test_probabilities_type_placeholder_is_not_attempted():
    assert_check_unattempted(lab02.ProbabilitiesType)


# ---------------------------------------------------------------------------
# q4 Float16Bytes
# ---------------------------------------------------------------------------

def test_float16_bytes_reference_passes():
    raw = numpy_helper.from_array(np.zeros((3, 224, 224), np.float16)).raw_data
    assert_check_passed(lab02.Float16Bytes, {"float16_code": TensorProto.FLOAT16, "float16_bytes": len(raw)})


def test_float16_bytes_float32_code_is_named():
    assert_check_failed(lab02.Float16Bytes, {"float16_code": TensorProto.FLOAT, "float16_bytes": 301056},
                        "is the code of FLOAT, not of FLOAT16")


def test_float16_bytes_unknown_code_is_reported():
    assert_check_failed(lab02.Float16Bytes, {"float16_code": 99, "float16_bytes": 301056},
                        "is not an element-type code at all")


def test_float16_bytes_four_bytes_per_element_is_too_large():
    assert_check_failed(lab02.Float16Bytes, {"float16_code": 10, "float16_bytes": 3 * 224 * 224 * 4},
                        "`float16_bytes` = 602112 is too large")


def test_float16_bytes_element_count_is_too_small():
    assert_check_failed(lab02.Float16Bytes, {"float16_code": 10, "float16_bytes": 3 * 224 * 224},
                        "`float16_bytes` = 150528 is too small")


def test_float16_bytes_dtype_instead_of_code_is_reported():
    assert_check_failed(lab02.Float16Bytes, {"float16_code": np.float16, "float16_bytes": 301056},
                        "`float16_code` should be a number")


def test_float16_bytes_placeholder_is_not_attempted():
    assert_check_unattempted(lab02.Float16Bytes)
    assert_check_unattempted(lab02.Float16Bytes, {"float16_code": 10, "float16_bytes": ____})


# ---------------------------------------------------------------------------
# q5 FlatIndex
# ---------------------------------------------------------------------------

def test_flat_index_reference_passes():
    assert_check_passed(lab02.FlatIndex, {"flat_index": flat_index})


def test_flat_index_cases_agree_with_numpy():
    for (shape, index), expected in lab02.FlatIndex.test_cases:
        assert int(np.arange(int(np.prod(shape))).reshape(shape)[index]) == expected


def test_flat_index_column_major_is_reported():
    def column_major(shape, index):
        offset = 0
        for size, position in zip(reversed(shape), reversed(index)):
            offset = offset * size + position
        return offset

    assert_check_failed(lab02.FlatIndex, {"flat_index": column_major}, "`flat_index((3, 4), (2, 1))` = 5 is too small")


def test_flat_index_strides_off_by_one_axis_is_reported():
    def own_size_as_stride(shape, index):
        return sum(position * size for position, size in zip(index, shape))

    assert_check_failed(lab02.FlatIndex, {"flat_index": own_size_as_stride}, "`flat_index((5,), (3,))`")


def test_flat_index_missing_return_is_reported():
    def no_return(shape, index):
        int(np.ravel_multi_index(index, shape))

    assert_check_failed(lab02.FlatIndex, {"flat_index": no_return}, "Did you forget a `return` statement?")


def test_flat_index_numpy_ravel_multi_index_is_accepted():
    assert_check_passed(lab02.FlatIndex, {"flat_index": lambda shape, index: np.ravel_multi_index(index, shape)})


def test_flat_index_placeholder_is_not_attempted():
    assert_check_unattempted(lab02.FlatIndex)
    assert_check_unattempted(lab02.FlatIndex, {"flat_index": lambda shape, index: ____})


# ---------------------------------------------------------------------------
# q6 RowMajorStrides
# ---------------------------------------------------------------------------

def test_row_major_strides_reference_passes():
    assert_check_passed(lab02.RowMajorStrides, {"row_major_strides": row_major_strides})


def test_row_major_strides_cases_come_from_numpy():
    assert (((2, 3, 4), 4), (48, 16, 4)) in list(lab02.RowMajorStrides().cases())


def test_row_major_strides_in_elements_are_reported():
    def in_elements(shape, itemsize):
        return tuple(stride // itemsize for stride in row_major_strides(shape, itemsize))

    assert_check_failed(lab02.RowMajorStrides, {"row_major_strides": in_elements},
                        "(2, 3, 4), 4)` = 12 is too small")


def test_row_major_strides_column_major_is_reported():
    def column_major(shape, itemsize):
        return tuple(reversed(row_major_strides(tuple(reversed(shape)), itemsize)))

    assert_check_failed(lab02.RowMajorStrides, {"row_major_strides": column_major},
                        "(2, 3, 4), 4)` = 4 is too small")


def test_row_major_strides_list_of_wrong_length_is_reported():
    assert_check_failed(lab02.RowMajorStrides, {"row_major_strides": lambda shape, itemsize: [itemsize]},
                        "has 1 items; expected 3")


def test_row_major_strides_placeholder_is_not_attempted():
    assert_check_unattempted(lab02.RowMajorStrides)


# ---------------------------------------------------------------------------
# q7 BuildAffineModel
# ---------------------------------------------------------------------------

def test_build_affine_model_reference_passes():
    assert_check_passed(lab02.BuildAffineModel, {"affine_model": affine_model()})
    assert_check_passed(lab02.BuildAffineModel, {"affine_model": lab02.reference_affine_model()})


def test_build_affine_model_wrong_opset_is_reported_with_expected_value():
    assert_check_failed(lab02.BuildAffineModel, {"affine_model": affine_model(opset=13)},
                        "imports opset 13 of the default domain; this exercise asks for opset 21")


def test_build_affine_model_fixed_batch_is_reported():
    assert_check_failed(lab02.BuildAffineModel, {"affine_model": affine_model(batch=1)},
                        "has a fixed size 1 on axis 0")


def test_build_affine_model_missing_relu_is_reported():
    assert_check_failed(lab02.BuildAffineModel, {"affine_model": affine_model(ops=("MatMul", "Add"))},
                        "has no Relu node")


def test_build_affine_model_transposed_weight_fails_the_checker():
    weight, _ = lab02.affine_weights()
    assert_check_failed(lab02.BuildAffineModel, {"affine_model": affine_model(weight=np.ascontiguousarray(weight.T))},
                        "does not pass `onnx.checker.check_model`")


def test_build_affine_model_wrong_weights_are_caught_by_running_it():
    weight, _ = lab02.affine_weights()
    assert_check_failed(lab02.BuildAffineModel, {"affine_model": affine_model(weight=-weight)},
                        "output 'y'` has the right shape, but its values differ")


def test_build_affine_model_weights_as_graph_inputs_are_reported():
    assert_check_failed(lab02.BuildAffineModel, {"affine_model": affine_model(weights_as_inputs=True)},
                        "has no initializer named 'W'")


def test_build_affine_model_wrong_output_width_fails_shape_inference():
    model = affine_model()
    model.graph.output[0].type.tensor_type.shape.dim[1].dim_value = 3
    assert_check_failed(lab02.BuildAffineModel, {"affine_model": model}, "Inferred shape and existing shape differ")


def test_build_affine_model_symbolic_feature_axis_is_reported():
    assert_check_failed(lab02.BuildAffineModel, {"affine_model": affine_model(features="features")},
                        "'x' does not declare size 3 on axis 1")


def test_build_affine_model_extra_graph_input_is_reported():
    model = affine_model()
    model.graph.input.append(helper.make_tensor_value_info("scale", TensorProto.FLOAT, [1]))
    assert_check_failed(lab02.BuildAffineModel, {"affine_model": model}, "has 2 graph inputs; expected 1")


def test_build_affine_model_graph_instead_of_model_is_reported():
    assert_check_failed(lab02.BuildAffineModel, {"affine_model": affine_model().graph},
                        "should be an onnx.ModelProto")


def test_build_affine_model_placeholder_is_not_attempted():
    assert_check_unattempted(lab02.BuildAffineModel)


# ---------------------------------------------------------------------------
# q8 SaveWithExternalData
# ---------------------------------------------------------------------------

@pytest.fixture
def lab02_dir(tmp_path, monkeypatch):
    """The notebook's `lab02_dir`, artifacts/02 under the working directory, in a scratch working directory."""
    from labsupport import artifacts_dir

    monkeypatch.chdir(tmp_path)
    return artifacts_dir("02")


def test_save_with_external_data_reference_passes(lab02_dir, wide_model):
    wide_path = solution_answer(lab02.SaveWithExternalData, onnx=onnx, lab02_dir=lab02_dir, wide_model=wide_model)
    assert wide_path.parent == lab02_dir
    assert_check_passed(lab02.SaveWithExternalData, {"wide_path": wide_path})
    assert_check_passed(lab02.SaveWithExternalData, {"wide_path": str(wide_path)})
    assert_check_passed(lab02.SaveWithExternalData, {"wide_path": wide_path.resolve()})


def test_save_with_external_data_outside_lab02_dir_is_told_to_save_in_lab02_dir(lab02_dir, wide_model):
    wide_path = Path("wide_external.onnx")  # the working directory, not lab02_dir: a learner's typical slip
    onnx.save_model(wide_model, wide_path, save_as_external_data=True, location="wide_external.onnx.data")
    assert_check_failed(lab02.SaveWithExternalData, {"wide_path": wide_path},
                        "but the exercise asks for the folder `lab02_dir`")


def test_save_with_external_data_in_a_subfolder_of_lab02_dir_is_not_in_lab02_dir(lab02_dir, wide_model):
    wide_path = lab02_dir / "nested" / "wide_external.onnx"
    wide_path.parent.mkdir()
    onnx.save_model(wide_model, wide_path, save_as_external_data=True, location="wide_external.onnx.data")
    assert_check_failed(lab02.SaveWithExternalData, {"wide_path": wide_path}, "save the model there")


def test_save_with_external_data_again_after_a_save_elsewhere_is_told_to_rebuild_the_model(lab02_dir, wide_model):
    onnx.save_model(wide_model, "wide_external.onnx", save_as_external_data=True, location="wide_external.onnx.data")
    Path("wide_external.onnx.data").unlink()  # what the lab says to do about the FileExistsError
    wide_path = lab02_dir / "wide_external.onnx"
    onnx.save_model(wide_model, wide_path, save_as_external_data=True, location="wide_external.onnx.data")
    assert_check_failed(lab02.SaveWithExternalData, {"wide_path": wide_path},
                        "re-run the cell that builds `wide_model`")


def test_save_with_external_data_inline_weights_are_asked_to_move_out(lab02_dir, wide_model):
    wide_path = lab02_dir / "wide_inline.onnx"
    onnx.save_model(wide_model, wide_path)
    assert_check_failed(lab02.SaveWithExternalData, {"wide_path": wide_path}, "save them as external data")


def test_save_with_external_data_only_the_small_bias_outside_exceeds_the_size_limit(lab02_dir, wide_model):
    from onnx.external_data_helper import set_external_data

    bias = next(tensor for tensor in wide_model.graph.initializer if tensor.name == "bias")
    set_external_data(bias, location="wide_bias_only.onnx.data")
    bias.data_location = onnx.TensorProto.EXTERNAL
    wide_path = lab02_dir / "wide_bias_only.onnx"
    onnx.save_model(wide_model, wide_path)
    assert_check_failed(lab02.SaveWithExternalData, {"wide_path": wide_path}, "this exercise expects at most 16,384")


def test_save_with_external_data_threshold_above_the_weight_is_reported(lab02_dir, wide_model):
    wide_path = lab02_dir / "wide_threshold.onnx"
    onnx.save_model(wide_model, wide_path, save_as_external_data=True, size_threshold=10_000_000)
    assert_check_failed(lab02.SaveWithExternalData, {"wide_path": wide_path}, "keeps its weights inside the file")


def test_save_with_external_data_moved_without_its_data_file_is_reported(lab02_dir, wide_model):
    saved = lab02_dir / "saved" / "wide.onnx"
    saved.parent.mkdir()
    onnx.save_model(wide_model, saved, save_as_external_data=True, location="wide.onnx.data")
    moved = lab02_dir / "wide.onnx"
    moved.write_bytes(saved.read_bytes())
    assert_check_failed(lab02.SaveWithExternalData, {"wide_path": moved}, "Keep the .data file beside the .onnx file")


def test_save_with_external_data_model_instead_of_path_is_reported(wide_model):
    assert_check_failed(lab02.SaveWithExternalData, {"wide_path": wide_model}, "should be the path of an .onnx file")


def test_save_with_external_data_missing_file_is_reported(tmp_path):
    assert_check_failed(lab02.SaveWithExternalData, {"wide_path": tmp_path / "never_saved.onnx"}, "no such file")


def test_save_with_external_data_placeholder_is_not_attempted():
    assert_check_unattempted(lab02.SaveWithExternalData)


# ---------------------------------------------------------------------------
# The module as a whole
# ---------------------------------------------------------------------------

def test_checklist_names_exist_in_the_module():
    assert {"FlatIndex", "BuildAffineModel"} <= {problem.__name__ for problem in lab02.PROBLEMS.values()}
    assert lab02.LAB == "02_format_internals"


def test_reference_affine_model_computes_relu_of_the_affine_map():
    import onnxruntime

    session = onnxruntime.InferenceSession(lab02.reference_affine_model().SerializeToString(),
                                           providers=["CPUExecutionProvider"])
    x = lab02.affine_input()
    (y,) = session.run(None, {"x": x})
    np.testing.assert_allclose(y, lab02.affine_reference(x), rtol=1e-6)
    assert (x @ lab02.affine_weights()[0] + lab02.affine_weights()[1] < 0).any(), "the feed should exercise Relu"



# ---------------------------------------------------------------------------
# What the lab teaches about saving external data, measured on the installed versions
# ---------------------------------------------------------------------------

def _data_file_size(path: Path) -> int:
    return path.with_name(path.name + ".data").stat().st_size


def test_onnx_save_model_appends_to_a_data_file_in_another_folder_than_the_working_directory(lab02_dir):
    path = lab02_dir / "twice.onnx"
    sizes = []
    for _ in range(2):
        onnx.save_model(lab02.build_wide_model(), path, save_as_external_data=True, location="twice.onnx.data")
        sizes.append(_data_file_size(path))
    assert sizes[1] == 2 * sizes[0]
    loaded = onnx.load(path)
    np.testing.assert_array_equal(numpy_helper.to_array(loaded.graph.initializer[0]),
                                  numpy_helper.to_array(lab02.build_wide_model().graph.initializer[0]))


def test_onnx_save_model_raises_file_exists_for_a_data_file_of_that_name_in_the_working_directory(lab02_dir):
    onnx.save_model(lab02.build_wide_model(), "stray.onnx", save_as_external_data=True, location="stray.onnx.data")
    with pytest.raises(FileExistsError):
        onnx.save_model(lab02.build_wide_model(), lab02_dir / "stray.onnx", save_as_external_data=True,
                        location="stray.onnx.data")
    assert not (lab02_dir / "stray.onnx.data").exists()


def test_onnx_save_model_raises_file_exists_on_a_second_save_when_the_working_directory_is_the_model_folder(
        lab02_dir, monkeypatch):
    monkeypatch.chdir(lab02_dir)
    onnx.save_model(lab02.build_wide_model(), "again.onnx", save_as_external_data=True, location="again.onnx.data")
    with pytest.raises(FileExistsError):
        onnx.save_model(lab02.build_wide_model(), "again.onnx", save_as_external_data=True, location="again.onnx.data")


def _export_scale(size: int, path: Path) -> onnx.ModelProto:
    import torch

    from labsupport.models import quiet_exporter_logs

    class Scale(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.scale = torch.nn.Parameter(torch.ones(size))

        def forward(self, x):
            return x * self.scale

    quiet_exporter_logs()
    torch.onnx.export(Scale().eval(), (torch.ones(2, size),), str(path), verbose=False)
    return onnx.load(path, load_external_data=False)


def test_review_answer_states_the_threshold_torch_exports_with(tmp_path):
    import onnx_ir

    threshold = inspect.signature(onnx_ir.save).parameters["size_threshold_bytes"].default
    assert f"larger than {threshold} bytes" in lab02.MissingExternalData.solution
    at_threshold = _export_scale(threshold // 4, tmp_path / "at.onnx")
    above = _export_scale(threshold // 4 + 1, tmp_path / "above.onnx")
    assert at_threshold.graph.initializer[0].data_location == TensorProto.DEFAULT
    assert _data_file_size(tmp_path / "at.onnx") == 0
    assert above.graph.initializer[0].data_location == TensorProto.EXTERNAL
    assert _data_file_size(tmp_path / "above.onnx") == threshold + 4
