"""A wide digits MLP whose weights dominate its ONNX file, for the quantization lab.

Introduced in lab 10. The lab CNN of lab 04 has a few thousand parameters, so its file is
mostly graph structure, names and metadata, and quantizing its weights barely changes the
size. This MLP has more than a hundred thousand parameters (64 → 384 → 256 → 10, ReLU
between), so its float32 file is almost all weights: the right model to see what int8 and
float16 storage buy.

It trains in a second or two on one CPU core: mini-batch Adam on scikit-learn's digits, with
the weights, the batch order and the thread count fixed, so every run gives the same
weights. Importing this module imports torch.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from torch import nn

from labsupport.models import SEED, DigitsSplit, load_digits_split, quiet_exporter_logs
from labsupport.models.torch_models import fit_classifier

__all__ = [
    "CALIBRATION_IMAGES",
    "WIDE_HIDDEN",
    "build_wide_mlp",
    "count_parameters",
    "export_wide_mlp",
    "hold_out_calibration",
    "train_wide_mlp",
]

WIDE_HIDDEN = (384, 256)
"""Widths of the two hidden layers: 126,090 parameters with the 64 inputs and 10 classes."""

CALIBRATION_IMAGES = 256
"""Training images held out from fitting, for calibrating static quantization."""


def hold_out_calibration(data: DigitsSplit, count: int = CALIBRATION_IMAGES) -> tuple[DigitsSplit, np.ndarray]:
    """Split the last ``count`` training images off for calibration.

    Returns the split to fit on (the test set unchanged) and the held-out images. Calibration
    needs inputs only, never labels, and must not see the test images the accuracy is
    measured on.
    """
    if not 0 < count < len(data.x_train):
        raise ValueError(f"count must be between 1 and {len(data.x_train) - 1}, got {count}")
    kept = len(data.x_train) - count
    return replace(data, x_train=data.x_train[:kept], y_train=data.y_train[:kept]), data.x_train[kept:]


def build_wide_mlp(hidden: tuple[int, ...] = WIDE_HIDDEN, seed: int = SEED) -> nn.Sequential:
    """An untrained MLP 64 → hidden… → 10 with ReLU between layers, seeded.

    The layers are named ``hidden1``, ``hidden2``… and ``classifier``, so the exported
    initializers read ``hidden1.weight``, ``classifier.bias`` and so on.
    """
    torch.manual_seed(seed)
    layers: list[tuple[str, nn.Module]] = []
    width = 64
    for number, size in enumerate(hidden, start=1):
        layers += [(f"hidden{number}", nn.Linear(width, size)), (f"relu{number}", nn.ReLU())]
        width = size
    layers.append(("classifier", nn.Linear(width, 10)))
    return nn.Sequential(OrderedDict(layers))


def count_parameters(model: nn.Module) -> int:
    """The number of trainable values (weights and biases) of ``model``."""
    return sum(parameter.numel() for parameter in model.parameters())


def train_wide_mlp(data: DigitsSplit | None = None, *, hidden: tuple[int, ...] = WIDE_HIDDEN, epochs: int = 10,
                   batch_size: int = 64, learning_rate: float = 0.003, seed: int = SEED) -> nn.Sequential:
    """Train :func:`build_wide_mlp` with mini-batch Adam on the digits training split.

    Mini-batches reach a good accuracy in a few epochs, much sooner than full-batch steps.
    Training runs on one thread (restored afterwards): for a model this small that is faster
    on a busy 2-core machine, and the weights do not depend on the machine's core count.
    Returns the model in eval mode; the lab measures and prints its accuracy.
    """
    data = data or load_digits_split(seed=seed)
    model = build_wide_mlp(hidden, seed=seed)
    images, labels = torch.from_numpy(data.x_train), torch.from_numpy(data.y_train)
    return fit_classifier(model, images, labels, epochs=epochs, learning_rate=learning_rate, batch_size=batch_size,
                          seed=seed)


def export_wide_mlp(path: str | Path, model: nn.Module | None = None) -> Path:
    """Export the (trained) wide MLP to ``path`` as one self-contained ONNX file.

    torch.export-based exporter (``dynamo=True``), input ``pixels`` [batch, 64], output
    ``logits`` [batch, 10], the batch dimension dynamic. The file keeps the exporter's
    per-node metadata (source stack traces and FX node names); lab 10 strips it before
    comparing sizes.
    """
    quiet_exporter_logs()
    model = model if model is not None else train_wide_mlp()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.onnx.export(model, (torch.zeros(2, 64),), str(path), input_names=["pixels"], output_names=["logits"],
                      dynamic_shapes=({0: torch.export.Dim("batch")},), dynamo=True, external_data=False,
                      verbose=False)
    return path
