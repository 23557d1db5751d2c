"""The command line: ``python -m labsupport COMMAND`` (or ``labsupport COMMAND``).

Commands:
  doctor            is this environment ready for the labs? (non-zero exit if not)
  progress          the self-assessment checklist, ticked from the checks you passed
  build-notebooks   render notebooks/ from solutions/ (``--check``: only report drift)
  seed-workspace    copy notebooks/ into the learner's workspace without overwriting (``make lab``)
  check MODEL.onnx  validate a model file with lab 07's harness
                    (exit 0 valid, 1 fails a check, 2 cannot be read or used)
  bench MODEL.onnx  latency percentiles and throughput with ONNX Runtime, per batch size and thread count (lab 11)
  convert SOURCE    turn a saved PyTorch, Keras/TensorFlow or scikit-learn model into ONNX, then validate it
                    (exit 0 valid, 1 converted but fails a check, 2 nothing converted)
  gate MODEL.onnx   the production-readiness gate: tick each "prod ready" item from measured evidence against
                    a reference and labelled data (exit 0 ready, 1 an item or threshold failed, 2 cannot be used)
  native setup      find or fetch ONNX Runtime's C++ headers, build the course's C++ projects (lab 13)
  native status     what the C++ builds would use, and the header/library API versions (nothing fetched or built)
  node setup        install onnxruntime-node into the cache with npm, then run a test model in Node.js (lab 13)
  web setup         install onnxruntime-web into the cache with npm, then run a test model in headless Chromium
                    (lab 15)
  serve MODEL.onnx  lab 14's C++ inference service on 127.0.0.1, in the foreground until Ctrl-C or SIGTERM
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


_CONVERTERS = {"PyTorch": "torch.onnx.export", "Keras": "tf2onnx", "TensorFlow": "tf2onnx",
               "scikit-learn": "skl2onnx"}
_SOURCE_NAMES = {"savedmodel": "a SavedModel folder", "keras": "a .keras file", "torch": "a torch.save file",
                 "exported_program": "a torch.export program", "pickle": "a pickle"}


def _convert(arguments: argparse.Namespace) -> int:
    from labsupport.convert import ConversionError, convert_model
    from labsupport.model_loader import ModelInputError
    from labsupport.validate import describe_model

    try:
        result = convert_model(arguments.source, arguments.output, inputs=arguments.input,
                               output_names=arguments.output_name or None, trust_pickle=arguments.trust_pickle,
                               architecture=arguments.architecture, dynamic_batch=not arguments.static_batch,
                               opset=arguments.opset)
    except (ConversionError, ModelInputError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"Converted {result.source} ({result.framework}, {_SOURCE_NAMES[result.kind]}) to {result.path} with "
          f"{_CONVERTERS[result.framework]}; " + "; ".join(result.notes) + ".")
    print(describe_model(result.path))
    print()
    print("Validated with lab 07's harness on random inputs of the declared types, against the source framework's "
          "own outputs:")
    print(result.validation.to_text())
    if not result.validation.ok:
        print(f"error: {result.path}: {', '.join(result.validation.failed_checks)} failed; see the table above "
              "(the file was written so that you can inspect it).", file=sys.stderr)
        return 1
    print(f"{result.path}: valid.")
    return 0


_CONVERT_EPILOG = """sources, recognised by their content:
  PyTorch      a state_dict (torch.save(model.state_dict(), path)) with --architecture MODULE:FUNCTION
               naming the code that builds the module: read with torch.load(weights_only=True), safe;
               a whole module (torch.save(model, path)) or a torch.export program (.pt2): these
               unpickle, so they need --trust-pickle. A PyTorch module needs --input (one per
               argument of forward); TorchScript archives are refused (torch.export cannot trace them).
  Keras        a .keras file (loaded with safe_mode=True) or a SavedModel folder (its
               serving_default signature); --input is optional.
  scikit-learn a fitted estimator saved with pickle or joblib; needs --trust-pickle; --input is
               optional (default input:1xN_FEATURES:float32).
Why trust: unpickling runs whatever code the file names (lab 01). Only pass --trust-pickle for
files you made or got from someone you trust.

--input NAME:DIMS:DTYPE, e.g. pixels:1x1x8x8:float32 (DTYPE: float32, float64, float16, int64,
int32, int8, uint8 or bool). Axis 0 becomes a dynamic batch unless --static-batch.

exit status:
  0  converted, and the ONNX file passes every check of lab 07's harness against the source
  1  converted, but the file fails a check (the table says which; the file is kept to inspect)
  2  nothing converted: the source is missing, of an unknown format, refused (pickle without
     --trust-pickle), a bad --input spec, or the converter failed; one line on stderr says why
"""


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a fraction such as 0.01 (one point), got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text} is negative: give a fraction such as 0.01 (one point)")
    if value >= 1:
        raise argparse.ArgumentTypeError(f"{text} would allow a drop of {value * 100:g} points: it is a fraction, "
                                         f"did you mean {value / 100:g} ({value:g} point{'s' if value != 1 else ''})?")
    return value


def _milliseconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected milliseconds such as 2.5, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"a latency limit must be positive, got {text!r}")
    return value


def _gate(arguments: argparse.Namespace) -> int:
    from labsupport.gate import run_gate
    from labsupport.model_loader import ModelInputError

    try:
        report = run_gate(arguments.model, reference=arguments.reference, data=arguments.data,
                          max_accuracy_drop=arguments.max_accuracy_drop, max_latency_ms=arguments.max_latency_ms,
                          provider=arguments.provider, batch_size=arguments.batch_size, threads=arguments.threads,
                          optimization_level=arguments.optimization_level)
    except ModelInputError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(report.to_text())
    if not report.passed:
        print(f"error: {arguments.model}: not ready: {', '.join(report.failed)} failed; see the table above.",
              file=sys.stderr)
        return 1
    return 0


_GATE_EPILOG = """The "prod ready" list, each item ticked only from evidence measured here:
  validated with the checker            onnx.checker full_check with strict shape inference, then an
                                        ONNX Runtime session (lab 07)
  graph optimized for the target        ONNX Runtime optimizes the file again at --optimization-level for
                                        the provider: it must find nothing left to fuse or fold (lab 09)
  dynamic axes for batching             axis 0 symbolic; batches 1, 3 and 64 give the same rows
  execution provider chosen on purpose  --provider named, in this onnxruntime build, and really used
                                        (no silent fallback); whether it suits the hardware is yours to judge
  quantization applied where it pays    a quantized model must pay (accuracy drop within the limit and
                                        <= 0.75x the reference's size or >= 1.25x its speed); a float one
                                        fails when an int8 copy made here would pay (lab 10)
  benchmarked against the original      p50 latency of the model and the reference, timed the same way
                                        (lab 11)
then the thresholds: accuracy drop (--max-accuracy-drop) and p50 latency (--max-latency-ms).

DATA.npz holds one array per model input, keyed by input name, and 'labels' (the expected
class of each row): np.savez("data.npz", pixels=x_test, labels=y_test).

exit status:
  0  ready: every item ticked and every threshold met
  1  an item failed or a threshold was missed (the table says which and why)
  2  the model, the reference or the data cannot be read or do not fit each other; one line on
     stderr says what to do
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


def _serve(arguments: argparse.Namespace) -> int:
    import os

    from labsupport import native, serving

    try:
        binary = serving.service_binary()
    except native.NativeToolchainError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    options = ["--port", str(arguments.port), "--max-batch", str(arguments.max_batch), "--max-wait-ms",
               str(arguments.max_wait_ms), "--queue-capacity", str(arguments.queue_capacity)]
    sys.stdout.flush()
    os.execv(binary, [str(binary), arguments.model, *options])  # the service replaces this process: signals reach it


def _web_setup(arguments: argparse.Namespace) -> int:
    from labsupport import web

    try:
        package, installed_now = web.install_ort_web()
        chromium = web.find_chromium()
        smoke = web.check_web_runtime()
    except web.WebRuntimeError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"{web.ORT_WEB_PACKAGE} {web.ORT_WEB_VERSION} {'installed now' if installed_now else 'already installed'} "
          f"in {package}")
    print("  (npm install --ignore-scripts; at lab time its dist/ is served from a loopback server, nothing is "
          "downloaded)")
    print(f"Chromium: {chromium}")
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
    convert = commands.add_parser("convert", help="convert a saved PyTorch, Keras/TensorFlow or scikit-learn model "
                                  "to ONNX and validate it",
                                  description="Convert a saved model to ONNX the way labs 04–06 do, then validate it "
                                              "against the source framework with lab 07's harness.",
                                  epilog=_CONVERT_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    convert.add_argument("source", help="the saved model: a file, or a SavedModel folder")
    convert.add_argument("-o", "--output", required=True, metavar="OUT.onnx", help="the ONNX file to write")
    convert.add_argument("--input", action="append", default=[], metavar="NAME:DIMS:DTYPE",
                         help="an example input, e.g. pixels:1x1x8x8:float32 (repeat for several inputs)")
    convert.add_argument("--output-name", action="append", default=[], metavar="NAME",
                         help="a name for a graph output, in order (repeat for several outputs)")
    convert.add_argument("--trust-pickle", action="store_true",
                         help="allow unpickling the source (runs code from the file: only for files you trust)")
    convert.add_argument("--architecture", metavar="MODULE:FUNCTION",
                         help="for a PyTorch state_dict: the function that builds the module, e.g. "
                              "labsupport.models:build_digits_mlp")
    convert.add_argument("--static-batch", action="store_true", help="keep axis 0 at the example's size")
    convert.add_argument("--opset", type=lambda text: _count(text, 7), metavar="N",
                         help="the ONNX opset to target (default: the converter's)")
    convert.set_defaults(run=_convert)
    gate = commands.add_parser("gate", help="the production-readiness gate: is this model ready to deploy?",
                               description="Tick each \"prod ready\" item for an ONNX model from evidence measured "
                                           "against a reference model and labelled data (lab 15).",
                               epilog=_GATE_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    gate.add_argument("model", help="path of the candidate .onnx file")
    gate.add_argument("--reference", required=True, metavar="REF.onnx",
                      help="the model it replaces: the float ONNX export of the original")
    gate.add_argument("--data", required=True, metavar="DATA.npz",
                      help="labelled rows: one array per model input and 'labels'")
    gate.add_argument("--max-accuracy-drop", type=_fraction, default=0.01, metavar="FRACTION",
                      help="the most the accuracy may fall below the reference's (default 0.01: one point)")
    gate.add_argument("--max-latency-ms", type=_milliseconds, metavar="MS",
                      help="the most the model's p50 latency may be (default: no limit)")
    gate.add_argument("--provider", metavar="NAME",
                      help="the execution provider you deploy on, e.g. CPUExecutionProvider (not naming one fails "
                           "that item)")
    gate.add_argument("--batch-size", type=lambda text: _count(text, 1), default=1,
                      help="rows per timed call (default 1)")
    gate.add_argument("--threads", type=lambda text: _count(text, 1), default=1,
                      help="intra-op threads of every session (default 1: steady figures on a busy machine)")
    gate.add_argument("--optimization-level", default="ORT_ENABLE_EXTENDED",
                      choices=("ORT_ENABLE_BASIC", "ORT_ENABLE_EXTENDED", "ORT_ENABLE_ALL"),
                      help="the level whose result the file must already be (default ORT_ENABLE_EXTENDED; ALL adds "
                           "layouts specific to this CPU)")
    gate.set_defaults(run=_gate)
    native_command = commands.add_parser("native", help="the C++ toolchain of labs 13 and 14 (ONNX Runtime from C++)")
    native_actions = native_command.add_subparsers(dest="action", required=True)
    native_actions.add_parser("setup", help="find or fetch the headers, build the C++ projects; say what was used "
                              "and why").set_defaults(run=_native)
    native_actions.add_parser("status", help="what the builds would use; fetches and builds nothing").set_defaults(
        run=_native)
    node_command = commands.add_parser("node", help="the Node.js runtime of lab 13 (onnxruntime-node)")
    node_actions = node_command.add_subparsers(dest="action", required=True)
    node_setup = node_actions.add_parser("setup", help="install onnxruntime-node into the cache with npm (once)")
    node_setup.set_defaults(run=_node_setup)
    web_command = commands.add_parser("web", help="the browser runtime of lab 15 (onnxruntime-web in Chromium)")
    web_actions = web_command.add_subparsers(dest="action", required=True)
    web_setup = web_actions.add_parser("setup", help="install onnxruntime-web into the cache with npm (once) and "
                                       "run a test model in headless Chromium")
    web_setup.set_defaults(run=_web_setup)
    serve = commands.add_parser("serve", help="run lab 14's C++ inference service on 127.0.0.1 (Ctrl-C stops it)",
                                description="Build (if needed) and run lab 14's C++ inference service in the "
                                            "foreground: POST /v1/predict, GET /healthz, GET /metrics on 127.0.0.1. "
                                            "Its first line names the port; Ctrl-C or SIGTERM stops it cleanly.")
    serve.add_argument("model", help="path of the .onnx file (every input and output needs a dynamic batch axis)")
    serve.add_argument("--port", type=lambda text: _count(text, 0), default=0, help="port (default 0: any free one)")
    serve.add_argument("--max-batch", type=lambda text: _count(text, 1), default=32,
                       help="rows at which a batch runs (default 32)")
    serve.add_argument("--max-wait-ms", type=float, default=2.0,
                       help="how long a batch's oldest request may wait for more (default 2)")
    serve.add_argument("--queue-capacity", type=lambda text: _count(text, 1), default=64,
                       help="requests that may wait; one more gets 503 (default 64)")
    serve.set_defaults(run=_serve)
    arguments = parser.parse_args(argv)
    return arguments.run(arguments)
