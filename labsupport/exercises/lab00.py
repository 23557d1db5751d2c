"""Lab 00 — setup: the exercises that show how checking, hints and solutions work."""

from __future__ import annotations

import os

from labsupport.checking import EqualityProblem, Incorrect, ThoughtExperiment, make_binder

LAB = "00_setup"


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
        if cpu_provider not in available:
            raise Incorrect(f"`cpu_provider` = {cpu_provider!r} is not one of the provider names this runtime lists; "
                            "copy the name exactly, including its capitals.")
        if cpu_provider != "CPUExecutionProvider":
            raise Incorrect(f"{cpu_provider!r} is available here, but not on every machine: pick the one that runs on the processor.")


class UsableCores(EqualityProblem):
    prompt = "count the CPU cores this process may run on"
    vars = ("usable_cores",)
    hints = ("`os.cpu_count()` counts the machine's cores, which is not always what this process may use.",
             "`os.sched_getaffinity(0)` is the set of cores this process may run on; take its length.")
    solution = "usable_cores = len(os.sched_getaffinity(0))"

    def expected_value(self):
        return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


class WhyPinVersions(ThoughtExperiment):
    prompt = "why does the course pin exact versions of torch, onnx and onnxruntime?"
    solution = (
        "Exporters, the ONNX spec and runtimes move together but not in lockstep: a new exporter may emit a newer "
        "opset than an older runtime implements, and default behaviours change (torch 2.x switched to the "
        "torch.export-based exporter and to external weight files). Pinning the whole stack makes every lab's "
        "numbers reproducible and lets CI prove that they still are; the doctor warns when your versions differ.")


PROBLEMS = [CpuProvider, UsableCores, WhyPinVersions]
bind = make_binder(LAB, PROBLEMS)
