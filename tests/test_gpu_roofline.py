"""MFU and roofline arithmetic, with the derivations beside the expected values, and the Markdown table."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from harness.gpu.peaks import ResolvedPeak, resolve_peak
from harness.gpu.roofline import achieved_tflops, mfu, roofline, stage_perf
from harness.gpu.table import COLUMNS, perf_table_json, perf_table_markdown, write_perf_report
from harness.gpu.timing import timing_from_samples

H100 = resolve_peak("NVIDIA H100 80GB HBM3", "bf16", env={})  # 989.5 TFLOP/s, 3350 GB/s


@dataclass(frozen=True)
class FakeCost:
    matmul_flops: int
    total_bytes: int


def test_achieved_tflops():
    # 1e12 FLOPs in 0.5 s = 2e12 FLOP/s = 2 TFLOP/s
    assert achieved_tflops(1e12, 0.5) == pytest.approx(2.0)


def test_mfu_against_dense_peak():
    # 989.5e12 FLOPs in 2 s = 494.75 TFLOP/s; / 989.5 dense peak = 0.5
    assert mfu(989.5e12, 2.0, H100.tflops) == pytest.approx(0.5)
    # against the sparse headline (1979) it would read 0.25: the table must hold the dense figure
    assert mfu(989.5e12, 2.0, 1979.0) == pytest.approx(0.25)


@pytest.mark.parametrize("bad", [0.0, -1.0])
def test_nonpositive_seconds_or_peak(bad):
    with pytest.raises(ValueError):
        achieved_tflops(1.0, bad)
    with pytest.raises(ValueError):
        mfu(1.0, 1.0, bad)


def test_roofline_compute_bound():
    # 1 TFLOP at 1000 TFLOP/s = 1e12 / 1e15 = 1 ms; 1 GB at 2000 GB/s = 1e9 / 2e12 = 0.5 ms
    line = roofline(1e12, 1e9, 1000.0, 2000.0)
    assert line.compute_s == pytest.approx(1e-3)
    assert line.memory_s == pytest.approx(0.5e-3)
    assert line.predicted_s == pytest.approx(1e-3)
    assert line.bound == "compute"


def test_roofline_memory_bound_decode_token():
    # One decode token through the 570M active parameters in bf16, roughly:
    # FLOPs 2 x 5.74e8 = 1.148e9 -> 1.148e9 / 989.5e12 = 1.1602 us;
    # bytes ~ 6.0e9 (all experts' weights for a batch of one are not read: say 1.15e9 B) ->
    # 1.15e9 / 3350e9 = 343.3 us. Memory bound by ~300x, as decode at batch 1 is.
    line = roofline(1.148e9, 1.15e9, H100.tflops, H100.bandwidth_gbps)
    assert line.compute_s == pytest.approx(1.148e9 / 989.5e12)
    assert line.memory_s == pytest.approx(1.15e9 / 3350e9)
    assert line.bound == "memory"
    assert line.predicted_s == pytest.approx(343.28e-6, rel=1e-4)


def test_roofline_tie_is_compute():
    assert roofline(2e12, 1e9, 1000.0, 500.0).bound == "compute"  # 2 ms and 2 ms


def test_roofline_rejects_bad_input():
    with pytest.raises(ValueError):
        roofline(-1, 0, 1.0, 1.0)
    with pytest.raises(ValueError):
        roofline(1, 1, 1.0, 0.0)


def test_stage_perf_by_hand():
    timing = timing_from_samples([0.010, 0.012, 0.011], clock="cuda_event", device="cuda:0")
    perf = stage_perf("sam", FakeCost(matmul_flops=4_947_000_000_000, total_bytes=2_000_000_000), timing, H100)
    # median 11 ms; 4.947e12 / 0.011 = 449.7 TFLOP/s; / 989.5 = 45.45 %
    assert perf.achieved_tflops == pytest.approx(449.727, rel=1e-5)
    assert perf.mfu == pytest.approx(0.454500, rel=1e-5)
    # roofline: compute 4.947e12 / 989.5e12 = 5.0 ms; memory 2e9 / 3.35e12 = 0.597 ms -> 5.0 ms, compute
    assert perf.roofline.predicted_s == pytest.approx(4.99949e-3, rel=1e-5)
    assert perf.roofline.bound == "compute"
    # 5.0 ms predicted / 11 ms measured = 45.45 % (equal to MFU when compute bound)
    assert perf.roofline_fraction == pytest.approx(perf.mfu)


def _rows():
    peak = resolve_peak("NVIDIA A100-SXM4-80GB", "bf16", env={})  # 312 TFLOP/s, 2039 GB/s
    return [
        # 312e9 FLOPs in 2 ms = 156 TFLOP/s = 50 % MFU; roofline max(1 ms, 2.039e6 / 2.039e12 = 1 us) = 1 ms
        stage_perf("sam", FakeCost(312_000_000_000, 2_039_000), timing_from_samples([0.002, 0.002, 0.003]), peak),
        # 1.248e9 FLOPs in 0.5 ms = 2.496 TFLOP/s = 0.8 %; roofline max(4 us, 1.0195e9 / 2.039e12 = 0.5 ms)
        stage_perf("decode@4096", FakeCost(1_248_000_000, 1_019_500_000),
                   timing_from_samples([0.0005, 0.0004, 0.0006]), peak),
    ]


def test_markdown_table():
    text = perf_table_markdown(_rows(), title="ocr2 base on A100", context={"target": "ocr2"})
    lines = text.splitlines()
    assert lines[0] == "## ocr2 base on A100"
    assert "- device: NVIDIA A100-SXM4-80GB; dtype: bf16" in lines
    assert any(line.startswith("- dense peak: 312 TFLOP/s; bandwidth: 2039 GB/s") for line in lines)
    assert "- target: ocr2" in lines
    header = lines.index("| " + " | ".join(COLUMNS) + " |")
    # measured / roofline, as the report states it: 2 ms / 1 ms = 2.00x; 0.5 ms / 0.5 ms = 1.00x
    assert lines[header + 2] == "| sam | 312.000 | 2.0 | 2.000 | 0.5000 | 156.00 | 50.0% | 1.000 | compute | 2.00× |"
    assert lines[header + 3] == ("| decode@4096 | 1.248 | 1019.5 | 0.5000 | 0.1000 | 2.50 | 0.8% | 0.5000 | memory "
                                 "| 1.00× |")
    for line in lines[header:]:
        assert line.count("|") == len(COLUMNS) + 1


def test_markdown_needs_rows_with_one_peak():
    with pytest.raises(ValueError):
        perf_table_markdown([])
    rows = _rows()
    other = ResolvedPeak("cpu", "fp32", 1.0, 10.0, "override")
    with pytest.raises(ValueError, match="different peaks"):
        perf_table_markdown([rows[0], stage_perf("x", FakeCost(1, 1), rows[0].timing, other)])


def test_json_and_files(tmp_path):
    data = perf_table_json(_rows(), context={"mode": "base"})
    assert data["context"] == {"mode": "base"}
    assert data["rows"][0]["mfu"] == pytest.approx(0.5)
    assert data["rows"][1]["bound"] == "memory"
    md, js = write_perf_report(_rows(), tmp_path / "reports", name="a100")
    assert md.read_text().count("\n| ") == 4  # header, rule, two rows and js.name == "a100.json"
