"""The production-readiness gate: each item ticked or failed from its own evidence, and the CLI's exit statuses.

The models are built once per module from a digits MLP (scikit-learn's, a few seconds): the float
reference, a good candidate (static int8, then optimized by ONNX Runtime at ORT_ENABLE_EXTENDED) and a bad one
(fixed batch, calibrated on data 50 times too dark, never optimized). Every assertion rests on
sizes, node counts, batch axes and accuracies, which do not vary between runs; latencies are
only required to exist, never to be in any order.
"""

from __future__ import annotations

import subprocess
import sys
import warnings

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from labsupport.gate import GATE_ITEMS, load_gate_data, run_gate
from labsupport.model_loader import ModelInputError
from tests.test_validate import affine_model

CPU = "CPUExecutionProvider"


def mlp_model(path, classifier, batch="batch"):
    """The fitted scikit-learn MLP as ONNX: pixels [batch, 64] → Gemm → Relu → Gemm → logits [batch, 10].

    The same three nodes torch's exporter writes for the course's digits MLP, built directly so that
    the fixture needs neither torch nor its exporter (several seconds on a busy machine).
    """
    (first, second), (first_bias, second_bias) = classifier.coefs_, classifier.intercepts_
    weights = [numpy_helper.from_array(np.asarray(array, np.float32), name) for name, array in
               (("w1", first), ("b1", first_bias), ("w2", second), ("b2", second_bias))]
    graph = helper.make_graph(
        [helper.make_node("Gemm", ["pixels", "w1", "b1"], ["hidden"]), helper.make_node("Relu", ["hidden"], ["active"]),
         helper.make_node("Gemm", ["active", "w2", "b2"], ["logits"])], "digits_mlp",
        [helper.make_tensor_value_info("pixels", TensorProto.FLOAT, [batch, 64])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [batch, 10])], weights)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 10
    onnx.save(model, str(path))
    return path


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    from onnxruntime.quantization import QuantFormat, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    from labsupport.models import load_digits_split
    from labsupport.models.classical_models import single_threaded
    from labsupport.optimize import optimize_at_level
    from labsupport.quantize import DigitsCalibrationReader

    folder = tmp_path_factory.mktemp("gate")
    data = load_digits_split()
    with single_threaded(), warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # 300 epochs reach ~97 %: enough to measure a drop
        classifier = MLPClassifier((32,), max_iter=300, random_state=0).fit(data.x_train, data.y_train)
    reference = mlp_model(folder / "reference.onnx", classifier)
    mlp_model(folder / "fixed.onnx", classifier, batch=2)
    for name in ("reference", "fixed"):
        quant_pre_process(folder / f"{name}.onnx", folder / f"{name}_prepped.onnx")
    quantize_static(folder / "reference_prepped.onnx", folder / "good_qdq.onnx",
                    DigitsCalibrationReader(data.x_train[:256]), quant_format=QuantFormat.QDQ)
    optimize_at_level(folder / "good_qdq.onnx", "ORT_ENABLE_EXTENDED", folder / "good.onnx")
    optimize_at_level(reference, "ORT_ENABLE_EXTENDED", folder / "float_optimized.onnx")
    quantize_static(folder / "fixed_prepped.onnx", folder / "bad.onnx",
                    DigitsCalibrationReader(data.x_train[:256] * 0.02, batch_size=2), quant_format=QuantFormat.QDQ)
    np.savez(folder / "data.npz", pixels=data.x_test, labels=data.y_test)
    return {"folder": folder, "reference": reference, "good": folder / "good.onnx", "bad": folder / "bad.onnx",
            "float_optimized": folder / "float_optimized.onnx", "data": folder / "data.npz",
            "classifier": classifier, "split": data}


def _gate(models, name, **options):
    options.setdefault("provider", CPU)
    options.setdefault("min_seconds", 0.05)
    return run_gate(models[name], reference=models["reference"], data=models["data"], **options)


def _statuses(report):
    return {item.name: item.status for item in report.items}


def test_a_quantized_optimized_batched_model_passes_every_item(models):
    report = _gate(models, "good")
    assert [item.name for item in report.items] == list(GATE_ITEMS)
    assert _statuses(report) == {**dict.fromkeys(GATE_ITEMS, "ok"), "latency": "skip"}
    assert report.passed and report.failed == []
    assert "nothing left to fuse or fold" in report.item("graph optimized for the target").evidence
    assert "ran at batch sizes 1, 3, 64" in report.item("dynamic axes for batching").evidence
    quantization = report.item("quantization applied where it pays").evidence
    assert quantization.startswith("quantized (") and "QGemm" in quantization and "and it pays: 0.4" in quantization
    assert report.size_bytes < 0.5 * report.reference_size_bytes
    assert report.accuracy > 0.9 and abs(report.accuracy - report.reference_accuracy) <= 0.01
    assert report.latency.p50_ms > 0 and report.reference_latency.p50_ms > 0
    assert report.to_text().rstrip().endswith("ready — every item ticked from evidence, every threshold met.")
    assert "| quantization applied where it pays | ✅ ok |" in report._repr_markdown_()


def test_a_fixed_batch_unoptimized_badly_calibrated_model_fails_the_right_items(models):
    report = _gate(models, "bad")
    assert report.failed == ["graph optimized for the target", "dynamic axes for batching",
                             "quantization applied where it pays", "accuracy drop"]
    assert _statuses(report)["validated with the checker"] == "ok"
    assert _statuses(report)["benchmarked against the original"] == "ok"
    optimized = report.item("graph optimized for the target").evidence
    assert ("still changes it to 4 (DequantizeLinear -6, Gemm -2, QuantizeLinear -2, com.microsoft:QGemm +2)"
            in optimized)
    assert "labsupport.optimize.optimize_at_level" in optimized
    assert report.item("dynamic axes for batching").evidence.startswith("'pixels' axis 0 is fixed at 2: the export "
                                                                        "did not make it dynamic")
    assert "but it does not pay" in report.item("quantization applied where it pays").evidence
    assert report.accuracy < 0.5 < report.reference_accuracy
    assert report.item("accuracy drop").evidence.endswith("(limit 1.00): over the limit.")
    assert "p50 at batch 2" in report.item("benchmarked against the original").evidence  # its fixed batch
    assert report.to_text().rstrip().endswith("NOT ready — failed: graph optimized for the target, dynamic axes for "
                                              "batching, quantization applied where it pays, accuracy drop.")


def test_a_float_model_fails_quantization_when_an_int8_copy_would_pay(models):
    report = _gate(models, "float_optimized")
    assert report.failed == ["quantization applied where it pays"]
    evidence = report.item("quantization applied where it pays").evidence
    assert evidence.startswith("not quantized, yet an int8 copy of the reference's weights made here (quantize_dynamic)"
                               " is 0.")
    assert evidence.endswith("quantize the model (lab 10) and gate the result.")


def test_a_model_of_ai_onnx_ml_operators_only_is_not_quantized_and_the_gate_says_why(models, tmp_path):
    from skl2onnx import to_onnx
    from sklearn.linear_model import LogisticRegression

    split = models["split"]
    classifier = LogisticRegression(max_iter=200).fit(split.x_train, split.y_train)
    onnx_model = to_onnx(classifier, split.x_train[:1].astype(np.float32), options={"zipmap": False},
                         target_opset={"": 17, "ai.onnx.ml": 3})
    onnx_model.graph.input[0].name = "pixels"
    for node in onnx_model.graph.node:
        node.input[:] = ["pixels" if name == "X" else name for name in node.input]
    onnx.save(onnx_model, tmp_path / "linear.onnx")
    report = run_gate(tmp_path / "linear.onnx", reference=tmp_path / "linear.onnx", data=models["data"],
                      provider=CPU, min_seconds=0.05)
    evidence = report.item("quantization applied where it pays").evidence
    assert report.item("quantization applied where it pays").status == "skip"
    assert "outside the ai.onnx domain" in evidence and "Failed to find proper" not in evidence


def test_a_float_model_passes_quantization_when_an_int8_copy_would_not_pay(tmp_path, monkeypatch):
    affine_model(tmp_path / "affine.onnx")  # 12 weights: quantizing adds more bytes in nodes than it saves
    # Microsecond calls on a shared machine can time either copy 1.4x faster than the other (seen in CI):
    # this test is about the size rule, so no measured speed-up may count as paying here
    monkeypatch.setattr("labsupport.gate.PAYING_SPEEDUP", float("inf"))
    data = {"x": np.random.default_rng(0).random((64, 4), dtype=np.float32), "labels": np.zeros(64, np.int64)}
    report = run_gate(tmp_path / "affine.onnx", reference=tmp_path / "affine.onnx", data=data, provider=CPU,
                      min_seconds=0.05)
    item = report.item("quantization applied where it pays")
    assert item.status == "ok", item.evidence
    assert item.evidence.startswith("not quantized, and rightly: an int8 copy of the reference's weights made here "
                                    "(quantize_dynamic) is ")
    assert "runs at " in item.evidence  # the size did not pay, so the copy was timed too


def test_a_dynamically_quantized_model_fails_batching_because_rows_depend_on_their_batch(models):
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from labsupport.optimize import optimize_at_level

    folder = models["folder"]
    quantize_dynamic(folder / "reference_prepped.onnx", folder / "dynamic_qdq.onnx", weight_type=QuantType.QInt8)
    optimize_at_level(folder / "dynamic_qdq.onnx", "ORT_ENABLE_EXTENDED", folder / "dynamic.onnx")
    report = run_gate(folder / "dynamic.onnx", reference=models["reference"], data=models["data"], provider=CPU,
                      min_seconds=0.05)
    assert report.failed == ["dynamic axes for batching"]
    evidence = report.item("dynamic axes for batching").evidence
    assert evidence.startswith("axis 0 is symbolic, but at batch 1: vs this model at batch 64")
    assert evidence.endswith("its DynamicQuantizeMatMul measure activation ranges over the whole batch, so a row's "
                             "result depends on its batch mates: quantize statically to batch safely (lab 10).")


def test_a_reference_that_cannot_run_at_the_timed_batch_fails_the_benchmark(models):
    report = run_gate(models["good"], reference=models["folder"] / "fixed.onnx", data=models["data"], provider=CPU,
                      max_latency_ms=1000.0, min_seconds=0.05)
    assert report.failed == ["benchmarked against the original", "latency"]
    assert report.item("benchmarked against the original").evidence.startswith(
        "timing the reference at batch 1 failed: ")
    assert report.item("latency").evidence == "not measured (limit 1000 ms)."
    assert report.reference_accuracy > 0.9  # its accuracy was still measured, in chunks of its fixed batch of 2


def test_the_unoptimized_export_fails_optimization_naming_the_fusion(models):
    report = _gate(models, "reference")
    assert "still changes it to 2 (Gemm -1, Relu -1, com.microsoft:FusedGemm +1)" in report.item(
        "graph optimized for the target").evidence


def test_an_unnamed_or_absent_provider_fails_the_provider_item(models):
    unnamed = _gate(models, "good", provider=None)
    assert unnamed.failed == ["execution provider chosen on purpose"]
    assert unnamed.item("execution provider chosen on purpose").evidence.startswith(
        "no provider named, so ONNX Runtime's default order decides (available here: ")
    absent = _gate(models, "good", provider="TensorrtExecutionProvider")
    assert absent.failed == ["execution provider chosen on purpose"] and absent.provider == CPU
    assert absent.item("execution provider chosen on purpose").evidence.startswith(
        "TensorrtExecutionProvider is not in this onnxruntime build (available here: ")
    named = _gate(models, "good").item("execution provider chosen on purpose")
    assert named.status == "ok" and "the sessions ran on it (session.get_providers(), no fallback)" in named.evidence


def test_the_latency_threshold_fails_when_missed_and_passes_when_met(models):
    missed = _gate(models, "good", max_latency_ms=1e-6)
    assert missed.failed == ["latency"]
    assert missed.item("latency").evidence.endswith("(limit 1e-06 ms): over the limit.")
    met = _gate(models, "good", max_latency_ms=1000.0)
    assert met.passed and met.item("latency").status == "ok"


def test_an_exported_model_reference_times_the_original_framework_too(models):
    from labsupport.models import ExportedModel

    def framework_outputs(feeds):
        return [models["classifier"].predict_proba(feeds["pixels"])]

    exported = ExportedModel("digits MLP (scikit-learn)", models["reference"], {"pixels": models["split"].x_test[:64]},
                             framework_outputs, ("logits",), {"pixels": (0,)})
    report = run_gate(models["good"], reference=exported, data=models["data"], provider=CPU, min_seconds=0.05)
    assert report.framework_latency is not None and report.framework_latency.p50_ms > 0
    assert "; digits MLP (scikit-learn) itself " in report.item("benchmarked against the original").evidence


def test_a_model_failing_the_checker_fails_every_item_that_needs_it(tmp_path):
    graph = helper.make_graph([helper.make_node("Add", ["x", "nowhere"], ["y"])], "dangling",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 10
    onnx.save(model, str(tmp_path / "dangling.onnx"))
    affine_model(tmp_path / "affine.onnx")
    data = {"x": np.random.default_rng(0).random((20, 4), dtype=np.float32), "labels": np.zeros(20, np.int64)}
    report = run_gate(tmp_path / "dangling.onnx", reference=tmp_path / "affine.onnx", data=data, provider=CPU)
    assert report.item("validated with the checker").evidence.startswith(
        "onnx.checker.check_model(full_check=True) fails: ")
    assert set(report.failed) == set(GATE_ITEMS) - {"latency"}
    assert report.item("execution provider chosen on purpose").evidence.endswith("so no session ran on it.")
    assert report.item("accuracy drop").evidence.startswith("not measured: ONNX Runtime cannot load the model")


@pytest.mark.parametrize("data, fragment", [
    ({"pixels": np.zeros((4, 64), np.float32)}, "the data has no 'labels'; it holds ['pixels']: give one array per "
                                                "model input (['pixels']) and the expected classes as 'labels'."),
    ({"x": np.zeros((4, 64), np.float32), "labels": np.zeros(4)}, "the data has no 'pixels'; it holds"),
    ({"pixels": np.zeros((4, 64), np.float32), "labels": np.zeros(3)}, "'labels' should be one class per row"),
    ({"pixels": np.zeros((4, 64), np.float64), "labels": np.zeros(4)}, "input 'pixels' expects float32"),
])
def test_data_that_does_not_fit_the_model_is_refused_in_one_line(models, data, fragment):
    with pytest.raises(ModelInputError) as raised:
        run_gate(models["good"], reference=models["reference"], data=data, provider=CPU)
    assert fragment in str(raised.value) and "\n" not in str(raised.value)


def test_a_missing_or_unreadable_data_file_is_refused_in_one_line(tmp_path):
    with pytest.raises(ModelInputError, match=r"missing.npz: no such file; give an .npz file saved with np.savez"):
        load_gate_data(tmp_path / "missing.npz")
    (tmp_path / "notes.npz").write_text("not an archive")
    with pytest.raises(ModelInputError, match=r"notes.npz is not an .npz file; save one with np.savez"):
        load_gate_data(tmp_path / "notes.npz")


def _cli(*arguments, cwd):
    return subprocess.run([sys.executable, "-m", "labsupport", "gate", *arguments], cwd=cwd, capture_output=True,
                          text=True, timeout=180)


def test_the_cli_exits_0_for_a_ready_model_and_1_naming_the_failed_items(models):
    folder = models["folder"]
    ready = _cli("good.onnx", "--reference", "reference.onnx", "--data", "data.npz", "--provider", CPU, cwd=folder)
    assert ready.returncode == 0 and ready.stderr == "", ready.stderr
    assert ready.stdout.startswith("Production-readiness gate: good.onnx vs reference reference.onnx on "
                                   "CPUExecutionProvider\n")
    assert ready.stdout.rstrip().endswith("good.onnx: ready — every item ticked from evidence, every threshold met.")
    failing = _cli("bad.onnx", "--reference", "reference.onnx", "--data", "data.npz", "--provider", CPU,
                   "--max-accuracy-drop", "0.02", cwd=folder)
    assert failing.returncode == 1
    assert "accuracy drop                         FAIL    " in failing.stdout and "(limit 2.00)" in failing.stdout
    assert failing.stderr == ("error: bad.onnx: not ready: graph optimized for the target, dynamic axes for batching, "
                              "quantization applied where it pays, accuracy drop failed; see the table above.\n")


def test_the_cli_exits_2_with_one_line_when_an_input_cannot_be_used(models):
    completed = _cli("good.onnx", "--reference", "missing.onnx", "--data", "data.npz", cwd=models["folder"])
    assert completed.returncode == 2 and completed.stdout == ""
    assert completed.stderr.count("\n") == 1 and completed.stderr.startswith("error: missing.onnx: no such file")


def test_the_cli_help_lists_the_items_the_data_format_and_the_exit_statuses():
    completed = subprocess.run([sys.executable, "-m", "labsupport", "gate", "--help"], capture_output=True, text=True,
                               timeout=60)
    assert completed.returncode == 0
    for item in GATE_ITEMS[:6]:
        assert f"\n  {item} " in completed.stdout
    assert 'np.savez("data.npz", pixels=x_test, labels=y_test)' in completed.stdout
    assert "\n  0  ready" in completed.stdout and "\n  1  an item failed" in completed.stdout
    assert "\n  2  the model, the reference or the data cannot be read" in completed.stdout


def test_a_threshold_outside_its_range_is_refused_by_the_parser():
    completed = subprocess.run([sys.executable, "-m", "labsupport", "gate", "m.onnx", "--reference", "r.onnx",
                                "--data", "d.npz", "--max-accuracy-drop", "5"], capture_output=True, text=True,
                               timeout=60)
    assert completed.returncode == 2
    assert "5 would allow a drop of 500 points: it is a fraction, did you mean 0.05 (5 points)?" in completed.stderr


@pytest.mark.parametrize("limit, fragment", [
    (1, "an accuracy limit of 1 would allow a drop of 100 points: it is a fraction: did you mean 0.01 (one point)?"),
    (5.0, "did you mean 0.05 (5 points)?"),
    (-0.01, "is negative"),
])
def test_an_accuracy_limit_that_is_not_a_fraction_below_one_is_refused(models, limit, fragment):
    with pytest.raises(ModelInputError) as raised:
        _gate(models, "good", max_accuracy_drop=limit)
    assert fragment in str(raised.value) and "\n" not in str(raised.value)


def test_the_cli_refuses_a_limit_of_one_as_one_hundred_points(models):
    completed = _cli("good.onnx", "--reference", "reference.onnx", "--data", "data.npz", "--provider", CPU,
                     "--max-accuracy-drop", "1", cwd=models["folder"])
    assert completed.returncode == 2 and completed.stdout == ""
    assert completed.stderr.rstrip().endswith("argument --max-accuracy-drop: 1 would allow a drop of 100 points: it is "
                                              "a fraction, did you mean 0.01 (1 point)?")


def test_a_text_file_as_data_is_refused_without_mentioning_pickle(models, tmp_path):
    (tmp_path / "notes.txt").write_text("pixels, labels\n0.1, 3\n")
    with pytest.raises(ModelInputError) as raised:
        run_gate(models["good"], reference=models["reference"], data=tmp_path / "notes.txt", provider=CPU)
    message = str(raised.value)
    assert message == f"{tmp_path / 'notes.txt'} is not an .npz file; save one with np.savez(FILE, pixels=array, " \
                      "labels=labels)."
    assert "pickle" not in message


def test_a_single_npy_array_or_an_object_archive_as_data_is_named_for_what_it_is(tmp_path):
    np.save(tmp_path / "pixels.npy", np.zeros((3, 64), np.float32))
    with pytest.raises(ModelInputError, match=r"pixels.npy is a single .npy array, not an .npz file; save one with "
                                              r"np.savez\(FILE, INPUT_NAME=array, labels=labels\)"):
        load_gate_data(tmp_path / "pixels.npy")
    np.savez(tmp_path / "objects.npz", pixels=np.array([{"a": 1}], dtype=object), labels=np.zeros(1))
    with pytest.raises(ModelInputError) as raised:
        load_gate_data(tmp_path / "objects.npz")
    assert "holds an array of Python objects; save numbers only with" in str(raised.value)
    assert "allow_pickle" not in str(raised.value)


def test_data_in_another_layout_than_the_models_input_says_so_and_what_to_do(tmp_path):
    graph = helper.make_graph(
        [helper.make_node("Flatten", ["pixels"], ["flat"]), helper.make_node("Gemm", ["flat", "w"], ["logits"])],
        "nhwc", [helper.make_tensor_value_info("pixels", TensorProto.FLOAT, ["batch", 8, 8, 1])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 10])],
        [numpy_helper.from_array(np.zeros((64, 10), np.float32), "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 10
    onnx.save(model, str(tmp_path / "nhwc.onnx"))
    data = {"pixels": np.zeros((450, 1, 8, 8), np.float32), "labels": np.zeros(450, np.int64)}
    with pytest.raises(ModelInputError) as raised:
        run_gate(tmp_path / "nhwc.onnx", reference=tmp_path / "nhwc.onnx", data=data, provider=CPU)
    message = str(raised.value)
    assert "expects size 8 on axis 1 [batch, 8, 8, 1] but got shape (450, 1, 8, 8): the data's layout does not match " \
           "this model's input (NHWC vs NCHW?); save data for this model's input, [8, 8, 1] per row" in message
    assert "\n" not in message
