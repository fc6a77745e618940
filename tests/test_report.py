"""``harness report``: its numbers are the suite's, shape keys are reused correctly, its files and
plots exist with the documented schema, and bad input is exit code 2 with nothing written.

The measured report runs once per module on the OCR-2 ``small`` mode (one 768-px view; the
cheapest full-size counts) with the suite's own session shared_engine, so the numbers checked here are
the very objects the verification suite asserts.
"""

from __future__ import annotations

import csv
import io
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from harness.cli import EXIT_BAD_INPUT, main
from harness.run.engine import Case, Engine
from harness.inputs.shapes import key_name
from harness.golden.records import entry_record

from harness.golden import count_path, layout_path, load_bands, load_doc
from harness.report import units
from harness.report.build import FILES, run_report
from harness.report.collect import golden_dir
from harness.report.inputs import CounterSpec, ReportPlan, TargetPlan
from harness.report.render import CSV_COLUMNS, SCHEMA

REPO = Path(__file__).resolve().parents[1]
MODE = "small"
#: The module's report reads the session engine's counts of the Letter page in Small: under xdist the
#: module runs where those counts are measured (the root conftest's scheduler).
pytestmark = pytest.mark.measures("ocr2", MODE, "letter")
SPECS = [CounterSpec("torch", "patched"), CounterSpec("torch", "stock"), CounterSpec("fvcore", "patched"),
         CounterSpec("thop", "stock")]
STAGES = ("sam", "encoder", "projector", "prefill", "decode")


def _png(path: Path, size: tuple[int, int]) -> Path:
    Image.new("RGB", size, (255, 255, 255)).save(path)
    return path


@pytest.fixture(scope="module")
def shared_engine(request: pytest.FixtureRequest) -> Engine:
    """The suite's session engine when the plugin provides it (same objects the suite asserts)."""
    try:
        return request.getfixturevalue("engine")
    except pytest.FixtureLookupError:  # pragma: no cover - plugin without the fixture
        return Engine()


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory, shared_engine: Engine):
    """One measured report: letter, a4 (built-in) and a 900x700 file, OCR-2 small, four counters."""
    from harness.inputs.pages import builtin_pages, load_page

    root = tmp_path_factory.mktemp("report")
    builtin = {p.page_id: p for p in builtin_pages("default")}
    extra = load_page(_png(root / "scan-900x700.png", (900, 700)))
    pages = [builtin["letter"], builtin["a4"], extra]
    plan = ReportPlan(pages=pages, pages_source="test", targets=[TargetPlan("ocr2", (MODE,))],
                      counters=list(SPECS), skipped_counters={"example": "not installed (test note)"},
                      device="meta", plot_page="letter", command="harness report (test)")
    out = root / "out"
    stderr = io.StringIO()
    result = run_report(plan, out, progress=False, stream=stderr, engine=shared_engine)
    return result


# ------------------------------------------------------------------------------ same numbers
def test_patched_records_are_the_suites_measurements(report, shared_engine: Engine) -> None:
    """Every patched record is the StageCount Engine.measure returns for that case."""
    checked = 0
    for r in report.collected.records:
        if r.variant != "patched" or r.count is None:
            continue
        case = Case(r.target, r.mode, r.page, r.stage, r.counter)
        assert r.count is shared_engine.measure(case), r.golden_key      # the suite's own object, not a rerun
        assert report.collected.stages[(r.target, r.mode, r.page, r.stage)].cost == shared_engine.analytic(case)
        checked += 1
    assert checked == len(STAGES) * 3 * 2       # torch + fvcore patched, every stage (fvcore's SAM on meta too)


def test_records_match_the_committed_goldens(report) -> None:
    """The report's patched counts equal the committed count goldens of their shape keys, figure by
    figure (the goldens were written by an earlier suite run, not by this report)."""
    compared = 0
    for r in report.collected.records:
        if r.variant != "patched" or r.count is None or r.page == "scan-900x700":
            continue
        doc = load_doc(count_path(golden_dir(), r.target, r.stage, key_name(r.shape_key)), "count")
        assert doc is not None, f"no committed golden for {r.golden_key}"
        entry = doc["counters"][r.counter]
        assert (entry["flops"], entry["raw"], entry["by_key"], entry["by_op"]) == \
               (r.count.flops, r.count.raw, dict(r.count.by_key), dict(r.count.by_op)), r.golden_key
        layout = load_doc(layout_path(golden_dir(), r.target, r.mode), "layout")     # page -> key: the layout's fact
        assert layout["pages"][r.page]["shape_keys"][r.stage] == key_name(r.shape_key), r.golden_key
        assert r.golden == "match", (r.golden_key, r.golden_differences)
        compared += 1
    assert compared == 2 * len(STAGES) * 2           # letter and a4: torch + fvcore, every stage
    for r in report.collected.records:
        if r.variant == "stock":
            assert r.golden == "n/a"


def test_verdicts_follow_explain_delta_and_bands(report) -> None:
    """Every measured cell is verified; patched torch's matmul class is the analytic model's to the
    FLOP (its by-key record against the analytic stage cost: two independent computations), so its
    remainder is 0 and the whole of its element-wise work is what the explanation calls explained."""
    torch_cells = 0
    for r in report.collected.records:
        if r.count is None:
            assert r.status == "not measured" and r.error and r.verified is None
            continue
        e = r.explanation
        assert e.measured_flops == r.count.flops
        assert r.verified is True, (r.golden_key, str(e), r.key_mismatches)
        if (r.counter, r.variant) == ("torch", "patched"):
            torch_cells += 1
            assert r.count.matmul_flops == e.analytic_matmul > 0, r.golden_key
            assert (e.remainder, e.explained) == (0, r.count.elementwise_flops), r.golden_key
    assert torch_cells > 0


def test_byte_facts_are_the_suites_beside_the_analytic_bytes_of_the_build(report, shared_engine: Engine) -> None:
    """Each stage's byte fact: the byte counter's count the suite asserts (test_count[...-bytes-...]),
    its verdict, and the stage table's analytic bytes are those of the build's experts model
    (batched_mm on meta), so they stand beside the measured bytes: OCR-2 Small prefill is 147.4 GB
    op-level on batched_mm, where the loop model the report used to show says 6.880 GB."""
    from harness.run.engine import BYTES
    from harness.verify import fact

    facts = report.collected.byte_facts
    assert len(facts) == 3 * len(STAGES) and len(report.collected.byte_measurements) == len(STAGES)
    for (target, mode, page, stage), b in facts.items():
        case = Case(target, mode, page, stage, BYTES)
        measured = shared_engine.measure(case)
        assert b.verified is True, b.verdict.problems
        assert b.total.measured == measured.total_bytes and b.total.analytic == fact(shared_engine, case, measured).total.analytic
        info = report.collected.stages[(target, mode, page, stage)]
        assert (info.experts_model, info.cost.total_bytes) == ("batched_mm", b.total.analytic)
        assert b.build == "bfloat16 on meta, attention sdpa, experts batched_mm"
    prefill = facts[("ocr2", MODE, "letter", "prefill")].total
    assert (prefill.analytic, prefill.measured) == (147_432_722_728, 147_431_927_888)
    assert prefill.named == -(2 * 155 * 1280 * 2 + 155 * 8)      # the embedding lookup of L = 155 tokens
    md = (report.out / "report.md").read_text()
    assert "| stage | analytic bytes | measured bytes | Δ bytes | unexplained | byte verdict |" in md
    assert "bytes (op-level, experts batched_mm)" in md and "| 147.4 GB | 147.4 GB | -794,840 | +0 | ok (named: index) |" in md
    assert f"Byte facts: **{len(facts)}** of {len(facts)} stages verified ({len(STAGES)} byte counter runs" in md
    doc = json.loads((report.out / "report.json").read_text())
    entry = next(v for v in doc["byte_measurements"].values() if v["stage"] == "prefill")
    assert (entry["analytic_bytes"], entry["measured_bytes"], entry["verified"]) == (147_432_722_728, 147_431_927_888, True)
    assert len(doc["byte_facts"]) == len(facts)


def test_stock_counter_blind_spot_is_sized(report) -> None:
    """torch stock on meta sees SDPA (it decomposes there); fvcore measures SAM on meta, its
    convolutions included, so no cell of the matrix is NOT MEASURED."""
    by = {(r.stage, r.spec): r for r in report.collected.records if r.page == "letter"}
    sam_fvcore = by[("sam", CounterSpec("fvcore", "patched"))]
    assert sam_fvcore.count is not None and not sam_fvcore.error
    assert sam_fvcore.count.devices == ("meta",) and sam_fvcore.count.by_key["conv"] > 0
    assert sam_fvcore.verified is True
    assert all(r.status == "measured" for r in report.collected.records)
    md = (report.out / "report.md").read_text()
    assert "**NOT MEASURED**" not in md and "**0** not measured" in md
    assert "torch stock" in md
    assert "harness.run.plan" not in md and "NOT_MEASURABLE_ON_META" not in md    # no internal symbol names
    assert "0 cells NOT MEASURED" in report.summary_line


# --------------------------------------------------------------------------- reuse by shape
def test_pages_sharing_a_layout_are_measured_once(report) -> None:
    """letter, a4 and a 900x700 scan share OCR-2 small's layout: one model run per (stage, counter)."""
    records = report.collected.records
    for stage in STAGES:
        for spec in SPECS:
            cells = [r for r in records if r.stage == stage and r.spec == spec]
            assert [r.page for r in cells] == ["letter", "a4", "scan-900x700"]
            if cells[0].measured is None and cells[0].error:
                assert all(r.count is None for r in cells)     # not attempted: nothing measured, reused
                continue
            first, *rest = cells
            # None: measured by this report; else measured earlier in this session (the suite's tests)
            assert first.reused_from in (None, "an earlier run in this process")
            for r in rest:
                assert r.reused_from == "letter/small"
                assert r.seconds == 0.0
                assert r.count is first.count and r.error == first.error
    runs = len(STAGES) * len(SPECS)              # every cell, fvcore's SAM on meta too
    assert report.collected.model_runs + report.collected.reuses == 3 * runs
    assert report.collected.model_runs <= runs


@pytest.mark.parametrize("stage", STAGES)
def test_reused_count_equals_a_fresh_unmemoised_count(report, shared_engine: Engine, stage: str) -> None:
    """The 900x700 page's (reused) torch count equals counting that page afresh, no memo."""
    from harness.measure import count

    record = next(r for r in report.collected.records
                  if r.page == "scan-900x700" and r.stage == stage and r.spec == CounterSpec("torch"))
    assert record.reused_from is not None
    target = shared_engine.target("ocr2")
    built = shared_engine.built_model("ocr2")
    inputs = target.prepare((900, 700), MODE, device="meta")       # new inputs: no upstream cache
    fresh = count("torch", target.stage_calls(built, inputs, stage), variant="patched", target="ocr2",
                  stage=stage)
    assert fresh is not record.count
    assert (fresh.flops, fresh.raw, fresh.by_key, fresh.by_op) == \
           (record.count.flops, record.count.raw, record.count.by_key, record.count.by_op)


def test_stock_variant_is_memoised_like_the_suites(report, shared_engine: Engine) -> None:
    case = Case("ocr2", MODE, "a4", "encoder", "torch")
    stock = shared_engine.measure(case, "stock")
    assert stock is next(r.count for r in report.collected.records
                         if r.page == "letter" and r.stage == "encoder" and r.spec == CounterSpec("torch", "stock"))
    assert stock.variant == "stock" and shared_engine.measure(case, "patched").variant == "patched"


# ---------------------------------------------------------------------------- files, schema
def test_files_and_plots_are_written(report) -> None:
    names = sorted(p.name for p in report.out.iterdir())
    assert set(FILES) <= set(names)
    assert report.plots == ["stage_bars_ocr2_letter.png", "vision_vs_tokens_ocr2.png", "delta_ocr2.png",
                            "decode_ocr2.png"]
    for name in report.plots:
        path = report.out / name
        assert path.stat().st_size > 10_000, name
        with Image.open(path) as image:
            assert image.format == "PNG" and image.width > 400 and image.height > 200
    assert not [p for p in report.out.parent.iterdir() if p.name.startswith(".")], "temporary dirs left"


def test_report_json_schema(report) -> None:
    """Each measurement and analytic cost stored once under its shape key; records reference them."""
    doc = json.loads((report.out / "report.json").read_text())
    assert doc["schema"] == SCHEMA
    assert "2 x MACs" in doc["convention"]
    for key in ("harness", "torch", "transformers", "fvcore", "thop", "python"):
        assert key in doc["environment"]
    env = doc["environment"]["targets"]["ocr2"]
    assert env["dtype"] == "float32" and env["attn_implementation"] == "sdpa" and env["device"] == "meta"
    assert len(doc["records"]) == 3 * len(STAGES) * len(SPECS)
    # the three pages share one layout: one measurement per stage x counter, one analytic cost per stage
    assert len(doc["measurements"]) == len(STAGES) * len(SPECS)          # fvcore's SAM on meta too
    assert len(doc["analytic"]) == len(STAGES)
    for layout in doc["layouts"]:
        assert layout["prefill_length"] == 155 and layout["views"][0]["size"] == 768
    for rec in doc["records"]:
        for key in ("target", "mode", "page", "stage", "counter", "variant", "status", "analytic", "measurement",
                    "golden"):
            assert key in rec
        analytic = doc["analytic"][rec["analytic"]]
        assert isinstance(analytic["matmul_flops"], int) and analytic["stage"] == rec["stage"]
        if rec["status"] == "measured":
            entry = doc["measurements"][rec["measurement"]]
            assert (entry["stage"], entry["counter"], entry["variant"]) == (rec["stage"], rec["counter"], rec["variant"])
            m, d = entry["measured"], entry["delta"]
            assert isinstance(m["flops"], int) and m["convention"] in ("flop", "mac")
            assert d["analytic_matmul_flops"] + d["explained_flops"] + d["unexplained_flops"] == m["flops"]
            assert d["analytic_matmul_flops"] == analytic["matmul_flops"]
        else:
            assert rec["measurement"] is None and rec["error"]
    decode = [a for a in doc["analytic"].values() if a["stage"] == "decode"]
    assert [a["decode_context"] for a in decode] == [155]
    assert doc["summary"]["records"] == len(doc["records"])
    assert doc["summary"]["summary_line"].startswith("report: 3 pages × 1 modes × 5 stages × 4 counters")
    assert doc["summary"]["exit"]["exit_code"] == 0
    assert doc["performance"]["requests"][0]["new_tokens"] == 1000


def test_report_csv_is_flat_and_exact(report) -> None:
    pandas = pytest.importorskip("pandas")
    text = (report.out / "report.csv").read_text()
    assert next(csv.reader(io.StringIO(text))) == list(CSV_COLUMNS)
    frame = pandas.read_csv(report.out / "report.csv")
    assert len(frame) == 3 * len(STAGES) * len(SPECS)
    measured = frame[frame.status == "measured"]
    assert (measured.measured_flops == measured.analytic_matmul_flops + measured.explained_flops
            + measured.unexplained_flops).all()
    assert frame.analytic_matmul_flops.dtype.kind == "i"
    doc = json.loads((report.out / "report.json").read_text())
    exact = {(r["page"], r["stage"], r["counter"], r["variant"]): doc["measurements"][r["measurement"]]["measured"]["flops"]
             for r in doc["records"] if r["measurement"]}
    for row in measured.itertuples():
        assert int(row.measured_flops) == exact[(row.page, row.stage, row.counter, row.variant)]
    missing = frame[frame.status != "measured"]
    assert missing.measured_flops.isna().all() and missing.error.notna().all()


def test_markdown_sections(report) -> None:
    md = (report.out / "report.md").read_text()
    for heading in ("## Verdict", "## Configuration", "## ocr2: stage tables per mode",
                    "## Counter blind spots", "## Pages: token counts and crop grids", "## Plots", "## Notes"):
        assert heading in md
    assert md.index("## Verdict") < md.index("## Configuration") < md.index("## ocr2: stage tables per mode")
    assert "decode (1 token at context 155)" in md and "decode (context 155)" in md
    assert "**Verdict: pass** (exit 0)" in md
    assert "letter, a4, scan-900x700" in md           # one table for the three pages of one layout
    assert "example (skipped)" in md
    assert "FLOPs = 2 x MACs" in md
    static = json.loads((report.out / "static_compute.json").read_text())
    assert {r["stage"] for r in static["rows"]} == set(STAGES)
    assert all(isinstance(r["params"], int) and r["params"] > 0 for r in static["rows"])
    assert "# Static compute per page" in (report.out / "static_compute.md").read_text()


# ------------------------------------------------------------------------------- atomicity
def test_failed_run_keeps_the_previous_report(report, shared_engine: Engine, monkeypatch) -> None:
    import harness.report.render as render

    before = {p.name: p.read_bytes() for p in report.out.iterdir()}

    def broken(*args, **kwargs):
        raise RuntimeError("disk full (simulated)")

    monkeypatch.setattr(render, "report_markdown", broken)
    plan = report.collected.plan
    with pytest.raises(RuntimeError, match="simulated"):
        run_report(plan, report.out, progress=False, stream=io.StringIO(), engine=shared_engine, plots=False)
    after = {p.name: p.read_bytes() for p in report.out.iterdir()}
    assert after == before
    assert not [p for p in report.out.parent.iterdir() if p.name.startswith(".")]


# ------------------------------------------------------------------------------ bad input
def _run(argv, tmp_path: Path, engine: Engine | None = None) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(argv, stdout=out, stderr=err, engine=engine)
    return code, out.getvalue(), err.getvalue()


@pytest.fixture
def previous(tmp_path: Path) -> Path:
    """An --out holding a previous report that a failing run must leave untouched."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "report.json").write_text(json.dumps({"schema": SCHEMA, "marker": 1}))
    return out


def _bad_inputs(tmp_path: Path) -> list[tuple[list[str], str]]:
    empty = tmp_path / "empty"
    empty.mkdir()
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    manifest = tmp_path / "bad.json"
    manifest.write_text(json.dumps([{"page_info": {"width": 0, "height": 10, "image_path": "x.png"}}]))
    good = _png(tmp_path / "good.png", (50, 40))
    dup = tmp_path / "dup"
    dup.mkdir()
    _png(dup / "good.png", (60, 40))
    not_report = tmp_path / "mine"
    not_report.mkdir()
    (not_report / "notes.txt").write_text("my files")
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    fake_vendor = tmp_path / "vendor"
    fake_vendor.mkdir()
    return [
        (["--pages", str(tmp_path / "missing.png")], "missing.png: no such file or directory"),
        (["--pages", str(empty)], "holds no image files"),
        (["--pages", str(corrupt)], "corrupt.png"),
        (["--pages", str(manifest)], "page_info.width must be a positive integer"),
        (["--pages", str(good), str(dup / "good.png")], "two pages have the id 'good'"),
        (["--pages", str(good), "--page-set", "grid"], "--pages and --page-set are exclusive"),
        (["--modes", "gundum"], "Did you mean 'gundam'"),
        (["--counters", "fvcor"], "Did you mean 'fvcore'"),
        (["--counters", "thop:stok"], "Did you mean 'stock'"),
        (["--target", "ocr3"], "Did you mean 'ocr2'"),
        (["--model-path", str(fake_vendor)], "lacks config.json"),
        (["--model-path", str(tmp_path / "nowhere"), "--target", "dsocr"], "is not a local directory"),
        (["--target", "dsocr"], "needs the vendor DeepSeek-OCR directory"),
        (["--device", "tpu"], "--device 'tpu': expected cpu, meta, cuda or cuda:N"),
        (["--plot-page", "leter"], "Did you mean 'letter'"),
        (["--out", str(not_report)], "not a harness report"),
        (["--out", str(a_file)], "is not a directory"),
        (["--gpu", "H900"], "not in the peak table"),
        (["--gpu", "h100"], "matches several peak-table entries"),
        (["--measure"], "--measure times real execution"),
        (["--small"], "apply to --measure"),
        (["--new-tokens", "0"], "--new-tokens 0"),
        (["--measure", "--device", "cuda:0"] if not _cuda() else (["--device", "tpu"]), "--device"),
    ]


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def test_bad_inputs_exit_2_and_write_nothing(tmp_path: Path, previous: Path, monkeypatch) -> None:
    import harness.report.build as build

    def must_not_run(*args, **kwargs):
        raise AssertionError("measured despite bad input")

    monkeypatch.setattr(build, "collect", must_not_run)
    before = (previous / "report.json").read_bytes()
    for args, expected in _bad_inputs(tmp_path):
        argv = ["report", *args] + ([] if "--out" in args else ["--out", str(previous)])
        code, out, err = _run(argv, tmp_path)
        assert code == EXIT_BAD_INPUT, (args, err)
        assert expected in err, (args, err)
        assert err.startswith("harness report: error: "), err
        assert out == ""
    assert (previous / "report.json").read_bytes() == before
    assert sorted(p.name for p in previous.iterdir()) == ["report.json"]


def test_trust_remote_code_is_required(tmp_path: Path) -> None:
    from harness.targets.vendor import REMOTE_CODE_FILES

    vendor = tmp_path / "vendor"
    vendor.mkdir()
    for name in ("config.json", *REMOTE_CODE_FILES):
        (vendor / name).write_text("{}")
    code, _, err = _run(["report", "--model-path", str(vendor), "--out", str(tmp_path / "o")], tmp_path)
    assert code == EXIT_BAD_INPUT and "--trust-remote-code" in err
    assert not (tmp_path / "o").exists()


def test_argparse_usage_error_is_exit_2(tmp_path: Path) -> None:
    code, _, _ = _run(["report", "--no-such-option"], tmp_path)
    assert code == 2
    code, _, _ = _run(["frobnicate"], tmp_path)
    assert code == 2


# ------------------------------------------------------------------ environment, counters
def test_missing_counter_package_is_skipped_with_a_note(monkeypatch) -> None:
    import importlib.util

    from harness.report import inputs

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "fvcore" else real(name, *a))
    choice = inputs.resolve_counters(None)
    assert "fvcore" in choice.skipped and "pip install" in choice.skipped["fvcore"]
    assert choice.specs == [CounterSpec("torch"), CounterSpec("thop"), CounterSpec("thop", "stock")]
    assert "stock equals patched" in choice.skipped["torch stock"]
    assert CounterSpec("torch", "stock") in inputs.resolve_counters(None, "cpu").specs
    with pytest.raises(inputs.InputError, match="fvcore is not installed"):
        inputs.resolve_counters(["fvcore"])


def test_counter_specs() -> None:
    from harness.report.inputs import resolve_counters

    assert resolve_counters(["torch:stock,thop"]).specs == [
        CounterSpec("torch", "stock"), CounterSpec("thop", "patched"), CounterSpec("thop", "stock")]
    assert CounterSpec("thop", "stock").label == "thop stock" and CounterSpec("thop").label == "thop"


@pytest.mark.skipif(int(__import__("transformers").__version__.split(".")[0]) < 5,
                    reason="in the vendor environment the dsocr counters can run")
def test_dsocr_outside_the_vendor_env_reports_analytic_only(tmp_path: Path) -> None:
    """A valid vendor directory in the main environment: loud note, analytic and layouts, no counts."""
    from harness.report.collect import collect
    from harness.report.inputs import resolve_pages, resolve_targets
    from harness.targets.vendor import REMOTE_CODE_FILES

    vendor = tmp_path / "vendor"
    vendor.mkdir()
    for name in ("config.json", *REMOTE_CODE_FILES):
        (vendor / name).write_text("{}")
    targets = resolve_targets(["dsocr"], str(vendor), True)
    assert "transformers==4.46.3" in targets[0].unavailable
    targets[0].modes = ("base",)
    pages, source = resolve_pages(None, "default")
    plan = ReportPlan(pages=pages[:1], pages_source=source, targets=targets, counters=[CounterSpec("torch")],
                      skipped_counters={}, model_path=str(vendor), trust_remote_code=True)
    collected = collect(plan)
    assert {r.status for r in collected.records} == {"not measured"}
    assert all("4.46.3" in r.error for r in collected.records)
    assert collected.stages[("dsocr", "base", "letter", "prefill")].cost.matmul_flops > 0
    assert any("counters not run" in n for n in collected.notes)
    from harness.report.verdict import EXIT_NOTHING, exit_findings

    findings = exit_findings(collected)
    assert findings.code == EXIT_NOTHING
    assert findings.nothing[0].startswith("target dsocr: no counter measured any cell") and "4.46.3" in findings.nothing[0]


def test_exit_codes_gate_ci(tmp_path: Path, monkeypatch, shared_engine: Engine) -> None:
    """A golden changed by hand (the stored entry's flops + 2): exit 3 naming the cell; --exit-zero:
    0 with the same finding said. GoldenChecker._entry is the one place the golden store is read.
    (The command measures in the suite's engine: the counts are the suite's.)"""
    import harness.report.collect as collect_module

    real = collect_module.GoldenChecker._entry

    def edited(self, cell):
        entry = real(self, cell)
        if (cell.page, cell.stage, cell.counter) == ("letter", "projector", "torch"):
            entry = json.loads(json.dumps(entry if entry is not None else entry_record(cell.count)))
            entry["flops"] += 2
        return entry

    monkeypatch.setattr(collect_module.GoldenChecker, "_entry", edited)
    argv = ["report", "--page-set", "default", "--modes", MODE, "--counters", "torch:patched", "--no-plots", "-q"]
    code, out, err = _run([*argv, "--out", str(tmp_path / "a")], tmp_path, shared_engine)
    assert code == 3, err
    assert "ocr2-small-letter-projector-torch" in err and "flops" in err
    assert "ocr2-small-a4-projector-torch" not in err          # only the edited cell
    assert out.strip().endswith("exit 3")
    md = (tmp_path / "a" / "report.md").read_text()
    assert "**Verdict: FAIL** (exit 3)" in md[:2000]
    code, _, err = _run([*argv, "--exit-zero", "--out", str(tmp_path / "b")], tmp_path, shared_engine)
    assert code == 0 and "suppressed by --exit-zero" in err


def test_exit_4_names_an_unexplained_delta_and_5_a_counter_that_measured_nothing(report) -> None:
    import copy
    from types import SimpleNamespace

    from harness.report.verdict import EXIT_NOTHING, EXIT_UNEXPLAINED, exit_findings

    collected = report.collected
    assert exit_findings(collected).code == 0
    measurements = dict(collected.measurements)
    key, m = next((k, m) for k, m in measurements.items() if m.stage == "prefill" and m.spec == CounterSpec("torch"))
    broken = copy.copy(m)
    broken.within_band = False
    measurements[key] = broken
    view = SimpleNamespace(plan=collected.plan, records=collected.records, measurements=measurements)
    found = exit_findings(view)
    assert found.code == EXIT_UNEXPLAINED
    assert found.unexplained == ["ocr2-small-letter-prefill-torch (unexplained 0 above its band)"]
    # a counter none of whose cells measured anything: 5
    nothing = {k: m for k, m in collected.measurements.items() if m.spec != CounterSpec("thop", "stock")}
    view = SimpleNamespace(plan=collected.plan, records=collected.records, measurements=nothing)
    assert exit_findings(view).code == EXIT_NOTHING
    assert exit_findings(view).nothing == ["ocr2 counter thop stock: measured no cell"]
    # a byte fact whose verdict fails: 4, naming the cell and the key
    import dataclasses

    from harness.verify import BytesVerdict

    memo, fact = next((k, b) for k, b in collected.byte_measurements.items() if b.stage == "decode")
    rows = list(fact.verdict.rows)
    norm = next(i for i, r in enumerate(rows) if r.key == "norm")
    rows[norm] = dataclasses.replace(rows[norm], unexplained=2)
    broken = copy.copy(fact)
    broken.verdict = BytesVerdict(tuple(rows), ("bytes ocr2 decode: ...",))
    view = SimpleNamespace(plan=collected.plan, records=collected.records, measurements=collected.measurements,
                           byte_measurements={**collected.byte_measurements, memo: broken})
    found = exit_findings(view)
    assert found.code == EXIT_UNEXPLAINED
    assert found.unexplained == ["ocr2-small-letter-decode-bytes (analytic op-level bytes differ from the byte "
                                 "counter's: norm unexplained)"]


def test_version(capsys) -> None:
    import harness

    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"harness {harness.__version__}"


# ---------------------------------------------------------------------------------- inputs
def test_pages_from_a_directory_and_a_manifest(tmp_path: Path) -> None:
    from harness.report.inputs import resolve_pages

    folder = tmp_path / "pages"
    folder.mkdir()
    _png(folder / "b.png", (300, 200))
    _png(folder / "a.png", (200, 300))
    (folder / "readme.txt").write_text("not a page")
    pages, source = resolve_pages([str(folder)], None)
    assert [(p.page_id, p.width, p.height) for p in pages] == [("a", 200, 300), ("b", 300, 200)]
    manifest = tmp_path / "omnidocbench.json"
    _png(tmp_path / "scan_001.jpg", (1654, 2339))   # a manifest's image must exist and match its size
    manifest.write_text(json.dumps([{"layout_dets": [], "page_info": {
        "page_no": 0, "width": 1654, "height": 2339, "image_path": "scan_001.jpg"}}]))
    pages, source = resolve_pages([str(manifest)], None)
    assert [(p.page_id, p.width, p.height) for p in pages] == [("scan_001", 1654, 2339)]
    assert "manifest" in source


def test_layout_subcommand(tmp_path: Path) -> None:
    code, out, err = _run(["layout", "--target", "ocr2", "--modes", "gundam", "--page-set", "default"], tmp_path)
    assert code == 0, err
    assert "letter" in out and "2x3" in out and "1131" in out
    assert "valid (Eq. 1)" in out and "vendor valid" in out and "Eq. 1: ceil(N * min(w, h) / max(w, h))" in out
    assert "padded to the square, as transformers" in out and "squashes" in out
    code, out, _ = _run(["layout", "--target", "dsocr", "--modes", "gundam", "--format", "json",
                         "--pages", str(_png(tmp_path / "p.png", (1700, 2200)))], tmp_path)
    rows = json.loads(out)
    assert rows == [{"target": "dsocr", "mode": "gundam", "page": "p", "width": 1700, "height": 2200,
                     "crop_grid": "2x3", "n_crops": 6, "views": "6x640px crops + 1x1024px global", "n_views": 7,
                     "vision_tokens": 856, "image_tokens": 903, "valid_tokens": 798, "valid_tokens_vendor": 797,
                     "prefill_length": 913}]
    code, out, _ = _run(["layout", "--format", "csv", "--modes", "base", "--page-set", "default"], tmp_path)
    assert code == 0 and out.splitlines()[0].startswith("target,mode,page,width,height")
    assert len(out.splitlines()) == 1 + 2 * 5


def test_short_reason() -> None:
    from harness.report.units import short_reason

    text = ("CounterError: fvcore could not trace 'x' on meta tensors (TypeError: cond must be a bool, but got "
            "a Tensor. Use torch._check_tensor_all() instead). count this stage on real tensors (the small config).")
    assert short_reason(text) == ("CounterError: fvcore could not trace 'x' on meta tensors. count this stage on "
                                  "real tensors (the small config).")
    assert short_reason(None) == "not measured"
    assert len(short_reason("y" * 500, 100)) == 100


def test_units() -> None:
    assert units.flop(234.7e9) == "234.7 GFLOP"
    assert units.flop(4_063_302_451_200) == "4.063 TFLOP"
    assert units.flop(999.96e9) == "1000 GFLOP"      # 4 significant digits, no unit promotion
    assert units.flop(0) == "0 FLOP" and units.flop(None) == "n/a"
    assert units.flop_signed(-22.55e9) == "-22.55 GFLOP" and units.flop_signed(0) == "0"
    assert units.nbytes(7.415e9) == "7.415 GB"
    assert units.count(3_389_119_360) == "3.389 B"
    assert units.pct(1, 1000) == "+0.1000%"
    assert units.sig(0.99969) == "0.9997"
    assert math.isclose(float(units.sig(123456.0)), 123456.0)


# ------------------------------------------------------------------------------- end to end
def test_harness_report_end_to_end(tmp_path: Path) -> None:
    """The command line as a user types it, with its own engine: one page, one mode, torch only,
    plots skipped; and ``python -m harness`` is that command line (a fresh interpreter)."""
    page = _png(tmp_path / "page.png", (600, 800))
    out = tmp_path / "report"
    code, stdout, stderr = _run(["report", "--pages", str(page), "--modes", "small", "--counters", "torch:patched",
                                 "--no-plots", "--out", str(out)], tmp_path)
    assert code == 0, stderr
    line = stdout.strip().splitlines()[-1]
    assert line.startswith("report: 1 pages × 1 modes × 5 stages × 1 counters → ")
    assert "0 unexplained deltas above band" in line
    assert "building ocr2 on meta (no weights)" in stderr
    doc = json.loads((out / "report.json").read_text())
    assert [r["status"] for r in doc["records"]] == ["measured"] * 5
    assert all(r["verified"] for r in doc["records"])
    proc = subprocess.run([sys.executable, "-m", "harness", "report", "--help"], cwd=REPO, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0 and "--counters" in proc.stdout, proc.stderr
    proc = subprocess.run([sys.executable, "-m", "harness", "report", "--modes", "nope"], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == EXIT_BAD_INPUT and "nope" in proc.stderr, proc.stderr


def test_worker_processes_give_the_same_counts(report) -> None:
    """--jobs 2 (forked workers running the shared_engine's own measure) == the sequential counts."""
    from harness.report.collect import collect
    from harness.run.plan import work_units

    plan = ReportPlan(pages=[p for p in report.collected.plan.pages if p.page_id == "letter"],
                      pages_source="test", targets=[TargetPlan("ocr2", (MODE,))],
                      counters=[CounterSpec("torch"), CounterSpec("thop", "stock")], skipped_counters={})
    fresh = Engine()
    fresh.register_pages(plan.pages, builtin=False)
    parallel = collect(plan, engine=fresh, jobs=2)
    assert parallel.model_runs == 10 and parallel.reuses == 0
    sequential = {(r.stage, r.spec): r for r in report.collected.records if r.page == "letter"}
    for r in parallel.records:
        twin = sequential[(r.stage, r.spec)]
        assert r.status == twin.status == "measured"
        assert (r.count.flops, r.count.raw, r.count.by_key, r.count.by_op, r.count.unknown_ops) == \
               (twin.count.flops, twin.count.raw, twin.count.by_key, twin.count.by_op, twin.count.unknown_ops)
        assert r.seconds > 0
    # a page's upstream-sharing stages stay together; decode counts are units of their own
    cases = [Case("ocr2", MODE, "letter", s, "torch") for s in STAGES]
    units = work_units(cases, lambda c: (c.target, c.mode, c.page, c.stage))
    assert [len(u) for u in units] == [4, 1] and units[1][0].stage == "decode"


def test_golden_checker_flags_a_changed_count(report, tmp_path: Path) -> None:
    """A golden whose figure differs from the count is reported as such (never silently equal)."""
    import shutil

    from harness.golden import dumps_golden
    from harness.report.collect import GoldenChecker

    record = next(r for r in report.collected.records
                  if r.page == "letter" and r.stage == "projector" and r.spec == CounterSpec("torch"))
    committed = count_path(golden_dir(), "ocr2", "projector", key_name(record.shape_key))
    path = count_path(tmp_path, "ocr2", "projector", key_name(record.shape_key))
    path.parent.mkdir(parents=True)
    shutil.copy(committed, path)
    assert GoldenChecker(tmp_path, load_bands(tmp_path / "none.toml")).check(record) == ("match", [])
    doc = load_doc(path, "count")
    doc["counters"]["torch"]["flops"] += 2
    path.write_text(dumps_golden(doc))
    status, rows = GoldenChecker(tmp_path, load_bands(tmp_path / "none.toml")).check(record)
    assert status == "differs" and any(row.startswith("flops:") for row in rows)
    other = next(r for r in report.collected.records
                 if r.page == "letter" and r.stage == "sam" and r.spec == CounterSpec("torch"))
    assert GoldenChecker(tmp_path, load_bands(tmp_path / "none.toml")).check(other)[0] == "no golden"


@pytest.mark.parametrize("cpus, load, expected", [(2, 0.1, 2), (2, 0.8, 1), (2, 3.5, 1), (16, 1.0, 4), (1, 0.0, 1)])
def test_default_jobs_follow_idle_cpus(monkeypatch, cpus: int, load: float, expected: int) -> None:
    import os

    from harness.cli import default_jobs

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(cpus)), raising=False)
    monkeypatch.setattr(os, "getloadavg", lambda: (load, load, load))
    assert default_jobs() == expected


def test_delta_plot_draws_every_counter(report, tmp_path: Path) -> None:
    from harness.report import plots

    path = tmp_path / "delta.png"
    plots.delta_bars(report.collected, "ocr2", path)
    with Image.open(path) as image:
        assert image.width > 600 and image.height > 200
