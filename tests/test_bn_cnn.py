"""The models of lab 09: the digits CNN with BatchNorm (trained, exportable with or without its
BatchNorm nodes) and the BERT-style encoder layer (seeded, exportable both ways, in parity)."""

import warnings

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from labsupport.models import bn_cnn, load_digits_split
from labsupport.optimize import op_histogram


@pytest.fixture(scope="module")
def trained():
    data = load_digits_split()
    return data, bn_cnn.train_bn_cnn(data)


@pytest.fixture(scope="module")
def encoder_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("encoder")
    layer = bn_cnn.build_encoder_layer()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the builders silence the exporters' notices themselves
        return {"torchscript": bn_cnn.export_encoder_layer(folder / "torchscript.onnx", layer, dynamo=False),
                "dynamo": bn_cnn.export_encoder_layer(folder / "dynamo.onnx", layer, dynamo=True)}


def _run(path, feeds):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, feeds)[0]


def test_build_bn_cnn_is_seeded_and_has_two_batchnorm_layers():
    first, second = bn_cnn.build_bn_cnn(), bn_cnn.build_bn_cnn()
    for a, b in zip(first.parameters(), second.parameters()):
        assert torch.equal(a, b)
    assert sum(isinstance(layer, torch.nn.BatchNorm2d) for layer in first) == 2
    with torch.no_grad():
        assert first.eval()(torch.zeros(5, 1, 8, 8)).shape == (5, 10)


def test_training_learns_the_digits_and_fills_the_running_statistics(trained):
    data, model = trained
    assert not model.training
    with torch.no_grad():
        predicted = model(torch.from_numpy(data.x_test.reshape(-1, 1, 8, 8))).argmax(1).numpy()
    assert (predicted == data.y_test).mean() > 0.9
    for norm in (model[1], model[5]):
        assert not torch.allclose(norm.running_var, torch.ones_like(norm.running_var))
        assert not torch.allclose(norm.running_mean, torch.zeros_like(norm.running_mean))


def test_training_restores_the_thread_count_and_works_inside_no_grad():
    threads = torch.get_num_threads()
    with torch.no_grad():
        model = bn_cnn.train_bn_cnn(epochs=1)
    assert torch.get_num_threads() == threads and not model.training


def test_export_keeps_or_folds_the_batchnorm_nodes_and_matches_pytorch(trained, tmp_path):
    data, model = trained
    images = data.x_test[:32].reshape(-1, 1, 8, 8)
    with torch.no_grad():
        expected = model(torch.from_numpy(images)).numpy()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        kept = bn_cnn.export_bn_cnn(tmp_path / "kept.onnx", model)
        folded = bn_cnn.export_bn_cnn(tmp_path / "folded.onnx", model, keep_batchnorm=False)
    assert op_histogram(onnx.load(str(kept)))["BatchNormalization"] == 2
    assert "BatchNormalization" not in op_histogram(onnx.load(str(folded)))
    for path in (kept, folded):
        onnx.checker.check_model(str(path), full_check=True)
        np.testing.assert_allclose(_run(path, {"pixels": images}), expected, rtol=1e-4, atol=1e-5)


def test_padding_mask_puts_ones_on_the_tokens_and_refuses_an_unknown_side():
    np.testing.assert_array_equal(bn_cnn.padding_mask([3, 1], 4), [[1, 1, 1, 0], [1, 0, 0, 0]])
    np.testing.assert_array_equal(bn_cnn.padding_mask([3, 1], 4, side="left"), [[0, 1, 1, 1], [0, 0, 0, 1]])
    with pytest.raises(ValueError, match="pass 'right'"):
        bn_cnn.padding_mask([1], 2, side="middle")


def test_encoder_feeds_are_seeded_and_padded_on_the_side_asked():
    right, left = bn_cnn.encoder_feeds(), bn_cnn.encoder_feeds(side="left")
    np.testing.assert_array_equal(right["x"], left["x"])
    assert right["mask"].dtype == np.int64 and right["mask"][0].all()
    np.testing.assert_array_equal(right["mask"].sum(axis=1), left["mask"].sum(axis=1))
    assert (right["mask"][1:, -1] == 0).all() and (left["mask"][1:, 0] == 0).all()


def test_encoder_layer_masks_padded_positions():
    layer = bn_cnn.build_encoder_layer()
    feeds = bn_cnn.encoder_feeds()
    changed = {"x": feeds["x"].copy(), "mask": feeds["mask"]}
    padded_row, padded_position = 1, feeds["mask"].shape[1] - 1
    assert feeds["mask"][padded_row, padded_position] == 0
    changed["x"][padded_row, padded_position] += 10.0
    before, after = bn_cnn.encoder_outputs(layer, feeds), bn_cnn.encoder_outputs(layer, changed)
    np.testing.assert_allclose(after[padded_row, :padded_position], before[padded_row, :padded_position], atol=1e-5)


def test_encoder_layer_rejects_a_hidden_size_heads_do_not_divide():
    with pytest.raises(ValueError, match="not a multiple of the number of heads"):
        bn_cnn.EncoderLayer(hidden=10, heads=4)


def test_both_encoder_exports_have_dynamic_axes_and_match_pytorch(encoder_files):
    layer = bn_cnn.build_encoder_layer()
    for side in ("right", "left"):
        feeds = bn_cnn.encoder_feeds(side=side, batch=3, sequence=11, seed=2)
        expected = bn_cnn.encoder_outputs(layer, feeds)
        for path in encoder_files.values():
            np.testing.assert_allclose(_run(path, feeds), expected, rtol=1e-4, atol=1e-5)
    for path in encoder_files.values():
        model = onnx.load(str(path))
        onnx.checker.check_model(model, full_check=True)
        assert [value.name for value in model.graph.input] == ["x", "mask"]
        for value in model.graph.input:
            dims = value.type.tensor_type.shape.dim
            assert not dims[0].HasField("dim_value") and not dims[1].HasField("dim_value")


def test_the_two_exports_write_the_mask_path_differently(encoder_files):
    counts = {name: op_histogram(onnx.load(str(path))) for name, path in encoder_files.items()}
    assert counts["torchscript"]["Unsqueeze"] > counts["dynamo"]["Unsqueeze"] == 1
    assert counts["dynamo"]["LayerNormalization"] == counts["torchscript"]["LayerNormalization"] == 2
