"""``python -m labsupport convert``: each source format converted and validated, each refusal one line.

Most cases call ``labsupport.cli.main`` in this process, so that torch and TensorFlow are imported
once (TensorFlow alone takes about ten seconds); a few run the real command in a child process.
The models are untrained: parity with the source framework does not need accuracy.
"""

from __future__ import annotations

import pickle
import re
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from labsupport.cli import main

MLP_INPUT = "pixels:1x64:float32"


class _OpensAFile:
    """Unpickling this calls open(marker, "w"): the file appears only if the pickle is ever loaded."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return open, (str(self.marker), "w")


def convert(capsys, *arguments) -> tuple[int, str, str]:
    status = main(["convert", *map(str, arguments)])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def assert_one_line_error(result, text: str) -> None:
    """Exit 2, nothing on stdout, and one line on stderr starting ``error: {text}``."""
    status, out, err = result
    assert (status, out) == (2, ""), err
    assert err.count("\n") == 1 and err.startswith(f"error: {text}"), err


@pytest.fixture(scope="module")
def torch_sources(tmp_path_factory):
    import torch

    from labsupport.models import build_digits_mlp

    folder = tmp_path_factory.mktemp("torch_sources")
    module = build_digits_mlp()
    torch.save(module.state_dict(), folder / "weights.pt")
    torch.save(module, folder / "module.pt")
    with warnings.catch_warnings():  # torch 2.13 deprecates TorchScript: this file is what convert must refuse
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.save(torch.jit.trace(module, torch.zeros(1, 64)), folder / "scripted.pt")
    torch.export.save(torch.export.export(module, (torch.zeros(2, 64),)), folder / "fixed_program.pt2")
    torch.save(_OpensAFile(folder / "opened_by_torch"), folder / "trap.pt")
    return folder


@pytest.fixture(scope="module")
def keras_sources(tmp_path_factory):
    from labsupport.models.keras_models import keras

    folder = tmp_path_factory.mktemp("keras_sources")
    keras.utils.set_random_seed(0)
    inputs = keras.Input((64,), name="pixels")
    model = keras.Model(inputs, keras.layers.Dense(10, name="logits")(inputs))
    with warnings.catch_warnings():  # Keras 3.15's own weight saving calls np.array the way NumPy 2 deprecates
        warnings.simplefilter("ignore", DeprecationWarning)
        model.save(folder / "dense.keras")
    model.export(str(folder / "saved_model"), verbose=False)
    return folder


@pytest.fixture(scope="module")
def pickled_pipeline(tmp_path_factory):
    from labsupport.models.classical_models import train_digits_pipeline

    path = tmp_path_factory.mktemp("sklearn_sources") / "pipeline.pkl"
    path.write_bytes(pickle.dumps(train_digits_pipeline()))
    return path


def test_a_state_dict_with_its_architecture_converts_with_a_dynamic_batch_and_matches_torch(capsys, torch_sources,
                                                                                             tmp_path):
    status, out, err = convert(capsys, torch_sources / "weights.pt", "-o", tmp_path / "mlp.onnx", "--input", MLP_INPUT,
                               "--architecture", "labsupport.models:build_digits_mlp", "--output-name", "logits")
    assert status == 0, err
    assert err == ""
    assert out.startswith(f"Converted {torch_sources / 'weights.pt'} (PyTorch, a torch.save file) to "
                          f"{tmp_path / 'mlp.onnx'} with torch.onnx.export; axis 0 of every input is dynamic.\n")
    assert "  pixels           tensor(float)    [batch, 64]          dynamic: axis 0 (batch)" in out
    assert "  logits           tensor(float)    [batch, 10]" in out
    for batch in (1, 3, 16):
        assert re.search(rf"^batch {batch} +ok +{batch} ", out, re.MULTILINE)
    assert "vs the reference: 'logits' within atol 1e-05, rtol 0.0001" in out
    assert out.rstrip().endswith(f"{tmp_path / 'mlp.onnx'}: valid.")


def test_a_state_dict_without_its_architecture_is_refused(capsys, torch_sources, tmp_path):
    result = convert(capsys, torch_sources / "weights.pt", "-o", tmp_path / "x.onnx", "--input", MLP_INPUT)
    assert_one_line_error(result,
                          f"{torch_sources / 'weights.pt'}: holds only weights (a state_dict of 4 tensors); name the "
                          "code that builds the module: --architecture package.module:function.")
    assert not (tmp_path / "x.onnx").exists()


def test_a_pickled_module_needs_trust_and_then_converts(capsys, torch_sources, tmp_path):
    refused = convert(capsys, torch_sources / "module.pt", "-o", tmp_path / "x.onnx", "--input", MLP_INPUT)
    assert_one_line_error(refused, f"{torch_sources / 'module.pt'}: is a pickled PyTorch module (torch.save(model)); "
                                   "loading it needs torch.load(weights_only=False), and unpickling runs whatever "
                                   "code the file names (lab 01): pass --trust-pickle only if you trust")
    status, out, err = convert(capsys, torch_sources / "module.pt", "-o", tmp_path / "module.onnx", "--input",
                               MLP_INPUT, "--trust-pickle")
    assert status == 0, err
    assert out.rstrip().endswith("module.onnx: valid.")


def test_a_module_without_an_example_input_is_refused(capsys, torch_sources, tmp_path):
    assert_one_line_error(convert(capsys, torch_sources / "module.pt", "-o", tmp_path / "x.onnx", "--trust-pickle"),
                          "a PyTorch module needs an example input: --input NAME:DIMS:DTYPE")


def test_an_input_spec_that_does_not_fit_forward_is_a_one_line_export_failure(capsys, torch_sources, tmp_path):
    result = convert(capsys, torch_sources / "weights.pt", "-o", tmp_path / "x.onnx", "--input", "pixels:1x63:float32",
                     "--architecture", "labsupport.models:build_digits_mlp")
    assert_one_line_error(result, "torch.onnx.export failed: ")
    assert result[2].rstrip().endswith("check the --input spec against forward().")
    assert "\x1b[" not in result[2]
    assert not list(tmp_path.iterdir()), "a failed conversion leaves no file behind"


def test_pickles_are_never_loaded_without_trust(capsys, torch_sources, tmp_path):
    marker = tmp_path / "opened_by_pickle"
    (tmp_path / "trap.pkl").write_bytes(pickle.dumps(_OpensAFile(marker)))
    assert_one_line_error(convert(capsys, tmp_path / "trap.pkl", "-o", tmp_path / "x.onnx"),
                          f"{tmp_path / 'trap.pkl'}: is a Python pickle; unpickling runs whatever code the file names "
                          "(lab 01): pass --trust-pickle only if you trust where it came from.")
    assert not marker.exists()
    assert_one_line_error(convert(capsys, torch_sources / "trap.pt", "-o", tmp_path / "x.onnx", "--input", MLP_INPUT),
                          f"{torch_sources / 'trap.pt'}: is a pickled PyTorch module")
    assert not (torch_sources / "opened_by_torch").exists(), "torch.load(weights_only=True) must not run the file"


def test_torchscript_is_refused_and_an_exported_program_needs_trust_and_a_dynamic_batch(capsys, torch_sources,
                                                                                        tmp_path):
    assert_one_line_error(convert(capsys, torch_sources / "scripted.pt", "-o", tmp_path / "x.onnx"),
                          f"{torch_sources / 'scripted.pt'}: is a TorchScript archive (torch.jit.save); torch 2.13's "
                          "ONNX exporter traces with torch.export, which cannot trace a ScriptModule")
    program = torch_sources / "fixed_program.pt2"
    assert_one_line_error(convert(capsys, program, "-o", tmp_path / "x.onnx"),
                          f"{program}: is a torch.export program; torch.export.load uses pickle")
    assert_one_line_error(convert(capsys, program, "-o", tmp_path / "x.onnx", "--trust-pickle"),
                          "the program was exported with a fixed batch of 2 for 'input' and its graph is specialized "
                          "to it: export it again with dynamic_shapes=")


def test_a_pickled_scikit_learn_pipeline_converts_with_trust(capsys, pickled_pipeline, tmp_path):
    assert_one_line_error(convert(capsys, pickled_pipeline, "-o", tmp_path / "x.onnx"),
                          f"{pickled_pipeline}: is a Python pickle; unpickling runs whatever code")
    status, out, err = convert(capsys, pickled_pipeline, "-o", tmp_path / "pipeline.onnx", "--trust-pickle")
    assert status == 0, err
    assert "(scikit-learn, a pickle) to" in out
    assert "with skl2onnx; a Pipeline; axis 0 of every input is dynamic." in out
    assert "vs the reference: 'label' equal; 'probabilities' within atol 1e-05" in out


def test_a_keras_file_and_a_saved_model_convert_through_tf2onnx(capsys, keras_sources, tmp_path):
    status, out, err = convert(capsys, keras_sources / "dense.keras", "-o", tmp_path / "dense.onnx")
    assert status == 0, err
    assert "(Keras, a .keras file) to" in out and "with tf2onnx; axis 0 of every input is dynamic." in out
    assert "\ndynamic axes  ok" in out and "vs the reference: 'logits' within atol" in out
    status, out, err = convert(capsys, keras_sources / "saved_model", "-o", tmp_path / "saved.onnx", "--output-name",
                               "scores")
    assert status == 0, err
    assert "(TensorFlow, a SavedModel folder) to" in out and "; signature 'serving_default'; " in out
    assert "vs the reference: 'scores' within atol" in out


@pytest.mark.parametrize("make, fragment", [
    (None, "no such file or folder; check the path."),
    (lambda path: path.write_text("weights: 1, 2"), "unknown model format; convert reads a PyTorch file"),
    (lambda path: path.mkdir(), "is a folder without saved_model.pb"),
    (lambda path: path.write_bytes(b"\x89HDF\r\n\x1a\n"), "is an HDF5 file (a legacy Keras .h5 model)"),
])
def test_a_missing_or_unknown_source_is_refused_in_one_line(capsys, tmp_path, make, fragment):
    source = tmp_path / "model.bin"
    if make is not None:
        make(source)
    assert_one_line_error(convert(capsys, source, "-o", tmp_path / "x.onnx"), f"{source}: {fragment}")


def test_an_onnx_file_is_sent_to_check(capsys, tmp_path):
    from tests.test_validate import affine_model

    affine_model(tmp_path / "affine.onnx")
    assert_one_line_error(convert(capsys, tmp_path / "affine.onnx", "-o", tmp_path / "x.onnx"),
                          f"{tmp_path / 'affine.onnx'}: is already an ONNX model; validate it with "
                          "`python -m labsupport check")


@pytest.mark.parametrize("spec, fragment", [
    ("pixels:1x64", "expected NAME:DIMS:DTYPE, e.g. --input pixels:1x1x8x8:float32."),
    ("pixels:1x0:float32", "the dimensions '1x0' should be positive sizes joined by x"),
    ("pixels:1x64:float128", "the type 'float128' is not one of float32, float64"),
    ("9lives:1x64:float32", "the name '9lives' should be a word"),
])
def test_a_bad_input_spec_is_refused_before_anything_is_loaded(capsys, tmp_path, spec, fragment):
    assert_one_line_error(convert(capsys, tmp_path / "missing.pt", "-o", tmp_path / "x.onnx", "--input", spec),
                          f"--input '{spec}': {fragment}")


def test_a_conversion_that_fails_validation_exits_1_and_keeps_the_file(capsys, monkeypatch, tmp_path):
    from labsupport import convert as convert_module
    from labsupport.validate import CheckRow, ValidationResult
    from tests.test_validate import affine_model

    path = affine_model(tmp_path / "affine.onnx")
    rows = [CheckRow("checker", "ok", "fine"), CheckRow("batch 3", "fail", "'y': 9 of 9 values outside")]
    failing = ValidationResult("affine.onnx vs PyTorch", path, rows)

    def fake_convert(source, out, **options):
        return convert_module.ConversionResult("torch", "PyTorch", Path(source), path, failing, ("a note",))

    monkeypatch.setattr(convert_module, "convert_model", fake_convert)
    status, out, err = convert(capsys, "model.pt", "-o", path)
    assert status == 1
    assert re.search(r"^batch 3 +FAIL +'y': 9 of 9 values outside$", out, re.MULTILINE)
    assert not out.rstrip().endswith("valid.")
    assert err == (f"error: {path}: batch 3 failed; see the table above (the file was written so that you can inspect "
                   "it).\n")


def test_the_real_command_refuses_a_pickle_with_exit_2_and_one_line(pickled_pipeline, tmp_path):
    completed = subprocess.run([sys.executable, "-m", "labsupport", "convert", str(pickled_pipeline), "-o",
                                str(tmp_path / "x.onnx")], capture_output=True, text=True, timeout=120)
    assert (completed.returncode, completed.stdout) == (2, "")
    assert completed.stderr.count("\n") == 1 and "pass --trust-pickle only if you trust" in completed.stderr


def test_help_explains_the_sources_the_trust_and_the_exit_statuses():
    completed = subprocess.run([sys.executable, "-m", "labsupport", "convert", "--help"], capture_output=True,
                               text=True, timeout=60)
    assert completed.returncode == 0
    help_text = completed.stdout
    assert "--input NAME:DIMS:DTYPE" in help_text and "--trust-pickle" in help_text and "--architecture" in help_text
    assert "Why trust: unpickling runs whatever code the file names (lab 01)." in help_text
    assert "\n  0  converted, and the ONNX file passes every check" in help_text
    assert "\n  1  converted, but the file fails a check" in help_text
    assert "\n  2  nothing converted" in help_text


def test_example_inputs_are_seeded_and_typed():
    from labsupport.convert import parse_input_spec

    spec = parse_input_spec("tokens:3x7:int64")
    assert (spec.name, spec.dims, spec.dtype) == ("tokens", (3, 7), "int64")
    assert spec.example(5).shape == (5, 7) and spec.example().dtype == np.int64
    floats = parse_input_spec("pixels:2x64:float32")
    assert np.array_equal(floats.example(), floats.example()) and floats.example().dtype == np.float32
