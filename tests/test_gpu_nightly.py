"""The nightly GPU workflow loads on GitHub and its steps run (docs/gpu.md, "The nightly CI job").

* actionlint (with shellcheck on the ``run:`` blocks) and ``zizmor --offline --min-severity medium``
  pass on ``.github/workflows/`` -- the same check as ``make lint-workflows``, which ``.ci/run`` runs
  first and which installs the linters into the dev environment -- and both fail on what GitHub would
  refuse (the runner context in the job's ``env:``, an unpinned action, a persisted token);
* the steps' ``run:`` blocks, read from the workflow, run on CPU (``DEVICE=cpu``, ``SIZE=small``):
  the per-runner folders step for real, the GPU check step for real (scripts/gpu-check.sh, the same
  script a lent GPU machine runs), the others through ``make -n`` and ``bash -n``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
WORKFLOWS = REPO / ".github" / "workflows"
WORKFLOW = WORKFLOWS / "nightly-gpu.yml"
BIN = Path(sys.executable).parent          # the dev environment's scripts (make lint-workflows puts the linters there)
#: Steps whose commands need a GPU and nothing else (they only read the GPU's inventory).
GPU_ONLY = {"gpu": "nvidia-smi reads the GPU inventory"}


@pytest.fixture(scope="module")
def workflow() -> dict:
    yaml = pytest.importorskip("yaml")
    return yaml.safe_load(WORKFLOW.read_text())


def _job(workflow: dict) -> dict:
    return workflow["jobs"]["gpu"]


def _steps(workflow: dict) -> dict[str, dict]:
    return {step.get("id") or step.get("name"): step for step in _job(workflow)["steps"]}


def _linter(name: str) -> str:
    path = BIN / name
    if not path.exists():
        pytest.skip(f"{name} is not installed in {BIN.parent}: `make lint-workflows` installs it (CI runs it first)")
    return str(path)


def _lint(workdir: Path) -> tuple[subprocess.CompletedProcess, subprocess.CompletedProcess]:
    """actionlint and zizmor on ``workdir/.github/workflows`` exactly as ``make lint-workflows`` runs them."""
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", "NO_COLOR": "1"}
    actionlint = subprocess.run([_linter("actionlint"), "-no-color"], cwd=workdir, env=env, capture_output=True, text=True)
    zizmor = subprocess.run([_linter("zizmor"), "--offline", "--min-severity", "medium", ".github/workflows/"],
                            cwd=workdir, env=env, capture_output=True, text=True)
    return actionlint, zizmor


def _copy_of_the_workflows(tmp_path: Path, edit=None) -> Path:
    work = tmp_path / "repo"
    shutil.copytree(REPO / ".github", work / ".github")
    subprocess.run(["git", "init", "-q", str(work)], check=True)   # actionlint finds a project by its git root
    if edit:
        (work / ".github" / "workflows" / WORKFLOW.name).write_text(edit(WORKFLOW.read_text()))
    return work


# ------------------------------------------------------------------------------ the linters
def test_workflows_pass_actionlint_and_zizmor(tmp_path: Path) -> None:
    actionlint, zizmor = _lint(REPO)
    assert actionlint.returncode == 0, actionlint.stdout + actionlint.stderr
    assert zizmor.returncode == 0, zizmor.stdout + zizmor.stderr
    assert "No findings to report" in zizmor.stdout + zizmor.stderr


def test_the_linters_reject_what_github_would_refuse(tmp_path: Path) -> None:
    """The gate can fail: the workflow as it was (runner context in the job's env, @v4 tags, the
    token left in the checkout) fails both linters, each for its named reason."""
    def as_before(text: str) -> str:
        text = text.replace("      CHECK_OUT: out/gpu-check\n",
                            "      CHECK_OUT: out/gpu-check\n      VENV: ${{ github.workspace }}/../venvs/${{ runner.name }}/venv\n")
        text = re.sub(r"actions/checkout@[0-9a-f]{40} # v\S+\n        with:\n          persist-credentials: false\n",
                      "actions/checkout@v4\n", text)
        return re.sub(r"actions/upload-artifact@[0-9a-f]{40} # v\S+", "actions/upload-artifact@v4", text)

    actionlint, zizmor = _lint(_copy_of_the_workflows(tmp_path, as_before))
    assert actionlint.returncode == 1
    assert 'context "runner" is not allowed here' in actionlint.stdout
    assert zizmor.returncode != 0
    out = zizmor.stdout + zizmor.stderr
    assert out.count("unpinned-uses") >= 2 and "artipacked" in out


def test_actions_are_pinned_to_a_commit_with_the_version_beside_it(workflow: dict) -> None:
    uses = re.findall(r"uses:\s*(\S+)(.*)", WORKFLOW.read_text())
    assert {u.split("@")[0] for u, _ in uses} == {"actions/checkout", "actions/upload-artifact"}
    for ref, comment in uses:
        assert re.fullmatch(r"[\w.-]+/[\w.-]+@[0-9a-f]{40}", ref), ref
        assert re.fullmatch(r"\s*# v\d+\.\d+\.\d+", comment), (ref, comment)
    checkout = next(s for s in _job(workflow)["steps"] if s.get("uses", "").startswith("actions/checkout@"))
    assert checkout["with"]["persist-credentials"] is False
    assert workflow["permissions"] == {} and _job(workflow)["permissions"] == {"contents": "read"}
    triggers = workflow.get("on", workflow.get(True))      # YAML 1.1 reads the key `on` as true
    assert set(triggers) == {"schedule", "workflow_dispatch"}   # never pull requests on a self-hosted runner


# ------------------------------------------------------------------------------ the steps on CPU
def _run_block(step: dict, env: dict[str, str], cwd: Path = REPO, timeout: float = 900) -> subprocess.CompletedProcess:
    """A step's ``run:`` block under ``bash -eo pipefail`` (the job's shell), the job's env + ``env``."""
    return subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", step["run"]], cwd=cwd,
                          env={**_runner_environ(), **env}, capture_output=True, text=True, timeout=timeout)


def _runner_environ() -> dict[str, str]:
    """This process's environment less what an xdist worker adds (a runner's shell has none of it:
    the script's own pytest runs would take themselves for xdist workers)."""
    return {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_XDIST_") and k != "PYTEST_CURRENT_TEST"}


def _github_env(path: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in path.read_text().splitlines())


def test_run_blocks_take_everything_through_the_environment(workflow: dict) -> None:
    """No ``${{ }}`` in a ``run:`` block (no template injection; the block runs as written here)."""
    for name, step in _steps(workflow).items():
        if "run" in step:
            assert "${{" not in step["run"], name
            syntax = subprocess.run(["bash", "-n", "-c", step["run"]], capture_output=True, text=True)
            assert syntax.returncode == 0, (name, syntax.stderr)


def test_per_runner_folders_are_outside_the_checkout_and_one_per_runner(workflow: dict, tmp_path: Path) -> None:
    workspace = tmp_path / "_work" / "harness" / "harness"
    workspace.mkdir(parents=True)
    made = {}
    for runner in ("gpu-host-1 H100/80GB", "gpu-host-2"):
        github_env = tmp_path / f"env-{len(made)}"
        github_env.touch()
        done = _run_block(_steps(workflow)["paths"], {"GITHUB_WORKSPACE": str(workspace), "RUNNER_NAME": runner,
                                                      "GITHUB_ENV": str(github_env)}, cwd=workspace)
        assert done.returncode == 0, done.stderr
        made[runner] = _github_env(github_env)
    first, second = made.values()
    assert set(first) == {"VENV", "VENDOR_VENV", "BENCH_STORAGE"}
    for name, path in first.items():
        assert not Path(path).resolve().is_relative_to(workspace), name   # checkout's clean cannot touch it
        assert "gpu-host-1_H100_80GB" in path, path                       # one per runner, a safe name
        assert second[name] != path
    assert len(set(first.values())) == 3


def test_steps_after_set_up_call_make_targets_and_scripts_that_exist(workflow: dict) -> None:
    steps = list(_steps(workflow).items())
    after_setup = steps[[name for name, _ in steps].index("setup") + 1:]
    ran = set()
    for name, step in after_setup:
        if "run" not in step:
            continue
        for target in re.findall(r"\bmake ([a-z][\w-]*)", step["run"]):
            dry = subprocess.run(["make", "-n", target, "VENV=/nonexistent/venv"], cwd=REPO, capture_output=True, text=True)
            assert dry.returncode == 0, (name, target, dry.stderr)
            ran.add(f"make {target}")
        for script in re.findall(r"\bbash (scripts/\S+)", step["run"]):
            assert (REPO / script).is_file(), (name, script)
            ran.add(script)
    assert {"scripts/gpu-check.sh", "make bench-report", "make vendor-env"} <= ran
    assert set(GPU_ONLY) <= {name for name, _ in steps}


@pytest.mark.e2e
@pytest.mark.skipif(bool(os.environ.get("HARNESS_GPU_CHECK")), reason="inside a gpu-check run (it runs this test's script)")
@pytest.mark.skipif(shutil.which("make") is None, reason="make not installed")
def test_gpu_check_step_runs_on_cpu(workflow: dict, tmp_path: Path) -> None:
    """The nightly's GPU check step, as written, with DEVICE=cpu and SIZE=small: scripts/gpu-check.sh
    runs every step (the harness.gpu unit tests, the peak, the stage table for base and gundam on
    the letter page, the benchmarks into this runner's history) and leaves 8 files."""
    out, storage = tmp_path / "check", tmp_path / "bench-history"
    env = {**{k: str(v) for k, v in _job(workflow)["env"].items() if "${{" not in str(v)},
           "DEVICE": "cpu", "SIZE": "small", "VENV": sys.prefix, "CHECK_OUT": str(out), "GPUS": "1",
           "BENCH_STORAGE": str(storage), "BENCH_COMPARE_FAIL": "", "HARNESS_PEAK_TFLOPS": "",
           "HARNESS_PEAK_BANDWIDTH_GBPS": ""}
    assert _job(workflow)["env"]["DEVICE"] == "cuda:0" and _job(workflow)["env"]["SIZE"] == "full"
    done = _run_block(_steps(workflow)["check"], env)
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-3000:]
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["summary.md", "env.txt", "check.log", "junit-suite.xml", "peak.md", "stage-table.md", "benchmarks.json",
         "artifacts.tar.gz"])
    summary = (out / "summary.md").read_text()
    assert "# GPU check: PASS" in summary
    rows = {row.split("|")[1].strip(): row.split("|")[2].strip() for row in summary.splitlines() if row.startswith("| ")}
    assert {rows[s] for s in ("suite", "peak", "stage table", "benchmarks")} == {"0"}, summary
    assert re.search(r"\| suite \| 0 \| \d+ \| [1-9]\d* passed, 0 failed, 0 errors", summary), summary
    table = (out / "stage-table.md").read_text()
    assert "base" in table and "gundam" in table and "MFU" in table
    stages = {b["name"] for b in json.loads((out / "benchmarks.json").read_text())["benchmarks"]}
    assert {"test_stage_latency[sam]", "test_stage_latency[prefill]"} <= stages
    assert list(storage.rglob("*.json")), "the benchmark run was not saved into the runner's history"


@pytest.mark.skipif(shutil.which("make") is None, reason="make not installed")
def test_make_bench_passes_bench_device_and_the_wheel_index() -> None:
    def dry(*args: str) -> str:
        return subprocess.run(["make", "-n", "-B", *args], cwd=REPO, capture_output=True, text=True, check=True).stdout

    bench = [line for line in dry("bench", "BENCH_DEVICE=cuda:0").splitlines() if "pytest benchmarks" in line]
    assert bench and bench[0].rstrip().endswith("--device cuda:0")
    setup = dry("setup", "VENV=/tmp/never-made", "TORCH_INDEX_URL=https://example.invalid/whl/cu128")
    assert "--index-url https://example.invalid/whl/cu128" in setup
