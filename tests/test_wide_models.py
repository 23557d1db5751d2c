"""labsupport.models.wide_models: lab 10's wide MLP is big, seeded, quick to train and exports cleanly."""

import numpy as np
import onnx
import pytest
import torch

from labsupport.models import load_digits_split, wide_models
from labsupport.onnx_tools import cpu_session


@pytest.fixture(scope="module")
def data():
    return load_digits_split()


@pytest.fixture(scope="module")
def trained(data):
    fit, _ = wide_models.hold_out_calibration(data)
    return wide_models.train_wide_mlp(fit)


@pytest.fixture(scope="module")
def exported(trained, tmp_path_factory):
    return wide_models.export_wide_mlp(tmp_path_factory.mktemp("wide") / "wide.onnx", trained)


def test_wide_mlp_has_over_a_hundred_thousand_parameters_in_named_layers():
    model = wide_models.build_wide_mlp()
    assert wide_models.count_parameters(model) == 64 * 384 + 384 + 384 * 256 + 256 + 256 * 10 + 10 >= 100_000
    assert [name for name, _ in model.named_children()] == ["hidden1", "relu1", "hidden2", "relu2", "classifier"]


def test_build_is_seeded():
    first, second = wide_models.build_wide_mlp(), wide_models.build_wide_mlp()
    assert all(torch.equal(a, b) for a, b in zip(first.parameters(), second.parameters()))


def test_hold_out_keeps_the_test_set_and_splits_the_training_images(data):
    fit, calibration = wide_models.hold_out_calibration(data, 100)
    assert len(fit.x_train) + len(calibration) == len(data.x_train) and len(calibration) == 100
    assert np.array_equal(calibration, data.x_train[-100:]) and len(fit.y_train) == len(fit.x_train)
    assert fit.x_test is data.x_test and fit.y_test is data.y_test


@pytest.mark.parametrize("count", [0, 5000])
def test_hold_out_refuses_an_impossible_count(data, count):
    with pytest.raises(ValueError, match="count must be between 1 and"):
        wide_models.hold_out_calibration(data, count)


def test_training_is_deterministic_and_restores_the_thread_count(data):
    threads = torch.get_num_threads()
    first = wide_models.train_wide_mlp(data, epochs=1)
    second = wide_models.train_wide_mlp(data, epochs=1)
    assert torch.get_num_threads() == threads and not first.training
    assert all(torch.equal(a, b) for a, b in zip(first.parameters(), second.parameters()))


def test_trained_model_classifies_the_test_digits(trained, data):
    with torch.no_grad():
        predictions = trained(torch.from_numpy(data.x_test)).argmax(dim=1).numpy()
    assert (predictions == data.y_test).mean() > 0.9


def test_export_is_one_file_of_gemm_and_relu_with_a_dynamic_batch(exported):
    assert not exported.with_name(exported.name + ".data").exists()
    model = onnx.load(str(exported))
    onnx.checker.check_model(model, full_check=True)
    assert [node.op_type for node in model.graph.node] == ["Gemm", "Relu", "Gemm", "Relu", "Gemm"]
    assert [value.name for value in model.graph.input] == ["pixels"]
    assert [value.name for value in model.graph.output] == ["logits"]
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param
    assert {tensor.name for tensor in model.graph.initializer} >= {"hidden1.weight", "classifier.bias"}


def test_export_keeps_the_exporter_node_metadata_the_lab_strips(exported):
    assert all(node.metadata_props for node in onnx.load(str(exported)).graph.node)


def test_export_matches_eager_pytorch(exported, trained, data):
    pixels = data.x_test[:33]
    with torch.no_grad():
        expected = trained(torch.from_numpy(pixels)).numpy()
    np.testing.assert_allclose(cpu_session(exported).run(None, {"pixels": pixels})[0], expected, rtol=1e-4, atol=1e-5)
