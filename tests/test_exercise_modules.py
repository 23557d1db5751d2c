"""What every lab's exercise module must be, checked once across all labs.

Per-lab files (tests/test_exercises_labNN.py) test each problem's reference answer, wrong
answers and placeholder; this file tests the shape of the modules themselves.
"""

import ast
import importlib
import subprocess
import sys

import pytest

from labsupport.checking import ThoughtExperiment, Uncheckable
from labsupport.exercises import LAB_MODULES
from labsupport.testing import evaluate

MODULES = [importlib.import_module(f"labsupport.exercises.{name}") for name in LAB_MODULES]
REVIEW_QUESTIONS = [(module, problem) for module in MODULES for problem in module.PROBLEMS
                    if issubclass(problem, ThoughtExperiment)]
CHECKED = [(module, problem) for module in MODULES for problem in module.PROBLEMS
           if not issubclass(problem, ThoughtExperiment)]


def _ids(pair):
    return f"{pair[0].LAB}.{pair[1].__name__}" if isinstance(pair, tuple) else pair.LAB


@pytest.mark.parametrize("module", MODULES, ids=_ids)
def test_review_questions_come_last(module):
    kinds = [issubclass(problem, ThoughtExperiment) for problem in module.PROBLEMS]
    reviews = sum(kinds)
    assert reviews >= 1, f"{module.LAB} has no review question"
    assert kinds == [False] * (len(kinds) - reviews) + [True] * reviews


@pytest.mark.parametrize("module", [module for module in MODULES if int(module.LAB[:2]) >= 3], ids=_ids)
def test_week_one_labs_have_at_least_four_checked_exercises(module):
    assert sum(not issubclass(problem, ThoughtExperiment) for problem in module.PROBLEMS) >= 4


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
    bound |= {node.name for node in ast.walk(tree) if isinstance(node, ast.FunctionDef)}
    assert set(problem.vars) <= bound, f"the solution of {problem.__name__} does not set {set(problem.vars) - bound}"


@pytest.mark.parametrize("module", MODULES, ids=_ids)
def test_bind_gives_one_view_per_problem_in_order(module):
    views = module.bind({})
    assert [view.name for view in views] == [f"q{number}" for number in range(1, len(module.PROBLEMS) + 1)]
    assert [view.problem_id for view in views] == [problem.problem_id(module.LAB) for problem in module.PROBLEMS]


def test_importing_every_exercise_module_loads_no_framework():
    code = ("import sys\n"
            f"for name in {list(LAB_MODULES)!r}: __import__('labsupport.exercises.' + name)\n"
            "print(','.join(m for m in ('onnx', 'onnxruntime', 'torch', 'tensorflow', 'sklearn') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == ""
