"""PyTorch reference models for lab 04 (and the parity harness of lab 07).

Introduced in lab 04. Two small seeded models, each trained in a second or two on the CPU:

* the digits CNN: input ``pixels`` [batch, 1, 8, 8] float32 → output ``logits`` [batch, 10];
* a token-sequence classifier: input ``tokens`` [batch, sequence] int64 → output ``logits``
  [batch, 2], an embedding averaged over the sequence, so any sequence length is valid;
* :class:`ScaleToUnitLoop`, lab 04's data-dependent loop (halve the pixels until none exceeds
  1) written with ``torch.while_loop``, so that it exports as an ONNX ``Loop``.

Every ``export_*`` function uses the torch.export-based exporter with dynamic axes and writes
one self-contained file; every ``exported_*`` function returns an :class:`ExportedModel` whose
reference outputs come from eager PyTorch. Importing this module imports torch.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
from torch import nn

from labsupport.models import SEED, DigitsSplit, ExportedModel, load_digits_split, quiet_exporter_logs

__all__ = [
    "SEQUENCE_VOCABULARY",
    "ScaleToUnitLoop",
    "build_digits_cnn",
    "build_sequence_model",
    "export_digits_cnn",
    "export_scale_to_unit",
    "export_sequence_model",
    "exported_digits_cnn",
    "exported_sequence_model",
    "fit_classifier",
    "make_sequence_data",
    "train_digits_cnn",
    "train_sequence_model",
]

SEQUENCE_VOCABULARY = 32


def build_digits_cnn(seed: int = SEED, in_channels: int = 1) -> nn.Module:
    """An untrained small CNN for 8×8 digit images: conv 3×3 → pool to 4×4 → conv 3×3 → linear.

    ``in_channels=3`` gives lab 12's colour variant (the same layers, three input channels).
    """
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(in_channels, 8, kernel_size=3, padding=1), nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(8, 16, kernel_size=3, padding=1), nn.ReLU(),
        nn.Flatten(),
        nn.Linear(16 * 4 * 4, 10),
    )


def fit_classifier(model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor, *, epochs: int,
                   learning_rate: float, batch_size: int | None = None, seed: int = SEED) -> nn.Module:
    """Adam on cross-entropy, full-batch or in shuffled mini-batches; returns the model in eval mode.

    The one training loop of the course's PyTorch models (it works inside ``torch.no_grad()``
    too). With ``batch_size`` the rows are shuffled each epoch by a generator seeded with
    ``seed``. Trains on one thread, then restores the caller's setting: models this small train
    faster without thread coordination (several times faster on a busy 2-core machine), and
    the weights then do not depend on the machine's core count.
    """
    optimizer = torch.optim.Adam(model.parameters(), lr=learning_rate)
    loss_function = nn.CrossEntropyLoss()
    order = torch.Generator().manual_seed(seed)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    model.train()
    try:
        with torch.enable_grad():
            for _ in range(epochs):
                if batch_size is None:
                    batches = [slice(None)]
                else:
                    shuffled = torch.randperm(len(inputs), generator=order)
                    batches = [shuffled[start:start + batch_size] for start in range(0, len(inputs), batch_size)]
                for batch in batches:
                    optimizer.zero_grad()
                    loss_function(model(inputs[batch]), labels[batch]).backward()
                    optimizer.step()
    finally:
        torch.set_num_threads(threads)
    return model.eval()


def train_digits_cnn(data: DigitsSplit | None = None, *, epochs: int = 40, seed: int = SEED) -> nn.Module:
    """Train :func:`build_digits_cnn` with full-batch Adam (a second or two on one core).

    Returns the model in eval mode. The labs measure and print its test accuracy.
    """
    data = data or load_digits_split(seed=seed)
    model = build_digits_cnn(seed=seed)
    images = torch.from_numpy(data.x_train.reshape(-1, 1, 8, 8))
    return fit_classifier(model, images, torch.from_numpy(data.y_train), epochs=epochs, learning_rate=0.02)


def export_digits_cnn(path: str | Path, model: nn.Module | None = None) -> Path:
    """Export the (trained) digits CNN to ``path`` as one self-contained ONNX file.

    torch.export-based exporter; input ``pixels`` [batch, 1, 8, 8], output ``logits``
    [batch, 10]; the batch dimension is dynamic.
    """
    quiet_exporter_logs()
    model = model if model is not None else train_digits_cnn()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    example = torch.zeros(3, 1, 8, 8)
    torch.onnx.export(model, (example,), str(path), input_names=["pixels"], output_names=["logits"],
                      dynamic_shapes=({0: torch.export.Dim("batch")},), external_data=False, verbose=False)
    return path


def _eager_outputs(model: nn.Module, input_name: str):
    def framework_outputs(feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        with torch.no_grad():
            return [model(torch.from_numpy(np.asarray(feeds[input_name]))).numpy()]
    return framework_outputs


def exported_digits_cnn(path: str | Path) -> ExportedModel:
    """The trained digits CNN exported to ``path``, with eager PyTorch as its reference."""
    data = load_digits_split()
    model = train_digits_cnn(data)
    return ExportedModel("digits CNN (PyTorch, torch.export)", export_digits_cnn(path, model),
                         {"pixels": data.x_test[:64].reshape(-1, 1, 8, 8)}, _eager_outputs(model, "pixels"),
                         ("logits",), {"pixels": (0,)})


class _MeanPooledTokens(nn.Module):
    """Embed every token, average over the sequence, classify: valid for any sequence length."""

    def __init__(self, vocabulary: int, width: int):
        super().__init__()
        self.embedding = nn.Embedding(vocabulary, width)
        self.classifier = nn.Sequential(nn.Linear(width, width), nn.ReLU(), nn.Linear(width, 2))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.embedding(tokens).mean(dim=1))


def build_sequence_model(width: int = 16, seed: int = SEED) -> nn.Module:
    """An untrained token classifier: ``tokens`` [batch, sequence] int64 → ``logits`` [batch, 2]."""
    torch.manual_seed(seed)
    return _MeanPooledTokens(SEQUENCE_VOCABULARY, width)


def make_sequence_data(count: int = 512, length: int = 12, seed: int = SEED) -> tuple[np.ndarray, np.ndarray]:
    """Random token sequences, labelled 1 when most of their tokens come from the lower half of the vocabulary.

    Returns ``(tokens, labels)``: int64 arrays of shape [count, length] and [count].
    """
    generator = np.random.default_rng(seed)
    lower_share = generator.uniform(0.1, 0.9, size=(count, 1))
    from_lower = generator.random((count, length)) < lower_share
    half = SEQUENCE_VOCABULARY // 2
    tokens = np.where(from_lower, generator.integers(0, half, (count, length)),
                      generator.integers(half, SEQUENCE_VOCABULARY, (count, length)))
    labels = (from_lower.sum(axis=1) * 2 > length).astype(np.int64)
    return tokens.astype(np.int64), labels


def train_sequence_model(*, epochs: int = 80, seed: int = SEED) -> nn.Module:
    """Train :func:`build_sequence_model` on :func:`make_sequence_data` with full-batch Adam (about a second)."""
    tokens, labels = make_sequence_data(seed=seed)
    model = build_sequence_model(seed=seed)
    return fit_classifier(model, torch.from_numpy(tokens), torch.from_numpy(labels), epochs=epochs, learning_rate=0.02)


def export_sequence_model(path: str | Path, model: nn.Module | None = None) -> Path:
    """Export the (trained) token classifier to ``path`` with dynamic batch and sequence axes."""
    quiet_exporter_logs()
    model = model if model is not None else train_sequence_model()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    example = torch.zeros(3, 7, dtype=torch.int64)
    dynamic_shapes = ({0: torch.export.Dim("batch"), 1: torch.export.Dim("sequence")},)
    torch.onnx.export(model, (example,), str(path), input_names=["tokens"], output_names=["logits"],
                      dynamic_shapes=dynamic_shapes, external_data=False, verbose=False)
    return path


def exported_sequence_model(path: str | Path) -> ExportedModel:
    """The trained token classifier exported to ``path``, with eager PyTorch as its reference.

    The sample feeds hold 64 fresh sequences of length 12 (a different seed from training);
    the harness may slice both the batch and the sequence axis.
    """
    model = train_sequence_model()
    tokens, _ = make_sequence_data(count=64, seed=SEED + 1)
    return ExportedModel("token classifier (PyTorch, torch.export)", export_sequence_model(path, model),
                         {"tokens": tokens}, _eager_outputs(model, "tokens"), ("logits",), {"tokens": (0, 1)})


class ScaleToUnitLoop(nn.Module):
    """Halve a whole batch of pixels while its largest value exceeds 1 (lab 04, exercise 3's reference).

    ``torch.while_loop`` captures the loop itself rather than the iterations one example
    happens to need, so the exported graph holds an ONNX ``Loop`` that decides at run time.
    """

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        (scaled,) = torch.while_loop(lambda carried: carried.max() > 1, lambda carried: (carried / 2,), (pixels,))
        return scaled


def export_scale_to_unit(path: str | Path) -> Path:
    """Export :class:`ScaleToUnitLoop` to ``path``: input ``pixels`` [batch, 1, 8, 8] → output ``scaled``.

    torch.export-based exporter, dynamic batch, one self-contained file, so later cells of lab
    04 can show and run the ``Loop`` whatever a learner wrote in the exercise.
    """
    quiet_exporter_logs()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    example = torch.full((3, 1, 8, 8), 16.0)
    torch.onnx.export(ScaleToUnitLoop().eval(), (example,), str(path), input_names=["pixels"], output_names=["scaled"],
                      dynamic_shapes=({0: torch.export.Dim("batch")},), external_data=False, verbose=False)
    return path
