"""FLOP verdicts: a measured count against the analytic model, an expected count, another device.

* :func:`flop_verdict`: one count fact of the suite and the report (the analytic model against a
  counter, after :func:`~harness.verify.delta.explain_delta`, within the ``verify`` band; the
  suite's variant of torch exact op key by op key; no unknown blind spot);
* :func:`expected_verdict`: ``harness.count(..., expected=N)``: every counter against a count the
  user derived, within ``rtol`` after the named causes;
* :func:`device_verdict`: the GPU suite's torch count on CUDA against meta and the analytic model.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from harness.golden.compare import Mismatch, format_mismatch

from .verdict import Verdict

__all__ = ["FlopVerdict", "flop_verdict", "key_differences", "key_rows", "ExpectedVerdict",
           "expected_verdict", "matmul_by_key", "device_verdict"]



def key_differences(analytic: Mapping[str, int], measured: Mapping[str, int],
                    keys: Iterable[str]) -> list[tuple[str, int, int]]:
    """``(op key, measured, analytic)`` for each of ``keys`` whose FLOPs differ (absent: 0)."""
    return [(k, measured.get(k, 0), analytic.get(k, 0)) for k in keys if measured.get(k, 0) != analytic.get(k, 0)]


def key_rows(analytic: Mapping[str, int], measured: Mapping[str, int], keys: Iterable[str]) -> list[Mismatch]:
    """``by_key[<k>]`` failure rows (measured obtained, analytic expected) of :func:`key_differences`."""
    return [Mismatch(f"by_key[{k}]", m, a) for k, m, a in key_differences(analytic, measured, keys)]


# ------------------------------------------------------------------------------- a count fact
@dataclass(frozen=True)
class FlopVerdict(Verdict):
    """A FLOP count fact's verdict. ``rows``: the explanation's ``(op key, analytic, measured)``;
    ``explanation``: the delta split into named causes; ``within_band``: the remainder after them
    lies within ``band`` (``verify``); ``key_differences``: ``(op key, measured, analytic)`` of the
    matmul-class keys that differ (torch, the suite's variant: they must be exact); ``unknown``:
    blind spots no known cause explains."""

    explanation: Any = None          # harness.verify.delta.DeltaExplanation
    band: Any = None                 # harness.golden.Band ("verify")
    within_band: bool = True
    key_differences: tuple[tuple[str, int, int], ...] = ()
    unknown: tuple[Any, ...] = ()    # DeltaExplanation components with known == False

    @property
    def key_rows(self) -> list[Mismatch]:
        return [Mismatch(f"by_key[{k}]", m, a) for k, m, a in self.key_differences]

    @property
    def key_lines(self) -> list[str]:
        return [f"{k}: measured {m:,} vs analytic {a:,}" for k, m, a in self.key_differences]

    @property
    def unknown_lines(self) -> list[str]:
        return [f"{c.name}: {c.flops:+,} ({c.detail})" for c in self.unknown]


def flop_verdict(name: str, counter: str, stage: str, analytic: Any, measured: Any, bands: Any) -> FlopVerdict:
    """The verdict of one measured FLOP count (``name``: how failure messages name the fact)."""
    from harness.analytic import MATMUL_KEYS
    from harness.measure import UNMAPPED

    from .delta import explain_delta

    from harness.run.engine import VARIANT     # the suite's variant: torch's op keys must be exact

    exact = counter == "torch" and measured.variant == VARIANT
    keys = (*MATMUL_KEYS, UNMAPPED) if exact else ()
    differences = tuple(key_differences(dict(analytic.flops), measured.by_key, keys))
    explanation = explain_delta(analytic, measured)
    band = bands.lookup("verify", stage, counter, measured.convention)
    expected = explanation.analytic_matmul
    within = band.allows(expected + explanation.remainder, expected)
    unknown = tuple(c for c in explanation.components if not c.known)
    problems = []
    if differences:
        problems.append(format_mismatch(
            f"verify {name}: matmul class differs between torch (obtained) and the analytic "
            "model (expected); it must be exact, op key by op key.",
            [Mismatch(f"by_key[{k}]", m, a) for k, m, a in differences]))
    if not within:
        rows = [Mismatch("measured - explained", expected + explanation.remainder, expected,
                         "unexplained remainder")]
        problems.append(format_mismatch(
            f"verify {name}: {counter} ({measured.variant}) after explain_delta differs from "
            "the analytic matmul class (expected) beyond the band.", rows, band=band,
            context=str(explanation).splitlines()))
    if unknown:
        problems.append(
            f"verify {name}: {counter} ({measured.variant}) has blind spots no known cause "
            "explains (document them in harness.verify.delta.KNOWN_BLIND_SPOTS, or fix the counter):\n"
            + "\n".join(f"  {c.name}: {c.flops:+,} ({c.detail})" for c in unknown)
            + "\n" + str(explanation))
    return FlopVerdict(explanation.rows, tuple(problems), explanation, band, within, differences, unknown)


# ------------------------------------------------------------------------- an expected count
def _n(value: int | float) -> str:
    return f"{value:,}" if isinstance(value, int) else f"{value:,.6g}"


def _signed(value: int | float) -> str:
    return f"{value:+,}" if isinstance(value, int) else f"{value:+,.6g}"


@dataclass(frozen=True)
class ExpectedVerdict(Verdict):
    """Each counter against an expected matmul-class count, after the named causes
    (``harness.count(..., expected=N)``: :class:`harness.count.Verdict`).

    ``rows[label]`` is the :class:`~harness.verify.delta.DeltaExplanation` of ``flops - expected``
    (element-wise work, the tool's sized approximations and its blind spots named; the
    remainder unexplained). ``passed``: every measured counter's remainder is within
    ``rtol * expected``, at least one patched counter was measured, every patched counter is
    complete, and no delta needs a blind spot nobody knows (``reasons`` says which of these last
    three failed; ``problems`` holds them and each remainder outside the band).
    """

    expected: int = 0
    rtol: float = 0.0
    reasons: tuple[str, ...] = ()

    @property
    def passed(self) -> bool:
        return self.verified

    def __str__(self) -> str:
        head = (f"verdict: {'PASS' if self.passed else 'FAIL'} against expected {_n(self.expected)} "
                f"matmul-class FLOPs (remainder band: rel {self.rtol:g})")
        lines = [head]
        for label, d in self.rows.items():
            named = [f"{c.name} {_signed(c.flops)}{'' if c.known else ' [UNKNOWN]'}"
                     for c in d.components if c.flops]
            ok = abs(d.remainder) <= self.rtol * abs(self.expected)
            lines.append(f"  {label:<16} {_n(d.measured_flops):>16}  delta {_signed(d.delta):>14}"
                         f"  = {'; '.join(named) or 'no named cause'}; remainder {_signed(d.remainder)}"
                         f"{'' if ok else '  <-- outside the band'}")
        for reason in self.reasons:
            lines.append(f"  {reason}")
        return "\n".join(lines)


def expected_verdict(expected: int, counts: Mapping[str, Any], reference: Any = None, *,
                     rtol: float = 0.0) -> ExpectedVerdict:
    """Every count (label -> StageCount) against ``expected`` matmul-class FLOPs; ``reference`` (a
    torch count of the same call) sizes what each tool cannot see by the way it reads the model."""
    from .delta import explain_delta

    rows = {label: explain_delta(expected, c, reference) for label, c in counts.items()}
    reasons = []
    if not any(c.variant == "patched" for c in counts.values()):
        reasons.append("no patched counter was measured: nothing asserts the count")
    for label, c in counts.items():
        if c.variant == "patched" and not c.complete:
            ran = [f"{op} x{n}" for op, n in c.uncounted_matmul_ops.items()] or \
                  [f"{k} {v:,} FLOPs" for k, v in c.unseen.items() if v]
            reasons.append(f"{label} is incomplete: products ran that it did not count "
                           f"({', '.join(ran)})")
        for comp in rows[label].components:
            if not comp.known:
                reasons.append(f"{label}: {comp.name} ({comp.flops:+,} FLOPs) is no known blind "
                               f"spot: a new finding")
    outside = [f"{label}: remainder {_signed(d.remainder)} FLOPs outside the band (rel {rtol:g} of "
               f"{_n(expected)})" for label, d in rows.items() if abs(d.remainder) > rtol * expected]
    return ExpectedVerdict(rows, tuple(outside + reasons), expected, rtol, tuple(reasons))


# ----------------------------------------------------------------------------- another device
def matmul_by_key(by_key: Mapping[str, int]) -> dict[str, int]:
    """The non-zero matmul-class entries of an op-key mapping (``unmapped`` counts as matmul)."""
    from harness.analytic import OP_CLASS

    return {k: int(v) for k, v in sorted(by_key.items()) if v and OP_CLASS.get(k, "matmul") == "matmul"}


def device_verdict(cuda: Any, meta: Any, analytic: Any, raw_only: Mapping[str, Any] | None = None) -> Verdict:
    """Torch's count on CUDA against meta and the analytic model: verified when CUDA == meta ==
    analytic by matmul key and nothing ran uncounted on CUDA. ``rows``: ``(op key, CUDA, meta,
    analytic)`` for every matmul-class key; ``raw_only``: the raw ops seen on one device only."""
    c, m, a = matmul_by_key(cuda.by_key), matmul_by_key(meta.by_key), matmul_by_key(analytic.flops)
    rows = tuple((k, c.get(k, 0), m.get(k, 0), a.get(k, 0)) for k in sorted({*c, *m, *a}))
    found = []
    if not cuda.complete:
        found.append(f"matmul-class work ran uncounted on CUDA:\n{cuda.summary()}")
    if c != m:
        found.append(f"CUDA and meta counts differ by op key\nCUDA: {cuda.summary()}\n"
                     f"meta: {meta.summary()}\nraw ops on one side only: {dict(raw_only or {})}")
    if c != a:
        found.append(f"CUDA count vs analytic\nCUDA: {cuda.summary()}\nanalytic: {a}")
    return Verdict(rows, tuple(found))
