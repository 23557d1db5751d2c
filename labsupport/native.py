"""The native toolchain: C++ programs built against the onnxruntime wheel's own C library.

Introduced in lab 13 (and used by lab 14's C++ service). ``python -m labsupport native setup``
finds, or fetches once, what a C++ build needs; :func:`find_toolchain` reports it and
:func:`build_project` builds one of the CMake projects shipped in ``labsupport/native_src``.

Two halves, from two places:

* **The library** always comes from the installed ``onnxruntime`` wheel:
  ``onnxruntime/capi/libonnxruntime.so.<version>``, so C++ runs exactly the runtime Python runs.
  Its SONAME is ``libonnxruntime.so.1``; the linker wants ``libonnxruntime.so``. Neither name is
  in the wheel, so a link folder in the cache holds both as symbolic links, and programs carry
  an rpath to that folder.
* **The headers** are not on PyPI. They are searched in this order: ``$ORT_ROOT`` (an official
  release archive a learner unpacked: ``$ORT_ROOT/include``), the system's include folders,
  then Debian's ``libonnxruntime-dev`` package (trixie: 1.21) downloaded with ``apt-get
  download`` under a private APT configuration (its own state, lists, cache and sources in
  the cache folder; the mirror is the machine's own Debian mirror with only the suite
  changed; the system's APT state is never touched) and unpacked with ``dpkg-deb -x``. Only
  its headers are used: its ``libonnxruntime.so`` link points into a package not fetched.

Older headers with a newer library is the safe direction of the skew: the C API is a table
of function pointers that only ever grows, ``OrtGetApiBase()->GetApi(N)`` hands a program
built with API ``N`` the first ``N`` versions' worth of it, and the library serves every
``N`` up to its own. Newer headers than the library is the broken direction: ``GetApi``
returns NULL. :func:`find_toolchain` measures both numbers (:attr:`Toolchain.header_api_version`,
:attr:`Toolchain.library_api_version`) and refuses the broken direction.

Builds go to ``cache_dir()/build/<project>-<toolchain key>``, never into the source tree. The CMake
projects say ``find_package(onnxruntime CONFIG REQUIRED)``; the config labsupport writes
defines ``onnxruntime::onnxruntime`` (headers and library) and ``onnxruntime::headers``
(headers only, for custom-op libraries, which get the API from the session that loads them).

The C++ inference CLI (``infer_cli``, :func:`run_cli`, :func:`time_cli`)::

    infer_cli MODEL                                   print the inputs and outputs
    infer_cli MODEL --input [NAME=]FILE.npy ... --output-dir DIR
                                                      run one batch, write DIR/<output>.npy
    infer_cli MODEL --time N [--warmup W] [--input ...]
                                                      time N calls at batch 1, print each call's latency
    options: --threads N (intra-op threads, 0 = ONNX Runtime's choice), --custom-op-library LIB.so, --version

Errors (a missing file, a bad model, a wrong shape or type) print one ``error:`` line on
stderr and exit 2; a failing run exits 1.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import platformdirs

__all__ = [
    "CUSTOM_OP_DOMAIN",
    "CUSTOM_OP_LIBRARY",
    "CUSTOM_OP_TYPE",
    "NativeToolchainError",
    "Toolchain",
    "build_project",
    "cache_dir",
    "cli_path",
    "custom_op_library",
    "find_toolchain",
    "library_api_version",
    "run_cli",
    "setup_toolchain",
    "squareplus_reference",
    "time_cli",
]

CUSTOM_OP_DOMAIN = "ai.onnx.labsupport"
CUSTOM_OP_TYPE = "SquarePlus"
CUSTOM_OP_LIBRARY = "liblabsupport_custom_op.so"
_CLI_NAME = "infer_cli"
_DEBIAN_PACKAGE = "libonnxruntime-dev"
_DEBIAN_SUITE = "trixie"
_SYSTEM_INCLUDE_DIRS = ("/usr/include/onnxruntime", "/usr/local/include/onnxruntime", "/usr/include",
                        "/usr/local/include")
_SETUP_COMMAND = "python -m labsupport native setup"
_APT_DIR = Path("/etc/apt")
_OS_RELEASE = Path("/etc/os-release")
_API_VERSION_PATTERN = re.compile(r"^\s*#\s*define\s+ORT_API_VERSION\s+(\d+)", re.MULTILINE)


class NativeToolchainError(RuntimeError):
    """Something a C++ build needs is missing or broken; the message is one line naming it and the fix."""


@dataclass(frozen=True)
class Toolchain:
    """What the native labs build with, and where each part came from.

    ``headers_from`` is ``"ORT_ROOT"``, ``"system"`` or ``"Debian package cache"``;
    ``search`` says, one line per place, what was looked at and why the headers were taken
    from where they were.
    """

    include_dir: Path
    headers_from: str
    header_api_version: int
    library: Path
    library_version: str
    link_dir: Path
    cmake: Path
    cxx: Path
    library_api_version: int
    search: tuple[str, ...] = ()

    def describe(self) -> str:
        """What was used and why, and the header/library API skew, as lines of text."""
        lines = [*self.search,
                 f"headers:  {self.include_dir} ({self.headers_from}), ORT_API_VERSION {self.header_api_version}",
                 f"library:  {self.library} (onnxruntime {self.library_version} wheel), "
                 f"serves C API versions 1 to {self.library_api_version}",
                 f"linked through {self.link_dir} (libonnxruntime.so.1 and libonnxruntime.so), with an rpath to it",
                 f"cmake:    {self.cmake}",
                 f"compiler: {self.cxx}",
                 f"skew:     headers API {self.header_api_version} <= library API {self.library_api_version}: "
                 f"programs built here ask for API {self.header_api_version}, which this library serves."]
        return "\n".join(lines)


def cache_dir() -> Path:
    """The folder for fetched headers, link folders and builds (``$LABSUPPORT_CACHE_DIR`` overrides)."""
    override = os.environ.get("LABSUPPORT_CACHE_DIR")
    folder = Path(override) if override else Path(platformdirs.user_cache_dir("labsupport", appauthor=False))
    return folder.expanduser()


def _package_installer(package: str) -> str:
    prefix = "" if hasattr(os, "geteuid") and os.geteuid() == 0 else "sudo "
    return f"`{prefix}apt-get install {package}` (Debian/Ubuntu)"


def _find_tools() -> tuple[Path, Path]:
    cmake = shutil.which("cmake")
    if cmake is None:
        raise NativeToolchainError(f"cmake is not installed; install it with {_package_installer('cmake')}, "
                                   "then run the cell again.")
    compilers = [os.environ["CXX"]] if os.environ.get("CXX") else ["g++", "c++", "clang++"]
    cxx = next((found for name in compilers if (found := shutil.which(name))), None)
    if cxx is None:
        named = f"the compiler CXX={os.environ['CXX']} was not found" if os.environ.get("CXX") else \
            "no C++ compiler (g++, c++ or clang++) is installed"
        raise NativeToolchainError(f"{named}; install one with {_package_installer('g++')}, then run the cell again.")
    if shutil.which("make") is None and shutil.which("ninja") is None:
        raise NativeToolchainError(f"neither make nor ninja is installed (CMake needs one to build); install make "
                                   f"with {_package_installer('make')}, then run the cell again.")
    return Path(cmake), Path(cxx)


def _wheel_library() -> tuple[Path, str]:
    try:
        import onnxruntime
    except ImportError as error:
        raise NativeToolchainError(f"onnxruntime does not import ({error}); run `make setup` from the repository "
                                   "root.") from None
    capi = Path(onnxruntime.__file__).parent / "capi"
    libraries = sorted(path for path in capi.glob("libonnxruntime.so.*") if path.name[len("libonnxruntime.so."):][:1]
                       .isdigit())
    if not libraries:
        raise NativeToolchainError(f"the onnxruntime wheel in {capi} has no libonnxruntime.so.<version>; reinstall "
                                   "it with `make setup` (a wheel from PyPI ships the C library).")
    return libraries[-1], onnxruntime.__version__


def _api_version(include_dir: Path) -> int:
    header = include_dir / "onnxruntime_c_api.h"
    try:
        match = _API_VERSION_PATTERN.search(header.read_text(errors="replace"))
    except OSError as error:
        raise NativeToolchainError(f"cannot read {header} ({error.strerror}); the headers in {include_dir} are "
                                   f"incomplete: unpack them again or run `{_SETUP_COMMAND}`.") from None
    if match is None:
        raise NativeToolchainError(f"{header} defines no ORT_API_VERSION; these are not ONNX Runtime's headers: "
                                   "point ORT_ROOT at an unpacked onnxruntime release.")
    return int(match.group(1))


def _holds_headers(folder: Path) -> bool:
    return (folder / "onnxruntime_cxx_api.h").is_file() and (folder / "onnxruntime_c_api.h").is_file()


def _debian_dir() -> Path:
    return cache_dir() / "debian" / f"{_DEBIAN_PACKAGE}-{_DEBIAN_SUITE}"


def _debian_record() -> dict | None:
    try:
        return json.loads((_debian_dir() / "fetched.json").read_text())
    except (OSError, ValueError):
        return None


def _find_headers(fetch: bool) -> tuple[Path, str, list[str]]:
    search = []
    ort_root = os.environ.get("ORT_ROOT")
    if ort_root:
        for candidate in (Path(ort_root) / "include", Path(ort_root) / "include" / "onnxruntime"):
            if _holds_headers(candidate):
                search.append(f"ORT_ROOT={ort_root} is set and {candidate} holds the headers: using them")
                return candidate, "ORT_ROOT", search
        raise NativeToolchainError(f"ORT_ROOT={ort_root} has no include/onnxruntime_cxx_api.h; point it at the "
                                   "folder an onnxruntime release archive unpacks to (it holds include/ and lib/), "
                                   "or unset it.")
    search.append("ORT_ROOT is not set (an unpacked official release would be used first)")
    for folder in map(Path, _SYSTEM_INCLUDE_DIRS):
        if _holds_headers(folder):
            search.append(f"system headers found in {folder}: using them")
            return folder, "system", search
    search.append(f"no system headers in {', '.join(_SYSTEM_INCLUDE_DIRS)}")
    include_dir = _debian_dir() / "include" / "onnxruntime"
    record = _debian_record()
    when = f"fetched on {record['fetched']}" if record else ""
    if not (record and _holds_headers(include_dir)):
        if not fetch:
            raise NativeToolchainError(f"no ONNX Runtime C++ headers: ORT_ROOT is not set, none are installed and "
                                       f"none were fetched yet; run `{_SETUP_COMMAND}` (it downloads Debian's "
                                       f"{_DEBIAN_PACKAGE} into {cache_dir()} and uses only its headers).")
        record = _fetch_debian_headers()
        when = "fetched now"
    search.append(f"{_DEBIAN_PACKAGE} {record['version']} from Debian {_DEBIAN_SUITE} ({record['mirror']}, "
                  f"{record['deb_bytes'] / 1000:.0f} kB), {when} into {_debian_dir()}: using its headers only "
                  "(its libonnxruntime.so link points into a package not fetched)")
    return include_dir, "Debian package cache", search


def _sources_entries() -> list[dict]:
    """The machine's APT sources (one-line and deb822 formats): types, uris, suites, components and signed_by."""
    entries = []
    folder = _APT_DIR
    for path in [folder / "sources.list", *sorted((folder / "sources.list.d").glob("*.list"))]:
        try:
            text = path.read_text(errors="replace")
        except OSError:
            continue
        for line in text.splitlines():
            line = line.split("#", 1)[0].strip()
            match = re.match(r"^(deb|deb-src)\s+(?:\[([^\]]*)\]\s+)?(\S+)\s+(\S+)\s*(.*)$", line)
            if match:
                options = dict(part.split("=", 1) for part in (match.group(2) or "").split() if "=" in part)
                entries.append({"types": [match.group(1)], "uris": [match.group(3)], "suites": [match.group(4)],
                                "components": match.group(5).split(), "signed_by": options.get("signed-by", "")})
    for path in sorted((folder / "sources.list.d").glob("*.sources")):
        try:
            text = path.read_text(errors="replace")
        except OSError:
            continue
        for stanza in re.split(r"\n\s*\n", text):
            fields = {}
            for line in stanza.splitlines():
                if line.startswith("#") or ":" not in line or line[:1].isspace():
                    continue
                key, _, value = line.partition(":")
                fields[key.strip().lower()] = value.strip()
            if fields.get("enabled", "yes").lower() == "no" or "uris" not in fields:
                continue
            entries.append({"types": fields.get("types", "").split(), "uris": fields["uris"].split(),
                            "suites": fields.get("suites", "").split(), "components": fields.get("components", "")
                            .split(), "signed_by": fields.get("signed-by", "")})
    return entries


def _os_codename() -> tuple[str, str]:
    try:
        text = _OS_RELEASE.read_text()
    except OSError:
        return "", ""
    fields = dict(line.split("=", 1) for line in text.splitlines() if "=" in line)
    return fields.get("ID", "").strip('"'), fields.get("VERSION_CODENAME", "").strip('"')


def _debian_mirror() -> tuple[str, str]:
    """The machine's own Debian archive mirror and the keyring its sources name."""
    distribution, codename = _os_codename()
    no_mirror = (f"this machine's APT sources name no Debian archive for {codename or 'its release'}, so the "
                 f"{_DEBIAN_PACKAGE} headers cannot be fetched; unpack an official onnxruntime release "
                 "(github.com/microsoft/onnxruntime/releases, onnxruntime-linux-x64-<version>.tgz, version <= "
                 "the wheel's) and set ORT_ROOT to its folder.")
    if distribution != "debian" or not codename:
        raise NativeToolchainError(no_mirror)
    for entry in _sources_entries():
        if "deb" in entry["types"] and codename in entry["suites"] and "main" in entry["components"]:
            return entry["uris"][0].rstrip("/"), entry["signed_by"]
    raise NativeToolchainError(no_mirror)


def _run_apt(command: list[str], *, cwd: Path, step: str, timeout: float = 600) -> None:
    try:
        completed = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise NativeToolchainError(f"{step} took more than {timeout:.0f} s; check the network connection to the "
                                   f"Debian mirror and run `{_SETUP_COMMAND}` again.") from None
    if completed.returncode != 0:
        output = completed.stderr + completed.stdout
        errors = [line for line in output.splitlines() if line.startswith(("E:", "W:", "Err:"))]
        detail = (errors or output.strip().splitlines() or ["no output"])[0]
        raise NativeToolchainError(f"{step} failed ({detail}); check the network connection to the Debian mirror "
                                   f"and run `{_SETUP_COMMAND}` again, or set ORT_ROOT to an unpacked onnxruntime "
                                   "release.")


def _fetch_debian_headers() -> dict:
    """Download Debian trixie's libonnxruntime-dev with a private APT configuration and keep its headers."""
    from filelock import FileLock

    for tool in ("apt-get", "dpkg-deb"):
        if shutil.which(tool) is None:
            raise NativeToolchainError(f"{tool} is not available to fetch Debian's {_DEBIAN_PACKAGE} headers; "
                                       "unpack an official onnxruntime release and set ORT_ROOT to its folder.")
    target = _debian_dir()
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):
        record = _debian_record()
        if record and _holds_headers(target / "include" / "onnxruntime"):
            return record
        mirror, keyring = _debian_mirror()
        work = target.parent / f"{target.name}.apt"
        shutil.rmtree(work, ignore_errors=True)
        folders = {name: work / name for name in ("state", "lists", "cache", "etc", "etc/sources.list.d",
                                                  "etc/preferences.d", "download", "unpacked")}
        for folder in folders.values():
            folder.mkdir(parents=True, exist_ok=True)
        (folders["lists"] / "partial").mkdir()
        (folders["cache"] / "archives" / "partial").mkdir(parents=True)
        (folders["state"] / "status").touch()
        signed_by = f" signed-by={keyring}" if keyring else ""
        sources = folders["etc"] / "sources.list"
        sources.write_text(f"deb [arch={_dpkg_architecture()}{signed_by}] {mirror} {_DEBIAN_SUITE} main\n")
        settings = {"Dir::State": folders["state"], "Dir::State::Lists": folders["lists"],
                    "Dir::State::status": folders["state"] / "status", "Dir::Cache": folders["cache"],
                    "Dir::Etc::SourceList": sources, "Dir::Etc::SourceParts": folders["etc/sources.list.d"],
                    "Dir::Etc::Preferences": folders["etc"] / "preferences",
                    "Dir::Etc::PreferencesParts": folders["etc/preferences.d"], "Acquire::Languages": "none"}
        options = [text for key, value in settings.items() for text in ("-o", f"{key}={value}")] + ["-qq"]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            options += ["-o", "APT::Sandbox::User=root"]  # the private folders are not the _apt user's to write
        _run_apt(["apt-get", *options, "update"], cwd=work, step=f"apt-get update of Debian {_DEBIAN_SUITE}'s index")
        _run_apt(["apt-get", *options, "download", _DEBIAN_PACKAGE], cwd=folders["download"],
                 step=f"apt-get download {_DEBIAN_PACKAGE}")
        packages = sorted(folders["download"].glob(f"{_DEBIAN_PACKAGE}_*.deb"))
        if not packages:
            raise NativeToolchainError(f"apt-get download {_DEBIAN_PACKAGE} wrote no .deb file; run "
                                       f"`{_SETUP_COMMAND}` again.")
        _run_apt(["dpkg-deb", "-x", str(packages[0]), str(folders["unpacked"])], cwd=work,
                 step=f"dpkg-deb -x {packages[0].name}")
        headers = folders["unpacked"] / "usr" / "include" / "onnxruntime"
        if not _holds_headers(headers):
            raise NativeToolchainError(f"{packages[0].name} holds no usr/include/onnxruntime/onnxruntime_cxx_api.h; "
                                       "set ORT_ROOT to an unpacked onnxruntime release instead.")
        shutil.rmtree(target, ignore_errors=True)
        (target / "include").mkdir(parents=True)
        shutil.copytree(headers, target / "include" / "onnxruntime")
        version = packages[0].name.split("_")[1]
        record = {"package": _DEBIAN_PACKAGE, "version": version, "suite": _DEBIAN_SUITE, "mirror": mirror,
                  "deb": packages[0].name, "deb_bytes": packages[0].stat().st_size,
                  "sha256": hashlib.sha256(packages[0].read_bytes()).hexdigest(),
                  "fetched": time.strftime("%Y-%m-%d")}
        (target / "fetched.json").write_text(json.dumps(record, indent=2) + "\n")
        shutil.rmtree(work, ignore_errors=True)
        return record


def _dpkg_architecture() -> str:
    try:
        completed = subprocess.run(["dpkg", "--print-architecture"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return "amd64"
    return completed.stdout.strip() or "amd64"


_PROBE = """
import ctypes, sys
library = ctypes.CDLL(sys.argv[1])
class OrtApiBase(ctypes.Structure):
    _fields_ = [("GetApi", ctypes.CFUNCTYPE(ctypes.c_void_p, ctypes.c_uint32)),
                ("GetVersionString", ctypes.CFUNCTYPE(ctypes.c_char_p))]
library.OrtGetApiBase.restype = ctypes.POINTER(OrtApiBase)
base = library.OrtGetApiBase().contents
version = 1
while version < 1000 and base.GetApi(version + 1):
    version += 1
print(version, base.GetVersionString().decode())
"""


@lru_cache(maxsize=8)
def library_api_version(library: Path) -> int:
    """The newest C API version ``library`` serves: the largest ``N`` for which ``OrtGetApiBase()->GetApi(N)`` works.

    Asked in a child process: ONNX Runtime prints a complaint on stderr for the first
    version it does not serve, and that line belongs to the probe, not to a notebook cell.
    """
    try:
        completed = subprocess.run([sys.executable, "-c", _PROBE, str(library)], capture_output=True, text=True,
                                   timeout=60)
    except subprocess.TimeoutExpired:
        raise NativeToolchainError(f"asking {library} for its API version took over 60 s; "
                                   "run the cell again.") from None
    fields = completed.stdout.split()
    if completed.returncode != 0 or not fields or not fields[0].isdigit():
        detail = (completed.stderr.strip().splitlines() or ["no output"])[-1]
        raise NativeToolchainError(f"{library} does not load ({detail}); reinstall onnxruntime with `make setup`.")
    return int(fields[0])


def _link_dir(library: Path, version: str) -> Path:
    """A folder whose libonnxruntime.so.1 (the SONAME) and libonnxruntime.so (for the linker) point at ``library``."""
    digest = hashlib.sha256(str(library.resolve()).encode()).hexdigest()[:8]
    folder = cache_dir() / "lib" / f"onnxruntime-{version}-{digest}"
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("libonnxruntime.so.1", "libonnxruntime.so"):
        link = folder / name
        if link.is_symlink() and Path(os.readlink(link)) == library.resolve():
            continue
        temporary = folder / f".{name}.{os.getpid()}"
        temporary.unlink(missing_ok=True)
        temporary.symlink_to(library.resolve())
        os.replace(temporary, link)
    return folder


def find_toolchain(*, fetch: bool = False) -> Toolchain:
    """Find cmake, a C++ compiler, ONNX Runtime's headers and the wheel's library.

    Headers: ``$ORT_ROOT``, then the system's, then Debian's package in the cache; with
    ``fetch=True`` (only ``python -m labsupport native setup`` passes it) that package is
    downloaded when it is not there yet. Raises :class:`NativeToolchainError` naming what is
    missing and the command that fixes it, and when the headers are newer than the library.
    """
    cmake, cxx = _find_tools()
    library, library_version = _wheel_library()
    include_dir, headers_from, search = _find_headers(fetch)
    header_api = _api_version(include_dir)
    library_api = library_api_version(library)
    if header_api > library_api:
        raise NativeToolchainError(f"the headers in {include_dir} ({headers_from}) declare ORT_API_VERSION "
                                   f"{header_api}, but the wheel's library (onnxruntime {library_version}) serves "
                                   f"only up to {library_api}: programs would get no API at start-up; use headers "
                                   f"of onnxruntime {library_version} or older (ORT_ROOT).")
    return Toolchain(include_dir=include_dir, headers_from=headers_from, header_api_version=header_api,
                     library=library, library_version=library_version, link_dir=_link_dir(library, library_version),
                     cmake=cmake, cxx=cxx, library_api_version=library_api, search=tuple(search))


def _source_dir(name: str) -> Path:
    root = Path(__file__).resolve().parent / "native_src"
    source = root / name
    if not (source / "CMakeLists.txt").is_file():
        projects = sorted(path.name for path in root.iterdir() if (path / "CMakeLists.txt").is_file())
        raise NativeToolchainError(f"no CMake project {name!r} in {root}; the projects are {', '.join(projects)}.")
    return source


def _write_if_changed(path: Path, text: str) -> None:
    if not path.is_file() or path.read_text() != text:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".{path.name}.{os.getpid()}")
        temporary.write_text(text)
        os.replace(temporary, path)


def _cmake_config(toolchain: Toolchain) -> Path:
    """Write the onnxruntime CMake package config for ``toolchain``; return its folder (for ``onnxruntime_DIR``)."""
    key = hashlib.sha256(f"{toolchain.include_dir}|{toolchain.link_dir}".encode()).hexdigest()[:8]
    folder = cache_dir() / "build" / "cmake" / f"onnxruntime-{key}"
    text = f"""# Written by labsupport.native: ONNX Runtime for the course's CMake projects.
# Headers: {toolchain.include_dir} ({toolchain.headers_from}, ORT_API_VERSION {toolchain.header_api_version})
# Library: {toolchain.library} (onnxruntime {toolchain.library_version} wheel), linked through {toolchain.link_dir}
set(onnxruntime_VERSION "{toolchain.library_version}")
set(onnxruntime_HEADER_API_VERSION {toolchain.header_api_version})
set(onnxruntime_LIBRARY_API_VERSION {toolchain.library_api_version})
if(NOT TARGET onnxruntime::headers)
  # Headers only: for custom-op libraries, which receive the API from the session that loads them
  add_library(onnxruntime::headers INTERFACE IMPORTED)
  set_target_properties(onnxruntime::headers PROPERTIES
    INTERFACE_INCLUDE_DIRECTORIES "{toolchain.include_dir}")
  # Headers and the library; the program records the SONAME libonnxruntime.so.1 and an rpath to the link folder
  add_library(onnxruntime::onnxruntime SHARED IMPORTED)
  set_target_properties(onnxruntime::onnxruntime PROPERTIES
    IMPORTED_LOCATION "{toolchain.link_dir / 'libonnxruntime.so'}"
    IMPORTED_SONAME "libonnxruntime.so.1"
    INTERFACE_LINK_LIBRARIES onnxruntime::headers
    INTERFACE_LINK_OPTIONS "-Wl,-rpath,{toolchain.link_dir}")
endif()
set(onnxruntime_FOUND TRUE)
"""
    _write_if_changed(folder / "onnxruntimeConfig.cmake", text)
    return folder


def _first_error(log: str) -> str:
    lines = log.splitlines()
    for index, line in enumerate(lines):
        if re.search(r"\berror\b[:(]", line, re.IGNORECASE) or line.startswith("CMake Error"):
            following = next((text.strip() for text in lines[index + 1:index + 3] if text.strip()), "")
            return f"{line.strip()} {following}".strip() if line.startswith("CMake Error") else line.strip()
    return next((line.strip() for line in reversed(lines) if line.strip()), "no output")


def _run_build_step(command: list[str], log_path: Path, name: str) -> None:
    try:
        completed = subprocess.run(command, capture_output=True, text=True, timeout=900)
    except subprocess.TimeoutExpired:
        raise NativeToolchainError(f"building {name} took more than 15 minutes; the machine may be overloaded: "
                                   "close other work and build again.") from None
    with log_path.open("a") as log:
        log.write(f"$ {' '.join(command)}\n{completed.stdout}{completed.stderr}\n")
    if completed.returncode != 0:
        raise NativeToolchainError(f"building {name} failed: {_first_error(completed.stdout + completed.stderr)} "
                                   f"(full log: {log_path}); fix the source and build again.")


def build_project(name: str, *, toolchain: Toolchain | None = None) -> Path:
    """Build the CMake project ``labsupport/native_src/<name>`` into ``cache_dir()/build/<name>-<key>``; return it.

    Incremental: a second call only re-runs what changed. ``key`` names the toolchain (headers,
    library, compiler) and the source folder, so two checkouts of the course, or two virtual
    environments, each keep their own build and never rebuild, or delete, the other's. A failing
    configure or compile raises :class:`NativeToolchainError` with the first error line.
    """
    from filelock import FileLock

    toolchain = toolchain or find_toolchain()
    source = _source_dir(name)
    config_dir = _cmake_config(toolchain)
    stamp = json.dumps({"source": str(source), "include_dir": str(toolchain.include_dir), "cxx": str(toolchain.cxx),
                        "link_dir": str(toolchain.link_dir), "cmake": str(toolchain.cmake)}, sort_keys=True)
    build = cache_dir() / "build" / f"{name}-{hashlib.sha256(stamp.encode()).hexdigest()[:8]}"
    build.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(build) + ".lock"):
        stamp_path = build / "labsupport-toolchain.json"
        if not stamp_path.is_file() or stamp_path.read_text() != stamp:
            shutil.rmtree(build, ignore_errors=True)
        build.mkdir(exist_ok=True)
        log_path = build / "build.log"
        log_path.write_text("")
        if not (build / "CMakeCache.txt").is_file():
            _run_build_step([str(toolchain.cmake), "-S", str(source), "-B", str(build), "-DCMAKE_BUILD_TYPE=Release",
                             f"-DCMAKE_CXX_COMPILER={toolchain.cxx}", f"-Donnxruntime_DIR={config_dir}"],
                            log_path, name)
            stamp_path.write_text(stamp)
        _run_build_step([str(toolchain.cmake), "--build", str(build), "--parallel", "2"], log_path, name)
    return build


def cli_path(*, toolchain: Toolchain | None = None) -> Path:
    """The C++ inference CLI, built (or brought up to date) first."""
    return build_project(_CLI_NAME, toolchain=toolchain) / _CLI_NAME


def custom_op_library(*, toolchain: Toolchain | None = None) -> Path:
    """The custom-op library (``SquarePlus`` in domain ``ai.onnx.labsupport``), built (or brought up to date) first."""
    return build_project("custom_op", toolchain=toolchain) / CUSTOM_OP_LIBRARY


def squareplus_reference(x, b: float = 4.0):
    """NumPy's answer for the custom operator: ``(x + sqrt(x² + b)) / 2``, a smooth ReLU (``b`` = its softness)."""
    import numpy as np

    x = np.asarray(x, dtype=np.float32)
    return ((x + np.sqrt(x * x + np.float32(b))) / np.float32(2)).astype(np.float32)


def run_cli(arguments: Sequence[str | os.PathLike], *, toolchain: Toolchain | None = None,
            timeout: float = 300) -> subprocess.CompletedProcess:
    """Run ``infer_cli`` with ``arguments``; return the completed process (text output), whatever its exit code."""
    command = [str(cli_path(toolchain=toolchain)), *map(os.fspath, arguments)]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout)


def time_cli(model: str | os.PathLike, *, calls: int = 200, warmup: int = 10, threads: int = 1,
             inputs: Sequence[str | os.PathLike] = (), toolchain: Toolchain | None = None):
    """Per-call latencies in seconds of ``calls`` runs at batch 1 timed inside the C++ CLI (a NumPy array).

    ``inputs`` are ``[NAME=]FILE.npy`` arguments whose first row is fed; without them every
    input is zeros with its dynamic dimensions set to 1. Raises :class:`NativeToolchainError`
    with the CLI's error line when it fails.
    """
    import numpy as np

    arguments = [os.fspath(model), "--time", str(calls), "--warmup", str(warmup), "--threads", str(threads)]
    for item in inputs:
        arguments += ["--input", os.fspath(item)]
    completed = run_cli(arguments, toolchain=toolchain)
    if completed.returncode != 0:
        last_line = (completed.stderr.strip().splitlines() or ["no output"])[-1]
        raise NativeToolchainError(f"{_CLI_NAME} failed: {last_line}")
    line = next((line for line in completed.stdout.splitlines() if line.startswith("latency_us ")), None)
    if line is None:
        raise NativeToolchainError(f"{_CLI_NAME} printed no latency_us line; rebuild it with `{_SETUP_COMMAND}`.")
    return np.array([float(value) for value in line.split()[1:]]) / 1e6


def setup_toolchain(*, fetch: bool = True) -> Toolchain:
    """Find or fetch the toolchain, build the course's C++ projects, print what was used and why (``native setup``)."""
    toolchain = find_toolchain(fetch=fetch)
    print(toolchain.describe())
    for project in sorted(path.parent.name for path in (Path(__file__).resolve().parent / "native_src")
                          .glob("*/CMakeLists.txt")):
        started = time.perf_counter()
        build = build_project(project, toolchain=toolchain)
        print(f"built {project} in {build} ({time.perf_counter() - started:.1f} s)")
    return toolchain
