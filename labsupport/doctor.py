"""The environment doctor: is this machine ready for the labs?

Introduced in lab 00 (``python -m labsupport doctor`` or ``labsupport.doctor.diagnose()``).
It reports the versions of every course package against the pins, ONNX Runtime's
execution providers, the CPU, and the native toolchain the deployment labs build with,
then gives a verdict. Only what the labs need makes the verdict fail; the native
toolchain is reported but only warns, because the labs that need it say so themselves.
"""

from __future__ import annotations

import glob
import importlib.metadata as metadata
import os
import platform
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from packaging.requirements import Requirement

from labsupport import display

__all__ = ["DoctorReport", "Finding", "diagnose"]

DISTRIBUTION = "onnx-workbook"
_FIX = "run `make lab` (or `make setup`) from the repository root; it installs requirements-lock.txt into .venv"


@dataclass(frozen=True)
class Finding:
    """One line of the report: ``status`` is ok, warn or fail."""

    section: str
    name: str
    status: str
    detail: str
    fix: str = ""


@dataclass
class DoctorReport:
    findings: list[Finding] = field(default_factory=list)

    @property
    def failures(self) -> list[Finding]:
        return [finding for finding in self.findings if finding.status == "fail"]

    @property
    def ok(self) -> bool:
        return not self.failures

    @property
    def verdict(self) -> str:
        warnings = sum(finding.status == "warn" for finding in self.findings)
        if self.ok:
            note = f" ({warnings} warning(s) above)" if warnings else ""
            return f"VERDICT: READY — everything the labs need is installed{note}."
        names = ", ".join(finding.name for finding in self.failures)
        return f"VERDICT: NOT READY — missing or broken: {names}. Fix: {_FIX}."

    def to_text(self) -> str:
        marks = {"ok": "ok  ", "warn": "warn", "fail": "FAIL"}
        lines, section = [], None
        for finding in self.findings:
            if finding.section != section:
                section = finding.section
                lines.append(f"\n{section}")
            line = f"  [{marks[finding.status]}] {finding.name:<24} {finding.detail}"
            if finding.fix and finding.status != "ok":
                line += f"\n         fix: {finding.fix}"
            lines.append(line)
        lines.append("\n" + self.verdict)
        return "\n".join(lines).lstrip("\n")

    def _repr_markdown_(self) -> str:
        rows = ["| status | section | item | detail |", "|---|---|---|---|"]
        for finding in self.findings:
            label = display.DOCTOR_LABELS[finding.status]
            detail = finding.detail + (f" — *fix:* {finding.fix}" if finding.fix and finding.status != "ok" else "")
            rows.append(f"| {label} | {finding.section} | {finding.name} | {detail.replace('|', '/')} |")
        return "\n".join(rows) + f"\n\n**{self.verdict}**"

    def __repr__(self) -> str:
        return self.to_text()


def _course_requirements() -> list[Requirement]:
    """The pinned course packages, read from this package's own metadata."""
    try:
        declared = metadata.requires(DISTRIBUTION) or []
    except metadata.PackageNotFoundError:
        return []
    return [Requirement(text) for text in declared if "extra ==" not in text]


def _check_python(report: DoctorReport) -> None:
    version = ".".join(map(str, sys.version_info[:3]))
    status = "ok" if sys.version_info[:2] == (3, 11) else "fail"
    report.findings.append(Finding("Python", "python", status, f"{version} at {sys.executable}",
                                   "the course is pinned for Python 3.11; create .venv with python3.11"))


def _check_packages(report: DoctorReport) -> None:
    requirements = _course_requirements()
    if not requirements:
        report.findings.append(Finding("Packages", DISTRIBUTION, "fail", "the course package is not installed", _FIX))
        return
    for requirement in requirements:
        try:
            installed = metadata.version(requirement.name)
        except metadata.PackageNotFoundError:
            report.findings.append(Finding("Packages", requirement.name, "fail", "not installed", _FIX))
            continue
        public = installed.split("+")[0]
        if requirement.specifier.contains(public, prereleases=True):
            report.findings.append(Finding("Packages", requirement.name, "ok", installed))
        else:
            report.findings.append(Finding("Packages", requirement.name, "warn",
                                           f"{installed}, but the labs were tested with {requirement.specifier}", _FIX))


def _check_runtime(report: DoctorReport) -> None:
    try:
        import onnxruntime
    except ImportError:
        report.findings.append(Finding("ONNX Runtime", "providers", "fail", "onnxruntime does not import", _FIX))
        return
    providers = onnxruntime.get_available_providers()
    status = "ok" if "CPUExecutionProvider" in providers else "fail"
    report.findings.append(Finding("ONNX Runtime", "providers", status, ", ".join(providers), _FIX))
    accelerated = [name for name in providers if name not in {"CPUExecutionProvider", "AzureExecutionProvider"}]
    detail = (f"accelerators available: {', '.join(accelerated)}" if accelerated else
              "none: every lab runs on the CPU; GPU cells explain what they would do")
    report.findings.append(Finding("ONNX Runtime", "accelerators", "ok", detail))


def _check_cpu(report: DoctorReport) -> None:
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    detail = f"{usable} usable of {os.cpu_count()} logical cores, {platform.machine()}"
    report.findings.append(Finding("CPU", "cores", "ok", detail))


def _tool_version(command: str) -> str | None:
    path = shutil.which(command)
    if path is None:
        return None
    try:
        completed = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return None
    first_line = (completed.stdout or completed.stderr).strip().splitlines()
    return first_line[0] if first_line else path


def _ort_library() -> str | None:
    try:
        import onnxruntime
    except ImportError:
        return None
    matches = sorted(glob.glob(str(Path(onnxruntime.__file__).parent / "capi" / "libonnxruntime.so*")))
    return matches[0] if matches else None


def _check_native(report: DoctorReport) -> None:
    needed = "needed by labs 13 and 14 (C++ and Node.js deployment, the C++ service)"
    tools = {"cmake": "apt-get install cmake", "g++": "apt-get install g++", "make": "apt-get install make",
             "node": "install Node.js 20 (apt-get install nodejs npm)", "npm": "apt-get install npm"}
    for command, fix in tools.items():
        version = _tool_version(command)
        status = "ok" if version else "warn"
        report.findings.append(Finding("Native toolchain", command, status, version or f"not found; {needed}", fix))
    library = _ort_library()
    report.findings.append(Finding("Native toolchain", "libonnxruntime", "ok" if library else "warn",
                                   library or "the onnxruntime wheel's C library was not found", _FIX))
    _check_native_headers(report)
    _check_service_libraries(report)


def _check_service_libraries(report: DoctorReport) -> None:
    """The C++ libraries lab 14's inference service builds with, besides lab 13's toolchain."""
    from labsupport.serving import SERVICE_PACKAGES, missing_service_libraries

    missing = missing_service_libraries()
    detail = ("cpp-httplib and nlohmann-json found" if not missing
              else f"not found: {', '.join(missing)}; lab 14's C++ service needs them")
    report.findings.append(Finding("Native toolchain", "service libraries", "warn" if missing else "ok", detail,
                                   SERVICE_PACKAGES))


def _check_native_headers(report: DoctorReport) -> None:
    """ONNX Runtime's C++ headers as labsupport.native finds them (ORT_ROOT, system, Debian cache), and the skew."""
    from labsupport import native

    try:
        toolchain = native.find_toolchain()
    except native.NativeToolchainError as error:
        report.findings.append(Finding("Native toolchain", "C++ headers", "warn", str(error),
                                       "`python -m labsupport native setup` (fetches the headers once)"))
        return
    report.findings.append(Finding("Native toolchain", "C++ headers", "ok",
                                   f"{toolchain.include_dir} ({toolchain.headers_from}): C API "
                                   f"{toolchain.header_api_version}, the wheel's library serves up to "
                                   f"{toolchain.library_api_version}"))


def _check_node_package(report: DoctorReport) -> None:
    from labsupport import node

    try:
        package = node.npm_package(node.ORT_NODE_PACKAGE, node.ORT_NODE_VERSION)
    except node.NodeRuntimeError:
        report.findings.append(Finding("Node.js", node.ORT_NODE_PACKAGE, "warn",
                                       f"{node.ORT_NODE_VERSION} not installed; lab 13 runs a model in Node.js with it",
                                       f"`{node.SETUP_COMMAND}` (downloads it once with npm)"))
        return
    report.findings.append(Finding("Node.js", node.ORT_NODE_PACKAGE, "ok", f"{node.ORT_NODE_VERSION} in {package}"))


def _check_browser(report: DoctorReport) -> None:
    """Lab 15's browser runtime: Chromium, a font for the emoji JupyterLab shows, and onnxruntime-web."""
    from labsupport import web

    needed = "lab 15 runs a model in it, and `make test` walks lab 00 in it"
    fix = f"sudo apt-get install {web.BROWSER_PACKAGES}"
    try:
        chromium = web.find_chromium()
    except web.WebRuntimeError as error:
        report.findings.append(Finding("Browser", "chromium", "warn", f"{error} ({needed})", fix))
    else:
        version = _tool_version(str(chromium))
        report.findings.append(Finding("Browser", "chromium", "ok", f"{version or 'version unknown'} at {chromium}"))
    fonts = _emoji_fonts()
    if fonts is not None:
        report.findings.append(Finding("Browser", "emoji font", "ok" if fonts else "warn", ", ".join(fonts) or
                                       "none: the status icons in notebooks render as empty boxes (the words beside "
                                       "them still say it)", fix))
    try:
        dist = web.ort_web_dist()
    except web.WebRuntimeError:
        report.findings.append(Finding("Browser", web.ORT_WEB_PACKAGE, "warn",
                                       f"{web.ORT_WEB_VERSION} not installed; lab 15 runs a model with it",
                                       f"`{web.SETUP_COMMAND}` (downloads it once with npm)"))
        return
    report.findings.append(Finding("Browser", web.ORT_WEB_PACKAGE, "ok", f"{web.ORT_WEB_VERSION} in {dist.parent}"))


def _emoji_fonts() -> list[str] | None:
    """The font families fontconfig has for ✅ (None where there is no fontconfig to ask)."""
    fc_list = shutil.which("fc-list")
    if fc_list is None:
        return None
    try:
        completed = subprocess.run([fc_list, ":charset=2705", "family"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return sorted({line.split(",")[0].strip() for line in completed.stdout.splitlines() if line.strip()})


def diagnose(*, native: bool = True) -> DoctorReport:
    """Examine this environment and return the report (nothing is installed or changed)."""
    report = DoctorReport()
    _check_python(report)
    _check_packages(report)
    _check_runtime(report)
    _check_cpu(report)
    if native:
        _check_native(report)
        _check_node_package(report)
        _check_browser(report)
    return report
