"""Lab 06 — classical ML export: scikit-learn, XGBoost and LightGBM to ONNX.

The exercises turn ZipMap's output back into a matrix, convert the digits pipeline with
the right options, measure label and probability parity, convert a ColumnTransformer with
one input per column group, write a function measuring what float32 does to float64 data
and fix it with a double-precision graph, and evaluate a tiny tree ensemble by hand. The
reference helpers (timestamps data, the float32 gap, the tiny hand-built
TreeEnsembleRegressor, parity) are what the notebook and the checks share, so both always
agree on the numbers.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from labsupport.checking import (
    FunctionProblem,
    Incorrect,
    ThoughtExperiment,
    assert_equal,
    make_binder,
)
from labsupport.onnx_problems import OnnxModelProblem
from labsupport.onnx_tools import cpu_session

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
    return cpu_session(model).run(None, dict(feeds))


def zipmap_to_matrix(rows) -> np.ndarray:
    """ZipMap's output (one {class: probability} dict per row) as a float32 [N, classes] array."""
    classes = sorted(rows[0])
    return np.array([[row[label] for label in classes] for row in rows], dtype=np.float32)


def classification_parity(onnx_labels, onnx_probabilities, reference_labels, reference_probabilities):
    """(label agreement in percent, largest absolute probability difference), as Python floats."""
    agreement = 100.0 * float(np.mean(np.asarray(onnx_labels) == np.asarray(reference_labels)))
    difference = np.abs(np.asarray(onnx_probabilities, dtype=np.float64)
                        - np.asarray(reference_probabilities, dtype=np.float64))
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


def float32_gap(onnx_model, reference_model, features) -> tuple[int, float]:
    """(rows whose ONNX label differs from the reference model's, largest |probability difference|).

    The ONNX model (input ``input``) gets ``features`` cast to float32, as its consumers must
    feed it; the reference (scikit-learn) model gets them as they are.
    """
    labels, probabilities = run_onnx(onnx_model, {"input": np.asarray(features).astype(np.float32)})
    mismatches = int(np.sum(labels != reference_model.predict(features)))
    return mismatches, float(np.abs(probabilities - reference_model.predict_proba(features)).max())


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


def _explain_float32_reference(call: str, name: str, answer, expected: float, onnx_probabilities,
                               reference_probabilities, *, rtol: float, atol: float) -> None:
    """Say why a difference taken after rounding the float64 reference to float32 is not accepted."""
    if not isinstance(answer, (float, np.floating)) or np.isclose(answer, expected, rtol=rtol, atol=atol):
        return
    rounded = np.abs(np.asarray(onnx_probabilities, dtype=np.float64)
                     - np.asarray(reference_probabilities).astype(np.float32).astype(np.float64)).max()
    if np.isclose(answer, rounded, rtol=1e-6, atol=atol):
        raise Incorrect(f"{call}: `{name}` is off by {abs(float(answer) - expected):.1e}, the size of float32 "
                        "rounding: the reference probabilities were rounded to float32 before subtracting. "
                        "Differences this small are the quantity measured, so that rounding changes the answer; "
                        "subtract in float64 (cast the float32 side up, not the float64 side down).")


def _two_numbers(call: str, result, names: tuple[str, str]) -> tuple:
    """The pair a function must return, or Incorrect naming what it returned instead."""
    if not isinstance(result, (tuple, list)) or len(result) != 2:
        raise Incorrect(f"{call} should return two numbers, ({names[0]}, {names[1]}), "
                        f"but it returned a {type(result).__name__}.")
    return tuple(result)


# ---------------------------------------------------------------------------
# 1. ZipMap
# ---------------------------------------------------------------------------

class ZipMapToMatrix(FunctionProblem):
    prompt = "write zipmap_to_matrix(rows): ZipMap's list of {class: probability} dicts as a float32 [N, classes] array"
    vars = ("zipmap_to_matrix",)
    hints = ("Each row is a dict keyed by class label. The columns of the matrix are the classes in sorted order "
             "(scikit-learn's `classes_` is sorted), whatever order the dict happens to iterate in.",
             "Take the class order once, from the keys of the first row, sorted. Then build one list per row by "
             "looking each class up in that row's dict, and turn the list of lists into a float32 array.")
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

    def describe_call(self, args):
        rows = args[0]
        labels = "string" if isinstance(next(iter(rows[0])), str) else "integer"
        order = "" if all(list(row) == sorted(row) for row in rows) else ", keys out of order"
        return f"`{self.vars[0]}` on {len(rows)} rows × {len(rows[0])} classes ({labels} labels{order})"


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
    hints = ("`convert_sklearn` takes the fitted pipeline plus three keywords: `initial_types` (a list of "
             "(name, type) pairs), `options` and `target_opset`. `None` in a shape makes that dimension dynamic.",
             "`target_opset` accepts a dict with one cap per domain; the default domain is the empty string. "
             "The ZipMap switch is the option the section on ZipMap used.")
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
             "The worst difference can be an underestimate as well as an overestimate, so take absolute values "
             "before the maximum, and subtract in float64: the differences you measure here can be as small as "
             "float32's own rounding. Return plain Python floats.")
    solution = """def classification_parity(onnx_labels, onnx_probabilities, reference_labels, reference_probabilities):
    agreement = 100 * np.mean(np.asarray(onnx_labels) == np.asarray(reference_labels))
    max_diff = np.abs(np.asarray(onnx_probabilities, np.float64)
                      - np.asarray(reference_probabilities, np.float64)).max()
    return float(agreement), float(max_diff)"""
    rtol = 1e-6
    atol = 1e-12
    returns = ("agreement_percent", "max_abs_prob_diff")

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

    def describe_call(self, args):
        rows, classes = np.shape(args[1])
        return f"`{self.vars[0]}` on {rows} rows × {classes} classes"

    def check(self, fn):
        self.require_function(fn)
        for args, (agreement, max_diff) in self.cases():
            call = self.describe_call(args)
            answer = _two_numbers(call, self.call_answer(fn, args), self.returns)
            assert_equal(f"{call}: `{self.returns[0]}`", answer[0], agreement, rtol=self.rtol, atol=self.atol)
            _explain_float32_reference(call, self.returns[1], answer[1], max_diff, args[1], args[3],
                                       rtol=self.rtol, atol=self.atol)
            assert_equal(f"{call}: `{self.returns[1]}`", answer[1], max_diff, rtol=self.rtol, atol=self.atol)


# ---------------------------------------------------------------------------
# 3. A ColumnTransformer with numeric and categorical columns
# ---------------------------------------------------------------------------

class ConvertMixedPipeline(_ClassifierModelProblem):
    prompt = ("convert the customer-table pipeline with one input per column group: 'numeric' float [None, 3] "
              "and 'categorical' string [None, 2], no ZipMap")
    vars = ("mixed_onnx",)
    hints = ("`initial_types` takes one (name, type) pair per graph input, in the column order the "
             "ColumnTransformer counts in: the three numeric columns first, then the two categorical ones.",
             "Two pairs: a float tensor type for the numeric group and a string tensor type for the categorical "
             "group, each with a dynamic batch and the group's width. Switch ZipMap off as in exercise 2.")
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

@lru_cache(maxsize=1)
def _float32_gap_cases() -> tuple:
    """The (model, reference, features, description) the float32-gap check runs.

    The timestamps are the lab's case, but with two classes the probability columns mirror each
    other, so the largest signed difference equals the largest absolute one there. Two groups of
    test digits (ten classes) tell them apart: rows whose worst error is downward, then upward.
    """
    from labsupport.models import load_digits_split
    from labsupport.models.classical_models import convert_digits_pipeline

    _, x_test, _, _ = timestamp_split()
    digits = load_digits_split().x_test
    digits_onnx = convert_digits_pipeline(digits_pipeline())
    errors = run_onnx(digits_onnx, {"input": digits})[1] - digits_pipeline().predict_proba(digits)
    worst_error = errors[np.arange(len(errors)), np.abs(errors).argmax(axis=1)]
    return ((convert_timestamp_pipeline("float"), timestamp_pipeline(), x_test, "the timestamp test set"),
            (digits_onnx, digits_pipeline(), digits[worst_error < 0],
             "the test digits whose largest float32 error is downward"),
            (digits_onnx, digits_pipeline(), digits[worst_error > 0],
             "the test digits whose largest float32 error is upward"))


class Float32Discrepancy(FunctionProblem):
    prompt = ("write float32_gap(onnx_model, reference_model, features) returning (label_mismatches, "
              "max_probability_diff) between a float32 ONNX classifier and its scikit-learn model")
    vars = ("float32_gap",)
    hints = ("Each side gets the features in its own type: the ONNX model only accepts the float32 its input "
             "declares (`run_onnx` runs it), scikit-learn takes the float64 features it was trained on. Compare "
             "with the reference model's predictions, not with the true labels.",
             "A boolean array sums to a count. Float32 errs in both directions, so the worst probability error may "
             "be an underestimate: take absolute values before the maximum.")
    solution = """def float32_gap(onnx_model, reference_model, features):
    onnx_labels, onnx_probabilities = lab06.run_onnx(onnx_model, {"input": features.astype(np.float32)})
    label_mismatches = int(np.sum(onnx_labels != reference_model.predict(features)))
    max_probability_diff = float(np.abs(onnx_probabilities - reference_model.predict_proba(features)).max())
    return label_mismatches, max_probability_diff"""
    rtol = 1e-5
    returns = ("label_mismatches", "max_probability_diff")

    def cases(self):
        return [((model, reference, features), float32_gap(model, reference, features))
                for model, reference, features, _ in _float32_gap_cases()]

    def describe_call(self, args):
        features = args[2]
        description = next((text for _, _, rows, text in _float32_gap_cases() if rows is features), "the features")
        return f"`{self.vars[0]}` on {description} ({len(features)} rows)"

    def check(self, fn):
        self.require_function(fn)
        for args, (mismatches, max_diff) in self.cases():
            call = self.describe_call(args)
            answer = _two_numbers(call, self.call_answer(fn, args), self.returns)
            assert_equal(f"{call}: `{self.returns[0]}`", answer[0], mismatches, rtol=0.0, atol=0.0)
            if isinstance(answer[1], (float, np.floating)) and not np.isclose(answer[1], max_diff, rtol=self.rtol):
                self._explain_signed_difference(call, answer[1], args)
            assert_equal(f"{call}: `{self.returns[1]}`", answer[1], max_diff, rtol=self.rtol, atol=0.0)

    def _explain_signed_difference(self, call, answer, args):
        """Name the slip when the answer is the largest signed difference, in either order."""
        model, reference, features = args
        errors = run_onnx(model, {"input": features.astype(np.float32)})[1] - reference.predict_proba(features)
        if any(np.isclose(answer, signed, rtol=self.rtol) for signed in (errors.max(), (-errors).max())):
            raise Incorrect(f"{call}: `{self.returns[1]}` is the largest *signed* difference, but float32 errs in "
                            "both directions here. Take absolute values before the maximum. (With two classes the "
                            "columns mirror each other, so the timestamps alone could not show this.)")


class DoublePrecisionExport(_ClassifierModelProblem):
    prompt = "convert the timestamp pipeline so that the graph computes in float64 and matches scikit-learn to 1e-9"
    vars = ("timestamps_double_onnx",)
    hints = ("The element type of the input you declare in `initial_types` decides the precision of the whole graph.",
             "Same call as the float32 conversion above, with the float64 counterpart of `FloatTensorType` from "
             "`skl2onnx.common.data_types`; keep the input name, the shape and the ZipMap option.")
    solution = """timestamps_double_onnx = convert_sklearn(timestamp_model,
                                         initial_types=[("input", DoubleTensorType([None, 3]))],
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
        "The export declared a float32 input (`FloatTensorType`, the usual choice), and float32 has 24 significant "
        "bits: near 1.75 × 10⁹ "
        "neighbouring values are 128 s apart, so casting the input to float32 moves each timestamp by up to a minute "
        "before any operator runs. The model's decision depends on differences of seconds to minutes, so customers "
        "near the decision boundary flip. The float32 Scaler then subtracts two huge, nearly equal numbers, which "
        "keeps the rounding error. Fixes: (1) convert with `DoubleTensorType`, so the whole graph runs in float64 "
        "and matches scikit-learn to ~1e-15 — the cost is that the ai.onnx.ml operators (Scaler, LinearClassifier) "
        "always output float32, so skl2onnx emits standard MatMul/Add/Sigmoid nodes instead, the model needs float64 "
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
             "`nodes_values` is a list of float32. In which precision does each library compute and store its "
             "thresholds, and in which does it compare the feature? Where the two differ, what does rounding a "
             "threshold up or down do to a value that sits exactly on it?")
    solution = (
        "A split is a comparison, and libraries disagree on the boundary: XGBoost sends x to the left child when "
        "x < t, LightGBM and scikit-learn when x <= t. A value exactly on a threshold (common with discrete "
        "features such as pixel intensities in steps of 1/16) would go the other way with the wrong mode, landing "
        "in another leaf region and changing the sum, so the converter writes the mode per node (BRANCH_LT, "
        "BRANCH_LEQ, …) and ONNX Runtime honours it. Precision is the other source. TreeEnsembleClassifier / "
        "Regressor keep thresholds (`nodes_values`) and leaf weights as float32 attributes, and the converters "
        "declare a float32 input. XGBoost loses nothing: it stores float32 thresholds and compares float32 "
        "features itself. scikit-learn compares float32 features with float64 thresholds, and skl2onnx moves each "
        "threshold to the float32 value that keeps every float32 decision. LightGBM keeps float64 thresholds and "
        "compares in float64, and onnxmltools rounds each threshold to the *nearest* float32 with no such "
        "adjustment: a threshold rounded up sends a float32 input equal to the rounded value left in ONNX and right "
        "in LightGBM, a known source of LightGBM→ONNX mismatches on continuous features. On the lab's digits model "
        "most thresholds change, but all of them round down, by about 1e-16, and no pixel value lies in between, "
        "so parity holds there. Finally, features prepared in float64 are rounded when cast to float32 at the "
        "door, and a value just above a threshold can land on it. Remedies: measure parity on realistic data "
        "(values near and on thresholds included); for float64 features, a double-precision tree ensemble "
        "(ai.onnx.ml opset 3's `nodes_values_as_tensor` with a double input, or the opset-5 TreeEnsemble whose "
        "`nodes_splits` tensor takes the input's type; ONNX Runtime 1.32 runs both) removes the rounding.")


PROBLEMS = {
    "q1": ZipMapToMatrix,
    "q2": ConvertDigitsPipeline,
    "q3": ClassificationParity,
    "q4": ConvertMixedPipeline,
    "q5": Float32Discrepancy,
    "q6": DoublePrecisionExport,
    "q7": EvaluateTinyTrees,
    "q8": WhenToKeepZipMap,
    "q9": FixTimestampPrecision,
    "q10": ThresholdSemantics,
}
bind = make_binder(LAB, PROBLEMS)
