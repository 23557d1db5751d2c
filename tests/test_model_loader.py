"""labsupport.model_loader: whatever a path holds, one line (ModelInputError), never a traceback."""

from __future__ import annotations

import errno
import os
import socket
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from labsupport import model_loader
from labsupport.model_loader import (
    DEFAULT_MAX_INPUT_BYTES,
    MAX_INPUT_BYTES_VARIABLE,
    ModelInputError,
    check_input_bytes,
    format_bytes,
    input_budget,
    load_model,
)
from labsupport.validate import ValidationInputError
from tests.test_validate import affine_model

posix_only = pytest.mark.skipif(os.name != "posix", reason="FIFOs, UNIX sockets and /dev/null are POSIX")


@pytest.fixture(scope="module")
def affine(tmp_path_factory):
    return affine_model(tmp_path_factory.mktemp("loader") / "affine.onnx")


def refusal(path) -> ModelInputError:
    with pytest.raises(ModelInputError) as caught:
        load_model(path)
    error = caught.value
    assert "\n" not in str(error) and error.__cause__ is None
    assert error.__context__ is None or error.__suppress_context__  # no library traceback chained to it
    return error


def test_a_valid_model_is_returned_without_its_external_data_by_default(tmp_path):
    path = affine_model(tmp_path / "external.onnx", save_as_external_data=True, location="external.onnx.data",
                        size_threshold=0)
    model = load_model(path)
    assert isinstance(model, onnx.ModelProto) and model.graph.name == "affine"
    assert model.graph.initializer[0].data_location == TensorProto.EXTERNAL
    loaded = load_model(path, external_data=True)
    assert numpy_helper.to_array(loaded.graph.initializer[0]).shape == (4, 3)


def test_validation_input_error_is_the_loader_error_and_a_value_error():
    assert ValidationInputError is ModelInputError and issubclass(ModelInputError, ValueError)


# The operating system refuses: one line each (tests run as root, so refusals are built or simulated)

def test_a_path_under_a_file_names_the_part_that_is_a_file(affine):
    error = refusal(affine / "model.onnx")
    assert error.reason == f"{affine} is a file, not a folder, so nothing is inside it; check the path."


def test_a_name_too_long_for_the_operating_system_says_to_shorten_it(tmp_path):
    error = refusal(tmp_path / ("m" * 300 + ".onnx"))
    assert "is longer than the operating system allows; shorten it." in error.reason


@posix_only
@pytest.mark.parametrize("kind, expected", [("fifo", "is a named pipe (FIFO), not a file"),
                                            ("socket", "is a socket, not a file"),
                                            ("device", "is a character device, not a file")])
def test_special_files_are_refused_without_opening_them(tmp_path, kind, expected):
    """Opening a FIFO would wait forever for a writer; the loader looks at the file type first."""
    if kind == "fifo":
        path = tmp_path / "model.onnx"
        os.mkfifo(path)
    elif kind == "socket":
        path = tmp_path / "model.onnx"
        server = socket.socket(socket.AF_UNIX)
        server.bind(str(path))
        server.close()
    else:
        path = Path(os.devnull)
    assert refusal(path).reason.startswith(expected)


def test_a_dangling_symbolic_link_names_its_target(tmp_path):
    (tmp_path / "model.onnx").symlink_to("exported/model.onnx")
    reason = refusal(tmp_path / "model.onnx").reason
    assert reason.startswith("is a symbolic link to exported/model.onnx, which does not exist")


def test_a_loop_of_symbolic_links_is_named(tmp_path):
    (tmp_path / "a.onnx").symlink_to("b.onnx")
    (tmp_path / "b.onnx").symlink_to("a.onnx")
    assert refusal(tmp_path / "a.onnx").reason.startswith("its symbolic links form a loop")


def test_a_missing_folder_is_named(tmp_path):
    assert refusal(tmp_path / "exports" / "model.onnx").reason.startswith(
        f"no such file: its folder {tmp_path / 'exports'} does not exist either")


def test_a_folder_is_not_a_model(tmp_path):
    assert refusal(tmp_path).reason == "is a folder; give the path of the .onnx file inside it."


def test_an_unreadable_file_says_to_check_the_permissions(tmp_path):
    """For real: root gives up the capabilities that override file permissions (see test_progress)."""
    from tests.test_progress import permissions_bind

    path = affine_model(tmp_path / "secret.onnx")
    path.chmod(0)
    code = ("import sys; from labsupport.model_loader import load_model, ModelInputError\n"
            "try: load_model(sys.argv[1])\nexcept ModelInputError as error: print(error.reason)")
    completed = subprocess.run([*permissions_bind(), sys.executable, "-c", code, str(path)], capture_output=True,
                               text=True, timeout=60)
    assert completed.stdout.startswith("permission denied: you may not read it or a folder on its path"), completed


def test_permission_denied_says_to_check_the_permissions(affine, monkeypatch):
    """The same refusal, simulated: the tests usually run as root, who may read any file."""
    def denied(self):
        raise PermissionError(errno.EACCES, "Permission denied", str(self))

    monkeypatch.setattr(Path, "read_bytes", denied)
    assert refusal(affine).reason.startswith("permission denied: you may not read it or a folder on its path")


def test_any_other_read_error_gives_the_system_message(affine, monkeypatch):
    def broken_disk(self):
        raise OSError(errno.EIO, os.strerror(errno.EIO), str(self))

    monkeypatch.setattr(Path, "read_bytes", broken_disk)
    assert refusal(affine).reason == f"cannot be read: {os.strerror(errno.EIO)}; check the path and the disk."


def test_a_nul_character_in_the_path_is_shown_where_it_is():
    message = "'model\\x00.onnx': the path contains a NUL character ('\\0'); check how it was built."
    assert str(refusal("model\0.onnx")) == message


def test_a_value_that_is_not_a_path_names_its_type():
    assert str(refusal(42)).endswith("but got a value of type int.")


def test_a_file_beyond_protobufs_limit_points_to_external_data(affine, monkeypatch):
    monkeypatch.setattr(model_loader, "_PROTOBUF_LIMIT", 100)
    assert "more than the 2 GiB protobuf can parse" in refusal(affine).reason


# The bytes are not a model

def test_an_empty_file_says_the_write_did_not_finish(tmp_path):
    (tmp_path / "empty.onnx").write_bytes(b"")
    assert refusal(tmp_path / "empty.onnx").reason.startswith("the file is empty (0 bytes)")


def test_a_truncated_model_is_called_truncated(affine, tmp_path):
    (tmp_path / "cut.onnx").write_bytes(affine.read_bytes()[:100])
    assert refusal(tmp_path / "cut.onnx").reason.startswith("starts like an ONNX file but cannot be parsed (100 bytes)")


def test_a_zip_checkpoint_is_named_as_such(tmp_path):
    with zipfile.ZipFile(tmp_path / "model.pt", "w") as archive:
        archive.writestr("data.pkl", b"not a model")
    assert "it looks like a ZIP archive" in refusal(tmp_path / "model.pt").reason


def _graph():
    return helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "relu",
                             [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
                             [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])])


@pytest.mark.parametrize("message, type_name", [
    (lambda: numpy_helper.from_array(np.ones((3, 4), np.float32), "weights"), "TensorProto"),
    (_graph, "GraphProto"),
    (lambda: _graph().node[0], "NodeProto"),
])
def test_a_protobuf_message_that_is_not_a_model_is_called_that_not_truncated(tmp_path, message, type_name):
    path = tmp_path / "model.onnx"
    path.write_bytes(message().SerializeToString())
    reason = refusal(path).reason
    assert reason.startswith(f"is a protobuf message but not an ONNX model: it reads as an onnx.{type_name} (")
    assert "truncated" not in reason


def test_a_model_header_without_a_graph_is_said_to_be_cut_short(tmp_path):
    (tmp_path / "header.onnx").write_bytes(onnx.ModelProto(ir_version=10, producer_name="torch").SerializeToString())
    assert refusal(tmp_path / "header.onnx").reason.startswith(
        "is a protobuf message but not an ONNX model: it has an ir_version but no graph")


def test_a_model_without_an_ir_version_says_how_to_build_one(tmp_path):
    (tmp_path / "bare.onnx").write_bytes(onnx.ModelProto(graph=_graph()).SerializeToString())
    assert refusal(tmp_path / "bare.onnx").reason.startswith("is an ONNX model without an ir_version")


# External data

def _external_model(folder: Path, location: str = "affine.onnx.data") -> Path:
    path = affine_model(folder / "affine.onnx", save_as_external_data=True, location="affine.onnx.data",
                        size_threshold=0)
    if location != "affine.onnx.data":
        model = onnx.load(str(path), load_external_data=False)
        for tensor in model.graph.initializer:
            for entry in tensor.external_data:
                if entry.key == "location":
                    entry.value = location
        onnx.save_model(model, str(path))
    return path


def test_missing_external_data_names_the_file_to_copy(tmp_path):
    path = _external_model(tmp_path)
    (tmp_path / "affine.onnx.data").unlink()
    assert refusal(path).reason.startswith("its weights are stored in 'affine.onnx.data', which is not beside it")


@pytest.mark.parametrize("location", ["../affine.onnx.data", "/tmp/affine.onnx.data"])
def test_external_data_outside_the_models_folder_is_refused(tmp_path, location):
    (tmp_path / "models").mkdir()
    path = _external_model(tmp_path / "models", location)
    assert f"keeps its weights in '{location}', outside the model's folder" in refusal(path).reason


@posix_only
def test_external_data_linked_from_outside_the_models_folder_is_refused(tmp_path):
    """A relative location that is a symbolic link out of the folder escapes it as surely as '../' does."""
    (tmp_path / "models").mkdir()
    path = _external_model(tmp_path / "models")
    (tmp_path / "models" / "affine.onnx.data").rename(tmp_path / "elsewhere.data")
    (tmp_path / "models" / "affine.onnx.data").symlink_to(tmp_path / "elsewhere.data")
    assert refusal(path).reason.startswith(f"tensor 'w' keeps its weights in 'affine.onnx.data', which resolves "
                                           f"through a symbolic link to {tmp_path / 'elsewhere.data'}, outside")


@posix_only
def test_external_data_in_a_linked_folder_outside_the_models_folder_is_refused(tmp_path):
    (tmp_path / "models").mkdir()
    path = _external_model(tmp_path / "models", "weights/affine.onnx.data")
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "models" / "affine.onnx.data").rename(tmp_path / "elsewhere" / "affine.onnx.data")
    (tmp_path / "models" / "weights").symlink_to(tmp_path / "elsewhere")
    assert "which resolves through a symbolic link to" in refusal(path).reason


@posix_only
def test_external_data_linked_within_the_models_folder_is_read(tmp_path):
    path = _external_model(tmp_path)
    (tmp_path / "weights").mkdir()
    (tmp_path / "affine.onnx.data").rename(tmp_path / "weights" / "affine.data")
    (tmp_path / "affine.onnx.data").symlink_to(tmp_path / "weights" / "affine.data")
    assert load_model(path).graph.name == "affine"


def test_external_data_shorter_than_the_model_needs_is_refused_with_both_sizes(tmp_path):
    path = _external_model(tmp_path)
    (tmp_path / "affine.onnx.data").write_bytes(b"\0" * 8)
    reason = refusal(path).reason
    assert reason.startswith("its weights file 'affine.onnx.data' holds 8 bytes, but tensor 'w' needs bytes up to 48")


# The memory budget

def test_the_default_budget_is_one_gib_unless_the_environment_variable_sets_it(monkeypatch):
    monkeypatch.delenv(MAX_INPUT_BYTES_VARIABLE, raising=False)
    assert input_budget() == DEFAULT_MAX_INPUT_BYTES == 2**30
    monkeypatch.setenv(MAX_INPUT_BYTES_VARIABLE, "512MiB")
    assert input_budget() == 2**29
    assert input_budget(4096) == 4096 and input_budget("2 GiB") == 2**31 and input_budget("100") == 100


@pytest.mark.parametrize("limit, source", [("lots", "the input budget 'lots'"), (0, "the input budget 0"),
                                           ("-5", "the input budget '-5'")])
def test_a_malformed_budget_is_one_line_naming_where_it_came_from(limit, source):
    with pytest.raises(ModelInputError) as caught:
        input_budget(limit)
    assert str(caught.value) == f"{source} is not a positive number of bytes; give e.g. 1073741824, 512MiB or 4GiB."


def test_a_malformed_environment_variable_is_named(monkeypatch):
    monkeypatch.setenv(MAX_INPUT_BYTES_VARIABLE, "2 gigs")
    with pytest.raises(ModelInputError, match=f"^{MAX_INPUT_BYTES_VARIABLE}='2 gigs' is not a positive number"):
        input_budget()


def test_inputs_beyond_the_budget_are_refused_with_the_computed_size_and_the_limit(monkeypatch):
    monkeypatch.delenv(MAX_INPUT_BYTES_VARIABLE, raising=False)
    with pytest.raises(ModelInputError) as caught:
        check_input_bytes("huge.onnx", {"x": ((100000, 100000, 100000), np.float32)})
    assert str(caught.value) == (
        "huge.onnx: the inputs would take 3.6 PiB (4,000,000,000,000,000 bytes) for 'x' [100000, 100000, 100000] "
        "float32, more than the input budget of 1.0 GiB: use smaller sizes, or raise the budget if this machine has "
        f"the memory (max_input_bytes=, --max-input-bytes or {MAX_INPUT_BYTES_VARIABLE}).")


def test_inputs_within_the_budget_return_their_total():
    arrays = {"x": ((16, 4), np.float32), "mask": ((16,), np.bool_)}
    assert check_input_bytes("m.onnx", arrays, max_input_bytes=16 * 4 * 4 + 16) == 16 * 4 * 4 + 16
    with pytest.raises(ModelInputError, match=r"the inputs would take 273 bytes, 256 bytes of it for 'x' \[16, 4\]"):
        check_input_bytes("m.onnx", {**arrays, "id": ((1,), np.int8)}, max_input_bytes=272)


def test_format_bytes_uses_binary_units():
    assert [format_bytes(count) for count in (512, 1536, 2**30, 4 * 10**15)] == [
        "512 bytes", "1.5 KiB", "1.0 GiB", "3.6 PiB"]
