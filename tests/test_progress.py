"""Unit tests of labsupport.progress: the progress file and the self-ticking checklist."""

from __future__ import annotations

import json

import pytest

from labsupport import progress
from labsupport.exercises import all_problem_ids


@pytest.fixture(autouse=True)
def data_dir(tmp_path, monkeypatch):
    """Every test keeps its progress in its own folder."""
    monkeypatch.setenv("LABSUPPORT_DATA_DIR", str(tmp_path))
    return tmp_path


def test_progress_file_lives_in_the_data_directory(data_dir):
    assert progress.progress_path() == data_dir / "progress.json"


def test_missing_file_is_empty_progress(data_dir):
    assert progress.load_progress() == {"version": 1, "passed": {}}
    assert not (data_dir / "progress.json").exists()


def test_record_pass_creates_the_file_and_counts_passes(data_dir):
    progress.record_pass("00_setup.CpuProvider")
    progress.record_pass("00_setup.CpuProvider")
    progress.record_pass("00_setup.UsableCores")
    on_disk = json.loads((data_dir / "progress.json").read_text())
    assert on_disk["passed"]["00_setup.CpuProvider"]["count"] == 2
    assert on_disk["passed"]["00_setup.UsableCores"]["count"] == 1
    assert set(on_disk["passed"]["00_setup.CpuProvider"]) == {"first", "last", "count"}


def test_record_pass_creates_a_missing_data_directory(data_dir, monkeypatch):
    monkeypatch.setenv("LABSUPPORT_DATA_DIR", str(data_dir / "new" / "folder"))
    progress.record_pass("00_setup.CpuProvider")
    assert (data_dir / "new" / "folder" / "progress.json").is_file()


def test_writes_leave_no_temporary_files_behind(data_dir):
    for _ in range(3):
        progress.record_pass("00_setup.CpuProvider")
    assert [path.name for path in data_dir.iterdir()] == ["progress.json"]


@pytest.mark.parametrize("content", [b"{not json", b'{"version": 1}', b'["passed"]', b"\xff\xfe\x00\x81garbage"])
def test_corrupt_file_is_reported_moved_aside_and_progress_restarts(data_dir, content):
    (data_dir / "progress.json").write_bytes(content)
    with pytest.warns(UserWarning, match="was unreadable"):
        assert progress.load_progress()["passed"] == {}
    set_aside = list(data_dir.glob("progress.json.corrupt-*"))
    assert len(set_aside) == 1
    assert set_aside[0].read_bytes() == content
    assert not (data_dir / "progress.json").exists()


def test_recording_after_a_corrupt_file_starts_a_fresh_one(data_dir):
    (data_dir / "progress.json").write_text("{truncated")
    with pytest.warns(UserWarning, match="moved to"):
        progress.record_pass("00_setup.CpuProvider")
    assert list(progress.load_progress()["passed"]) == ["00_setup.CpuProvider"]


def test_an_unusable_data_directory_only_warns(data_dir, monkeypatch):
    not_a_folder = data_dir / "not-a-folder"
    not_a_folder.write_text("a file where the data directory should be")
    monkeypatch.setenv("LABSUPPORT_DATA_DIR", str(not_a_folder))
    with pytest.warns(UserWarning) as caught:
        progress.record_pass("00_setup.CpuProvider")
    messages = " ".join(str(warning.message) for warning in caught)
    assert "Could not read your progress file" in messages
    assert "was not recorded" in messages
    assert "LABSUPPORT_DATA_DIR" in messages
    with pytest.warns(UserWarning, match="Could not read your progress file"):
        assert "[ ]" in progress.render_checklist()


def test_reset_forgets_every_pass(data_dir):
    progress.record_pass("00_setup.CpuProvider")
    progress.reset_progress()
    progress.reset_progress()
    assert progress.load_progress()["passed"] == {}


def test_every_checklist_evidence_is_a_real_problem_id():
    known = set(all_problem_ids())
    evidence = {problem for item in progress.CHECKLIST for problem in item.evidence}
    assert evidence - known == set()


def line_of(checklist: str, text: str) -> str:
    return next(line for line in checklist.splitlines() if text in line)


def test_an_item_is_ticked_once_all_its_evidence_passed():
    runtime_item = "Load and run inference with ONNX Runtime in Python and in C++"
    evidence = {"01_interoperability.RoundTripParity": {}, "02_format_internals.BuildAffineModel": {}}
    line = line_of(progress.render_checklist(evidence), runtime_item)
    assert line.startswith(f"[x] {runtime_item}")
    assert line.endswith("will add evidence: 13_cpp_and_cross_runtime"), "the C++ half is still to come"


def test_the_checklist_shows_as_a_table_in_jupyterlab_and_as_text_in_a_console(data_dir, capsys):
    progress.record_pass("01_interoperability.RoundTripParity")
    progress.show_checklist()
    assert "revisit 02_format_internals" in capsys.readouterr().out
    markdown = progress._checklist_markdown(progress.checklist_status())
    assert markdown.startswith("| | self-assessment item | what next |")
    assert "⬜ | Load and run inference" in markdown and "**0 of 8 items ticked.**" in markdown


def test_an_item_with_missing_evidence_says_which_lab_to_revisit():
    runtime_item = "Load and run inference with ONNX Runtime in Python and in C++"
    line = line_of(progress.render_checklist({"01_interoperability.RoundTripParity": {}}), runtime_item)
    assert line.startswith(f"[ ] {runtime_item}")
    assert line.endswith("revisit 02_format_internals (1 check(s) to pass)")


def test_an_item_without_evidence_says_it_is_not_in_this_edition_yet():
    line = line_of(progress.render_checklist({}), "Profile model performance")
    assert line.startswith("[ ]")
    assert "not in this edition yet: 11_benchmarking_and_profiling" in line


def test_the_checklist_counts_ticks_and_reads_recorded_progress(data_dir):
    progress.record_pass("00_setup.CpuProvider")
    checklist = progress.render_checklist()
    assert line_of(checklist, "execution providers").startswith("[x]")
    assert f"1 of {len(progress.CHECKLIST)} items ticked" in checklist
    assert str(data_dir / "progress.json") in checklist
