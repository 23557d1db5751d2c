"""Reference data and models, built in seconds on the CPU from scikit-learn's digits.

Introduced in lab 01. Later cells that need a model never depend on a learner's answer:
they call these builders instead. Everything is seeded, so the same call gives the same
weights and the same numbers on every run.

This module holds the data and the digits MLP (labs 01–02). Each framework's reference
models live in a submodule, imported only when used: ``torch_models`` (lab 04),
``keras_models`` (lab 05) and ``classical_models`` (lab 06). Their ``export_*`` functions
return an :class:`ExportedModel`, which the validation harness of lab 07 consumes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = [
    "SEED",
    "DigitsSplit",
    "ExportedModel",
    "build_digits_mlp",
    "export_digits_mlp",
    "exported_digits_mlp",
    "load_digits_split",
    "quiet_exporter_logs",
    "train_digits_mlp",
]

SEED = 0


@dataclass(frozen=True)
class DigitsSplit:
    """8×8 digit images flattened to 64 float32 features in [0, 1], with integer labels."""

    x_train: np.ndarray
    x_test: np.ndarray
    y_train: np.ndarray
    y_test: np.ndarray


@dataclass(frozen=True)
class ExportedModel:
    """An exported ONNX file and what its source framework computes, for parity checks.

    Attributes:
        name: a short label for tables, e.g. ``"digits CNN (PyTorch, torch.export)"``.
        path: the self-contained ``.onnx`` file.
        sample_feeds: inputs keyed by ONNX input name, with a leading batch axis of at
            least 16 rows; the harness slices batches of different sizes from them.
        framework_outputs: computes the source framework's outputs for such feeds, in the
            ONNX graph's output order (e.g. eager PyTorch, Keras ``predict``, scikit-learn).
        output_names: the outputs to compare, in the same order as ``framework_outputs``.
        dynamic_axes: input name → axes the model was exported with as dynamic.
    """

    name: str
    path: Path
    sample_feeds: Mapping[str, np.ndarray]
    framework_outputs: Callable[[Mapping[str, np.ndarray]], Sequence[np.ndarray]]
    output_names: Sequence[str]
    dynamic_axes: Mapping[str, Sequence[int]]


def load_digits_split(test_fraction: float = 0.25, seed: int = SEED) -> DigitsSplit:
    """scikit-learn's bundled digits (1,797 images), split reproducibly into train and test."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    features = (digits.data / 16.0).astype(np.float32)
    x_train, x_test, y_train, y_test = train_test_split(
        features, digits.target.astype(np.int64), test_size=test_fraction, random_state=seed, stratify=digits.target)
    return DigitsSplit(x_train, x_test, y_train, y_test)


def build_digits_mlp(hidden: int = 32, seed: int = SEED):
    """An untrained 64 → hidden → 10 multilayer perceptron (PyTorch), seeded."""
    import torch
    from torch import nn

    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(64, hidden), nn.ReLU(), nn.Linear(hidden, 10))


def train_digits_mlp(data: DigitsSplit | None = None, *, hidden: int = 32, epochs: int = 60, seed: int = SEED):
    """Train :func:`build_digits_mlp` with full-batch Adam (about a second on one core).

    Returns the model in eval mode. Test accuracy is typically around 95 %; the labs
    measure and print it rather than trusting this docstring.
    """
    import torch
    from torch import nn

    data = data or load_digits_split(seed=seed)
    model = build_digits_mlp(hidden=hidden, seed=seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.02)
    features, labels = torch.from_numpy(data.x_train), torch.from_numpy(data.y_train)
    loss_function = nn.CrossEntropyLoss()
    model.train()
    for _ in range(epochs):
        optimizer.zero_grad()
        loss = loss_function(model(features), labels)
        loss.backward()
        optimizer.step()
    return model.eval()


def quiet_exporter_logs() -> None:
    """Hide two messages of torch 2.13's ONNX exporter that say nothing about your model.

    * ``torchvision is not installed. Skipping torchvision::nms`` (and three more): the
      exporter offers translations for torchvision's detection operators; the course does
      not install torchvision, so there is nothing to register.
    * ``FutureWarning: isinstance(treespec, LeafSpec) is deprecated``: an internal call
      inside torch itself, fixed upstream, harmless.

    Real problems (a failed export, an unsupported operator) still raise or warn.
    """
    import logging
    import warnings

    logging.getLogger("torch.onnx._internal.exporter._registration").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*", category=FutureWarning)


def exported_digits_mlp(path: str | Path) -> ExportedModel:
    """The trained digits MLP exported to ``path``, with eager PyTorch as its reference."""
    import torch

    data = load_digits_split()
    model = train_digits_mlp(data)

    def framework_outputs(feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        with torch.no_grad():
            return [model(torch.from_numpy(feeds["pixels"])).numpy()]

    return ExportedModel("digits MLP (PyTorch)", export_digits_mlp(path, model), {"pixels": data.x_test[:64]},
                         framework_outputs, ("logits",), {"pixels": (0,)})


def export_digits_mlp(path: str | Path, model=None, *, dynamic_batch: bool = True) -> Path:
    """Export the (trained) digits MLP to ``path`` as a single self-contained ONNX file.

    Uses the torch.export-based exporter, input ``pixels`` [batch, 64] and output
    ``logits`` [batch, 10], with the batch dimension dynamic unless told otherwise.
    """
    import torch

    quiet_exporter_logs()
    model = model if model is not None else train_digits_mlp()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    example = torch.zeros(2, 64)
    dynamic_shapes = ({0: torch.export.Dim("batch")},) if dynamic_batch else None
    torch.onnx.export(model, (example,), str(path), input_names=["pixels"], output_names=["logits"],
                      dynamic_shapes=dynamic_shapes, external_data=False, verbose=False)
    return path
