"""The nightly GPU workflow and the Makefile do what docs/gpu.md says (checked from the files, no GPU):
benchmarks on the GPU device, the CUDA wheel index knob, environments outside the checkout, peak
overrides passed through, artifacts uploaded on failure."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
WORKFLOW = REPO / ".github" / "workflows" / "nightly-gpu.yml"


@pytest.fixture(scope="module")
def workflow() -> dict:
    yaml = pytest.importorskip("yaml")
    return yaml.safe_load(WORKFLOW.read_text())


def _steps(workflow: dict) -> dict[str, dict]:
    return {step.get("id") or step.get("name"): step for step in workflow["jobs"]["gpu"]["steps"]}


def test_benchmarks_run_on_the_gpu_device(workflow: dict) -> None:
    bench = _steps(workflow)["bench"]
    assert 'BENCH_DEVICE="$DEVICE"' in bench["run"]
    assert "--device" not in bench.get("env", {}).get("PYTEST_ADDOPTS", "")   # make bench's --device would win
    assert workflow["jobs"]["gpu"]["env"]["DEVICE"] == "cuda:0"


def test_cuda_wheel_index_and_venvs_outside_the_checkout(workflow: dict) -> None:
    env = workflow["jobs"]["gpu"]["env"]
    assert "TORCH_INDEX_URL" in env and "vars.TORCH_INDEX_URL" in env["TORCH_INDEX_URL"]
    for name in ("VENV", "VENDOR_VENV"):
        assert env[name].startswith("${{ github.workspace }}/../"), name   # checkout's clean cannot touch it
    setup = _steps(workflow)["setup"]["run"]
    assert 'VENV="$VENV"' in setup and 'TORCH_INDEX_URL="$TORCH_INDEX_URL"' in setup
    for step in workflow["jobs"]["gpu"]["steps"]:
        assert ".venv/bin" not in step.get("run", ""), step.get("name")


def test_peak_overrides_and_artifacts(workflow: dict) -> None:
    env = workflow["jobs"]["gpu"]["env"]
    assert "HARNESS_PEAK_TFLOPS" in env and "HARNESS_PEAK_BANDWIDTH_GBPS" in env
    report = _steps(workflow)["report"]["run"]
    assert "--measure --device" in report and "--peak-tflops" in report
    upload = next(s for s in workflow["jobs"]["gpu"]["steps"] if s.get("uses", "").startswith("actions/upload-artifact"))
    assert upload["if"] == "always()" and "out/" in upload["with"]["path"]


@pytest.mark.skipif(shutil.which("make") is None, reason="make not installed")
def test_make_bench_passes_bench_device_and_the_wheel_index() -> None:
    def dry(*args: str) -> str:
        return subprocess.run(["make", "-n", "-B", *args], cwd=REPO, capture_output=True, text=True, check=True).stdout

    bench = [line for line in dry("bench", "BENCH_DEVICE=cuda:0").splitlines() if "pytest benchmarks" in line]
    assert bench and bench[0].rstrip().endswith("--device cuda:0")
    setup = dry("setup", "VENV=/tmp/never-made", "TORCH_INDEX_URL=https://example.invalid/whl/cu128")
    assert "--index-url https://example.invalid/whl/cu128" in setup
