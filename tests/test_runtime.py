"""labsupport.runtime: ONNX Runtime's log in Python, provider requests without stderr, the ORT-format
converter with one-line errors, and the denormal probe."""

import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from labsupport.exercises import lab08
from labsupport.model_loader import ModelInputError
from labsupport.runtime import (
    OrtConversionError,
    ProviderAttempt,
    capture_ort_logs,
    convert_to_ort_format,
    probe_denormals,
    request_providers,
)

CPU = "CPUExecutionProvider"


@pytest.fixture(scope="module")
def classifier_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("runtime") / "classifier.onnx"
    path.write_bytes(lab08.classifier_model())
    return path


def _tagged_run(path, tag):
    options = ort.SessionOptions()
    options.log_severity_level = 1
    run_options = ort.RunOptions()
    run_options.logid = tag
    run_options.log_severity_level = 1
    ort.InferenceSession(str(path), options, providers=[CPU]).run(None, {"pixels": lab08.digit_images(2)}, run_options)


# ---------------------------------------------------------------------------
# capture_ort_logs
# ---------------------------------------------------------------------------

def test_capture_ort_logs_collects_the_run_tag_instead_of_writing_stderr(classifier_path, capfd):
    with capture_ort_logs(severity=1) as log:
        _tagged_run(classifier_path, "request-7")
    assert any("Running with tag: request-7" in record.message for record in log)
    assert capfd.readouterr().err == ""


def test_capture_ort_logs_hands_the_log_back_to_stderr_at_the_default_severity(classifier_path, capfd):
    with capture_ort_logs(severity=1) as log:
        pass
    _tagged_run(classifier_path, "request-8")  # the session asks for info lines itself
    assert log == [] and "Running with tag: request-8" in capfd.readouterr().err
    ort.InferenceSession(str(classifier_path), providers=[CPU])  # a default session: warnings only, so silent
    assert capfd.readouterr().err == ""


def test_log_records_print_as_one_line_with_severity_and_log_id(classifier_path):
    with capture_ort_logs(severity=1) as log:
        _tagged_run(classifier_path, "request-9")
    line = next(str(record) for record in log if "request-9" in record.message)
    assert line.startswith("[I:") and "\n" not in line


# ---------------------------------------------------------------------------
# request_providers
# ---------------------------------------------------------------------------

def test_a_missing_provider_falls_back_to_the_cpu_with_its_warnings_recorded(classifier_path, capfd):
    attempt = request_providers(classifier_path, [("CUDAExecutionProvider", {"device_id": 0}), CPU])
    assert attempt.active == [CPU] and attempt.missing == ["CUDAExecutionProvider"] and not attempt.error
    assert any(message.startswith("UserWarning: Specified provider 'CUDAExecutionProvider'")
               for message in attempt.messages)
    assert any("No registered plugin EP device found" in message for message in attempt.messages)
    assert "not available" in attempt.summary()
    captured = capfd.readouterr()
    assert captured.err == "" and captured.out == ""


def test_an_unknown_provider_name_records_the_printed_fallback_notice(classifier_path, capfd):
    attempt = request_providers(classifier_path, ["CudaExecutionProvider"])
    assert attempt.active == [CPU]
    assert any("Unknown Provider Type: CudaExecutionProvider" in message for message in attempt.messages)
    assert not any(set(message.removeprefix("printed: ")) <= {"*"} for message in attempt.messages)
    assert capfd.readouterr().out == ""


def test_the_azure_provider_is_accepted_silently(classifier_path):
    attempt = request_providers(classifier_path, ["AzureExecutionProvider"])
    assert attempt.active == ["AzureExecutionProvider", CPU] and attempt.messages == []
    assert attempt.summary() == ("asked for ['AzureExecutionProvider'], "
                                 "got ['AzureExecutionProvider', 'CPUExecutionProvider']")


def test_a_session_that_cannot_be_created_is_reported_in_one_line():
    attempt = request_providers(b"not a model", [CPU])
    assert attempt.session is None and attempt.active == []
    assert attempt.error and "\n" not in attempt.error
    assert attempt.summary().startswith("asked for ['CPUExecutionProvider']: no session (")


def test_provider_attempt_lists_the_requested_providers_the_session_lacks():
    attempt = ProviderAttempt(["TensorrtExecutionProvider", "CUDAExecutionProvider", CPU], [CPU])
    assert attempt.missing == ["TensorrtExecutionProvider", "CUDAExecutionProvider"]


# ---------------------------------------------------------------------------
# convert_to_ort_format
# ---------------------------------------------------------------------------

def test_both_styles_write_their_model_and_config(classifier_path, tmp_path):
    conversions = convert_to_ort_format(classifier_path, tmp_path, styles=("Fixed", "Runtime"), type_reduction=True)
    assert conversions["Fixed"].ort_path.name == "classifier.ort"
    assert conversions["Runtime"].ort_path.name == "classifier.with_runtime_opt.ort"
    assert conversions["Fixed"].config_path.name == "classifier.required_operators_and_types.config"
    assert "Gemm{" in conversions["Fixed"].config_path.read_text()
    images = lab08.digit_images(4)
    expected = ort.InferenceSession(str(classifier_path), providers=[CPU]).run(None, {"pixels": images})
    for conversion in conversions.values():
        actual = ort.InferenceSession(str(conversion.ort_path), providers=[CPU]).run(None, {"pixels": images})
        assert np.allclose(actual[0], expected[0], atol=1e-5) and np.array_equal(actual[2], expected[2])


def test_without_type_reduction_the_config_has_no_types(classifier_path, tmp_path):
    config = convert_to_ort_format(classifier_path, tmp_path)["Fixed"].config_path
    assert config.name == "classifier.required_operators.config" and "{" not in config.read_text()


def test_a_file_without_the_onnx_suffix_is_refused_in_one_line(classifier_path, tmp_path):
    renamed = tmp_path / "classifier.bin"
    renamed.write_bytes(classifier_path.read_bytes())
    with pytest.raises(OrtConversionError, match="only converts files whose name ends in .onnx"):
        convert_to_ort_format(renamed, tmp_path / "out")


def test_a_missing_or_broken_model_is_refused_by_the_model_loader(tmp_path):
    with pytest.raises(ModelInputError, match="no such file"):
        convert_to_ort_format(tmp_path / "missing.onnx", tmp_path / "out")
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"\x08\x07garbage")
    with pytest.raises(ModelInputError):
        convert_to_ort_format(broken, tmp_path / "out")


def test_an_unknown_style_is_refused(classifier_path, tmp_path):
    with pytest.raises(OrtConversionError, match="choose one or both of"):
        convert_to_ort_format(classifier_path, tmp_path, styles=("Fast",))


def test_a_model_the_runtime_cannot_load_gives_the_converters_reason(tmp_path):
    graph = helper.make_graph([helper.make_node("Swish", ["x"], ["y"], domain="com.example")], "custom",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20), helper.make_opsetid("com.example", 1)])
    path = tmp_path / "custom.onnx"
    path.write_bytes(model.SerializeToString())
    with pytest.raises(OrtConversionError) as raised:
        convert_to_ort_format(path, tmp_path / "out")
    message = str(raised.value)
    assert "the ORT-format converter failed" in message and "Swish" in message and "\n" not in message


# ---------------------------------------------------------------------------
# probe_denormals
# ---------------------------------------------------------------------------

def test_only_the_first_session_of_a_process_flushes_denormals_on_the_calling_thread():
    first = probe_denormals(plain_session_first=False)
    later = probe_denormals(plain_session_first=True)
    assert (first.outputs_flushed, first.numpy_flushes) == (1.0, True)
    assert (later.outputs_flushed, later.numpy_flushes) == (0.0, False)
