"""Stage totals per target and mode on a Letter page (1700 x 2200): the table, the glue to the workload,
whole requests, and the vendor-measured v1 numbers. Run with -s to see the tables."""

from __future__ import annotations

import pytest

from harness.analytic import (
    LETTER_PAGE,
    TARGET_STAGES,
    Cost,
    analytic_table,
    decode_cost,
    dsocr_view_costs,
    format_table,
    ocr2_view_costs,
    load_dsocr_dims,
    load_ocr2_dims,
    prefill_cost,
    request_cost,
    stage_costs,
)
from harness.inputs.workload import MODES, compute_view_layout, get_workload, prefill_length

ALL_MODES = [(t, m) for t in ("dsocr", "ocr2") for m in MODES[t]]


@pytest.mark.parametrize("target,mode", ALL_MODES)
def test_analytic_table_letter(target: str, mode: str) -> None:
    rows = analytic_table(target, mode)
    print("\n" + format_table(rows))
    stages = [r for r in rows if r.stage != "total"]
    for r in stages:
        assert r.matmul_flops > 0 and r.elementwise_flops > 0 and r.total_bytes > 0, r.stage
        assert r.matmul_flops > r.elementwise_flops, r.stage  # matmuls dominate every stage
        assert r.intensity == pytest.approx((r.matmul_flops + r.elementwise_flops) / r.total_bytes)
    total = rows[-1]
    assert total.stage == "total"
    assert total.matmul_flops == sum(r.matmul_flops for r in stages)
    assert total.elementwise_flops == sum(r.elementwise_flops for r in stages)
    assert total.total_bytes == sum(r.total_bytes for r in stages)
    decode = next(r for r in stages if r.stage == "decode")
    assert decode.intensity < 2.0  # one token: weight-bound
    assert all(r.intensity > 10 for r in stages if r.stage not in ("decode", "projector"))


def test_stage_costs_follow_the_layout_batches() -> None:
    layout = compute_view_layout(get_workload("dsocr", "gundam"), *LETTER_PAGE)
    assert [(v.role, v.batch, v.size) for v in layout.views] == [("crops", 6, 640), ("global", 1, 1024)]
    costs = stage_costs("dsocr", layout)
    dims = load_dsocr_dims()
    crops, glob = dsocr_view_costs(dims, 640, 6), dsocr_view_costs(dims, 1024, 1)
    for stage in ("sam", "clip", "projector"):
        assert costs[stage] == crops[stage] + glob[stage]
    length = prefill_length(layout)
    assert length == 913  # 1 BOS + 9 text + 273 global + 10*3*(10*2+1) crop placeholders
    assert costs["prefill"] == prefill_cost("dsocr", length)
    assert costs["decode"] == decode_cost("dsocr", length)
    assert stage_costs("dsocr", layout, decode_context=4000)["decode"] == decode_cost("dsocr", 4000)

    o_layout = compute_view_layout(get_workload("ocr2", "gundam"), *LETTER_PAGE)
    o = stage_costs("ocr2", o_layout)
    odims = load_ocr2_dims()
    o_glob, o_crops = ocr2_view_costs(odims, 1024, 1), ocr2_view_costs(odims, 768, 6)
    for stage in ("sam", "encoder", "projector"):
        assert o[stage] == o_glob[stage] + o_crops[stage]
    assert o["prefill"].flops["lm_head"] == 2 * 1280 * 129280


# The vendor-measured DeepSeek-OCR counts (letter base: g1024 / L283 / T283; gundam: 6x640+g1024 /
# L913 / T913, and every other key) live once, in golden/dsocr/count/** (made by `make golden-vendor
# MODEL_PATH=DIR`); tests/test_suite.py::test_golden_analytic checks this model against them, op key
# by op key.


@pytest.mark.parametrize("target,mode", [("dsocr", "gundam"), ("ocr2", "gundam"), ("dsocr", "base")])
def test_request_cost_sums_decode_steps(target: str, mode: str) -> None:
    layout = compute_view_layout(get_workload(target, mode), *LETTER_PAGE)
    n = 7
    req = request_cost(target, layout, new_tokens=n)
    length = prefill_length(layout)
    explicit = Cost.total([decode_cost(target, length + j) for j in range(n - 1)])  # L, L+1, ..., L+n-2 cached
    assert req["decode"] == explicit
    stages = stage_costs(target, layout)
    assert req["prefill"] == stages["prefill"]
    assert req["total"] == Cost.total([req[s] for s in TARGET_STAGES[target]])
    assert request_cost(target, layout, new_tokens=1)["decode"] == Cost()
    big = request_cost(target, layout, new_tokens=2000)
    # attention grows with the context: the last step costs more than the first
    assert big["decode"].matmul_flops > 1999 * decode_cost(target, length).matmul_flops
    with pytest.raises(ValueError):
        request_cost(target, layout, new_tokens=0)


def test_unknown_target_and_eager_ocr2() -> None:
    layout = compute_view_layout(get_workload("ocr2", "base"), *LETTER_PAGE)
    with pytest.raises(ValueError, match="unknown target"):
        stage_costs("ocr3", layout)
    eager = stage_costs("ocr2", layout, attn_implementation="eager")
    sdpa = stage_costs("ocr2", layout)
    for stage in ("sam", "encoder", "prefill"):
        assert "matmul_qk" in eager[stage].flops and "sdpa_qk" not in eager[stage].flops
        assert eager[stage].matmul_flops == sdpa[stage].matmul_flops  # same products, other op


def test_memoised_costs_equal_fresh_ones_and_boundaries_still_validate() -> None:
    from dataclasses import FrozenInstanceError

    from harness.analytic import stages

    layout = compute_view_layout(get_workload("ocr2", "gundam"), *LETTER_PAGE)
    warm = stage_costs("ocr2", layout)
    for fn in (stages.sam_view, stages.clip_view, stages.projector_view, stages.encoder_view,
               stages._lm_tokens, stages._lm_attention, stages.lm_forward,
               stages._vision_views):
        fn.cache_clear()
    assert stage_costs("ocr2", layout) == warm
    # a memoised cost is shared, so it must be immutable
    with pytest.raises(FrozenInstanceError):
        warm["sam"].weight_bytes = 0  # type: ignore[misc]
    with pytest.raises(ValueError, match="dtype_bytes"):
        stage_costs("ocr2", layout, dtype_bytes=0)
    with pytest.raises(ValueError, match="text_tokens"):
        stage_costs("ocr2", layout, text_tokens=-1)
    # sums and scalings skip re-validation but stay exact
    two = warm["sam"] + warm["sam"]
    assert two == warm["sam"].scaled(2) and two.total_bytes == 2 * warm["sam"].total_bytes
