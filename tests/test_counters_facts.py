"""The counter facts of shared/spec/counters.md, re-measured on the versions we run.

Each test calls the tool directly (not through harness.measure) and fails when the fact stops
holding, so a new torch / fvcore / thop forces a re-read of the blind-spot table
(harness.verify.delta.KNOWN_BLIND_SPOTS) and of the patches. Versions measured: torch 2.13.0,
fvcore 0.1.5.post20221221, ultralytics-thop 2.2.3.

Summary (confirmed / refuted on these versions):
* torch: CPU SDPA counts 0 (any mask, causal too) -- confirmed; meta SDPA decomposes to bmm and is
  counted 4*B*H*Lq*Lk*d -- confirmed; the math backend on CPU is counted -- measured; no formula
  for _grouped_mm -- confirmed; an op without a formula is silently 0 -- confirmed.
* fvcore: counts MACs -- confirmed; no handle for aten::scaled_dot_product_attention -- confirmed;
  positional inputs only -- confirmed; stock jit.trace on meta fails at nn.Conv2d (works for Linear,
  LayerNorm, SDPA, einsum) -- measured (the harness's counter works around it: test_counters_fvcore_meta); its einsum handle is rounded to 4 significant digits --
  new finding.
* thop 2.2.3: MACs -- confirmed; "misses every functional call (SDPA, einsum, matmul, F.linear)"
  -- REFUTED: a TorchFunctionMode counts them outside ruled modules; still misses _grouped_mm,
  torch.mm/addmm/baddbmm, functional conv, quick_gelu, and nn.GELU/nn.SiLU/custom RMSNorm modules
  (no rule) -- confirmed; "a module's own total_ops buffer makes counts wrong" -- REFUTED: 2.2.3
  shadows it while profiling and restores it; total_ops is removed afterwards -- confirmed.
* fvcore leaves its scope hooks on every module when the traced forward raises -- new finding
  (the harness removes them).
"""

from __future__ import annotations

import importlib
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode, flop_registry

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from fvcore.nn import FlopCountAnalysis
import thop

thop_profile = importlib.import_module("thop.profile")
aten = torch.ops.aten


def torch_flops(fn, *args, **kwargs) -> int:
    with FlopCounterMode(display=False) as mode:
        fn(*args, **kwargs)
    return mode.get_total_flops()


def fvcore(module, *inputs):
    return FlopCountAnalysis(module, inputs).unsupported_ops_warnings(False).uncalled_modules_warnings(False)


def thop_macs(module, *inputs) -> float:
    return thop.profile(module, inputs, verbose=False)[0]


class Sdpa(nn.Module):
    def forward(self, q, k, v):
        return F.scaled_dot_product_attention(q, k, v)


def qkv(device="cpu"):
    return (torch.randn(2, 3, 5, 8, device=device), torch.randn(2, 3, 7, 8, device=device),
            torch.randn(2, 3, 7, 8, device=device))


# 4 * B2 * H3 * Lq5 * Lk7 * d8 = 6720
SDPA_FLOPS = 6720


def test_versions_measured():
    from importlib.metadata import version

    assert torch.__version__.startswith("2.13."), "re-measure the torch facts below for this torch"
    assert version("fvcore") == "0.1.5.post20221221"
    assert thop.__version__ == "2.2.3"


# torch FlopCounterMode ----------------------------------------------------------------------------

@pytest.mark.parametrize("mask", ["none", "float", "bool", "causal"])
def test_torch_cpu_sdpa_counts_zero(mask):
    q, k, v = qkv()
    if mask == "causal":
        k, v = k[:, :, :5], v[:, :, :5]
        kwargs = {"is_causal": True}
    else:
        kwargs = {"attn_mask": {"none": None, "float": torch.randn(2, 3, 5, 7),
                                "bool": torch.ones(5, 7, dtype=torch.bool)}[mask]}
    assert torch_flops(F.scaled_dot_product_attention, q, k, v, **kwargs) == 0
    assert aten._scaled_dot_product_flash_attention_for_cpu not in flop_registry


def test_torch_meta_sdpa_decomposes_and_counts():
    assert torch_flops(F.scaled_dot_product_attention, *qkv("meta")) == SDPA_FLOPS


def test_torch_cpu_math_backend_counts():
    from torch.nn.attention import SDPBackend, sdpa_kernel

    with sdpa_kernel(SDPBackend.MATH):
        assert torch_flops(F.scaled_dot_product_attention, *qkv()) == SDPA_FLOPS


def test_torch_no_formula_for_grouped_mm():
    x, w = torch.randn(10, 16), torch.randn(4, 16, 8)
    offs = torch.tensor([2, 5, 7, 10], dtype=torch.int32)
    assert aten._grouped_mm not in flop_registry
    assert torch_flops(F.grouped_mm, x, w, offs=offs) == 0


def test_torch_op_without_formula_is_silently_zero():
    # 2 * 3 * 4 * 5 = 120 for the mm; the softmax and the grouped mm add nothing, and no error
    flops = torch_flops(lambda a, b: (a @ b).softmax(-1), torch.randn(3, 4), torch.randn(4, 5))
    assert flops == 120


# fvcore ------------------------------------------------------------------------------------------

def test_fvcore_counts_macs():
    # one fused multiply-add as one flop: 4 * 5 * 6 = 120 for Linear(5, 6) on 4 rows
    assert fvcore(nn.Linear(5, 6), torch.randn(4, 5)).total() == 120
    assert "one fused multiply-add as one flop" in FlopCountAnalysis.__doc__


def test_fvcore_has_no_sdpa_handle():
    analysis = fvcore(Sdpa(), *qkv())
    assert analysis.total() == 0
    assert analysis.unsupported_ops() == {"aten::scaled_dot_product_attention": 1}


def test_fvcore_traces_positional_inputs_only():
    class KeywordOnly(nn.Module):
        def forward(self, *, images):
            return images * 2

    with pytest.raises(TypeError):
        fvcore(KeywordOnly(), torch.randn(2)).total()


@pytest.mark.parametrize("module,inputs", [
    (nn.Linear(8, 8), (torch.randn(2, 8),)),
    (nn.LayerNorm(8), (torch.randn(2, 8),)),
    (Sdpa(), qkv()),
])
def test_fvcore_traces_on_meta(module, inputs):
    cpu_total = fvcore(module, *inputs).total()
    meta_total = fvcore(module.to("meta"), *(t.to("meta") for t in inputs)).total()
    assert meta_total == cpu_total


def test_fvcore_cannot_trace_conv_on_meta():
    with pytest.raises(TypeError, match="cond must be a bool"):
        fvcore(nn.Conv2d(3, 4, 3).to("meta"), torch.randn(1, 3, 8, 8, device="meta")).total()


def test_fvcore_einsum_handle_rounds_to_four_significant_digits():
    class RelPos(nn.Module):
        def forward(self, q, table):
            return torch.einsum("bhwc,hkc->bhwk", q, table)

    # exact: b2 * h64 * w64 * k64 * c32 = 16,777,216 MACs; numpy prints 3.355e+07 FLOPs -> 16,775,000
    q, table = torch.randn(2, 64, 64, 32), torch.randn(64, 64, 32)
    assert fvcore(RelPos(), q, table).total() == 16_775_000
    report = np.einsum_path("abcd,bed->abce", np.zeros((2, 64, 64, 32)), np.zeros((64, 64, 32)),
                            optimize="optimal")[1]
    assert "3.355e+07" in report


# thop --------------------------------------------------------------------------------------------

def test_thop_counts_macs_for_linear():
    # 4 * 5 * 6 = 120 MACs
    assert thop_macs(nn.Linear(5, 6), torch.randn(4, 5)) == 120


def test_thop_counts_functional_products_refutes_counters_md():
    """counters.md says thop misses SDPA, einsum, torch.matmul, F.linear; 2.2.3 counts them."""
    class Functional(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.randn(6, 8))

        def forward(self, q, k, v, a, b):
            return (F.scaled_dot_product_attention(q, k, v), torch.einsum("bhwc,hkc->bhwk", a, b),
                    torch.matmul(a, a.transpose(-1, -2)), F.linear(q, self.w))

    q, k, v = qkv()
    a, b = torch.randn(2, 3, 4, 5), torch.randn(3, 6, 5)
    macs = thop_macs(Functional(), q, k, v, a, b)
    # SDPA 6720/2 = 3360; einsum 2*3*4*6*5 = 720; matmul 2*3*4*4*5 = 480; F.linear 2*3*5*8*6 = 1440
    assert macs == 3360 + 720 + 480 + 1440
    assert F.scaled_dot_product_attention in thop_profile.functional_hooks


@pytest.mark.parametrize("fn", [
    lambda a, b: torch.mm(a, b),
    lambda a, b: torch.addmm(torch.zeros(3, 5), a, b),
    lambda a, b: torch.baddbmm(torch.zeros(1, 3, 5), a[None], b[None]),
], ids=["mm", "addmm", "baddbmm"])
def test_thop_misses_these_products(fn):
    class Wrap(nn.Module):
        def forward(self, a, b):
            return fn(a, b)

    assert thop_macs(Wrap(), torch.randn(3, 4), torch.randn(4, 5)) == 0


def test_thop_misses_grouped_mm_and_functional_conv():
    class Grouped(nn.Module):
        def forward(self, x, w, offs):
            return F.grouped_mm(x, w, offs=offs), F.conv2d(torch.randn(1, 3, 6, 6), torch.randn(4, 3, 3, 3))

    offs = torch.tensor([2, 5, 7, 10], dtype=torch.int32)
    assert thop_macs(Grouped(), torch.randn(10, 16), torch.randn(4, 16, 8), offs) == 0


def test_thop_misses_elementwise_functions_and_unruled_modules():
    def quick_gelu(x):
        return x * torch.sigmoid(1.702 * x)

    with warnings.catch_warnings():  # scripted, as in DeepSeek-OCR's CLIP
        warnings.simplefilter("ignore", DeprecationWarning)
        quick_gelu = torch.jit.script(quick_gelu)

    class Act(nn.Module):
        def __init__(self):
            super().__init__()
            self.gelu, self.silu = nn.GELU(), nn.SiLU()

        def forward(self, x):
            return quick_gelu(self.silu(self.gelu(x)))

    assert thop_macs(Act(), torch.randn(3, 4)) == 0
    assert nn.GELU not in thop_profile.register_hooks and nn.SiLU not in thop_profile.register_hooks


def test_thop_does_not_double_count_inside_ruled_modules():
    class MatmulLinear(nn.Linear):
        def forward(self, x):
            return torch.matmul(x, self.weight.t())

    # the Linear rule alone: 3 * 4 * 6 = 72 (the functional matmul inside is not added)
    assert thop_macs(MatmulLinear(4, 6), torch.randn(3, 4)) == 72


def test_thop_own_total_ops_buffer_is_shadowed_and_restored_refutes_counters_md(caplog):
    class WithBuffer(nn.Module):
        def __init__(self):
            super().__init__()
            self.proj = nn.Linear(4, 6)
            self.register_buffer("total_ops", torch.full((1,), 7.0))

        def forward(self, x):
            return self.proj(x)

    module = WithBuffer()
    # 3 * 4 * 6 = 72, not wrong or zero
    assert thop_macs(module, torch.randn(3, 4)) == 72
    assert module.total_ops.item() == 7.0 and "total_ops" in dict(module.named_buffers())
    assert "shadowed while profiling" in caplog.text


def test_thop_removes_its_total_ops():
    module = nn.Sequential(nn.Linear(4, 4), nn.ReLU())
    thop_macs(module, torch.randn(2, 4))
    for m in module.modules():
        assert "total_ops" not in m.__dict__ and "total_ops" not in m._buffers


def test_fvcore_leaves_its_scope_hooks_when_the_forward_raises():
    """fvcore removes its push/pop scope hooks only after a successful trace (harness cleans up)."""
    class Fails(nn.Module):
        def __init__(self):
            super().__init__()
            self.proj = nn.Linear(4, 4)

        def forward(self, x):
            self.proj(x)
            raise RuntimeError("boom")

    module = Fails()
    with pytest.raises(RuntimeError, match="boom"):
        fvcore(module, torch.randn(2, 4)).total()
    assert len(module.proj._forward_hooks) == 1 and len(module.proj._forward_pre_hooks) == 1
