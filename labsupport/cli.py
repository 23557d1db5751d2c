"""The command line: ``python -m labsupport COMMAND`` (or ``labsupport COMMAND``).

Commands:
  doctor            is this environment ready for the labs? (non-zero exit if not)
  progress          the self-assessment checklist, ticked from the checks you passed
  build-notebooks   render notebooks/ from solutions/ (``--check``: only report drift)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

__all__ = ["main"]


def _repository_root() -> Path:
    """The folder holding solutions/: the current one, or the one above this package."""
    for candidate in (Path.cwd(), Path(__file__).resolve().parent.parent):
        if (candidate / "solutions").is_dir():
            return candidate
    raise SystemExit("error: no solutions/ folder here or beside labsupport/; run this from the repository root.")


def _doctor(arguments: argparse.Namespace) -> int:
    from labsupport.doctor import diagnose

    report = diagnose(native=not arguments.no_native)
    print(report.verdict if arguments.quiet else report.to_text())
    return 0 if report.ok else 1


def _progress(arguments: argparse.Namespace) -> int:
    from labsupport import progress

    if arguments.reset:
        progress.reset_progress()
        print(f"Progress forgotten ({progress.progress_path()}).")
        return 0
    print(progress.render_checklist())
    return 0


def _build_notebooks(arguments: argparse.Namespace) -> int:
    from labsupport.notebook_build import BuildError, build_all

    root = _repository_root()
    try:
        drifts = build_all(root, check=arguments.check)
    except BuildError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if arguments.check:
        if not drifts:
            print("notebooks/ and solutions/ are exactly what the generator makes.")
            return 0
        for drift in drifts:
            print(f"drift: {drift.path.relative_to(root)} {drift.reason}", file=sys.stderr)
        print("Fix: run `python -m labsupport build-notebooks` (or `make notebooks`) and commit the result; "
              "edit solutions/, never notebooks/.", file=sys.stderr)
        return 1
    for drift in drifts:
        print(f"wrote {drift.path.relative_to(root)}")
    print(f"{len(drifts)} notebook(s) written." if drifts else "Everything was already up to date.")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="labsupport", description="Helpers of the ONNX Interoperability Workbook.")
    commands = parser.add_subparsers(dest="command", required=True)
    doctor = commands.add_parser("doctor", help="is this environment ready for the labs?")
    doctor.add_argument("--quiet", action="store_true", help="print only the verdict line")
    doctor.add_argument("--no-native", action="store_true", help="skip the native toolchain checks")
    doctor.set_defaults(run=_doctor)
    progress = commands.add_parser("progress", help="the self-assessment checklist with ticks")
    progress.add_argument("--reset", action="store_true", help="forget every recorded pass")
    progress.set_defaults(run=_progress)
    build = commands.add_parser("build-notebooks", help="render notebooks/ from solutions/")
    build.add_argument("--check", action="store_true", help="write nothing; exit 1 if anything would change")
    build.set_defaults(run=_build_notebooks)
    arguments = parser.parse_args(argv)
    return arguments.run(arguments)
