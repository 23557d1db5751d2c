"""Classical-ML reference models (lab 06): scikit-learn, XGBoost and LightGBM, exported to ONNX.

Introduced in lab 06. Every builder is seeded and trains in well under a second on the
digits (or on a small synthetic table), so later cells and lab 07's validation harness can
rebuild a model instead of depending on a learner's answer.

Converters and the gotchas this stack (skl2onnx 1.20, onnxmltools 1.16, xgboost 3.2,
lightgbm 4.7) taught us, each handled here and explained in lab 06:

* scikit-learn classifiers convert with a ``ZipMap`` at the end by default, whose
  probabilities output is a *list of dicts* ``seq(map(int64, tensor(float)))``;
  ``options={"zipmap": False}`` keeps a plain ``[N, classes]`` float tensor.
* onnxmltools refuses ``target_opset`` above 15 (``DEFAULT_OPSET_NUMBER``) even though the
  installed onnx knows opset 28; leave it unset or pass 15 or less.
* onnxmltools' LightGBM converter declares the ``label`` output with a fixed shape ``[1]``,
  so ONNX Runtime warns ``Expected shape from model of {1} does not match actual shape``
  on every batch; :func:`convert_lightgbm_classifier` makes that dimension symbolic.
* LightGBM keeps its split thresholds in float64 and compares float64 feature values;
  the converter rounds each threshold to the nearest float32 (``nodes_values`` is a float
  list), so a threshold rounded *up* sends a float32 input equal to it down the other
  branch. :func:`lightgbm_split_thresholds` lists the thresholds LightGBM really uses.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from labsupport.models import SEED, DigitsSplit, ExportedModel, load_digits_split

__all__ = [
    "MIXED_CATEGORICAL",
    "MIXED_NUMERIC",
    "MixedTable",
    "build_mixed_pipeline",
    "convert_digits_pipeline",
    "convert_lightgbm_classifier",
    "convert_mixed_pipeline",
    "convert_xgboost_classifier",
    "exported_digits_lightgbm",
    "exported_digits_pipeline",
    "exported_digits_xgboost",
    "exported_mixed_pipeline",
    "fix_symbolic_batch",
    "lightgbm_split_thresholds",
    "make_mixed_table",
    "mixed_columns",
    "save_model",
    "single_threaded",
    "train_digits_lightgbm",
    "train_digits_pipeline",
    "train_digits_xgboost",
    "train_mixed_pipeline",
]

SAMPLE_ROWS = 64

MIXED_NUMERIC = ("tenure_months", "monthly_fee", "support_calls")
MIXED_CATEGORICAL = ("plan", "region")
_PLANS = ("basic", "standard", "premium")
_REGIONS = ("north", "south", "east", "west")


def single_threaded():
    """A context that limits BLAS and OpenMP to one thread while a small model is fitted.

    On a busy two-core machine, OpenBLAS's two threads spin waiting for each other: fitting
    the digits logistic regression then takes seconds instead of about 0.1 s. The models
    here are far too small to gain anything from threads.
    """
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1)


# ---------------------------------------------------------------------------
# scikit-learn on the digits
# ---------------------------------------------------------------------------

def train_digits_pipeline(data: DigitsSplit | None = None):
    """``StandardScaler`` → ``LogisticRegression`` fitted on the digits (deterministic, < 1 s)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    data = data or load_digits_split()
    pipeline = Pipeline([("scale", StandardScaler()),
                         ("classify", LogisticRegression(C=0.1, max_iter=500))])
    with single_threaded():
        return pipeline.fit(data.x_train, data.y_train)


def convert_digits_pipeline(pipeline=None, *, zipmap: bool = False, target_opset=None):
    """The digits pipeline as an ONNX ``ModelProto``: input ``input`` float [N, 64].

    Outputs ``label`` (int64 [N]) and ``probabilities``: a float tensor [N, 10] when
    ``zipmap`` is False, a sequence of {class: probability} maps when True.
    """
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType

    pipeline = pipeline if pipeline is not None else train_digits_pipeline()
    return convert_sklearn(pipeline, initial_types=[("input", FloatTensorType([None, 64]))],
                           options={"zipmap": zipmap}, target_opset=target_opset)


# ---------------------------------------------------------------------------
# XGBoost and LightGBM on the digits
# ---------------------------------------------------------------------------

def train_digits_xgboost(data: DigitsSplit | None = None, *, n_estimators: int = 25, max_depth: int = 3):
    """A small XGBoost classifier on the digits (25 rounds × 10 classes of depth-3 trees)."""
    import xgboost

    data = data or load_digits_split()
    model = xgboost.XGBClassifier(n_estimators=n_estimators, max_depth=max_depth, learning_rate=0.3,
                                  random_state=SEED, n_jobs=1, tree_method="hist")
    return model.fit(data.x_train, data.y_train)


def train_digits_lightgbm(data: DigitsSplit | None = None, *, n_estimators: int = 25, max_depth: int = 3):
    """A small LightGBM classifier on the digits (25 rounds × 10 classes, at most 8 leaves)."""
    import lightgbm

    data = data or load_digits_split()
    model = lightgbm.LGBMClassifier(n_estimators=n_estimators, max_depth=max_depth, num_leaves=2 ** max_depth,
                                    learning_rate=0.2, random_state=SEED, n_jobs=1, verbose=-1)
    return model.fit(data.x_train, data.y_train)


def convert_xgboost_classifier(model, n_features: int = 64, *, target_opset: int | None = None):
    """An XGBoost classifier through onnxmltools; input ``input`` float [N, n_features].

    The converter has no ZipMap: outputs are ``label`` (int64) and ``probabilities``
    (float [N, classes]). ``target_opset`` above 15 raises in onnxmltools 1.16.
    """
    import onnxmltools
    from onnxmltools.convert.common.data_types import FloatTensorType

    return onnxmltools.convert_xgboost(model, initial_types=[("input", FloatTensorType([None, n_features]))],
                                       target_opset=target_opset)


def convert_lightgbm_classifier(model, n_features: int = 64, *, zipmap: bool = False,
                                target_opset: int | None = None):
    """A LightGBM classifier through onnxmltools, with its ``label`` output shape repaired.

    The converter declares ``label`` as shape ``[1]`` whatever the batch; ONNX Runtime then
    warns on every run. :func:`fix_symbolic_batch` makes that dimension symbolic.
    """
    import onnxmltools
    from onnxmltools.convert.common.data_types import FloatTensorType

    onnx_model = onnxmltools.convert_lightgbm(model, initial_types=[("input", FloatTensorType([None, n_features]))],
                                              zipmap=zipmap, target_opset=target_opset)
    return fix_symbolic_batch(onnx_model, "label")


def lightgbm_split_thresholds(model) -> list[tuple[int, float]]:
    """Every split of a fitted LightGBM model as (feature index, threshold), tree by tree.

    The thresholds are Python floats, i.e. float64, exactly as LightGBM stores and compares
    them; onnxmltools writes each one rounded to float32 into ``nodes_values`` (lab 06).
    """
    splits = []

    def walk(node):
        if "split_index" in node:
            splits.append((int(node["split_feature"]), float(node["threshold"])))
            walk(node["left_child"])
            walk(node["right_child"])

    for tree in model.booster_.dump_model()["tree_info"]:
        walk(tree["tree_structure"])
    return splits


def fix_symbolic_batch(onnx_model, output_name: str, dim_param: str = "N"):
    """Make the first dimension of the named graph output symbolic (in place); returns the model."""
    for output in onnx_model.graph.output:
        if output.name == output_name and output.type.HasField("tensor_type"):
            output.type.tensor_type.shape.dim[0].dim_param = dim_param
    return onnx_model


# ---------------------------------------------------------------------------
# A small mixed table: numeric and categorical columns through a ColumnTransformer
# ---------------------------------------------------------------------------

class MixedTable:
    """A seeded synthetic customer table: 3 numeric columns, 2 string columns, a 0/1 label.

    ``numeric`` is float32 [N, 3] (:data:`MIXED_NUMERIC`), ``categorical`` holds strings
    [N, 2] (:data:`MIXED_CATEGORICAL`), ``labels`` int64 [N] (1 = the customer left).
    ``as_frame_array`` joins both into the object array scikit-learn is fitted on.
    """

    def __init__(self, numeric: np.ndarray, categorical: np.ndarray, labels: np.ndarray):
        self.numeric, self.categorical, self.labels = numeric, categorical, labels

    def __len__(self) -> int:
        return len(self.labels)

    def rows(self, selection) -> MixedTable:
        return MixedTable(self.numeric[selection], self.categorical[selection], self.labels[selection])

    def as_frame_array(self) -> np.ndarray:
        return mixed_columns(self.numeric, self.categorical)

    def feeds(self) -> dict[str, np.ndarray]:
        """ONNX feeds for the two-input model (one input per column group)."""
        return {"numeric": self.numeric, "categorical": self.categorical}


def mixed_columns(numeric: np.ndarray, categorical: np.ndarray) -> np.ndarray:
    """Numeric and string column groups side by side in one object array (scikit-learn's input)."""
    return np.concatenate([numeric.astype(object), categorical.astype(object)], axis=1)


def make_mixed_table(rows: int = 800, seed: int = SEED) -> tuple[MixedTable, MixedTable]:
    """The synthetic table, split 75 / 25 into (train, test)."""
    rng = np.random.default_rng(seed)
    tenure = rng.uniform(1, 72, rows).round()
    fee = rng.normal(55, 18, rows).clip(10, 120).round(2)
    calls = rng.poisson(2.0, rows).astype(float)
    plan = rng.choice(_PLANS, rows, p=[0.5, 0.3, 0.2])
    region = rng.choice(_REGIONS, rows)
    plan_effect = np.select([plan == "basic", plan == "premium"], [0.6, -0.8], 0.0)
    region_effect = np.where(region == "south", 0.5, 0.0)
    logit = -0.5 - 0.05 * (tenure - 36) + 0.03 * (fee - 55) + 0.45 * (calls - 2) + plan_effect + region_effect
    labels = (rng.uniform(size=rows) < 1 / (1 + np.exp(-logit))).astype(np.int64)
    numeric = np.stack([tenure, fee, calls], axis=1).astype(np.float32)
    categorical = np.stack([plan, region], axis=1).astype(str)
    table = MixedTable(numeric, categorical, labels)
    split = int(rows * 0.75)
    return table.rows(slice(0, split)), table.rows(slice(split, None))


def build_mixed_pipeline():
    """ColumnTransformer(StandardScaler on columns 0–2, OneHotEncoder on 3–4) → LogisticRegression."""
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    numeric_columns = list(range(len(MIXED_NUMERIC)))
    categorical_columns = list(range(len(MIXED_NUMERIC), len(MIXED_NUMERIC) + len(MIXED_CATEGORICAL)))
    preprocess = ColumnTransformer([("scale", StandardScaler(), numeric_columns),
                                    ("one_hot", OneHotEncoder(handle_unknown="ignore"), categorical_columns)])
    return Pipeline([("preprocess", preprocess), ("classify", LogisticRegression(max_iter=500))])


def train_mixed_pipeline(train: MixedTable | None = None):
    """:func:`build_mixed_pipeline` fitted on the training part of :func:`make_mixed_table`."""
    train = train if train is not None else make_mixed_table()[0]
    with single_threaded():
        return build_mixed_pipeline().fit(train.as_frame_array(), train.labels)


def convert_mixed_pipeline(pipeline=None, *, zipmap: bool = False, target_opset=None):
    """The mixed pipeline with one ONNX input per column group.

    ``numeric`` float [N, 3] and ``categorical`` string [N, 2]. The ColumnTransformer
    selects columns by position; skl2onnx numbers the columns of the inputs in order, so
    positions 0–2 fall in ``numeric`` and 3–4 in ``categorical``.
    """
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType, StringTensorType

    pipeline = pipeline if pipeline is not None else train_mixed_pipeline()
    initial_types = [("numeric", FloatTensorType([None, len(MIXED_NUMERIC)])),
                     ("categorical", StringTensorType([None, len(MIXED_CATEGORICAL)]))]
    return convert_sklearn(pipeline, initial_types=initial_types, options={"zipmap": zipmap},
                           target_opset=target_opset)


# ---------------------------------------------------------------------------
# ExportedModel builders for lab 07's harness
# ---------------------------------------------------------------------------

def save_model(onnx_model, path: str | Path) -> Path:
    """Write an ONNX model to ``path`` (creating folders) and return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(onnx_model.SerializeToString())
    return path


def _classifier_reference(model, to_features=None):
    """framework_outputs for a classifier fed through ONNX input ``input``: [labels, probabilities]."""

    def framework_outputs(feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        features = feeds["input"] if to_features is None else to_features(feeds)
        return [np.asarray(model.predict(features)).astype(np.int64),
                np.asarray(model.predict_proba(features)).astype(np.float32)]

    return framework_outputs


def exported_digits_pipeline(path: str | Path) -> ExportedModel:
    """scikit-learn StandardScaler → LogisticRegression (skl2onnx, no ZipMap), vs scikit-learn."""
    data = load_digits_split()
    pipeline = train_digits_pipeline(data)
    path = save_model(convert_digits_pipeline(pipeline), path)
    return ExportedModel("digits scaler + logistic regression (scikit-learn)", path,
                         {"input": data.x_test[:SAMPLE_ROWS]}, _classifier_reference(pipeline),
                         ("label", "probabilities"), {"input": (0,)})


def exported_digits_xgboost(path: str | Path) -> ExportedModel:
    """XGBoost (25 rounds, depth 3) through onnxmltools, vs XGBoost's own predict/predict_proba."""
    data = load_digits_split()
    model = train_digits_xgboost(data)
    path = save_model(convert_xgboost_classifier(model), path)
    return ExportedModel("digits gradient-boosted trees (XGBoost)", path, {"input": data.x_test[:SAMPLE_ROWS]},
                         _classifier_reference(model), ("label", "probabilities"), {"input": (0,)})


def exported_digits_lightgbm(path: str | Path) -> ExportedModel:
    """LightGBM (25 rounds, depth 3) through onnxmltools, vs LightGBM's own predict/predict_proba."""
    data = load_digits_split()
    model = train_digits_lightgbm(data)
    path = save_model(convert_lightgbm_classifier(model), path)
    return ExportedModel("digits gradient-boosted trees (LightGBM)", path, {"input": data.x_test[:SAMPLE_ROWS]},
                         _classifier_reference(model), ("label", "probabilities"), {"input": (0,)})


def exported_mixed_pipeline(path: str | Path) -> ExportedModel:
    """ColumnTransformer pipeline on the synthetic table: inputs ``numeric`` and ``categorical``."""
    train, test = make_mixed_table()
    pipeline = train_mixed_pipeline(train)
    path = save_model(convert_mixed_pipeline(pipeline), path)
    sample = test.rows(slice(0, SAMPLE_ROWS))
    reference = _classifier_reference(pipeline, lambda feeds: mixed_columns(feeds["numeric"], feeds["categorical"]))
    return ExportedModel("customer table: ColumnTransformer + logistic regression (scikit-learn)", path,
                         sample.feeds(), reference, ("label", "probabilities"),
                         {"numeric": (0,), "categorical": (0,)})
