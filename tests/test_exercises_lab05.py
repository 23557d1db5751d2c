"""Lab 05's exercises: reference answers pass, wrong answers fail, blanks are not attempted."""

import numpy as np
import pytest

from labsupport.checking import ____
from labsupport.exercises import lab05
from labsupport.testing import assert_check_failed, assert_check_passed, assert_check_unattempted, evaluate

tf = pytest.importorskip("tensorflow")
tf2onnx = pytest.importorskip("tf2onnx")
keras_models = pytest.importorskip("labsupport.models.keras_models")


@pytest.fixture(scope="module")
def trained():
    """The reference functional CNN and its trained Sequential twin."""
    return keras_models.train_digits_keras_cnn(), keras_models.train_digits_keras_cnn(sequential=True)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return tmp_path_factory.mktemp("lab05")


def _convert_function(model, path, *, as_dict=True, batch=None, **options):
    signature = (tf.TensorSpec((batch, 8, 8, 1), tf.float32, name="pixels"),)

    @tf.function(input_signature=signature)
    def predict(pixels):
        logits = model(pixels, training=False)
        return {"logits": logits} if as_dict else logits

    tf2onnx.convert.from_function(predict, input_signature=signature, output_path=str(path), **options)
    return path


# q1 SequentialFromFunction — the Sequential model through a tf.function

def test_sequential_from_function_reference_passes(trained, folder):
    path = _convert_function(trained[1], folder / "sequential.onnx", opset=17)
    assert_check_passed(lab05.SequentialFromFunction, {"sequential_onnx_path": path})


def test_sequential_returning_a_bare_tensor_is_told_to_return_a_dict(trained, folder):
    path = _convert_function(trained[1], folder / "bare.onnx", as_dict=False, opset=17)
    assert_check_failed(lab05.SequentialFromFunction, {"sequential_onnx_path": path}, "Return a dict")


def test_sequential_without_the_opset_is_told_which_opset(trained, folder):
    path = _convert_function(trained[1], folder / "default_opset.onnx")
    assert_check_failed(lab05.SequentialFromFunction, {"sequential_onnx_path": path}, "asks for opset 17")


def test_sequential_with_a_fixed_batch_is_told_to_make_it_dynamic(trained, folder):
    path = _convert_function(trained[1], folder / "fixed.onnx", batch=7, opset=17)
    assert_check_failed(lab05.SequentialFromFunction, {"sequential_onnx_path": path}, "should be dynamic")


def test_sequential_converted_channels_first_is_told_to_keep_nhwc(trained, folder):
    path = _convert_function(trained[1], folder / "nchw.onnx", opset=17, inputs_as_nchw=["pixels"])
    assert_check_failed(lab05.SequentialFromFunction, {"sequential_onnx_path": path}, "channels-last")


def test_sequential_untrained_model_fails_on_its_numbers(folder):
    untrained = keras_models.build_digits_keras_cnn(sequential=True)
    path = _convert_function(untrained, folder / "untrained.onnx", opset=17)
    assert_check_failed(lab05.SequentialFromFunction, {"sequential_onnx_path": path}, "differ from the reference")


def test_sequential_missing_file_is_reported(folder):
    assert_check_failed(lab05.SequentialFromFunction, {"sequential_onnx_path": folder / "nowhere.onnx"}, "no such file")


def test_sequential_placeholder_is_not_attempted():
    assert_check_unattempted(lab05.SequentialFromFunction)


# q2 ChannelsFirst — channels first

def test_channels_first_reference_passes():
    assert_check_passed(lab05.ChannelsFirst, {"to_channels_first": lambda images: np.transpose(images, (0, 3, 1, 2))})


def test_channels_first_by_reshape_is_told_about_memory_order():
    def reshaped(images):
        batch, height, width, channels = images.shape
        return images.reshape(batch, channels, height, width)

    assert_check_failed(lab05.ChannelsFirst, {"to_channels_first": reshaped}, "needs a transpose")


def test_channels_first_with_the_inverse_permutation_fails_on_shape():
    assert_check_failed(lab05.ChannelsFirst, {"to_channels_first": lambda images: np.transpose(images, (0, 2, 3, 1))},
                        "expected (2, 3, 4, 5)")


def test_channels_first_without_return_is_told_about_return():
    def no_return(images):
        np.transpose(images, (0, 3, 1, 2))

    assert_check_failed(lab05.ChannelsFirst, {"to_channels_first": no_return}, "forget a `return`")


def test_channels_first_placeholder_body_is_not_attempted():
    assert_check_unattempted(lab05.ChannelsFirst, {"to_channels_first": lambda images: ____})
    assert_check_unattempted(lab05.ChannelsFirst)


# q3 NchwInputShape — the input shape after inputs_as_nchw

def test_nchw_input_shape_reference_passes():
    assert_check_passed(lab05.NchwInputShape, {"nchw_input_shape": (None, 1, 8, 8)})
    assert_check_passed(lab05.NchwInputShape, {"nchw_input_shape": [None, 1, 8, 8]})


def test_nchw_input_shape_unchanged_nhwc_is_explained():
    assert_check_failed(lab05.NchwInputShape, {"nchw_input_shape": (None, 8, 8, 1)}, "moves the channel axis")


def test_nchw_input_shape_with_a_fixed_batch_fails():
    assert_check_failed(lab05.NchwInputShape, {"nchw_input_shape": (64, 1, 8, 8)}, "should be None")


def test_nchw_input_shape_of_wrong_rank_fails():
    assert_check_failed(lab05.NchwInputShape, {"nchw_input_shape": (1, 8, 8)}, "4 entries")


def test_nchw_input_shape_wrong_order_fails_without_revealing_it():
    result = evaluate(lab05.NchwInputShape, {"nchw_input_shape": (None, 8, 1, 8)})
    assert result.status == "incorrect" and "(None, 1, 8, 8)" not in result.message


def test_nchw_input_shape_placeholder_is_not_attempted():
    assert_check_unattempted(lab05.NchwInputShape)


# q4 NchwExport — a channels-first export with from_keras

def test_nchw_export_reference_passes(trained, folder):
    path = folder / "keras_nchw.onnx"
    tf2onnx.convert.from_keras(trained[0], input_signature=keras_models.digits_input_signature(), opset=17,
                               inputs_as_nchw=["pixels"], output_path=str(path))
    assert_check_passed(lab05.NchwExport, {"nchw_onnx_path": path})


def test_nchw_export_left_channels_last_is_told_to_pass_inputs_as_nchw(trained, folder):
    path = folder / "keras_nhwc.onnx"
    tf2onnx.convert.from_keras(trained[0], input_signature=keras_models.digits_input_signature(), opset=17,
                               output_path=str(path))
    assert_check_failed(lab05.NchwExport, {"nchw_onnx_path": path}, "inputs_as_nchw=['pixels']")


def test_nchw_export_given_a_model_object_instead_of_a_path_fails(trained):
    assert_check_failed(lab05.NchwExport, {"nchw_onnx_path": trained[0]}, "should be the path")


def test_nchw_export_placeholder_is_not_attempted():
    assert_check_unattempted(lab05.NchwExport)


# q5 ParityReport — the parity report

def parity_reference(reference, candidate):
    return (float(np.abs(candidate - reference).max()),
            float((candidate.argmax(axis=1) == reference.argmax(axis=1)).mean()))


def test_parity_report_reference_passes():
    assert_check_passed(lab05.ParityReport, {"parity_report": parity_reference})


def test_parity_report_with_a_signed_difference_fails():
    def signed(reference, candidate):
        return float((candidate - reference).max()), parity_reference(reference, candidate)[1]

    assert_check_failed(lab05.ParityReport, {"parity_report": signed}, "max_abs_diff")


def test_parity_report_messages_put_backticks_around_code_only():
    def signed(reference, candidate):
        return float((candidate - reference).max()), parity_reference(reference, candidate)[1]

    message = evaluate(lab05.ParityReport, {"parity_report": signed}).message
    assert message == "`parity_report` on logits of shape (2, 2): `max_abs_diff` = 0.25 is too small."


def test_parity_report_counting_rows_is_told_to_report_a_fraction():
    def counted(reference, candidate):
        return parity_reference(reference, candidate)[0], int((candidate.argmax(1) == reference.argmax(1)).sum())

    assert_check_failed(lab05.ParityReport, {"parity_report": counted}, "fraction")


def test_parity_report_comparing_argmax_over_the_batch_axis_fails():
    def wrong_axis(reference, candidate):
        return parity_reference(reference, candidate)[0], float((candidate.argmax(0) == reference.argmax(0)).mean())

    assert_check_failed(lab05.ParityReport, {"parity_report": wrong_axis}, "argmax_agreement")


def test_parity_report_returning_one_number_fails():
    assert_check_failed(lab05.ParityReport, {"parity_report": lambda reference, candidate: 0.0}, "two numbers")


def test_parity_report_placeholder_is_not_attempted():
    assert_check_unattempted(lab05.ParityReport, {"parity_report": lambda reference, candidate: ____})
