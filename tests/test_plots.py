"""The plots labs show: converter counts and the drawn ONNX graph."""

import matplotlib

matplotlib.use("Agg")

from labsupport.exercises.lab02 import reference_affine_model  # noqa: E402
from labsupport.plots import draw_graph, graph_layers, plot_converter_counts  # noqa: E402


def test_converter_plot_draws_n_times_m_and_n_plus_m():
    figure = plot_converter_counts(max_frameworks=5)
    point_to_point, through_ir = figure.axes[0].lines
    assert list(point_to_point.get_ydata()) == [1, 4, 9, 16, 25]
    assert list(through_ir.get_ydata()) == [2, 4, 6, 8, 10]


def test_graph_layers_put_each_node_one_below_its_deepest_producer():
    assert list(graph_layers(reference_affine_model().graph).values()) == [1, 2, 3]


def test_drawn_graph_shows_inputs_ops_outputs_and_tensor_names():
    figure = draw_graph(reference_affine_model(), show_initializers=True)
    texts = [text.get_text() for text in figure.axes[0].texts]
    for label in ("x", "W", "b", "MatMul", "Add", "Relu", "y", "xW", "z"):
        assert label in texts


def test_drawn_graph_can_hide_weights_and_tensor_names():
    figure = draw_graph(reference_affine_model(), show_tensor_names=False)
    texts = [text.get_text() for text in figure.axes[0].texts]
    assert "W" not in texts and "xW" not in texts and "MatMul" in texts
