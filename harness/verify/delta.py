"""Explain a counter's FLOPs against the analytic matmul-class count, cause by cause.

:func:`explain_delta` splits ``measured.flops - analytic.matmul_flops`` (``analytic`` may also be a
plain integer the user derived) into convention, element-wise class, known approximations, each
blind spot (sized by the analytic op keys it covers, unknown ones marked as findings) and the
remainder, the only part a tolerance band may bound. :func:`explain_pair` does the same between two
counters. The causes: docs/count.md ("The named causes of a delta").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from harness.measure.base import StageCount
from harness.measure.keys import GENERIC_KEYS, KEY_CLASS, MATMUL_KEYS, UNMAPPED

__all__ = ["BlindSpot", "KNOWN_BLIND_SPOTS", "ToolProperty", "TOOL_PROPERTIES", "tool_property_components", "DeltaComponent", "DeltaExplanation", "explain_delta",
           "PairExplanation", "explain_pair"]


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
    BlindSpot("torch", ("stock",), ("experts", "grouped_mm"), "grouped_mm experts not seen",
              "no formula for aten._grouped_mm (transformers 5 default experts_implementation)"),
    BlindSpot("fvcore", ("stock",), ("sdpa_qk", "sdpa_av"), "SDPA QK^T+AV not seen",
              "no default handle for aten::scaled_dot_product_attention (reported unsupported)"),
    BlindSpot("fvcore", ("stock",), ("experts", "grouped_mm"), "grouped_mm experts not seen",
              "no default handle for aten::_grouped_mm"),
    BlindSpot("fvcore", ("stock",), tuple(MATMUL_KEYS) + GENERIC_KEYS + (UNMAPPED,), "product without an fvcore handle",
              "fvcore 0.1.5's default handles cover aten::addmm, bmm, matmul, linear, einsum and "
              "_convolution; any other product (aten::baddbmm of GPT-2-style eager attention, "
              "aten::_scaled_mm, aten::mv, ...) is reported unsupported and sized here by the "
              "reference formula"),
    BlindSpot("thop", ("stock",), ("experts", "grouped_mm"), "grouped_mm experts not seen",
              "no functional rule for torch._grouped_mm / F.grouped_mm"),
    BlindSpot("thop", ("stock",), tuple(MATMUL_KEYS) + GENERIC_KEYS + (UNMAPPED,), "functional product without a thop rule",
              "thop 2.2.3 counts matmul/@/bmm/einsum/F.linear/SDPA outside ruled modules, but has no "
              "rule for torch.mm, addmm, baddbmm, F.conv*, grouped_mm"),
)


@dataclass(frozen=True)
class ToolProperty:
    """How a tool reads a model, which hides a whole class of products from it: sized by the
    reference counter's record of how each product ran (``StageCount.ran_as``, torch counter)."""

    counter: str
    ran_as: str
    label: str
    cause: str


#: What each tool cannot see by the way it reads the model (tests/test_peers.py pins each one).
TOOL_PROPERTIES: tuple[ToolProperty, ...] = (
    ToolProperty("fvcore", "unused", "jit trace drops unused results",
                 "torch.jit.trace eliminates dead code: a product whose result reaches no output of "
                 "the call is not in the graph fvcore reads"),
    ToolProperty("fvcore", "torchscript", "TorchScript calls not seen",
                 "a scripted function or module is one prim::CallFunction/CallMethod node in the "
                 "trace, which fvcore skips with everything inside it"),
    ToolProperty("fvcore", "autograd_function", "custom autograd.Function not seen",
                 "torch.jit.trace records a custom torch.autograd.Function as one prim::PythonOp "
                 "node, which fvcore skips with the products inside it"),
    ToolProperty("thop", "torchscript", "TorchScript calls not seen",
                 "thop sees modules and Python-level torch functions; products run inside "
                 "TorchScript call neither"),
)


def tool_property_components(measured: StageCount, reference: StageCount | None,
                             sign: int = -1) -> list["DeltaComponent"]:
    """The sized :data:`TOOL_PROPERTIES` of ``measured``'s tool, from ``reference.ran_as``."""
    if reference is None or reference.counter == measured.counter or not reference.ran_as:
        return []
    out = []
    for prop in TOOL_PROPERTIES:
        size = int(reference.ran_as.get(prop.ran_as, 0))
        if prop.counter == measured.counter and size:
            out.append(DeltaComponent(
                prop.label, sign * size,
                f"{prop.cause}; {_fmt(size)} of products ran so ({reference.counter} "
                f"{reference.variant}'s record)"))
    return out


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
        lines = [head, *_component_lines(self.components, self.remainder,
                                         f"({self.remainder_rel:+.4%} of analytic matmul, unexplained)")]
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


def explain_delta(analytic: Any, measured: StageCount, reference: StageCount | None = None) -> DeltaExplanation:
    """Split ``measured.flops - analytic.matmul_flops`` into named causes and a remainder.

    ``analytic`` is a ``harness.analytic.Cost`` (anything with ``flops``: op key -> FLOPs), or an
    int: a matmul-class FLOP count without op keys (an expected value); blind spots are then
    sized by what the counter observed uncounted (``measured.unseen``). ``reference`` (the torch
    count of the same call) sizes what ``measured``'s tool cannot see by the way it reads the
    model (:data:`TOOL_PROPERTIES`: unused results, TorchScript, custom autograd Functions).
    """
    if isinstance(analytic, int) and not isinstance(analytic, bool):
        flops: Mapping[str, int] = {}
        analytic_matmul = int(analytic)
        by_key_sizes = False
    else:
        flops = analytic.flops
        analytic_matmul = sum(v for k, v in flops.items() if KEY_CLASS.get(k) == "matmul")
        by_key_sizes = True
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

    components.extend(tool_property_components(measured, reference))

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
    sizes = flops if by_key_sizes else None
    for label, keys in grouped.items():
        spot = next(s for s in KNOWN_BLIND_SPOTS if s.label == label and s.counter == measured.counter)
        components.append(_blind_component(label, keys, sizes, measured, spot.cause, known=True))
    for key in unknown_keys:
        components.append(_blind_component(f"{key} not seen", [key], sizes, measured,
                                           f"{measured.counter} ({measured.variant}) ran it uncounted",
                                           known=False))
        findings.append(f"{key}: {measured.counter} ({measured.variant}) did not count "
                        f"{_fmt(measured.unseen[key])} of it and no known blind spot says why")
    if measured.by_key.get(UNMAPPED):
        findings.append(f"{_fmt(measured.by_key[UNMAPPED])} of matmul-class work could not be keyed "
                        f"(extend harness.measure.keys); it stays in the remainder")
    for op, n in measured.uncounted_matmul_ops.items():
        findings.append(f"{op} x{n} ran without a formula/handle/rule")

    remainder = delta - sum(c.flops for c in components)
    rel = remainder / analytic_matmul if analytic_matmul else (0.0 if remainder == 0 else float("inf"))
    keys = [k for k in (*MATMUL_KEYS, *GENERIC_KEYS, UNMAPPED)
            if flops.get(k, 0) or measured.by_key.get(k, 0)] if by_key_sizes else []
    rows = tuple((k, int(flops.get(k, 0)), int(measured.by_key.get(k, 0))) for k in keys)
    return DeltaExplanation(
        counter=measured.counter, variant=measured.variant, target=measured.target,
        stage=measured.stage, analytic_matmul=analytic_matmul, measured_flops=measured.flops,
        raw=measured.raw, convention=measured.convention, delta=delta,
        components=tuple(components), remainder=remainder, remainder_rel=rel, rows=rows,
        findings=tuple(findings))


def _blind_component(label: str, keys: list[str], flops: Mapping[str, int] | None, measured: StageCount,
                     cause: str, known: bool) -> DeltaComponent:
    """Size a blind spot by the analytic keys it covers (or by what was observed, if partial or
    when there are no analytic keys: ``flops`` None)."""
    total = 0
    parts = []
    for key in keys:
        observed = int(measured.unseen.get(key, 0))
        if flops is None:
            total -= observed
            parts.append(f"{key}: {_fmt(observed)} observed uncounted (reference formula)")
            continue
        analytic_size = int(flops.get(key, 0))
        if measured.by_key.get(key, 0):  # partly counted: only the observed uncounted part
            total -= observed
            parts.append(f"{key}: partly counted, {_fmt(observed)} observed uncounted "
                         f"(analytic {_fmt(analytic_size)})")
        else:
            total -= analytic_size
            parts.append(f"{key}: analytic {_fmt(analytic_size)} (observed uncounted {_fmt(observed)})")
    return DeltaComponent(label, total, f"{cause}; " + "; ".join(parts), known=known)


# Between two counters ---------------------------------------------------------------------------

def _label(measured: StageCount) -> str:
    return f"{measured.counter} {measured.variant}"


def _int_if_whole(value: int | float) -> int | float:
    return int(value) if float(value).is_integer() else value


@dataclass(frozen=True)
class PairExplanation:
    """``b - a`` between two counters of the same run; FLOPs = 2 x MACs.

    ``raw_delta`` (``b.raw - a.raw``, what comparing the two printed figures gives) =
    sum(components) + remainder. The ``convention`` component is ``raw_delta - delta``: the part
    that is only MACs read as FLOPs; every other component explains ``delta`` (``b.flops -
    a.flops``), and the remainder is what no named cause explains.
    """

    a: str                       # "fvcore stock"
    b: str                       # "torch patched"
    raw_a: int | float
    convention_a: str
    flops_a: int
    raw_b: int | float
    convention_b: str
    flops_b: int
    raw_delta: int | float
    delta: int
    components: tuple[DeltaComponent, ...]
    remainder: int
    rows: tuple[tuple[str, int, int], ...] = ()   # (op key, a FLOPs, b FLOPs), differing keys only
    findings: tuple[str, ...] = ()

    @property
    def explained(self) -> int | float:
        """The named part of ``raw_delta`` (convention included)."""
        return sum(c.flops for c in self.components)

    @property
    def remainder_rel(self) -> float:
        """The remainder relative to the larger of the two FLOP counts."""
        scale = max(abs(self.flops_a), abs(self.flops_b))
        return self.remainder / scale if scale else (0.0 if self.remainder == 0 else float("inf"))

    def __str__(self) -> str:
        head = (f"{self.b} - {self.a}: raw {self.raw_b:,} {_unit(self.convention_b)} - "
                f"{self.raw_a:,} {_unit(self.convention_a)} = {self.raw_delta:+,}; in FLOPs "
                f"{_fmt(self.flops_b)} - {_fmt(self.flops_a)} = {_fmt(self.delta, sign=True)}")
        lines = [head, *_component_lines(self.components, self.remainder, "(unexplained)")]
        for finding in self.findings:
            lines.append(f"  finding: {finding}")
        return "\n".join(lines)


def _component_lines(components: Sequence[DeltaComponent], remainder: int, remainder_note: str) -> list[str]:
    """A delta's named parts, one aligned line each (an unknown blind spot flagged), then the remainder."""
    width = max([len(c.name) for c in components] + [len("remainder")])
    lines = []
    for c in components:
        flag = "" if c.known else "  [UNKNOWN blind spot: a new finding]"
        lines.append(f"  {c.name:<{width}}  {_fmt(c.flops, sign=True):>22}  {c.detail}{flag}")
    lines.append(f"  {'remainder':<{width}}  {_fmt(remainder, sign=True):>22}  {remainder_note}")
    return lines


def _unit(convention: str) -> str:
    return "MACs" if convention == "mac" else "FLOPs"


def _blind_spot_parts(measured: StageCount, skip: set[str]) -> list[tuple[str, list[str], str, bool]]:
    """``(label, keys, cause, known)`` for each blind spot ``measured`` showed (keys in ``skip`` left out)."""
    grouped: dict[str, tuple[list[str], str, bool]] = {}
    for key, unseen in measured.unseen.items():
        if not unseen or KEY_CLASS.get(key) != "matmul" or key in skip:
            continue
        spot = _blind_spot(measured.counter, measured.variant, key)
        if spot is None:
            grouped.setdefault(f"{key} not seen", ([], f"{_label(measured)} ran it uncounted", False))[0].append(key)
        else:
            grouped.setdefault(spot.label, ([], spot.cause, True))[0].append(key)
    return [(label, keys, cause, known) for label, (keys, cause, known) in grouped.items()]


def explain_pair(a: StageCount, b: StageCount, reference: StageCount | None = None) -> PairExplanation:
    """Split ``b.raw - a.raw`` (two counters of one run) into named causes and a remainder.

    Causes: convention (a MAC figure read as FLOPs), element-wise conventions (norms, activations,
    softmax counted by one tool and not the other, each in its own per-element convention), the
    tools' sized approximations (``deviations``), and each side's blind spots, sized by the
    reference formulas of what it observed running uncounted (a blind spot both sides share, of the
    same size, cancels and is only noted). ``reference`` (a torch count of the same call, or
    None: whichever of ``a`` and ``b`` is one) sizes what each side's tool cannot see by the way
    it reads the model (:data:`TOOL_PROPERTIES`). No analytic model is involved.
    """
    raw_delta = _int_if_whole(b.raw - a.raw)
    delta = int(b.flops - a.flops)
    components: list[DeltaComponent] = []

    def convention_text(m: StageCount) -> str:
        if m.convention == "mac":
            return f"{_label(m)} raw {m.raw:,} MACs = {m.flops:,} FLOPs"
        return f"{_label(m)} raw {m.raw:,} is FLOPs"

    convention = _int_if_whole(raw_delta - delta)
    components.append(DeltaComponent("convention", convention,
                                     f"{convention_text(a)}; {convention_text(b)}"
                                     + ("" if convention == 0 else
                                        "; the raw figures differ by this much in unit alone")))

    ew_a = {k: v for k, v in a.by_key.items() if KEY_CLASS.get(k) == "elementwise" and v}
    ew_b = {k: v for k, v in b.by_key.items() if KEY_CLASS.get(k) == "elementwise" and v}
    if ew_a or ew_b:
        diff = sum(ew_b.values()) - sum(ew_a.values())
        parts = [f"{k} {_fmt(ew_a.get(k, 0))} vs {_fmt(ew_b.get(k, 0))}"
                 for k in dict.fromkeys([*ew_a, *ew_b]) if ew_a.get(k, 0) != ew_b.get(k, 0)]
        if diff or parts:
            components.append(DeltaComponent(
                "element-wise conventions", int(diff),
                f"element-wise work each tool counts in its own per-element convention "
                f"({_label(a)} vs {_label(b)}): " + (", ".join(parts) or "same total")))

    for cause in dict.fromkeys([*a.deviations, *b.deviations]):
        value = b.deviations.get(cause, 0) - a.deviations.get(cause, 0)
        if value:
            components.append(DeltaComponent(
                cause, int(value), "the tool's count minus the exact reference formula for the same ops"))

    if reference is None:
        reference = next((m for m in (a, b) if m.ran_as), None)
    for measured, sign in ((a, 1), (b, -1)):
        for comp in tool_property_components(measured, reference, sign=sign):
            components.append(DeltaComponent(f"{_label(measured)}: {comp.name}", comp.flops, comp.detail))

    shared = {k for k, v in a.unseen.items() if v and b.unseen.get(k) == v}
    findings: list[str] = []
    for measured, sign in ((a, 1), (b, -1)):
        for label, keys, cause, known in _blind_spot_parts(measured, shared):
            size = sum(int(measured.unseen[k]) for k in keys)
            detail = (f"{cause}; " + "; ".join(f"{k}: {_fmt(measured.unseen[k])} observed uncounted"
                                               for k in keys))
            components.append(DeltaComponent(f"{_label(measured)}: {label}", sign * size, detail, known=known))
            if not known:
                findings.append(f"{_label(measured)} did not count {_fmt(size)} of "
                                f"{', '.join(keys)} and no known blind spot says why")
    for key in sorted(shared):
        if KEY_CLASS.get(key) == "matmul":
            findings.append(f"both miss {key} ({_fmt(a.unseen[key])}): the same blind spot, no delta")
    for measured in (a, b):
        if measured.by_key.get(UNMAPPED):
            findings.append(f"{_label(measured)}: {_fmt(measured.by_key[UNMAPPED])} of matmul-class work "
                            f"could not be keyed; it is compared as '{UNMAPPED}'")
        for op, n in measured.uncounted_matmul_ops.items():
            findings.append(f"{_label(measured)}: {op} x{n} ran without a formula/handle/rule")

    remainder = int(round(raw_delta - sum(c.flops for c in components)))
    keys = [k for k in dict.fromkeys([*a.by_key, *b.by_key]) if a.by_key.get(k, 0) != b.by_key.get(k, 0)]
    rows = tuple((k, int(a.by_key.get(k, 0)), int(b.by_key.get(k, 0))) for k in keys)
    return PairExplanation(a=_label(a), b=_label(b), raw_a=a.raw, convention_a=a.convention,
                           flops_a=a.flops, raw_b=b.raw, convention_b=b.convention, flops_b=b.flops,
                           raw_delta=raw_delta, delta=delta, components=tuple(components),
                           remainder=remainder, rows=rows, findings=tuple(findings))
