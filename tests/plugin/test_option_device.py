"""--device and the gpu marker: without CUDA the gpu tests are left out (deselected, one header
line saying why and what enables them), not skipped; an explicit request that cannot be met
(``--device cuda``, ``-m gpu``) is a usage error."""

from __future__ import annotations

import pytest
from conftest import PROJECT_CONFTEST

from harness.pytest.plugin import CUDA_NOT_AVAILABLE_MSG, GPU_NEEDS_CUDA_DEVICE_MSG

GPU_TESTS = '''
import pytest

@pytest.mark.gpu
def test_on_gpu(gpu_device):
    import torch
    assert torch.zeros(1, device=gpu_device).device.type == "cuda"

@pytest.mark.gpu
def test_on_gpu_too(gpu_device):
    pass

def test_on_cpu(harness_device):
    assert harness_device == "{expected}"
'''


@pytest.fixture
def project(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makeconftest(PROJECT_CONFTEST)
    pytester.makeini("[pytest]\naddopts = --strict-markers -p no:cacheprovider -p no:hypothesispytest "
                     "-p no:benchmark -p no:anyio\n")
    (pytester.path / "definition.json").write_text('{"target": "fake", "modes": {}, "counts": {}}')
    return pytester


@pytest.fixture
def no_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    """Hide every GPU from the inner (subprocess) run, whatever this machine has."""
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")


@pytest.fixture
def fake_gpus(monkeypatch: pytest.MonkeyPatch):
    """Pretend this machine has ``n`` GPUs (in-process runs share the plugin module)."""
    import harness.pytest.plugin

    def set_count(n: int) -> None:
        monkeypatch.setattr(harness.pytest.plugin, "_cuda_device_count", lambda: n)

    return set_count


def test_no_cuda_leaves_gpu_tests_out_with_one_reason(project, fake_gpus):
    fake_gpus(0)
    project.makepyfile(GPU_TESTS.replace("{expected}", "cpu"))
    result = project.runpytest()
    result.assert_outcomes(passed=1, deselected=2)
    result.stdout.fnmatch_lines([
        "harness: 2 case(s) left out, by reason:",
        f"      2 -- {CUDA_NOT_AVAILABLE_MSG}",
    ])
    result.stdout.no_fnmatch_line("*skipped*")
    assert result.ret == 0


def test_no_cuda_for_real_leaves_gpu_tests_out(project, no_cuda):
    """End to end in a fresh interpreter: CUDA_VISIBLE_DEVICES="" hides every GPU from torch."""
    project.makepyfile(GPU_TESTS.replace("{expected}", "cpu"))
    result = project.runpytest_subprocess()
    result.assert_outcomes(passed=1, deselected=2)
    result.stdout.fnmatch_lines([f"      2 -- {CUDA_NOT_AVAILABLE_MSG}"])


def test_gpu_tests_left_out_when_a_cpu_device_is_asked_for(project, fake_gpus):
    fake_gpus(1)
    project.makepyfile(GPU_TESTS.replace("{expected}", "cpu"))
    result = project.runpytest("--device", "cpu")
    result.assert_outcomes(passed=1, deselected=2)
    result.stdout.fnmatch_lines([f"      2 -- {GPU_NEEDS_CUDA_DEVICE_MSG.format(device='cpu')}"])


@pytest.mark.parametrize("markexpr", ["gpu", "gpu and not slow"])
def test_asking_for_gpu_tests_without_cuda_is_a_usage_error(project, fake_gpus, markexpr):
    fake_gpus(0)
    project.makepyfile(GPU_TESTS.replace("{expected}", "cpu"))
    result = project.runpytest("-m", markexpr)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: -m gpu was requested, but {CUDA_NOT_AVAILABLE_MSG}"])
    result.stdout.no_fnmatch_line("*passed*")


def test_not_gpu_without_cuda_runs_the_rest(project, fake_gpus):
    fake_gpus(0)
    project.makepyfile(GPU_TESTS.replace("{expected}", "cpu"))
    project.runpytest("-m", "not gpu").assert_outcomes(passed=1, deselected=2)


def test_explicit_cuda_without_cuda_is_one_line_and_exit_2(project):
    """A CPU-only torch: a one-line error, exit 2 (as harness report and harness peak answer it)."""
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA; the test is about a CPU-only torch")
    project.makepyfile(GPU_TESTS.replace("{expected}", "cpu"))
    result = project.runpytest_subprocess("--device", "cuda:0")
    assert result.ret == 2
    result.stderr.fnmatch_lines(["Exit: --device cuda:0 was requested, but CUDA is unavailable*"])
    result.stdout.no_fnmatch_line("*passed*")


@pytest.mark.parametrize("bad", ["cuda:x", "tpu", "cuda:-1", "cpu:0", "CUDA", ""])
def test_garbage_device_is_a_usage_error(project, bad):
    project.makepyfile(GPU_TESTS.replace("{expected}", "cpu"))
    result = project.runpytest("--device", bad)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: --device {bad!r}: expected cpu, meta, cuda or cuda:N*"])


@pytest.mark.parametrize("device", ["cpu", "meta"])
def test_cpu_and_meta_devices(project, device):
    project.makepyfile(GPU_TESTS.replace("{expected}", device))
    project.runpytest("--device", device, "-k", "on_cpu").assert_outcomes(passed=1, deselected=2)


def test_default_device_is_cpu(project):
    project.makepyfile(GPU_TESTS.replace("{expected}", "cpu"))
    project.runpytest("-k", "on_cpu").assert_outcomes(passed=1, deselected=2)


def test_cuda_index_out_of_range_is_a_usage_error(project, fake_gpus):
    fake_gpus(2)
    project.makepyfile(GPU_TESTS.replace("{expected}", "cpu"))
    result = project.runpytest("--device", "cuda:2")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: --device cuda:2: only 2 CUDA device(s) visible (cuda:0..cuda:1)."])


def test_more_xdist_workers_than_gpus_is_a_usage_error(project, fake_gpus):
    fake_gpus(2)
    project.makepyfile(GPU_TESTS.replace("{expected}", "cpu"))
    result = project.runpytest("-n", "3", "--device", "cuda")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: -n 3 with --device cuda: one xdist worker per GPU, but only 2 visible; "
                                 "use -n 2."])


@pytest.mark.gpu
def test_gpu_tests_run_with_an_explicit_cuda_device(project, gpu_device):
    project.makepyfile(GPU_TESTS.replace("{expected}", gpu_device))
    result = project.runpytest_subprocess("--device", gpu_device)
    result.assert_outcomes(passed=3)


def test_strict_markers_reject_an_unknown_marker(project):
    project.makepyfile("import pytest\n\n@pytest.mark.gpux\ndef test_x():\n    pass\n")
    result = project.runpytest()
    assert result.ret == pytest.ExitCode.INTERRUPTED
    result.stdout.fnmatch_lines(["*'gpux' not found in `markers` configuration option*"])
