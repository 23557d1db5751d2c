# The two commands of the README: `make lab` and `make test`.
# Both create (or reuse) .venv at the repository root from requirements-lock.txt.

# Python 3.11: the pins (torch 2.13 CPU, TensorFlow 2.21) are for 3.11. Override with PYTHON=...
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# nbval runs each notebook in a kernel of this environment; progress goes to a scratch folder
NBVAL := $(BIN)/python -m pytest --nbval-lax --nbval-current-env -p tests.notebook_timing -p tests.nbval_stderr -q

.PHONY: lab edit test test-unit test-solutions test-notebooks test-lab lint setup system-packages native node web notebooks lock clean

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

# Debian packages the deployment labs need (13: the C++ CLI and custom operator; 14: the C++
# inference service, whose cpp-httplib is found through pkg-config; 15 and the browser test:
# Chromium, and an emoji font so the labs' status icons render). Installed when missing and make
# runs as root; otherwise make prints the one command to run. `make test` needs them; `make lab`
# only reports them.
DEB_PACKAGES := cmake g++ pkg-config libcpp-httplib-dev nlohmann-json3-dev chromium fonts-noto-color-emoji

system-packages:
	@command -v dpkg-query >/dev/null || { echo "note: not a Debian system: labs 13-15 need cmake, a C++17 compiler," \
		"pkg-config, cpp-httplib, nlohmann-json and Chromium; python -m labsupport doctor says what is missing"; \
		exit 0; }; \
	missing=$$(for p in $(DEB_PACKAGES); do dpkg-query -W -f='$${db:Status-Status}' $$p 2>/dev/null | grep -qx installed \
		|| printf ' %s' $$p; done); \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ]; then echo "installing Debian packages:$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends$$missing; \
	else echo "error: labs 13-15 need the Debian packages$$missing; run: sudo apt-get install -y$$missing"; exit 2; fi

# Labs 13-14 build C++ against the onnxruntime wheel's library: find ONNX Runtime's C++ headers
# (ORT_ROOT, the system's, or Debian trixie's libonnxruntime-dev fetched once into the user
# cache) and build the course's C++ projects there. Downloads happen here, never in a lab.
native: $(STAMP) system-packages
	$(BIN)/python -m labsupport native setup

# Lab 13 also runs a model in Node.js: onnxruntime-node installed once into the user cache with
# npm install --ignore-scripts. Without Node.js or npm it prints the fix; outside CI make goes on
# (the lab's Node.js cells explain what is missing), with CI=true it stops.
node: $(STAMP)
	$(BIN)/python -m labsupport node setup || [ "$$CI" != true ]

# Lab 15 and the browser test run a model in headless Chromium with onnxruntime-web, installed
# once into the user cache with npm install --ignore-scripts. Outside CI make goes on without it
# (the lab says what is missing); with CI=true it stops.
web: $(STAMP) system-packages
	$(BIN)/python -m labsupport web setup || [ "$$CI" != true ]

# JupyterLab refuses to start as root unless told; containers often run as root
ALLOW_ROOT := $(if $(filter 0,$(shell id -u)),--allow-root)

# Learners work in a copy outside git's view: make lab never overwrites a notebook already there
WORKSPACE ?= workspace

lab: $(STAMP)
	-@$(MAKE) --no-print-directory system-packages
	-$(BIN)/python -m labsupport native setup
	-$(BIN)/python -m labsupport node setup
	-$(BIN)/python -m labsupport web setup
	$(BIN)/python -m labsupport seed-workspace --workspace "$(WORKSPACE)"
	$(BIN)/jupyter lab "$(WORKSPACE)" $(ALLOW_ROOT) $(LAB_ARGS)

# Authors: open solutions/ (the source of truth) for editing; run `make notebooks` afterwards
edit: $(STAMP)
	$(BIN)/jupyter lab solutions/ $(ALLOW_ROOT) $(LAB_ARGS)

test: lint test-unit test-solutions test-notebooks

lint: $(STAMP)
	$(BIN)/ruff check labsupport tests

test-unit: $(STAMP) native node web
	$(BIN)/python -m pytest tests

# One lab while you write it: make test-lab LAB=03 (its exercise tests, then both notebooks)
test-lab: $(STAMP) native node web
	@test -n "$(LAB)" || { echo "error: say which lab, e.g. make test-lab LAB=03"; exit 2; }
	@ls solutions/$(LAB)_*.ipynb >/dev/null 2>&1 || { echo "error: no solutions/$(LAB)_*.ipynb; labs are $$(ls solutions | cut -c1-2 | tr '\n' ' ')"; exit 2; }
	$(BIN)/python -m labsupport build-notebooks --check --lab $(LAB)
	$(BIN)/python -m pytest tests/test_exercises_lab$(LAB).py -q
	$(BIN)/python -m pytest tests/test_hints.py tests/test_course_text.py tests/test_solution_texts.py \
		tests/test_exercise_modules.py tests/test_hygiene.py -q -k "$(LAB)_ or lab$(LAB)"
	LABSUPPORT_STRICT=1 LABSUPPORT_EXPECT_SOLVED=1 $(NBVAL) solutions/$(LAB)_*.ipynb
	$(NBVAL) notebooks/$(LAB)_*.ipynb

test-solutions: $(STAMP) native node web
	LABSUPPORT_STRICT=1 LABSUPPORT_EXPECT_SOLVED=1 $(NBVAL) solutions

test-notebooks: $(STAMP) native node web
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
