"""The harness pytest plugin: one option group, the markers, and the gating of gpu/vendor tests.

Registered from the root ``conftest.py``. (Skeleton: the golden machinery is added by the
verification-suite work.)
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

VENDOR_ENV_VAR = "DEEPSEEK_OCR_PATH"
VENDOR_SKIP_REASON = (
    "vendor DeepSeek-OCR tests need a local model directory: pass --model-path DIR "
    f"(or set {VENDOR_ENV_VAR}) and --trust-remote-code, in the vendor environment (make vendor-env)"
)


def pytest_addoption(parser: pytest.Parser) -> None:
    """Add the ``harness`` option group."""
    group = parser.getgroup("harness", "DeepSeek-OCR FLOP verification harness")
    group.addoption("--device", action="store", dest="harness_device", default=None,
                    help="device for measured runs: cpu, meta or cuda:N (default: cpu; gpu tests need cuda:N)")
    group.addoption("--update-golden", action="store_true", dest="harness_update_golden", default=False,
                    help="regenerate golden JSON snapshots from this run instead of comparing")
    group.addoption("--model-path", action="store", dest="harness_model_path", default=None,
                    help=f"local DeepSeek-OCR directory (config.json + remote code); default ${VENDOR_ENV_VAR}")
    group.addoption("--trust-remote-code", action="store_true", dest="harness_trust_remote_code", default=False,
                    help="allow executing the Python files of --model-path (required for vendor tests)")


def pytest_configure(config: pytest.Config) -> None:
    """Register the markers (strict markers are on in pyproject)."""
    config.addinivalue_line("markers", "gpu: needs a CUDA device (run with -m gpu --device cuda:N)")
    config.addinivalue_line("markers", "vendor: needs the vendor DeepSeek-OCR directory (--model-path) and its environment")
    config.addinivalue_line("markers", "slow: takes more than a few seconds")


def vendor_model_path(config: pytest.Config) -> Path | None:
    """The vendor directory from --model-path or the environment, or None."""
    value = config.getoption("harness_model_path") or os.environ.get(VENDOR_ENV_VAR)
    return Path(value).expanduser() if value else None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip vendor tests with one clear reason when no vendor directory is given."""
    if vendor_model_path(config) is None or not config.getoption("harness_trust_remote_code"):
        skip = pytest.mark.skip(reason=VENDOR_SKIP_REASON)
        for item in items:
            if "vendor" in item.keywords:
                item.add_marker(skip)


@pytest.fixture(scope="session")
def model_path(pytestconfig: pytest.Config) -> Path:
    """The vendor model directory (vendor tests only)."""
    path = vendor_model_path(pytestconfig)
    if path is None:
        pytest.skip(VENDOR_SKIP_REASON)
    return path
