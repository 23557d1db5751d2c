"""The Keras reference models of lab 05 and their tf2onnx exports."""

import ast
import inspect
import os
import subprocess
import sys

import numpy as np
import onnx
import onnxruntime
import pytest

from labsupport.models import ExportedModel, keras_models, load_digits_split


def _session(path):
    return onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _input_dims(path):
    value = onnx.load(str(path)).graph.input[0]
    return [dim.dim_value if dim.HasField("dim_value") else None for dim in value.type.tensor_type.shape.dim]


@pytest.fixture(scope="module")
def data():
    return load_digits_split()


@pytest.fixture(scope="module")
def model():
    return keras_models.train_digits_keras_cnn()


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    return keras_models.exported_digits_keras(tmp_path_factory.mktemp("keras") / "digits_keras.onnx")


def test_tensorflow_log_level_is_set_before_tensorflow_is_imported():
    statements = ast.parse(inspect.getsource(keras_models)).body
    positions = {}
    for index, statement in enumerate(statements):
        source = ast.unparse(statement)
        if "TF_CPP_MIN_LOG_LEVEL" in source:
            positions.setdefault("log_level", index)
        if any(isinstance(node, ast.Import) and any(alias.name == "tensorflow" for alias in node.names)
               for node in ast.walk(statement)):
            positions.setdefault("tensorflow", index)
    assert positions["log_level"] < positions["tensorflow"]


def test_functional_and_sequential_twins_have_the_same_layers():
    functional = keras_models.build_digits_keras_cnn()
    sequential = keras_models.build_digits_keras_cnn(sequential=True)
    assert [layer.name for layer in functional.layers[1:]] == [layer.name for layer in sequential.layers]
    assert [w.shape for w in functional.get_weights()] == [w.shape for w in sequential.get_weights()]
    assert functional.output_names == ["logits"]
    assert type(sequential).__name__ == "Sequential"


def test_building_is_seeded():
    first = keras_models.build_digits_keras_cnn().get_weights()
    second = keras_models.build_digits_keras_cnn().get_weights()
    assert all(np.array_equal(a, b) for a, b in zip(first, second))


def test_trained_model_is_accurate_and_retraining_reuses_the_weights(model, data):
    logits = np.asarray(model(keras_models.digits_images(data.x_test), training=False))
    assert (logits.argmax(axis=1) == data.y_test).mean() > 0.9
    again = keras_models.train_digits_keras_cnn(sequential=True)
    assert again is not model
    assert all(np.array_equal(a, b) for a, b in zip(model.get_weights(), again.get_weights()))


def test_digits_images_are_nhwc(data):
    images = keras_models.digits_images(data.x_test[:3])
    assert images.shape == (3, 8, 8, 1) and images.dtype == np.float32
    assert np.array_equal(images[1, 2, :, 0], data.x_test[1, 16:24])


def test_exported_model_fulfils_the_harness_contract(exported):
    assert isinstance(exported, ExportedModel)
    model = onnx.load(str(exported.path))
    onnx.checker.check_model(model, full_check=True)
    assert model.opset_import[0].version == keras_models.OPSET
    assert [value.name for value in model.graph.input] == ["pixels"]
    assert tuple(exported.output_names) == ("logits",)
    assert dict(exported.dynamic_axes) == {"pixels": (0,)}
    assert exported.sample_feeds["pixels"].shape == (64, 8, 8, 1)
    assert _input_dims(exported.path) == [None, 8, 8, 1]


def test_exported_model_matches_keras_at_several_batch_sizes(exported):
    session = _session(exported.path)
    for batch in (1, 7, 64):
        feeds = {"pixels": exported.sample_feeds["pixels"][:batch]}
        (onnx_logits,) = session.run(None, feeds)
        (keras_logits,) = exported.framework_outputs(feeds)
        assert onnx_logits.shape == (batch, 10)
        np.testing.assert_allclose(onnx_logits, keras_logits, rtol=1e-4, atol=1e-5)


def test_inputs_as_nchw_declares_channels_first_and_keeps_the_numbers(model, data, tmp_path):
    path = keras_models.export_digits_keras(tmp_path / "nchw.onnx", model, inputs_as_nchw=True)
    assert _input_dims(path) == [None, 1, 8, 8]
    images = keras_models.digits_images(data.x_test[:16])
    (onnx_logits,) = _session(path).run(None, {"pixels": np.transpose(images, (0, 3, 1, 2))})
    np.testing.assert_allclose(onnx_logits, np.asarray(model(images, training=False)), rtol=1e-4, atol=1e-5)


def test_importing_keras_models_prints_nothing_even_where_onednn_announces_itself():
    # TF_ENABLE_ONEDNN_OPTS=1 makes any CPU behave like one with VNNI/AMX: TensorFlow 2.21 then prints
    # oneDNN's notice (after absl's preamble) twice while loading, whatever TF_CPP_MIN_LOG_LEVEL says.
    environment = {key: value for key, value in os.environ.items() if not key.startswith("TF_")}
    environment["TF_ENABLE_ONEDNN_OPTS"] = "1"
    code = ("from labsupport.models import keras_models\n"
            "print(len(keras_models.TENSORFLOW_STARTUP_NOTICES))")
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=environment,
                               check=True)
    assert completed.stderr == ""
    assert int(completed.stdout) == 4


def test_holding_back_startup_notices_passes_every_other_line_on(capfd):
    held_back = []
    with keras_models.holding_back_startup_notices(held_back):
        os.write(2, b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
                    b"I0000 00:00:1796.5   42 port.cc:153] oneDNN custom operations are on. You may see ...\n"
                    b"E0000 00:00:1796.6   42 some_op.cc:12] a real error\n")
    assert capfd.readouterr().err == "E0000 00:00:1796.6   42 some_op.cc:12] a real error\n"
    assert [line[:20] for line in held_back] == ["WARNING: All log mes", "I0000 00:00:1796.5  "]


def test_holding_back_startup_notices_passes_the_captured_lines_on_when_the_import_fails(capfd):
    with pytest.raises(ImportError):
        with keras_models.holding_back_startup_notices([]):
            os.write(2, b"E0000 could not load a library\n")
            raise ImportError("broken")
    assert capfd.readouterr().err == "E0000 could not load a library\n"
