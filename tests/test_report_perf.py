"""``harness report --gpu`` (offline roofline) and ``--measure`` (measured time, MFU), and
``harness peak``: real numbers checked against the analytic model and against each other."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from PIL import Image

from harness.cli import main
from harness.report.inputs import InputError


def _run(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(argv, stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


# ------------------------------------------------------------------------------- peak table
@pytest.mark.parametrize("name, label", [("H100 SXM5 80GB", "H100 SXM5 80GB"), ("nvidia h100 80gb hbm3", "H100 SXM5 80GB"),
                                         ("a100 sxm4 80", "A100 SXM4 80GB"), ("NVIDIA H200", "H200 SXM 141GB"),
                                         ("rtx 4090", "GeForce RTX 4090 24GB")])
def test_gpu_entry_by_label_torch_name_or_unique_words(name: str, label: str) -> None:
    from harness.report.perf import gpu_entry

    assert gpu_entry(name).label == label


def test_gpu_entry_ambiguous_or_unknown_is_input_error() -> None:
    from harness.report.perf import gpu_entry

    with pytest.raises(InputError, match="several"):
        gpu_entry("a100")
    with pytest.raises(InputError, match="Known: 'A100 SXM4 40GB'"):
        gpu_entry("TPU v5")


# ------------------------------------------------------------------------- the conventions
def test_causal_convention_halves_only_prefill_attention() -> None:
    from harness.analytic import stage_costs
    from harness.report.perf import causal_flops
    from harness.inputs.workload import compute_view_layout, get_workload

    layout = compute_view_layout(get_workload("ocr2", "base"), 1700, 2200)
    costs = stage_costs("ocr2", layout)
    prefill = costs["prefill"]
    attention = prefill.flops["sdpa_qk"] + prefill.flops["sdpa_av"]
    assert attention > 0
    assert causal_flops("prefill", prefill) == prefill.matmul_flops - attention // 2
    for stage in ("sam", "encoder", "projector", "decode"):
        assert causal_flops(stage, costs[stage]) == costs[stage].matmul_flops


def test_roofline_of_one_stage_by_hand() -> None:
    """The predicted time is max(FLOPs / peak, bytes / bandwidth), at the peak table's figures."""
    from harness.gpu.peaks import lookup_peak
    from harness.gpu.roofline import table_peak

    peak = table_peak(lookup_peak("NVIDIA H100 80GB HBM3"), "bf16")
    assert peak.tflops == 989.5 and peak.bandwidth_gbps == 3350.0
    compute, memory = peak.time(989.5e12, 3350e9)
    assert compute == pytest.approx(1.0) and memory == pytest.approx(1.0)
    assert peak.ridge == pytest.approx(989.5e12 / 3350e9)


class _Collected:
    """The slice of Collected the request arithmetic reads, for one page."""

    def __init__(self, target: str, mode: str, width: int, height: int) -> None:
        from types import SimpleNamespace

        from harness.analytic import TARGET_STAGES, stage_costs
        from harness.golden.records import layout_record
        from harness.inputs.workload import DEFAULT_PROMPT_TOKENS, compute_view_layout, get_workload

        self.layout = compute_view_layout(get_workload(target, mode), width, height)
        self.text_tokens = DEFAULT_PROMPT_TOKENS
        self.layouts = {(target, mode, "p"): self.layout}
        self.target_environment = {target: {"attn_implementation": None}}
        costs = stage_costs(target, self.layout)
        self.stages = {(target, mode, "p", s): SimpleNamespace(cost=costs[s]) for s in TARGET_STAGES[target]}
        self._stages = TARGET_STAGES[target]
        self.plan = SimpleNamespace(targets=[SimpleNamespace(name=target, modes=(mode,))],
                                    pages=[SimpleNamespace(page_id="p")])
        self._record = layout_record

    def stages_of(self, target: str):
        return self._stages

    def layout_record(self, target, mode, page):
        return self._record(self.layouts[(target, mode, page)], text_tokens=self.text_tokens)


@pytest.mark.parametrize("target, mode", [("ocr2", "gundam"), ("dsocr", "base")])
def test_request_flops_equal_the_analytic_request_cost(monkeypatch, target: str, mode: str) -> None:
    """The per-page request totals are harness.analytic.request_cost's, and the time for N tokens is
    TTFT + every decode step held to its own roofline (checked step by step)."""
    from harness.analytic import decode_cost, request_cost
    from harness.gpu.peaks import lookup_peak
    from harness.gpu.roofline import table_peak
    from harness.report import perf, render
    from harness.inputs.workload import prefill_length

    fake = _Collected(target, mode, 1700, 2200)
    monkeypatch.setattr(render, "layout_groups", lambda c: {target: {mode: [(["p"], "")]}})
    peak = table_peak(lookup_peak("NVIDIA H100 80GB HBM3"), "bf16")
    n = 37
    (row,) = perf.request_times(fake, n, peak)                  # the default: the fused convention
    (op_row,) = perf.request_times(fake, n, peak, perf._Costs(fake, "bf16", "op"))
    expected = request_cost(target, fake.layout, new_tokens=n)
    assert row.decode_flops == expected["decode"].matmul_flops
    assert row.prefill_flops == expected["prefill"].matmul_flops
    assert row.total_flops == expected["total"].matmul_flops
    length = prefill_length(fake.layout)
    for r, nbytes in ((row, lambda c: c.fused_bytes), (op_row, lambda c: c.total_bytes)):
        steps = sum(max(*peak.time(c.matmul_flops, nbytes(c)))
                    for c in (decode_cost(target, length + j) for j in range(n - 1)))
        assert r.total_s - r.ttft_s == pytest.approx(steps, rel=1e-12)
        assert r.tpot_s == pytest.approx(max(*peak.time(decode_cost(target, length).matmul_flops,
                                                       nbytes(decode_cost(target, length)))))
    assert op_row.total_s > row.total_s          # unfused ops move more bytes than fused kernels


# ------------------------------------------------------------------------------- harness peak
def test_measure_peak_on_cpu_is_a_real_rate() -> None:
    from harness.gpu.achievable import measure_peak

    peak = measure_peak("cpu", "fp32", sizes=(64, 256), nbytes=4 * 2**20, warmup=1, repeats=3)
    assert set(peak.matmul) == {64, 256} and peak.matmul_n in (64, 256)
    best = peak.matmul[peak.matmul_n]
    assert peak.tflops == pytest.approx(2 * peak.matmul_n ** 3 / best.median_s / 1e12)
    assert peak.bandwidth_gbps == pytest.approx(2 * peak.copy_nbytes / peak.copy.median_s / 1e9)
    assert 0 < peak.tflops < 100 and 0 < peak.bandwidth_gbps < 10_000
    assert peak.copy.clock == "perf_counter" and peak.datasheet_label is None


def test_harness_peak_command(tmp_path: Path) -> None:
    code, out, err = _run(["peak", "--device", "cpu", "--sizes", "128", "--repeats", "2", "--json"])
    assert code == 0, err
    doc = json.loads(out)
    assert doc["dtype"] == "fp32" and doc["matmul_n"] == 128 and doc["tflops"] > 0
    code, _, err = _run(["peak", "--device", "meta"])
    assert code == 2 and "has no time" in err
    code, _, err = _run(["peak", "--sizes", "x"])
    assert code == 2 and "--sizes" in err


def test_cuda_on_a_cpu_torch_is_a_one_line_exit_2() -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    for argv in (["peak", "--device", "cuda:0"], ["profile", "--device", "cuda:0", "--small"],
                 ["report", "--measure", "--device", "cuda:0", "--out", "/nonexistent/never"]):
        code, out, err = _run(argv)
        assert code == 2, (argv, err)
        assert len(err.strip().splitlines()) == 1 and "CUDA is unavailable" in err


# ---------------------------------------------------------------- report --measure --device cpu
def test_report_measure_on_cpu_small(tmp_path: Path) -> None:
    """The whole measured path on CPU with the small configuration: time, MFU and roofline tables,
    both roofline plots, the request times on a table GPU; exit 0."""
    out = tmp_path / "r"
    code, stdout, err = _run(["report", "--page-set", "default", "--modes", "small", "--counters", "torch:patched",
                              "--measure", "--device", "cpu", "--small", "--warmup", "1", "--repeats", "2",
                              "--gpu", "H100 SXM5 80GB", "--new-tokens", "64", "-q", "--out", str(out)])
    assert code == 0, err
    assert stdout.strip().endswith("pass")
    doc = json.loads((out / "report.json").read_text())
    perf = doc["performance"]
    assert perf["gpu_peak"]["label"] == "H100 SXM5 80GB" and perf["gpu_peak"]["dtype"] == "bf16"
    assert perf["device_peak"]["measured"] is True and perf["device_peak"]["tflops"] > 0
    peak_runs = perf["peak_measurement"]["copy"]          # the peak kernels take --warmup/--repeats too
    assert peak_runs["repeats"] == 2 and peak_runs["warmup"] == 1
    stages = [m["stage"] for m in perf["measured"]]
    assert stages == ["sam", "encoder", "projector", "prefill", "decode"]
    peak = perf["device_peak"]["tflops"] * 1e12
    for m in perf["measured"]:
        median = m["timing"]["median_s"]
        assert median > 0 and m["timing"]["repeats"] == 2 and m["timing"]["clock"] == "perf_counter"
        assert m["mfu"] == pytest.approx(m["matmul_flops"] / median / peak)
        assert m["measured_over_predicted"] == pytest.approx(median / m["roofline_predicted_s"])
    prefill = next(m for m in perf["measured"] if m["stage"] == "prefill")
    assert prefill["matmul_flops_causal_convention"] < prefill["matmul_flops"]
    decode = next(m for m in perf["measured"] if m["stage"] == "decode")
    assert decode["decode_context"] == doc["layouts"][0]["prefill_length"]
    roof = {r["stage"]: r for r in perf["roofline"]}
    ridge = perf["gpu_peak"]["ridge_flop_per_byte"]
    assert roof["decode"]["bound"] == "memory" and roof["decode"]["intensity_flop_per_byte"] < 2
    for r in roof.values():   # the bound is where the stage's intensity lies against the ridge
        assert r["bound"] == ("compute" if r["intensity_flop_per_byte"] >= ridge else "memory")
        assert r["predicted_s"] == pytest.approx(max(r["matmul_flops"] / 989.5e12, r["bytes"] / 3350e9))
    (request,) = perf["requests"]
    assert request["new_tokens"] == 64 and request["ttft_s"] > 0 and request["time_for_new_tokens_s"] > request["ttft_s"]
    md = (out / "report.md").read_text()
    for text in ("## Roofline on H100 SXM5 80GB (predicted, offline)", "## Measured time and MFU on cpu",
                 "MFU (causal convention)", "*Assumptions.*", "TTFT", "TPOT (at L)", "time for 64 tokens"):
        assert text in md
    assert md.index("## Verdict") < md.index("## Roofline")
    for name in ("roofline_table.png", "roofline_measured.png"):
        with Image.open(out / name) as image:
            assert image.format == "PNG" and image.width > 400
