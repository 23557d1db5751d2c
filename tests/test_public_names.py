"""Each labsupport module's ``__all__`` is its deliberate public surface: it names only what exists,
and everything that notebooks and the lab modules import from labsupport is in it.

The exercise modules (``labsupport.exercises.labNN``) are the exception: a notebook binds them
whole (``lab03.bind(globals())``) and reaches their reference builders as attributes, so every
top-level name of theirs is public by design.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import pkgutil
from pathlib import Path

import nbformat
import pytest

import labsupport

ROOT = Path(__file__).resolve().parent.parent
MODULES = sorted(["labsupport"] + [info.name for info in pkgutil.walk_packages(labsupport.__path__, "labsupport.")
                                   if not info.name.endswith("__main__")
                                   and not info.name.startswith("labsupport.exercises.lab")])


def _imports_from_labsupport(code: str, where: str) -> list[tuple[str, str, str]]:
    """(module, name, where) for every ``from labsupport… import name`` in ``code``."""
    found = []
    for node in ast.walk(ast.parse(code)):
        if (isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("labsupport")
                and node.level == 0):
            found += [(node.module, alias.name, where) for alias in node.names]
    return found


def _all_imports() -> list[tuple[str, str, str]]:
    imports = []
    for path in sorted((ROOT / "solutions").glob("*.ipynb")):
        for cell in nbformat.read(str(path), as_version=4).cells:
            if cell.cell_type == "code":
                imports += _imports_from_labsupport(cell.source, path.name)
    for path in sorted((ROOT / "labsupport").rglob("*.py")):
        imports += _imports_from_labsupport(path.read_text(), str(path.relative_to(ROOT)))
    return imports


@pytest.mark.parametrize("module_name", MODULES)
def test_every_module_declares_all_and_every_name_in_it_exists(module_name):
    module = importlib.import_module(module_name)
    assert hasattr(module, "__all__"), f"{module_name} has no __all__"
    missing = [name for name in module.__all__ if not hasattr(module, name)]
    assert not missing, f"{module_name}.__all__ names what the module does not define: {missing}"
    assert len(set(module.__all__)) == len(module.__all__), f"{module_name}.__all__ lists a name twice"


@pytest.mark.parametrize("module_name, name, where", _all_imports(), ids=lambda value: str(value))
def test_what_notebooks_and_lab_modules_import_is_public(module_name, name, where):
    if module_name.startswith("labsupport.exercises.lab"):
        return
    module = importlib.import_module(module_name)
    if hasattr(module, "__path__") and importlib.util.find_spec(f"{module_name}.{name}"):
        return  # a submodule, e.g. `from labsupport.exercises import lab03`
    assert not name.startswith("_") or name == "____", f"{where} imports the private {module_name}.{name}"
    assert name in module.__all__, f"{where} imports {module_name}.{name}, which is not in its __all__"
