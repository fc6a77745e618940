"""Per-stage analytic table: FLOPs by op class, bytes and arithmetic intensity for one page."""

from __future__ import annotations

from dataclasses import dataclass

from harness.analytic.cost import DEFAULT_DTYPE_BYTES, Cost
from harness.analytic.stages import stage_costs
from harness.inputs.targets import TARGET_STAGES
from harness.inputs.workload import DEFAULT_PROMPT_TOKENS, compute_view_layout, get_workload

__all__ = ["LETTER_PAGE", "TableRow", "analytic_table", "format_table"]

#: US Letter at 200 dpi, the default page (width, height).
LETTER_PAGE: tuple[int, int] = (1700, 2200)


@dataclass(frozen=True)
class TableRow:
    """One stage's analytic numbers (FLOPs = 2 x MACs; bytes at dtype_bytes per element)."""

    target: str
    mode: str
    stage: str
    matmul_flops: int
    elementwise_flops: int
    total_bytes: int
    intensity: float  # total FLOPs / total bytes
    cost: Cost


def analytic_table(target: str, mode: str, page_size: tuple[int, int] = LETTER_PAGE, *,
                   text_tokens: int = DEFAULT_PROMPT_TOKENS, decode_context: int | None = None,
                   dtype_bytes: int = DEFAULT_DTYPE_BYTES, attn_implementation: str | None = None,
                   config: object = None) -> list[TableRow]:
    """One row per stage of ``target`` in ``mode`` on a ``page_size`` page, then a "total" row."""
    layout = compute_view_layout(get_workload(target, mode), *page_size)
    costs = stage_costs(target, layout, text_tokens=text_tokens, decode_context=decode_context,
                        dtype_bytes=dtype_bytes, attn_implementation=attn_implementation,
                        config=config)  # type: ignore[arg-type]
    rows = [
        TableRow(target, mode, stage, c.matmul_flops, c.elementwise_flops, c.total_bytes, c.intensity, c)
        for stage, c in ((s, costs[s]) for s in TARGET_STAGES[target])
    ]
    total = Cost.total([r.cost for r in rows])
    rows.append(TableRow(target, mode, "total", total.matmul_flops, total.elementwise_flops, total.total_bytes,
                         total.intensity, total))
    return rows


def format_table(rows: list[TableRow]) -> str:
    """Fixed-width text rendering (GFLOP, MB, FLOP/B) of :func:`analytic_table` rows."""
    head = f"{'target':<6} {'mode':<8} {'stage':<10} {'matmul GFLOP':>14} {'elemwise GFLOP':>15} {'MB':>11} {'FLOP/B':>9}"
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(f"{r.target:<6} {r.mode:<8} {r.stage:<10} {r.matmul_flops / 1e9:>14.3f} "
                     f"{r.elementwise_flops / 1e9:>15.3f} {r.total_bytes / 1e6:>11.2f} {r.intensity:>9.1f}")
    return "\n".join(lines)
