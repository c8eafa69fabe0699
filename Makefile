# clvsmim — the two commands that matter: `make book` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
VPY    := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
OUT    ?= _build/clvsmim
export CLVSMIM_CACHE ?= $(CURDIR)/.cache/clvsmim

.PHONY: install book smoke-book test zoo notebooks benchmarks clean

install: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	test -x $(VPY) || $(PYTHON) -m venv $(VENV)
	$(VPY) -m pip install --quiet --upgrade pip
	$(VPY) -m pip install --quiet -r requirements.txt
	$(VPY) -m pip install --quiet --no-deps -e .
	touch $(STAMP)

## Build the whole book on the embedded default (mini profile: trains its own small ViTs offline,
## or installs the shipped, checksum-verified mini zoo from zoo-weights/ when it is there).
book: install
	$(VPY) -m clvsmim zoo install --profile mini --from zoo-weights --if-present
	$(VPY) -m clvsmim book --profile mini --out $(OUT)

## The smoke book (CI): seconds-per-model zoo, every chapter, HTML build.
smoke-book: install
	$(VPY) -m clvsmim book --profile smoke --out _build/smoke

## Run the test suite.
test: install
	$(VPY) -m pytest -q

## Retrain the mini zoo from scratch (in its own cache, never from shipped weights) and export
## it to zoo-weights/ (fp16 safetensors + provenance with sha256), replacing what is shipped.
RETRAIN_CACHE ?= $(CURDIR)/.cache/clvsmim-retrain
zoo: install
	CLVSMIM_CACHE=$(RETRAIN_CACHE) $(VPY) -m clvsmim zoo build --profile mini
	CLVSMIM_CACHE=$(RETRAIN_CACHE) $(VPY) -m clvsmim zoo export --profile mini --out zoo-weights

## Clean, output-free .ipynb renderings of the chapters (for the Colab branch).
notebooks: install
	$(VPY) -m clvsmim notebooks --out _build/notebooks

## Speed benchmarks (print ratios; minutes on a CPU).
benchmarks: install
	$(VPY) benchmarks/data_speed.py
	$(VPY) benchmarks/analysis_speed.py --threads 2
	$(VPY) benchmarks/train_throughput.py --settings mini --precisions fp32,bf16 --steps 3 --threads 2

clean:
	rm -rf _build
