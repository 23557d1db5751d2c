"""The same model in Node.js: ``onnxruntime-node`` from a cache folder, fed from NumPy.

Introduced in lab 13. ``python -m labsupport node setup`` installs the npm package once, with
``npm install --ignore-scripts`` (the package's install script would download CUDA and TensorRT
provider libraries from NuGet; the CPU binaries are already in the package), into
``cache_dir()/npm/<name>-<version>``. At lab time the package is only looked up, never
downloaded: :func:`npm_package` says where it is, or raises :class:`NodeRuntimeError` naming the
command that installs it.

:func:`run_in_node` runs a model with the script ``node_src/infer.cjs`` (read it: it is short)
and returns the outputs as NumPy arrays, with the Node.js and onnxruntime-node versions that
computed them. Tensors travel as JSON files, flattened in row-major order with their type and
dimensions.
"""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from labsupport.native import cache_dir

__all__ = [
    "INFER_SCRIPT",
    "ORT_NODE_PACKAGE",
    "ORT_NODE_VERSION",
    "SETUP_COMMAND",
    "NodeRun",
    "NodeRuntimeError",
    "check_node_runtime",
    "install_npm_package",
    "mixed_types_model",
    "node_available",
    "node_version",
    "npm_package",
    "ort_node_library",
    "run_in_node",
]

ORT_NODE_PACKAGE = "onnxruntime-node"
ORT_NODE_VERSION = "1.30.0"  # npm's newest when lab 13 was written: there was no onnxruntime-node 1.31 or 1.32

SETUP_COMMAND = "python -m labsupport node setup"
_INSTALL_NODE = "install Node.js 20 with npm (`apt-get install nodejs npm`, or from https://nodejs.org)"
INFER_SCRIPT = Path(__file__).parent / "node_src" / "infer.cjs"
# ONNX Runtime's errors name the C++ source line and function that raised them: noise to a reader
_SOURCE_LOCATION = re.compile(r"/onnxruntime_src/\S+:\d+ [^()]*\(.*?\)\s+(?=[A-Z])")
# NumPy dtype → the element type names onnxruntime-node uses (and infer.cjs understands)
_NODE_TYPES = {"float32": "float32", "float64": "float64", "int8": "int8", "uint8": "uint8", "int32": "int32",
               "int64": "int64", "bool": "bool"}


class NodeRuntimeError(RuntimeError):
    """Node.js, npm or the npm package is missing, or Node.js could not run the model; one line saying what to do."""


@dataclass(frozen=True)
class NodeRun:
    """What :func:`run_in_node` returns: the outputs by name and what computed them."""

    outputs: dict[str, np.ndarray]
    node_version: str
    ort_node_version: str


def _tool(command: str, purpose: str) -> str:
    path = shutil.which(command)
    if path is None:
        raise NodeRuntimeError(f"`{command}` is not on PATH, and {purpose}: {_INSTALL_NODE}, "
                               f"then run `{SETUP_COMMAND}`.")
    return path


def node_available() -> bool:
    """True when a ``node`` executable is on PATH (whether the npm package is installed is :func:`npm_package`'s)."""
    return shutil.which("node") is not None


def node_version() -> str:
    """The version of the ``node`` on PATH, e.g. ``v20.20.2``; raises :class:`NodeRuntimeError` when there is none."""
    node = _tool("node", "lab 13 runs the model in Node.js")
    completed = subprocess.run([node, "--version"], capture_output=True, text=True, timeout=30)
    return completed.stdout.strip()


def _install_prefix(name: str, version: str) -> Path:
    return cache_dir() / "npm" / f"{name}-{version}"


def _installed_version(package: Path) -> str | None:
    try:
        return json.loads((package / "package.json").read_text())["version"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def npm_package(name: str, version: str) -> Path:
    """The folder of npm package ``name`` at ``version`` (the one holding its ``package.json``), as installed.

    Looks it up in ``cache_dir()/npm/<name>-<version>/node_modules/<name>``; nothing is downloaded.

    Raises:
        NodeRuntimeError: it is not installed there; the message names the command that installs it.
    """
    package = _install_prefix(name, version) / "node_modules" / name
    if _installed_version(package) != version:
        raise NodeRuntimeError(f"the npm package {name} {version} is not installed in {package.parent.parent}; "
                               f"run `{SETUP_COMMAND}` once (it runs `npm install --ignore-scripts`).")
    return package


def install_npm_package(name: str, version: str, *, timeout: float = 900) -> tuple[Path, bool]:
    """Install npm package ``name@version`` with ``npm install --ignore-scripts`` into the cache.

    Returns the package's folder and whether it was installed now (False: it already was). npm
    installs into a fresh folder beside the final one, which is renamed into place only when npm
    succeeds, so an interrupted install never looks installed.

    Raises:
        NodeRuntimeError: npm is missing, or ``npm install`` failed (its first error line is given).
    """
    try:
        return npm_package(name, version), False
    except NodeRuntimeError:
        pass
    npm = _tool("npm", "the npm package is installed with npm")
    prefix = _install_prefix(name, version)
    prefix.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{prefix.name}-", dir=prefix.parent))
    try:
        command = [npm, "install", "--ignore-scripts", "--no-audit", "--no-fund", "--save-exact",
                   "--prefix", str(staging), f"{name}@{version}"]
        try:
            completed = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise NodeRuntimeError(f"`npm install {name}@{version}` did not finish within {timeout:.0f} s; "
                                   "check the network connection to the npm registry and run it again.") from None
        if completed.returncode != 0:
            reason = next((line.strip() for line in completed.stderr.splitlines() if "ERR!" in line),
                          completed.stderr.strip().splitlines()[0] if completed.stderr.strip() else "no message")
            raise NodeRuntimeError(f"`npm install {name}@{version}` failed ({reason}); check the network connection "
                                   f"to the npm registry (`npm config get registry`) and run `{SETUP_COMMAND}` again.")
        if prefix.exists():
            shutil.rmtree(prefix)
        staging.rename(prefix)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return npm_package(name, version), True


def ort_node_library() -> Path:
    """The ONNX Runtime C library onnxruntime-node loads on this platform (it ships its own, not the wheel's).

    Raises:
        NodeRuntimeError: the package is not installed, or has no library for this platform.
    """
    package = npm_package(ORT_NODE_PACKAGE, ORT_NODE_VERSION)
    machine = {"x86_64": "x64", "amd64": "x64", "aarch64": "arm64", "arm64": "arm64"}.get(platform.machine().lower(),
                                                                                          platform.machine())
    folder = package / "bin" / "napi-v6" / sys.platform / machine
    for name in ("libonnxruntime.so.1", "libonnxruntime.1.dylib", "onnxruntime.dll"):
        if (folder / name).is_file():
            return folder / name
    raise NodeRuntimeError(f"{ORT_NODE_PACKAGE} {ORT_NODE_VERSION} has no ONNX Runtime library for {sys.platform} "
                           f"{machine} (looked in {folder}).")


def _to_json(name: str, value: np.ndarray) -> dict:
    array = np.ascontiguousarray(value)
    node_type = _NODE_TYPES.get(array.dtype.name)
    if node_type is None:
        raise NodeRuntimeError(f"input {name!r} has dtype {array.dtype}, which infer.cjs does not carry; "
                               f"pass one of {', '.join(_NODE_TYPES)}.")
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        raise NodeRuntimeError(f"input {name!r} holds NaN or infinity, which JSON cannot carry; "
                               "replace them before running the model in Node.js.")
    flat = array.ravel()
    data = [str(item) for item in flat.tolist()] if node_type == "int64" else flat.astype(
        np.uint8 if node_type == "bool" else array.dtype).tolist()
    return {"type": node_type, "dims": list(array.shape), "data": data}


def _from_json(tensor: Mapping) -> np.ndarray:
    dtype = np.bool_ if tensor["type"] == "bool" else np.dtype(tensor["type"])
    data = [int(item) for item in tensor["data"]] if tensor["type"] == "int64" else tensor["data"]
    # JSON has no NaN: Node writes null, which a float array reads back as NaN
    return np.array(data, dtype=np.float64 if dtype == np.float32 else dtype).astype(dtype).reshape(tensor["dims"])


def run_in_node(model_path: str | os.PathLike, feeds: Mapping[str, np.ndarray], *, timeout: float = 120) -> NodeRun:
    """Run the ONNX file ``model_path`` on ``feeds`` with onnxruntime-node; return its outputs as NumPy arrays.

    Node.js runs ``node_src/infer.cjs`` with NODE_PATH pointing at the cached package. Nothing is
    downloaded: without Node.js or the package, the error names the command that installs it.

    Raises:
        NodeRuntimeError: Node.js or the package is missing, an input cannot be carried as JSON, or
            onnxruntime-node failed (its first line of error is given).
    """
    node = _tool("node", "lab 13 runs the model in Node.js")
    package = npm_package(ORT_NODE_PACKAGE, ORT_NODE_VERSION)
    request = {name: _to_json(name, value) for name, value in feeds.items()}
    with tempfile.TemporaryDirectory(prefix="labsupport-node-") as folder:
        request_path, response_path = Path(folder) / "request.json", Path(folder) / "response.json"
        request_path.write_text(json.dumps(request, allow_nan=False))
        environment = {**os.environ, "NODE_PATH": str(package.parent)}
        try:
            completed = subprocess.run([node, str(INFER_SCRIPT), os.fspath(model_path), str(request_path),
                                        str(response_path)], capture_output=True, text=True, timeout=timeout,
                                       env=environment)
        except subprocess.TimeoutExpired:
            raise NodeRuntimeError(f"Node.js did not finish running {model_path} within {timeout:.0f} s.") from None
        if completed.returncode != 0:
            message = next((line.strip() for line in completed.stderr.splitlines() if line.strip()), "no message")
            raise NodeRuntimeError(f"onnxruntime-node could not run {model_path}: {_SOURCE_LOCATION.sub('', message)}")
        response = json.loads(response_path.read_text())
    outputs = {name: _from_json(tensor) for name, tensor in response["outputs"].items()}
    return NodeRun(outputs, response["node"], response["onnxruntime_node"])


def mixed_types_model():
    """A smoke-test model of three one-node graphs: ``squares = x · x`` (float32), ``same_ids = ids`` (int64),
    ``negated = not flags`` (bool); lab 13's Node.js and lab 15's browser setups run it against Python's."""
    from onnx import TensorProto, helper

    def tensor(name, elem_type):
        return helper.make_tensor_value_info(name, elem_type, ["n"])

    graph = helper.make_graph(
        [helper.make_node("Mul", ["x", "x"], ["squares"]), helper.make_node("Identity", ["ids"], ["same_ids"]),
         helper.make_node("Not", ["flags"], ["negated"])], "node_check",
        [tensor("x", TensorProto.FLOAT), tensor("ids", TensorProto.INT64), tensor("flags", TensorProto.BOOL)],
        [tensor("squares", TensorProto.FLOAT), tensor("same_ids", TensorProto.INT64),
         tensor("negated", TensorProto.BOOL)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def check_node_runtime() -> str:
    """Run a small test model in Node.js and in Python's ONNX Runtime; return one line saying they agree.

    Its inputs are a float32 (with values JSON must carry exactly), an int64 beyond 2**53 (which a
    JSON number would round) and a bool tensor, so the whole path through JSON is exercised.

    Raises:
        NodeRuntimeError: Node.js or the package is missing or fails, or the outputs differ from Python's.
    """
    import onnx
    import onnxruntime

    from labsupport.onnx_tools import cpu_session

    feeds = {"x": np.array([0.1, -3.5, 1e-30], dtype=np.float32),
             "ids": np.array([2**62 + 1, -7, 0], dtype=np.int64), "flags": np.array([True, False, True])}
    with tempfile.TemporaryDirectory(prefix="labsupport-node-") as folder:
        path = Path(folder) / "node_check.onnx"
        onnx.save_model(mixed_types_model(), str(path))
        run = run_in_node(path, feeds)
        expected = dict(zip(["squares", "same_ids", "negated"], cpu_session(path).run(None, feeds)))
    differing = [name for name, value in expected.items()
                 if name not in run.outputs or run.outputs[name].dtype != value.dtype
                 or not np.array_equal(run.outputs[name], value)]
    if differing:
        raise NodeRuntimeError(f"onnxruntime-node {run.ort_node_version} and Python's onnxruntime "
                               f"{onnxruntime.__version__} disagree on the test model's {', '.join(differing)}.")
    return (f"a test model (float32, int64 and bool tensors) ran in Node.js {run.node_version} with onnxruntime-node "
            f"{run.ort_node_version} and gave exactly the outputs of Python's onnxruntime {onnxruntime.__version__}.")
