"""Keras reference models on the digits, and their conversion to ONNX with tf2onnx.

Introduced in lab 05. The digits CNN here has the layers of lab 04's PyTorch digits CNN,
in TensorFlow's own image layout: inputs are ``[batch, 8, 8, 1]`` float32 (NHWC, channels
last), outputs are 10 logits. It trains in a few seconds on one core and is seeded with
``keras.utils.set_random_seed``, so the same call gives the same weights.

Importing this module imports TensorFlow (several seconds). Before it does, it sets
``TF_CPP_MIN_LOG_LEVEL=2`` unless you set it yourself: TensorFlow's C++ core reads that
variable once, while it loads, and would otherwise print INFO and WARNING lines about CPU
instruction sets, GPUs and graph-optimizer sessions to standard error (which Jupyter shows
in the cell's output). Setting it after TensorFlow has
been imported has no effect, which is why it happens here, above the import. ERROR lines
still show.

One notice ignores the variable in TensorFlow 2.21, even at level 3: where oneDNN's
kernels are on (by default on x86 CPUs with VNNI, BF16 or AMX instructions, or with
``TF_ENABLE_ONEDNN_OPTS=1``), loading prints ``oneDNN custom operations are on …``,
each time after absl's ``WARNING: All log messages before absl::InitializeLog() is
called …``, twice. Turning oneDNN off would silence it by changing the numerics, so
instead the import runs with file descriptor 2 captured: those lines are kept in
:data:`TENSORFLOW_STARTUP_NOTICES` (lab 05 prints them) and every other line is passed on
to standard error unchanged.

The Python side is quieted on import too (:func:`quiet_tensorflow_logs`): in Jupyter,
TensorFlow's own Python logger notices the interactive session and switches itself to
INFO, so that, for instance, ``model.export`` prints ``INFO:tensorflow:Assets written to
…``; it is set back to WARNING, and absl's and tf2onnx's loggers likewise.
"""

from __future__ import annotations

import functools
import logging
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # must precede the TensorFlow import: see the docstring

import contextlib  # noqa: E402
import re  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
from collections.abc import Iterator, Mapping  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

_STARTUP_NOTICES = (
    re.compile(r"WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR$"),
    re.compile(r"I\d{4} [\d:.]+\s+\d+ \S+\] oneDNN custom operations are on\."),
)

TENSORFLOW_STARTUP_NOTICES: list[str] = []
"""The start-up notices held back while this module imported TensorFlow (empty where none was printed)."""


def is_startup_notice(line: str) -> bool:
    """True for the lines TF_CPP_MIN_LOG_LEVEL cannot hide: oneDNN's notice and absl's line before it."""
    return any(pattern.match(line.strip()) for pattern in _STARTUP_NOTICES)


@contextlib.contextmanager
def holding_back_startup_notices(held_back: list[str]) -> Iterator[None]:
    """Capture file descriptor 2; afterwards keep the start-up notices in ``held_back`` and pass on the rest.

    Native libraries write to the descriptor directly, past ``sys.stderr``; what Python writes
    to ``sys.stderr`` meanwhile is passed on as well, only later.
    """
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            lines = captured.read().decode(errors="replace").splitlines(keepends=True)
            held_back.extend(line.rstrip("\n") for line in lines if is_startup_notice(line))
            passed_on = "".join(line for line in lines if not is_startup_notice(line))
            if passed_on:
                sys.stderr.write(passed_on)
                sys.stderr.flush()


with holding_back_startup_notices(TENSORFLOW_STARTUP_NOTICES):
    import keras  # noqa: E402
    import tensorflow as tf  # noqa: E402

from labsupport.models import SEED, DigitsSplit, ExportedModel, load_digits_split  # noqa: E402

__all__ = [
    "INPUT_NAME",
    "OPSET",
    "OUTPUT_NAME",
    "TENSORFLOW_STARTUP_NOTICES",
    "build_digits_keras_cnn",
    "digits_images",
    "digits_input_signature",
    "export_digits_keras",
    "exported_digits_keras",
    "holding_back_startup_notices",
    "is_startup_notice",
    "quiet_tensorflow_logs",
    "train_digits_keras_cnn",
]

INPUT_NAME = "pixels"
OUTPUT_NAME = "logits"
OPSET = 17


def quiet_tensorflow_logs() -> None:
    """Show only warnings and errors from TensorFlow's, absl's and tf2onnx's Python loggers.

    Called when this module is imported. The C++ side is quieted by ``TF_CPP_MIN_LOG_LEVEL``,
    which must be set before TensorFlow loads (see the module docstring).
    """
    from absl import logging as absl_logging

    tf.get_logger().setLevel(logging.WARNING)
    absl_logging.set_verbosity(absl_logging.WARNING)
    logging.getLogger("tf2onnx").setLevel(logging.WARNING)


quiet_tensorflow_logs()


def digits_images(features: np.ndarray) -> np.ndarray:
    """Flattened digits ``[N, 64]`` as NHWC images ``[N, 8, 8, 1]`` (a view, no copy)."""
    return np.asarray(features, dtype=np.float32).reshape(-1, 8, 8, 1)


def digits_input_signature() -> tuple:
    """One ``tf.TensorSpec`` for ``pixels`` ``[None, 8, 8, 1]`` float32: ``None`` is a dynamic batch."""
    return (tf.TensorSpec((None, 8, 8, 1), tf.float32, name=INPUT_NAME),)


def _digits_layers() -> list:
    return [
        keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="conv1"),
        keras.layers.MaxPooling2D(2, name="pool"),
        keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="conv2"),
        keras.layers.Flatten(name="flatten"),
        keras.layers.Dense(10, name=OUTPUT_NAME),
    ]


def build_digits_keras_cnn(*, sequential: bool = False, seed: int = SEED) -> keras.Model:
    """An untrained, seeded digits CNN: conv 8 → max-pool → conv 16 → flatten → dense 10.

    ``sequential=False`` (the default) builds it with the functional API, input ``pixels``
    and output ``logits``; ``sequential=True`` builds a ``keras.Sequential`` with the same
    layers, which ``tf2onnx.convert.from_keras`` cannot convert under Keras 3 (lab 05).
    """
    keras.utils.set_random_seed(seed)
    if sequential:
        return keras.Sequential([keras.Input((8, 8, 1), name=INPUT_NAME), *_digits_layers()],
                                name="digits_cnn_sequential")
    inputs = keras.Input((8, 8, 1), name=INPUT_NAME)
    outputs = inputs
    for layer in _digits_layers():
        outputs = layer(outputs)
    return keras.Model(inputs, outputs, name="digits_cnn")


def train_digits_keras_cnn(data: DigitsSplit | None = None, *, sequential: bool = False, epochs: int = 10,
                           seed: int = SEED) -> keras.Model:
    """Train :func:`build_digits_keras_cnn` with Adam (about three seconds on one core).

    On the default split (``data=None``) training runs once per process: later calls build
    a fresh model and give it the same trained weights, so notebooks and checks that need
    the reference model do not pay for training twice. ``sequential=True`` returns the
    Sequential twin with those weights. Test accuracy is typically above 95 %; the labs
    measure and print it.
    """
    if data is None:
        model = build_digits_keras_cnn(sequential=sequential, seed=seed)
        model.set_weights(list(_trained_weights(epochs, seed)))
        _compile(model)
        return model
    return _fit(build_digits_keras_cnn(sequential=sequential, seed=seed), data, epochs)


def _compile(model: keras.Model) -> None:
    model.compile(optimizer=keras.optimizers.Adam(0.01),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])


def _fit(model: keras.Model, data: DigitsSplit, epochs: int) -> keras.Model:
    _compile(model)
    model.fit(digits_images(data.x_train), data.y_train, epochs=epochs, batch_size=128, verbose=0)
    return model


@functools.lru_cache(maxsize=4)
def _trained_weights(epochs: int, seed: int) -> tuple[np.ndarray, ...]:
    model = _fit(build_digits_keras_cnn(seed=seed), load_digits_split(seed=seed), epochs)
    return tuple(model.get_weights())


def export_digits_keras(path: str | Path, model: keras.Model | None = None, *, inputs_as_nchw: bool = False,
                        opset: int = OPSET) -> Path:
    """Convert the (trained) digits CNN to a self-contained ONNX file at ``path``.

    Wraps the model in a ``tf.function`` with a ``None`` batch in its input signature and
    converts it with ``tf2onnx.convert.from_function``: the path that works for both
    functional and Sequential Keras 3 models. The ONNX graph has input ``pixels`` and output
    ``logits``; the batch axis is dynamic. With ``inputs_as_nchw=True`` the input is declared
    ``[batch, 1, 8, 8]`` (channels first) and the graph converts it back to what the Keras
    layers expect.
    """
    import tf2onnx

    model = model if model is not None else train_digits_keras_cnn()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    signature = digits_input_signature()

    @tf.function(input_signature=signature)
    def predict_logits(pixels):
        return {OUTPUT_NAME: model(pixels, training=False)}

    tf2onnx.convert.from_function(predict_logits, input_signature=signature, opset=opset,
                                  inputs_as_nchw=[INPUT_NAME] if inputs_as_nchw else None, output_path=str(path))
    return path


def exported_digits_keras(path: str | Path) -> ExportedModel:
    """The trained digits CNN exported to ``path`` (NHWC input), with Keras as its reference."""
    import onnx

    data = load_digits_split()
    model = train_digits_keras_cnn()  # the default split: trained once per process
    path = export_digits_keras(path, model)
    graph = onnx.load(str(path), load_external_data=False).graph

    def framework_outputs(feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        return [np.asarray(model(feeds[INPUT_NAME], training=False))]

    return ExportedModel("digits CNN (Keras 3, tf2onnx)", path, {INPUT_NAME: digits_images(data.x_test[:64])},
                         framework_outputs, tuple(output.name for output in graph.output), {INPUT_NAME: (0,)})
