"""Unit tests of labsupport.doctor on this environment, and with packages made to look broken."""

from __future__ import annotations

import subprocess
import sys

import pytest

from labsupport import doctor
from tests.test_display import assert_every_icon_has_a_word


@pytest.fixture(scope="module")
def report() -> doctor.DoctorReport:
    return doctor.diagnose()


def findings_named(report: doctor.DoctorReport, section: str, name: str) -> list[doctor.Finding]:
    return [finding for finding in report.findings if finding.section == section and finding.name == name]


def pretend_missing(monkeypatch, missing: str) -> None:
    real_version = doctor.metadata.version

    def version(name: str) -> str:
        if name == missing:
            raise doctor.metadata.PackageNotFoundError(name)
        return real_version(name)

    monkeypatch.setattr(doctor.metadata, "version", version)


def test_this_environment_is_ready(report):
    assert report.ok, report.to_text()
    assert report.verdict.startswith("VERDICT: READY")


@pytest.mark.parametrize("package", ["onnx", "onnxruntime", "torch"])
def test_course_packages_are_reported_with_their_version(report, package):
    (finding,) = findings_named(report, "Packages", package)
    assert finding.status == "ok"
    assert finding.detail[0].isdigit()


def test_the_cpu_execution_provider_is_available(report):
    (finding,) = findings_named(report, "ONNX Runtime", "providers")
    assert finding.status == "ok"
    assert "CPUExecutionProvider" in finding.detail.split(", ")


def test_the_native_toolchain_only_ever_warns(report):
    native = [finding for finding in report.findings if finding.section == "Native toolchain"]
    assert {finding.name for finding in native} >= {"cmake", "g++", "node", "libonnxruntime", "C++ headers"}
    assert all(finding.status in {"ok", "warn"} for finding in native)


def test_a_missing_package_makes_the_verdict_not_ready_and_names_the_fix(monkeypatch):
    pretend_missing(monkeypatch, "onnx")
    report = doctor.diagnose(native=False)
    assert not report.ok
    assert [finding.name for finding in report.failures] == ["onnx"]
    assert report.verdict.startswith("VERDICT: NOT READY — missing or broken: onnx.")
    assert "`make lab`" in report.verdict
    assert "[FAIL] onnx" in report.to_text()


def test_a_package_at_another_version_only_warns(monkeypatch):
    real_version = doctor.metadata.version
    monkeypatch.setattr(doctor.metadata, "version", lambda name: "1.0.0" if name == "onnx" else real_version(name))
    report = doctor.diagnose(native=False)
    (finding,) = findings_named(report, "Packages", "onnx")
    assert finding.status == "warn"
    assert "the labs were tested with ==1.23.2" in finding.detail
    assert report.ok
    assert "(1 warning(s) above)" in report.verdict


def test_an_uninstalled_course_package_is_not_ready(monkeypatch):
    def requires(name):
        raise doctor.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(doctor.metadata, "requires", requires)
    report = doctor.diagnose(native=False)
    assert [finding.name for finding in report.failures] == [doctor.DISTRIBUTION]
    assert "NOT READY" in report.verdict


def test_markdown_rendering_is_a_table_ending_with_the_verdict(report):
    markdown = report._repr_markdown_()
    rows = markdown.split("\n\n")[0].splitlines()
    assert rows[:2] == ["| status | section | item | detail |", "|---|---|---|---|"]
    assert len(rows) == 2 + len(report.findings)
    assert all(row.startswith("| ") and row.endswith(" |") and row.count("|") == 5 for row in rows[2:])
    assert markdown.endswith(f"**{report.verdict}**")


def test_every_status_icon_of_the_markdown_report_has_a_word_beside_it():
    report = doctor.DoctorReport([
        doctor.Finding("Python", "python", "ok", "3.11.9"),
        doctor.Finding("Native toolchain", "cmake", "warn", "not found", "apt-get install cmake"),
        doctor.Finding("Packages", "onnx", "fail", "not installed", "make setup"),
    ])
    markdown = report._repr_markdown_()
    statuses = [row.split(" | ")[0].removeprefix("| ") for row in markdown.split("\n\n")[0].splitlines()[2:]]
    assert statuses == ["✅ ok", "⚠️ warning", "❌ fail"]
    assert_every_icon_has_a_word(markdown)


def test_the_doctor_command_exits_zero_and_prints_a_verdict():
    completed = subprocess.run([sys.executable, "-m", "labsupport", "doctor"],
                               capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert completed.stdout.strip().splitlines()[-1].startswith("VERDICT: READY")


def test_the_quiet_doctor_command_prints_only_the_verdict():
    completed = subprocess.run([sys.executable, "-m", "labsupport", "doctor", "--quiet", "--no-native"],
                               capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0
    assert completed.stdout.startswith("VERDICT: READY") and completed.stdout.count("\n") == 1
