"""``count_variants``: every variant of a counter from one model run, equal to the separate runs.

fvcore traces each call once and reads the graph with each variant's handle table; thop runs each
call once with both rule sets observed. Each StageCount must equal ``count(counter, calls,
variant=v)`` field by field (everything but the wall time): on the small configuration on CPU (real
tensors, every stage) and at full size on meta (Base, a few stages), for DeepSeek-OCR-2.
"""

from __future__ import annotations

import importlib

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from harness.measure import count, count_variants
from tests.toys import Call

VARIANTS = ("stock", "patched")
SHARED = ("fvcore", "thop")


def _fields(result) -> dict:
    data = result.to_dict()
    data.pop("wall_time_s")
    return data


def _assert_same_as_separate(counter: str, calls: list, stage: str) -> dict:
    shared = count_variants(counter, calls, variants=VARIANTS, target="t", stage=stage, strict=False)
    assert list(shared) == list(VARIANTS)
    for variant in VARIANTS:
        alone = count(counter, calls, variant=variant, target="t", stage=stage, strict=False)
        assert _fields(shared[variant]) == _fields(alone), (counter, stage, variant)
        assert shared[variant].variant == variant
    return shared


# DeepSeek-OCR-2 ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def ocr2_small_cpu(tmp_path_factory):
    pytest.importorskip("transformers.models.deepseek_ocr2")
    from harness.analytic import LETTER_PAGE
    from harness.targets import get_target

    target = get_target("ocr2")
    built = target.build("cpu", small=True)
    inputs = target.prepare(LETTER_PAGE, "small", device="cpu")
    return target, built, inputs


@pytest.fixture(scope="module")
def ocr2_full_meta():
    pytest.importorskip("transformers.models.deepseek_ocr2")
    from harness.analytic import LETTER_PAGE
    from harness.targets import get_target

    target = get_target("ocr2")
    built = target.build("meta")
    inputs = target.prepare(LETTER_PAGE, "base", device="meta")
    return target, built, inputs


@pytest.mark.parametrize("counter", SHARED)
def test_ocr2_small_cpu_shared_run_equals_separate_runs(ocr2_small_cpu, counter):
    target, built, inputs = ocr2_small_cpu
    for stage in ("sam", "encoder", "projector", "prefill", "decode"):
        _assert_same_as_separate(counter, target.stage_calls(built, inputs, stage), stage)


@pytest.mark.parametrize("counter", SHARED)
def test_ocr2_full_meta_shared_run_equals_separate_runs(ocr2_full_meta, counter):
    """Projector and prefill at full size (decode: through the engine, in tests/test_engine.py)."""
    from harness.run.modelrun import run_measurement

    target, built, inputs = ocr2_full_meta
    for stage in ("projector", "prefill"):
        # at the suite's measurement boundary, as the engine measures (the same counts, faster)
        shared = run_measurement(built.model, lambda: _assert_same_as_separate(
            counter, target.stage_calls(built, inputs, stage), stage))
        assert shared["patched"].flops > 10**8  # a real stage, not an empty one (projector: 0.59 GFLOPs)


def test_ocr2_variants_differ_where_the_tools_differ(ocr2_small_cpu):
    """The shared run keeps the variants apart: stock fvcore and thop miss work patched counts."""
    target, built, inputs = ocr2_small_cpu
    calls = target.stage_calls(built, inputs, "sam")
    fv = count_variants("fvcore", calls, strict=False)
    assert fv["stock"].unseen and not fv["patched"].unseen          # SDPA: no stock handle
    assert fv["patched"].flops > fv["stock"].flops
    assert fv["stock"].patches == () and fv["patched"].patches
    th = count_variants("thop", calls, strict=False)
    assert th["patched"].by_key.get("norm", 0) != th["stock"].by_key.get("norm", 0)  # custom norm rules


# the vendor DeepSeek-OCR (its LM runs on CPU; small LM so the default vendor run stays fast) --------

@pytest.fixture(scope="module")
def dsocr_small(model_path):
    from harness.analytic import LETTER_PAGE
    from harness.targets import get_target

    target = get_target("dsocr", model_path, trust_remote_code=True)
    built = target.build("meta", small=True)
    inputs = target.prepare(LETTER_PAGE, "gundam", device="meta")
    return target, built, inputs


@pytest.mark.vendor
@pytest.mark.parametrize("counter", SHARED)
@pytest.mark.parametrize("stage", ("clip", "projector", "prefill", "decode"))
def test_dsocr_shared_run_equals_separate_runs(dsocr_small, counter, stage):
    """The vendor LM's counts depend on the routing (experts that got tokens); one shared run
    and two separate runs see the same routing, so every field matches."""
    target, built, inputs = dsocr_small
    _assert_same_as_separate(counter, target.stage_calls(built, inputs, stage), stage)


# one trace, one forward ----------------------------------------------------------------------------

class _Block(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(8, 8)
        self.norm = nn.LayerNorm(8)
        self.act = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q = self.proj(x).view(2, 5, 2, 4).transpose(1, 2)
        y = F.scaled_dot_product_attention(q, q, q).transpose(1, 2).reshape(2, 5, 8)
        return self.act(self.norm(y @ self.proj.weight))


def test_fvcore_traces_each_call_once(monkeypatch):
    jit_analysis = importlib.import_module("fvcore.nn.jit_analysis")
    original = jit_analysis._get_scoped_trace_graph
    traced = []

    def counting(module, inputs, aliases):
        traced.append(module)
        return original(module, inputs, aliases)

    monkeypatch.setattr(jit_analysis, "_get_scoped_trace_graph", counting)
    calls = [Call(_Block(), (torch.randn(2, 5, 8),)), Call(_Block(), (torch.randn(2, 5, 8),), module_path="b2")]
    shared = count_variants("fvcore", calls, strict=False)
    assert len(traced) == 2                                    # one trace per call, both variants
    assert jit_analysis._get_scoped_trace_graph is counting    # the supplied graph is put back
    traced.clear()
    for variant in VARIANTS:
        assert _fields(count("fvcore", calls, variant=variant, strict=False)) == _fields(shared[variant])
    assert len(traced) == 4                                    # separately: one per call and variant
    # SDPA, which stock fvcore has no handle for: 2 calls x 2 x B*H*L*S*(dq+dv) MACs
    assert shared["patched"].flops - shared["stock"].flops == 2 * 2 * (2 * 2 * 5 * 5 * (4 + 4))


def test_thop_runs_each_call_once():
    block = _Block()
    runs = []
    handle = block.register_forward_hook(lambda *_: runs.append(1))
    try:
        calls = [Call(block, (torch.randn(2, 5, 8),))]
        shared = count_variants("thop", calls)
        assert len(runs) == 1
        for variant in VARIANTS:
            assert _fields(count("thop", calls, variant=variant, strict=False)) == _fields(shared[variant])
        assert len(runs) == 3
    finally:
        handle.remove()
    assert shared["patched"].by_key["activation"] == 8 * 2 * 5 * 8  # GELU: harness 8 FLOPs/element
    assert "activation" not in shared["stock"].by_key                 # stock thop: no GELU rule
    assert not hasattr(block, "total_ops") and not hasattr(block.norm, "total_ops")


class _MatmulNorm(nn.Module):
    """A module the patched thop rules cover (its name ends in RMSNorm) that runs a product:
    stock thop counts the product (no rule on the module), patched hides it (a ruled module)."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(8, 8))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.weight


_MatmulNorm.__name__ = "ToyRMSNorm"


def test_thop_stock_hidden_by_a_patched_rule_is_run_again():
    calls = [Call(nn.Sequential(nn.Linear(8, 8), _MatmulNorm()), (torch.randn(3, 8),))]
    shared = _assert_same_as_separate("thop", calls, "toy")
    assert shared["stock"].flops == 2 * (3 * 8 * 8 + 3 * 8 * 8)        # Linear + the product inside
    assert shared["patched"].unseen                                      # hidden from patched thop


# the API -------------------------------------------------------------------------------------------

def test_count_variants_default_counter_runs_each_variant():
    calls = [Call(nn.Linear(8, 4), (torch.randn(3, 8),))]
    shared = count_variants("torch", calls, variants=("patched",))
    assert list(shared) == ["patched"]
    assert shared["patched"].flops == 2 * 3 * 8 * 4
    assert shared["patched"].stage == "toy"


def test_count_variants_rejects_bad_input():
    calls = [Call(nn.Linear(8, 4), (torch.randn(3, 8),))]
    with pytest.raises(ValueError, match="Unknown variant 'stok'.*Did you mean 'stock'"):
        count_variants("fvcore", calls, variants=("stok",))
    with pytest.raises(ValueError, match="no variants"):
        count_variants("fvcore", calls, variants=())
    with pytest.raises(ValueError, match="no calls"):
        count_variants("thop", [], stage="x")
