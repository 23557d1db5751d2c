"""labsupport.optimize: sessions at a level, the saved optimized graph, op counts, the BatchNorm fold,
initializers taken out of the inputs, output parity, producer chains, log capture and the plot."""

import logging
import subprocess
import sys

import matplotlib
import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import helper, numpy_helper

matplotlib.use("Agg")

from labsupport import optimize  # noqa: E402
from labsupport.exercises import lab09  # noqa: E402


def test_level_value_accepts_the_enum_its_name_and_a_short_name():
    basic = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    assert optimize.level_value(basic) == basic
    assert optimize.level_value("ORT_ENABLE_EXTENDED") == ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    assert optimize.level_value("all") == ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    assert optimize.level_value("disable_all") == ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    assert [optimize.level_value(name).name for name in optimize.LEVEL_NAMES] == list(optimize.LEVEL_NAMES)


def test_level_value_rejects_an_unknown_level_with_the_names_it_takes():
    with pytest.raises(ValueError, match="is not an optimization level; use one of ORT_DISABLE_ALL"):
        optimize.level_value("fastest")
    with pytest.raises(ValueError, match="is not an optimization level"):
        optimize.level_value(7)


def test_optimize_at_level_saves_the_graph_the_runtime_runs(tmp_path):
    model = lab09.conv_batchnorm_model()
    counts = {name: optimize.op_histogram(optimize.optimize_at_level(model, name, tmp_path / f"{name}.onnx"))
              for name in optimize.LEVEL_NAMES}
    assert counts["ORT_DISABLE_ALL"] == {"Conv": 1, "BatchNormalization": 1, "Relu": 1}
    assert counts["ORT_ENABLE_BASIC"] == {"Conv": 1, "Relu": 1}
    assert counts["ORT_ENABLE_EXTENDED"] == {"FusedConv": 1}
    assert all((tmp_path / f"{name}.onnx").is_file() for name in optimize.LEVEL_NAMES)


def test_optimize_at_level_reads_a_path_as_well_as_a_model(tmp_path):
    path = tmp_path / "model.onnx"
    onnx.save_model(lab09.prediction_model(), str(path))
    from_path = optimize.optimize_at_level(path, "ORT_ENABLE_BASIC", tmp_path / "basic.onnx")
    assert sum(optimize.op_histogram(from_path).values()) == 5


def test_op_histogram_keys_other_domains_by_domain_only_when_asked(tmp_path):
    extended = optimize.optimize_at_level(lab09.conv_batchnorm_model(), "ORT_ENABLE_EXTENDED", tmp_path / "x.onnx")
    assert optimize.op_histogram(extended) == {"FusedConv": 1}
    assert optimize.op_histogram(extended, with_domain=True) == {"com.microsoft:FusedConv": 1}


def test_make_session_sets_the_level_and_threads():
    session = optimize.make_session(lab09.prediction_model(), "basic", threads=1)
    assert session.get_session_options().graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    assert session.get_session_options().intra_op_num_threads == 1


def test_fold_batchnorm_computes_what_the_two_nodes_compute():
    parameters = lab09.batchnorm_parameters(out_channels=5, in_channels=2, seed=4)
    weight, bias = optimize.fold_batchnorm(*(parameters[name] for name in ("weight", "bias", "gamma", "beta", "mean",
                                                                             "var", "epsilon")))
    assert weight.dtype == bias.dtype == np.float32
    folded = helper.make_model(helper.make_graph(
        [helper.make_node("Conv", ["x", "w", "b"], ["y"], pads=[1, 1, 1, 1])], "folded",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["batch", 2, 8, 8])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, ["batch", 5, 8, 8])],
        initializer=[numpy_helper.from_array(weight, "w"), numpy_helper.from_array(bias, "b")]),
        opset_imports=[helper.make_opsetid("", 21)])
    x = np.random.default_rng(0).standard_normal((2, 2, 8, 8)).astype(np.float32)
    difference = optimize.max_output_difference(lab09.conv_batchnorm_model(parameters, relu=False), folded, {"x": x})
    assert difference < 1e-5


def test_fold_batchnorm_treats_a_missing_bias_as_zero():
    parameters = lab09.batchnorm_parameters(seed=2)
    arguments = [parameters[name] for name in ("weight", "bias", "gamma", "beta", "mean", "var")]
    without = optimize.fold_batchnorm(arguments[0], None, *arguments[2:])
    with_zero = optimize.fold_batchnorm(arguments[0], np.zeros(4, np.float32), *arguments[2:])
    np.testing.assert_array_equal(without[1], with_zero[1])


def test_drop_initializer_inputs_copies_and_raises_the_ir_version():
    model = lab09.ir3_model(0)
    dropped = optimize.drop_initializer_inputs(model)
    assert [value.name for value in dropped.graph.input] == ["x"]
    assert dropped.ir_version == 4 and model.ir_version == 3 and len(model.graph.input) == 3
    onnx.checker.check_model(dropped, full_check=True)


def test_max_output_difference_sees_a_changed_weight():
    model = lab09.ir3_model(0)
    changed = onnx.ModelProto()
    changed.CopyFrom(model)
    changed.graph.initializer[1].CopyFrom(numpy_helper.from_array(np.full(3, 5.0, np.float32), "b"))
    feeds = {"x": np.ones((2, 4), np.float32)}
    assert optimize.max_output_difference(model, model, feeds) == 0.0
    assert optimize.max_output_difference(model, changed, feeds) > 1.0


def test_producer_chain_walks_first_non_constant_producers():
    model = lab09.prediction_model()
    assert optimize.producer_chain(model, "y", length=4) == ["Squeeze", "Unsqueeze", "Div", "Dropout"]
    assert optimize.producer_chain(model, "x") == []


def test_collect_log_messages_keeps_them_from_stderr_and_restores_the_logger(capsys):
    logger = logging.getLogger("lab09.test.child")
    parent = logging.getLogger("lab09.test")
    parent.setLevel(logging.ERROR)
    with optimize.collect_log_messages("lab09.test", logging.DEBUG) as messages:
        logger.debug("seen %d", 1)
        logger.warning("seen too")
    assert messages == ["seen 1", "seen too"]
    assert parent.level == logging.ERROR and parent.propagate and parent.handlers == []
    assert capsys.readouterr().err == ""


def test_plot_op_histograms_draws_one_bar_group_per_graph():
    histograms = {"before": optimize.op_histogram(lab09.prediction_model()), "after": {"Sigmoid": 1, "Mul": 1}}
    figure = optimize.plot_op_histograms(histograms, title="t", top=5)
    axes = figure.axes[0]
    labels = [text.get_text() for text in axes.get_legend().get_texts()]
    assert labels == ["before (12 nodes)", "after (2 nodes)"]
    assert [tick.get_text() for tick in axes.get_yticklabels()][-1] == "other"
    assert len(axes.patches) == 2 * 6


def test_importing_optimize_loads_no_framework():
    code = ("import sys, labsupport.optimize\n"
            "print(','.join(m for m in ('onnx', 'onnxruntime', 'torch', 'matplotlib') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == ""
