"""The result of :func:`harness.count`: every counter x variant, explained; FLOPs = 2 x MACs.

:class:`CountResult` holds each counter's :class:`~harness.measure.StageCount` (raw figure in
the tool's own unit, its convention, the FLOPs, the breakdown per module, per op and per op key,
unknown / ignored ops and the work it saw run uncounted), the delta between every pair of
counters split into named causes (:class:`~harness.verify.PairExplanation`), what could not
be measured and why, and, when an expected count was given, the :class:`Verdict`
(:class:`harness.verify.ExpectedVerdict`, decided by :func:`harness.verify.expected_verdict`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable

from harness.measure import KEY_CLASS, StageCount
from harness.verify import ExpectedVerdict as Verdict
from harness.verify import PairExplanation, explain_pair
from harness.verify.flops import _n, _signed

__all__ = ["CountResult", "Verdict", "label_of"]

from . import TABLE_KINDS


def label_of(counter: str, variant: str) -> str:
    """``"fvcore stock"``: how a counter x variant is named in tables and deltas."""
    return f"{counter} {variant}"


@dataclass
class CountResult:
    """Every counter x variant on one model call, explained. FLOPs = 2 x MACs everywhere."""

    model: str                                        # class name (or callable name)
    device: str                                       # where it ran: meta, cpu, cuda:0 ...
    counts: dict[str, StageCount]                     # "torch patched" -> StageCount
    missing: dict[str, str] = field(default_factory=dict)   # label -> why it was not measured
    reference: str | None = None                      # the label deltas are shown against
    verdict: Verdict | None = None
    notes: list[str] = field(default_factory=list)
    #: module path -> parameters (its own and its descendants'), in the model's tree order
    parameters: dict[str, int] = field(default_factory=dict)
    _pairs: dict[tuple[str, str], PairExplanation] = field(default_factory=dict, repr=False)

    # ---------------------------------------------------------------------------- numbers
    @property
    def labels(self) -> tuple[str, ...]:
        return tuple(self.counts)

    @property
    def flops(self) -> int:
        """The reference counter's matmul-class FLOPs (products: linear, conv, attention, einsum,
        experts; element-wise work is kept apart, see :attr:`elementwise_flops`)."""
        return self._reference_count().matmul_flops

    @property
    def elementwise_flops(self) -> int:
        """The reference counter's element-wise FLOPs (its own per-element convention)."""
        return self._reference_count().elementwise_flops

    def _reference_count(self) -> StageCount:
        if self.reference is None:
            raise LookupError(f"no counter measured {self.model}: " + "; ".join(
                f"{k}: {v}" for k, v in self.missing.items()))
        return self.counts[self.reference]

    def __getitem__(self, label: str) -> StageCount:
        """``result["fvcore stock"]`` (also ``"fvcore:stock"``) -> its StageCount."""
        key = label.replace(":", " ")
        if key in self.counts:
            return self.counts[key]
        if key in self.missing:
            raise KeyError(f"{key} was not measured: {self.missing[key]}")
        raise KeyError(f"{label!r}: not a counter of this result; measured: {', '.join(self.counts)}")

    @property
    def agree(self) -> bool:
        """True when every measured patched counter is complete and has the same matmul FLOPs."""
        patched = [c for c in self.counts.values() if c.variant == "patched"]
        return bool(patched) and all(c.complete for c in patched) and \
            len({c.matmul_flops for c in patched}) == 1

    def delta(self, a: str, b: str) -> PairExplanation:
        """``b - a`` split into named causes (labels such as ``"fvcore stock"``)."""
        a, b = a.replace(":", " "), b.replace(":", " ")
        if (a, b) not in self._pairs:
            reference = self.counts.get(self.reference) if self.reference else None
            self._pairs[(a, b)] = explain_pair(self[a], self[b], reference)
        return self._pairs[(a, b)]

    @property
    def deltas(self) -> dict[tuple[str, str], PairExplanation]:
        """The delta of every pair of measured counters (``(a, b)`` -> ``b - a``), in table order."""
        labels = self.labels
        return {(a, b): self.delta(a, b) for i, a in enumerate(labels) for b in labels[i + 1:]}

    @property
    def unexplained(self) -> dict[tuple[str, str], int]:
        """The pairs whose remainder is not 0 (what no named cause explains)."""
        return {k: d.remainder for k, d in self.deltas.items() if d.remainder}

    # ---------------------------------------------------------------------------- tables
    def table(self, kind: str = "counters", *, depth: int | None = None) -> Any:
        """A pandas DataFrame: ``counters`` (one row per counter x variant), ``keys`` (FLOPs by
        op key), ``modules`` (FLOPs by module path, inclusive; ``depth`` limits the path depth),
        ``ops`` (every op each tool reported: counted / unknown / ignored / unseen), ``deltas``
        (every pair, one row per named cause)."""
        import pandas as pd

        if kind not in TABLE_KINDS:
            raise ValueError(f"table({kind!r}): expected one of {', '.join(TABLE_KINDS)}")
        if kind == "counters":
            rows = []
            for label, c in self.counts.items():
                row = {"counter": c.counter, "variant": c.variant, "version": c.version,
                       "convention": c.convention, "raw": c.raw, "flops": c.flops,
                       "matmul_flops": c.matmul_flops, "elementwise_flops": c.elementwise_flops,
                       "complete": c.complete,
                       "uncounted_ops": ", ".join(f"{k} x{v}" for k, v in c.uncounted_matmul_ops.items()),
                       "unseen_flops": sum(int(v) for k, v in c.unseen.items() if KEY_CLASS.get(k) == "matmul")}
                if self.reference and label != self.reference:
                    d = self.delta(self.reference, label)
                    row.update({"reference": self.reference, "delta": d.delta, "raw_delta": d.raw_delta,
                                "explained": d.explained, "remainder": d.remainder})
                elif self.reference:
                    row.update({"reference": self.reference, "delta": 0, "raw_delta": 0,
                                "explained": 0, "remainder": 0})
                if self.verdict is not None:
                    v = self.verdict.rows[label]
                    row.update({"expected": self.verdict.expected, "expected_delta": v.delta,
                                "expected_remainder": v.remainder})
                rows.append(row)
            for label, why in self.missing.items():
                counter, variant = label.split(" ", 1)
                rows.append({"counter": counter, "variant": variant, "not_measured": why})
            return pd.DataFrame(rows)
        if kind == "modules":
            return self._modules_table(depth)
        if kind == "keys":
            data: dict[str, dict[str, int]] = {}
            for label, c in self.counts.items():
                for key, value in c.by_key.items():
                    data.setdefault(label, {})[key] = value
            frame = pd.DataFrame(data).fillna(0)
            if kind == "keys":
                frame.insert(0, "class", [KEY_CLASS.get(k, "?") for k in frame.index])
            frame.index.name = "key"
            return frame.astype({c: "int64" for c in frame.columns if c != "class"}, errors="ignore")
        if kind == "ops":
            rows = []
            for label, c in self.counts.items():
                for status, source in (("counted", c.by_op), ("unknown", c.unknown_ops),
                                       ("ignored", c.ignored_ops), ("unseen", c.unseen_ops)):
                    unit = "occurrences" if status in ("unknown", "ignored") else "flops"
                    for op, value in source.items():
                        rows.append({"counter": c.counter, "variant": c.variant, "op": op,
                                     "status": status, "value": value, "unit": unit})
            return pd.DataFrame(rows, columns=["counter", "variant", "op", "status", "value", "unit"])
        rows = []
        for (a, b), d in self.deltas.items():
            for comp in d.components:
                rows.append({"a": a, "b": b, "cause": comp.name, "flops": comp.flops, "known": comp.known,
                             "detail": comp.detail})
            rows.append({"a": a, "b": b, "cause": "remainder", "flops": d.remainder, "known": True,
                         "detail": "unexplained"})
        return pd.DataFrame(rows, columns=["a", "b", "cause", "flops", "known", "detail"])

    def _modules_table(self, depth: int | None) -> Any:
        """FLOPs by module path, inclusive, as a tree in the model's order (``named_modules``),
        with each module's parameters. A container that is never called itself (an
        ``nn.ModuleList``: ``transformer.h``) gets the sum of its children, so every counter,
        torch's FlopCounterMode included (which records called modules only), has a figure there."""
        import pandas as pd

        paths = list(self.parameters)
        for c in self.counts.values():
            paths.extend(p for p in c.by_module if p not in self.parameters)
        paths = list(dict.fromkeys(paths))
        children: dict[str, list[str]] = {}
        for path in paths:
            if path:
                children.setdefault(path.rsplit(".", 1)[0] if "." in path else "", []).append(path)
        rows = [p for p in paths if depth is None or _depth(p) <= depth]
        data: dict[str, list[Any]] = {}
        if self.parameters:
            data["params"] = [self.parameters.get(p, 0) for p in rows]
        for label, c in self.counts.items():
            memo: dict[str, int | float] = {}

            def value(path: str, c=c, memo=memo) -> int | float:
                if path not in memo:
                    memo[path] = c.by_module[path] if path in c.by_module else \
                        sum(value(child) for child in children.get(path, ()))
                return memo[path]
            data[label] = [value(p) for p in rows]
        frame = pd.DataFrame(data, index=[p or "(model)" for p in rows])
        frame.index.name = "module"
        return frame.astype({c: "int64" for c in frame.columns}, errors="ignore")

    # ---------------------------------------------------------------------------- text
    def summary(self) -> str:
        """The printable summary: one line per counter, the deltas against the reference by
        cause, what was not measured, the findings and the verdict."""
        lines = [f"harness.count: {self.model} on {self.device} (FLOPs = 2 x MACs; matmul class = "
                 f"products, element-wise work kept apart)"]
        if self.counts:
            header = ["counter", "raw", "unit", "FLOPs", "matmul", "element-wise"]
            ref = self.reference
            if ref:
                header += [f"vs {ref}", "explained", "remainder"]
            table = [header]
            for label, c in self.counts.items():
                row = [label, _n(c.raw), "MACs" if c.convention == "mac" else "FLOPs", _n(c.flops),
                       _n(c.matmul_flops), _n(c.elementwise_flops)]
                if ref:
                    if label == ref:
                        row += ["(reference)", "", ""]
                    else:
                        d = self.delta(ref, label)
                        row += [_signed(d.delta), _signed(d.explained - _conv(d)), _signed(d.remainder)]
                table.append(row)
            widths = [max(len(r[i]) for r in table) for i in range(len(header))]
            for i, row in enumerate(table):
                lines.append("  " + "  ".join(cell.ljust(w) if j in (0, 2) else cell.rjust(w)
                                              for j, (cell, w) in enumerate(zip(row, widths))).rstrip())
                if i == 0:
                    lines.append("  " + "  ".join("-" * w for w in widths))
        for label, why in self.missing.items():
            lines.append(f"  NOT MEASURED {label}: {why}")
        if self.reference:
            causes = []
            for label in self.counts:
                if label == self.reference:
                    continue
                d = self.delta(self.reference, label)
                named = [f"{c.name.split(': ', 1)[-1] if c.name.startswith(label + ': ') else c.name} "
                         f"{_signed(c.flops)}{'' if c.known else ' [UNKNOWN: a new finding]'}"
                         for c in d.components if c.flops and c.name != "convention"]
                conv = _conv(d)
                if named or conv or d.remainder:
                    text = f"  {label}: " + ("; ".join(named) or "no FLOP delta")
                    if conv:
                        text += f"; convention {_signed(conv)} (raw MACs vs FLOPs)"
                    if d.remainder:
                        text += f"; UNEXPLAINED {_signed(d.remainder)}"
                    causes.append(text)
            if causes:
                lines.append(f"why each differs from {self.reference}:")
                lines.extend(causes)
        findings = self.findings()
        if findings:
            lines.append("findings:")
            lines.extend(f"  {f}" for f in findings)
        for note in self.notes:
            lines.append(f"note: {note}")
        if self.verdict is not None:
            lines.append(str(self.verdict))
        return "\n".join(lines)

    __str__ = summary

    def findings(self) -> list[str]:
        """Loud facts: products that ran with no formula, unkeyed work, pairs left unexplained."""
        out: list[str] = []
        for label, c in self.counts.items():
            for op, n in c.uncounted_matmul_ops.items():
                out.append(f"{label}: {op} x{n} ran with no formula/handle/rule (counted 0)")
            if c.by_key.get("unmapped"):
                out.append(f"{label}: {c.by_key['unmapped']:,} FLOPs of products could not be keyed")
        for (a, b), rem in self.unexplained.items():
            out.append(f"{b} - {a}: {rem:+,} FLOPs no named cause explains")
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: each count's figures, the deltas against the reference, the verdict."""
        out: dict[str, Any] = {"model": self.model, "device": self.device, "reference": self.reference,
                               "counts": {}, "missing": dict(self.missing)}
        for label, c in self.counts.items():
            out["counts"][label] = {
                "counter": c.counter, "variant": c.variant, "version": c.version, "raw": c.raw,
                "convention": c.convention, "flops": c.flops, "matmul_flops": c.matmul_flops,
                "elementwise_flops": c.elementwise_flops, "by_key": dict(c.by_key),
                "unknown_ops": dict(c.unknown_ops), "unseen": dict(c.unseen), "complete": c.complete}
            if self.reference and label != self.reference:
                d = self.delta(self.reference, label)
                out["counts"][label]["vs_reference"] = {
                    "raw_delta": d.raw_delta, "delta": d.delta, "remainder": d.remainder,
                    "causes": {comp.name: comp.flops for comp in d.components}}
        if self.verdict is not None:
            out["verdict"] = {"passed": self.verdict.passed, "expected": self.verdict.expected,
                              "rtol": self.verdict.rtol,
                              "remainders": {k: d.remainder for k, d in self.verdict.rows.items()}}
        return out


def _conv(d: PairExplanation) -> int | float:
    return next((c.flops for c in d.components if c.name == "convention"), 0)


def _depth(path: str) -> int:
    return 0 if not path else path.count(".") + 1


def choose_reference(labels: Iterable[str], counts: dict[str, StageCount]) -> str | None:
    """The counter deltas are shown against: torch patched when measured and complete, else the
    first complete patched counter, else the first measured."""
    labels = list(labels)
    for label in labels:
        c = counts[label]
        if c.counter == "torch" and c.variant == "patched" and c.complete:
            return label
    for label in labels:
        c = counts[label]
        if c.variant == "patched" and c.complete:
            return label
    return labels[0] if labels else None
