"""harness.count: the API on hand-built modules, the pairwise delta and the verdict."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import harness
from harness.count import CountError, CountResult
from harness.measure import StageCount
from harness.verify import explain_delta, explain_pair

pytest.importorskip("fvcore")
pytest.importorskip("thop")


class Attention(nn.Module):
    """qkv + SDPA + out projection."""

    def __init__(self, d: int = 64, heads: int = 4) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(d, 3 * d)
        self.out = nn.Linear(d, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v)
        return self.out(y.transpose(1, 2).reshape(b, n, d))


# B=2, N=32, D=64: linears 2*B*N*D*D*4 = 2,097,152; SDPA 4*B*N*N*D = 524,288
LINEARS = 2 * 2 * 32 * 64 * 64 * 4
SDPA = 4 * 2 * 32 * 32 * 64


def test_toy_sdpa_on_cpu_the_issue_numbers():
    result = harness.count(Attention(), torch.randn(2, 32, 64), expected=LINEARS + SDPA)
    assert isinstance(result, CountResult) and result.device == "cpu"
    # patched counters agree at 1,310,720 MACs = 2,621,440 FLOPs; stock FlopCounterMode counts 0 for
    # CPU SDPA and stock fvcore reports 1,048,576 "flops" that are MACs of the linears only
    assert result.flops == LINEARS + SDPA == 2_621_440 and result.agree
    assert result["torch stock"].raw == LINEARS
    assert result["fvcore stock"].raw == LINEARS // 2 == 1_048_576
    assert result["fvcore patched"].raw == result["thop stock"].raw == 1_310_720
    d = result.delta("fvcore stock", "torch patched")
    parts = {c.name: c.flops for c in d.components}
    # raw 2,621,440 FLOPs - 1,048,576 MACs = 1,572,864 = 1,048,576 (unit) + 524,288 (SDPA unseen)
    assert d.raw_delta == 1_572_864
    assert parts == {"convention": 1_048_576, "fvcore stock: SDPA QK^T+AV not seen": SDPA}
    assert d.remainder == 0 and result.unexplained == {}
    assert result.verdict.passed and bool(result.verdict)
    text = str(result)
    assert "torch stock: SDPA QK^T+AV not seen -524,288" in text
    assert "verdict: PASS against expected 2,621,440" in text


def test_tables():
    result = harness.count(Attention(), torch.randn(2, 32, 64), counters=["torch", "fvcore:stock"])
    counters = result.table()
    assert list(counters["counter"] + " " + counters["variant"]) == ["torch stock", "torch patched", "fvcore stock"]
    assert list(counters["remainder"]) == [0, 0, 0]
    keys = result.table("keys")
    assert keys.loc["sdpa_qk", "torch patched"] == SDPA // 2 and keys.loc["sdpa_qk", "fvcore stock"] == 0
    assert keys.loc["linear", "class"] == "matmul"
    modules = result.table("modules", depth=1)
    assert modules.loc["qkv", "fvcore stock"] == 2 * 2 * 32 * 64 * 192    # 1,572,864
    assert modules.index[0] == "(model)"
    ops = result.table("ops")
    unknown = ops[(ops.status == "unknown") & (ops.variant == "stock") & (ops.counter == "torch")]
    assert "aten._scaled_dot_product_flash_attention_for_cpu" in set(unknown.op)
    deltas = result.table("deltas")
    assert set(deltas.cause) >= {"convention", "remainder", "fvcore stock: SDPA QK^T+AV not seen"}
    with pytest.raises(ValueError, match="expected one of counters, keys, modules, ops, deltas"):
        result.table("nope")


def test_meta_model_counts_on_meta_and_moves_inputs():
    with torch.device("meta"):
        model = Attention()
    result = harness.count(model, torch.randn(2, 32, 64), counters="torch")
    assert result.device == "meta"
    assert any("inputs moved from cpu to meta" in n for n in result.notes)
    assert result["torch stock"].matmul_flops == LINEARS + SDPA   # SDPA decomposes to bmm on meta


def test_device_meta_counts_a_copy_and_leaves_the_model_alone():
    model = Attention()
    before = model.qkv.weight.detach().clone()
    result = harness.count(model, torch.randn(2, 32, 64), counters="torch:patched", device="meta")
    assert result.device == "meta" and result.flops == LINEARS + SDPA
    assert model.qkv.weight.device.type == "cpu" and torch.equal(model.qkv.weight, before)


def test_a_plain_callable_and_a_bound_method():
    w = torch.randn(64, 32)
    result = harness.count(lambda x: x @ w, torch.randn(8, 64), counters="torch:patched,thop:patched")
    assert result.flops == 2 * 8 * 64 * 32                            # 32,768
    model = Attention()
    result = harness.count(model.forward, torch.randn(2, 32, 64), counters="torch:patched")
    assert result.flops == LINEARS + SDPA
    assert result["torch patched"].by_module["model.qkv"] == 2 * 2 * 32 * 64 * 192


def test_verdict_fails_when_a_count_is_off_and_says_which():
    expected = LINEARS + SDPA + 1000
    result = harness.count(Attention(), torch.randn(2, 32, 64), counters="torch", expected=expected)
    assert not result.verdict.passed
    assert result.verdict.rows["torch patched"].remainder == -1000
    assert "<-- outside the band" in str(result.verdict)
    loose = harness.count(Attention(), torch.randn(2, 32, 64), counters="torch",
                          expected=lambda model, x: LINEARS + SDPA + 1000, rtol=1e-3)
    assert loose.verdict.passed and loose.verdict.expected == expected


def test_verdict_fails_when_a_patched_counter_missed_a_product():
    # torch 2.13's FlopCounterMode has no formula for aten.mv, patched or not: a finding, never a pass
    w = torch.randn(32, 64)
    result = harness.count(lambda x: torch.mv(w, x), torch.randn(64), counters="torch,thop:patched",
                           expected=2 * 32 * 64)                         # 2*M*K = 4,096
    assert result["thop patched"].matmul_flops == 4_096
    assert result["torch patched"].matmul_flops == 0 and not result["torch patched"].complete
    assert not result.verdict.passed
    assert any("torch patched is incomplete" in r and "aten.mv x1" in r for r in result.verdict.reasons)
    assert any("no known blind spot" in r for r in result.verdict.reasons)
    assert "torch patched: aten.mv x1 ran with no formula/handle/rule (counted 0)" in str(result)


def test_bad_inputs_are_clear_errors():
    x = torch.randn(2, 32, 64)
    with pytest.raises(CountError, match=r"unknown counter 'torhc'.*Did you mean 'torch'"):
        harness.count(Attention(), x, counters="torhc")
    with pytest.raises(CountError, match=r"unknown variant of torch 'stok'"):
        harness.count(Attention(), x, counters="torch:stok")
    with pytest.raises(CountError, match=r"never moves your model"):
        harness.count(_on_meta(), x, device="cpu")
    with pytest.raises(CountError, match=r"Attention raised RuntimeError on these inputs"):
        harness.count(Attention(), torch.randn(2, 32, 48), counters="torch")
    with pytest.raises(CountError, match="expected: need an int"):
        harness.count(Attention(), x, counters="torch", expected=1.5)
    with pytest.raises(CountError, match="expected an nn.Module or a callable"):
        harness.count(42)


def _on_meta() -> nn.Module:
    with torch.device("meta"):
        return Attention()


def test_package_is_the_function_and_import_harness_stays_light():
    import harness.count as package
    from harness.count import count

    assert harness.count is package and callable(package)
    assert package(Attention(), torch.randn(1, 4, 64), counters="torch:patched").flops == \
        count(Attention(), torch.randn(1, 4, 64), counters="torch:patched").flops
    code = "import sys, harness; import harness.count; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# explain_pair / explain_delta(int) on synthetic counts ---------------------------------------------

def stage_count(**overrides) -> StageCount:
    base = dict(counter="torch", variant="patched", version="x", target="", stage="model", raw=0,
                convention="flop", flops=0, by_op={}, by_key={}, unknown_ops={}, ignored_ops={},
                wall_time_s=0.0)
    base.update(overrides)
    return StageCount(**base)


def test_pair_remainder_is_what_no_cause_explains():
    a = stage_count(raw=1_000, flops=1_000, by_key={"linear": 1_000})
    b = stage_count(counter="thop", variant="patched", convention="mac", raw=560, flops=1_120,
                    by_key={"linear": 1_080, "norm": 40})
    d = explain_pair(a, b)
    # raw 560 MACs - 1,000 FLOPs = -440 = convention (560 - 1,120 = -560) + norm 40 + remainder 80
    assert d.raw_delta == -440 and d.delta == 120
    assert {c.name: c.flops for c in d.components} == {"convention": -560, "element-wise conventions": 40}
    assert d.remainder == 80
    assert "remainder" in str(d) and "+80 FLOP" in str(d)


def test_pair_unknown_blind_spot_is_a_finding():
    a = stage_count(raw=1_000, flops=1_000, by_key={"linear": 1_000}, unseen={"einsum": 500})
    b = stage_count(counter="fvcore", variant="patched", convention="mac", raw=750, flops=1_500,
                    by_key={"linear": 1_000, "einsum": 500})
    d = explain_pair(a, b)
    part = next(c for c in d.components if c.name == "torch patched: einsum not seen")
    assert part.flops == 500 and not part.known and d.remainder == 0
    assert any("no known blind spot says why" in f for f in d.findings)


def test_explain_delta_against_an_int_sizes_blind_spots_by_what_was_observed():
    measured = stage_count(counter="fvcore", variant="stock", convention="mac", raw=1_050, flops=2_100,
                           by_key={"linear": 2_000, "norm": 100}, unseen={"sdpa_qk": 300, "sdpa_av": 300})
    d = explain_delta(2_600, measured)
    assert d.analytic_matmul == 2_600 and d.delta == -500
    assert {c.name: c.flops for c in d.components} == {
        "convention": 0, "element-wise class": 100, "SDPA QK^T+AV not seen": -600}
    assert d.remainder == 0 and d.rows == ()


def test_a_grouped_mm_outside_experts_has_a_generic_key():
    """torch._grouped_mm outside an experts module: the generic key ``grouped_mm`` (rule 10 of
    harness.measure.keys), the stock tools' grouped_mm blind spot, and no unkeyed line."""
    def grouped(a, b, offs):
        return torch._grouped_mm(a, b, offs=offs)

    # a (S=32, K=64) rows split into 2 groups, b (2, 64, N=48): S*K*N MACs -> 2*32*64*48 FLOPs
    a = torch.randn(32, 64, dtype=torch.bfloat16, device="meta")
    b = torch.randn(2, 64, 48, dtype=torch.bfloat16, device="meta")
    offs = torch.tensor([16, 32], dtype=torch.int32, device="meta")
    result = harness.count(grouped, a, b, offs, counters="torch,thop", expected=2 * 32 * 64 * 48)
    assert result["torch patched"].by_key == {"grouped_mm": 2 * 32 * 64 * 48}
    assert result["torch patched"].matmul_flops == 2 * 32 * 64 * 48       # a matmul-class key
    assert result.verdict.passed, str(result)
    assert {c.name for c in result.verdict.rows["torch stock"].components if c.flops} == {"grouped_mm experts not seen"}
    assert not any("could not be keyed" in f for f in result.findings())


def test_an_unmapped_key_of_counted_work_is_a_finding_never_a_fail():
    """nn.MultiheadAttention runs F.multi_head_attention_forward, which no op key names (rule 11):
    torch counts it whole, keyed ``unmapped``; the verdict passes and the summary says so."""
    torch.manual_seed(0)
    mha = nn.MultiheadAttention(32, 4, batch_first=True).eval().requires_grad_(False)
    x = torch.randn(2, 10, 32)
    # in-projection 2*B*L*D*3D, QK^T and AV 4*B*L*L*D, out-projection 2*B*L*D*D
    expected = 2 * 2 * 10 * 32 * 96 + 4 * 2 * 10 * 10 * 32 + 2 * 2 * 10 * 32 * 32
    result = harness.count(lambda q: mha(q, q, q, need_weights=False)[0], x, counters="torch", expected=expected)
    projections = 2 * 2 * 10 * 32 * 96 + 2 * 2 * 10 * 32 * 32
    assert result["torch patched"].by_key == {"unmapped": projections, "sdpa_qk": 2 * 2 * 10 * 10 * 32,
                                              "sdpa_av": 2 * 2 * 10 * 10 * 32}
    assert result.verdict.passed, str(result)
    assert f"torch patched: {projections:,} FLOPs of products could not be keyed" in result.findings()
