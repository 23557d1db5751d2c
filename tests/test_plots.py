"""The plots labs show: converter counts, the drawn ONNX graph and the same model in Netron."""

import logging
import socket
import threading
import urllib.parse
import urllib.request

import matplotlib
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

matplotlib.use("Agg")

from matplotlib.text import Annotation  # noqa: E402

from labsupport.exercises.lab02 import reference_affine_model  # noqa: E402
from labsupport.plots import (  # noqa: E402
    EDGE_LABEL_GID,
    draw_graph,
    graph_layers,
    plot_converter_counts,
    show_in_netron,
    stop_netron,
)


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


def _edge_labels(figure):
    return [text.get_text() for text in figure.axes[0].texts if text.get_gid() == EDGE_LABEL_GID]


def _arrows(figure):
    return [text for text in figure.axes[0].texts if isinstance(text, Annotation)]


def test_every_drawn_edge_is_labelled_including_the_edges_into_graph_outputs():
    figure = draw_graph(reference_affine_model())
    assert sorted(_edge_labels(figure)) == ["x", "xW", "y", "z"]
    assert len(_edge_labels(figure)) == len(_arrows(figure))


def test_every_edge_of_a_graph_with_two_outputs_and_weights_shown_is_labelled():
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["xW"]), helper.make_node("Relu", ["xW"], ["y"]),
         helper.make_node("Sigmoid", ["xW"], ["p"])],
        "two_outputs", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2]),
         helper.make_tensor_value_info("p", TensorProto.FLOAT, [1, 2])],
        initializer=[numpy_helper.from_array(np.eye(2, dtype=np.float32), "W")])
    figure = draw_graph(helper.make_model(graph), show_initializers=True)
    assert sorted(_edge_labels(figure)) == ["W", "p", "x", "xW", "xW", "y"]
    assert len(_edge_labels(figure)) == len(_arrows(figure))


@pytest.fixture
def netron_model(tmp_path):
    path = tmp_path / "affine.onnx"
    onnx.save_model(reference_affine_model(), path)
    yield path
    stop_netron()


def _get(url):
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url, timeout=10) as response:
        return response.status, response.read()


def _netron_port(frame) -> int:
    parsed = urllib.parse.urlparse(frame.src)
    assert parsed.scheme == "http" and parsed.hostname == "127.0.0.1", frame.src
    return parsed.port


def test_netron_serves_the_page_and_the_model_on_loopback_and_stop_closes_the_port(netron_model):
    import netron.server

    frame = show_in_netron(netron_model)
    port = _netron_port(frame)
    status, page = _get(f"http://127.0.0.1:{port}/")
    assert status == 200 and b"<title>Netron</title>" in page
    assert _get(f"http://127.0.0.1:{port}/data/{netron_model.name}") == (200, netron_model.read_bytes())
    servers = [thread.server for thread in threading.enumerate() if isinstance(thread, netron.server._HTTPServerThread)
               and thread.alive()]
    assert [server.socket.getsockname() for server in servers] == [("127.0.0.1", port)]

    assert stop_netron() is True
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    assert stop_netron() is False


def test_netron_leaves_logging_alone_and_writes_nothing_to_stderr(netron_model, monkeypatch, capfd):
    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", [])  # as in a fresh kernel: netron would call logging.basicConfig
    level = root.level
    show_in_netron(netron_model)
    stop_netron()
    assert root.handlers == [] and root.level == level
    assert capfd.readouterr().err == ""


def test_showing_a_second_model_stops_the_first_server(netron_model):
    first = _netron_port(show_in_netron(netron_model))
    second = _netron_port(show_in_netron(netron_model))
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", first), timeout=2).close()
    assert _get(f"http://127.0.0.1:{second}/")[0] == 200


def test_netron_on_a_missing_file_says_to_save_it_first(tmp_path):
    with pytest.raises(FileNotFoundError, match="save the model there first"):
        show_in_netron(tmp_path / "missing.onnx")
