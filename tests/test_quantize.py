"""labsupport.quantize: the calibration reader, metadata stripping, ranges, the comparison table,
the profiler summary, SQNR and the massive-activation edit, on small hand-built models."""

import matplotlib
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnxruntime.quantization import quantize_static
from onnxruntime.quantization.qdq_loss_debug import compute_signal_to_quantization_noice_ratio

from labsupport.bench import BenchResult
from labsupport.onnx_tools import cpu_session
from labsupport.quantize import (
    DigitsCalibrationReader,
    OperatorTime,
    Variant,
    VariantTable,
    accuracy,
    add_massive_activation,
    channel_sqnr_db,
    measure_variants,
    plot_variants,
    profile_operator_times,
    quantization_ranges,
    quiet_calibration,
    sqnr_db,
    strip_exporter_metadata,
    tensor_order,
    time_variants,
)

matplotlib.use("Agg")  # before plot_variants imports pyplot: no display needed

RNG = np.random.default_rng(3)


def _mlp(hidden=6, inputs=4, outputs=3, seed=0):
    """pixels [batch, inputs] → Gemm(transB=1) → Relu → Gemm(transB=1) → logits, as torch exports nn.Linear."""
    rng = np.random.default_rng(seed)
    weights = {"w1": rng.standard_normal((hidden, inputs)).astype(np.float32),
               "b1": rng.standard_normal(hidden).astype(np.float32),
               "w2": rng.standard_normal((outputs, hidden)).astype(np.float32),
               "b2": rng.standard_normal(outputs).astype(np.float32)}
    graph = helper.make_graph(
        [helper.make_node("Gemm", ["pixels", "w1", "b1"], ["linear"], name="first", transB=1),
         helper.make_node("Relu", ["linear"], ["relu"], name="activation"),
         helper.make_node("Gemm", ["relu", "w2", "b2"], ["logits"], name="second", transB=1)],
        "mlp", [helper.make_tensor_value_info("pixels", TensorProto.FLOAT, ["batch", inputs])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", outputs])],
        [numpy_helper.from_array(value, name) for name, value in weights.items()],
        value_info=[helper.make_tensor_value_info("relu", TensorProto.FLOAT, ["batch", hidden])])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)], ir_version=10)


def _save(model, path):
    onnx.save(model, str(path))
    return path


# ---------------------------------------------------------------------------
# Calibration
# ---------------------------------------------------------------------------

def test_reader_gives_float32_batches_in_order_then_none_for_good():
    images = RNG.random((70, 4))
    reader = DigitsCalibrationReader(images, batch_size=32, input_name="x")
    batches = []
    while (batch := reader.get_next()) is not None:
        batches.append(batch)
    assert [len(batch["x"]) for batch in batches] == [32, 32, 6] and reader.batch_count == 3
    assert all(batch["x"].dtype == np.float32 and batch["x"].flags.c_contiguous for batch in batches)
    assert np.array_equal(np.concatenate([batch["x"] for batch in batches]), images.astype(np.float32))
    assert reader.get_next() is None


def test_reader_iterates_like_onnx_runtime_expects():
    assert len(list(DigitsCalibrationReader(np.zeros((5, 4)), batch_size=2))) == 3


def test_reader_with_progress_writes_its_bar_to_stdout(capsys):
    reader = DigitsCalibrationReader(np.zeros((8, 4)), batch_size=4, show_progress=True)
    while reader.get_next() is not None:
        pass
    captured = capsys.readouterr()
    assert "calibration batches" in captured.out and captured.err == ""


@pytest.mark.parametrize("images, batch_size, fragment", [(np.zeros((0, 4)), 4, "at least one image"),
                                                           (np.zeros(4), 4, "one per row"),
                                                           (np.zeros((3, 4)), 0, "batch_size must be at least 1")])
def test_reader_refuses_what_it_cannot_batch(images, batch_size, fragment):
    with pytest.raises(ValueError, match=fragment):
        DigitsCalibrationReader(images, batch_size=batch_size)


def test_quiet_calibration_drops_printed_lines_only(capsys):
    with quiet_calibration():
        print("Collecting tensor data and making histogram ...")
    assert capsys.readouterr().out == ""


def test_reader_drives_quantize_static_and_the_ranges_follow_the_data(tmp_path):
    float_path = _save(_mlp(), tmp_path / "mlp.onnx")
    images = RNG.random((64, 4)).astype(np.float32)
    quantize_static(str(float_path), str(tmp_path / "int8.onnx"), DigitsCalibrationReader(images, batch_size=16))
    low, high = quantization_ranges(tmp_path / "int8.onnx")["pixels"]
    assert low <= 0 and high == pytest.approx(images.max(), rel=0.01)


# ---------------------------------------------------------------------------
# Files
# ---------------------------------------------------------------------------

def _annotated():
    model = _mlp()
    for node in model.graph.node:
        helper.set_metadata_props(node, {"pkg.torch.onnx.stack_trace": "File x.py, line 1" * 10})
        node.doc_string = "exported from a module"
    helper.set_metadata_props(model.graph.input[0], {"kind": "USER_INPUT"})
    helper.set_model_props(model, {"onnx.quant.pre_process": "onnxruntime.quant"})
    branch = helper.make_graph([helper.make_node("Identity", ["relu"], ["inner"], doc_string="inside")], "branch", [],
                               [helper.make_tensor_value_info("inner", TensorProto.FLOAT, None)])
    model.graph.node[1].attribute.append(helper.make_attribute("unused_branch", branch))
    return model


def test_strip_removes_node_and_value_metadata_everywhere_and_reports_the_bytes():
    model = _annotated()
    before = model.ByteSize()
    saved = strip_exporter_metadata(model)
    assert saved == before - model.ByteSize() > 0
    assert all(not node.metadata_props and not node.doc_string for node in model.graph.node)
    assert not model.graph.input[0].metadata_props
    assert model.graph.node[1].attribute[0].g.node[0].doc_string == ""
    assert {prop.key for prop in model.metadata_props} == {"onnx.quant.pre_process"}


def test_strip_on_a_clean_model_saves_nothing_and_keeps_the_numbers():
    model = _mlp()
    before = model.SerializeToString()
    assert strip_exporter_metadata(model) == 0 and model.SerializeToString() == before


def _qdq_model(scale, zero_point):
    zero = numpy_helper.from_array(zero_point, "zero_point")
    graph = helper.make_graph(
        [helper.make_node("QuantizeLinear", ["x", "scale", "zero_point"], ["q"]),
         helper.make_node("DequantizeLinear", ["q", "scale", "zero_point"], ["y"])], "qdq",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [3])],
        [numpy_helper.from_array(np.array(scale, np.float32), "scale"), zero])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)], ir_version=10)


@pytest.mark.parametrize("zero_point, expected", [(np.array(10, np.uint8), (-1.0, 24.5)),
                                                  (np.array(0, np.int8), (-12.8, 12.7))])
def test_quantization_ranges_are_the_codes_extremes_mapped_back(zero_point, expected):
    ranges = quantization_ranges(_qdq_model(0.1, zero_point))
    assert ranges["x"] == pytest.approx(expected)


# ---------------------------------------------------------------------------
# The comparison
# ---------------------------------------------------------------------------

def test_accuracy_is_the_share_of_rows_whose_largest_logit_is_the_label():
    graph = helper.make_graph([helper.make_node("Identity", ["pixels"], ["logits"])], "identity",
                              [helper.make_tensor_value_info("pixels", TensorProto.FLOAT, ["batch", 3])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 3])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)], ir_version=10)
    logits = np.array([[0, 1, 0], [1, 0, 0], [0, 0, 1], [0, 1, 0]], np.float64)
    assert accuracy(model, logits, np.array([1, 0, 0, 0])) == 0.5


def _result(label, milliseconds, batch):
    return BenchResult(label=label, times_ms=np.full(30, milliseconds), batch_size=batch)


def _table():
    variants = [Variant("fp32", "a.onnx", 4000, 0.97, {1: _result("a", 2.0, 1), 64: _result("a", 10.0, 64)}),
                Variant("int8", "b.onnx", 1000, 0.965, {1: _result("b", 4.0, 1), 64: _result("b", 5.0, 64)})]
    return VariantTable(variants)


def test_variant_table_compares_with_the_first_variant():
    table = _table()
    assert table.size_ratio("int8") == 0.25
    assert table.accuracy_loss_points("int8") == pytest.approx(0.5)
    assert table.speedup("int8", 1) == 0.5 and table.speedup("int8", 64) == 2.0


def test_variant_table_renders_text_and_markdown_with_every_column():
    table = _table()
    for text in (table.to_text(), table._repr_markdown_()):
        assert "× size" in text and "p50 ms @ 64" in text and "speed-up @ 1" in text
        assert "0.250" in text and "+0.50" in text and "2.00×" in text


def test_variant_table_without_latencies_shows_sizes_only():
    table = VariantTable([Variant("fp32", "a.onnx", 10, 1.0), Variant("fp16", "b.onnx", 5, 1.0)])
    assert "p50" not in table.to_text() and "0.500" in table.to_text()


def test_variant_table_names_the_variants_it_has_when_asked_for_another():
    with pytest.raises(KeyError, match="'fp32', 'int8'"):
        _table().variant("fp16")


def test_variant_table_needs_a_reference():
    with pytest.raises(ValueError, match="at least one variant"):
        VariantTable([])


def test_measure_and_time_variants_fill_size_accuracy_and_one_result_per_batch(tmp_path):
    paths = {"a": _save(_mlp(seed=1), tmp_path / "a.onnx"), "b": _save(_mlp(seed=2), tmp_path / "b.onnx")}
    images, labels = RNG.random((20, 4)).astype(np.float32), RNG.integers(0, 3, 20)
    variants = measure_variants(paths, images, labels)
    assert [variant.size_bytes for variant in variants] == [path.stat().st_size for path in paths.values()]
    time_variants(variants, images, batch_sizes=(1, 30), min_seconds=0.0)
    for variant in variants:
        assert sorted(variant.latency) == [1, 30]
        assert variant.latency[30].batch_size == 30 and variant.latency[30].repeats >= 50


def test_plot_variants_draws_size_accuracy_and_relative_latency():
    figure = plot_variants(_table())
    titles = [axes.get_title() for axes in figure.axes]
    assert titles == ["Size on disk", "Accuracy on the test digits", "Latency (below 1: faster)"]


# ---------------------------------------------------------------------------
# The profiler
# ---------------------------------------------------------------------------

def test_profile_counts_kernel_calls_per_run_and_deletes_its_trace(tmp_path):
    path = _save(_mlp(), tmp_path / "mlp.onnx")
    times = profile_operator_times(path, {"pixels": RNG.random((8, 4)).astype(np.float32)}, runs=20, warmup=3,
                                   folder=tmp_path)
    assert all(isinstance(time, OperatorTime) and time.microseconds > 0 for time in times.values())
    assert sum(time.calls for time in times.values()) == pytest.approx(2)  # FusedGemm and Gemm after fusion
    assert sorted(file.name for file in tmp_path.iterdir()) == ["mlp.onnx"]


def test_profile_refuses_zero_runs(tmp_path):
    with pytest.raises(ValueError, match="runs >= 1"):
        profile_operator_times(_save(_mlp(), tmp_path / "mlp.onnx"), {}, runs=0)


# ---------------------------------------------------------------------------
# Quantization error
# ---------------------------------------------------------------------------

def test_sqnr_is_twenty_log_of_the_norm_ratio_and_matches_onnx_runtime():
    reference, approximation = np.array([3.0, 4.0]), np.array([3.0, 4.5])
    assert sqnr_db(reference, approximation) == pytest.approx(20.0)
    batches = [RNG.standard_normal((4, 5)).astype(np.float32) for _ in range(3)]
    noisy = [batch + 0.01 * RNG.standard_normal(batch.shape).astype(np.float32) for batch in batches]
    assert sqnr_db(batches, noisy) == pytest.approx(compute_signal_to_quantization_noice_ratio(batches, noisy))


def test_sqnr_of_identical_tensors_is_large_but_finite():
    value = sqnr_db(np.ones(4), np.ones(4))
    assert np.isfinite(value) and value > 300


def test_sqnr_refuses_tensors_of_different_sizes():
    with pytest.raises(ValueError, match="must match"):
        sqnr_db(np.ones(4), np.ones(5))


def test_channel_sqnr_sees_a_zeroed_channel_that_the_tensor_sqnr_hides():
    reference = np.column_stack([np.full(50, 100.0), RNG.random((50, 3))])
    approximation = reference.copy()
    approximation[:, 1:] = 0.0
    per_channel = channel_sqnr_db([reference[:25], reference[25:]], [approximation[:25], approximation[25:]], 4)
    assert per_channel[0] > 300 and np.allclose(per_channel[1:], 0.0)
    assert sqnr_db(reference, approximation) > 30


def test_tensor_order_lists_real_inputs_then_node_outputs():
    model = _mlp()
    model.graph.input.append(helper.make_tensor_value_info("w1", TensorProto.FLOAT, [6, 4]))  # IR-3 style
    assert tensor_order(model) == ["pixels", "linear", "relu", "logits"]


# ---------------------------------------------------------------------------
# The massive activation
# ---------------------------------------------------------------------------

def test_massive_activation_changes_no_output_and_only_the_hidden_range():
    model = _mlp()
    edited = add_massive_activation(model, "first", "second", 500.0)
    feeds = {"pixels": RNG.standard_normal((16, 4)).astype(np.float32)}
    np.testing.assert_allclose(cpu_session(edited).run(None, feeds)[0], cpu_session(model).run(None, feeds)[0],
                               rtol=1e-6, atol=1e-6)
    probe = onnx.ModelProto()
    probe.CopyFrom(edited)
    probe.graph.output.append(helper.make_tensor_value_info("relu", TensorProto.FLOAT, None))
    hidden = cpu_session(probe).run(["relu"], feeds)[0]
    assert hidden.shape == (16, 7) and np.all(hidden[:, -1] == 500.0)
    assert len(model.graph.value_info) == 1 and not edited.graph.value_info
    onnx.checker.check_model(onnx.shape_inference.infer_shapes(edited), full_check=True)


@pytest.mark.parametrize("first, second, fragment", [("first", "missing", "no node named 'missing'"),
                                                     ("second", "first", "must read the Relu")])
def test_massive_activation_refuses_nodes_it_cannot_edit(first, second, fragment):
    with pytest.raises(ValueError, match=fragment):
        add_massive_activation(_mlp(), first, second, 10.0)


def test_massive_activation_needs_transposed_weights():
    model = _mlp()
    del model.graph.node[0].attribute[:]
    with pytest.raises(ValueError, match="transB=1"):
        add_massive_activation(model, "first", "second", 10.0)
