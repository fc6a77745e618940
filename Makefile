# harness: every target runs inside $(VENV) (made by `make setup`).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
DEVICE ?= cuda:0
TORCH_VERSION ?= 2.13.0
OUT ?= out/report
VENDOR_VENV ?= .venv-vendor
MODEL_PATH ?= $(DEEPSEEK_OCR_PATH)

.PHONY: setup test test-gpu test-gpu-all golden golden-vendor report bench vendor-env test-vendor test-vendor-gpu clean

setup: $(VENV)/.installed

# torch first (pinned: a bare `torch` would pull a multi-GB CUDA build), then the project.
$(VENV)/.installed: pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q torch==$(TORCH_VERSION)
	$(PY) -m pip install -q -c constraints.txt -e ".[counters,test]"
	touch $@

test: setup
	$(PY) -m pytest

test-gpu: setup
	$(PY) -m pytest -m gpu --device $(DEVICE)

# One xdist worker per GPU, each pinned to its own device from CUDA_VISIBLE_DEVICES.
NGPU ?= 1
test-gpu-all: setup
	$(PY) -m pytest -m gpu -n $(NGPU) --device cuda

golden: setup
	$(PY) -m pytest --update-golden

report: setup
	$(PY) -m harness report --out $(OUT)

BENCH_DEVICE ?= cpu
bench: setup
	$(PY) -m pytest benchmarks --benchmark-only --benchmark-autosave --device $(BENCH_DEVICE)

# The vendor DeepSeek-OCR remote code needs transformers 4.46.3: a separate environment.
vendor-env:
	VENV=$(VENDOR_VENV) PYTHON=$(PYTHON) TORCH_VERSION=$(TORCH_VERSION) bash scripts/vendor-env.sh

# MODEL_PATH may be anywhere and hold spaces: it travels as one "--model-path=DIR" word, so pytest
# never mistakes it for a test path. `-m vendor` selects dsocr's count facts and the other
# vendor-marked tests; narrow with PYTEST_ADDOPTS="--mode base --page letter".
VENDOR_PYTEST = $(VENDOR_VENV)/bin/python -m pytest -m vendor "--model-path=$(MODEL_PATH)" --trust-remote-code
test-vendor: vendor-env
	$(VENDOR_PYTEST)

test-vendor-gpu: vendor-env
	$(VENDOR_VENV)/bin/python -m pytest -m "gpu and vendor" --device $(DEVICE) "--model-path=$(MODEL_PATH)" --trust-remote-code

golden-vendor: vendor-env
	$(VENDOR_PYTEST) --update-golden

clean:
	rm -rf $(VENV) $(VENDOR_VENV) out .benchmarks fixtures/cache
