"""What every lab's exercise module must be, checked once across all labs.

Per-lab files (tests/test_exercises_labNN.py) test each problem's reference answer, wrong
answers and placeholder; this file tests the shape of the modules themselves.
"""

import ast
import importlib
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from labsupport.checking import ThoughtExperiment, Uncheckable, bind_problems
from labsupport.exercises import LAB_MODULES
from labsupport.testing import evaluate

ROOT = Path(__file__).resolve().parent.parent
MODULES = [importlib.import_module(f"labsupport.exercises.{name}") for name in LAB_MODULES]


def _problems(module) -> dict:
    """Label → problem class, as the notebook sees them."""
    return {view.name: type(view.problem) for view in module.bind({})}


REVIEW_QUESTIONS = [(module, problem) for module in MODULES for problem in _problems(module).values()
                    if issubclass(problem, ThoughtExperiment)]
CHECKED = [(module, problem) for module in MODULES for problem in _problems(module).values()
           if not issubclass(problem, ThoughtExperiment)]


def _ids(pair):
    return f"{pair[0].LAB}.{pair[1].__name__}" if isinstance(pair, tuple) else pair.LAB


@pytest.mark.parametrize("module", MODULES, ids=_ids)
def test_problems_are_declared_under_stable_labels(module):
    assert isinstance(module.PROBLEMS, dict), (f"{module.LAB}: PROBLEMS should map labels to classes "
                                               "({'q1': ..., 'q2': ...}), so that no exercise is named by its position")
    assert all(re.fullmatch(r"q[1-9]\d*", label) for label in module.PROBLEMS), list(module.PROBLEMS)
    assert sum(issubclass(problem, ThoughtExperiment) for problem in _problems(module).values()) >= 1, (
        f"{module.LAB} has no review question")


def test_adding_an_exercise_renames_no_other():
    class First(ThoughtExperiment):
        prompt = "one"

    class Inserted(ThoughtExperiment):
        prompt = "new"

    class Second(ThoughtExperiment):
        prompt = "two"

    before = bind_problems("lab", {"q1": First, "q2": Second}, {})
    after = bind_problems("lab", {"q1": First, "q3": Inserted, "q2": Second}, {})
    assert {view.name: type(view.problem) for view in before}.items() <= {
        view.name: type(view.problem) for view in after}.items()
    assert [view.problem_id for view in after] == ["lab.First", "lab.Inserted", "lab.Second"]


def test_bind_defines_each_label_in_the_namespace_and_names_its_problem():
    namespace: dict = {}
    MODULES[0].bind(namespace)
    for label, problem in _problems(MODULES[0]).items():
        assert namespace[label].problem.__class__ is problem
        assert problem.__name__ in repr(namespace[label])
        assert f"tests/test_exercises_{MODULES[0].__name__.rsplit('.', 1)[-1]}.py" in repr(namespace[label])


@pytest.mark.parametrize("module", MODULES, ids=_ids)
def test_notebook_exercise_headings_are_followed_by_their_own_check(module):
    cells = nbformat.read(str(ROOT / "solutions" / f"{module.LAB}.ipynb"), as_version=4).cells
    for index, cell in enumerate(cells):
        for number in (re.findall(r"^#+ Exercise (\d+)\b", cell.source, flags=re.M)
                       if cell.cell_type == "markdown" else ()):
            following = next((later.source for later in cells[index + 1:] if later.cell_type == "code"
                              and re.search(r"\bq\d+\.check\(\)", later.source)), "")
            assert f"q{number}.check()" in following, (
                f"{module.LAB}: the heading 'Exercise {number}' is followed by {following.strip()!r}, "
                f"not q{number}.check()")
            assert f"q{number}" in _problems(module), f"{module.LAB}: 'Exercise {number}' has no label q{number}"


@pytest.mark.parametrize("module", MODULES, ids=_ids)
def test_test_file_banners_name_the_label_and_class_the_module_declares(module):
    path = ROOT / "tests" / f"test_exercises_{module.__name__.rsplit('.', 1)[-1]}.py"
    text = path.read_text()
    assert not re.search(r"^# (Exercise|Q)\d", text, flags=re.M), f"{path.name}: banners read '# qN ClassName'"
    problems = _problems(module)
    for label, name in re.findall(r"^# (q\d+) (\w+)", text, flags=re.M):
        assert label in problems and problems[label].__name__ == name, (
            f"{path.name}: the banner '{label} {name}' does not match the module's {label}")


@pytest.mark.parametrize("module", [module for module in MODULES if int(module.LAB[:2]) >= 3], ids=_ids)
def test_week_one_labs_have_at_least_four_checked_exercises(module):
    assert sum(not issubclass(problem, ThoughtExperiment) for problem in _problems(module).values()) >= 4


@pytest.mark.parametrize("pair", REVIEW_QUESTIONS, ids=_ids)
def test_review_questions_are_uncheckable_with_a_model_answer(pair):
    _, problem = pair
    assert evaluate(problem, {}).status == "uncheckable"
    with pytest.raises(Uncheckable):
        problem().check()
    assert problem.prompt and len(problem.solution.split()) > 40


@pytest.mark.parametrize("pair", CHECKED, ids=_ids)
def test_checked_exercises_have_a_prompt_two_hints_and_a_solution_assigning_their_variables(pair):
    _, problem = pair
    assert problem.prompt and problem.vars and len(problem.hints) >= 2
    tree = ast.parse(problem.solution)
    bound = {node.id for node in ast.walk(tree) if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store)}
    bound |= {node.name for node in ast.walk(tree) if isinstance(node, (ast.FunctionDef, ast.ClassDef))}
    assert set(problem.vars) <= bound, f"the solution of {problem.__name__} does not set {set(problem.vars) - bound}"


@pytest.mark.parametrize("module", MODULES, ids=_ids)
def test_bind_gives_one_view_per_problem_in_declared_order(module):
    views = module.bind({})
    assert [view.name for view in views] == list(module.PROBLEMS)
    assert [view.problem_id for view in views] == [problem.problem_id(module.LAB)
                                                   for problem in _problems(module).values()]


def test_importing_every_exercise_module_loads_no_framework():
    code = ("import sys\n"
            f"for name in {list(LAB_MODULES)!r}: __import__('labsupport.exercises.' + name)\n"
            "print(','.join(m for m in ('onnx', 'onnxruntime', 'torch', 'tensorflow', 'sklearn') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == ""
