"""A learner who solved every lab sees every item of the self-assessment checklist ticked.

This test plays that learner. For every lab of the course (each ``labsupport/exercises/labNN.py``,
in order) it builds what the lab's notebook has in scope before its exercises — the same objects,
made the same way, through labsupport: a trained model, an exported file, a session — then runs
each checked problem's declared solution there (the code ``qN.solution()`` shows, exactly as
``labsupport.testing.solution_answer`` runs it) and calls the problem's ``check()`` in strict mode,
which records the pass in a scratch progress file (``LABSUPPORT_DATA_DIR`` points at a temporary
folder, and the lab artifacts go to a temporary working folder). Then every item of
``labsupport.progress.CHECKLIST`` must be ticked.

A solution is run in its lab's namespace, one exercise after the other, so a later exercise sees
what an earlier one made, as in the notebook. Where a lab's notebook makes an object between two
exercises, ``_BEFORE`` makes it. A few checks are given the problem's own reference answer instead
of its solution, because the solution needs an artifact that costs seconds to make and the
reference is what the check compares with anyway (``_OWN_REFERENCE`` names them and says why).

A new checked exercise needs nothing here unless its solution uses a name its lab's context lacks;
the failure then names the problem and the missing name. With ``CI=true`` a missing prerequisite
(the C++ toolchain of lab 13) fails the test; elsewhere the test checks everything else and then
skips, naming what is missing.
"""

from __future__ import annotations

import importlib
import math
import os
import re
import shutil
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from labsupport import artifacts_dir, progress
from labsupport.checking import IncorrectAnswerError, ProblemView, ThoughtExperiment
from labsupport.exercises import LAB_MODULES

pytestmark = [
    pytest.mark.filterwarnings("ignore:You are using the legacy TorchScript-based ONNX export:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:The feature will be removed:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
    pytest.mark.filterwarnings("ignore::FutureWarning"),
    pytest.mark.filterwarnings("ignore::UserWarning"),
]


class MissingPrerequisite(Exception):
    """Something a lab needs is not installed here (outside CI the test skips at the end, naming it)."""


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


# ---------------------------------------------------------------------------
# What each lab's notebook has in scope before its exercises, made the way the notebook makes it
# ---------------------------------------------------------------------------

def _lab00(done: dict) -> dict:
    return {"os": os}


def _lab01(done: dict) -> dict:
    import torch

    from labsupport.models import load_digits_split, quiet_exporter_logs, train_digits_mlp

    quiet_exporter_logs()
    data = load_digits_split()
    return {"torch": torch, "artifacts": artifacts_dir("01"), "data": data, "mlp": train_digits_mlp(data),
            "example": torch.from_numpy(data.x_test[:2])}


def _lab02(done: dict) -> dict:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from labsupport.exercises import lab02

    return {"onnx": onnx, "TensorProto": TensorProto, "helper": helper, "numpy_helper": numpy_helper, "lab02": lab02,
            "lab02_dir": artifacts_dir("02"), "mlp": onnx.load(done["01_interoperability"]["onnx_path"]),
            "wide_model": lab02.build_wide_model()}


def _lab03(done: dict) -> dict:
    import onnx
    from onnx import helper, numpy_helper, version_converter

    from labsupport.exercises import lab03

    return {"onnx": onnx, "helper": helper, "numpy_helper": numpy_helper, "version_converter": version_converter,
            "lab03": lab03, "legacy_model": lab03.legacy_model()}


def _lab04(done: dict) -> dict:
    import torch
    from onnxscript import opset20 as op

    from labsupport.exercises import lab04
    from tests.test_exercises_lab04 import ClippedDigits  # registers workbook::smooth_clip once per process

    cnn = lab04.reference_digits()[1]
    example = torch.from_numpy(lab04.digits_test_images(3))
    return {"Counter": Counter, "torch": torch, "op": op, "artifacts": artifacts_dir("04"), "cnn": cnn,
            "example": example, "raw_example": example * 16, "sequence_model": lab04.reference_sequence_model(),
            "clipped_cnn": ClippedDigits(cnn).eval()}


def _lab05(done: dict) -> dict:
    from labsupport.models import keras_models  # imports TensorFlow quietly, so it goes first

    return {"tf": importlib.import_module("tensorflow"), "tf2onnx": importlib.import_module("tf2onnx"),
            "artifacts": artifacts_dir("05"),
            "model": keras_models.train_digits_keras_cnn(),
            "sequential": keras_models.train_digits_keras_cnn(sequential=True)}


def _lab06(done: dict) -> dict:
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import DoubleTensorType, FloatTensorType, StringTensorType

    from labsupport.exercises import lab06
    from labsupport.models import classical_models, load_digits_split

    return {"convert_sklearn": convert_sklearn, "FloatTensorType": FloatTensorType,
            "StringTensorType": StringTensorType, "DoubleTensorType": DoubleTensorType, "lab06": lab06,
            "pipeline": classical_models.train_digits_pipeline(load_digits_split()),
            "mixed_model": classical_models.train_mixed_pipeline(classical_models.make_mixed_table()[0]),
            "timestamp_model": lab06.timestamp_pipeline()}


def _lab07(done: dict) -> dict:
    import torch

    from labsupport.exercises import lab04, lab07
    from labsupport.models import SEED, ExportedModel, keras_models, load_digits_split
    from labsupport.models.torch_models import make_sequence_data
    from labsupport.onnx_tools import cpu_session
    from labsupport.validate import convert_to_float16, validate_model

    data = load_digits_split()
    mlp_path = lab07.reference_mlp_path()
    token_classifier = lab04.reference_sequence_model()

    def eager_tokens(feeds):
        with torch.no_grad():
            return [token_classifier(torch.from_numpy(feeds["tokens"])).numpy()]

    # lab 04's export of the same trained token classifier, with eager PyTorch as its reference
    token_model = ExportedModel("token classifier (PyTorch, torch.export)", done["04_pytorch_export"]["sequence_path"],
                                {"tokens": make_sequence_data(count=64, seed=SEED + 1)[0]}, eager_tokens, ("logits",),
                                {"tokens": (0, 1)})
    return {"validate_model": validate_model, "data": data, "session": cpu_session(mlp_path),
            "half_session": cpu_session(convert_to_float16(mlp_path)), "token_model": token_model,
            "broken_feeds": {"pixel": data.x_test.reshape(-1, 8, 8).astype(np.float64)},
            "keras_model": keras_models.exported_digits_keras(artifacts_dir("07") / "digits_keras.onnx")}


def _lab08(done: dict) -> dict:
    import onnxruntime as ort

    return {"ort": ort, "re": re}


def _lab09(done: dict) -> dict:
    import onnx
    import onnxruntime as ort
    from onnx import helper, numpy_helper
    from onnxruntime.transformers.fusion_options import FusionOptions
    from onnxruntime.transformers.optimizer import optimize_model

    from labsupport.models import bn_cnn

    artifacts = artifacts_dir("09")
    encoder = bn_cnn.build_encoder_layer()
    return {"Counter": Counter, "Path": Path, "onnx": onnx, "ort": ort, "helper": helper, "numpy_helper": numpy_helper,
            "FusionOptions": FusionOptions, "optimize_model": optimize_model, "artifacts": artifacts,
            "torchscript_encoder_path": bn_cnn.export_encoder_layer(artifacts / "encoder_torchscript.onnx", encoder,
                                                                    dynamo=False),
            "dynamo_encoder": onnx.load(bn_cnn.export_encoder_layer(artifacts / "encoder_dynamo.onnx", encoder,
                                                                    dynamo=True))}


def _digits_gemm(path: Path) -> Path:
    """A float32 digits classifier (one Gemm fitted by least squares): pixels [batch, 64] → logits [batch, 10]."""
    from tests.test_exercises_lab10 import _least_squares_model

    return Path(_least_squares_model(path))


def _lab10(done: dict) -> dict:
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, quantize_static

    from labsupport.exercises import lab10
    from labsupport.models import load_digits_split
    from labsupport.quantize import DigitsCalibrationReader, accuracy

    data = load_digits_split()
    artifacts_dir("10")
    fp32_path = _digits_gemm(lab10.lab_artifact(lab10.FP32_FILE))
    static_path = lab10.lab_artifact(lab10.STATIC_FILE)
    quantize_static(fp32_path, static_path, DigitsCalibrationReader(data.x_train[:256]), quant_format=QuantFormat.QDQ)
    return {"CalibrationDataReader": CalibrationDataReader, "accuracy": accuracy, "data": data,
            "fp32_path": fp32_path, "static_path": static_path}


def _lab11(done: dict) -> dict:
    return {}


def _lab12(done: dict) -> dict:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from labsupport.exercises import lab12
    from labsupport.interop import import_openvino

    ov = import_openvino()
    import openvino.properties.hint as hints

    return {"onnx": onnx, "TensorProto": TensorProto, "helper": helper, "numpy_helper": numpy_helper, "lab12": lab12,
            "ov": ov, "hints": hints}


def _lab13(done: dict) -> dict:
    from labsupport import native

    try:
        return {"toolchain": native.find_toolchain()}
    except native.NativeToolchainError as error:
        if _in_ci():
            raise
        raise MissingPrerequisite(str(error)) from None


def _lab14(done: dict) -> dict:
    return {}


def _lab15(done: dict) -> dict:
    import onnx
    from onnxruntime.quantization import QuantFormat, quantize_static

    from labsupport.capstone import ModelFile, measure_models
    from labsupport.exercises import lab15
    from labsupport.models import load_digits_split
    from labsupport.optimize import optimize_at_level
    from labsupport.quantize import DigitsCalibrationReader, strip_exporter_metadata

    data = load_digits_split()
    artifacts_dir("15")
    # lab 04's export of the trained CNN plays the PyTorch export; the capstone strips, quantizes and optimizes it
    exported = Path(shutil.copy(done["04_pytorch_export"]["legacy_path"], lab15.lab_artifact(lab15.EXPORTED_FILE)))
    stripped = onnx.load(exported)
    strip_exporter_metadata(stripped)
    onnx.save(stripped, lab15.lab_artifact(lab15.FLOAT_FILE))
    raw = lab15.lab_artifact("pytorch_int8_static_raw.onnx")
    quantize_static(lab15.lab_artifact(lab15.FLOAT_FILE), raw,
                    DigitsCalibrationReader(data.x_train[:256].reshape(-1, 1, 8, 8)), quant_format=QuantFormat.QDQ)
    optimize_at_level(raw, "ORT_ENABLE_EXTENDED", lab15.lab_artifact(lab15.STATIC_FILE))
    models = [ModelFile("PyTorch", "fp32", lab15.lab_artifact(lab15.FLOAT_FILE)),
              ModelFile("PyTorch", "int8 static", lab15.lab_artifact(lab15.STATIC_FILE))]
    return {"math": math, "data": data, "table": measure_models(models, data.x_test, data.y_test, min_seconds=0.01)}


CONTEXTS: dict[str, Callable[[dict], dict]] = {
    "00_setup": _lab00, "01_interoperability": _lab01, "02_format_internals": _lab02,
    "03_opsets_and_validation": _lab03, "04_pytorch_export": _lab04, "05_tensorflow_export": _lab05,
    "06_classical_ml_export": _lab06, "07_validation_and_parity": _lab07, "08_runtime_and_providers": _lab08,
    "09_graph_optimization": _lab09, "10_quantization": _lab10, "11_benchmarking_and_profiling": _lab11,
    "12_interop_challenges": _lab12, "13_native_deployment": _lab13, "14_serving": _lab14, "15_capstone": _lab15,
}
"""Each lab (its ``LAB`` name) → what its notebook has in scope before the first exercise."""


def _session_on_the_export(namespace: dict) -> None:
    from labsupport.onnx_tools import cpu_session

    namespace["session"] = cpu_session(namespace["onnx_path"])


_BEFORE: dict[str, Callable[[dict], None]] = {
    "01_interoperability.RoundTripParity": _session_on_the_export,
}
"""Problem id → what the notebook makes between the previous exercise and this one."""


def _folded_by_the_optimizer(namespace: dict) -> dict:
    from labsupport.exercises import lab04

    return {"removed_ops": Counter(lab04.FOLDED_BY_OPTIMIZER)}


_OWN_REFERENCE: dict[str, Callable[[dict], dict]] = {
    # The solution subtracts two torch.export exports of the CNN (optimize off and on: seconds each); the
    # check compares with the operators lab 04 measured the optimizer folding, which is this answer.
    "04_pytorch_export.RemovedByFolding": _folded_by_the_optimizer,
}
"""Problem id → the answers to check instead of running the solution, and why (above each entry)."""


def _checked_problems(module) -> list:
    return [view for view in module.bind({}) if not isinstance(view.problem, ThoughtExperiment)]


def _solve(problem, namespace: dict) -> dict:
    """Run ``problem``'s declared solution in ``namespace`` (as ``solution_answer`` does); return its variables."""
    try:
        exec(compile(problem.solution, f"<{type(problem).__name__}.solution>", "exec"), namespace)
    except NameError as error:
        raise AssertionError(f"its solution uses {error.name!r}, which the lab's context does not have: add it to "
                             f"the lab's function in {Path(__file__).name} (CONTEXTS or _BEFORE)") from None
    return {name: namespace[name] for name in problem.vars}


# ---------------------------------------------------------------------------
# The learner who solved every lab
# ---------------------------------------------------------------------------

def test_every_lab_has_a_context_here():
    labs = [importlib.import_module(f"labsupport.exercises.{name}").LAB for name in LAB_MODULES]
    assert [lab for lab in labs if lab not in CONTEXTS] == [], f"add a context for these labs to {Path(__file__).name}"
    assert [lab for lab in CONTEXTS if lab not in labs] == [], "CONTEXTS names a lab that does not exist"


def test_every_checklist_item_is_ticked_when_every_labs_reference_answers_pass(tmp_path, monkeypatch):
    monkeypatch.setenv("LABSUPPORT_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("LABSUPPORT_STRICT", "1")
    monkeypatch.setenv("LABSUPPORT_EXPECT_SOLVED", "1")
    monkeypatch.chdir(tmp_path)  # artifacts_dir("NN"), and the checks that read a lab's files, use this folder
    progress.reset_progress()
    done: dict[str, dict] = {}
    failures, missing, expected = [], {}, set()
    for module in (importlib.import_module(f"labsupport.exercises.{name}") for name in LAB_MODULES):
        try:
            namespace = {"np": np, **CONTEXTS[module.LAB](done)}
        except MissingPrerequisite as error:
            missing[module.LAB] = str(error)
            continue
        done[module.LAB] = namespace
        for view in _checked_problems(module):
            expected.add(view.problem_id)
            try:
                _BEFORE.get(view.problem_id, lambda namespace: None)(namespace)
                answers = (_OWN_REFERENCE[view.problem_id](namespace) if view.problem_id in _OWN_REFERENCE
                           else _solve(view.problem, namespace))
                ProblemView(view.problem, view.name, module.LAB, answers).check()
            except (AssertionError, IncorrectAnswerError) as error:
                failures.append(f"{view.problem_id}: {error}")
    assert not failures, "reference answers that did not pass:\n" + "\n".join(failures)
    passed = progress.load_progress()["passed"]
    assert set(passed) == expected, "every check that ran is recorded as passed, and nothing else"
    unticked = {status.item.text: [problem for problem in status.missing if problem.split(".")[0] not in missing]
                for status in progress.checklist_status(passed) if not status.ticked}
    assert {text: problems for text, problems in unticked.items() if problems or not missing} == {}, (
        "checklist items left unticked by every lab's reference answers (item → its evidence that did not pass)")
    if missing:
        pytest.skip("every other check passed and ticked its items; not run here: "
                    + "; ".join(f"{lab} ({reason})" for lab, reason in missing.items()))
