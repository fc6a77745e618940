"""explain_delta: the delta split into convention, element-wise class, approximations, blind spots
(sized by the analytic keys) and a remainder."""

from __future__ import annotations

import pytest

from harness.analytic import Cost
from harness.measure import StageCount
from harness.verify import explain_delta


def stage_count(**overrides) -> StageCount:
    base = dict(counter="fvcore", variant="stock", version="fvcore x", target="ocr2", stage="sam",
                raw=0, convention="mac", flops=0, by_op={}, by_key={}, unknown_ops={}, ignored_ops={},
                wall_time_s=0.0)
    base.update(overrides)
    return StageCount(**base)


ANALYTIC = Cost(flops={"linear": 1_000_000, "sdpa_qk": 200_000, "sdpa_av": 200_000, "einsum": 50_000,
                       "norm": 9_999})  # matmul class: 1,450,000


def test_blind_spot_sized_by_analytic_keys_and_zero_remainder():
    # fvcore stock: linear + einsum seen (1,050,000 FLOPs = 525,000 MACs) plus LayerNorm 30,000 FLOPs
    measured = stage_count(raw=540_000, flops=1_080_000,
                           by_key={"linear": 1_000_000, "einsum": 50_000, "norm": 30_000},
                           unseen={"sdpa_qk": 199_000, "sdpa_av": 201_000},
                           unknown_ops={"aten::scaled_dot_product_attention": 12})
    d = explain_delta(ANALYTIC, measured)
    assert d.analytic_matmul == 1_450_000
    assert d.delta == 1_080_000 - 1_450_000
    parts = {c.name: c.flops for c in d.components}
    assert parts["convention"] == 0
    assert parts["element-wise class"] == 30_000
    # sized by the analytic keys (200,000 + 200,000), not by what the counter observed
    assert parts["SDPA QK^T+AV not seen"] == -400_000
    assert d.remainder == 0 and d.within(1e-3)
    text = str(d)
    assert "reading the raw figure as FLOPs would be off by -540,000 FLOP (-50.000%)" in text
    assert "no default handle for aten::scaled_dot_product_attention" in text
    assert "aten::scaled_dot_product_attention x12 ran without a formula" in text


def test_remainder_is_what_no_cause_explains():
    measured = stage_count(counter="torch", variant="patched", convention="flop", raw=1_449_000,
                           flops=1_449_000, by_key={"linear": 999_000, "sdpa_qk": 200_000,
                                                     "sdpa_av": 200_000, "einsum": 50_000})
    d = explain_delta(ANALYTIC, measured)
    assert [c.name for c in d.components] == ["convention"]
    assert d.remainder == -1_000
    assert d.remainder_rel == pytest.approx(-1_000 / 1_450_000)
    assert not d.within(1e-4) and d.within(1e-3)
    assert ("linear", 1_000_000, 999_000) in d.rows


def test_unknown_blind_spot_is_a_finding():
    # torch patched should see everything: an uncounted key is not a known blind spot
    measured = stage_count(counter="torch", variant="patched", convention="flop", raw=1_050_000,
                           flops=1_050_000, by_key={"linear": 1_000_000, "einsum": 50_000},
                           unseen={"sdpa_qk": 200_000, "sdpa_av": 200_000})
    d = explain_delta(ANALYTIC, measured)
    unknown = [c for c in d.components if not c.known]
    assert {c.name for c in unknown} == {"sdpa_qk not seen", "sdpa_av not seen"}
    assert d.remainder == 0
    assert "UNKNOWN blind spot" in str(d)
    assert any("no known blind spot says why" in f for f in d.findings)


def test_deviation_and_unmapped():
    measured = stage_count(counter="fvcore", variant="stock", raw=725_000 - 10, flops=1_450_000 - 20,
                           by_key={"linear": 1_000_000, "sdpa_qk": 200_000, "sdpa_av": 200_000,
                                   "einsum": 49_980},
                           deviations={"fvcore einsum handle rounds to 4 significant digits": -20})
    d = explain_delta(ANALYTIC, measured)
    assert {c.name: c.flops for c in d.components}["fvcore einsum handle rounds to 4 significant digits"] == -20
    assert d.remainder == 0
    unmapped = stage_count(counter="torch", variant="patched", convention="flop", raw=1_450_000,
                           flops=1_450_000, by_key={"linear": 1_000_000, "unmapped": 450_000})
    d2 = explain_delta(ANALYTIC, unmapped)
    assert d2.remainder == 0  # the totals agree, but the key table and the finding show it
    assert any("could not be keyed" in f for f in d2.findings)
    assert ("unmapped", 0, 450_000) in d2.rows


def test_partly_counted_key_uses_the_observed_uncounted_part():
    measured = stage_count(counter="thop", variant="stock", raw=625_000, flops=1_250_000,
                           by_key={"linear": 1_000_000, "einsum": 50_000, "sdpa_qk": 100_000,
                                   "sdpa_av": 100_000},
                           unseen={"sdpa_qk": 100_000, "sdpa_av": 100_000})
    d = explain_delta(ANALYTIC, measured)
    blind = [c for c in d.components if c.name not in ("convention",)]
    assert sum(c.flops for c in blind) == -200_000
    assert "partly counted" in str(d)
    assert d.remainder == 0
