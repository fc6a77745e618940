"""Speed of the analytic model: `stage_costs` per page (Gundam, Letter page 1700 x 2200, both targets).

Three cases, each a pytest-benchmark (no timed asserts; compare saved runs with
``--benchmark-compare``):

* ``warm``: the same page again (every per-shape cost memoised): what a report pays per page that
  shares its shapes with an earlier one;
* ``new_length``: the views are known, the prefill length is new (another ``text_tokens``): the
  LM of that length is computed, the vision stages and the decode step mostly come from the cache;
* ``cold``: every memoised cost cleared first: the first page of a process.
"""

from __future__ import annotations

import itertools

import pytest

from harness.analytic import stage_costs, stages
from harness.analytic.table import LETTER_PAGE
from harness.inputs.workload import compute_view_layout, get_workload

_MEMOISED = (stages.sam_view, stages.clip_view, stages.projector_view, stages.encoder_view,
             stages._lm_tokens, stages._lm_attention, stages.lm_forward,
             stages._vision_views)


def _clear() -> None:
    for fn in _MEMOISED:
        fn.cache_clear()


@pytest.mark.parametrize("target", ["ocr2", "dsocr"])
@pytest.mark.parametrize("case", ["warm", "new_length", "cold"])
def test_stage_costs_per_page(benchmark, target: str, case: str) -> None:
    layout = compute_view_layout(get_workload(target, "gundam"), *LETTER_PAGE)
    expected = stage_costs(target, layout)
    benchmark.extra_info.update({"target": target, "mode": "gundam", "page": "letter", "case": case})
    if case == "warm":
        result = benchmark(stage_costs, target, layout)
    elif case == "new_length":
        lengths = itertools.count(10_000)
        result = benchmark(lambda: stage_costs(target, layout, text_tokens=next(lengths)))
        result = stage_costs(target, layout)
    else:
        result = benchmark.pedantic(stage_costs, args=(target, layout), setup=_clear, rounds=30)
    assert result == expected  # memoisation never changes a number
