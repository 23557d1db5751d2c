"""Unit tests of labsupport.capstone: model files and their feeds, predictions, measurements, the table, the plot."""

from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper, save_model

from labsupport.capstone import (
    BATCH_SIZES,
    PYTHON_RUNTIME,
    ComparisonTable,
    ModelFile,
    deployment_row,
    measure_models,
    plot_comparison,
    predicted_digits,
)
from labsupport.models import load_digits_split

matplotlib.use("Agg")


@pytest.fixture(scope="module")
def data():
    return load_digits_split()


@pytest.fixture(scope="module")
def least_squares(tmp_path_factory, data) -> ModelFile:
    """A one-Gemm digits classifier fitted by least squares: pixels [batch, 1, 8, 8] → logits [batch, 10]."""
    features = np.hstack([data.x_train, np.ones((len(data.x_train), 1), np.float32)])
    weights = np.linalg.lstsq(features, np.eye(10)[data.y_train], rcond=None)[0].astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Flatten", ["pixels"], ["flat"]), helper.make_node("Gemm", ["flat", "weight", "bias"],
                                                                           ["logits"])],
        "least_squares", [helper.make_tensor_value_info("pixels", TensorProto.FLOAT, ["batch", 1, 8, 8])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 10])],
        [numpy_helper.from_array(weights[:64], "weight"), numpy_helper.from_array(weights[64], "bias")])
    path = tmp_path_factory.mktemp("capstone") / "least_squares.onnx"
    save_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=10), str(path))
    return ModelFile("NumPy", "fp32", path)


@pytest.fixture(scope="module")
def labelled(tmp_path_factory, least_squares) -> ModelFile:
    """The same classifier with flat pixels ``input`` [batch, 64] and an integer ``label`` output first."""
    import onnx

    model = onnx.load(least_squares.path)
    graph = helper.make_graph(
        [helper.make_node("Gemm", ["input", "weight", "bias"], ["scores"]),
         helper.make_node("ArgMax", ["scores"], ["label"], axis=1, keepdims=0)],
        "labelled", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 64])],
        [helper.make_tensor_value_info("label", TensorProto.INT64, ["batch"]),
         helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["batch", 10])], list(model.graph.initializer))
    path = tmp_path_factory.mktemp("capstone") / "labelled.onnx"
    save_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=10), str(path))
    return ModelFile("scikit-learn", "fp32", path, "input", (64,))


# ---------------------------------------------------------------------------
# ModelFile and predictions
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("shape", [(1, 8, 8), (8, 8, 1), (64,)])
def test_feeds_reshape_flat_digits_to_the_files_layout_as_contiguous_float32(shape):
    model = ModelFile("any", "fp32", Path("model.onnx"), "pixels", shape)
    features = np.arange(3 * 64, dtype=np.float64).reshape(3, 64)
    (name, images), = model.feeds(features).items()
    assert name == "pixels" and images.shape == (3, *shape) and images.dtype == np.float32
    assert images.flags.c_contiguous
    np.testing.assert_array_equal(images.reshape(3, 64), features)


def test_a_model_file_is_named_by_framework_and_variant():
    assert ModelFile("PyTorch", "int8 static", Path("x.onnx")).name == "PyTorch int8 static"


def test_predicted_digits_take_the_label_output_before_any_scores():
    outputs = {"probabilities": np.eye(10, dtype=np.float32)[[1, 2, 3]], "label": np.array([7, 8, 9])}
    np.testing.assert_array_equal(predicted_digits(outputs), [7, 8, 9])


def test_predicted_digits_of_scores_are_the_largest_scores_positions():
    scores = np.zeros((3, 10), np.float32)
    scores[[0, 1, 2], [4, 0, 9]] = 1.0
    np.testing.assert_array_equal(predicted_digits({"logits": scores}), [4, 0, 9])


def test_predicted_digits_refuse_scores_that_are_not_rows_of_classes():
    with pytest.raises(ValueError, match=r"expected scores of shape \[rows, classes\], got \(10,\)"):
        predicted_digits({"logits": np.zeros(10)})


def test_outputs_and_predictions_come_from_pythons_onnx_runtime(least_squares, labelled, data):
    outputs = least_squares.outputs(data.x_test)
    assert list(outputs) == ["logits"] and outputs["logits"].shape == (len(data.x_test), 10)
    np.testing.assert_array_equal(least_squares.predict(data.x_test), outputs["logits"].argmax(axis=1))
    np.testing.assert_array_equal(labelled.predict(data.x_test), least_squares.predict(data.x_test))


# ---------------------------------------------------------------------------
# Measuring
# ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def table(least_squares, labelled, data) -> ComparisonTable:
    return measure_models([least_squares, labelled], data.x_test, data.y_test, min_seconds=0.01)


def test_measure_models_gives_each_file_its_size_accuracy_and_latency_at_both_batch_sizes(table, least_squares, data):
    row = table.row("NumPy fp32")
    assert row.runtime == PYTHON_RUNTIME and row.size_bytes == least_squares.path.stat().st_size
    assert row.accuracy == pytest.approx(np.mean(least_squares.predict(data.x_test) == data.y_test))
    assert 0.8 < row.accuracy < 1.0
    assert sorted(row.latency) == list(BATCH_SIZES)
    for batch, result in row.latency.items():
        assert result.batch_size == batch and result.repeats >= 50 and result.p50_ms > 0
        assert result.label == f"NumPy fp32 @ {batch}"


def test_a_label_output_classifier_is_scored_by_its_labels(table):
    assert table.row("scikit-learn fp32").accuracy == pytest.approx(table.row("NumPy fp32").accuracy)


def test_records_are_plain_values_a_rule_can_read(table):
    record = table.records()[0]
    assert set(record) == {"name", "framework", "variant", "runtime", "size_kb", "accuracy_pct", "p50_ms_batch1",
                           "p50_ms_batch64"}
    row = table.row(record["name"])
    assert record["size_kb"] == row.size_bytes / 1000 and record["accuracy_pct"] == 100 * row.accuracy
    assert record["p50_ms_batch1"] == row.latency[1].p50_ms


def test_a_deployment_row_scores_the_runtimes_own_outputs_and_times_batch_one_only(least_squares, data):
    outputs = {"logits": np.eye(10, dtype=np.float32)[data.y_test]}
    outputs["logits"][:45] = np.eye(10, dtype=np.float32)[(data.y_test[:45] + 1) % 10]
    row = deployment_row(least_squares, "C++ CLI", outputs, data.y_test, np.full(100, 0.004))
    assert row.name == "NumPy fp32 · C++ CLI" and row.accuracy == pytest.approx(0.9)
    assert list(row.latency) == [1] and row.p50_ms(1) == pytest.approx(0.004) and row.p50_ms(64) is None
    assert deployment_row(least_squares, "browser", outputs, data.y_test).latency == {}


def test_the_table_shows_every_row_and_a_dash_where_a_runtime_was_not_timed(table, least_squares, data):
    grown = ComparisonTable(list(table.rows))
    grown.add(deployment_row(least_squares, "browser", least_squares.outputs(data.x_test), data.y_test))
    text, markdown = grown.to_text(), grown._repr_markdown_()
    assert text.splitlines()[0].split() == ["framework", "variant", "runtime", "size", "(KB)", "accuracy", "(%)",
                                            "p50", "ms", "@", "1", "p50", "ms", "@", "64"]
    assert len(text.splitlines()) == 2 + len(grown.rows)
    assert markdown.startswith("| framework | variant | runtime |") and "| browser |" in markdown
    assert markdown.splitlines()[-1].endswith("| – | – |")
    assert [record["runtime"] for record in grown.records()] == [PYTHON_RUNTIME, PYTHON_RUNTIME]
    assert [record["runtime"] for record in grown.records(runtime=None)][-1] == "browser"


def test_an_unknown_row_name_lists_the_rows(table):
    with pytest.raises(KeyError, match=r"no row named 'Keras fp32'; the rows are \['NumPy fp32', 'scikit-learn fp32"):
        table.row("Keras fp32")


# ---------------------------------------------------------------------------
# The plot
# ---------------------------------------------------------------------------

def test_the_plot_has_a_bar_per_row_in_each_panel_the_highlight_and_the_floor(table, least_squares, data):
    grown = ComparisonTable(list(table.rows))
    grown.add(deployment_row(least_squares, "browser", least_squares.outputs(data.x_test), data.y_test))
    figure = plot_comparison(grown, highlight="NumPy fp32", accuracy_floor=85.0)
    accuracy_axes, size_axes, latency_axes = figure.axes
    assert [label.get_text() for label in accuracy_axes.get_yticklabels()] == [row.name for row in grown.rows]
    assert len(accuracy_axes.patches) == len(size_axes.patches) == len(grown.rows)
    assert len(latency_axes.patches) == len(BATCH_SIZES) * len(grown.rows)
    widths = [patch.get_width() for patch in latency_axes.patches]
    assert sum(np.isnan(widths)) == len(BATCH_SIZES), "the browser row has no latency bars"
    edges = [tuple(patch.get_edgecolor()) for patch in accuracy_axes.patches]
    assert edges[0] == (0.0, 0.0, 0.0, 1.0) and edges[1][3] == 0.0
    assert any(line.get_xdata()[0] == 85.0 for line in accuracy_axes.lines)
    assert latency_axes.get_xscale() == "log"
    import matplotlib.pyplot as plt

    plt.close(figure)
