"""Plots the labs show: converter counts (lab 01) and an ONNX graph drawn as a DAG (lab 02).

Matplotlib only, so the drawings work on any machine without Graphviz.
"""

from __future__ import annotations

from collections import defaultdict

__all__ = ["draw_graph", "graph_layers", "plot_converter_counts"]


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

    Operators are boxes labelled with their op type; arrows are tensors, labelled with
    their names (the only thing that links nodes in ONNX) unless ``show_tensor_names`` is
    False. Initializers (weights) are hidden unless ``show_initializers`` is True.
    Returns the Figure.
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
    edges += [(producer[value.name], f"out:{value.name}", value.name) for value in graph.output if value.name in producer]
    for source, target, tensor in edges:
        axes.annotate("", xy=positions[target], xytext=positions[source],
                      arrowprops={"arrowstyle": "-|>", "color": "0.4", "shrinkA": 14, "shrinkB": 14})
        if show_tensor_names and not target.startswith("out:"):
            (x0, y0), (x1, y1) = positions[source], positions[target]
            axes.text((x0 + x1) / 2, (y0 + y1) / 2, tensor, ha="center", va="center", fontsize=7, color="0.35",
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
