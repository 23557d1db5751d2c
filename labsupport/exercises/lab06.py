"""Lab 06 — classical ML export: scikit-learn, XGBoost and LightGBM to ONNX.

The exercises turn ZipMap's output back into a matrix, convert the digits pipeline with
the right options, measure label and probability parity, convert a ColumnTransformer with
one input per column group, measure what float32 does to float64 data and fix it with a
double-precision graph, and evaluate a tiny tree ensemble by hand. The reference helpers
(timestamps data, the tiny hand-built TreeEnsembleRegressor, parity) are what the notebook
and the checks share, so both always agree on the numbers.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from labsupport.checking import (
    EqualityProblem,
    FunctionProblem,
    Incorrect,
    ThoughtExperiment,
    make_binder,
)
from labsupport.onnx_problems import OnnxModelProblem

LAB = "06_classical_ml_export"

FLOAT = 1  # onnx.TensorProto.FLOAT, spelled out so importing this module stays cheap
INT64 = 7  # onnx.TensorProto.INT64
STRING = 8  # onnx.TensorProto.STRING
DOUBLE = 11  # onnx.TensorProto.DOUBLE


# ---------------------------------------------------------------------------
# Reference helpers shared by the notebook and the checks
# ---------------------------------------------------------------------------

def run_onnx(model, feeds) -> list:
    """Run an ONNX ModelProto in ONNX Runtime (CPU) and return all its outputs."""
    import onnxruntime

    session = onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, dict(feeds))


def zipmap_to_matrix(rows) -> np.ndarray:
    """ZipMap's output (one {class: probability} dict per row) as a float32 [N, classes] array."""
    classes = sorted(rows[0])
    return np.array([[row[label] for label in classes] for row in rows], dtype=np.float32)


def classification_parity(onnx_labels, onnx_probabilities, reference_labels, reference_probabilities):
    """(label agreement in percent, largest absolute probability difference), as Python floats."""
    agreement = 100.0 * float(np.mean(np.asarray(onnx_labels) == np.asarray(reference_labels)))
    difference = np.abs(np.asarray(onnx_probabilities, dtype=np.float64) - np.asarray(reference_probabilities, dtype=np.float64))
    return agreement, float(difference.max())


@lru_cache(maxsize=1)
def digits_pipeline():
    """The digits StandardScaler → LogisticRegression pipeline (cached; see classical_models)."""
    from labsupport.models.classical_models import train_digits_pipeline

    return train_digits_pipeline()


@lru_cache(maxsize=1)
def mixed_pipeline():
    """The customer-table ColumnTransformer pipeline (cached; see classical_models)."""
    from labsupport.models.classical_models import train_mixed_pipeline

    return train_mixed_pipeline()


TIMESTAMP_ORIGIN = 1.75e9  # seconds since 1970: a day in June 2025
TIMESTAMP_SPREAD = 600.0  # the events of one row fall within about ten minutes


def timestamp_split(rows: int = 2000, seed: int = 6):
    """Three event times per row as float64 Unix seconds, and a 0/1 label; split 1500 / 500.

    The label depends on the *differences* between the times (seconds to minutes), while
    the times themselves are about 1.75 × 10⁹: float32 stores such numbers in steps of 128 s.
    Returns (x_train, x_test, y_train, y_test).
    """
    rng = np.random.default_rng(seed)
    offsets = rng.normal(size=(rows, 3))
    labels = (offsets @ np.array([1.5, -2.0, 1.0]) + rng.normal(scale=0.5, size=rows) > 0).astype(np.int64)
    times = TIMESTAMP_ORIGIN + TIMESTAMP_SPREAD * offsets
    split = rows * 3 // 4
    return times[:split], times[split:], labels[:split], labels[split:]


@lru_cache(maxsize=1)
def timestamp_pipeline():
    """StandardScaler → LogisticRegression fitted (in float64) on :func:`timestamp_split`."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    from labsupport.models.classical_models import single_threaded

    x_train, _, y_train, _ = timestamp_split()
    with single_threaded():
        return Pipeline([("scale", StandardScaler()), ("classify", LogisticRegression())]).fit(x_train, y_train)


def convert_timestamp_pipeline(tensor_type: str = "float"):
    """The timestamp pipeline converted with a float32 (``"float"``) or float64 (``"double"``) input."""
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import DoubleTensorType, FloatTensorType

    input_type = {"float": FloatTensorType, "double": DoubleTensorType}[tensor_type]
    return convert_sklearn(timestamp_pipeline(), initial_types=[("input", input_type([None, 3]))],
                           options={"zipmap": False})


def float32_timestamp_discrepancy() -> tuple[int, float]:
    """(test rows whose float32-ONNX label differs from scikit-learn's, max |probability diff|)."""
    _, x_test, _, _ = timestamp_split()
    labels, probabilities = run_onnx(convert_timestamp_pipeline("float"), {"input": x_test.astype(np.float32)})
    pipeline = timestamp_pipeline()
    mismatches = int(np.sum(labels != pipeline.predict(x_test)))
    return mismatches, float(np.abs(probabilities - pipeline.predict_proba(x_test)).max())


# The tiny ensemble evaluated by hand: two trees of depth 2 over features x[0] and x[1].
# Each row: (tree, node, mode, feature, threshold, true node, false node, leaf value).
TINY_TREE_NODES = (
    (0, 0, "BRANCH_LEQ", 0, 0.5, 1, 2, 0.0),
    (0, 1, "BRANCH_LEQ", 1, 0.25, 3, 4, 0.0),
    (0, 2, "BRANCH_LEQ", 1, 0.75, 5, 6, 0.0),
    (0, 3, "LEAF", 0, 0.0, 0, 0, 1.0),
    (0, 4, "LEAF", 0, 0.0, 0, 0, 2.0),
    (0, 5, "LEAF", 0, 0.0, 0, 0, 3.0),
    (0, 6, "LEAF", 0, 0.0, 0, 0, 5.0),
    (1, 0, "BRANCH_LEQ", 1, 0.5, 1, 2, 0.0),
    (1, 1, "BRANCH_LEQ", 0, 0.25, 3, 4, 0.0),
    (1, 2, "LEAF", 0, 0.0, 0, 0, 0.75),
    (1, 3, "LEAF", 0, 0.0, 0, 0, -0.5),
    (1, 4, "LEAF", 0, 0.0, 0, 0, 0.25),
)
TINY_TREE_BASE = 0.125


def tiny_tree_model(trees=(0, 1), base_value: float = TINY_TREE_BASE):
    """The tiny ensemble as an ai.onnx.ml TreeEnsembleRegressor: input ``x`` float [N, 2], output ``y`` [N, 1].

    ``trees`` keeps a subset of the trees (to draw each one's regions on its own).
    """
    from onnx import TensorProto, helper

    nodes = [row for row in TINY_TREE_NODES if row[0] in trees]
    leaves = [row for row in nodes if row[2] == "LEAF"]
    regressor = helper.make_node(
        "TreeEnsembleRegressor", ["x"], ["y"], domain="ai.onnx.ml",
        nodes_treeids=[row[0] for row in nodes], nodes_nodeids=[row[1] for row in nodes],
        nodes_modes=[row[2] for row in nodes], nodes_featureids=[row[3] for row in nodes],
        nodes_values=[row[4] for row in nodes], nodes_truenodeids=[row[5] for row in nodes],
        nodes_falsenodeids=[row[6] for row in nodes],
        target_treeids=[row[0] for row in leaves], target_nodeids=[row[1] for row in leaves],
        target_ids=[0] * len(leaves), target_weights=[row[7] for row in leaves],
        base_values=[base_value], n_targets=1, aggregate_function="SUM", post_transform="NONE")
    graph = helper.make_graph([regressor], "tiny_trees",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 1])])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21), helper.make_opsetid("ai.onnx.ml", 3)])


def tiny_tree_points() -> np.ndarray:
    """Points that visit every leaf, including points exactly on each threshold."""
    on_thresholds = [[0.5, 0.25], [0.5, 0.75], [0.25, 0.5], [0.5, 0.5], [0.25, 0.25], [0.75, 0.75]]
    inside = [[0.1, 0.1], [0.1, 0.4], [0.4, 0.9], [0.3, 0.2], [0.9, 0.1], [0.6, 0.6], [0.9, 0.95], [0.7, 0.3]]
    return np.array(on_thresholds + inside, dtype=np.float32)


def evaluate_tiny_trees_onnx(points: np.ndarray) -> np.ndarray:
    """ONNX Runtime's prediction of :func:`tiny_tree_model` for each point, shape [N]."""
    return run_onnx(tiny_tree_model(), {"x": np.asarray(points, dtype=np.float32)})[0][:, 0]


# ---------------------------------------------------------------------------
# 1. ZipMap
# ---------------------------------------------------------------------------

class ZipMapToMatrix(FunctionProblem):
    prompt = "write zipmap_to_matrix(rows): ZipMap's list of {class: probability} dicts as a float32 [N, classes] array"
    vars = ("zipmap_to_matrix",)
    hints = ("Each row is a dict keyed by class label. The columns of the matrix are the classes in sorted order "
             "(scikit-learn's `classes_` is sorted), whatever order the dict happens to iterate in.",
             "`classes = sorted(rows[0])`, then `np.array([[row[c] for c in classes] for row in rows], "
             "dtype=np.float32)`.")
    solution = """def zipmap_to_matrix(rows):
    classes = sorted(rows[0])
    return np.array([[row[label] for label in classes] for row in rows], dtype=np.float32)"""
    rtol = 1e-6

    def cases(self):
        sorted_keys = [{0: 0.25, 1: 0.5, 2: 0.25}, {0: 0.75, 1: 0.125, 2: 0.125}]
        shuffled_keys = [{2: 0.5, 0: 0.25, 1: 0.25}, {1: 0.0, 2: 0.0, 0: 1.0}, {0: 0.5, 2: 0.125, 1: 0.375}]
        string_labels = [{"dog": 0.25, "cat": 0.75}, {"cat": 0.5, "dog": 0.5}]
        rng = np.random.default_rng(6)
        digits = [dict(zip(range(10), (p / p.sum()).tolist())) for p in rng.uniform(size=(4, 10))]
        return [((rows,), zipmap_to_matrix(rows)) for rows in (sorted_keys, shuffled_keys, string_labels, digits)]


# ---------------------------------------------------------------------------
# 2. Converting the digits pipeline
# ---------------------------------------------------------------------------

def _describe_type(type_proto) -> str:
    kind = type_proto.WhichOneof("value")
    return {"sequence_type": "a sequence (of maps)", "map_type": "a map"}.get(kind, "not a tensor")


class _ClassifierModelProblem(OnnxModelProblem):
    """A converted classifier: outputs label + probabilities as tensors, compared with scikit-learn."""

    output_names = ("label", "probabilities")
    forbidden_ops = ("ZipMap",)
    rtol = 1e-4
    atol = 1e-5

    def check_model(self, name, model):
        for output in model.graph.output:
            if output.type.WhichOneof("value") != "tensor_type":
                raise Incorrect(f"`{name}`'s output '{output.name}' is {_describe_type(output.type)}, not a tensor: "
                                "the converter added a ZipMap. Pass `options={'zipmap': False}`.")
        # The element type first: it also changes which opset skl2onnx needs, and that message would mislead.
        inputs = {value.name: value for value in model.graph.input}
        if list(inputs) == list(self.input_names or inputs):
            self._check_types(name, "input", inputs, self.input_types)
        super().check_model(name, model)


class ConvertDigitsPipeline(_ClassifierModelProblem):
    prompt = ("convert the digits pipeline with skl2onnx: input 'input' float [None, 64], no ZipMap, "
              "target opset 17 for the default domain")
    vars = ("digits_onnx",)
    hints = ("`convert_sklearn(pipeline, initial_types=[(name, FloatTensorType(shape))], options=..., "
             "target_opset=...)`; `None` in a shape makes that dimension dynamic.",
             "`convert_sklearn(pipeline, initial_types=[('input', FloatTensorType([None, 64]))], "
             "options={'zipmap': False}, target_opset={'': 17, 'ai.onnx.ml': 3})`.")
    solution = """digits_onnx = convert_sklearn(pipeline, initial_types=[("input", FloatTensorType([None, 64]))],
                              options={"zipmap": False}, target_opset={"": 17, "ai.onnx.ml": 3})"""
    opset = 17
    input_names = ("input",)
    input_types = {"input": FLOAT}
    output_types = {"label": INT64, "probabilities": FLOAT}
    dynamic_dims = {"input": (0,)}
    required_ops = ("Scaler", "LinearClassifier")

    def feeds(self):
        from labsupport.models import load_digits_split

        return {"input": load_digits_split().x_test}

    def expected_outputs(self, feeds):
        pipeline = digits_pipeline()
        return [pipeline.predict(feeds["input"]), pipeline.predict_proba(feeds["input"]).astype(np.float32)]


class ClassificationParity(FunctionProblem):
    prompt = ("write classification_parity(onnx_labels, onnx_probabilities, reference_labels, reference_probabilities) "
              "returning (label agreement in %, max absolute probability difference)")
    vars = ("classification_parity",)
    hints = ("Agreement is the share of rows whose two labels are equal, times 100. The probability difference is "
             "taken element by element over the whole [N, classes] matrix, and the worst one is reported.",
             "`100 * np.mean(onnx_labels == reference_labels)` and `np.abs(onnx_probabilities - "
             "reference_probabilities).max()`; return both as `float(...)`.")
    solution = """def classification_parity(onnx_labels, onnx_probabilities, reference_labels, reference_probabilities):
    agreement = 100 * np.mean(np.asarray(onnx_labels) == np.asarray(reference_labels))
    max_diff = np.abs(np.asarray(onnx_probabilities, np.float64) - np.asarray(reference_probabilities, np.float64)).max()
    return float(agreement), float(max_diff)"""
    rtol = 1e-6
    atol = 1e-12

    def cases(self):
        rng = np.random.default_rng(60)
        cases = []
        for rows, classes, flips, scale in ((8, 3, 0, 1e-7), (20, 10, 3, 1e-3), (5, 2, 5, 0.25)):
            reference = rng.dirichlet(np.ones(classes), size=rows)
            onnx_probabilities = (reference + rng.normal(scale=scale, size=reference.shape)).astype(np.float32)
            onnx_probabilities[0, 0] = reference[0, 0] - 3 * scale  # the worst difference is a negative one
            reference_labels = reference.argmax(axis=1)
            onnx_labels = reference_labels.copy()
            onnx_labels[:flips] = (onnx_labels[:flips] + 1) % classes
            arguments = (onnx_labels, onnx_probabilities, reference_labels, reference)
            cases.append((arguments, classification_parity(*arguments)))
        return cases


# ---------------------------------------------------------------------------
# 3. A ColumnTransformer with numeric and categorical columns
# ---------------------------------------------------------------------------

class ConvertMixedPipeline(_ClassifierModelProblem):
    prompt = ("convert the customer-table pipeline with one input per column group: 'numeric' float [None, 3] "
              "and 'categorical' string [None, 2], no ZipMap")
    vars = ("mixed_onnx",)
    hints = ("`initial_types` takes one (name, type) pair per graph input, in the column order the "
             "ColumnTransformer counts in: the three numeric columns first, then the two categorical ones.",
             "`[('numeric', FloatTensorType([None, 3])), ('categorical', StringTensorType([None, 2]))]`, with "
             "`options={'zipmap': False}`.")
    solution = """mixed_onnx = convert_sklearn(
    mixed_model,
    initial_types=[("numeric", FloatTensorType([None, 3])), ("categorical", StringTensorType([None, 2]))],
    options={"zipmap": False})"""
    input_names = ("numeric", "categorical")
    input_types = {"numeric": FLOAT, "categorical": STRING}
    output_types = {"label": INT64, "probabilities": FLOAT}
    dynamic_dims = {"numeric": (0,), "categorical": (0,)}
    required_ops = ("Scaler", "OneHotEncoder", "LinearClassifier")

    def feeds(self):
        from labsupport.models.classical_models import make_mixed_table

        return make_mixed_table()[1].feeds()

    def expected_outputs(self, feeds):
        from labsupport.models.classical_models import mixed_columns

        table = mixed_columns(feeds["numeric"], feeds["categorical"])
        pipeline = mixed_pipeline()
        return [pipeline.predict(table), pipeline.predict_proba(table).astype(np.float32)]


# ---------------------------------------------------------------------------
# 4. float32 versus float64
# ---------------------------------------------------------------------------

class Float32Discrepancy(EqualityProblem):
    prompt = ("on the timestamp test set, count the labels where the float32 ONNX model disagrees with "
              "scikit-learn, and the largest absolute probability difference")
    vars = ("label_mismatches", "max_probability_diff")
    hints = ("Compare ONNX's labels with `timestamp_model.predict(x_test)` (scikit-learn in float64), not with the "
             "true labels: the question is where the two implementations disagree.",
             "`label_mismatches = int(np.sum(float32_labels != timestamp_model.predict(x_test)))`; "
             "`max_probability_diff = float(np.abs(float32_probabilities - timestamp_model.predict_proba(x_test)).max())`.")
    solution = """label_mismatches = int(np.sum(float32_labels != timestamp_model.predict(x_test)))
max_probability_diff = float(np.abs(float32_probabilities - timestamp_model.predict_proba(x_test)).max())"""
    rtol = 1e-5

    def expected_value(self):
        return list(float32_timestamp_discrepancy())


class DoublePrecisionExport(_ClassifierModelProblem):
    prompt = "convert the timestamp pipeline so that the graph computes in float64 and matches scikit-learn to 1e-9"
    vars = ("timestamps_double_onnx",)
    hints = ("The element type of the input you declare in `initial_types` decides the precision of the whole graph.",
             "`convert_sklearn(timestamp_model, initial_types=[('input', DoubleTensorType([None, 3]))], "
             "options={'zipmap': False})`.")
    solution = """timestamps_double_onnx = convert_sklearn(timestamp_model, initial_types=[("input", DoubleTensorType([None, 3]))],
                                         options={"zipmap": False})"""
    input_names = ("input",)
    input_types = {"input": DOUBLE}
    output_types = {"label": INT64, "probabilities": DOUBLE}
    rtol = 1e-9
    atol = 1e-9

    def check_model(self, name, model):
        inputs = {value.name: value.type.tensor_type.elem_type for value in model.graph.input}
        if inputs.get("input") == FLOAT:
            raise Incorrect(f"`{name}` takes a float32 input: ONNX Runtime would need the timestamps cast to float32, "
                            "which is where the precision is lost. Declare the input as a DoubleTensorType.")
        super().check_model(name, model)

    def feeds(self):
        return {"input": timestamp_split()[1]}

    def expected_outputs(self, feeds):
        pipeline = timestamp_pipeline()
        return [pipeline.predict(feeds["input"]), pipeline.predict_proba(feeds["input"])]


# ---------------------------------------------------------------------------
# 5. A tree ensemble by hand
# ---------------------------------------------------------------------------

class EvaluateTinyTrees(FunctionProblem):
    prompt = "write evaluate_trees(x): the tiny two-tree ensemble's prediction for one point x = (x0, x1), by hand"
    vars = ("evaluate_trees",)
    hints = ("Walk each tree from node 0: at a BRANCH_LEQ node go to the true node if x[feature] <= threshold, "
             "otherwise to the false node, until you reach a LEAF. Equal to the threshold counts as true.",
             "The prediction is the base value plus the leaf value each tree lands in: "
             "`0.125 + tree_0(x) + tree_1(x)`, with tree 0 splitting on x[0] <= 0.5 first and tree 1 on x[1] <= 0.5.")
    solution = """def evaluate_trees(x):
    x0, x1 = float(x[0]), float(x[1])
    if x0 <= 0.5:
        tree_0 = 1.0 if x1 <= 0.25 else 2.0
    else:
        tree_0 = 3.0 if x1 <= 0.75 else 5.0
    if x1 <= 0.5:
        tree_1 = -0.5 if x0 <= 0.25 else 0.25
    else:
        tree_1 = 0.75
    return 0.125 + tree_0 + tree_1"""
    rtol = 1e-6

    def cases(self):
        points = tiny_tree_points()
        return [((tuple(float(v) for v in point),), float(value))
                for point, value in zip(points, evaluate_tiny_trees_onnx(points))]


# ---------------------------------------------------------------------------
# Check yourself
# ---------------------------------------------------------------------------

class WhenToKeepZipMap(ThoughtExperiment):
    prompt = "ZipMap is on by default. Who benefits from it, who is hurt by it, and what would you ship?"
    hints = ("Look at the two output types side by side: which one can a C++ or JavaScript consumer, or a batch "
             "job, use directly?",
             "Think of the cost per row of building a Python dict, and of what a tensor output allows (slicing, "
             "argmax, comparison with numpy).")
    solution = (
        "ZipMap turns the [N, classes] probability tensor into one {label: probability} map per row, "
        "`seq(map(int64, tensor(float)))`. It mirrors what some scikit-learn users expect (probabilities keyed by "
        "class label, also for string labels) and so keeps a Python consumer that indexes by label working. "
        "Everyone else pays: the output is not a tensor, so it cannot be sliced, compared or fed to another model "
        "without a conversion loop; non-Python runtimes (C++, ONNX Runtime Web, mobile) must walk sequences and "
        "maps; building a dict per row costs time on large batches; and some tools (validation harnesses, "
        "graph optimizers, other converters) only handle tensor outputs. Ship `zipmap=False` and give the class "
        "order separately (classlabels in the model or metadata); keep ZipMap only for a consumer that already "
        "depends on the map format. `zipmap='columns'` is the middle way: one named tensor output per class.")


class FixTimestampPrecision(ThoughtExperiment):
    prompt = ("a churn model trained on raw Unix timestamps disagrees with its ONNX export on 3 % of customers. "
              "Explain the cause and give two fixes with their costs.")
    hints = ("How far apart are neighbouring float32 numbers near 1.75 × 10⁹? Compare that with the differences "
             "between timestamps that the model actually uses.",
             "One fix changes the graph's element type; another changes the features so that small numbers carry "
             "the information.")
    solution = (
        "The export declared a float32 input (`FloatTensorType`, the usual choice), and float32 has 24 significant bits: near 1.75 × 10⁹ "
        "neighbouring values are 128 s apart, so casting the input to float32 moves each timestamp by up to a minute "
        "before any operator runs. The model's decision depends on differences of seconds to minutes, so customers "
        "near the decision boundary flip. The float32 Scaler then subtracts two huge, nearly equal numbers, which "
        "keeps the rounding error. Fixes: (1) convert with `DoubleTensorType`, so the whole graph runs in float64 "
        "and matches scikit-learn to ~1e-15 — the cost is that the ai.onnx.ml operators (Scaler, LinearClassifier) "
        "only take float, so skl2onnx emits standard MatMul/Add/Sigmoid nodes instead, the model needs float64 "
        "feeds, and some accelerators (GPU kernels, quantization, NPUs) support float64 poorly or not at all. "
        "(2) Fix the features: put the subtraction in float64 before the model, i.e. train on durations or on "
        "`time - reference_time` (seconds since an epoch close to the data), so the values are small and float32 "
        "represents them to a millisecond — the cost is a preprocessing step every consumer must reproduce (best "
        "inside the graph's input contract or the feature pipeline, documented). Either way, measure: count label "
        "disagreements and the max probability difference on held-out data.")


class ThresholdSemantics(ThoughtExperiment):
    prompt = ("XGBoost's converted trees use BRANCH_LT, LightGBM's BRANCH_LEQ. Why must the converter record this, "
              "and where can float32 still make a tree ensemble disagree with its framework?")
    hints = ("Take a feature value exactly equal to a threshold: which child does each library choose?",
             "The thresholds are stored as float32 in the TreeEnsemble attributes; the features arrive as float32. "
             "What happens to a float64 feature that lies between two float32 numbers, near a threshold?")
    solution = (
        "A split is a comparison, and libraries disagree on the boundary: XGBoost sends x to the left child when "
        "x < t, LightGBM and scikit-learn when x <= t. A value exactly on a threshold (common with discrete "
        "features such as pixel intensities in steps of 1/16) would go the other way with the wrong mode, landing "
        "in another leaf region and changing the sum, so the converter writes the mode per node (BRANCH_LT, "
        "BRANCH_LEQ, …) and ONNX Runtime honours it. Precision is the other source: TreeEnsembleClassifier / "
        "Regressor keep thresholds (`nodes_values`) and leaf weights in float32 attributes and the converters "
        "declare a float32 input, so a float64 feature that rounds across a threshold takes the other branch, "
        "and the leaf sums carry float32 rounding (~1e-7 relative). XGBoost, LightGBM and scikit-learn's trees "
        "all split on float32 values, so for them this is rare; it shows when features are prepared in float64 "
        "and fed as float32 near a threshold. The newer TreeEnsemble operator (ai.onnx.ml opset 5) takes "
        "thresholds and weights as tensors of the input's type (float64 allowed), which removes that rounding.")


PROBLEMS = [
    ZipMapToMatrix,
    ConvertDigitsPipeline,
    ClassificationParity,
    ConvertMixedPipeline,
    Float32Discrepancy,
    DoublePrecisionExport,
    EvaluateTinyTrees,
    WhenToKeepZipMap,
    FixTimestampPrecision,
    ThresholdSemantics,
]
bind = make_binder(LAB, PROBLEMS)
