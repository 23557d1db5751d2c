# The two commands of the README: `make lab` and `make test`.
# Both create (or reuse) .venv at the repository root from requirements-lock.txt.

# Python 3.11: the pins (torch 2.13 CPU, TensorFlow 2.21) are for 3.11. Override with PYTHON=...
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# nbval runs each notebook in a kernel of this environment; progress goes to a scratch folder
NBVAL := $(BIN)/python -m pytest --nbval-lax --nbval-current-env -p tests.notebook_timing -p tests.nbval_stderr -q

.PHONY: lab edit test test-unit test-solutions test-notebooks test-lab lint setup notebooks lock clean

setup: $(STAMP)

$(STAMP): requirements-lock.txt pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else \
		"error: $(PYTHON) is Python %d.%d; the course needs 3.11: run make PYTHON=/path/to/python3.11" % sys.version_info[:2])'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements-lock.txt
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	$(BIN)/python -m labsupport doctor --quiet
	@touch $@

# JupyterLab refuses to start as root unless told; containers often run as root
ALLOW_ROOT := $(if $(filter 0,$(shell id -u)),--allow-root)

# Learners work in a copy outside git's view: make lab never overwrites a notebook already there
WORKSPACE ?= workspace

lab: $(STAMP)
	$(BIN)/python -m labsupport seed-workspace --workspace "$(WORKSPACE)"
	$(BIN)/jupyter lab "$(WORKSPACE)" $(ALLOW_ROOT) $(LAB_ARGS)

# Authors: open solutions/ (the source of truth) for editing; run `make notebooks` afterwards
edit: $(STAMP)
	$(BIN)/jupyter lab solutions/ $(ALLOW_ROOT) $(LAB_ARGS)

test: lint test-unit test-solutions test-notebooks

lint: $(STAMP)
	$(BIN)/ruff check labsupport tests

test-unit: $(STAMP)
	$(BIN)/python -m pytest tests

# One lab while you write it: make test-lab LAB=03 (its exercise tests, then both notebooks)
test-lab: $(STAMP)
	@test -n "$(LAB)" || { echo "error: say which lab, e.g. make test-lab LAB=03"; exit 2; }
	@ls solutions/$(LAB)_*.ipynb >/dev/null 2>&1 || { echo "error: no solutions/$(LAB)_*.ipynb; labs are $$(ls solutions | cut -c1-2 | tr '\n' ' ')"; exit 2; }
	$(BIN)/python -m labsupport build-notebooks --check --lab $(LAB)
	$(BIN)/python -m pytest tests/test_exercises_lab$(LAB).py -q
	$(BIN)/python -m pytest tests/test_hints.py tests/test_course_text.py tests/test_solution_texts.py \
		tests/test_exercise_modules.py tests/test_hygiene.py -q -k "$(LAB)_ or lab$(LAB)"
	LABSUPPORT_STRICT=1 LABSUPPORT_EXPECT_SOLVED=1 $(NBVAL) solutions/$(LAB)_*.ipynb
	$(NBVAL) notebooks/$(LAB)_*.ipynb

test-solutions: $(STAMP)
	LABSUPPORT_STRICT=1 LABSUPPORT_EXPECT_SOLVED=1 $(NBVAL) solutions

test-notebooks: $(STAMP)
	$(NBVAL) notebooks

# make notebooks LAB=03 regenerates that lab only
notebooks: $(STAMP)
	$(BIN)/python -m labsupport build-notebooks $(if $(LAB),--lab $(LAB))

lock: $(STAMP)
	{ echo "# Exact versions CI and \`make lab\`/\`make test\` install (pip install -r requirements-lock.txt)."; \
	  echo "# Regenerate: make lock (after changing pyproject.toml's dependencies). torch is the CPU wheel."; \
	  $(BIN)/python -m pip freeze --all --exclude-editable | grep -v '^pip==' | sed 's/+cpu$$//' | sort -f; } > requirements-lock.txt.new
	mv requirements-lock.txt.new requirements-lock.txt

clean:
	rm -rf $(VENV) .pytest_cache
