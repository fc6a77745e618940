"""Explain a counter's FLOPs against the analytic matmul-class count, cause by cause.

``explain_delta(analytic, measured)`` splits ``measured.flops - analytic.matmul_flops`` into:

* **convention** -- always 0 in FLOPs (``measured.flops`` is already converted), with the error a
  reader of the raw figure would make (raw MACs read as FLOPs: off by -50%);
* **element-wise class** -- what the counter counted under element-wise keys (norms, softmax,
  activations, in the tool's own per-element convention): not part of the matmul class;
* **known approximations** of the tool, sized op by op against the reference formulas
  (``measured.deviations``, e.g. fvcore's einsum handle rounding to 4 significant digits);
* **each blind spot** the counter showed in this run (matmul-class work that ran and that it did
  not count, ``measured.unseen``), sized by the *analytic* op keys it covers -- an independent
  size, e.g. "SDPA QK^T+AV not seen: -234.7 GFLOP". A blind spot not in :data:`KNOWN_BLIND_SPOTS`
  is still shown, marked unknown (a new finding);
* **the remainder**, absolute and relative to the analytic matmul count: the only part a
  tolerance band may bound.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from .base import StageCount
from .keys import KEY_CLASS, MATMUL_KEYS, UNMAPPED

__all__ = ["BlindSpot", "KNOWN_BLIND_SPOTS", "DeltaComponent", "DeltaExplanation", "explain_delta"]


@dataclass(frozen=True)
class BlindSpot:
    """A documented thing a counter cannot see (each one pinned by a test on our versions)."""

    counter: str
    variants: tuple[str, ...]
    keys: tuple[str, ...]
    label: str
    cause: str


#: What each counter is known to miss (counters.md, re-measured on torch 2.13.0, fvcore
#: 0.1.5.post20221221, ultralytics-thop 2.2.3; tests/test_counters_facts.py pins each line).
KNOWN_BLIND_SPOTS: tuple[BlindSpot, ...] = (
    BlindSpot("torch", ("stock",), ("sdpa_qk", "sdpa_av"), "SDPA QK^T+AV not seen",
              "on CPU tensors SDPA dispatches to aten._scaled_dot_product_flash_attention_for_cpu, "
              "which has no formula in torch 2.13 (on meta it decomposes to bmm and is counted)"),
    BlindSpot("torch", ("stock",), ("experts",), "grouped_mm experts not seen",
              "no formula for aten._grouped_mm (transformers 5 default experts_implementation)"),
    BlindSpot("fvcore", ("stock",), ("sdpa_qk", "sdpa_av"), "SDPA QK^T+AV not seen",
              "no default handle for aten::scaled_dot_product_attention (reported unsupported)"),
    BlindSpot("fvcore", ("stock",), ("experts",), "grouped_mm experts not seen",
              "no default handle for aten::_grouped_mm"),
    BlindSpot("thop", ("stock",), ("experts",), "grouped_mm experts not seen",
              "no functional rule for torch._grouped_mm / F.grouped_mm"),
    BlindSpot("thop", ("stock",), tuple(MATMUL_KEYS) + (UNMAPPED,), "functional product without a thop rule",
              "thop 2.2.3 counts matmul/@/bmm/einsum/F.linear/SDPA outside ruled modules, but has no "
              "rule for torch.mm, addmm, baddbmm, F.conv*, grouped_mm"),
)


@dataclass(frozen=True)
class DeltaComponent:
    """One named cause of the delta, in FLOPs (negative: the counter has less than the analytic)."""

    name: str
    flops: int
    detail: str = ""
    known: bool = True


@dataclass(frozen=True)
class DeltaExplanation:
    """``measured.flops - analytic matmul FLOPs`` = sum(components) + remainder."""

    counter: str
    variant: str
    target: str
    stage: str
    analytic_matmul: int
    measured_flops: int
    raw: int | float
    convention: str
    delta: int
    components: tuple[DeltaComponent, ...]
    remainder: int
    remainder_rel: float
    rows: tuple[tuple[str, int, int], ...] = ()   # (key, analytic FLOPs, measured FLOPs)
    findings: tuple[str, ...] = ()

    @property
    def explained(self) -> int:
        return sum(c.flops for c in self.components)

    def within(self, rel: float = 1e-3) -> bool:
        """True when the unexplained remainder is within ``rel`` of the analytic matmul count."""
        return abs(self.remainder_rel) <= rel

    def __str__(self) -> str:
        head = (f"{self.counter} ({self.variant}) {self.target}/{self.stage}: measured "
                f"{_fmt(self.measured_flops)} vs analytic matmul {_fmt(self.analytic_matmul)}: "
                f"delta {_fmt(self.delta, sign=True)} ({_pct(self.delta, self.analytic_matmul)})")
        lines = [head]
        width = max([len(c.name) for c in self.components] + [len("remainder")])
        for c in self.components:
            flag = "" if c.known else "  [UNKNOWN blind spot: a new finding]"
            lines.append(f"  {c.name:<{width}}  {_fmt(c.flops, sign=True):>22}  {c.detail}{flag}")
        lines.append(f"  {'remainder':<{width}}  {_fmt(self.remainder, sign=True):>22}  "
                     f"({self.remainder_rel:+.4%} of analytic matmul, unexplained)")
        if self.rows:
            lines.append(f"  {'key':<18} {'analytic':>22} {'measured':>22} {'diff':>22}")
            for key, a, m in self.rows:
                lines.append(f"  {key:<18} {_fmt(a):>22} {_fmt(m):>22} {_fmt(m - a, sign=True):>22}")
        for finding in self.findings:
            lines.append(f"  finding: {finding}")
        return "\n".join(lines)


def _fmt(flops: int | float, sign: bool = False) -> str:
    s = "+" if sign else ""
    a = abs(flops)
    if a >= 1e9:
        return f"{flops / 1e9:{s},.3f} GFLOP"
    if a >= 1e6:
        return f"{flops / 1e6:{s},.3f} MFLOP"
    return f"{flops:{s},} FLOP"


def _pct(part: float, whole: float) -> str:
    return f"{part / whole:+.3%}" if whole else ("n/a" if part else "+0%")


def _blind_spot(counter: str, variant: str, key: str) -> BlindSpot | None:
    for spot in KNOWN_BLIND_SPOTS:
        if spot.counter == counter and variant in spot.variants and key in spot.keys:
            return spot
    return None


def explain_delta(analytic: Any, measured: StageCount) -> DeltaExplanation:
    """Split ``measured.flops - analytic.matmul_flops`` into named causes and a remainder.

    ``analytic`` is a ``harness.analytic.Cost`` (anything with ``flops``: op key -> FLOPs).
    """
    flops: Mapping[str, int] = analytic.flops
    analytic_matmul = sum(v for k, v in flops.items() if KEY_CLASS.get(k) == "matmul")
    delta = measured.flops - analytic_matmul
    components: list[DeltaComponent] = []

    if measured.convention == "mac":
        off = measured.raw - measured.flops
        detail = (f"raw {measured.raw:,} MACs x2 = {measured.flops:,} FLOPs (already converted); "
                  f"reading the raw figure as FLOPs would be off by {_fmt(off, sign=True)} "
                  f"({_pct(off, measured.flops)})")
    else:
        detail = f"raw {measured.raw:,} is already FLOPs (2 per multiply-add)"
    components.append(DeltaComponent("convention", 0, detail))

    elementwise = {k: v for k, v in measured.by_key.items() if KEY_CLASS.get(k) == "elementwise" and v}
    if elementwise:
        components.append(DeltaComponent(
            "element-wise class", sum(elementwise.values()),
            f"counted by {measured.counter} in its own per-element convention, not matmul class: "
            + ", ".join(f"{k} {_fmt(v)}" for k, v in elementwise.items())))

    for cause, value in measured.deviations.items():
        if value:
            components.append(DeltaComponent(
                cause, int(value), "the tool's count minus the exact reference formula for the same ops"))

    findings: list[str] = []
    grouped: dict[str, list[str]] = {}
    unknown_keys: list[str] = []
    for key, unseen in measured.unseen.items():
        if not unseen or KEY_CLASS.get(key) != "matmul":
            continue
        spot = _blind_spot(measured.counter, measured.variant, key)
        if spot is None:
            unknown_keys.append(key)
        else:
            grouped.setdefault(spot.label, []).append(key)
    for label, keys in grouped.items():
        spot = next(s for s in KNOWN_BLIND_SPOTS if s.label == label and s.counter == measured.counter)
        components.append(_blind_component(label, keys, flops, measured, spot.cause, known=True))
    for key in unknown_keys:
        components.append(_blind_component(f"{key} not seen", [key], flops, measured,
                                           f"{measured.counter} ({measured.variant}) ran it uncounted",
                                           known=False))
        findings.append(f"{key}: {measured.counter} ({measured.variant}) did not count "
                        f"{_fmt(measured.unseen[key])} of it and no known blind spot says why")
    if measured.by_key.get(UNMAPPED):
        findings.append(f"{_fmt(measured.by_key[UNMAPPED])} of matmul-class work could not be keyed "
                        f"(extend harness.counters.keys); it stays in the remainder")
    for op, n in measured.uncounted_matmul_ops.items():
        findings.append(f"{op} x{n} ran without a formula/handle/rule")

    remainder = delta - sum(c.flops for c in components)
    rel = remainder / analytic_matmul if analytic_matmul else (0.0 if remainder == 0 else float("inf"))
    keys = [k for k in (*MATMUL_KEYS, UNMAPPED)
            if flops.get(k, 0) or measured.by_key.get(k, 0)]
    rows = tuple((k, int(flops.get(k, 0)), int(measured.by_key.get(k, 0))) for k in keys)
    return DeltaExplanation(
        counter=measured.counter, variant=measured.variant, target=measured.target,
        stage=measured.stage, analytic_matmul=analytic_matmul, measured_flops=measured.flops,
        raw=measured.raw, convention=measured.convention, delta=delta,
        components=tuple(components), remainder=remainder, remainder_rel=rel, rows=rows,
        findings=tuple(findings))


def _blind_component(label: str, keys: list[str], flops: Mapping[str, int], measured: StageCount,
                     cause: str, known: bool) -> DeltaComponent:
    """Size a blind spot by the analytic keys it covers (or by what was observed, if partial)."""
    total = 0
    parts = []
    for key in keys:
        analytic_size = int(flops.get(key, 0))
        observed = int(measured.unseen.get(key, 0))
        if measured.by_key.get(key, 0):  # partly counted: only the observed uncounted part
            total -= observed
            parts.append(f"{key}: partly counted, {_fmt(observed)} observed uncounted "
                         f"(analytic {_fmt(analytic_size)})")
        else:
            total -= analytic_size
            parts.append(f"{key}: analytic {_fmt(analytic_size)} (observed uncounted {_fmt(observed)})")
    return DeltaComponent(label, total, f"{cause}; " + "; ".join(parts), known=known)
