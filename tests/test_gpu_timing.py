"""time_stage on the host clock with dummy callables (CPU); the CUDA-event path is in test_gpu_cuda.py."""

from __future__ import annotations

import time

import pytest

from harness.gpu.timing import TimingResult, time_stage, timing_from_samples


class Counter:
    def __init__(self) -> None:
        self.calls = 0
        self.resets = 0

    def __call__(self) -> None:
        self.calls += 1

    def reset(self) -> None:
        self.resets += 1


def test_warmup_and_repeats_are_counted():
    call = Counter()
    result = time_stage(call, warmup=2, repeats=5, reset=call.reset)
    assert call.calls == 7          # 2 warm-up + 5 timed
    assert call.resets == 7         # reset before every call, warm-up included
    assert result.repeats == 5 and result.warmup == 2
    assert result.clock == "perf_counter" and result.device == "cpu"
    assert all(t >= 0 for t in result.times_s)


def test_host_clock_measures_a_sleep():
    result = time_stage(lambda: time.sleep(0.01), warmup=0, repeats=3)
    assert 0.009 <= result.median_s < 0.5


def test_explicit_cpu_device_uses_host_clock():
    result = time_stage(lambda: None, warmup=0, repeats=1, device="cpu")
    assert result.clock == "perf_counter" and result.device == "cpu"


def test_reset_is_not_timed():
    result = time_stage(lambda: None, warmup=0, repeats=3, reset=lambda: time.sleep(0.02))
    assert result.max_s < 0.015


@pytest.mark.parametrize("warmup, repeats", [(-1, 3), (0, 0), (1.5, 3), (True, 3), (0, None)])
def test_bad_counts(warmup, repeats):
    with pytest.raises(ValueError):
        time_stage(lambda: None, warmup=warmup, repeats=repeats)


def test_not_callable():
    with pytest.raises(TypeError, match="zero-argument callable"):
        time_stage(42)


def test_cuda_device_without_cuda_is_an_error(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(RuntimeError, match="CUDA is not available"):
        time_stage(lambda: None, device="cuda:0")


def test_summary_statistics_by_hand():
    result = timing_from_samples([0.004, 0.001, 0.003, 0.002, 0.010])
    # sorted: 1, 2, 3, 4, 10 ms
    assert result.median_s == pytest.approx(0.003)
    assert result.mean_s == pytest.approx(0.004)            # 20 / 5
    assert (result.min_s, result.max_s) == (0.001, 0.010)
    # quartiles by linear interpolation at positions (5-1)*0.25 = 1 and (5-1)*0.75 = 3: 2 ms and 4 ms
    assert result.q1_s == pytest.approx(0.002)
    assert result.q3_s == pytest.approx(0.004)
    assert result.iqr_s == pytest.approx(0.002)
    assert result.relative_spread == pytest.approx(2 / 3)    # 2 ms / 3 ms
    # sample stdev: deviations -3,-2,-1,0,6 ms; squares 9+4+1+0+36 = 50; 50/4 = 12.5 -> 3.5355 ms
    assert result.stdev_s == pytest.approx(0.0035355, rel=1e-4)


def test_even_count_quartiles():
    result = timing_from_samples([1.0, 2.0, 3.0, 4.0])
    # median (2+3)/2; q1 at position 0.75 -> 1.75; q3 at 2.25 -> 3.25
    assert (result.median_s, result.q1_s, result.q3_s) == (2.5, 1.75, 3.25)


def test_single_sample():
    result = timing_from_samples([0.5])
    assert (result.median_s, result.iqr_s, result.stdev_s) == (0.5, 0.0, 0.0)


def test_invalid_results():
    with pytest.raises(ValueError):
        TimingResult((), 0, "perf_counter", "cpu")
    with pytest.raises(ValueError):
        TimingResult((-1.0,), 0, "perf_counter", "cpu")


def test_as_dict_round_trips_the_samples():
    data = timing_from_samples([0.1, 0.3]).as_dict()
    assert data["times_s"] == [0.1, 0.3] and data["median_s"] == pytest.approx(0.2)
