# harness: every target runs inside $(VENV) (made by `make setup`).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
DEVICE ?= cuda:0
TORCH_VERSION ?= 2.13.0
# Where pip finds torch: empty = pip's configured index (PyPI: on Linux x86_64 the CUDA build, torch
# plus the nvidia-* packages and triton); https://download.pytorch.org/whl/cpu = the CPU wheel;
# a CUDA machine may name e.g. https://download.pytorch.org/whl/cu128.
TORCH_INDEX_URL ?=
OUT ?= out/report
VENDOR_VENV ?= .venv-vendor
MODEL_PATH ?= $(DEEPSEEK_OCR_PATH)

.PHONY: setup test test-gpu test-gpu-all golden golden-vendor report report-gpu peak bench bench-report vendor-env test-vendor test-vendor-gpu clean

setup: $(VENV)/.installed

# torch first (pinned: a bare `torch` would pull a multi-GB CUDA build), then the project.
$(VENV)/.installed: pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q torch==$(TORCH_VERSION) $(if $(TORCH_INDEX_URL),--index-url $(TORCH_INDEX_URL))
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

# Stage latency on BENCH_DEVICE (the nightly passes BENCH_DEVICE=cuda:0; nothing else overrides it).
BENCH_DEVICE ?= cpu
bench: setup
	$(PY) -m pytest benchmarks --ignore=benchmarks/test_report_speed.py --benchmark-only --benchmark-autosave --device $(BENCH_DEVICE)

# The report's cost against the number of pages (meta counts; minutes on 2 cores).
bench-report: setup
	$(PY) -m pytest benchmarks/test_report_speed.py --benchmark-only --benchmark-autosave

# Measured time and MFU per stage on DEVICE (the full model; --small for a quick CPU run), with the
# achievable peak measured there, and the roofline on GPU (a peak-table entry) beside it.
GPU ?= H100 SXM5 80GB
report-gpu: setup
	$(PY) -m harness report --modes base,gundam --measure --device $(DEVICE) --gpu "$(GPU)" --out $(OUT)-$(subst :,,$(DEVICE))

peak: setup
	$(PY) -m harness peak --device $(DEVICE)

# The vendor DeepSeek-OCR remote code needs transformers 4.46.3: a separate environment.
vendor-env:
	VENV=$(VENDOR_VENV) PYTHON=$(PYTHON) TORCH_VERSION=$(TORCH_VERSION) TORCH_INDEX_URL=$(TORCH_INDEX_URL) bash scripts/vendor-env.sh

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
