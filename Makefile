# One entry point. `make book` builds the environment and runs the whole book (default profile);
# `make test` builds the same environment and runs the tests (unit tests + every chapter in the smoke profile).
PYTHON ?= python3
VENV   ?= .venv
PY      = $(VENV)/bin/python
PROFILE ?= default

.PHONY: env book test clean

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev]'
	$(PY) -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (ipykernel)" >/dev/null
	touch $@

env: $(VENV)/.installed

book: env
	$(PY) -m lab book --profile $(PROFILE)

test: env
	$(PY) -m pytest -q

clean:
	rm -rf runs artefacts
