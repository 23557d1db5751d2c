"""Lab 00's exercises: reference answers pass, wrong answers fail, blanks are not attempted."""

import os

import onnxruntime
import pytest

from labsupport.exercises import lab00
from labsupport.testing import assert_check_failed, assert_check_passed, assert_check_unattempted, solution_answer

CPU_BUILD_PROVIDERS = ["AzureExecutionProvider", "CPUExecutionProvider"]  # what the pinned CPU wheel lists


@pytest.fixture
def cpu_build(monkeypatch):
    """ONNX Runtime as the course's CPU wheel reports it, whatever build runs the tests."""
    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: list(CPU_BUILD_PROVIDERS))


def test_cpu_provider_reference_passes():
    assert_check_passed(lab00.CpuProvider, {"cpu_provider": solution_answer(lab00.CpuProvider)})


def test_cpu_provider_with_wrong_capitals_is_told_to_copy_the_capitals(cpu_build):
    assert_check_failed(lab00.CpuProvider, {"cpu_provider": "cpuExecutionProvider"}, "only in capitals")


def test_cpu_provider_real_but_absent_is_told_this_build_lacks_it(cpu_build):
    assert_check_failed(lab00.CpuProvider, {"cpu_provider": "CUDAExecutionProvider"},
                        "is a real ONNX Runtime provider, but this build does not include it")


def test_cpu_provider_real_but_absent_message_names_both_listing_functions(cpu_build):
    from labsupport.testing import evaluate

    message = evaluate(lab00.CpuProvider, {"cpu_provider": "CUDAExecutionProvider"}).message
    assert "get_all_providers()" in message and "get_available_providers()" in message
    assert "copy the name exactly" not in message


def test_cpu_provider_misspelling_is_called_a_misspelling(cpu_build):
    assert_check_failed(lab00.CpuProvider, {"cpu_provider": "CPUExcutionProvider"}, "looks like a misspelling")


def test_cpu_provider_device_name_is_told_it_is_a_device_not_a_provider(cpu_build):
    assert_check_failed(lab00.CpuProvider, {"cpu_provider": "cpu"}, "is a device name")


def test_cpu_provider_unknown_name_points_at_the_full_list(cpu_build):
    assert_check_failed(lab00.CpuProvider, {"cpu_provider": "FastestExecutionProvider"},
                        "is not a provider ONNX Runtime knows (`onnxruntime.get_all_providers()`")


def test_cpu_provider_that_is_available_but_not_universal_is_rejected(cpu_build):
    assert_check_failed(lab00.CpuProvider, {"cpu_provider": "AzureExecutionProvider"}, "not on every machine")


def test_cpu_provider_gpu_on_a_gpu_build_is_available_but_not_universal(monkeypatch):
    monkeypatch.setattr(onnxruntime, "get_available_providers",
                        lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    assert_check_failed(lab00.CpuProvider, {"cpu_provider": "CUDAExecutionProvider"}, "not on every machine")


def test_cpu_provider_messages_never_name_the_answer(cpu_build):
    from labsupport.testing import evaluate

    for wrong in ("cpu", "CUDAExecutionProvider", "cpuexecutionprovider", "CPUExcutionProvider", "Nope"):
        assert "CPUExecutionProvider" not in evaluate(lab00.CpuProvider, {"cpu_provider": wrong}).message


def test_cpu_provider_must_be_a_string():
    assert_check_failed(lab00.CpuProvider, {"cpu_provider": ["CPUExecutionProvider"]}, "should be a string")


def test_cpu_provider_placeholder_is_not_attempted():
    assert_check_unattempted(lab00.CpuProvider)


def test_usable_cores_reference_passes():
    assert_check_passed(lab00.UsableCores, {"usable_cores": solution_answer(lab00.UsableCores, os=os)})


def test_usable_cores_solution_and_check_work_without_sched_getaffinity(monkeypatch):
    monkeypatch.delattr(os, "sched_getaffinity", raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 6)
    answer = solution_answer(lab00.UsableCores, os=os)
    assert answer == 6
    assert_check_passed(lab00.UsableCores, {"usable_cores": answer})


def test_usable_cores_machine_count_under_an_affinity_limit_is_told_why(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0}, raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 4)
    assert_check_failed(lab00.UsableCores, {"usable_cores": 4}, "counts the machine's cores")


def test_usable_cores_too_many_is_reported_as_too_large():
    assert_check_failed(lab00.UsableCores, {"usable_cores": lab00.usable_core_count() + 3}, "too large")


def test_usable_cores_as_a_set_is_not_a_number():
    assert_check_failed(lab00.UsableCores, {"usable_cores": {0, 1}}, "should be a number")


def test_usable_cores_none_is_incorrect_not_unattempted():
    assert_check_failed(lab00.UsableCores, {"usable_cores": None}, "should be a number")


def test_usable_cores_placeholder_is_not_attempted():
    assert_check_unattempted(lab00.UsableCores)
