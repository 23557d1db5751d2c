"""The three places that pin the course stack agree: pyproject.toml, requirements-lock.txt and
environment.yml (the conda recipe)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parent.parent


def normalise(name: str) -> str:
    """PEP 503 names: case, `_`, `.` and `-` do not matter (tensorflow_cpu is tensorflow-cpu)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def exact_pin(text: str) -> tuple[str, str]:
    """(normalised name, version) of a ``name==version`` requirement; fail on anything looser."""
    requirement = Requirement(text)
    specifiers = list(requirement.specifier)
    assert len(specifiers) == 1 and specifiers[0].operator == "==", f"{text!r} is not pinned with =="
    return normalise(requirement.name), specifiers[0].version


def read_lock() -> dict[str, str]:
    lines = (ROOT / "requirements-lock.txt").read_text().splitlines()
    return dict(exact_pin(line) for line in lines if line.strip() and not line.startswith("#"))


def read_pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def conda_pip_section() -> list[str]:
    recipe = yaml.safe_load((ROOT / "environment.yml").read_text())
    (pip_section,) = [entry["pip"] for entry in recipe["dependencies"] if isinstance(entry, dict)]
    return pip_section


def pyproject_requirements() -> list[str]:
    project = read_pyproject()
    return project["dependencies"] + project["optional-dependencies"]["test"]


def test_the_lock_pins_every_package_exactly_once():
    lines = [line for line in (ROOT / "requirements-lock.txt").read_text().splitlines()
             if line.strip() and not line.startswith("#")]
    names = [exact_pin(line)[0] for line in lines]
    assert len(names) == len(set(names))


@pytest.mark.parametrize("requirement", conda_pip_section())
def test_environment_yml_pins_agree_with_the_lock(requirement):
    name, version = exact_pin(requirement)
    locked = read_lock().get(name)
    assert locked == version, f"environment.yml pins {requirement}; the lock has {locked}"


@pytest.mark.parametrize("requirement", pyproject_requirements())
def test_pyproject_dependencies_are_pinned_and_agree_with_the_lock(requirement):
    name, version = exact_pin(requirement)
    locked = read_lock().get(name)
    assert locked == version, f"pyproject.toml pins {requirement}; the lock has {locked}"


def test_environment_yml_lists_every_pyproject_dependency():
    conda = {exact_pin(requirement) for requirement in conda_pip_section()}
    assert {exact_pin(requirement) for requirement in pyproject_requirements()} <= conda


def test_environment_yml_uses_the_python_of_the_course():
    recipe = yaml.safe_load((ROOT / "environment.yml").read_text())
    assert "python=3.11" in recipe["dependencies"]
    assert read_pyproject()["requires-python"] == ">=3.11,<3.12"


def test_torch_is_pinned_to_2_13_0_everywhere():
    assert read_lock()["torch"] == "2.13.0"
    assert "torch==2.13.0" in read_pyproject()["dependencies"]
    assert "torch==2.13.0" in conda_pip_section()
