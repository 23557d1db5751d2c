"""ONNX Runtime's sessions, execution providers and the ORT format, seen from Python.

Introduced in lab 08. Four small helpers:

* :func:`capture_ort_logs` routes ONNX Runtime's own log lines (the ones it otherwise writes
  to stderr) into a Python list for the duration of a ``with`` block, through
  ``onnxruntime.set_default_logger_callback`` (a recent addition, present in the pinned 1.32).
* :func:`request_providers` creates a session with a list of execution providers and records
  what ONNX Runtime said while doing so — its Python warnings, its log lines and the notices
  it prints — instead of letting them reach stderr, and which providers the session really has.
* :func:`convert_to_ort_format` runs the converter ``onnxruntime.tools.convert_onnx_models_to_ort``
  in a subprocess and returns the ``.ort`` file and the required-operators config it wrote, or
  raises :class:`OrtConversionError` with one line.
* :func:`probe_denormals` creates sessions with ``session.set_denormal_as_zero`` in a fresh
  Python process and reports what the flag changed there (see its docstring for why a fresh
  process).
"""

from __future__ import annotations

import contextlib
import io
import json
import subprocess
import sys
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from labsupport.onnx_tools import first_line

__all__ = [
    "DEFAULT_LOG_SEVERITY",
    "DENORMAL_VALUE",
    "DenormalProbe",
    "OrtConversion",
    "OrtConversionError",
    "OrtLogRecord",
    "ProviderAttempt",
    "capture_ort_logs",
    "convert_to_ort_format",
    "probe_denormals",
    "request_providers",
]

#: ONNX Runtime's default log severity: 0 verbose, 1 info, 2 warning, 3 error, 4 fatal.
DEFAULT_LOG_SEVERITY = 2
_SEVERITY_LETTERS = "VIWEF"
_OPTIMIZATION_STYLES = ("Fixed", "Runtime")
_CONVERTER = "onnxruntime.tools.convert_onnx_models_to_ort"
# ``python -m CONVERTER``, except that torch is hidden: the onnxruntime.tools package imports torch at start-up
# when it is installed, for a PyTorch helper the converter never uses, which costs seconds per conversion.
_RUN_CONVERTER = (f"import runpy, sys; sys.modules['torch'] = None; sys.argv[0] = {_CONVERTER!r}; "
                  f"runpy.run_module({_CONVERTER!r}, run_name='__main__', alter_sys=True)")


# ---------------------------------------------------------------------------
# ONNX Runtime's log
# ---------------------------------------------------------------------------

@dataclass(frozen=True)
class OrtLogRecord:
    """One line of ONNX Runtime's log.

    Attributes:
        severity: 0 verbose, 1 info, 2 warning, 3 error, 4 fatal.
        logid: the session's ``SessionOptions.logid`` ('Default' for messages of no session).
        location: the C++ source file and line that wrote it.
        message: the text.
    """

    severity: int
    logid: str
    location: str
    message: str

    def __str__(self) -> str:
        letter = _SEVERITY_LETTERS[self.severity] if 0 <= self.severity < len(_SEVERITY_LETTERS) else "?"
        return f"[{letter}:{self.logid or '-'}] {self.message}"


@contextlib.contextmanager
def capture_ort_logs(severity: int = 1) -> Iterator[list[OrtLogRecord]]:
    """Collect ONNX Runtime's log lines of at least ``severity`` into a list instead of stderr.

    Inside the block, every message the runtime's logging manager emits from a Python thread
    (session creation, runs, provider registration) is appended to the list the ``with``
    statement binds; a session's own ``log_severity_level`` still filters its messages. On
    exit the runtime writes to stderr again, at its default severity (warnings and above).
    Messages from the runtime's own worker threads bypass the callback (see the docstring of
    ``onnxruntime.set_default_logger_callback``).
    """
    import onnxruntime

    records: list[OrtLogRecord] = []

    def keep(level: int, category: str, logid: str, location: str, message: str) -> None:
        records.append(OrtLogRecord(int(level), logid, location, message))

    onnxruntime.set_default_logger_callback(keep, severity)
    try:
        yield records
    finally:
        onnxruntime.set_default_logger_callback(None)
        onnxruntime.set_default_logger_severity(DEFAULT_LOG_SEVERITY)


# ---------------------------------------------------------------------------
# Asking for execution providers
# ---------------------------------------------------------------------------

@dataclass
class ProviderAttempt:
    """What happened when a session was created with a list of execution providers.

    Attributes:
        requested: the provider names asked for, in order of priority.
        active: ``session.get_providers()``: the providers the session really has.
        messages: what ONNX Runtime reported on the way, one line each: its Python warnings,
            then its log lines (warning severity and above), then the notices it printed.
        session: the session, or None when it could not be created.
        error: the first line of the error when it could not be created, else "".
    """

    requested: list[str]
    active: list[str]
    messages: list[str] = field(default_factory=list)
    session: Any = None
    error: str = ""

    @property
    def missing(self) -> list[str]:
        """Requested providers the session does not have."""
        return [name for name in self.requested if name not in self.active]

    def summary(self) -> str:
        """One line: what was asked for and what the session got."""
        if self.error:
            return f"asked for {self.requested}: no session ({self.error})"
        if self.missing:
            return f"asked for {self.requested}, got {self.active}: {', '.join(self.missing)} not available"
        return f"asked for {self.requested}, got {self.active}"


def _provider_name(entry: Any) -> str:
    return entry[0] if isinstance(entry, tuple) else str(entry)


def request_providers(model: str | Path | bytes, providers: Sequence[Any], sess_options: Any = None) -> ProviderAttempt:
    """Create an ``onnxruntime.InferenceSession`` with ``providers`` and record what happened.

    Args:
        model: a model path or the serialized model.
        providers: what ``InferenceSession(providers=...)`` takes: names, or ``(name, options)`` tuples.
        sess_options: an optional ``onnxruntime.SessionOptions``.

    Returns:
        A :class:`ProviderAttempt`. Nothing reaches stderr: ONNX Runtime's Python warnings,
        its log lines and the "EP Error … Falling back" notice it prints are in ``messages``.
    """
    import onnxruntime

    source = model if isinstance(model, bytes) else str(model)
    printed = io.StringIO()
    session, error = None, ""
    with warnings.catch_warnings(record=True) as caught, capture_ort_logs(DEFAULT_LOG_SEVERITY) as records, \
            contextlib.redirect_stdout(printed):
        warnings.simplefilter("always")
        try:
            session = onnxruntime.InferenceSession(source, sess_options, providers=list(providers))
        except Exception as failure:  # the runtime's own error, reported as one line below
            error = first_line(failure)
    messages = [f"{warning.category.__name__}: {first_line(warning.message)}" for warning in caught]
    messages += [f"log {record}" for record in records]
    messages += [f"printed: {line.strip()}" for line in printed.getvalue().splitlines()
                 if line.strip() and not set(line.strip()) <= {"*"}]
    active = session.get_providers() if session is not None else []
    return ProviderAttempt([_provider_name(entry) for entry in providers], active, messages, session, error)


# ---------------------------------------------------------------------------
# The ORT format
# ---------------------------------------------------------------------------

class OrtConversionError(ValueError):
    """The ORT-format converter could not convert a model; the message is one line saying what to do."""


@dataclass(frozen=True)
class OrtConversion:
    """One ORT-format file written by the converter, with the operator config written beside it.

    Attributes:
        style: "Fixed" (every optimization applied before saving) or "Runtime" (basic ones
            applied, the others saved to be replayed when the model is loaded).
        ort_path: the ``.ort`` file.
        config_path: the ``required_operators*.config`` file a reduced build is made from.
    """

    style: str
    ort_path: Path
    config_path: Path


def _converted_paths(model_path: Path, output_dir: Path, style: str, type_reduction: bool) -> tuple[Path, Path]:
    """Where the converter writes the model and config for one style (its own naming rules)."""
    suffix = ".with_runtime_opt" if style == "Runtime" else ""
    config = "required_operators_and_types" if type_reduction else "required_operators"
    return (output_dir / f"{model_path.stem}{suffix}.ort",
            output_dir / f"{model_path.stem}.{config}{suffix}.config")


def _tool_failure(output: str) -> str:
    """The line of the converter's output that says what went wrong."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    for line in reversed(lines):
        if line.startswith("Error converting") or "Error:" in line or "[ONNXRuntimeError]" in line:
            return line
    return lines[-1] if lines else "no output"


def convert_to_ort_format(model_path: str | Path, output_dir: str | Path, *, styles: Sequence[str] = ("Fixed",),
                          type_reduction: bool = False, timeout: float = 300.0) -> dict[str, OrtConversion]:
    """Convert an ONNX file to the ORT format with the converter that ships in the onnxruntime wheel.

    Runs ``python -m onnxruntime.tools.convert_onnx_models_to_ort MODEL --output_dir DIR
    --optimization_style STYLE … [--enable_type_reduction]`` in a subprocess of this interpreter,
    with one difference: torch is hidden from it. The ``onnxruntime.tools`` package imports torch
    when it is installed, for a PyTorch export helper the converter does not use, and that import
    takes longer than the conversion of a small model.

    Args:
        model_path: the ``.onnx`` file (the converter only picks up files with that suffix).
        output_dir: where the ``.ort`` files and configs go (created if needed).
        styles: "Fixed", "Runtime" or both; the converter runs once per style.
        type_reduction: also record, per operator, the element types the model uses.
        timeout: seconds before giving up.

    Returns:
        One :class:`OrtConversion` per style, keyed by style.

    Raises:
        labsupport.model_loader.ModelInputError: the file is missing or not an ONNX model.
        OrtConversionError: a bad argument, or the converter failed; one line either way.
    """
    from labsupport.model_loader import load_model

    unknown = [style for style in styles if style not in _OPTIMIZATION_STYLES]
    if not styles or unknown:
        raise OrtConversionError(f"optimization styles {list(styles)} are not valid: choose one or both of "
                                 f"{list(_OPTIMIZATION_STYLES)}.")
    model_path = Path(model_path)
    if model_path.suffix.lower() != ".onnx":
        raise OrtConversionError(f"{model_path}: the converter only converts files whose name ends in .onnx; "
                                 "rename or copy the file.")
    load_model(model_path)
    output_dir = Path(output_dir)
    arguments = [str(model_path), "--output_dir", str(output_dir), "--optimization_style", *styles]
    arguments += ["--enable_type_reduction"] if type_reduction else []
    try:
        completed = subprocess.run([sys.executable, "-c", _RUN_CONVERTER, *arguments], capture_output=True, text=True,
                                   timeout=timeout)
    except subprocess.TimeoutExpired:
        raise OrtConversionError(f"{model_path}: the converter did not finish within {timeout:g} s; "
                                 "pass a larger timeout for a large model.") from None
    if completed.returncode != 0:
        raise OrtConversionError(f"{model_path}: the ORT-format converter failed: "
                                 f"{_tool_failure(completed.stdout + completed.stderr)}")
    results = {}
    for style in styles:
        ort_path, config_path = _converted_paths(model_path, output_dir, style, type_reduction)
        missing = [path.name for path in (ort_path, config_path) if not path.is_file()]
        if missing:
            raise OrtConversionError(f"{model_path}: the converter reported success but did not write "
                                     f"{', '.join(missing)} in {output_dir}; run it by hand to see why: "
                                     f"python -m {_CONVERTER} {' '.join(arguments)}")
        results[style] = OrtConversion(style, ort_path, config_path)
    return results


# ---------------------------------------------------------------------------
# Denormal numbers
# ---------------------------------------------------------------------------

#: A denormal float32: smaller than the smallest normal float32 (1.18e-38) but not zero.
DENORMAL_VALUE = 1e-40

_DENORMAL_PROBE = """
import json, sys
import numpy as np
import onnxruntime as ort

model, plain_first = sys.stdin.buffer.read(), sys.argv[1] == "1"
tiny = np.full(1024, {value!r}, np.float32)

def session(flush):
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.add_session_config_entry("session.set_denormal_as_zero", "1" if flush else "0")
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])

if plain_first:
    session(False)
outputs = session(True).run(None, {{"x": tiny}})[0]
print(json.dumps({{"outputs_flushed": float((outputs == 0).mean()),
                  "numpy_flushes": bool(((tiny * np.float32(1)) == 0).all())}}))
"""


@dataclass(frozen=True)
class DenormalProbe:
    """What ``session.set_denormal_as_zero`` changed in a fresh process.

    Attributes:
        plain_session_first: whether a session without the flag was created first.
        outputs_flushed: fraction of ``x · 1`` outputs that came back as 0 for denormal ``x``.
        numpy_flushes: whether NumPy, on the same Python thread, then also turned denormals into 0.
    """

    plain_session_first: bool
    outputs_flushed: float
    numpy_flushes: bool


def _times_one_model() -> bytes:
    """``y = x · 1`` on a float32 vector ``x``: the result is ``x`` unless the CPU flushes denormals."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph([helper.make_node("Mul", ["x", "one"], ["y"])], "times_one",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n"])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n"])],
                              [numpy_helper.from_array(np.ones(1, np.float32), "one")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 10
    return model.SerializeToString()


def probe_denormals(*, plain_session_first: bool, timeout: float = 120.0) -> DenormalProbe:
    """Create a session with ``session.set_denormal_as_zero`` = 1 in a fresh Python process and report its effect.

    ONNX Runtime sets the CPU's flush-to-zero and denormals-are-zero modes for the threads of
    the session's own thread pool, and — once per process, as the *first* session is created —
    for the thread that creates it. That thread is the Python thread: from then on NumPy on it
    flushes denormals too. A notebook kernel that has already created sessions can no longer
    show the first case (and should not be switched into it), so the probe runs in a child
    process, with one intra-op thread so that the whole run happens on the calling thread.

    Args:
        plain_session_first: create a session without the flag before the one with it.
        timeout: seconds before giving up.
    """
    command = [sys.executable, "-c", _DENORMAL_PROBE.format(value=DENORMAL_VALUE), "1" if plain_session_first else "0"]
    completed = subprocess.run(command, input=_times_one_model(), capture_output=True, timeout=timeout)
    if completed.returncode != 0:
        raise RuntimeError(f"the denormal probe failed: {first_line(completed.stderr.decode(errors='replace'))}")
    report = json.loads(completed.stdout.decode().strip().splitlines()[-1])
    return DenormalProbe(plain_session_first, report["outputs_flushed"], report["numpy_flushes"])
