"""Counters on small hand-built modules, each against a hand derivation written beside it.

FLOPs = 2 x MACs. fvcore and thop report MACs (``raw``); ``flops`` is 2 x raw. Every expected
value below is derived from the shapes in the comment above it, the way PyTorch's
test_flop_counter.py writes ``# 2 * 4 * 6 * 5 = 240``.
"""

from __future__ import annotations


import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tests.toys import COUNTERS, VARIANTS, Call
from harness.measure import (StageCount, UncountedOpError, available_counters,
                              count, get_counter, is_matmul_like, register_counter)
from harness.measure.base import Counter
from harness.verify import KNOWN_BLIND_SPOTS

DEVICES = ("cpu", "meta")




def run(counter: str, module: nn.Module, *args, variant: str = "patched", device: str = "cpu",
        path: str = "blk", strict: bool = False, **kwargs) -> StageCount:
    module = module.to(device)
    args = tuple(a.to(device) if isinstance(a, torch.Tensor) else a for a in args)
    kwargs = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in kwargs.items()}
    return count(counter, [Call(module, args, kwargs, path)], variant=variant, strict=strict,
                 target="toy", stage="toy")


# Registry ---------------------------------------------------------------------------------------

def test_registered_counters():
    assert set(COUNTERS) <= set(available_counters())
    assert get_counter("torch").convention == "flop"
    assert get_counter("fvcore").convention == "mac"
    assert get_counter("thop").convention == "mac"


def test_duplicate_registration_is_an_error():
    class Again(Counter):
        name = "torch"

        def version(self):
            return "x"

        def run(self, calls, *, variant):
            raise AssertionError

    with pytest.raises(RuntimeError, match="duplicate registrations for counter 'torch'"):
        register_counter(Again)


def test_unknown_counter_suggests_close_names():
    with pytest.raises(KeyError, match=r"Did you mean: 'fvcore'\?\nAvailable: fvcore, thop, torch"):
        get_counter("fvcor")
    with pytest.raises(KeyError, match="Available:"):
        count("nope", [Call(nn.Linear(2, 2), (torch.ones(1, 2),))])


def test_unknown_variant_and_bad_calls():
    with pytest.raises(ValueError, match="Did you mean 'patched'"):
        count("torch", [Call(nn.Linear(2, 2), (torch.ones(1, 2),))], variant="pached")
    with pytest.raises(ValueError, match="no calls"):
        count("torch", [])
    with pytest.raises(TypeError, match="lacks"):
        count("torch", [object()])


# Linear / Conv / einsum / matmul / F.linear ---------------------------------------------------------

@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("counter", COUNTERS)
def test_linear(counter, device):
    for variant in VARIANTS:          # stock and patched see the same work here
        result = run(counter, nn.Linear(5, 6), torch.randn(4, 5), variant=variant, device=device)
        # 2 * 4 * 5 * 6 = 240 (bias adds are not counted by any of the three)
        assert result.flops == 240
        assert result.raw == (240 if counter == "torch" else 120)
        assert result.by_key == {"linear": 240}
        assert result.by_module["blk"] == 240
        assert result.complete


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("counter", COUNTERS)
def test_conv2d(counter, device):
    for variant in VARIANTS:          # stock and patched see the same work here
        conv = nn.Conv2d(3, 4, kernel_size=3, padding=1, bias=False)
        result = run(counter, conv, torch.randn(2, 3, 8, 8), variant=variant, device=device)
        # 2 * batch 2 * (4 * 3 * 3 * 3) weights * (8 * 8) outputs = 27648
        assert result.flops == 27648
        assert result.by_key == {"conv": 27648}


class RelPos(nn.Module):
    def forward(self, q, table):
        return torch.einsum("bhwc,hkc->bhwk", q, table)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("counter", COUNTERS)
def test_einsum(counter, device):
    for variant in VARIANTS:          # stock and patched see the same work here
        result = run(counter, RelPos(), torch.randn(2, 3, 4, 5), torch.randn(3, 6, 5), variant=variant, device=device)
        # SAM's rel-pos einsum: 2 * b2 * h3 * w4 * k6 * c5 = 1440
        assert result.flops == 1440
        assert result.by_key == {"einsum": 1440}


class EagerAttention(nn.Module):
    """Eager attention through torch.matmul, with a softmax between the two products."""

    def forward(self, q, k, v):
        scores = torch.matmul(q, k.transpose(-1, -2))
        return scores.softmax(-1) @ v


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("counter", COUNTERS)
def test_eager_attention_matmuls(counter, device):
    for variant in VARIANTS:          # stock and patched see the same work here
        q, k, v = torch.randn(2, 3, 5, 8), torch.randn(2, 3, 7, 8), torch.randn(2, 3, 7, 4)
        result = run(counter, EagerAttention(), q, k, v, variant=variant, device=device)
        # QK^T: 2 * B2 * H3 * Lq5 * Lk7 * d8 = 3360; AV: 2 * 2 * 3 * 5 * 7 * dv4 = 1680
        assert result.by_key.get("matmul_qk") == 3360
        assert result.by_key.get("matmul_av") == 1680
        assert result.matmul_flops == 3360 + 1680


class Router(nn.Module):
    """A MoE gate: F.linear in fp32 outside any nn.Linear."""

    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(8, 6))

    def forward(self, x):
        return F.linear(x.float(), self.weight.float()).softmax(-1)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("counter", COUNTERS)
def test_functional_linear_gate(counter, device):
    for variant in VARIANTS:          # stock and patched see the same work here
        result = run(counter, Router(), torch.randn(10, 6), variant=variant, device=device)
        # 2 * tokens 10 * hidden 6 * experts 8 = 960
        assert result.by_key == {"linear_functional": 960}


# SDPA with and without a mask, on meta and on CPU --------------------------------------------------

class Sdpa(nn.Module):
    def forward(self, q, k, v, mask=None):
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)


QKV = ((2, 3, 5, 8), (2, 3, 7, 8), (2, 3, 7, 8))
# QK^T: 2 * B2 * H3 * Lq5 * Lk7 * d8 = 3360; AV the same: 3360
SDPA_QK = SDPA_AV = 3360
MASKS = {"none": None, "float": torch.randn(2, 3, 5, 7), "bool": torch.ones(5, 7, dtype=torch.bool)}


def _sdpa_inputs():
    torch.manual_seed(0)
    return [torch.randn(s) for s in QKV]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("counter", COUNTERS)
def test_sdpa_patched(counter, device):
    for mask in sorted(MASKS):                # no mask, a float mask, a bool mask: the same work
        result = run(counter, Sdpa(), *_sdpa_inputs(), variant="patched", device=device, strict=True,
                     mask=MASKS[mask])
        assert result.by_key == {"sdpa_qk": SDPA_QK, "sdpa_av": SDPA_AV}, mask
        assert result.flops == SDPA_QK + SDPA_AV, mask


@pytest.mark.parametrize("mask", sorted(MASKS))
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("counter", COUNTERS)
def test_sdpa_stock(counter, device, mask):
    result = run(counter, Sdpa(), *_sdpa_inputs(), variant="stock", device=device, mask=MASKS[mask])
    blind = (counter == "torch" and device == "cpu") or counter == "fvcore"
    if blind:  # stock torch on CPU tensors and stock fvcore anywhere: 0, reported with its size
        assert result.flops == 0
        assert result.unseen == {"sdpa_qk": SDPA_QK, "sdpa_av": SDPA_AV}
        assert result.uncounted_matmul_ops  # the op that ran without a formula is named
        with pytest.raises(UncountedOpError, match="ran matmul-class work it did not count"):
            run(counter, Sdpa(), *_sdpa_inputs(), variant="stock", device=device, strict=True, mask=MASKS[mask])
    else:  # torch on meta (math path, bmm) and thop 2.2.3 (functional rule) count it
        assert result.by_key == {"sdpa_qk": SDPA_QK, "sdpa_av": SDPA_AV}
        assert result.complete


# A hand-written MoE layer ----------------------------------------------------------------------

class Expert(nn.Module):
    def __init__(self, hidden, inter):
        super().__init__()
        self.gate_proj = nn.Linear(hidden, inter, bias=False)
        self.up_proj = nn.Linear(hidden, inter, bias=False)
        self.down_proj = nn.Linear(inter, hidden, bias=False)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class TinyMoE(nn.Module):
    """v1-style MoE: F.linear gate, a loop over the experts that received tokens, a shared expert."""

    def __init__(self, hidden=6, inter=4, n_experts=4, top_k=2):
        super().__init__()
        self.top_k = top_k
        self.gate = Router.__new__(Router)
        nn.Module.__init__(self.gate)
        self.gate.weight = nn.Parameter(torch.randn(n_experts, hidden))
        self.experts = nn.ModuleList(Expert(hidden, inter) for _ in range(n_experts))
        self.shared_experts = Expert(hidden, 2 * inter)

    def forward(self, x):
        scores = self.gate(x)
        weights, index = scores.topk(self.top_k, dim=-1)
        out = torch.zeros_like(x)
        for e, expert in enumerate(self.experts):
            rows, slot = torch.where(index == e)
            if rows.numel():
                out[rows] += expert(x[rows]) * weights[rows, slot, None]
        return out + self.shared_experts(x)


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("counter", COUNTERS)
def test_tiny_moe(counter, variant):
    torch.manual_seed(0)
    result = run(counter, TinyMoE(), torch.randn(10, 6), variant=variant)
    # gate: 2 * 10 tokens * 6 * 4 experts = 480
    # routed: 10 tokens * top-2 = 20 token-expert pairs, each 3 products of 6x4: 2 * 20 * 3 * 24 = 2880
    # shared: 10 tokens, 3 products of 6x8: 2 * 10 * 3 * 48 = 2880
    assert result.by_key.get("linear_functional") == 480
    assert result.by_key.get("experts") == 2880
    assert result.by_key.get("linear") == 2880
    assert result.matmul_flops == 480 + 2880 + 2880


def _ocr2_moe(impl: str):
    transformers = pytest.importorskip("transformers")
    from transformers.models.deepseek_ocr2.configuration_deepseek_ocr2 import DeepseekOcr2TextConfig
    from transformers.models.deepseek_ocr2.modeling_deepseek_ocr2 import DeepseekOcr2TextMoe

    config = DeepseekOcr2TextConfig(hidden_size=16, moe_intermediate_size=8, n_routed_experts=4,
                                    num_experts_per_tok=2, n_shared_experts=1, num_hidden_layers=1,
                                    num_attention_heads=2, intermediate_size=32, n_group=1, topk_group=1)
    config._experts_implementation = impl
    torch.manual_seed(0)
    moe = DeepseekOcr2TextMoe(config)
    for p in moe.parameters():
        nn.init.normal_(p, std=0.1)
    return moe


# OCR-2's text MoE (transformers 5): 6 tokens, top-2 of 4 experts, hidden 16, expert width 8
#   gate (F.linear fp32):  2 * 6 * 16 * 4 = 768
#   experts: 12 token-expert pairs * (gate_up 16->16 + down 8->16): 2 * 12 * (256 + 128) = 9216
#   shared expert (width 8, nn.Linear): 2 * 6 * 3 * 16 * 8 = 4608
OCR2_MOE = {"linear_functional": 768, "experts": 9216, "linear": 4608}


@pytest.mark.parametrize("impl", ["eager", "batched_mm", "grouped_mm"])
@pytest.mark.parametrize("counter", COUNTERS)
def test_ocr2_text_moe(counter, impl):
    moe = _ocr2_moe(impl)
    x = torch.randn(1, 6, 16)
    patched = run(counter, moe, x, variant="patched", path="model.language_model.layers.1.mlp", strict=True)
    assert {k: patched.by_key.get(k) for k in OCR2_MOE} == OCR2_MOE
    stock = run(counter, moe, x, variant="stock", path="model.language_model.layers.1.mlp")
    if impl == "grouped_mm":  # no counter's stock has a formula for torch._grouped_mm
        assert "experts" not in stock.by_key
        assert stock.unseen == {"experts": 9216}
    else:
        assert {k: stock.by_key.get(k) for k in OCR2_MOE} == OCR2_MOE
    # by_module holds everything the counter counted there: thop's patched SiLU rule adds
    # 4 FLOPs * 12 pairs * 8 = 384 element-wise FLOPs to the experts module
    assert patched.by_module["model.language_model.layers.1.mlp.experts"] == 9216 + (384 if counter == "thop" else 0)


def test_ocr2_moe_grouped_mm_strict_patched_is_complete():
    moe = _ocr2_moe("grouped_mm")
    result = run("torch", moe, torch.randn(1, 6, 16), variant="patched", strict=True)
    assert any("_grouped_mm" in line for line in result.patches)


# Conventions and reports ---------------------------------------------------------------------------

def test_mac_counters_keep_raw_and_convert():
    for counter in ("fvcore", "thop"):
        result = run(counter, nn.Linear(5, 6), torch.randn(4, 5))
        # 4 * 5 * 6 = 120 MACs -> 240 FLOPs
        assert (result.raw, result.convention, result.flops) == (120, "mac", 240)
        assert "raw 120 MACs" in str(result)


def test_elementwise_kept_apart_from_matmul():
    block = nn.Sequential(nn.LayerNorm(8), nn.Linear(8, 8), nn.GELU())
    x = torch.randn(3, 8)
    thop_patched = run("thop", block, x, variant="patched")
    # matmul: 2 * 3 * 8 * 8 = 384; LayerNorm 5 FLOPs * 24 elements = 120; GELU 8 * 24 = 192
    assert thop_patched.matmul_flops == 384
    assert thop_patched.by_key["norm"] == 120
    assert thop_patched.by_key["activation"] == 192
    thop_stock = run("thop", block, x, variant="stock")
    # thop's own LayerNorm rule: 2 * 24 elements, x2 with affine = 96 MACs -> 192 FLOPs; GELU: no rule
    assert thop_stock.by_key == {"linear": 384, "norm": 192}
    assert thop_stock.unknown_ops == {"module:GELU": 1}
    fv = run("fvcore", block, x, variant="stock")
    # fvcore's layer_norm handle: 5 per element with affine = 120 "flops" (MACs) -> 240 FLOPs
    assert fv.by_key == {"linear": 384, "norm": 240}
    assert run("torch", block, x).by_key == {"linear": 384}


def test_module_paths_carry_the_stage_path():
    model = nn.Sequential(nn.Linear(4, 4), nn.Sequential(nn.Linear(4, 2)))
    x = torch.randn(3, 4)
    for counter in COUNTERS:
        result = run(counter, model, x, path="model.vision_tower")
        # 2 * 3 * 4 * 4 = 96 and 2 * 3 * 4 * 2 = 48
        assert result.by_module["model.vision_tower.0"] == 96, counter
        assert result.by_module["model.vision_tower.1.0"] == 48, counter
        assert result.by_module["model.vision_tower"] == 144, counter


class KeywordOnly(nn.Module):
    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(4, 4)

    def forward(self, *, images, scale: float):
        return self.proj(images) * scale


@pytest.mark.parametrize("counter", COUNTERS)
def test_keyword_inputs(counter):
    # fvcore traces positional inputs only and thop passes positional inputs: both need the wrapper
    result = run(counter, KeywordOnly(), images=torch.randn(3, 4), scale=2.0)
    # 2 * 3 * 4 * 4 = 96
    assert result.flops == 96


def test_stage_of_several_calls_sums():
    linear = nn.Linear(4, 4)
    calls = [Call(linear, (torch.randn(3, 4),)), Call(linear, (torch.randn(5, 4),))]
    for counter in COUNTERS:
        result = count(counter, calls)
        # 2 * (3 + 5) * 4 * 4 = 256
        assert result.flops == 256, counter


def test_kv_cache_argument_is_not_mutated_between_runs():
    class GrowingCache:
        def __init__(self):
            self.length = 0

        def get_seq_length(self):
            return self.length

        def update(self):
            self.length += 1

    class Decoder(nn.Module):
        def __init__(self):
            super().__init__()
            self.proj = nn.Linear(4, 4)

        def forward(self, x, cache):
            cache.update()
            return self.proj(x.expand(cache.length, 4))

    cache = GrowingCache()
    call = Call(Decoder(), (torch.randn(1, 4), cache))
    flops = [count(c, [call]).flops for c in COUNTERS for _ in range(2)]
    # every run sees a cache of length 0 grown to 1: 2 * 1 * 4 * 4 = 32
    assert flops == [32] * 6
    assert cache.length == 0


def test_is_matmul_like():
    for name in ("aten.mm.default", "aten::_grouped_mm", "aten._scaled_dot_product_flash_attention_for_cpu",
                 "transformers::grouped_mm_fallback", "aten::_convolution", "aten.baddbmm", "aten::einsum",
                 "function:torch.matmul", "module:Conv2d"):
        assert is_matmul_like(name), name
    for name in ("aten.add.Tensor", "aten::upsample_bilinear2d", "aten.mean.dim", "aten::layer_norm",
                 "aten._softmax", "module:GELU", "aten.native_layer_norm"):
        assert not is_matmul_like(name), name


def test_blind_spot_table_names_real_counters():
    for spot in KNOWN_BLIND_SPOTS:
        assert spot.counter in available_counters()
        assert set(spot.variants) <= set(VARIANTS)
