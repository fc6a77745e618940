"""The stage-measurement driver on CPU with toy stages: rows, decode contexts, KV-cache resets."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
import torch

from harness.gpu.measure import decode_label, kv_cache_reset, measure_calls, profile_stages, run_calls
from harness.gpu.peaks import ResolvedPeak

PEAK = ResolvedPeak("cpu", "fp32", 1.0, 10.0, "test override")


@dataclass
class ToyCall:
    fn: object
    args: tuple = ()
    kwargs: dict = field(default_factory=dict)

    def __call__(self):
        return self.fn(*self.args, **self.kwargs)


class ToyCache:
    """Grows by one token per decode call, like DynamicCache."""

    def __init__(self, length: int) -> None:
        self.length = length
        self.crops: list[int] = []

    def get_seq_length(self) -> int:
        return self.length

    def crop(self, n: int) -> None:
        assert n < 0, "transformers 5.x: crop(-k) removes k tokens; a positive length is an error"
        self.crops.append(n)
        self.length += n


@dataclass(frozen=True)
class ToyCost:
    matmul_flops: int
    total_bytes: int


class ToyTarget:
    name = "toy"
    stages = ("encoder", "decode")

    def __init__(self) -> None:
        self.seen: list[tuple[str, object]] = []
        self.caches: list[ToyCache] = []

    def stage_calls(self, built, inputs, stage, *, decode_context=None):
        self.seen.append((stage, decode_context))
        if stage == "decode":
            cache = ToyCache(decode_context)
            self.caches.append(cache)

            def step(past_key_values):
                assert past_key_values.length == decode_context  # every repeat sees the same context
                past_key_values.length += 1
            return [ToyCall(step, kwargs={"past_key_values": cache})]
        return [ToyCall(torch.mm, (torch.ones(8, 8), torch.ones(8, 8)))]


def costs(context):
    decode = ToyCost(2 * (context or 0), 100)
    return {"encoder": ToyCost(1024, 768), "decode": decode}


def test_profile_rows_and_decode_contexts():
    target = ToyTarget()
    rows = profile_stages(target, None, None, costs=costs, peak=PEAK, device="cpu",
                          decode_contexts=(16, 64), warmup=1, repeats=3)
    assert [r.stage for r in rows] == ["encoder", "decode@16", "decode@64"]
    assert target.seen == [("encoder", None), ("decode", 16), ("decode", 64)]
    assert rows[0].flops == 1024 and rows[0].bytes == 768   # 8 x 8 x 8 x 2
    assert rows[2].flops == 128                              # costs(64)["decode"]
    assert all(r.timing.repeats == 3 and r.timing.clock == "perf_counter" for r in rows)
    # 1 warm-up + 3 repeats each grew the cache by one and were cropped back before the next call
    assert target.caches[0].crops == [-1, -1, -1]


def test_profile_unknown_stage():
    with pytest.raises(ValueError, match="unknown stage"):
        profile_stages(ToyTarget(), None, None, costs=costs, peak=PEAK, device="cpu", stages=["clip"])


def test_run_calls_is_inference_mode():
    seen = []
    run_calls([ToyCall(lambda: seen.append(torch.is_inference_mode_enabled()))])()
    assert seen == [True]
    with pytest.raises(ValueError):
        run_calls([])


def test_no_cache_no_reset():
    assert kv_cache_reset([ToyCall(lambda x: x, (1,))]) is None


def test_reset_crops_a_real_dynamic_cache():
    from transformers import DynamicCache

    cache = DynamicCache()
    kv = torch.zeros(1, 2, 5, 4)
    cache.update(kv, kv, layer_idx=0)
    reset = kv_cache_reset([ToyCall(lambda past_key_values: None, kwargs={"past_key_values": cache})])
    one = torch.zeros(1, 2, 1, 4)
    cache.update(one, one, layer_idx=0)
    assert cache.get_seq_length() == 6
    reset()
    assert cache.get_seq_length() == 5


def test_measure_calls_times_the_calls():
    timing = measure_calls([ToyCall(lambda: None)], warmup=0, repeats=2, device=None)
    assert timing.repeats == 2
    assert decode_label(4096) == "decode@4096"
