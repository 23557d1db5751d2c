"""Lab 00's exercises: reference answers pass, wrong answers fail, blanks are not attempted."""

import os

from labsupport.exercises import lab00
from labsupport.testing import assert_check_failed, assert_check_passed, assert_check_unattempted


def test_cpu_provider_reference_passes():
    assert_check_passed(lab00.CpuProvider, {"cpu_provider": "CPUExecutionProvider"})


def test_cpu_provider_with_wrong_capitals_is_not_a_listed_name():
    assert_check_failed(lab00.CpuProvider, {"cpu_provider": "cpuExecutionProvider"}, "not one of the provider names")


def test_cpu_provider_that_is_available_but_not_universal_is_rejected():
    assert_check_failed(lab00.CpuProvider, {"cpu_provider": "AzureExecutionProvider"}, "not on every machine")


def test_cpu_provider_must_be_a_string():
    assert_check_failed(lab00.CpuProvider, {"cpu_provider": ["CPUExecutionProvider"]}, "should be a string")


def test_cpu_provider_placeholder_is_not_attempted():
    assert_check_unattempted(lab00.CpuProvider)


def test_usable_cores_reference_passes():
    assert_check_passed(lab00.UsableCores, {"usable_cores": len(os.sched_getaffinity(0))})


def test_usable_cores_too_many_is_reported_as_too_large():
    assert_check_failed(lab00.UsableCores, {"usable_cores": len(os.sched_getaffinity(0)) + 3}, "too large")


def test_usable_cores_as_a_set_is_not_a_number():
    assert_check_failed(lab00.UsableCores, {"usable_cores": os.sched_getaffinity(0)}, "should be a number")


def test_usable_cores_none_is_incorrect_not_unattempted():
    assert_check_failed(lab00.UsableCores, {"usable_cores": None}, "should be a number")


def test_usable_cores_placeholder_is_not_attempted():
    assert_check_unattempted(lab00.UsableCores)
