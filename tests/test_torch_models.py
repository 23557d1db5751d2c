"""The PyTorch reference models of lab 04: seeded, exportable with dynamic axes, and in parity."""

import numpy as np
import onnx
import onnxruntime
import pytest
import torch

from labsupport.models import ExportedModel, torch_models


@pytest.fixture(scope="module")
def digits_cnn(tmp_path_factory):
    return torch_models.exported_digits_cnn(tmp_path_factory.mktemp("cnn") / "digits_cnn.onnx")


@pytest.fixture(scope="module")
def sequence_model(tmp_path_factory):
    return torch_models.exported_sequence_model(tmp_path_factory.mktemp("sequence") / "token_classifier.onnx")


def _session(exported: ExportedModel):
    return onnxruntime.InferenceSession(str(exported.path), providers=["CPUExecutionProvider"])


def _symbolic_axes(value) -> list[int]:
    return [axis for axis, dim in enumerate(value.type.tensor_type.shape.dim) if not dim.HasField("dim_value")]


def test_build_digits_cnn_is_seeded_and_maps_images_to_ten_logits():
    first, second = torch_models.build_digits_cnn(), torch_models.build_digits_cnn()
    for a, b in zip(first.parameters(), second.parameters()):
        assert torch.equal(a, b)
    with torch.no_grad():
        assert first(torch.zeros(5, 1, 8, 8)).shape == (5, 10)


def test_training_works_inside_no_grad_and_restores_the_thread_count():
    threads = torch.get_num_threads()
    with torch.no_grad():
        model = torch_models.train_sequence_model(epochs=2)
    assert not model.training
    assert torch.get_num_threads() == threads


def test_sequence_data_is_deterministic_int64_and_uses_both_labels():
    tokens, labels = torch_models.make_sequence_data(count=200, length=9)
    again, _ = torch_models.make_sequence_data(count=200, length=9)
    assert tokens.dtype == np.int64 and tokens.shape == (200, 9) and np.array_equal(tokens, again)
    assert tokens.min() >= 0 and tokens.max() < torch_models.SEQUENCE_VOCABULARY
    assert 0.2 < labels.mean() < 0.8


def test_digits_cnn_export_is_one_file_with_the_declared_interface(digits_cnn):
    assert digits_cnn.path.is_file() and not digits_cnn.path.with_name(digits_cnn.path.name + ".data").exists()
    model = onnx.load(str(digits_cnn.path))
    onnx.checker.check_model(model, full_check=True)
    assert [value.name for value in model.graph.input] == ["pixels"]
    assert [value.name for value in model.graph.output] == list(digits_cnn.output_names) == ["logits"]
    assert _symbolic_axes(model.graph.input[0]) == [0]
    assert dict(digits_cnn.dynamic_axes) == {"pixels": (0,)}
    assert digits_cnn.sample_feeds["pixels"].shape == (64, 1, 8, 8)
    assert digits_cnn.sample_feeds["pixels"].dtype == np.float32


@pytest.mark.parametrize("batch", [1, 17, 64])
def test_digits_cnn_matches_eager_pytorch_at_several_batch_sizes(digits_cnn, batch):
    feeds = {"pixels": digits_cnn.sample_feeds["pixels"][:batch]}
    (onnx_logits,) = _session(digits_cnn).run(None, feeds)
    (torch_logits,) = digits_cnn.framework_outputs(feeds)
    assert onnx_logits.shape == (batch, 10)
    np.testing.assert_allclose(onnx_logits, torch_logits, rtol=1e-4, atol=1e-4)


def test_digits_cnn_is_trained(digits_cnn):
    from labsupport.models import load_digits_split

    data = load_digits_split()
    (logits,) = digits_cnn.framework_outputs({"pixels": data.x_test.reshape(-1, 1, 8, 8)})
    assert (logits.argmax(axis=1) == data.y_test).mean() > 0.9


def test_sequence_model_has_dynamic_batch_and_sequence(sequence_model):
    model = onnx.load(str(sequence_model.path))
    onnx.checker.check_model(model, full_check=True)
    tokens = model.graph.input[0]
    assert tokens.name == "tokens" and tokens.type.tensor_type.elem_type == onnx.TensorProto.INT64
    assert _symbolic_axes(tokens) == [0, 1]
    assert dict(sequence_model.dynamic_axes) == {"tokens": (0, 1)}
    assert sequence_model.sample_feeds["tokens"].shape[0] >= 16


@pytest.mark.parametrize(("batch", "length"), [(1, 1), (5, 3), (64, 12)])
def test_sequence_model_matches_eager_pytorch_on_sliced_shapes(sequence_model, batch, length):
    feeds = {"tokens": sequence_model.sample_feeds["tokens"][:batch, :length]}
    (onnx_logits,) = _session(sequence_model).run(None, feeds)
    (torch_logits,) = sequence_model.framework_outputs(feeds)
    assert onnx_logits.shape == (batch, 2)
    np.testing.assert_allclose(onnx_logits, torch_logits, rtol=1e-4, atol=1e-4)


def test_sequence_model_runs_longer_sequences_than_it_was_exported_with(sequence_model):
    tokens, _ = torch_models.make_sequence_data(count=3, length=50, seed=5)
    (onnx_logits,) = _session(sequence_model).run(None, {"tokens": tokens})
    np.testing.assert_allclose(onnx_logits, sequence_model.framework_outputs({"tokens": tokens})[0],
                               rtol=1e-4, atol=1e-4)


@pytest.fixture(scope="module")
def scale_to_unit_path(tmp_path_factory):
    return torch_models.export_scale_to_unit(tmp_path_factory.mktemp("loop") / "scale_to_unit.onnx")


def test_scale_to_unit_export_keeps_the_loop_with_a_dynamic_batch(scale_to_unit_path):
    model = onnx.load(str(scale_to_unit_path))
    onnx.checker.check_model(model, full_check=True)
    assert "Loop" in [node.op_type for node in model.graph.node]
    assert [value.name for value in model.graph.input] == ["pixels"]
    assert [value.name for value in model.graph.output] == ["scaled"]
    assert _symbolic_axes(model.graph.input[0]) == [0]


@pytest.mark.parametrize(("batch", "scale"), [(1, 1.0), (4, 16.0), (9, 255.0), (2, 1000.0)])
def test_scale_to_unit_export_halves_as_often_as_eager_pytorch(scale_to_unit_path, batch, scale):
    pixels = (np.random.default_rng(batch).random((batch, 1, 8, 8)) * scale).astype(np.float32)
    session = onnxruntime.InferenceSession(str(scale_to_unit_path), providers=["CPUExecutionProvider"])
    (scaled,) = session.run(None, {"pixels": pixels})
    with torch.no_grad():
        eager = torch_models.ScaleToUnitLoop()(torch.from_numpy(pixels)).numpy()
    assert scaled.max() <= 1 and np.array_equal(scaled, eager)
