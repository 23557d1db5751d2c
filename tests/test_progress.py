"""Unit tests of labsupport.progress: the progress file and the self-ticking checklist."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from filelock import FileLock

from labsupport import progress
from labsupport.cli import main
from labsupport.exercises import all_problem_ids
from tests.test_display import assert_every_icon_has_a_word


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


def test_writes_leave_no_temporary_files_behind_only_the_lock_beside_the_file(data_dir):
    for _ in range(3):
        progress.record_pass("00_setup.CpuProvider")
    assert sorted(path.name for path in data_dir.iterdir()) == ["progress.json", "progress.json.lock"]


RECORDER = """
import sys
from labsupport import progress
worker, passes = int(sys.argv[1]), int(sys.argv[2])
for _ in range(passes):
    progress.record_pass("00_setup.CpuProvider")
    progress.record_pass(f"99_worker.Problem{worker}")
"""


def test_passes_recorded_by_eight_processes_at_once_are_all_counted(data_dir):
    workers, passes = 8, 20
    environment = {**os.environ, "LABSUPPORT_DATA_DIR": str(data_dir)}
    root = Path(__file__).resolve().parent.parent
    running = [subprocess.Popen([sys.executable, "-c", RECORDER, str(worker), str(passes)], cwd=root,
                                env=environment, stderr=subprocess.PIPE, text=True) for worker in range(workers)]
    errors = [process.communicate(timeout=300)[1] for process in running]
    assert all(process.returncode == 0 for process in running) and not any(errors), errors
    passed = json.loads((data_dir / "progress.json").read_text())["passed"]
    assert passed["00_setup.CpuProvider"]["count"] == workers * passes
    assert {problem: passed[problem]["count"] for problem in passed if problem.startswith("99_")} == {
        f"99_worker.Problem{worker}": passes for worker in range(workers)}


def one_warning_line(capsys) -> str:
    """The single plain warning line labsupport printed on stderr (nothing on stdout)."""
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("labsupport: warning: "), lines[0]
    return lines[0]


@pytest.mark.parametrize("content", [b"{not json", b'{"version": 1}', b'["passed"]', b"\xff\xfe\x00\x81garbage"])
def test_corrupt_file_is_reported_moved_aside_and_progress_restarts(data_dir, content, capsys):
    (data_dir / "progress.json").write_bytes(content)
    assert progress.load_progress()["passed"] == {}
    assert "was unreadable" in one_warning_line(capsys)
    set_aside = list(data_dir.glob("progress.json.corrupt-*"))
    assert len(set_aside) == 1
    assert set_aside[0].read_bytes() == content
    assert not (data_dir / "progress.json").exists()


def test_recording_after_a_corrupt_file_starts_a_fresh_one(data_dir, capsys):
    (data_dir / "progress.json").write_text("{truncated")
    progress.record_pass("00_setup.CpuProvider")
    assert "moved to" in one_warning_line(capsys)
    assert list(progress.load_progress()["passed"]) == ["00_setup.CpuProvider"]


def test_warnings_are_one_plain_line_without_python_warning_format(data_dir):
    (data_dir / "progress.json").write_text("{truncated")
    environment = {**os.environ, "LABSUPPORT_DATA_DIR": str(data_dir), "PYTHONWARNINGS": "default"}
    completed = subprocess.run([sys.executable, "-c", "from labsupport import progress; progress.load_progress()"],
                               env=environment, capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0, completed.stderr
    (line,) = completed.stderr.splitlines()
    assert line.startswith("labsupport: warning: your progress file ")
    assert "UserWarning" not in line and "warnings.warn" not in completed.stderr


def test_an_unusable_data_directory_only_warns(data_dir, monkeypatch, capsys):
    not_a_folder = data_dir / "not-a-folder"
    not_a_folder.write_text("a file where the data directory should be")
    monkeypatch.setenv("LABSUPPORT_DATA_DIR", str(not_a_folder))
    progress.record_pass("00_setup.CpuProvider")
    line = one_warning_line(capsys)
    assert f"this pass was not recorded: the data folder {not_a_folder} is a file, not a folder" in line
    assert line.endswith("set LABSUPPORT_DATA_DIR to a folder you can read and write.")
    assert "[ ]" in progress.render_checklist()
    assert "no passes are shown: could not read your progress file" in one_warning_line(capsys)


def test_a_folder_in_place_of_the_progress_file_only_warns_and_is_left_alone(data_dir, capsys):
    (data_dir / "progress.json").mkdir()
    progress.record_pass("00_setup.CpuProvider")
    line = one_warning_line(capsys)
    assert line.startswith("labsupport: warning: this pass was not recorded: could not read your progress file "
                           f"{data_dir / 'progress.json'} (Is a directory); move it away or set LABSUPPORT_DATA_DIR")
    assert (data_dir / "progress.json").is_dir()


def test_a_lock_held_too_long_by_another_process_only_warns(data_dir, monkeypatch, capsys):
    monkeypatch.setattr(progress, "_LOCK_TIMEOUT_S", 0.2)
    with FileLock(data_dir / "progress.json.lock"):
        progress.record_pass("00_setup.CpuProvider")
    line = one_warning_line(capsys)
    assert "this pass was not recorded: your progress file" in line
    assert "stayed locked by another notebook or process for 0.2 s; run this again once it has finished." in line
    assert not (data_dir / "progress.json").exists()


def test_reset_forgets_every_pass(data_dir):
    progress.record_pass("00_setup.CpuProvider")
    progress.reset_progress()
    progress.reset_progress()
    assert progress.load_progress()["passed"] == {}


def test_reset_of_a_data_directory_that_does_not_exist_creates_nothing(data_dir, monkeypatch):
    monkeypatch.setenv("LABSUPPORT_DATA_DIR", str(data_dir / "never-used"))
    progress.reset_progress()
    assert not (data_dir / "never-used").exists()


def test_reset_refuses_to_remove_a_folder_in_place_of_the_file(data_dir):
    (data_dir / "progress.json").mkdir()
    (data_dir / "progress.json" / "notes.txt").write_text("a learner's own file")
    with pytest.raises(progress.ProgressError, match="is a folder, not a progress file, so it was left alone"):
        progress.reset_progress()
    assert (data_dir / "progress.json" / "notes.txt").is_file()


def test_reset_with_a_file_in_place_of_the_data_directory_says_so(data_dir, monkeypatch):
    not_a_folder = data_dir / "not-a-folder"
    not_a_folder.write_text("a file where the data directory should be")
    monkeypatch.setenv("LABSUPPORT_DATA_DIR", str(not_a_folder))
    with pytest.raises(progress.ProgressError, match="is a file, not a folder; set LABSUPPORT_DATA_DIR"):
        progress.reset_progress()


# ---------------------------------------------------------------------------
# Malformed entries: a string, null, a number, a list, or a table with an unusable count
# ---------------------------------------------------------------------------

NOT_A_TABLE = {"a string": "passed", "null": None, "a number": 3, "a list": [1, 2]}
UNUSABLE_COUNT = {"a string": "three", "null": None, "a boolean": True, "zero": 0, "a fraction": 1.5, "missing": ...}


def write_entry(data_dir: Path, entry) -> None:
    passed = {"00_setup.CpuProvider": entry, "00_setup.UsableCores": {"first": "2026-01-01T00:00:00", "count": 2}}
    (data_dir / "progress.json").write_text(json.dumps({"version": 1, "passed": passed}))


def entry_with_count(count) -> dict:
    return {"first": "2026-01-01T00:00:00"} if count is ... else {"first": "2026-01-01T00:00:00", "count": count}


@pytest.mark.parametrize("entry", NOT_A_TABLE.values(), ids=NOT_A_TABLE.keys())
def test_an_entry_that_is_not_a_table_is_ignored_with_one_warning(data_dir, capsys, entry):
    write_entry(data_dir, entry)
    assert progress.load_progress()["passed"] == {
        "00_setup.UsableCores": {"first": "2026-01-01T00:00:00", "count": 2}}
    line = one_warning_line(capsys)
    assert "ignored 1 malformed entry, '00_setup.CpuProvider' (" in line
    assert "not a table): pass that check again to record it." in line


@pytest.mark.parametrize("entry", NOT_A_TABLE.values(), ids=NOT_A_TABLE.keys())
def test_recording_a_pass_over_an_entry_that_is_not_a_table_replaces_it(data_dir, capsys, entry):
    write_entry(data_dir, entry)
    progress.record_pass("00_setup.CpuProvider")
    assert "ignored 1 malformed entry" in one_warning_line(capsys)
    passed = json.loads((data_dir / "progress.json").read_text())["passed"]
    assert passed["00_setup.CpuProvider"]["count"] == 1
    assert passed["00_setup.UsableCores"]["count"] == 2
    assert progress.load_progress()["passed"].keys() == {"00_setup.CpuProvider", "00_setup.UsableCores"}
    assert capsys.readouterr().err == "", "the file was repaired: reading it again warns no more"


@pytest.mark.parametrize("count", UNUSABLE_COUNT.values(), ids=UNUSABLE_COUNT.keys())
def test_a_table_with_an_unusable_count_still_records_a_pass_and_restarts_at_one(data_dir, capsys, count):
    write_entry(data_dir, entry_with_count(count))
    assert progress.load_progress()["passed"]["00_setup.CpuProvider"]["count"] == 1
    assert "repaired 1 entry whose count was not a whole number of passes, '00_setup.CpuProvider' (" in (
        one_warning_line(capsys))
    progress.record_pass("00_setup.CpuProvider")
    one_warning_line(capsys)
    on_disk = json.loads((data_dir / "progress.json").read_text())["passed"]["00_setup.CpuProvider"]
    assert on_disk["count"] == 2 and on_disk["first"] == "2026-01-01T00:00:00"


@pytest.mark.parametrize("entry", [*NOT_A_TABLE.values(), *(entry_with_count(c) for c in UNUSABLE_COUNT.values())],
                         ids=[*(f"entry-{name}" for name in NOT_A_TABLE), *(f"count-{n}" for n in UNUSABLE_COUNT)])
def test_the_checklist_command_shows_despite_a_malformed_entry(data_dir, capsys, entry):
    write_entry(data_dir, entry)
    assert main(["progress"]) == 0
    captured = capsys.readouterr()
    assert captured.out.startswith("Self-assessment checklist")
    (warning,) = captured.err.splitlines()
    assert warning.startswith("labsupport: warning: your progress file ")
    providers = evidence_of("execution providers")
    still_to_pass = len(providers) - 1 if isinstance(entry, dict) else len(providers)
    assert line_of(captured.out, "execution providers").endswith(f"({still_to_pass} check(s) to pass)"), (
        "a repaired entry still counts as a pass; an ignored one does not")
    progress.show_checklist()
    assert one_warning_line(capsys) == warning, "reading never rewrites the file: the notebook cell warns alike"


def test_every_checklist_evidence_is_a_real_problem_id():
    known = set(all_problem_ids())
    evidence = {problem for item in progress.CHECKLIST for problem in item.evidence}
    assert evidence - known == set()


def line_of(checklist: str, text: str) -> str:
    return next(line for line in checklist.splitlines() if text in line)


def evidence_of(text: str) -> tuple[str, ...]:
    """The problem ids that evidence the checklist item whose text contains ``text``."""
    return next(item.evidence for item in progress.CHECKLIST if text in item.text)


def test_an_item_is_ticked_once_all_its_evidence_passed():
    runtime_item = "Load and run inference with ONNX Runtime in Python and in C++"
    evidence = {problem: {} for problem in evidence_of(runtime_item)}
    line = line_of(progress.render_checklist(evidence), runtime_item)
    assert line == f"[x] {runtime_item}"


def test_an_item_ticked_before_its_planned_labs_exist_names_them(monkeypatch):
    item = progress.ChecklistItem("Run a model in a browser", ("00_setup.CpuProvider",), ("15_capstone",))
    monkeypatch.setattr(progress, "CHECKLIST", (item,))
    line = line_of(progress.render_checklist({"00_setup.CpuProvider": {}}), item.text)
    assert line.startswith(f"[x] {item.text}")
    assert line.endswith("will add evidence: 15_capstone")


def test_the_checklist_shows_as_a_table_in_jupyterlab_and_as_text_in_a_console(data_dir, capsys):
    progress.record_pass("01_interoperability.RoundTripParity")
    progress.show_checklist()
    assert "revisit 02_format_internals, 08_runtime_and_providers" in capsys.readouterr().out
    markdown = progress._checklist_markdown(progress.checklist_status())
    assert markdown.startswith("| ticked | self-assessment item | what next |")
    assert "| ⬜ not yet | Load and run inference" in markdown and "**0 of 8 items ticked.**" in markdown


def test_every_tick_of_the_checklist_table_has_a_word_beside_it(data_dir):
    for problem in evidence_of("execution providers"):
        progress.record_pass(problem)
    markdown = progress._checklist_markdown(progress.checklist_status())
    rows = markdown.split("\n\n")[0].splitlines()[2:]
    marks = [row.split(" | ")[0].removeprefix("| ") for row in rows]
    assert set(marks) == {"✅ yes", "⬜ not yet"}
    assert_every_icon_has_a_word(markdown)


def test_an_item_with_missing_evidence_says_which_lab_to_revisit():
    runtime_item = "Load and run inference with ONNX Runtime in Python and in C++"
    *passed, missing = evidence_of(runtime_item)
    line = line_of(progress.render_checklist({problem: {} for problem in passed}), runtime_item)
    assert line.startswith(f"[ ] {runtime_item}")
    assert line.endswith(f"revisit {missing.split('.')[0]} (1 check(s) to pass)")


def test_an_item_without_evidence_says_it_is_not_in_this_edition_yet(monkeypatch):
    monkeypatch.setattr(progress, "CHECKLIST", (progress.ChecklistItem("Serve a model", (), ("14_serving",)),))
    line = line_of(progress.render_checklist({}), "Serve a model")
    assert line.startswith("[ ]")
    assert "not in this edition yet: 14_serving" in line


def test_the_checklist_counts_ticks_and_reads_recorded_progress(data_dir):
    for problem in evidence_of("execution providers"):
        progress.record_pass(problem)
    checklist = progress.render_checklist()
    assert line_of(checklist, "execution providers").startswith("[x]")
    assert f"1 of {len(progress.CHECKLIST)} items ticked" in checklist
    assert str(data_dir / "progress.json") in checklist


# ---------------------------------------------------------------------------
# `python -m labsupport progress --reset` when the file cannot be removed
# ---------------------------------------------------------------------------

def reset_from_the_command_line(data_dir: Path, prefix: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    environment = {**os.environ, "LABSUPPORT_DATA_DIR": str(data_dir)}
    return subprocess.run([*prefix, sys.executable, "-m", "labsupport", "progress", "--reset"], env=environment,
                          capture_output=True, text=True, timeout=120)


def permissions_bind() -> tuple[str, ...]:
    """A command prefix under which file permissions apply: none needed for a user, ``setpriv`` for root.

    Root ignores a folder's permissions unless it gives up the capabilities that override them;
    where ``setpriv`` cannot do that, the test is skipped.
    """
    if os.name != "posix":
        pytest.skip("read-only folders are simulated with POSIX permissions")
    if os.geteuid() != 0:
        return ()
    drop = "-dac_override,-dac_read_search"
    prefix = (shutil.which("setpriv") or "setpriv", f"--inh-caps={drop}", f"--bounding-set={drop}")
    try:
        usable = subprocess.run([*prefix, "true"], capture_output=True, timeout=30).returncode == 0
    except OSError:
        usable = False
    if not usable:
        pytest.skip("running as root without setpriv, so file permissions cannot be made to apply")
    return prefix


def assert_one_error_line(completed: subprocess.CompletedProcess, fragment: str) -> None:
    assert completed.returncode == 2, completed.stdout + completed.stderr
    assert completed.stdout == ""
    (line,) = completed.stderr.splitlines()
    assert line.startswith("error: ") and fragment in line, line
    assert line.endswith("set LABSUPPORT_DATA_DIR to a folder you can read and write.")


def test_reset_command_with_a_folder_in_place_of_the_file_prints_one_error_line(data_dir):
    (data_dir / "progress.json").mkdir()
    completed = reset_from_the_command_line(data_dir)
    assert_one_error_line(completed, f"{data_dir / 'progress.json'} is a folder, not a progress file")
    assert (data_dir / "progress.json").is_dir()


def test_reset_command_with_a_file_in_place_of_the_data_directory_prints_one_error_line(data_dir):
    not_a_folder = data_dir / "not-a-folder"
    not_a_folder.write_text("a file where the data directory should be")
    completed = reset_from_the_command_line(not_a_folder)
    assert_one_error_line(completed, f"the data folder {not_a_folder} is a file, not a folder")


def test_reset_command_in_a_read_only_folder_prints_one_error_line(data_dir):
    prefix = permissions_bind()
    progress.record_pass("00_setup.CpuProvider")
    data_dir.chmod(0o500)
    try:
        completed = reset_from_the_command_line(data_dir, prefix)
    finally:
        data_dir.chmod(0o700)
    assert_one_error_line(completed, f"could not remove your progress file {data_dir / 'progress.json'} "
                                     "(Permission denied)")
    assert (data_dir / "progress.json").is_file()
