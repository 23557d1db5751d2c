"""Plots the labs show: converter counts (lab 01), an ONNX graph drawn as a DAG and the same
model in the Netron viewer (lab 02).

The drawings use matplotlib only, so they work on any machine without Graphviz. Netron is
served from this Python process on the loopback address and shown inline.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import time
import urllib.parse
import urllib.request
from collections import defaultdict
from pathlib import Path

__all__ = ["draw_graph", "graph_layers", "plot_converter_counts", "show_in_netron", "stop_netron"]

NETRON_HOST = "127.0.0.1"  # loopback only: the viewer and the model are never offered to the network
EDGE_LABEL_GID = "edge-label"  # matplotlib gid of the text that names the tensor an edge carries

_NETRON_STOP_SECONDS = 5.0  # Netron's server thread polls for a stop every 0.25 s
_netron_address: tuple[str, int] | None = None


def plot_converter_counts(max_frameworks: int = 8, runtimes_per_framework: float = 1.0):
    """Converters needed with point-to-point conversion (N×M) versus through an IR (N+M).

    The x axis is N, the number of training frameworks; the number of runtimes M grows
    with it (``M = round(runtimes_per_framework × N)``). Returns the matplotlib Figure.
    """
    import matplotlib.pyplot as plt

    frameworks = list(range(1, max_frameworks + 1))
    runtimes = [max(1, round(runtimes_per_framework * n)) for n in frameworks]
    figure, axes = plt.subplots(figsize=(6, 3.5))
    axes.plot(frameworks, [n * m for n, m in zip(frameworks, runtimes)], "o-", label="point to point: N × M")
    axes.plot(frameworks, [n + m for n, m in zip(frameworks, runtimes)], "s-", label="through one IR: N + M")
    axes.set_xlabel("training frameworks N (runtimes M grow alongside)")
    axes.set_ylabel("converters to write and maintain")
    axes.set_title("Why an interchange format pays off")
    axes.grid(alpha=0.3)
    axes.legend()
    figure.tight_layout()
    return figure


def graph_layers(graph) -> dict[str, int]:
    """Depth of every node and graph input/initializer: 0 for inputs, 1 + max over producers."""
    producer_depth: dict[str, int] = {value.name: 0 for value in graph.input}
    producer_depth.update({tensor.name: 0 for tensor in graph.initializer})
    depths: dict[str, int] = {}
    for index, node in enumerate(graph.node):  # ONNX requires nodes in topological order
        depth = 1 + max((producer_depth.get(name, 0) for name in node.input if name), default=0)
        depths[node.name or f"{node.op_type}_{index}"] = depth
        for output in node.output:
            producer_depth[output] = depth
    return depths


def draw_graph(model, *, show_initializers: bool = False, show_tensor_names: bool = True, title: str | None = None):
    """Draw an ONNX model's graph top to bottom: inputs, operators, outputs.

    Operators are boxes labelled with their op type; arrows are tensors, every one labelled
    with its tensor's name (the only thing that links nodes in ONNX), the arrows into the
    graph outputs included, unless ``show_tensor_names`` is False. Initializers (weights)
    are hidden unless ``show_initializers`` is True. Returns the Figure.
    """
    import matplotlib.pyplot as plt

    graph = model.graph
    initializers = {tensor.name for tensor in graph.initializer}
    node_depths = graph_layers(graph)
    positions: dict[str, tuple[float, float]] = {}
    labels: dict[str, str] = {}
    kinds: dict[str, str] = {}
    rows: dict[int, list[str]] = defaultdict(list)

    def place(key: str, depth: int, label: str, kind: str) -> None:
        rows[depth].append(key)
        labels[key], kinds[key] = label, kind

    for value in graph.input:
        if value.name not in initializers:
            place(f"in:{value.name}", 0, value.name, "input")
    if show_initializers:
        for name in sorted(initializers):
            place(f"in:{name}", 0, name, "initializer")
    producer = {}
    for index, node in enumerate(graph.node):
        key = node.name or f"{node.op_type}_{index}"
        place(key, node_depths[key], node.op_type, "node")
        for output in node.output:
            producer[output] = key
    last = max(node_depths.values(), default=0) + 1
    for value in graph.output:
        place(f"out:{value.name}", last, value.name, "output")
    for depth, keys in rows.items():
        for column, key in enumerate(keys):
            positions[key] = (column - (len(keys) - 1) / 2, -depth)

    width = max(len(keys) for keys in rows.values())
    figure, axes = plt.subplots(figsize=(max(4, 2.2 * width), 1.1 * (last + 1) + 0.5))
    edges = []
    for index, node in enumerate(graph.node):
        key = node.name or f"{node.op_type}_{index}"
        for name in node.input:
            source = producer.get(name) or (f"in:{name}" if f"in:{name}" in positions else None)
            if source:
                edges.append((source, key, name))
    edges += [(producer[value.name], f"out:{value.name}", value.name)
              for value in graph.output if value.name in producer]
    for source, target, tensor in edges:
        axes.annotate("", xy=positions[target], xytext=positions[source],
                      arrowprops={"arrowstyle": "-|>", "color": "0.4", "shrinkA": 14, "shrinkB": 14})
        if show_tensor_names:
            (x0, y0), (x1, y1) = positions[source], positions[target]
            axes.text((x0 + x1) / 2, (y0 + y1) / 2, tensor, ha="center", va="center", fontsize=7, color="0.35",
                      gid=EDGE_LABEL_GID,
                      bbox={"boxstyle": "round,pad=0.15", "facecolor": "white", "edgecolor": "none"})
    colours = {"input": "#cfe8ff", "output": "#d7f5d2", "initializer": "#f0f0f0", "node": "#ffe3b8"}
    for key, (x, y) in positions.items():
        style = "round,pad=0.4" if kinds[key] == "node" else "square,pad=0.3"
        axes.text(x, y, labels[key], ha="center", va="center", fontsize=9,
                  bbox={"boxstyle": style, "facecolor": colours[kinds[key]], "edgecolor": "0.3"})
    axes.set_xlim(-width / 2 - 0.5, width / 2 + 0.5)
    axes.set_ylim(-last - 0.6, 0.6)
    axes.axis("off")
    axes.set_title(title or (graph.name or "graph"))
    figure.tight_layout()
    return figure


def show_in_netron(path: str | Path, *, height: int = 520):
    """Serve an ONNX file with Netron on 127.0.0.1 and return an IFrame that shows it inline.

    Introduced in lab 02. Netron (the viewer from PyPI) runs in a thread of this process,
    bound to the loopback address on a free port, and never opens a browser. Before the
    IFrame is returned, the page and the model are fetched once with urllib (bypassing any
    proxy) to prove they are served. One model at a time: showing another stops the previous
    server. :func:`stop_netron` stops it; it also runs when the process exits.

    Netron only logs at INFO level ("Serving ... at"); those lines are dropped, and its
    ``logging.basicConfig`` call (made when the root logger has no handler) is kept from
    reconfiguring the process's logging.

    Raises:
        FileNotFoundError: ``path`` is not a file.
        RuntimeError: Netron started but did not serve the page or the model.
    """
    import netron
    from IPython.display import IFrame

    global _netron_address
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} is not a file: save the model there first, then show it in Netron.")
    stop_netron()
    _silence_netron_logger()
    with _root_logger_kept_as_is():
        _netron_address = tuple(netron.serve(str(path.resolve()), address=(NETRON_HOST, 0), browse=False))
    atexit.unregister(stop_netron)
    atexit.register(stop_netron)
    url = f"http://{_netron_address[0]}:{_netron_address[1]}"
    try:
        _verify_netron_serves(url, path)
    except (OSError, ValueError) as error:
        stop_netron()
        raise RuntimeError(f"Netron started at {url} but did not serve {path.name} ({error}); "
                           "the drawing from draw_graph shows the same graph.") from None
    return IFrame(url, width="100%", height=height)


def stop_netron() -> bool:
    """Stop the Netron server :func:`show_in_netron` started; True if one was running."""
    global _netron_address
    if _netron_address is None:
        return False
    import netron

    address, _netron_address = _netron_address, None
    running = netron.status(address)
    netron.stop(address)
    deadline = time.monotonic() + _NETRON_STOP_SECONDS
    while netron.status(address) and time.monotonic() < deadline:  # the port closes when its thread ends
        time.sleep(0.02)
    return running


def _silence_netron_logger() -> None:
    netron_logger = logging.getLogger("netron.server")
    if not any(isinstance(handler, logging.NullHandler) for handler in netron_logger.handlers):
        netron_logger.addHandler(logging.NullHandler())
    netron_logger.propagate = False


@contextlib.contextmanager
def _root_logger_kept_as_is():
    """Give the root logger a handler while netron.serve runs, so it skips ``logging.basicConfig``."""
    root = logging.getLogger()
    placeholder = None if root.hasHandlers() else logging.NullHandler()
    if placeholder is not None:
        root.addHandler(placeholder)
    try:
        yield
    finally:
        if placeholder is not None:
            root.removeHandler(placeholder)


def _verify_netron_serves(url: str, path: Path) -> None:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(f"{url}/", timeout=10) as response:
        if b"<title>Netron</title>" not in response.read():
            raise ValueError("the page is not Netron's")
    with opener.open(f"{url}/data/{urllib.parse.quote(path.name)}", timeout=10) as response:
        if response.read() != path.read_bytes():
            raise ValueError("the model it serves differs from the file")
