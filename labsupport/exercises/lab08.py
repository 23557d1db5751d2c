"""Lab 08 — runtime and providers: inside an InferenceSession, execution providers, the ORT format.

The exercises read the symbolic axes of a session's inputs, choose a provider list that
falls back cleanly, run a session through I/O binding, count the nodes each provider was
given, and read the required-operators config a reduced build is made from. Each check
runs the learner's function on small sessions built here with ``onnx.helper`` (a digits
classifier with the notebook model's interface, and graphs with symbolic or repeated
parts), so the checks stay fast and never depend on the notebook's state.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from labsupport.checking import (
    FunctionProblem,
    Incorrect,
    Problem,
    ThoughtExperiment,
    assert_equal,
    call_learner,
    make_binder,
)

LAB = "08_runtime_and_providers"

FLOAT, INT64, BOOL = 1, 7, 9  # onnx.TensorProto element types, spelled out so importing this module stays cheap
CPU = "CPUExecutionProvider"
AZURE = "AzureExecutionProvider"
ASSIGNMENT_ENTRY = "session.record_ep_graph_assignment_info"
BOUND_OUTPUTS = ("probabilities", "label")


# ---------------------------------------------------------------------------
# Small models the checks run the learner's functions on
# ---------------------------------------------------------------------------

def _model(nodes, inputs, outputs, initializers=()):
    from onnx import helper

    graph = helper.make_graph(nodes, "lab08_check", [helper.make_tensor_value_info(*spec) for spec in inputs],
                              [helper.make_tensor_value_info(*spec) for spec in outputs], list(initializers))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)])
    model.ir_version = 10
    return model.SerializeToString()


def classifier_model(seed: int = 0) -> bytes:
    """A seeded linear digits classifier with the interface of the lab's CNN, serialized.

    Input ``pixels`` [batch, 1, 8, 8]; outputs ``logits`` [batch, 10], ``probabilities``
    (Softmax of the logits) and ``label`` (their ArgMax, int64 [batch]).
    """
    from onnx import helper, numpy_helper

    rng = np.random.default_rng(seed)
    weights = [numpy_helper.from_array((rng.standard_normal((64, 10)) / 4).astype(np.float32), "W"),
               numpy_helper.from_array((rng.standard_normal(10) / 8).astype(np.float32), "b")]
    nodes = [helper.make_node("Flatten", ["pixels"], ["flat"], axis=1),
             helper.make_node("Gemm", ["flat", "W", "b"], ["logits"]),
             helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1),
             helper.make_node("ArgMax", ["logits"], ["label"], axis=1, keepdims=0)]
    outputs = [("logits", FLOAT, ["batch", 10]), ("probabilities", FLOAT, ["batch", 10]), ("label", INT64, ["batch"])]
    return _model(nodes, [("pixels", FLOAT, ["batch", 1, 8, 8])], outputs, weights)


def residual_model() -> bytes:
    """``y = Relu(Relu(x) + x) · 2`` on x ['batch', 16], with an Identity the runtime removes before assigning nodes."""
    from onnx import helper, numpy_helper

    nodes = [helper.make_node("Identity", ["x"], ["copied"]),
             helper.make_node("Relu", ["copied"], ["first"]),
             helper.make_node("Add", ["first", "x"], ["summed"]),
             helper.make_node("Relu", ["summed"], ["second"]),
             helper.make_node("Mul", ["second", "two"], ["y"])]
    return _model(nodes, [("x", FLOAT, ["batch", 16])], [("y", FLOAT, ["batch", 16])],
                  [numpy_helper.from_array(np.array([2.0], np.float32), "two")])


def _sizes_model(inputs: Sequence[tuple[str, int, list]]) -> bytes:
    """One ``Size`` node per input, so every input is used and every output is a scalar."""
    from onnx import helper

    nodes = [helper.make_node("Size", [name], [f"{name}_size"]) for name, _, _ in inputs]
    return _model(nodes, inputs, [(f"{name}_size", INT64, []) for name, _, _ in inputs])


def make_session(model: bytes, providers: Sequence[Any] = (CPU,), *, record_assignments: bool = False):
    """An ``onnxruntime.InferenceSession`` on ``model``, optionally recording which provider got which node."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    if record_assignments:
        options.add_session_config_entry(ASSIGNMENT_ENTRY, "1")
    return onnxruntime.InferenceSession(model, options, providers=list(providers))


def digit_images(count: int, seed: int = 0) -> np.ndarray:
    """``count`` seeded float32 images of shape (1, 8, 8) with values in [0, 1], like the digits."""
    return np.random.default_rng(seed).random((count, 1, 8, 8), dtype=np.float32)


# ---------------------------------------------------------------------------
# Exercises
# ---------------------------------------------------------------------------

class SymbolicAxes(Problem):
    prompt = "write symbolic_axes(session): for each input, the axes whose size is not fixed and their names"
    vars = ("symbolic_axes",)
    hints = ("`session.get_inputs()` lists the inputs; each one's `.shape` is a list whose entries are an int (a fixed "
             "size), a str (a named dimension) or None (a dimension with neither a size nor a name).",
             "Enumerate each input's shape and keep the entries that are not ints, keyed by their axis; an entry that "
             "is None stays None. An input with only fixed sizes maps to an empty dict.")
    solution = """def symbolic_axes(session):
    return {value.name: {axis: size for axis, size in enumerate(value.shape) if not isinstance(size, int)}
            for value in session.get_inputs()}"""

    def cases(self):
        """(description, serialized model, expected answer) triples."""
        return [
            ("the digits classifier (pixels ['batch', 1, 8, 8])", classifier_model(), {"pixels": {0: "batch"}}),
            ("a model with inputs tokens and mask ['batch', 'sequence'] and scale [1]",
             _sizes_model([("tokens", INT64, ["batch", "sequence"]), ("mask", BOOL, ["batch", "sequence"]),
                           ("scale", FLOAT, [1])]),
             {"tokens": {0: "batch", 1: "sequence"}, "mask": {0: "batch", 1: "sequence"}, "scale": {}}),
            ("a model with input image [None, 3, 'height', 'width']",
             _sizes_model([("image", FLOAT, [None, 3, "height", "width"])]),
             {"image": {0: None, 2: "height", 3: "width"}}),
        ]

    def check(self, fn):
        if not callable(fn):
            raise Incorrect(f"`symbolic_axes` should be a function, but it is a {type(fn).__name__}.")
        for description, model, expected in self.cases():
            call = f"`symbolic_axes(session)` on {description}"
            actual = call_learner(fn, (make_session(model),), name=self.vars[0], call=call, copy_arguments=False)
            if not isinstance(actual, dict):
                raise Incorrect(f"{call} returned a {type(actual).__name__}; return a dict keyed by input name.")
            if sorted(map(str, actual)) != sorted(expected):
                raise Incorrect(f"{call} has keys {sorted(map(str, actual))}; expected one per graph input: "
                                f"{sorted(expected)}.")
            for name, axes in expected.items():
                got = actual[name]
                if not isinstance(got, dict):
                    raise Incorrect(f"{call}: the entry for '{name}' is a {type(got).__name__}; make it a dict "
                                    "{axis: name}.")
                if sorted(got, key=str) != sorted(axes):
                    raise Incorrect(f"{call}: the entry for '{name}' lists axes {sorted(got, key=str)}; expected the "
                                    f"axes {sorted(axes)}, those whose size is not a fixed number.")
                for axis, dim in axes.items():
                    if got[axis] != dim:
                        raise Incorrect(f"{call}: axis {axis} of '{name}' is given as {got[axis]!r}; use the name "
                                        "the session reports (None when it has none).")


class ChooseProviders(FunctionProblem):
    prompt = "write choose_providers(wanted, available): the wanted providers that exist here, in order, CPU last"
    vars = ("choose_providers",)
    hints = ("Each wanted entry is a name or a (name, options) tuple: compare only the name with `available`, but keep "
             "the whole entry, options included, and keep the order of `wanted`: it is the priority.",
             "After filtering, add \"CPUExecutionProvider\" at the end unless one of the kept entries already is the "
             "CPU provider (as a name or a tuple): it runs whatever the others cannot.")
    solution = """def choose_providers(wanted, available):
    def name(entry):
        return entry[0] if isinstance(entry, tuple) else entry

    chosen = [entry for entry in wanted if name(entry) in available]
    if "CPUExecutionProvider" not in [name(entry) for entry in chosen]:
        chosen.append("CPUExecutionProvider")
    return chosen"""

    def cases(self):
        cpu_only = [AZURE, CPU]
        gpu_box = ["TensorrtExecutionProvider", "CUDAExecutionProvider", CPU]
        trt = ("TensorrtExecutionProvider", {"device_id": 0, "trt_fp16_enable": True})
        cuda = ("CUDAExecutionProvider", {"device_id": 0, "cudnn_conv_algo_search": "HEURISTIC"})
        openvino = ("OpenVINOExecutionProvider", {"device_type": "GPU"})
        dml = ("DmlExecutionProvider", {"device_id": 0})
        return [
            ((["CUDAExecutionProvider", CPU], cpu_only), [CPU]),
            (([trt, cuda], gpu_box), [trt, cuda, CPU]),
            (([trt, cuda, CPU], cpu_only), [CPU]),
            ((["CUDAExecutionProvider", openvino], ["OpenVINOExecutionProvider", "CUDAExecutionProvider", CPU]),
             ["CUDAExecutionProvider", openvino, CPU]),
            (([dml, CPU], ["DmlExecutionProvider", CPU]), [dml, CPU]),
            (([cuda, (CPU, {})], gpu_box), [cuda, (CPU, {})]),
            (([], cpu_only), [CPU]),
        ]

    def describe_call(self, args):
        wanted = [entry[0] if isinstance(entry, tuple) else entry for entry in args[0]]
        return f"`choose_providers(...)` wanting {wanted} where {args[1]} are available"


class BindAndRun(Problem):
    prompt = ("write bind_and_run(session, images): bind the images and the outputs probabilities and label, run, "
              "return the binding")
    vars = ("bind_and_run",)
    hints = ("The session's `io_binding` method makes a binding; an input can be bound from an `OrtValue` "
             "(`onnxruntime.OrtValue.ortvalue_from_numpy`) and an output by its name alone, which lets the runtime "
             "allocate it on the CPU.",
             "Bind the input 'pixels', then the outputs 'probabilities' and 'label' in that order, run the binding "
             "with the session's `run_with_iobinding` method and return the binding itself (not its outputs).")
    solution = """def bind_and_run(session, images):
    binding = session.io_binding()
    binding.bind_ortvalue_input("pixels", ort.OrtValue.ortvalue_from_numpy(images))
    binding.bind_output("probabilities")
    binding.bind_output("label")
    session.run_with_iobinding(binding)
    return binding"""

    def check(self, fn):
        if not callable(fn):
            raise Incorrect(f"`bind_and_run` should be a function, but it is a {type(fn).__name__}.")
        for count, seed in ((5, 1), (12, 2)):
            session, images = make_session(classifier_model(seed)), digit_images(count, seed)
            call = f"`bind_and_run(session, images)` on {count} images"
            binding = call_learner(fn, (session, images), name=self.vars[0], call=call, copy_arguments=False)
            if not (hasattr(binding, "copy_outputs_to_cpu") and hasattr(binding, "bind_output")):
                raise Incorrect(f"{call} returned a {type(binding).__name__}; return the binding that "
                                "`session.io_binding()` made, after running it.")
            values = binding.get_outputs()
            if not values:
                raise Incorrect(f"{call}: the binding holds no outputs. Bind the outputs, then run the binding "
                                "before returning it.")
            # Copying an output that was bound by name but never computed crashes the process: look first.
            if not all(value.has_value() for value in values):
                raise Incorrect(f"{call}: the binding's outputs were never computed. Run it with the session's "
                                "`run_with_iobinding` method before returning it.")
            if len(values) != len(BOUND_OUTPUTS):
                raise Incorrect(f"{call}: the binding holds {len(values)} outputs; bind only "
                                f"{' and '.join(BOUND_OUTPUTS)}.")
            outputs = binding.copy_outputs_to_cpu()
            expected = session.run(list(BOUND_OUTPUTS), {"pixels": images})
            for position, (name, got, want) in enumerate(zip(BOUND_OUTPUTS, outputs, expected)):
                if got.shape != want.shape or got.dtype != want.dtype:
                    raise Incorrect(f"{call}: bound output {position} has shape {got.shape} and dtype {got.dtype}; "
                                    f"expected {name}, {want.dtype} of shape {want.shape}. Bind the outputs in the "
                                    "order probabilities, label.")
                assert_equal(f"{call}: the bound {name}", got, want, rtol=1e-5, atol=1e-6)


class NodesPerProvider(Problem):
    prompt = ("write nodes_per_provider(session): how many nodes each of the session's providers was given, "
              "zeros included")
    vars = ("nodes_per_provider",)
    hints = ("`session.get_provider_graph_assignment_info()` lists subgraphs; each has an `ep_name` and "
             "`get_nodes()`. A subgraph can hold many nodes (a compiling provider such as TensorRT takes whole "
             "subgraphs), so count nodes, not subgraphs.",
             "Start from a zero for every name in `session.get_providers()`, so a provider that received nothing "
             "still appears, then add each subgraph's number of nodes to its provider.")
    solution = """def nodes_per_provider(session):
    counts = {name: 0 for name in session.get_providers()}
    for subgraph in session.get_provider_graph_assignment_info():
        counts[subgraph.ep_name] += len(subgraph.get_nodes())
    return counts"""

    def cases(self):
        return [("the digits classifier with providers Azure, CPU", classifier_model(), [AZURE, CPU]),
                ("a residual block (Identity, Relu, Add, Relu, Mul) on the CPU", residual_model(), [CPU]),
                ("the residual block with providers Azure, CPU", residual_model(), [AZURE, CPU])]

    @staticmethod
    def reference(session) -> dict[str, int]:
        counts = {name: 0 for name in session.get_providers()}
        for subgraph in session.get_provider_graph_assignment_info():
            counts[subgraph.ep_name] += len(subgraph.get_nodes())
        return counts

    def check(self, fn):
        if not callable(fn):
            raise Incorrect(f"`nodes_per_provider` should be a function, but it is a {type(fn).__name__}.")
        for description, model, providers in self.cases():
            session = make_session(model, providers, record_assignments=True)
            call = f"`nodes_per_provider(session)` on {description}"
            actual = call_learner(fn, (session,), name=self.vars[0], call=call, copy_arguments=False)
            expected = self.reference(session)
            if not isinstance(actual, dict):
                raise Incorrect(f"{call} returned a {type(actual).__name__}; return a dict from provider name to "
                                "count.")
            missing = [name for name in expected if name not in actual]
            if missing:
                raise Incorrect(f"{call} has no entry for {', '.join(missing)}; every provider of "
                                "`session.get_providers()` belongs in the dict, with 0 if it got no node.")
            extra = [str(name) for name in actual if name not in expected]
            if extra:
                raise Incorrect(f"{call} has entries {extra} that are not providers of this session.")
            for name, count in expected.items():
                assert_equal(f"{call}: the count for {name}", actual[name], count)


class RequiredOperators(FunctionProblem):
    prompt = ("write required_operators(config_text): the set of (domain, opset, op_type) a reduced-build config "
              "asks for")
    vars = ("required_operators",)
    hints = ("Skip empty lines and lines starting with '#' (comments) or '!' (global directives). Every other line "
             "has three fields separated by ';': the domain, one or more opsets separated by commas, and the "
             "operators.",
             "The operators are separated by commas, but an operator may be followed by a JSON block of types, which "
             "has commas (and braces) of its own: remove the braces and what they hold before splitting, from the "
             "innermost out. Each operator counts once per opset of its line; opsets are ints.")
    solution = r'''def required_operators(config_text):
    required = set()
    for line in config_text.splitlines():
        line = line.strip()
        if not line or line[0] in "#!":
            continue
        domain, opsets, operators = line.split(";", 2)
        while "{" in operators:
            operators = re.sub(r"\{[^{}]*\}", "", operators)
        for opset in opsets.split(","):
            required |= {(domain, int(opset), name.strip()) for name in operators.split(",") if name.strip()}
    return required'''

    config_texts = (
        "# Generated from model/s:\n# - digits.ort\nai.onnx;11;Conv\nai.onnx;12;MaxPool\nai.onnx;13;Gemm,Softmax\n"
        "com.microsoft;1;FusedConv\n",
        'ai.onnx;13;ArgMax{"inputs": {"0": ["float"]}},Gemm{"inputs": {"0": ["float"]}}\nai.onnx;19;Reshape\n',
        'ai.onnx;12;Add,Cast{"inputs": {"0": ["float", "int32_t"]}, "outputs": {"0": ["float", "int64_t"]}},Concat\n',
        "ai.onnx;11,12;Add,Clip\nai.onnx.ml;1;TreeEnsembleClassifier\n",
        "!globally_allowed_types;float,int64_t\n\nai.onnx;14;Relu\n",
    )

    @staticmethod
    def parsed_by_onnxruntime(config_text: str) -> set[tuple[str, int, str]]:
        """The same config read by ONNX Runtime's own parser (``onnxruntime.tools.reduced_build_config_parser``)."""
        from onnxruntime.tools.reduced_build_config_parser import parse_config

        with tempfile.TemporaryDirectory(prefix="lab08-") as folder:
            path = Path(folder) / "required_operators.config"
            path.write_text(config_text)
            required, _ = parse_config(str(path))
        return {(domain, int(opset), op) for domain, opsets in required.items()
                for opset, ops in opsets.items() for op in ops}

    def cases(self):
        return [((text,), self.parsed_by_onnxruntime(text)) for text in self.config_texts]

    def describe_call(self, args):
        lines = [line for line in args[0].splitlines() if line.strip()]
        return f"`required_operators(...)` on the config whose first line is {lines[0]!r}"

    def check(self, required_operators):
        self.require_function(required_operators)
        for args, expected in self.cases():
            actual = self.call_answer(required_operators, args)
            try:
                extra = sorted(set(actual) - expected, key=repr)
            except TypeError:  # not a collection of hashable items: assert_equal says what it should be
                extra = []
            if extra:
                raise Incorrect(f"{self.describe_call(args)} returns {len(extra)} item(s) that are not operators the "
                                f"config requires, for example {extra[0]!r}.")
            assert_equal(self.describe_call(args), actual, expected)


# ---------------------------------------------------------------------------
# Check yourself
# ---------------------------------------------------------------------------

class SilentFallback(ThoughtExperiment):
    prompt = ("a service created with providers TensorRT, CUDA, CPU is 20× slower in production than on the "
              "developer's machine. What probably happened, and how do you make it impossible to miss?")
    solution = (
        "ONNX Runtime treats the provider list as a wish list: a provider that is not in the installed build (the "
        "CPU-only `onnxruntime` wheel instead of `onnxruntime-gpu`), or whose libraries (CUDA, cuDNN, TensorRT) fail "
        "to load, is dropped with a warning or an 'EP Error … Falling back' notice, and the session runs on the CPU, "
        "which always comes last. The warning scrolls past in a service log. Partial fallback is the other trap: a "
        "provider that supports most nodes but not all leaves some on the CPU, with a device copy before and after "
        "each, which can cost more than the whole model. Make it impossible to miss: compare "
        "`session.get_providers()` with what you asked for and fail at start-up when the accelerator is missing; "
        "record the node assignment (`session.record_ep_graph_assignment_info` and "
        "`get_provider_graph_assignment_info()`) and alert when nodes land on the CPU; and keep a latency check in "
        "the deployment tests.")


class MemoryPlanning(ThoughtExperiment):
    prompt = ("your model serves requests whose batch size changes every call, and its memory keeps growing. "
              "What do the memory pattern and the arena do, and which settings would you try?")
    solution = (
        "The CPU arena (BFC arena) keeps the memory it has allocated and hands it out again instead of calling malloc"
        " and free for every tensor; it grows to the largest working set it has seen and, by default, does not give "
        "memory back. The memory pattern goes further: after the first run with a given input shape the runtime knows"
        " every intermediate tensor's size and lifetime, and on later runs with that shape allocates them as one "
        "planned block. With ever-changing shapes, each new shape records a new plan and asks the arena for a new "
        "block, so both grow. Try `enable_mem_pattern = False` (plans per shape are useless here), the run option "
        "`memory.enable_memory_arena_shrinkage` (e.g. 'cpu:0') to return unused arena chunks after a run, an arena "
        "that grows only by what is asked (`arena_extend_strategy` = kSameAsRequested: a CUDA provider option, or an "
        "`OrtArenaCfg` for a shared CPU allocator), or `enable_cpu_mem_arena = False` if allocation is cheap relative"
        " to compute. Bucketing the batch sizes (pad to 1, 8, 32, 64) keeps the number of shapes small and makes both"
        " mechanisms effective again. Measure peak memory and latency before and after each change.")


class AcceleratorForSmallModel(ThoughtExperiment):
    prompt = ("why can the CUDA provider run the digits CNN at batch 1 no faster, or slower, than the CPU, and what "
              "do I/O binding and batching change?")
    solution = (
        "A GPU wins by doing much arithmetic in parallel; the digits CNN does about 26 thousand multiply-adds per "
        "image (two small convolutions and a 256 × 10 linear layer), which a CPU core finishes in microseconds. On "
        "the GPU each run also pays fixed costs that do not shrink with the model: copying the input from host memory"
        " to the device and the output back (over PCIe), launching one kernel per node, and synchronising. At batch 1"
        " those fixed costs dominate, so the GPU is no faster or even slower. I/O binding removes the copies from the"
        " timed path when the data is already on the device (a camera frame decoded on the GPU, the output of a "
        "previous model) or lets outputs stay there for the next model; preallocated bound outputs also avoid an "
        "allocation per run. Batching spreads the fixed costs over many images, which is where the accelerator's "
        "throughput shows. TensorRT and CUDA graphs cut the launch overhead further by fusing kernels and replaying a"
        " recorded sequence.")


class MobileReducedBuild(ThoughtExperiment):
    prompt = ("you ship the digits CNN in a mobile app with a reduced ONNX Runtime build made from its "
              "required-operators config. A later model version adds a LayerNormalization. What happens, and "
              "how should the release process change?")
    solution = (
        "A reduced (minimal) build contains kernels only for the operators, opsets and, with type reduction, the "
        "element types listed in the config it was built from, and it reads only ORT-format models. The new model "
        "needs LayerNormalization (and perhaps a new opset or type), which the app's build does not have: loading it "
        "fails with an error saying no kernel is registered for the node, on users' devices rather than in testing. "
        "Worse, with 'Runtime' optimization style, a saved optimization can need an operator (FusedConv, for "
        "example) that only appears when it is replayed. The fix is to treat the config as part of the app: convert "
        "every model version the app may load, merge their configs (the converter takes a folder of models and "
        "writes one config), rebuild the runtime from it, and gate releases on loading each shipped .ort file with "
        "the shipped runtime. Models downloaded after release must be checked against the app's config, or the app "
        "must ship a full build.")


PROBLEMS = {
    "q1": SymbolicAxes,
    "q2": ChooseProviders,
    "q3": BindAndRun,
    "q4": NodesPerProvider,
    "q5": RequiredOperators,
    "q6": SilentFallback,
    "q7": MemoryPlanning,
    "q8": AcceleratorForSmallModel,
    "q9": MobileReducedBuild,
}
bind = make_binder(LAB, PROBLEMS)
