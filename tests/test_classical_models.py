"""labsupport.models.classical_models: the lab-06 builders and the converter gotchas they work around."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime
import pytest

from labsupport.models import ExportedModel
from labsupport.models import classical_models as cm

BUILDERS = {
    "digits_pipeline": cm.exported_digits_pipeline,
    "digits_xgboost": cm.exported_digits_xgboost,
    "digits_lightgbm": cm.exported_digits_lightgbm,
    "mixed_pipeline": cm.exported_mixed_pipeline,
}


@pytest.fixture(scope="module", params=sorted(BUILDERS))
def exported(request, tmp_path_factory) -> ExportedModel:
    return BUILDERS[request.param](tmp_path_factory.mktemp("classical") / f"{request.param}.onnx")


def _session(path):
    return onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def test_exported_model_is_a_valid_self_contained_file(exported):
    assert exported.path.is_file() and not list(exported.path.parent.glob("*.data"))
    onnx.checker.check_model(onnx.load(exported.path), full_check=True)
    assert all(len(feed) == cm.SAMPLE_ROWS for feed in exported.sample_feeds.values())
    assert set(exported.dynamic_axes) == set(exported.sample_feeds)


@pytest.mark.parametrize("rows", [1, 7, 64])
def test_exported_model_matches_its_framework_for_any_batch_size(exported, rows):
    feeds = {name: value[:rows] for name, value in exported.sample_feeds.items()}
    labels, probabilities = _session(exported.path).run(list(exported.output_names), feeds)
    reference_labels, reference_probabilities = exported.framework_outputs(feeds)
    assert labels.dtype == reference_labels.dtype == np.int64
    assert probabilities.dtype == reference_probabilities.dtype == np.float32
    np.testing.assert_array_equal(labels, reference_labels)
    np.testing.assert_allclose(probabilities, reference_probabilities, atol=1e-5)


def test_exported_outputs_are_tensors_in_graph_order(exported):
    outputs = _session(exported.path).get_outputs()
    assert [output.name for output in outputs] == list(exported.output_names) == ["label", "probabilities"]
    assert [output.type for output in outputs] == ["tensor(int64)", "tensor(float)"]


def test_zipmap_makes_probabilities_a_sequence_of_maps():
    pipeline = cm.train_digits_pipeline()
    with_zipmap = _session_of(cm.convert_digits_pipeline(pipeline, zipmap=True))
    assert with_zipmap.get_outputs()[1].type == "seq(map(int64,tensor(float)))"
    rows = with_zipmap.run(None, {"input": cm.load_digits_split().x_test[:2]})[1]
    assert isinstance(rows, list) and sorted(rows[0]) == list(range(10))


def _session_of(model):
    return onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


def test_onnxmltools_refuses_target_opsets_above_15():
    model = cm.train_digits_xgboost(n_estimators=2, max_depth=2)
    with pytest.raises(RuntimeError, match="target_opset 17 is higher"):
        cm.convert_xgboost_classifier(model, target_opset=17)
    assert cm.convert_xgboost_classifier(model, target_opset=15).opset_import


def test_lightgbm_label_shape_is_repaired_to_a_symbolic_batch():
    import onnxmltools
    from onnxmltools.convert.common.data_types import FloatTensorType

    model = cm.train_digits_lightgbm(n_estimators=2, max_depth=2)
    raw = onnxmltools.convert_lightgbm(model, initial_types=[("input", FloatTensorType([None, 64]))], zipmap=False)
    raw_label = next(output for output in raw.graph.output if output.name == "label")
    assert [dim.dim_value for dim in raw_label.type.tensor_type.shape.dim] == [1], "upstream fixed it: drop the repair"
    repaired = cm.convert_lightgbm_classifier(model)
    label = next(output for output in repaired.graph.output if output.name == "label")
    assert label.type.tensor_type.shape.dim[0].dim_param == "N"


def test_mixed_table_is_seeded_and_has_both_classes():
    train, test = cm.make_mixed_table()
    again, _ = cm.make_mixed_table()
    np.testing.assert_array_equal(train.numeric, again.numeric)
    np.testing.assert_array_equal(train.categorical, again.categorical)
    assert train.numeric.dtype == np.float32 and train.categorical.dtype.kind == "U"
    assert len(train) == 600 and len(test) == 200 and 0.2 < train.labels.mean() < 0.8
    assert set(train.categorical[:, 0]) == {"basic", "standard", "premium"}


def test_mixed_onnx_model_has_one_input_per_column_group():
    model = cm.convert_mixed_pipeline()
    inputs = {value.name: value.type.tensor_type.elem_type for value in model.graph.input}
    assert inputs == {"numeric": onnx.TensorProto.FLOAT, "categorical": onnx.TensorProto.STRING}
    assert {"Scaler", "OneHotEncoder", "LinearClassifier"} <= {node.op_type for node in model.graph.node}


def test_lightgbm_thresholds_are_float64_and_the_onnx_node_stores_their_nearest_float32():
    model = cm.train_digits_lightgbm()
    thresholds = np.array([threshold for _, threshold in cm.lightgbm_split_thresholds(model)])
    node = next(node for node in cm.convert_lightgbm_classifier(model).graph.node
                if node.op_type == "TreeEnsembleClassifier")
    attributes = {attribute.name: onnx.helper.get_attribute_value(attribute) for attribute in node.attribute}
    stored = [value for value, mode in zip(attributes["nodes_values"], attributes["nodes_modes"]) if mode != b"LEAF"]
    rounded = thresholds.astype(np.float32).astype(np.float64)
    assert sorted(stored) == sorted(rounded.tolist())
    assert (rounded != thresholds).sum() > len(thresholds) // 2  # most digits thresholds are not float32 values
    assert not (rounded > thresholds).any()  # lab 06: on the digits every one rounds down


def test_a_float32_input_on_a_lightgbm_threshold_rounded_up_takes_the_other_branch_in_onnx():
    import lightgbm

    rng = np.random.default_rng(0)
    features = rng.normal(size=(2000, 4)).astype(np.float32)
    labels = (features[:, 0] + features[:, 1] * features[:, 2] > 0).astype(int)
    model = lightgbm.LGBMClassifier(n_estimators=20, max_depth=3, random_state=0, n_jobs=1, verbose=-1)
    model.fit(features.astype(np.float64), labels)
    rounded_up = [(feature, np.float32(threshold)) for feature, threshold in cm.lightgbm_split_thresholds(model)
                  if float(np.float32(threshold)) > threshold]
    assert rounded_up, "continuous features give thresholds that round up"
    on_thresholds = np.repeat(features[:1], len(rounded_up), axis=0)
    for row, (feature, value) in enumerate(rounded_up):
        on_thresholds[row, feature] = value
    onnx_model = cm.convert_lightgbm_classifier(model, n_features=4)
    onnx_probabilities = _session_of(onnx_model).run(None, {"input": on_thresholds})[1]
    assert np.abs(onnx_probabilities - model.predict_proba(on_thresholds)).max() > 1e-3
