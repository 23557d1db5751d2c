"""Two small PyTorch models for lab 09 (graph optimization), built in seconds on the CPU.

Introduced in lab 09.

* The digits CNN **with BatchNormalization**: conv 3×3 → BatchNorm → ReLU → pool to 4×4 →
  conv 3×3 → BatchNorm → ReLU → linear, trained on scikit-learn's digits, so its BatchNorm
  layers hold real running statistics. Input ``pixels`` [batch, 1, 8, 8] float32 → output
  ``logits`` [batch, 10].
* A BERT-style **encoder layer**: multi-head self-attention with an additive padding mask,
  then a GELU feed-forward block, each followed by a residual connection and LayerNorm (post-LN,
  as in BERT). Inputs ``x`` [batch, sequence, hidden] float32 and ``mask`` [batch, sequence]
  int64 (1 = a real token, 0 = padding) → output ``y`` [batch, sequence, hidden]. Its weights
  are seeded, not trained: the lab studies its graph, not its predictions.

Both exporters of torch 2.13 fold an eval-mode BatchNorm into the convolution before it when
they optimize, so :func:`export_bn_cnn` turns that off by default: lab 09 is about what ONNX
Runtime does with the BatchNorm nodes. Importing this module imports torch.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from labsupport.models import SEED, DigitsSplit, load_digits_split, quiet_exporter_logs
from labsupport.models.torch_models import fit_classifier

__all__ = [
    "ENCODER_HEADS",
    "ENCODER_HIDDEN",
    "EncoderLayer",
    "build_bn_cnn",
    "build_encoder_layer",
    "encoder_feeds",
    "encoder_outputs",
    "export_bn_cnn",
    "export_encoder_layer",
    "padding_mask",
    "train_bn_cnn",
]

ENCODER_HIDDEN = 64
ENCODER_HEADS = 4
_ENCODER_INTERMEDIATE = 128
_TORCHSCRIPT_DEPRECATION = "You are using the legacy TorchScript-based ONNX export"
_TORCHSCRIPT_INTERNALS = r"torch\.onnx\._internal\.torchscript_exporter"
_SHARED_AXIS_NOTICE = r"# The axis name: .* will not be used, since it shares the same shape constraints"


def _torchscript_export(*args, **kwargs) -> None:
    """``torch.onnx.export(..., dynamo=False)`` without its deprecation notices.

    The TorchScript exporter announces that it is deprecated (lab 04 explains it) and one of
    its own helpers warns about an internal function; the builders of this module use it on
    purpose, for its speed, so both DeprecationWarnings are silenced here and only here.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_TORCHSCRIPT_DEPRECATION, category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=_TORCHSCRIPT_INTERNALS)
        torch.onnx.export(*args, dynamo=False, **kwargs)


# ---------------------------------------------------------------------------
# The digits CNN with BatchNormalization
# ---------------------------------------------------------------------------

def build_bn_cnn(seed: int = SEED) -> nn.Module:
    """An untrained digits CNN whose two convolutions are each followed by a BatchNorm layer."""
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(1, 8, kernel_size=3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(8, 16, kernel_size=3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
        nn.Flatten(),
        nn.Linear(16 * 4 * 4, 10),
    )


def train_bn_cnn(data: DigitsSplit | None = None, *, epochs: int = 30, seed: int = SEED) -> nn.Module:
    """Train :func:`build_bn_cnn` with full-batch Adam on one thread (a second or two); returns it in eval mode.

    Each training step also updates the BatchNorm running mean and variance (momentum 0.1),
    which eval mode then uses, so the exported BatchNorm nodes carry real statistics. One
    thread, because a model this small trains faster without thread coordination and its
    weights then do not depend on the machine's core count; the caller's setting is restored.
    """
    data = data or load_digits_split(seed=seed)
    model = build_bn_cnn(seed=seed)
    images = torch.from_numpy(data.x_train.reshape(-1, 1, 8, 8))
    return fit_classifier(model, images, torch.from_numpy(data.y_train), epochs=epochs, learning_rate=0.02)


def export_bn_cnn(path: str | Path, model: nn.Module | None = None, *, keep_batchnorm: bool = True) -> Path:
    """Export the (trained) BatchNorm CNN to ``path``: ``pixels`` [batch, 1, 8, 8] → ``logits`` [batch, 10].

    Uses the TorchScript exporter (``dynamo=False``), which takes a fraction of a second here.
    With ``keep_batchnorm`` (the default) its constant folding is off, so each BatchNorm stays a
    ``BatchNormalization`` node; with ``keep_batchnorm=False`` the exporter folds them into
    the convolutions itself, as both exporters do by default in eval mode. The exporter's
    deprecation notices are silenced: this builder uses it on purpose.
    """
    model = model if model is not None else train_bn_cnn()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _torchscript_export(model.eval(), (torch.zeros(3, 1, 8, 8),), str(path), do_constant_folding=not keep_batchnorm,
                        input_names=["pixels"], output_names=["logits"],
                        dynamic_axes={"pixels": {0: "batch"}, "logits": {0: "batch"}})
    return path


# ---------------------------------------------------------------------------
# The BERT-style encoder layer
# ---------------------------------------------------------------------------

class EncoderLayer(nn.Module):
    """One post-LN transformer encoder layer written out the way BERT's reference code writes it.

    ``forward(x, mask)``: queries, keys and values are three Linear projections split into
    heads; scores are ``q·kᵀ / √head_size`` plus ``(1 − mask) · −10000`` so padded positions get
    no attention; then softmax, the weighted sum of values, an output projection, a residual
    Add and LayerNorm; then Linear → GELU → Linear, a residual Add and LayerNorm.
    """

    def __init__(self, hidden: int = ENCODER_HIDDEN, heads: int = ENCODER_HEADS,
                 intermediate: int = _ENCODER_INTERMEDIATE):
        super().__init__()
        if hidden % heads:
            raise ValueError(f"hidden size {hidden} is not a multiple of the number of heads {heads}: pick sizes "
                             "where hidden = heads × head size.")
        self.heads, self.head_size = heads, hidden // heads
        self.query = nn.Linear(hidden, hidden)
        self.key = nn.Linear(hidden, hidden)
        self.value = nn.Linear(hidden, hidden)
        self.attention_output = nn.Linear(hidden, hidden)
        self.attention_norm = nn.LayerNorm(hidden, eps=1e-12)
        self.intermediate = nn.Linear(hidden, intermediate)
        self.output = nn.Linear(intermediate, hidden)
        self.output_norm = nn.LayerNorm(hidden, eps=1e-12)

    def _split_heads(self, projected: torch.Tensor) -> torch.Tensor:
        batch, sequence, _ = projected.shape
        return projected.view(batch, sequence, self.heads, self.head_size).permute(0, 2, 1, 3)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        query, key, value = (self._split_heads(projection(x)) for projection in (self.query, self.key, self.value))
        scores = torch.matmul(query, key.transpose(-1, -2)) / math.sqrt(self.head_size)
        scores = scores + (1.0 - mask[:, None, None, :].to(x.dtype)) * -10000.0
        context = torch.matmul(torch.softmax(scores, dim=-1), value).permute(0, 2, 1, 3).contiguous()
        batch, sequence = context.shape[:2]
        context = context.view(batch, sequence, self.heads * self.head_size)
        attended = self.attention_norm(x + self.attention_output(context))
        transformed = self.output(nn.functional.gelu(self.intermediate(attended)))
        return self.output_norm(attended + transformed)


def build_encoder_layer(seed: int = SEED) -> EncoderLayer:
    """The seeded encoder layer in eval mode, hidden size 64 in 4 heads, feed-forward width 128.

    The LayerNorm scales and shifts are drawn at random too (near 1 and 0), so no two
    parameters are equal by construction: an exporter may not merge them and a parity check
    sees every one of them.
    """
    torch.manual_seed(seed)
    layer = EncoderLayer()
    with torch.no_grad():
        for norm in (layer.attention_norm, layer.output_norm):
            norm.weight.uniform_(0.8, 1.2)
            norm.bias.uniform_(-0.1, 0.1)
    return layer.eval()


def padding_mask(lengths: list[int], sequence: int, *, side: str = "right") -> np.ndarray:
    """An int64 mask [len(lengths), sequence]: 1 for each row's first (``side="right"``) or last ``length`` tokens."""
    if side not in ("right", "left"):
        raise ValueError(f"side is {side!r}; pass 'right' (padding after the tokens) or 'left' (padding before them).")
    mask = np.zeros((len(lengths), sequence), np.int64)
    for row, length in enumerate(lengths):
        if side == "right":
            mask[row, :length] = 1
        else:
            mask[row, sequence - length:] = 1
    return mask


def encoder_feeds(*, side: str = "right", batch: int = 4, sequence: int = 8, seed: int = SEED) -> dict[str, np.ndarray]:
    """Seeded inputs for the encoder layer: ``x`` standard-normal and a ``mask`` padded on ``side``.

    The first row is a full sequence; the others are padded to lengths drawn between 2 and
    ``sequence - 1``, so a padding bug shows in their outputs.
    """
    generator = np.random.default_rng(seed)
    x = generator.standard_normal((batch, sequence, ENCODER_HIDDEN)).astype(np.float32)
    lengths = [sequence] + [int(length) for length in generator.integers(2, sequence, batch - 1)]
    return {"x": x, "mask": padding_mask(lengths, sequence, side=side)}


def encoder_outputs(layer: nn.Module, feeds: dict[str, np.ndarray]) -> np.ndarray:
    """What eager PyTorch computes for ``feeds`` (the reference for parity checks)."""
    with torch.no_grad():
        return layer(torch.from_numpy(feeds["x"]), torch.from_numpy(feeds["mask"])).numpy()


def export_encoder_layer(path: str | Path, layer: nn.Module | None = None, *, dynamo: bool = True) -> Path:
    """Export the encoder layer to ``path`` with dynamic batch and sequence axes; one self-contained file.

    ``dynamo=True`` uses the torch.export-based exporter (the default of torch 2.13, a few
    seconds). Both inputs share the batch and sequence axes, and torch then warns that each
    shared axis name "will not be used" for the second input: the names are kept once, which
    is what sharing means, so that UserWarning is silenced. ``dynamo=False`` uses the
    TorchScript exporter (a fraction of a second; its deprecation notices are silenced).
    Inputs ``x`` and ``mask``, output ``y``.
    """
    layer = layer if layer is not None else build_encoder_layer()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    example = encoder_feeds(batch=2, sequence=5)
    arguments = (torch.from_numpy(example["x"]), torch.from_numpy(example["mask"]))
    names = {"input_names": ["x", "mask"], "output_names": ["y"]}
    if dynamo:
        quiet_exporter_logs()
        batch, sequence = torch.export.Dim("batch"), torch.export.Dim("sequence")
        dynamic_shapes = ({0: batch, 1: sequence}, {0: batch, 1: sequence})
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=_SHARED_AXIS_NOTICE, category=UserWarning)
            torch.onnx.export(layer.eval(), arguments, str(path), dynamic_shapes=dynamic_shapes, external_data=False,
                              verbose=False, **names)
        return path
    axes = {0: "batch", 1: "sequence"}
    _torchscript_export(layer.eval(), arguments, str(path), dynamic_axes={"x": axes, "mask": axes, "y": axes}, **names)
    return path
