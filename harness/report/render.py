"""The report's files: report.json, report.csv, report.md, static_compute.json, static_compute.md.

JSON and CSV hold exact integers (FLOPs = 2 x MACs; bytes at the analytic dtype, bf16 = 2 B by
default); the Markdown rounds to 4 significant digits with units. Every not-measured cell is
shown as such with its reason, never as a zero.
"""

from __future__ import annotations

import csv
import functools
import io
import json
import math
from typing import Any

from harness.report import units
from harness.report.units import md_table as _md_table, pages_text as _pages_text, short_reason
from harness.report.collect import ByteFact, Collected, KeyCount, Record, StageInfo, public_text

__all__ = ["SCHEMA", "CSV_COLUMNS", "report_json", "report_csv", "report_markdown", "static_compute",
           "static_compute_markdown", "layout_groups", "summary_counts", "record_row"]

#: Identifies report.json's layout; bumped when a field changes meaning.
SCHEMA = "harness.report/2"
CONVENTION = ("FLOPs = 2 x MACs everywhere. Counters that report MACs (fvcore, thop) keep their raw "
              "figure and convention next to the converted FLOPs. Analytic FLOPs are split into the "
              "matmul class (compared exactly) and the element-wise class (a stated per-element "
              "convention, never mixed into the matmul total). Bytes in the stage tables: the analytic "
              "op-level traffic (every aten op's reads and writes) at 2 bytes per element (bf16), with the "
              "routed experts as the build named in the Configuration runs them (its experts byte model; "
              "the loop where nothing was built); on meta the byte counter's measurement on the bf16 "
              "build stands beside it, with its verdict. The roofline uses the convention --bytes names.")

#: Flat columns of report.csv, one row per target x mode x page x stage x counter.
CSV_COLUMNS: tuple[str, ...] = (
    "target", "mode", "page", "page_width", "page_height", "stage", "counter", "variant", "status",
    "verified", "within_band", "golden", "crop_cols", "crop_rows", "n_crops", "n_views", "vision_tokens",
    "image_tokens", "valid_tokens", "prefill_length", "decode_context",
    "analytic_matmul_flops", "analytic_elementwise_flops", "analytic_total_flops",
    "measured_flops", "measured_raw", "measured_convention", "measured_matmul_flops",
    "measured_elementwise_flops", "delta_flops", "explained_flops", "unexplained_flops",
    "unexplained_rel", "blind_spot_flops", "elementwise_counted_flops", "band_rel", "band_abs",
    "params", "weight_bytes", "act_read_bytes", "act_write_bytes", "total_bytes", "intensity_flop_per_byte",
    "device", "dtype", "attn_implementation", "experts_implementation", "counter_version",
    "harness_version", "torch_version", "transformers_version", "fvcore_version", "thop_version",
    "shape_key", "reused_from", "seconds", "error",
)


# ----------------------------------------------------------------------------------- helpers
@functools.lru_cache(maxsize=4096)
def _shape_key_text(key: tuple) -> str:
    if key and key[0] == "views":
        return "views " + " + ".join(f"{b}x{s}px({role})" for role, b, s, _ in key[1:])
    return f"{key[0]}={key[1]}" if len(key) == 2 else str(key)


def _decode_context(info_key: tuple) -> int | None:
    return int(info_key[1]) if info_key and info_key[0] == "T" else None


def stage_label(stage: str, shape_key: tuple) -> str:
    """A stage's row label; decode states its context (tokens already cached)."""
    context = _decode_context(shape_key)
    return stage if context is None else f"{stage} (context {context})"


def _blind_flops(record: Record) -> int:
    exp = record.explanation
    if exp is None:
        return 0
    return sum(c.flops for c in exp.components if c.name not in ("convention", "element-wise class"))


def _elementwise_counted(record: Record) -> int:
    exp = record.explanation
    if exp is None:
        return 0
    return sum(c.flops for c in exp.components if c.name == "element-wise class")


def _env_of(collected: Collected, record: Record | StageInfo) -> dict[str, Any]:
    env = collected.target_environment.get(record.target, {})
    devices = env.get("stage_devices") or {}
    return {
        "device": devices.get(record.stage, env.get("device", collected.plan.device if env else None)),
        "dtype": env.get("dtype"),
        "attn_implementation": env.get("attn_implementation",
                                       getattr(record, "attn_implementation", None)),
        "experts_implementation": env.get("experts_implementation"),
        "weights": env.get("weights"),
    }


def _versions(collected: Collected) -> dict[str, Any]:
    env = collected.environment
    return {name: env.get(name) for name in ("harness", "torch", "transformers", "fvcore", "thop")}


def _analytic_dict(info: StageInfo) -> dict[str, Any]:
    cost = info.cost
    return {
        "matmul_flops": cost.matmul_flops, "elementwise_flops": cost.elementwise_flops,
        "total_flops": cost.total_flops, "flops_by_key": dict(cost.flops),
        "weight_bytes": cost.weight_bytes, "act_read_bytes": cost.act_read_bytes,
        "act_write_bytes": cost.act_write_bytes, "total_bytes": cost.total_bytes,
        "intensity_flop_per_byte": cost.intensity, "params": info.params,
        "attn_implementation": info.attn_implementation, "experts_model": info.experts_model,
    }


def _measured_dict(record: Record) -> dict[str, Any] | None:
    c = record.count
    if c is None:
        return None
    return {
        "raw": c.raw, "convention": c.convention, "flops": c.flops, "matmul_flops": c.matmul_flops,
        "elementwise_flops": c.elementwise_flops, "by_key": dict(c.by_key), "by_op": dict(c.by_op),
        "unknown_ops": dict(c.unknown_ops), "ignored_ops": dict(c.ignored_ops), "unseen": dict(c.unseen),
        "unseen_ops": dict(c.unseen_ops), "uncalled_modules": list(c.uncalled_modules),
        "patches": list(c.patches), "warnings": list(c.warnings), "notes": list(c.notes),
        "version": c.version, "devices": list(c.devices),
    }


def _delta_dict(record: Record) -> dict[str, Any] | None:
    e = record.explanation
    if e is None:
        return None
    rel = e.remainder_rel if math.isfinite(e.remainder_rel) else None
    return {
        "analytic_matmul_flops": e.analytic_matmul, "measured_flops": e.measured_flops,
        "delta_flops": e.delta, "explained_flops": e.explained, "unexplained_flops": e.remainder,
        "unexplained_rel": rel,
        "components": [{"name": c.name, "flops": c.flops, "detail": c.detail, "known": c.known}
                       for c in e.components],
        "by_key": [{"key": k, "analytic": a, "measured": m} for k, a, m in e.rows],
        "findings": list(e.findings),
    }


def measurement_dict(m: KeyCount) -> dict[str, Any]:
    """One entry of report.json's ``measurements``: a count stored once under its shape key."""
    band = m.band
    return {
        "target": m.target, "stage": m.stage, "counter": m.spec.counter, "variant": m.spec.variant,
        "shape_key": list(m.shape_key), "decode_context": _decode_context(m.shape_key),
        "first_measured_on": m.first, "measured_by_this_report": m.fresh, "seconds": round(m.seconds, 4),
        "verified": m.verified, "within_band": m.within_band, "error": m.error,
        "measured": _measured_dict(m), "delta": _delta_dict(m),
        "band": None if band is None else {"kind": "verify", "rel": band.rel, "abs": band.abs, "where": band.where},
        "key_mismatches": list(m.key_mismatches), "unknown_blind_spots": list(m.unknown_blind_spots),
    }


def byte_fact_dict(b: ByteFact) -> dict[str, Any]:
    """One entry of report.json's ``byte_measurements``: a stage's byte fact stored once under its shape
    key: the analytic op-level bytes of the build's experts model, the byte counter's, by key."""
    out: dict[str, Any] = {"target": b.target, "stage": b.stage, "shape_key": list(b.shape_key),
                           "first_measured_on": b.first, "build": b.build, "seconds": round(b.seconds, 4),
                           "verified": b.verified, "error": b.error}
    if b.verdict is not None:
        t = b.total
        out.update({"analytic_bytes": t.analytic, "measured_bytes": t.measured, "difference": t.difference,
                    "named": t.named, "unexplained": t.unexplained, "problems": list(b.verdict.problems),
                    "by_key": {r.key: {"analytic": r.analytic, "measured": r.measured, "named": r.named,
                                       "unexplained": r.unexplained, "cause": r.cause}
                               for r in b.verdict.rows if r.key != "total"}})
    return out


def analytic_id(info: StageInfo) -> str:
    """report.json's reference of an analytic cost: one per target x stage x shape key."""
    return f"{info.target}/{info.stage}/{_shape_key_text(info.shape_key)}"


def record_dict(collected: Collected, record: Record) -> dict[str, Any]:
    """One report.json record: the cell and references to its analytic cost and measurement."""
    info = collected.stages[(record.target, record.mode, record.page, record.stage)]
    out = {
        "target": record.target, "mode": record.mode, "page": record.page, "stage": record.stage,
        "counter": record.counter, "variant": record.variant, "status": record.status,
        "verified": record.verified, "analytic": analytic_id(info),
        "measurement": None if record.measured is None else record.measured.id,
        "reused_from": record.reused_from, "golden": record.golden,
    }
    if record.measured is None:
        out["error"] = record.error
    if record.golden_differences:
        out["golden_differences"] = list(record.golden_differences)
    return out


def summary_counts(collected: Collected) -> dict[str, int]:
    """How many cells were measured, reused, not measured, above band, and so on."""
    records = collected.records
    measured = [r for r in records if r.status == "measured"]
    return {
        "records": len(records),
        "measured": len(measured),
        "not_measured": len(records) - len(measured),
        "model_runs": collected.model_runs,
        "reused": collected.reuses,
        "above_band": sum(1 for r in measured if r.within_band is False),
        "key_mismatches": sum(1 for r in measured if r.key_mismatches),
        "unknown_blind_spots": sum(1 for r in measured if r.unknown_blind_spots),
        "verified": sum(1 for r in measured if r.verified),
        "golden_match": sum(1 for r in measured if r.golden == "match"),
        "golden_differs": sum(1 for r in measured if r.golden in ("differs", "corrupt")),
        "golden_missing": sum(1 for r in measured if r.golden == "no golden"),
        "errors": sum(1 for r in records if r.error),
        "byte_facts": len(collected.byte_facts),
        "byte_runs": len(collected.byte_measurements),
        "bytes_verified": sum(1 for b in collected.byte_facts.values() if b.verified),
        "bytes_not_verified": sum(1 for b in collected.byte_facts.values() if b.verified is False),
        "bytes_not_measured": sum(1 for b in collected.byte_facts.values() if b.verified is None),
    }


def _config_dict(collected: Collected) -> dict[str, Any]:
    plan = collected.plan
    return {
        "command": plan.command,
        "targets": [{"name": t.name, "modes": list(t.modes), "counters_unavailable": t.unavailable}
                    for t in plan.targets],
        "pages_source": plan.pages_source,
        "page_set": plan.page_set,
        "counters": [{"counter": s.counter, "variant": s.variant, "label": s.label} for s in plan.counters],
        "counters_skipped": dict(plan.skipped_counters),
        "device": plan.device,
        "model_path": plan.model_path,
        "prompt_text_tokens": collected.text_tokens,
        "plot_page": plan.plot_page,
    }


def report_json(collected: Collected, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """The whole report as one JSON-ready document.

    Each measurement and each analytic cost is stored once, under its shape key
    (``measurements``, ``analytic``); each record (page x mode x stage x counter) references them
    by id, so the document grows by kilobytes per page."""
    from harness.analytic import BYTES_CONVENTION, ELEMENTWISE_FLOPS

    plan = collected.plan
    analytic: dict[str, Any] = {}
    for info in collected.stages.values():
        ident = analytic_id(info)
        if ident not in analytic:
            analytic[ident] = {"target": info.target, "stage": info.stage, "shape_key": list(info.shape_key),
                               "decode_context": _decode_context(info.shape_key), **_analytic_dict(info)}
    doc = {
        "schema": SCHEMA,
        "convention": CONVENTION,
        "elementwise_flops_per_element": dict(ELEMENTWISE_FLOPS),
        "bytes_convention": BYTES_CONVENTION,
        "config": _config_dict(collected),
        "environment": {**collected.environment, "targets": collected.target_environment},
        "summary": {**summary_counts(collected),
                    "build_seconds": {k: round(v, 3) for k, v in collected.build_seconds.items()},
                    "measure_seconds": round(collected.measure_seconds, 3), **(extra or {})},
        "pages": [{"page": p.page_id, "width": p.width, "height": p.height,
                   "path": None if p.path is None else str(p.path), "category": p.category}
                  for p in plan.pages],
        "layouts": [{"target": t, "mode": m, "page": p, **collected.layout_record(t, m, p)}
                    for (t, m, p) in collected.layouts],
        "analytic": analytic,
        "measurements": {m.id: measurement_dict(m) for m in collected.measurements.values()},
        "records": [record_dict(collected, r) for r in collected.records],
        "byte_measurements": {b.id: byte_fact_dict(b) for b in collected.byte_measurements.values()},
        "byte_facts": [{"target": t, "mode": m, "page": p, "stage": st, "byte_measurement": b.id,
                        "verified": b.verified} for (t, m, p, st), b in collected.byte_facts.items()],
        "notes": list(collected.notes),
    }
    return doc


class _RowParts:
    """report.csv's columns in three parts, each computed once per key: the page x mode (layout),
    the stage's analytic cost (shape key), the measurement (shape key x counter); a row joins them."""

    def __init__(self, collected: Collected) -> None:
        self.collected = collected
        self.versions = {f"{k}_version": v for k, v in _versions(collected).items()}
        self._layout: dict[tuple, dict[str, Any]] = {}
        self._analytic: dict[int, dict[str, Any]] = {}
        self._measured: dict[int, dict[str, Any]] = {}
        self._env: dict[tuple, dict[str, Any]] = {}

    def layout(self, target: str, mode: str, page: str) -> dict[str, Any]:
        key = (target, mode, page)
        found = self._layout.get(key)
        if found is None:
            layout = self.collected.layouts[key]
            lrec = self.collected.layout_record(target, mode, page)
            found = self._layout[key] = {
                "page_width": layout.width, "page_height": layout.height,
                "crop_cols": layout.crop_cols, "crop_rows": layout.crop_rows, "n_crops": layout.n_crops,
                "n_views": layout.n_views, "vision_tokens": layout.vision_tokens,
                "image_tokens": layout.image_tokens, "valid_tokens": layout.valid_tokens,
                "prefill_length": lrec["prefill_length"]}
        return found

    def analytic(self, info: StageInfo) -> dict[str, Any]:
        found = self._analytic.get(id(info.cost))
        if found is None:
            cost = info.cost
            found = self._analytic[id(info.cost)] = {
                "analytic_matmul_flops": cost.matmul_flops, "analytic_elementwise_flops": cost.elementwise_flops,
                "analytic_total_flops": cost.total_flops, "params": info.params, "weight_bytes": cost.weight_bytes,
                "act_read_bytes": cost.act_read_bytes, "act_write_bytes": cost.act_write_bytes,
                "total_bytes": cost.total_bytes, "intensity_flop_per_byte": cost.intensity,
                "decode_context": _decode_context(info.shape_key), "shape_key": _shape_key_text(info.shape_key)}
        return found

    def env(self, record: Record) -> dict[str, Any]:
        key = (record.target, record.stage)
        found = self._env.get(key)
        if found is None:
            env = _env_of(self.collected, record)
            found = self._env[key] = {"device": env["device"], "dtype": env["dtype"],
                                      "attn_implementation": env["attn_implementation"],
                                      "experts_implementation": env["experts_implementation"]}
        return found

    def measured(self, record: Record) -> dict[str, Any]:
        m = record.measured
        found = self._measured.get(id(m))
        if found is None:
            c, e, band = record.count, record.explanation, record.band
            rel = e.remainder_rel if e is not None and math.isfinite(e.remainder_rel) else None
            found = {
                "measured_flops": None if c is None else c.flops, "measured_raw": None if c is None else c.raw,
                "measured_convention": None if c is None else c.convention,
                "measured_matmul_flops": None if c is None else c.matmul_flops,
                "measured_elementwise_flops": None if c is None else c.elementwise_flops,
                "delta_flops": None if e is None else e.delta, "explained_flops": None if e is None else e.explained,
                "unexplained_flops": None if e is None else e.remainder, "unexplained_rel": rel,
                "blind_spot_flops": None if e is None else _blind_flops(record),
                "elementwise_counted_flops": None if e is None else _elementwise_counted(record),
                "band_rel": None if band is None else band.rel, "band_abs": None if band is None else band.abs,
                "counter_version": None if c is None else c.version}
            if m is not None:
                self._measured[id(m)] = found
        return found


def record_row(collected: Collected, record: Record, parts: _RowParts | None = None) -> dict[str, Any]:
    """One report.csv row (flat, exact integers)."""
    parts = parts or _RowParts(collected)
    info = collected.stages[(record.target, record.mode, record.page, record.stage)]
    row = {
        "target": record.target, "mode": record.mode, "page": record.page, "stage": record.stage,
        "counter": record.counter, "variant": record.variant, "status": record.status,
        "verified": record.verified, "within_band": record.within_band, "golden": record.golden,
        **parts.layout(record.target, record.mode, record.page), **parts.analytic(info),
        **parts.measured(record), **parts.env(record), **parts.versions,
        "reused_from": record.reused_from, "seconds": round(record.seconds, 4), "error": record.error,
    }
    return {column: row[column] for column in CSV_COLUMNS}


def report_csv(collected: Collected) -> str:
    """report.csv: :data:`CSV_COLUMNS`, one row per record (empty cell = not measured)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    parts = _RowParts(collected)
    for record in collected.records:
        row = record_row(collected, record, parts)
        writer.writerow(["" if v is None else v for v in row.values()])
    return buffer.getvalue()


# ------------------------------------------------------------------------------ static compute
def static_compute(collected: Collected) -> dict[str, Any]:
    """Per page x mode x stage: parameters, FLOPs (analytic), bytes and activations, intensity."""
    rows = []
    for (target, mode, page, stage), info in collected.stages.items():
        cost = info.cost
        rows.append({
            "target": target, "mode": mode, "page": page, "stage": stage, "params": info.params,
            "matmul_flops": cost.matmul_flops, "elementwise_flops": cost.elementwise_flops,
            "total_flops": cost.total_flops, "weight_bytes": cost.weight_bytes,
            "activation_read_bytes": cost.act_read_bytes, "activation_write_bytes": cost.act_write_bytes,
            "total_bytes": cost.total_bytes, "intensity_flop_per_byte": cost.intensity,
            "shape_key": list(info.shape_key),
        })
    return {"schema": "harness.static_compute/1", "convention": CONVENTION, "rows": rows}


def static_compute_markdown(collected: Collected) -> str:
    lines = ["# Static compute per page", "", CONVENTION, "",
             "Analytic model (no counter): parameters of the stage's modules, FLOPs by class, weights "
             "read and activations read/written (op-level traffic, bf16), arithmetic intensity "
             "(total FLOPs per byte). Pages with the same layout share one table.", ""]
    for target, groups in layout_groups(collected).items():
        lines += [f"## {target}", ""]
        for mode, page_groups in groups.items():
            for pages, label in page_groups:
                lines += [f"### {target} {mode}: {', '.join(pages)}", "", f"Layout: {label}", ""]
                lines += _analytic_table(collected, target, mode, pages[0])
                lines.append("")
    return "\n".join(lines).rstrip() + "\n"


# --------------------------------------------------------------------------------- markdown
def _layout_label(collected: Collected, target: str, mode: str, page: str) -> str:
    layout = collected.layouts[(target, mode, page)]
    rec = collected.layout_record(target, mode, page)
    views = " + ".join(f"{v.batch}x{v.size}px {v.role}" for v in layout.views)
    grid = f"{layout.crop_cols}x{layout.crop_rows} crops" if layout.n_crops else "no crops"
    return (f"{views} ({grid}); {layout.vision_tokens} vision tokens, {layout.image_tokens} placeholders, "
            f"{layout.valid_tokens} valid; prefill L = {rec['prefill_length']}")


def layout_groups(collected: Collected) -> dict[str, dict[str, list[tuple[list[str], str]]]]:
    """target -> mode -> [(pages sharing every stage's shape key, layout label)] in page order."""
    out: dict[str, dict[str, list[tuple[list[str], str]]]] = {}
    for tplan in collected.plan.targets:
        out[tplan.name] = {}
        for mode in tplan.modes:
            groups: dict[tuple, list[str]] = {}
            for page in collected.plan.pages:
                sig = tuple(collected.stages[(tplan.name, mode, page.page_id, s)].shape_key
                            for s in collected.stages_of(tplan.name))
                groups.setdefault(sig, []).append(page.page_id)
            out[tplan.name][mode] = [(pages, _layout_label(collected, tplan.name, mode, pages[0]))
                                     for pages in groups.values()]
    return out


def _analytic_table(collected: Collected, target: str, mode: str, page: str) -> list[str]:
    rows = []
    total = None
    for stage in collected.stages_of(target):
        info = collected.stages[(target, mode, page, stage)]
        c = info.cost
        total = c if total is None else total + c
        rows.append([stage_label(stage, info.shape_key), units.count(info.params), units.flop(c.matmul_flops),
                     units.flop(c.elementwise_flops),
                     units.nbytes(c.weight_bytes), units.nbytes(c.act_read_bytes + c.act_write_bytes),
                     units.nbytes(c.total_bytes), units.sig(c.intensity)])
    if total is not None:
        rows.append(["**total**", "", f"**{units.flop(total.matmul_flops)}**", units.flop(total.elementwise_flops),
                     units.nbytes(total.weight_bytes), units.nbytes(total.act_read_bytes + total.act_write_bytes),
                     units.nbytes(total.total_bytes), units.sig(total.intensity)])
    experts = collected.stages[(target, mode, page, collected.stages_of(target)[0])].experts_model
    return _md_table(["stage", "params", "analytic matmul", "analytic element-wise", "weights read",
                      "activations r+w", f"bytes (op-level, experts {experts})", "FLOP/B"], rows)


def _byte_table(collected: Collected, target: str, mode: str, page: str) -> list[str]:
    """Per stage: the analytic op-level bytes beside the byte counter's, and the byte verdict."""
    rows, builds = [], set()
    for stage in collected.stages_of(target):
        b = collected.byte_facts.get((target, mode, page, stage))
        if b is None:
            continue
        label = stage_label(stage, collected.stages[(target, mode, page, stage)].shape_key)
        if b.verdict is None:
            rows.append([label, "**n/a**", "", "", "", f"**NOT MEASURED**: {short_reason(public_text(b.error or ''), 160)}"])
            continue
        builds.add(b.build)
        t = b.total
        causes = sorted({r.key for r in b.verdict.rows if r.named and r.key != "total"})
        if b.verified:
            verdict = "ok" + (f" (named: {', '.join(causes)})" if causes else "")
        else:
            keys = [r.key for r in b.verdict.rows if r.unexplained and r.key != "total"]
            verdict = "**not verified**" + (f": {', '.join(keys)} unexplained" if keys else "")
        rows.append([label, units.nbytes(t.analytic), units.nbytes(t.measured), f"{t.difference:+,}",
                     f"{t.unexplained:+,}", verdict])
    if not rows:
        return []
    head = (f"Bytes: the byte counter on the build it ran ({'; '.join(sorted(builds)) or 'not built'}) beside the "
            "analytic op-level bytes of that build's experts model; a difference must be a named, sized cause "
            "(docs/bytes.md).")
    return [head, ""] + _md_table(["stage", "analytic bytes", "measured bytes", "Δ bytes", "unexplained",
                                   "byte verdict"], rows, align="lrrrrl")


def _explained_text(record: Record) -> str:
    e = record.explanation
    parts = [f"{c.name} {units.flop_signed(c.flops)}" + ("" if c.known else " **UNKNOWN**")
             for c in e.components if c.flops]
    return f"{units.flop_signed(e.explained)}" + (f" ({'; '.join(parts)})" if parts else "")


def _verdict(record: Record) -> str:
    if record.status != "measured":
        return "**NOT MEASURED**"
    golden = {"match": "; = golden", "differs": "; **≠ golden**", "corrupt": "; **golden file corrupt**",
              "no golden": "; no golden"}.get(record.golden, "")
    if record.verified:
        return "ok" + golden
    problems = []
    if record.within_band is False:
        problems.append("above band")
    if record.key_mismatches:
        problems.append("keys differ")
    if record.unknown_blind_spots:
        problems.append("unknown blind spot")
    return "**" + ", ".join(problems) + "**" + golden


def _counter_table(collected: Collected, target: str, mode: str, page: str) -> list[str]:
    """Per stage x counter: measured, delta, explained, unexplained, band, verdict. Cells whose
    delta is exactly 0 and verified fold into one line under the table."""
    rows, folded = [], []
    for stage in collected.stages_of(target):
        label = stage_label(stage, collected.stages[(target, mode, page, stage)].shape_key)
        for spec in collected.plan.counters:
            r = collected.cell(target, mode, page, stage, spec)
            if r is None:
                continue
            if r.count is None:
                reason = short_reason(r.error, 160)
                rows.append([label, spec.label, "**n/a**", "", "", "", "", f"**NOT MEASURED**: {reason}"])
                continue
            e = r.explanation
            if e.delta == 0 and r.verified and r.golden not in ("differs", "corrupt"):
                folded.append((label, spec.label))
                continue
            raw = (f"{units.flop(r.count.flops)}" + (f" (raw {units.sig(r.count.raw / 1e9)} G MACs)"
                                                     if r.count.convention == "mac" else ""))
            rows.append([label, spec.label, raw, units.flop_signed(e.delta), _explained_text(r),
                         units.flop_signed(e.remainder) + f" ({units.pct(e.remainder, e.analytic_matmul)})",
                         f"rel {r.band.rel:g}, abs {r.band.abs:g}", _verdict(r)])
    out: list[str] = []
    if rows:
        out += _md_table(["stage", "counter", "measured", "Δ vs analytic matmul", "explained", "unexplained",
                          "verify band", "verdict"], rows, align="llrrlrll")
    if folded:
        by_stage: dict[str, list[str]] = {}
        for label, counter in folded:
            by_stage.setdefault(label, []).append(counter)
        text = "; ".join(f"{label}: {', '.join(c)}" for label, c in by_stage.items())
        out += ([""] if out else []) + [f"Equal to the analytic matmul FLOPs (Δ = 0, verified; rows folded): {text}."]
    return out


def _blind_spot_section(collected: Collected) -> list[str]:
    """Named and sized: what each counter did not see, and what could not be measured at all."""
    seen: dict[tuple, dict[str, Any]] = {}
    for r in collected.records:
        if r.explanation is None:
            continue
        for c in r.explanation.components:
            if c.name in ("convention", "element-wise class") or not c.flops:
                continue
            key = (r.spec.label, c.name, r.target, r.mode, stage_label(r.stage, r.shape_key), r.shape_key)
            entry = seen.setdefault(key, {"flops": c.flops, "pages": [], "detail": c.detail, "known": c.known})
            entry["pages"].append(r.page)
    lines = ["## Counter blind spots", "",
             "Matmul-class work that ran and that a counter did not count, sized by the analytic op keys "
             "it covers (negative: missing from the counter's figure).", ""]
    if not seen:
        lines += ["No counter missed any matmul-class work in the measured cells.", ""]
    else:
        rows = []
        for (label, name, target, mode, stage, _), e in sorted(seen.items(), key=lambda kv: (kv[0][0], kv[0][1], kv[0][2], kv[0][3], kv[0][4])):
            flag = "" if e["known"] else " **(UNKNOWN: a new finding)**"
            rows.append([f"{label}: {name}{flag}", f"{target} {mode}", stage, _pages_text(e["pages"]),
                         units.flop(-e["flops"])])
        lines += _md_table(["counter: blind spot", "target mode", "stage", "pages", "not seen"], rows,
                           align="lllll")
        lines.append("")
        causes = {}
        for (label, name, *_), e in seen.items():
            causes.setdefault(f"{label}: {name}", public_text(e["detail"].split(";")[0]))
        lines += ["Causes:", ""] + [f"- **{k}**: {v}" for k, v in causes.items()] + [""]
    missing: dict[tuple, dict[str, Any]] = {}
    for r in collected.records:
        if r.count is not None:
            continue
        info = collected.stages[(r.target, r.mode, r.page, r.stage)]
        key = (r.spec.label, r.target, r.mode, stage_label(r.stage, r.shape_key), r.shape_key)
        entry = missing.setdefault(key, {"flops": info.cost.matmul_flops, "pages": [],
                                         "why": short_reason(public_text(r.error or ""))})
        entry["pages"].append(r.page)
    if missing:
        lines += ["### Not measured", "",
                  "Cells no counter figure exists for; the analytic matmul FLOPs say how much work is "
                  "unverified there.", ""]
        rows = []
        for (label, target, mode, stage, _), e in missing.items():
            rows.append([label, f"{target} {mode}", stage, _pages_text(e["pages"]), units.flop(e["flops"]), e["why"]])
        lines += _md_table(["counter", "target mode", "stage", "pages", "analytic matmul unverified", "why"],
                           rows, align="llllrl")
        lines.append("")
    return lines


def _pages_section(collected: Collected) -> list[str]:
    lines = ["## Pages: token counts and crop grids", "",
             "Sizes after EXIF orientation. *vision tokens*: encoder outputs over all views; "
             "*placeholders*: image tokens in input_ids (v1: newlines and separator included; OCR-2: the "
             "separator); *valid*: the paper's Eq. 1 count, ceil(N·min/max) for the padded global view "
             "(DeepSeek-OCR's infer() prints int(N·ratio) on a float ratio instead: 1 lower on most padded "
             "pages; `harness layout` shows both); OCR-2 views are padded as transformers pads them (the "
             "official vLLM code squashes in non-crop mode); *L*: prefill length = 1 BOS + "
             f"{collected.text_tokens} prompt tokens + placeholders (the decode context). Pages of the same "
             "size share a row.", ""]
    for tplan in collected.plan.targets:
        groups: dict[tuple, list[str]] = {}
        for page in collected.plan.pages:
            for mode in tplan.modes:
                groups.setdefault((page.width, page.height, mode), []).append(page.page_id)
        rows = []
        for (width, height, mode), pages in groups.items():
            layout = collected.layouts[(tplan.name, mode, pages[0])]
            rec = collected.layout_record(tplan.name, mode, pages[0])
            grid = f"{layout.crop_cols}x{layout.crop_rows}" if layout.n_crops else "-"
            views = " + ".join(f"{v.batch}x{v.size}" for v in layout.views)
            rows.append([_pages_text(pages), f"{width}x{height}", mode, grid, str(layout.n_crops), views,
                         str(layout.vision_tokens), str(layout.image_tokens), str(layout.valid_tokens),
                         str(rec["prefill_length"])])
        lines += [f"### {tplan.name}", ""]
        lines += _md_table(["page", "size", "mode", "crop grid", "crops", "views (n x px)", "vision tokens",
                            "placeholders", "valid", "L"], rows, align="lllrrlrrrr")
        lines.append("")
    return lines


def _config_section(collected: Collected, files: dict[str, str] | None) -> list[str]:
    plan, env = collected.plan, collected.environment
    rows = [["command", f"`{plan.command}`" if plan.command else ""],
            ["targets", "; ".join(f"{t.name} (modes {', '.join(t.modes)})" + (" — **counters not run**" if t.unavailable else "")
                                  for t in plan.targets)],
            ["pages", f"{len(plan.pages)}: {plan.pages_source}"],
            ["counters", ", ".join(s.label for s in plan.counters) or "**none**"],
            ["device", plan.device],
            ["prompt text tokens", str(collected.text_tokens)]]
    for name, skip in plan.skipped_counters.items():
        if " " in name:   # a variant left out by choice (stated), not a missing package
            rows.append([f"{name} (not counted)", skip])
        else:
            rows.append([f"{name} (skipped)", f"**{skip}**"])
    for target, tenv in collected.target_environment.items():
        rows.append([f"{target} build", f"dtype {tenv['dtype']}, attention {tenv['attn_implementation']}, "
                     f"experts {tenv['experts_implementation']}, weights {tenv['weights']}, "
                     f"{units.count(tenv['parameters'])} parameters"])
    versions = ", ".join(f"{k} {env.get(k) or 'not installed'}" for k in
                         ("harness", "python", "torch", "transformers", "fvcore", "thop"))
    rows.append(["versions", versions])
    rows.append(["machine", f"{env.get('platform')}, {env.get('cpu_count')} CPUs"
                 + (f", git {env['git_commit']}" if env.get("git_commit") else "")])
    rows.append(["tolerance bands", str(env.get("bands"))])
    return ["## Configuration", ""] + _md_table(["", ""], rows, align="ll") + [""]


def report_markdown(collected: Collected, *, summary_line: str = "", plots: dict[str, str] | None = None,
                    files: dict[str, str] | None = None, perf: Any = None, findings: Any = None) -> str:
    """report.md: the verdict first, then roofline and measured time, configuration, stage tables
    per mode (folded), blind spots, pages, plots, notes."""
    from harness.analytic import BYTES_CONVENTION, ELEMENTWISE_FLOPS
    from harness.report.verdict import verdict_lines

    plan = collected.plan
    counts = summary_counts(collected)
    lines = ["# harness report: DeepSeek-OCR FLOPs, stage by stage", ""]
    if summary_line:
        lines += [f"`{summary_line}`", ""]
    new_tokens = perf.plan.new_tokens if perf is not None else 1000
    lines += verdict_lines(collected, perf=perf, findings=findings, new_tokens=new_tokens)
    tally = (f"**{counts['measured']}** of {counts['records']} cells measured "
             f"({counts['model_runs']} model runs, {counts['reused']} reused by shape key), "
             f"**{counts['verified']}** verified; **{counts['above_band']}** unexplained deltas above band, "
             f"**{counts['key_mismatches']}** torch op-key mismatches, **{counts['unknown_blind_spots']}** "
             f"unknown blind spots, **{counts['not_measured']}** not measured. Against the suite's goldens "
             f"(regress band): **{counts['golden_match']}** equal, **{counts['golden_differs']}** "
             f"differ, {counts['golden_missing']} without a golden yet (stock variants have none).")
    if counts["byte_facts"]:
        tally += (f" Byte facts: **{counts['bytes_verified']}** of {counts['byte_facts']} stages verified "
                  f"({counts['byte_runs']} byte counter runs, one per shape key), "
                  f"**{counts['bytes_not_verified']}** not verified, {counts['bytes_not_measured']} not measured.")
    lines += [tally, "", f"**Convention.** {CONVENTION}", ""]
    if perf is not None:
        from harness.report.perf_render import perf_lines

        lines += perf_lines(collected, perf, plots or {})
    lines += _config_section(collected, files)

    seen_tables: dict[str, str] = {}
    for target, groups in layout_groups(collected).items():
        lines += [f"## {target}: stage tables per mode", ""]
        for mode, page_groups in groups.items():
            for pages, label in page_groups:
                title = f"{target} {mode}: {_pages_text(pages)}"
                lines += [f"### {title}", "", f"Layout: {label}" + (" (identical for these pages: measured once)"
                                                                     if len(pages) > 1 else ""), ""]
                body = _analytic_table(collected, target, mode, pages[0])
                if plan.counters:
                    body += [""] + _counter_table(collected, target, mode, pages[0])
                byte_rows = _byte_table(collected, target, mode, pages[0])
                if byte_rows:
                    body += [""] + byte_rows
                text = "\n".join(body)
                if text in seen_tables:
                    lines += [f"Same tables as {seen_tables[text]}.", ""]
                else:
                    seen_tables[text] = f"*{title}*"
                    lines += body + [""]

    lines += _blind_spot_section(collected)
    lines += _pages_section(collected)
    if plots:
        lines += ["## Plots", ""]
        for name, caption in plots.items():
            lines += [f"**{caption}**", "", units.md_image(caption, name), ""]
    if files:
        lines += ["## Files", ""] + [f"- `{name}`: {what}" for name, what in files.items()] + [""]
    lines += ["## Notes", ""]
    notes = [public_text(n) for n in collected.notes]
    notes.append(f"Element-wise convention (FLOPs per output element): "
                 + ", ".join(f"{k} {v}" for k, v in ELEMENTWISE_FLOPS.items()) + ".")
    notes.append(f"Bytes: {BYTES_CONVENTION}")
    notes.append("Delta = counter FLOPs - analytic matmul FLOPs = explained (element-wise work the counter "
                 "counts in its own convention, known blind spots sized by the analytic op keys) + "
                 "unexplained remainder. The verdict is the verification suite's: remainder within the "
                 "verify band of golden/tolerances.toml, no unknown blind spot, and for torch every "
                 "matmul-class op key equal to the analytic model.")
    notes.append(f"Counts are a pure function of the configuration and the shapes a stage sees: each shape "
                 f"key was measured once ({counts['model_runs']} runs) and reused for {counts['reused']} "
                 "cells of other pages/modes with the same views, prefill length or decode context.")
    for target, tenv in collected.target_environment.items():
        for note in tenv.get("build_notes", []):
            notes.append(f"{target}: {public_text(note)}")
    lines += [f"- {n}" for n in dict.fromkeys(notes)]
    return "\n".join(lines).rstrip() + "\n"


def dumps_lines(data: dict[str, Any], compact: tuple[str, ...] = ("records", "layouts", "byte_facts")) -> str:
    """Like :func:`dumps`, with each element of the ``compact`` lists on one line (report.json's
    per-page parts: one line per cell, so the file grows by a few hundred bytes per cell)."""
    marks = {key: f"@@{key}@@" for key in compact if isinstance(data.get(key), list)}
    text = dumps({k: (marks[k] if k in marks else v) for k, v in data.items()})
    for key, mark in marks.items():
        items = data[key]
        body = ("[\n" + ",\n".join("    " + json.dumps(item, ensure_ascii=False, allow_nan=False,
                                                          separators=(",", ":"), default=_default)
                                     for item in items) + "\n  ]") if items else "[]"
        text = text.replace(json.dumps(mark), body, 1)
    return text


def dumps(data: Any) -> str:
    """Deterministic JSON (sorted keys off: records keep their reading order)."""
    return json.dumps(data, indent=2, ensure_ascii=False, allow_nan=False, default=_default) + "\n"


def _default(value: Any) -> Any:
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return str(value)
