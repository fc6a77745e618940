"""Per-stage comparison of the analytic matmul count with every counter (a table for reports).

``compare_stage(analytic, counts)`` explains each StageCount against the analytic cost;
``format_comparison(rows)`` renders a Markdown table: one row per stage, one column per
counter/variant, each cell the counter's FLOPs (2 x MACs), its delta split into named causes and
the unexplained remainder.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Sequence

from .base import StageCount
from .delta import DeltaExplanation, explain_delta

__all__ = ["StageComparison", "compare_stage", "format_comparison", "DEFAULT_COLUMNS"]

DEFAULT_COLUMNS: tuple[tuple[str, str], ...] = (
    ("torch", "stock"), ("torch", "patched"), ("fvcore", "stock"), ("fvcore", "patched"),
    ("thop", "stock"), ("thop", "patched"),
)


@dataclass(frozen=True)
class StageComparison:
    """One stage: the analytic matmul FLOPs and each counter's count with its explanation."""

    target: str
    stage: str
    analytic_matmul: int
    counts: dict[tuple[str, str], StageCount]
    deltas: dict[tuple[str, str], DeltaExplanation]
    missing: dict[tuple[str, str], str]  # (counter, variant) -> why there is no count

    @property
    def max_remainder_rel(self) -> float:
        return max((abs(d.remainder_rel) for d in self.deltas.values()), default=0.0)


def compare_stage(analytic: Any, counts: Iterable[StageCount], *, target: str = "", stage: str = "",
                  missing: dict[tuple[str, str], str] | None = None) -> StageComparison:
    """Explain every count of one stage against the analytic cost (``harness.analytic.Cost``)."""
    counts = list(counts)
    by_column = {(c.counter, c.variant): c for c in counts}
    deltas = {k: explain_delta(analytic, c) for k, c in by_column.items()}
    matmul = next(iter(deltas.values())).analytic_matmul if deltas else \
        sum(v for k, v in analytic.flops.items() if k in _matmul_keys())
    first = counts[0] if counts else None
    return StageComparison(target=target or (first.target if first else ""),
                           stage=stage or (first.stage if first else ""), analytic_matmul=matmul,
                           counts=by_column, deltas=deltas, missing=dict(missing or {}))


def _matmul_keys() -> set[str]:
    from .keys import KEY_CLASS
    return {k for k, c in KEY_CLASS.items() if c == "matmul"}


def _g(flops: float) -> str:
    return f"{flops / 1e9:,.3f}"


def _cell(delta: DeltaExplanation) -> str:
    causes = [f"{c.name} {_g(c.flops)}" for c in delta.components if c.flops]
    text = f"{_g(delta.measured_flops)}"
    if delta.delta:
        text += f" (Δ {_g(delta.delta)}: " + ("; ".join(causes) if causes else "no named cause") + ")"
    text += f" rem {delta.remainder_rel:+.4%}"
    return text


def format_comparison(rows: Sequence[StageComparison],
                      columns: Sequence[tuple[str, str]] = DEFAULT_COLUMNS) -> str:
    """Markdown table in GFLOP (FLOPs = 2 x MACs); cells give Δ by cause and the remainder."""
    head = "| stage | analytic (matmul) | " + " | ".join(f"{c} {v}" for c, v in columns) + " |"
    lines = [head, "|" + " --- |" * (2 + len(columns))]
    for row in rows:
        cells = []
        for column in columns:
            if column in row.deltas:
                cells.append(_cell(row.deltas[column]))
            else:
                cells.append(f"n/a ({row.missing.get(column, 'not run')})")
        lines.append(f"| {row.stage} | {_g(row.analytic_matmul)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
