"""scripts/gpu-check.sh's contract, beyond the full CPU run of tests/test_gpu_nightly.py (which runs it
through the nightly workflow's step): bad input and an environment that cannot run the check are
refused up front with exit 2 and a summary that says why; an output folder holding anything but a
previous check's files is never touched; ``make gpu-bundle``'s wheelhouse is pure Python, under the
device's 64 MiB, described by bundle.json, installed offline, and never replaces a folder it did not
write."""

from __future__ import annotations

import json
import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "gpu-check.sh"


def check(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items()      # as from a shell: no xdist worker's variables
           if k != "PYTHONPATH" and not k.startswith("PYTEST_XDIST_") and k != "PYTEST_CURRENT_TEST"}
    return subprocess.run(["bash", str(SCRIPT), *args], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture(scope="module")
def bare_python(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A real interpreter without torch (a fresh venv, no packages)."""
    where = tmp_path_factory.mktemp("bare") / "venv"
    venv.create(where, with_pip=False)
    return str(where / "bin" / "python")


@pytest.mark.parametrize(("args", "named"), [
    (["--device", "tpu"], "--device 'tpu'"),
    (["--size", "huge"], "--size 'huge'"),
    (["--device", "cpu", "--suite", "gpu"], "--suite gpu needs --device cuda:N"),
    (["--device", "cpu", "--gpus", "2"], "--gpus 2 needs --device cuda"),
    (["--budget", "soon"], "--budget 'soon'"),
    (["--python", "/nonexistent/python3"], "--python '/nonexistent/python3'"),
    (["--frobnicate"], "unknown argument '--frobnicate'"),
])
def test_bad_input_is_exit_2_naming_it(args: list[str], named: str, tmp_path: Path) -> None:
    done = check(*args, "--out", str(tmp_path / "out"))
    assert done.returncode == 2
    assert named in done.stderr
    assert not (tmp_path / "out").exists()     # refused before anything is written


def test_help_lists_the_options() -> None:
    done = check("--help")
    assert done.returncode == 0
    for option in ("--device", "--small", "--wheels", "--budget", "--suite", "--bench-storage", "--make-bundle"):
        assert option in done.stdout


def test_an_out_folder_holding_other_files_is_refused_untouched(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    done = check("--device", "cpu", "--small", "--python", sys.executable, "--out", str(out))
    assert done.returncode == 2 and "not a gpu-check's output" in done.stderr
    assert [p.name for p in out.iterdir()] == ["notes.txt"] and (out / "notes.txt").read_text() == "mine"


def test_an_environment_without_torch_is_refused_up_front(bare_python: str, tmp_path: Path) -> None:
    """Exit 2 before any step, the reason first in summary.md; a second run replaces only its own
    files; a file of someone else's beside them stops the third."""
    out = tmp_path / "out"
    for _ in range(2):
        done = check("--device", "cpu", "--small", "--python", bare_python, "--out", str(out))
        assert done.returncode == 2, done.stderr
        assert sorted(p.name for p in out.iterdir()) == ["check.log", "env.txt", "summary.md"]
        summary = (out / "summary.md").read_text()
        assert "**torch does not import" in summary and "| environment | 2 |" in summary
        assert "| suite |" not in summary
    (out / "notes.txt").write_text("mine")
    done = check("--device", "cpu", "--small", "--python", bare_python, "--out", str(out))
    assert done.returncode == 2 and "holds 'notes.txt'" in done.stderr
    assert (out / "notes.txt").read_text() == "mine" and (out / "summary.md").exists()


@pytest.mark.e2e
@pytest.mark.skipif(bool(os.environ.get("HARNESS_GPU_CHECK")), reason="inside a gpu-check run")
def test_cuda_without_cuda_is_refused_before_any_step(tmp_path: Path) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    done = check("--device", "cuda:0", "--python", sys.executable, "--out", str(tmp_path / "out"))
    assert done.returncode == 2
    summary = (tmp_path / "out" / "summary.md").read_text()
    assert "cannot see CUDA" in summary and "| suite |" not in summary


@pytest.mark.e2e
@pytest.mark.skipif(bool(os.environ.get("HARNESS_GPU_CHECK")), reason="inside a gpu-check run")
def test_gpu_bundle_is_pure_python_listed_and_installed_offline(tmp_path: Path) -> None:
    """--make-bundle (make gpu-bundle, here without transformers to stay small): pure-Python wheels of
    the project and what the GPU machine lacks, each listed with its size and sha256, < 64 MiB; a
    second bundle replaces only the files the first listed; the check installs them with pip
    --no-index and runs the checkout's code with them."""
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "README.txt").write_text("mine")
    done = check("--make-bundle", str(bundle), "--python", sys.executable, "--bundle-without-transformers")
    assert done.returncode == 2 and "not a gpu-bundle's" in done.stderr
    (bundle / "README.txt").unlink()

    for _ in range(2):
        done = check("--make-bundle", str(bundle), "--python", sys.executable, "--bundle-without-transformers")
        assert done.returncode == 0, done.stdout + done.stderr
    doc = json.loads((bundle / "bundle.json").read_text())
    wheels = {w["file"]: w for w in doc["wheels"]}
    names = {f.split("-")[0].lower() for f in wheels}
    assert names == {"harness", "pypdf", "fvcore", "yacs", "termcolor", "iopath", "ultralytics_thop"}
    assert sorted(p.name for p in bundle.iterdir()) == sorted([*wheels, "bundle.json"])
    for name, w in wheels.items():
        assert name.endswith("-none-any.whl")
        data = (bundle / name).read_bytes()
        assert len(data) == w["bytes"] and hashlib.sha256(data).hexdigest() == w["sha256"]
    assert doc["total_bytes"] == sum(w["bytes"] for w in wheels.values()) < 64 * 2**20
    assert doc["pyproject_sha256"] == hashlib.sha256((REPO / "pyproject.toml").read_bytes()).hexdigest()

    # installed offline: the probe runs with them (and stops at CUDA on a CPU machine)
    import torch

    if torch.cuda.is_available():
        return
    out = tmp_path / "out"
    done = check("--device", "cuda:0", "--python", sys.executable, "--wheels", str(bundle), "--out", str(out))
    assert done.returncode == 2
    summary, env = (out / "summary.md").read_text(), (out / "env.txt").read_text()
    assert "| wheels | 0 | | 7 wheels installed offline" in summary
    assert f"harness imported from: {REPO / 'harness'}" in env     # the checkout's code, the wheel's metadata
    assert "another pyproject.toml" not in summary
