"""The command line: ``python -m labsupport COMMAND`` (or ``labsupport COMMAND``).

Commands:
  doctor            is this environment ready for the labs? (non-zero exit if not)
  progress          the self-assessment checklist, ticked from the checks you passed
  build-notebooks   render notebooks/ from solutions/ (``--check``: only report drift)
  seed-workspace    copy notebooks/ into the learner's workspace without overwriting (``make lab``)
  check MODEL.onnx  validate a model file with lab 07's harness
                    (exit 0 valid, 1 fails a check, 2 cannot be read or used)
  bench MODEL.onnx  latency percentiles and throughput with ONNX Runtime, per batch size and thread count (lab 11)
  native setup      find or fetch ONNX Runtime's C++ headers, build the course's C++ projects (lab 13)
  native status     what the C++ builds would use, and the header/library API versions (nothing fetched or built)
  node setup        install onnxruntime-node into the cache with npm, then run a test model in Node.js (lab 13)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

__all__ = ["main"]


def _repository_root() -> Path:
    """The folder holding solutions/: the current one, or the one above this package."""
    from labsupport.notebook_build import BuildError

    candidates = (Path.cwd(), Path(__file__).resolve().parent.parent)
    for candidate in candidates:
        if (candidate / "solutions").is_dir():
            return candidate
    raise BuildError(f"no solutions/ folder in {candidates[0]} or {candidates[1]}; run this from the repository root.")


def _doctor(arguments: argparse.Namespace) -> int:
    from labsupport.doctor import diagnose

    report = diagnose(native=not arguments.no_native)
    print(report.verdict if arguments.quiet else report.to_text())
    return 0 if report.ok else 1


def _progress(arguments: argparse.Namespace) -> int:
    from labsupport import progress

    if arguments.reset:
        try:
            progress.reset_progress()
        except progress.ProgressError as error:
            print(f"error: {error}.", file=sys.stderr)
            return 2
        print(f"Progress forgotten ({progress.progress_path()}).")
        return 0
    print(progress.render_checklist())
    return 0


def _build_notebooks(arguments: argparse.Namespace) -> int:
    from labsupport.notebook_build import BuildError, build_all

    try:
        root = _repository_root()
        drifts = build_all(root, check=arguments.check, lab=arguments.lab)
    except BuildError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if arguments.check:
        if not drifts:
            print("notebooks/ and solutions/ are exactly what the generator makes.")
            return 0
        for drift in drifts:
            print(f"drift: {drift.path.relative_to(root)} {drift.reason}", file=sys.stderr)
        print("Fix: run `python -m labsupport build-notebooks` (or `make notebooks`) and commit the result; "
              "edit solutions/, never notebooks/.", file=sys.stderr)
        return 1
    for drift in drifts:
        print(f"{'removed' if drift.removed else 'wrote'} {drift.path.relative_to(root).as_posix()}")
    removed = sum(drift.removed for drift in drifts)
    if not drifts:
        print("Everything was already up to date.")
    else:
        print(f"{len(drifts) - removed} notebook(s) written" + (f", {removed} removed." if removed else "."))
    return 0


def _sizes(text: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected sizes like 1,3,16, got {text!r}") from None
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"sizes must be positive, got {text!r}")
    return sizes


def _dim(text: str) -> tuple[str, int]:
    symbol, _, size = text.partition("=")
    if not symbol or not size.isdigit() or int(size) < 1:
        raise argparse.ArgumentTypeError(f"expected NAME=SIZE such as sequence=12, got {text!r}")
    return symbol, int(size)


def _check(arguments: argparse.Namespace) -> int:
    from labsupport.model_loader import ModelInputError, input_budget, load_model
    from labsupport.validate import describe_model, model_signatures, random_feeds, validate_model

    path = Path(arguments.model)
    try:
        budget = input_budget(arguments.max_input_bytes)
        model = load_model(path)
        inputs, _ = model_signatures(model)
        feeds = random_feeds(inputs, max(arguments.batch_sizes), dim_sizes=dict(arguments.dim), label=str(path),
                             max_input_bytes=budget)
        result = validate_model(path, feeds, batch_sizes=arguments.batch_sizes, fp16=not arguments.no_fp16,
                                max_input_bytes=budget)
    except ModelInputError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    checker = result.row("checker")
    if checker.status == "fail":
        print(f"error: {path}: fails onnx.checker.check_model(full_check=True): {checker.detail}", file=sys.stderr)
        return 1
    print(describe_model(path, model))
    print()
    if not feeds:
        print("The model has no inputs: it runs once, and with no reference its outputs need only be finite.")
    else:
        shapes = ", ".join(f"{name} {value.shape} {value.dtype}" for name, value in feeds.items())
        print(f"Random inputs of the declared types ({shapes}). ", end="")
        if any(0 in signature.dynamic_axes for signature in inputs):
            print("With no reference, each batch is compared with")
            print("this model's own outputs at the largest batch: outputs must not depend on the batch size.")
        else:
            print("Axis 0 is fixed, so the model runs once;")
            print("with no reference and no other batch size to compare with, its outputs need only be finite.")
    print(result.to_text())
    fp16 = result.row("fp16")
    if fp16 is not None and fp16.status != "skip":
        print("fp16 note: the float16 row shows the precision a float16 copy would lose; "
              "it does not change the exit status.")
    failed = [check for check in result.failed_checks if check != "fp16"]
    if failed:
        print(f"error: {path}: {', '.join(failed)} failed; see the table above.", file=sys.stderr)
        return 1
    print(f"{path}: valid.")
    return 0


_CHECK_EPILOG = """exit status:
  0  the model is valid: every check passed (the fp16 row never changes the status)
  1  the model was read but fails a check: the checker, loading in ONNX Runtime, a batch
     size or a dimension (the table, or one line on stderr, says which)
  2  the model cannot be read or used: the file or its external data (missing, unreadable,
     not an ONNX model), a --dim the model does not have, an input type random values cannot
     be made for, or inputs larger than the budget; one line on stderr says what to do

The input budget (default 1 GiB per run) keeps a huge declared shape from exhausting memory:
raise it with --max-input-bytes or the LABSUPPORT_MAX_INPUT_BYTES environment variable.
"""


def _counts(text: str) -> tuple[int, ...]:
    try:
        counts = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers like 1,2, got {text!r}") from None
    if not counts or min(counts) < 1:
        raise argparse.ArgumentTypeError(f"counts must be positive, got {text!r}")
    return counts


def _count(text: str, minimum: int) -> int:
    if not text.isdigit() or int(text) < minimum:
        raise argparse.ArgumentTypeError(f"expected a whole number >= {minimum}, got {text!r}")
    return int(text)


def _bench(arguments: argparse.Namespace) -> int:
    import os

    import onnxruntime

    from labsupport.bench import bench_table, measure
    from labsupport.model_loader import ModelInputError, input_budget, load_model
    from labsupport.onnx_tools import cpu_session, first_line
    from labsupport.validate import describe_model, model_signatures, random_feeds

    path = Path(arguments.model)
    try:
        budget = input_budget(arguments.max_input_bytes)
        model = load_model(path)
        inputs, _ = model_signatures(model)
        dynamic_batch = any(0 in signature.dynamic_axes for signature in inputs)
        batch_sizes = arguments.batch_sizes if dynamic_batch else (None,)
        feeds = {batch: random_feeds(inputs, batch or 1, dim_sizes=dict(arguments.dim), label=str(path),
                                     max_input_bytes=budget) for batch in batch_sizes}
    except ModelInputError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    results = []
    for threads in arguments.threads:
        options = onnxruntime.SessionOptions()
        options.log_severity_level = 4  # fatal only: a failure is reported below as one line, not also as ORT's log
        options.intra_op_num_threads = threads
        try:
            session = cpu_session(path, options)
        except Exception as error:  # ONNX Runtime refuses the model: one line, not its traceback
            print(f"error: {path}: ONNX Runtime cannot load it: {first_line(error)}; "
                  f"`python -m labsupport check {path}` says more.", file=sys.stderr)
            return 2
        for batch_feeds in feeds.values():
            rows = next((len(value) for value in batch_feeds.values() if getattr(value, "ndim", 0)), 1)
            label = f"threads {threads or 'default'}"

            def run(session=session, batch_feeds=batch_feeds):
                return session.run(None, batch_feeds)

            try:
                results.append(measure(run, warmup=arguments.warmup, repeats=arguments.repeats, batch_size=rows,
                                       label=label))
            except Exception as error:  # the model fails on random inputs: one line
                print(f"error: {path}: running it on random inputs of batch {rows} failed: {first_line(error)}; "
                      "time it from Python with your own inputs (labsupport.bench.measure).", file=sys.stderr)
                return 2
    print(describe_model(path, model))
    print()
    print(f"ONNX Runtime {onnxruntime.__version__}, CPUExecutionProvider, {os.cpu_count()} logical cores; random "
          "inputs of the declared types.")
    if not dynamic_batch:
        print("Axis 0 is not dynamic, so the model runs at its declared size only; --batch-sizes is ignored.")
    print(f"Each configuration is timed in its own block: {arguments.warmup} warm-up runs, then {arguments.repeats} "
          "timed runs (intra-op threads: 'default' lets ONNX Runtime choose).")
    print(bench_table(results))
    best = max(results, key=lambda result: result.throughput_per_s)
    print(f"highest throughput: batch {best.batch_size} with {best.label} ({best.throughput_per_s:,.0f} items/s, "
          f"p50 {best.p50_ms:.3f} ms)")
    return 0


_BENCH_EPILOG = """Latency percentiles, the mean with its 95% confidence interval and the throughput
(batch / mean) of ONNX Runtime's CPU provider on random inputs, as lab 11 explains.
A warning under the table says when repeats are too few or the spread too wide.

exit status:
  0  the model was benchmarked
  2  the model cannot be read, loaded by ONNX Runtime or run on random inputs, a --dim
     the model does not have, or inputs larger than the budget; one line on stderr says
     what to do
"""


def _seed_workspace(arguments: argparse.Namespace) -> int:
    from labsupport.notebook_build import BuildError
    from labsupport.workspace import seed_workspace

    workspace = Path(arguments.workspace)
    try:
        report = seed_workspace(_repository_root() / "notebooks", workspace)
    except BuildError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except OSError as error:
        print(f"error: cannot prepare the workspace {workspace}: {error.strerror or error}; "
              "pass another folder with WORKSPACE=... (make lab) or --workspace.", file=sys.stderr)
        return 2
    print(report.to_text(workspace))
    return 0


def _native(arguments: argparse.Namespace) -> int:
    from labsupport import native

    try:
        if arguments.action == "setup":
            native.setup_toolchain(fetch=True)
        else:
            print(native.find_toolchain(fetch=False).describe())
    except native.NativeToolchainError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


def _node_setup(arguments: argparse.Namespace) -> int:
    from labsupport import node

    try:
        version = node.node_version()
        package, installed_now = node.install_npm_package(node.ORT_NODE_PACKAGE, node.ORT_NODE_VERSION)
        smoke = node.check_node_runtime()
    except node.NodeRuntimeError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"Node.js {version}")
    print(f"{node.ORT_NODE_PACKAGE} {node.ORT_NODE_VERSION} {'installed now' if installed_now else 'already installed'}"
          f" in {package}")
    print("  (npm install --ignore-scripts: the package's install script would download CUDA and TensorRT provider "
          "libraries from NuGet; its CPU binaries are in the package itself)")
    print(smoke)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="labsupport", description="Helpers of the ONNX Interoperability Workbook.")
    commands = parser.add_subparsers(dest="command", required=True)
    doctor = commands.add_parser("doctor", help="is this environment ready for the labs?")
    doctor.add_argument("--quiet", action="store_true", help="print only the verdict line")
    doctor.add_argument("--no-native", action="store_true", help="skip the native toolchain checks")
    doctor.set_defaults(run=_doctor)
    progress = commands.add_parser("progress", help="the self-assessment checklist with ticks")
    progress.add_argument("--reset", action="store_true", help="forget every recorded pass")
    progress.set_defaults(run=_progress)
    build = commands.add_parser("build-notebooks", help="render notebooks/ from solutions/")
    build.add_argument("--check", action="store_true", help="write nothing; exit 1 if anything would change")
    build.add_argument("--lab", metavar="NN", help="only lab NN (e.g. 03): no other lab's files are read or written")
    build.set_defaults(run=_build_notebooks)
    seed = commands.add_parser("seed-workspace", help="copy notebooks/ into your workspace, never overwriting")
    seed.add_argument("--workspace", default="workspace", help="the folder JupyterLab opens (default: workspace)")
    seed.set_defaults(run=_seed_workspace)
    check = commands.add_parser("check", help="validate an ONNX model file (checker, load, batch sizes, fp16)",
                                description="Validate an ONNX model file with lab 07's harness, on random inputs.",
                                epilog=_CHECK_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    check.add_argument("model", help="path of the .onnx file")
    check.add_argument("--batch-sizes", type=_sizes, default=(1, 3, 16), metavar="N,N,…",
                       help="batch sizes to run when axis 0 is dynamic (default 1,3,16)")
    check.add_argument("--dim", type=_dim, action="append", default=[], metavar="NAME=SIZE",
                       help="size of another named dynamic dimension (default 8), e.g. sequence=12")
    check.add_argument("--no-fp16", action="store_true", help="skip the float16 precision measurement")
    check.add_argument("--max-input-bytes", metavar="BYTES",
                       help="the most the inputs of one run may take, e.g. 4GiB "
                            "(default 1GiB, or $LABSUPPORT_MAX_INPUT_BYTES)")
    check.set_defaults(run=_check)
    bench = commands.add_parser("bench", help="time an ONNX model: latency percentiles and throughput",
                                description="Benchmark an ONNX model file with ONNX Runtime on random inputs.",
                                epilog=_BENCH_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    bench.add_argument("model", help="path of the .onnx file")
    bench.add_argument("--batch-sizes", type=_sizes, default=(1, 8, 64), metavar="N,N,…",
                       help="batch sizes to time when axis 0 is dynamic (default 1,8,64)")
    bench.add_argument("--threads", type=_counts, default=(0,), metavar="N,N,…",
                       help="intra-op thread counts to time, e.g. 1,2 (default: ONNX Runtime's choice)")
    bench.add_argument("--repeats", type=lambda text: _count(text, 1), default=50, help="timed runs (default 50)")
    bench.add_argument("--warmup", type=lambda text: _count(text, 0), default=5, help="untimed runs first (default 5)")
    bench.add_argument("--dim", type=_dim, action="append", default=[], metavar="NAME=SIZE",
                       help="size of another named dynamic dimension (default 8), e.g. sequence=12")
    bench.add_argument("--max-input-bytes", metavar="BYTES",
                       help="the most the inputs of one run may take, e.g. 4GiB "
                            "(default 1GiB, or $LABSUPPORT_MAX_INPUT_BYTES)")
    bench.set_defaults(run=_bench)
    native_command = commands.add_parser("native", help="the C++ toolchain of lab 13 (ONNX Runtime from C++)")
    native_actions = native_command.add_subparsers(dest="action", required=True)
    native_actions.add_parser("setup", help="find or fetch the headers, build the C++ projects; say what was used "
                              "and why").set_defaults(run=_native)
    native_actions.add_parser("status", help="what the builds would use; fetches and builds nothing").set_defaults(
        run=_native)
    node_command = commands.add_parser("node", help="the Node.js runtime of lab 13 (onnxruntime-node)")
    node_actions = node_command.add_subparsers(dest="action", required=True)
    node_setup = node_actions.add_parser("setup", help="install onnxruntime-node into the cache with npm (once)")
    node_setup.set_defaults(run=_node_setup)
    arguments = parser.parse_args(argv)
    return arguments.run(arguments)
