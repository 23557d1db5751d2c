"""The notebook-timing plugin gives every lab 60 s and the serving lab the 150 s the syllabus allows."""

from tests.notebook_timing import budget_for


def test_a_lab_gets_sixty_seconds(monkeypatch):
    monkeypatch.delenv("NOTEBOOK_BUDGET_SECONDS", raising=False)
    assert budget_for("solutions/13_native_deployment.ipynb") == 60.0


def test_the_serving_lab_gets_its_own_budget_in_both_folders(monkeypatch):
    monkeypatch.setenv("NOTEBOOK_BUDGET_SECONDS", "30")
    assert budget_for("solutions/14_serving.ipynb") == budget_for("notebooks/14_serving.ipynb") == 150.0
    assert budget_for("notebooks/00_setup.ipynb") == 30.0
