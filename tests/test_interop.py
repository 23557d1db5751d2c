"""labsupport.interop: compatibility reports, OpenVINO without telemetry, bf16 emulation."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap

import ml_dtypes
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from labsupport.interop import (
    CompatibilityReport,
    OperatorSupport,
    bfloat16_rounded,
    compatibility_report,
    openvino_reason,
    recording_network_attempts,
)
from labsupport.model_loader import ModelInputError
from labsupport.onnx_tools import cpu_session


def _save(tmp_path, name, nodes, opsets, initializers=(), output_dims=None):
    graph = helper.make_graph(nodes, name, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3, 6, 6])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, output_dims)], list(initializers))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid(domain, version) for domain, version in opsets])
    model.ir_version = 10
    path = tmp_path / f"{name}.onnx"
    onnx.save(model, str(path))
    return path


def _weights():
    rng = np.random.default_rng(0)
    return [numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), "W"),
            numpy_helper.from_array(rng.standard_normal(4).astype(np.float32), "B")]


def _rows(report: CompatibilityReport) -> dict[str, OperatorSupport]:
    return {row.name: row for row in report}


# Compatibility reports

def test_standard_operators_report_the_version_the_opset_selects_and_every_target_runs_them(tmp_path):
    path = _save(tmp_path, "standard", [helper.make_node("Relu", ["x"], ["r"]),
                                         helper.make_node("Reshape", ["r", "shape"], ["y"])], [("", 20)],
                 [numpy_helper.from_array(np.array([-1, 108], dtype=np.int64), "shape")])
    rows = _rows(compatibility_report(path))
    assert (rows["Relu"].version, rows["Reshape"].version) == (14, 19)  # Reshape-19 is the newest at or below 20
    assert all(row.standard and row.onnxruntime == "kernel" and row.openvino == "yes" for row in rows.values())


def test_a_function_operator_without_a_kernel_runs_in_onnx_runtime_as_its_function(tmp_path):
    path = _save(tmp_path, "hardswish", [helper.make_node("HardSwish", ["x"], ["y"])], [("", 22)])
    row = _rows(compatibility_report(path))["HardSwish"]
    assert (row.version, row.standard, row.onnxruntime) == (22, True, "function")


def test_onnx_runtimes_fused_conv_is_not_standard_but_both_runtimes_take_it(tmp_path):
    node = helper.make_node("FusedConv", ["x", "W", "B"], ["y"], domain="com.microsoft", activation="Relu",
                            kernel_shape=[3, 3], pads=[1, 1, 1, 1])
    path = _save(tmp_path, "fused", [node], [("", 20), ("com.microsoft", 1)], _weights())
    report = compatibility_report(path)
    row = _rows(report)["com.microsoft::FusedConv"]
    assert (row.version, row.nodes, row.standard, row.onnxruntime, row.openvino) == (1, 1, False, "kernel", "yes")
    assert report.unsupported("onnxruntime") == report.unsupported("openvino") == []


def test_an_operator_of_an_unknown_domain_is_unsupported_everywhere_and_listed(tmp_path):
    path = _save(tmp_path, "custom", [helper.make_node("Relu", ["x"], ["r"]),
                                       helper.make_node("SmoothClip", ["r"], ["y"], domain="workbook", limit=2.0)],
                 [("", 20), ("workbook", 1)])
    report = compatibility_report(path)
    row = _rows(report)["workbook::SmoothClip"]
    assert (row.version, row.standard, row.onnxruntime, row.openvino) == (None, False, "no", "no")
    assert report.unsupported("onnxruntime") == report.unsupported("openvino") == ["workbook::SmoothClip"]
    text = str(report)
    assert text.splitlines()[0].split() == ["operator", "version", "nodes", "ONNX", "standard", "ONNX", "Runtime",
                                            "CPU", "OpenVINO", "CPU"]
    assert "workbook::SmoothClip  ?" in text
    assert report._repr_markdown_().splitlines()[2] == "| Relu | 14 | 1 | yes | kernel | yes |"


def test_a_file_that_is_not_a_model_is_one_line_from_the_loader(tmp_path):
    (tmp_path / "notes.onnx").write_text("{}")
    with pytest.raises(ModelInputError, match="is not an ONNX file"):
        compatibility_report(tmp_path / "notes.onnx")


# OpenVINO's telemetry

_TELEMETRY_PROBE = textwrap.dedent("""
    import json, os, sys, threading
    attempts = []

    def refuse(event, arguments):  # record, and stop, anything that could reach the network
        if event in {"socket.connect", "socket.getaddrinfo", "urllib.Request", "os.fork", "os.posix_spawn",
                     "subprocess.Popen"}:
            attempts.append(event)
            raise RuntimeError(event + " refused by the test")

    sys.addaudithook(refuse)
    if sys.argv[1] == "helper":
        from labsupport.interop import import_openvino
        openvino = import_openvino()
    else:
        import openvino
    openvino.Core().get_property("CPU", "INFERENCE_PRECISION_HINT")
    for thread in threading.enumerate():
        if thread is not threading.main_thread():
            thread.join(timeout=10)
    from labsupport.interop import openvino_telemetry_active
    print(json.dumps({"attempts": attempts, "active": openvino_telemetry_active(),
                      "intel": os.path.isdir(os.path.join(os.path.expanduser("~"), "intel"))}))
""")


def _import_openvino_in_a_child(tmp_path, how: str) -> dict:
    """Import openvino in a fresh process whose home is ``tmp_path`` and which is not marked as CI."""
    env = {key: value for key, value in os.environ.items() if key not in ("CI", "TF_BUILD", "JENKINS_URL")}
    env.update(HOME=str(tmp_path), USERPROFILE=str(tmp_path))
    completed = subprocess.run([sys.executable, "-c", _TELEMETRY_PROBE, how], capture_output=True, text=True,
                               env=env, timeout=120, check=True)
    return json.loads(completed.stdout.strip().splitlines()[-1])


def test_a_plain_openvino_import_starts_a_telemetry_sender_and_writes_a_client_id(tmp_path):
    """Why import_openvino exists; the child's fork is refused, so nothing is sent."""
    outcome = _import_openvino_in_a_child(tmp_path, "plain")
    assert outcome["active"] and outcome["intel"] and "os.fork" in outcome["attempts"]


def test_import_openvino_turns_the_telemetry_off_before_openvino_loads(tmp_path):
    outcome = _import_openvino_in_a_child(tmp_path, "helper")
    assert outcome == {"attempts": [], "active": False, "intel": False}


def test_recording_network_attempts_sees_name_lookups_and_child_processes_inside_the_block_only():
    socket.getaddrinfo("127.0.0.1", 9)
    with recording_network_attempts() as attempts:
        socket.getaddrinfo("127.0.0.1", 9)
        subprocess.run([sys.executable, "-c", "pass"], check=True)
    socket.getaddrinfo("127.0.0.1", 9)
    events = [attempt.split()[0] for attempt in attempts]
    assert events[0] == "socket.getaddrinfo" and events.count("socket.getaddrinfo") == 1
    assert "subprocess.Popen" in events


@pytest.mark.parametrize("message, reason", [
    ("Exception from src/inference/src/cpp/core.cpp:132:\nCheck 'false' failed at frontend.cpp:47:\n"
     "Path '../w.data' resolves to '/tmp/w.data' which is outside the base directory '/tmp/m'\n\n\n",
     "Path '../w.data' resolves to '/tmp/w.data' which is outside the base directory '/tmp/m'"),
    ("Model wasn't fully converted.\nSummary:\n-- No conversion rule found for operations: a.B\n",
     "No conversion rule found for operations: a.B"),
])
def test_openvino_reason_is_the_last_line_that_says_something(message, reason):
    assert openvino_reason(RuntimeError(message)) == reason


def test_openvino_reason_of_an_empty_error_is_its_class_name():
    assert openvino_reason(RuntimeError("")) == "RuntimeError"


# bfloat16 emulation

def test_bfloat16_rounding_keeps_the_interface_and_moves_outputs_by_a_bf16_sized_amount(tmp_path):
    conv = helper.make_node("Conv", ["x", "W", "B"], ["c"], kernel_shape=[3, 3], pads=[1, 1, 1, 1])
    model = onnx.load(str(_save(tmp_path, "conv", [conv, helper.make_node("Relu", ["c"], ["y"])], [("", 20)],
                                _weights(), ["batch", 4, 6, 6])))
    rounded = bfloat16_rounded(model)
    onnx.checker.check_model(rounded, full_check=True)
    assert [value.name for value in rounded.graph.input] == ["x"] and [v.name for v in rounded.graph.output] == ["y"]
    assert [node.op_type for node in model.graph.node] == ["Conv", "Relu"]  # the original is untouched
    weights = numpy_helper.to_array(rounded.graph.initializer[0])
    original = numpy_helper.to_array(model.graph.initializer[0])
    assert np.array_equal(weights, original.astype(ml_dtypes.bfloat16).astype(np.float32))
    x = np.random.default_rng(1).standard_normal((2, 3, 6, 6)).astype(np.float32)
    exact = cpu_session(model).run(None, {"x": x})[0]
    approximate = cpu_session(rounded).run(None, {"x": x})[0]
    relative = np.abs(approximate - exact).max() / np.abs(exact).max()
    assert 1e-4 < relative < 2 ** -6
