"""Lab 13 — C++ and cross-runtime deployment: a C++ inference CLI, a custom operator, Node.js.

The exercises describe the tensor a C++ program creates for a batch, name the library file
the dynamic loader opens for the C++ program, compute the per-call overhead Python adds from
two sets of timings, and write the custom operator's formula in NumPy. The helpers below give
the notebook its model (lab 04's digits CNN, trained, written as ONNX by lab 11's builder), a
way to ask a C library for a C API version as a program would at start-up, and the rule for
missing prerequisites: outside CI a cell explains what is missing and the lab goes on; with
``CI=true`` it is a failure.
"""

from __future__ import annotations

import numbers
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from labsupport.checking import (
    EqualityProblem,
    FunctionProblem,
    Incorrect,
    Problem,
    ThoughtExperiment,
    Uncheckable,
    assert_equal,
    make_binder,
)

LAB = "13_native_deployment"

SONAME = "libonnxruntime.so.1"
REQUEST_IMAGES = 5  # exercise 1's batch


# ---------------------------------------------------------------------------
# Helpers the notebook uses
# ---------------------------------------------------------------------------

def in_ci() -> bool:
    """True when the ``CI`` environment variable says so (``CI=true``, as CI services set it)."""
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


def explain_missing(error: Exception) -> None:
    """A missing prerequisite: raise it under ``CI=true``; otherwise print it and return None.

    ``error`` is a :class:`labsupport.native.NativeToolchainError` or a
    :class:`labsupport.node.NodeRuntimeError`, whose one line names what is missing and the
    command that installs it. Outside CI the lab goes on: the cells that need the missing part
    check for it and print a reminder instead of failing.
    """
    if in_ci():
        raise error
    print(f"Not available on this machine: {error}")
    print("The cells that need it say so and skip their work; everything else in the lab runs.")


def save_trained_digits_cnn(path: str | Path, data=None) -> Path:
    """Lab 04's digits CNN trained on the digits (a few seconds), written as ONNX by lab 11's builder.

    Input ``pixels`` [batch, 1, 8, 8] float32, output ``logits`` [batch, 10], batch dynamic,
    opset 17, IR version 10.
    """
    from labsupport.exercises.lab11 import save_digits_cnn_onnx
    from labsupport.models.torch_models import train_digits_cnn

    return save_digits_cnn_onnx(train_digits_cnn(data), path)


_API_PROBE = """
import ctypes, sys
library = ctypes.CDLL(sys.argv[1])
class OrtApiBase(ctypes.Structure):
    _fields_ = [("GetApi", ctypes.CFUNCTYPE(ctypes.c_void_p, ctypes.c_uint32)),
                ("GetVersionString", ctypes.CFUNCTYPE(ctypes.c_char_p))]
library.OrtGetApiBase.restype = ctypes.POINTER(OrtApiBase)
print("served" if library.OrtGetApiBase().contents.GetApi(int(sys.argv[2])) else "refused")
"""


def request_api(library: str | os.PathLike, version: int) -> tuple[bool, str]:
    """Ask ``library`` for C API ``version``, as a program built with headers of that version does at start-up.

    ``OrtGetApiBase()->GetApi(version)`` runs in a child process (the library writes its refusal
    on the process's stderr). Returns whether the table was served, and what the library said.
    """
    completed = subprocess.run([sys.executable, "-c", _API_PROBE, os.fspath(library), str(version)],
                               capture_output=True, text=True, timeout=60)
    if completed.returncode != 0:
        raise RuntimeError(f"{library} could not be asked: {completed.stderr.strip().splitlines()[-1:]}")
    return completed.stdout.strip() == "served", completed.stderr.strip()


# ---------------------------------------------------------------------------
# Exercises
# ---------------------------------------------------------------------------

class CppTensorShape(EqualityProblem):
    prompt = "give the shape and the byte count a C++ program passes to CreateTensor for 5 images of digits"
    vars = ("cpp_shape", "cpp_bytes")
    hints = ("A tensor you create holds real data: every dimension has its actual size, even the ones the model "
             "declares as dynamic. The layout is the model's input layout, whatever shape the pixels arrived in.",
             "The byte count is the number of elements times the size of one element of the input's type.")
    solution = """cpp_shape = (5, 1, 8, 8)
cpp_bytes = 5 * 1 * 8 * 8 * 4"""

    def expected_value(self):
        return (REQUEST_IMAGES, 1, 8, 8), REQUEST_IMAGES * 64 * 4

    def check(self, cpp_shape, cpp_bytes):
        shape, size = self.expected_value()
        if isinstance(cpp_shape, np.ndarray):
            cpp_shape = tuple(cpp_shape.tolist())
        if not isinstance(cpp_shape, (tuple, list)):
            raise Incorrect(f"`cpp_shape` should be a tuple of dimensions (the C++ std::vector<int64_t>), but it is a "
                            f"{type(cpp_shape).__name__}.")
        dims = tuple(cpp_shape)
        if any(isinstance(dim, (float, np.floating)) for dim in dims):
            raise Incorrect("`cpp_shape` holds floats: the shape CreateTensor takes is a std::vector<int64_t>, whole "
                            "numbers, so write each dimension as an int (8, not 8.0).")
        if any(dim == -1 for dim in dims):
            raise Incorrect("`cpp_shape` holds -1: that is how GetShape() reports a dynamic dimension the model "
                            "declares; a tensor you create needs the actual batch size.")
        if len(dims) == 2:
            raise Incorrect("`cpp_shape` is 2-D: CreateTensor does not reshape, so describe the flat pixels with the "
                            "model's own 4-D input shape.")
        if len(dims) == 4 and dims[1:] == (8, 8, 1):
            raise Incorrect("`cpp_shape` is channels-last (NHWC); this model reads channels-first (NCHW).")
        if len(dims) == 4 and dims[1:] == (1, 8, 8) and dims[0] != REQUEST_IMAGES:
            raise Incorrect("`cpp_shape` has the model's image shape, but its batch dimension is not the number of "
                            "images in the request.")
        assert_equal("cpp_shape", dims, shape)
        if isinstance(cpp_bytes, numbers.Real) and not isinstance(cpp_bytes, bool):
            if cpp_bytes == size // 4:
                raise Incorrect("`cpp_bytes` is the number of elements; CreateTensor's p_data_byte_count is in bytes.")
            if cpp_bytes == size * 2:
                raise Incorrect("`cpp_bytes` counts 8 bytes per element (float64); the input is float32.")
        assert_equal("cpp_bytes", cpp_bytes, size)


def _same_folder(path: Path, folder: Path) -> bool:
    """True if ``path`` is ``folder``, however spelled (``..``, ``~``, another link to it)."""
    if os.path.normpath(path) == os.path.normpath(folder):
        return True
    try:
        return path.is_dir() and os.path.samefile(path, folder)
    except OSError:
        return False


class LoaderPath(Problem):
    prompt = "give the path the dynamic loader opens for the C++ CLI's ONNX Runtime library"
    vars = ("loaded_library",)
    hints = ("The program records the library's SONAME in a NEEDED entry, not the name the linker was given and not "
             "the file's full version; readelf shows it.",
             "The loader looks that name up first in the folders of the program's RUNPATH, which labsupport set to "
             "the toolchain's link folder.")
    solution = """loaded_library = toolchain.link_dir / "libonnxruntime.so.1\""""

    def check(self, loaded_library):
        if not isinstance(loaded_library, (str, os.PathLike)):
            raise Incorrect(f"`loaded_library` should be a path (a pathlib.Path or a str), but it is a "
                            f"{type(loaded_library).__name__}.")
        from labsupport.native import NativeToolchainError, find_toolchain

        try:
            toolchain = find_toolchain()
        except NativeToolchainError as error:
            raise Uncheckable(f"there is no C++ toolchain to check against on this machine: {error}") from None
        # ~ and .. are only spellings of the same path; the link itself is the answer, so symbolic links stay.
        answer = Path(os.path.abspath(os.path.expanduser(os.fspath(loaded_library))))
        if answer.name == SONAME and _same_folder(answer.parent, toolchain.link_dir):
            return
        if _same_folder(answer, toolchain.link_dir):
            raise Incorrect("`loaded_library` is the link folder itself, the one the RUNPATH names; give the file in "
                            "it that the loader opens.")
        if answer.name == "libonnxruntime.so":
            raise Incorrect("`loaded_library` ends in libonnxruntime.so: that is the name the linker uses at build "
                            "time. The program records another name for run time; read the NEEDED entry.")
        if answer.resolve() == toolchain.library.resolve():
            raise Incorrect("`loaded_library` is where the library really lives, which the loader reaches only "
                            "through a link: give the path it opens, in the folder the RUNPATH names.")
        if answer.name != SONAME:
            raise Incorrect(f"`loaded_library` is a file named {answer.name}, not the name the program records in "
                            "its NEEDED entry.")
        raise Incorrect("`loaded_library` has the right file name, but not in the folder the program's RUNPATH "
                        "names, which the loader searches first.")


class SquarePlusByHand(FunctionProblem):
    prompt = "write the custom operator SquarePlus, (x + sqrt(x² + b)) / 2, in NumPy"
    vars = ("squareplus",)
    hints = ("SquarePlus is a smooth ReLU: for large negative x it tends to 0, for large positive x to x, and at 0 it "
             "is half the square root of b.",
             "Compute it element-wise on the whole array with NumPy's functions (no Python loop), and keep float32.")
    solution = """def squareplus(x, b):
    return (x + np.sqrt(x * x + b)) / 2"""
    rtol = 1e-5
    atol = 1e-6

    def cases(self):
        rng = np.random.default_rng(13)
        return [((values, b), self._reference(values, b)) for values, b in (
            (np.array([-2.0, 0.0, 3.0], dtype=np.float32), 4.0),
            (np.array([[-1.0, 0.5], [2.0, -0.25]], dtype=np.float32), 1.0),
            (rng.normal(0.0, 3.0, (4, 6)).astype(np.float32), 0.25),
            (np.array([0.0], dtype=np.float32), 9.0),
        )]

    @staticmethod
    def _reference(x, b):
        from labsupport.native import squareplus_reference

        return squareplus_reference(x, b)

    def describe_call(self, args):
        x, b = args
        return f"`squareplus(<{x.shape} float32 array>, {b})`"

    def check(self, fn):
        self.require_function(fn)
        for args, expected in self.cases():
            x, b = args
            call = self.describe_call(args)
            actual = self.call_answer(fn, args)
            if not isinstance(actual, np.ndarray):
                raise Incorrect(f"{call} returned a {type(actual).__name__}; return a NumPy array, as the kernel "
                                "returns a tensor.")
            if actual.dtype == np.float64:
                raise Incorrect(f"{call} returned float64 values: the operator's input and output are float32, and "
                                "NumPy promotes float32 to float64 when it meets a float64 array or constant; keep "
                                "float32.")
            if actual.dtype != np.float32:
                raise Incorrect(f"{call} returned {actual.dtype} values; the operator's input and output are "
                                "float32: compute in float32.")
            if actual.shape == expected.shape:
                values = actual.astype(np.float64)
                if np.allclose(values, np.maximum(x, 0), atol=1e-6):
                    raise Incorrect(f"{call} returned ReLU's values; SquarePlus is smooth, and b sets how much.")
                if np.allclose(values, 2 * expected, rtol=1e-5, atol=1e-6):
                    raise Incorrect(f"{call} is twice the expected value: mind the division by 2.")
            assert_equal(call, actual, expected.astype(np.float32), rtol=self.rtol, atol=self.atol)


_TRIM_PROPORTIONS = (0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4)
"""The proportions cut from each end by the trimmed means the check recognises (``scipy.stats.trim_mean``'s rule)."""


def _trimmed_mean(values: np.ndarray, proportion: float) -> float:
    """The mean of ``values`` without the ``int(proportion * n)`` smallest and largest, as scipy.stats.trim_mean."""
    cut = int(proportion * len(values))
    return float(np.mean(np.sort(values)[cut:len(values) - cut]))


class OverheadPerCall(FunctionProblem):
    prompt = "compute the per-call overhead Python adds, in microseconds, from two sets of latencies in seconds"
    vars = ("overhead_us",)
    hints = ("Summarise each set by its typical call — the median, the middle value, which a few slow calls cannot "
             "drag (lab 11) — then compare the two.",
             "The overhead is how much longer the typical Python call takes than the typical C++ call; the inputs "
             "are in seconds and the answer in microseconds.")
    solution = """def overhead_us(python_latencies_s, cpp_latencies_s):
    return (np.median(python_latencies_s) - np.median(cpp_latencies_s)) * 1e6"""
    rtol = 1e-6

    def cases(self):
        rng = np.random.default_rng(13)
        python = 21e-6 + rng.exponential(2e-6, 301)
        cpp = 10e-6 + rng.exponential(1e-6, 401)
        python_with_hiccups = python.copy()
        python_with_hiccups[::50] = 4e-3
        raw = [(np.array([20e-6, 22e-6, 21e-6]), np.array([10e-6, 11e-6, 12e-6])),
               (python, cpp), (python_with_hiccups, cpp), (np.array([5e-3, 6e-3]), np.array([4e-3, 4.5e-3, 5e-3]))]
        return [((p, c), float((np.median(p) - np.median(c)) * 1e6)) for p, c in raw]

    def describe_call(self, args):
        python, cpp = args
        return f"`overhead_us(<{len(python)} Python latencies>, <{len(cpp)} C++ latencies>)`"

    def check(self, fn):
        self.require_function(fn)
        for args, expected in self.cases():
            call = self.describe_call(args)
            actual = self.call_answer(fn, args)
            if isinstance(actual, bool) or not isinstance(actual, (numbers.Real, np.number)):
                raise Incorrect(f"{call} returned a {type(actual).__name__}; return the overhead as a number.")
            actual = float(actual)
            if np.isclose(actual, expected, rtol=self.rtol):
                continue
            self._name_the_mistake(call, actual, expected, *args)
            if np.isclose(actual, expected, rtol=0.01):
                raise Incorrect(f"{call} = {actual:.6g} is within 1 % of the overhead but not equal to it: summarise "
                                "each set by its median, and do not round.")
            raise Incorrect(f"{call} = {actual:.4g} is too {'small' if actual < expected else 'large'}.")

    def _name_the_mistake(self, call, actual, expected, python, cpp):
        """Raise Incorrect naming the mistake ``actual`` matches, if it matches one the check knows."""
        def matches(candidate):
            return not np.isclose(candidate, expected, rtol=1e-3) and np.isclose(actual, candidate, rtol=1e-6)

        if matches(float((np.mean(python) - np.mean(cpp)) * 1e6)):
            raise Incorrect(f"{call} compares means: a few slow calls drag a mean; the typical call is the median.")
        if matches(float((np.min(python) - np.min(cpp)) * 1e6)):
            raise Incorrect(f"{call} compares the fastest calls: a minimum is the best case, not the typical call, "
                            "which is the median.")
        if any(matches((_trimmed_mean(python, cut) - _trimmed_mean(cpp, cut)) * 1e6) for cut in _TRIM_PROPORTIONS):
            raise Incorrect(f"{call} compares trimmed means: they drop the slowest calls but still average the tail "
                            "that remains; the typical call is the median.")
        for digits in range(4):
            if np.isclose(actual, round(expected, digits), rtol=1e-9, atol=1e-9):
                places = f"{digits} decimal place{'s' if digits != 1 else ''}" if digits else "a whole number"
                raise Incorrect(f"{call} is the overhead rounded to {places}: return the exact value, and round only "
                                "when you print it.")
        if np.isclose(actual, -expected, rtol=1e-6):
            raise Incorrect(f"{call} has the wrong sign: subtract the C++ latency from Python's.")
        for factor, unit in ((1e-3, "milliseconds"), (1e-6, "seconds")):
            if np.isclose(actual, expected * factor, rtol=1e-6):
                raise Incorrect(f"{call} is in {unit}; the answer is in microseconds.")
        if np.isclose(actual, float(np.median(python) / np.median(cpp)), rtol=1e-6):
            raise Incorrect(f"{call} is the ratio of the two latencies; the overhead is their difference.")


class HeaderLibrarySkew(ThoughtExperiment):
    prompt = "why do 1.21 headers work with the 1.32 library, and what breaks the other way round?"
    solution = (
        "ONNX Runtime's C API is one table of function pointers (OrtApi) that only ever grows: each release appends "
        "functions and never moves or removes one. A program built with headers of API version N calls "
        "OrtGetApiBase()->GetApi(N) at start-up, and a library serves every version from 1 to its own, so the 1.32 "
        "library hands a program built with the 1.21 headers (API 21) a table whose first entries are exactly the ones "
        "those headers know. The C++ API is header-only inline code over that table, compiled into the program. "
        "The guarantee covers the binary interface and the library's behaviour, not the headers' newer "
        "features. The other way round, headers newer than the library (a program built with 1.32 headers run "
        "against the 1.30 library inside onnxruntime-node), GetApi(32) returns NULL: a program that initialises "
        "the API statically crashes on its first call, one that checks (like infer_cli and the custom-op library) "
        "stops with a message. The model format is separate: the library decides which IR versions and opsets it "
        "reads, so a file stamped IR 14 loads in 1.32 and is refused by 1.30 whatever the headers.")


class CustomOpDeployment(ThoughtExperiment):
    prompt = "you ship a model with a custom-domain node: what must every runtime that loads it have?"
    solution = (
        "The model file only names the operator (domain ai.onnx.labsupport, type SquarePlus, its attributes); the "
        "checker passes it and every runtime refuses it until a kernel is registered. Each runtime needs the "
        "kernel compiled for its platform and registered before the session is created: "
        "register_custom_ops_library in Python, SessionOptions::RegisterCustomOpsLibrary in C++, the equivalent "
        "session option in other bindings, and a custom build for runtimes that cannot load shared libraries "
        "(the browser's WebAssembly build, mobile reduced builds). The library must be built for each OS and CPU "
        "architecture, against headers no newer than the oldest runtime it will meet, and tested for parity with "
        "a reference in each. Because that is a lot to ship, prefer alternatives where possible: express the "
        "operation with standard operators (SquarePlus is Mul, Add, Sqrt, Add, Div), or an ONNX function in the "
        "model, which any runtime can expand; keep a custom kernel for what standard operators cannot do or do "
        "far too slowly.")


class WhenCppPays(ThoughtExperiment):
    prompt = "from the measured overhead: when is moving inference from Python to C++ worth it, and when not?"
    solution = (
        "Python adds a fixed cost to every call (converting the feeds, checking names and types, creating the output "
        "arrays, the GIL), a few microseconds that section 3 measured, while the kernels are the same library in both. "
        "So the ratio depends on the model: for a tiny model at batch 1, whose kernels take microseconds, Python can "
        "double the latency; for a model that computes for milliseconds, or for a batch of many inputs, the same "
        "microseconds disappear in the noise. C++ pays when calls are many and small and latency or CPU cost per "
        "request matters (a service doing tens of thousands of requests per second, an embedded device, a place Python "
        "cannot go); it does not pay when the model dominates, where batching, graph optimization and quantization win "
        "far more. Before rewriting, reduce Python's own cost: reuse the session, I/O binding with preallocated "
        "outputs, batching requests. And measure both with the same method.")


PROBLEMS = {
    "q1": CppTensorShape,
    "q2": LoaderPath,
    "q3": OverheadPerCall,
    "q4": SquarePlusByHand,
    "q5": HeaderLibrarySkew,
    "q6": CustomOpDeployment,
    "q7": WhenCppPays,
}
bind = make_binder(LAB, PROBLEMS)
