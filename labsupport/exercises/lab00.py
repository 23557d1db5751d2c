"""Lab 00 — setup: the exercises that show how checking, hints and solutions work."""

from __future__ import annotations

import difflib
import os

from labsupport.checking import EqualityProblem, Incorrect, ThoughtExperiment, make_binder

LAB = "00_setup"

_DEVICE_NAMES = {"cpu", "cuda", "gpu", "mps", "xpu"}


def usable_core_count() -> int:
    """The number of CPU cores this process may run on, on any operating system.

    ``os.sched_getaffinity`` (Linux and some Unixes) sees a container's or ``taskset``'s
    restriction; where it does not exist (macOS, Windows) ``os.cpu_count()`` is the best
    the standard library of Python 3.11 offers (``os.process_cpu_count`` is 3.13+).
    """
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _typing_distance(typed: str, name: str) -> int:
    """Characters to add or delete to turn ``typed`` into ``name`` (a swap counts two)."""
    matcher = difflib.SequenceMatcher(None, typed, name, autojunk=False)
    matched = sum(block.size for block in matcher.get_matching_blocks())
    return len(typed) + len(name) - 2 * matched


class CpuProvider(EqualityProblem):
    prompt = "name the execution provider that ONNX Runtime has on every machine"
    vars = ("cpu_provider",)
    hints = ("Look at the list `onnxruntime.get_available_providers()` printed above.",
             "Provider names end in `ExecutionProvider`; the one you want runs on the processor.")
    solution = 'cpu_provider = "CPUExecutionProvider"'

    def check(self, cpu_provider):
        import onnxruntime

        if not isinstance(cpu_provider, str):
            raise Incorrect(f"`cpu_provider` should be a string, but it is a {type(cpu_provider).__name__}.")
        available = onnxruntime.get_available_providers()
        known = onnxruntime.get_all_providers()
        if cpu_provider in available:
            if cpu_provider != "CPUExecutionProvider":
                raise Incorrect(f"{cpu_provider!r} is available here, but not on every machine: "
                                "pick the one that runs on the processor.")
            return
        if cpu_provider in known:
            raise Incorrect(f"`cpu_provider` = {cpu_provider!r} is a real ONNX Runtime provider, but this build "
                            "does not include it: `onnxruntime.get_all_providers()` lists every provider ONNX Runtime "
                            "knows, `get_available_providers()` only those this build has. Pick the one every build "
                            "has.")
        if cpu_provider.strip().lower() in {name.lower() for name in known}:
            raise Incorrect(f"`cpu_provider` = {cpu_provider!r} differs from a provider's name only in capitals or "
                            "spaces; copy the name exactly as printed above, including its capitals.")
        if cpu_provider.strip().lower() in _DEVICE_NAMES:
            raise Incorrect(f"`cpu_provider` = {cpu_provider!r} is a device name, as PyTorch writes it, not the "
                            "name of an execution provider; use the provider's full name, as printed above.")
        if any(_typing_distance(cpu_provider.lower(), name.lower()) <= 3 for name in known):
            raise Incorrect(f"`cpu_provider` = {cpu_provider!r} is not a provider ONNX Runtime knows; it looks like a "
                            "misspelling: copy the name exactly from the list printed above.")
        raise Incorrect(f"`cpu_provider` = {cpu_provider!r} is not a provider ONNX Runtime knows "
                        "(`onnxruntime.get_all_providers()` lists them all); copy a name from the list printed above.")


class UsableCores(EqualityProblem):
    prompt = "count the CPU cores this process may run on"
    vars = ("usable_cores",)
    hints = ("`os.cpu_count()` counts the machine's cores, which is not always what this process may use.",
             "On Linux, `os.sched_getaffinity(0)` is the set of cores this process may run on; macOS and Windows "
             "lack it (check with `hasattr`), and there `os.cpu_count()` is the best you can do.")
    solution = ('usable_cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") '
                'else os.cpu_count()')

    def expected_value(self):
        return usable_core_count()

    def check(self, usable_cores):
        expected = self.expected_value()
        machine_cores = os.cpu_count()
        if isinstance(usable_cores, int) and usable_cores == machine_cores != expected:
            raise Incorrect(f"`usable_cores` = {usable_cores} counts the machine's cores, but this process may run on "
                            "fewer; ask the operating system which cores this process may use.")
        super().check(usable_cores)


class WhyPinVersions(ThoughtExperiment):
    prompt = "why does the course pin exact versions of torch, onnx and onnxruntime?"
    solution = (
        "Exporters, the ONNX spec and runtimes move together but not in lockstep: a new exporter may emit a newer "
        "opset than an older runtime implements, and default behaviours change (torch 2.x switched to the "
        "torch.export-based exporter and to external weight files). Pinning the whole stack makes every lab's "
        "numbers reproducible and lets CI prove that they still are; the doctor warns when your versions differ.")


PROBLEMS = {
    "q1": CpuProvider,
    "q2": UsableCores,
    "q3": WhyPinVersions,
}
bind = make_binder(LAB, PROBLEMS)
