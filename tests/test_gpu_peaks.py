"""The dense peak table: lookups on the exact names torch reports, unknown devices, overrides (CPU)."""

from __future__ import annotations

import pytest
import torch

from harness.gpu import peaks
from harness.gpu.peaks import (
    PEAK_BANDWIDTH_ENV,
    PEAK_TFLOPS_ENV,
    PEAKS,
    UnknownDeviceError,
    device_name,
    dtype_key,
    lookup_peak,
    resolve_peak,
)

# (torch.cuda.get_device_name(), dense bf16 TFLOP/s, dense tf32, fp32, GB/s); the derivation is the
# datasheet figure, halved where the datasheet gives the 2:4-sparse one (marked *).
EXPECTED = [
    ("NVIDIA A100-SXM4-40GB", 312.0, 156.0, 19.5, 1555.0),      # A100 datasheet, dense column
    ("NVIDIA A100-SXM4-80GB", 312.0, 156.0, 19.5, 2039.0),
    ("NVIDIA A100-PCIE-40GB", 312.0, 156.0, 19.5, 1555.0),
    ("NVIDIA A100 80GB PCIe", 312.0, 156.0, 19.5, 1935.0),
    ("NVIDIA H100 80GB HBM3", 989.5, 494.5, 67.0, 3350.0),      # 1979* / 2, 989* / 2
    ("NVIDIA H100 PCIe", 756.5, 378.0, 51.0, 2000.0),           # 1513* / 2, 756* / 2
    ("NVIDIA H100 NVL", 835.5, 417.5, 60.0, 3900.0),            # 1671* / 2, 835* / 2
    ("NVIDIA H200", 989.5, 494.5, 67.0, 4800.0),                # 1979* / 2, 989* / 2
    ("NVIDIA H200 NVL", 835.5, 417.5, 60.0, 4800.0),            # 1671* / 2, 835* / 2
    ("NVIDIA L40S", 362.05, 183.0, 91.6, 864.0),                # 733* sparse; 362.05 dense as printed
    ("NVIDIA GeForce RTX 4090", 165.2, 82.6, 82.6, 1008.0),     # FP32-accumulate 330.4* / 2
    ("NVIDIA GeForce RTX 5090", 209.5, 104.75, 104.8, 1792.0),  # FP32-accumulate 419* / 2, TF32 209.5* / 2
]


def test_lookup_exact_torch_names():
    """Every table entry, looked up by the name torch reports (one fact: the table; a wrong entry
    is named in the failure)."""
    for name, bf16, tf32, fp32, bandwidth in EXPECTED:
        peak = lookup_peak(name)
        got = (peak.tflops["bf16"], peak.tflops["fp16"], peak.tflops["tf32"], peak.tflops["fp32"],
               peak.bandwidth_gbps)
        # fp16: the same tensor-core rate as bf16 on every SKU here
        assert got == pytest.approx((bf16, bf16, tf32, fp32, bandwidth)), name
        assert peak.source, name


def test_every_table_entry_is_checked_above():
    assert sorted(peaks.known_device_names()) == sorted(e[0] for e in EXPECTED)


def test_dense_rates_are_consistent():
    # Guards against pasting a sparse headline into one column: on every SKU here the dense bf16
    # tensor rate is twice the dense tf32 rate (L40S: 362.05 vs 2 x 183 = 366, 1.1% apart as printed).
    for peak in PEAKS:
        assert peak.tflops["bf16"] == pytest.approx(2 * peak.tflops["tf32"], rel=0.02), peak.label
        assert peak.tflops["bf16"] >= peak.tflops["fp32"], peak.label


def test_lookup_ignores_case_and_spacing():
    assert lookup_peak("  nvidia   H100 80GB hbm3 ").label == lookup_peak("NVIDIA H100 80GB HBM3").label


def test_unknown_device_names_it_and_the_override():
    with pytest.raises(UnknownDeviceError) as info:
        lookup_peak("NVIDIA H100 80GB HBM3e")
    message = str(info.value)
    assert "'NVIDIA H100 80GB HBM3e'" in message
    assert PEAK_TFLOPS_ENV in message and PEAK_BANDWIDTH_ENV in message
    assert "--peak-tflops" in message
    assert "Did you mean: 'NVIDIA H100 80GB HBM3'" in message


def test_no_substring_guessing():
    # "A100" alone is not a name torch reports; matching it would silently pick one SKU's bandwidth.
    with pytest.raises(UnknownDeviceError):
        lookup_peak("A100")


def test_resolve_from_table():
    peak = resolve_peak("NVIDIA H100 80GB HBM3", torch.bfloat16, env={})
    assert (peak.tflops, peak.bandwidth_gbps, peak.dtype) == (989.5, 3350.0, "bf16")
    assert "table H100 SXM5 80GB bf16" in peak.source
    # ridge: 989.5e12 / 3350e9 = 295.37 FLOP/B
    assert peak.ridge_intensity == pytest.approx(295.373, rel=1e-5)


def test_resolve_unknown_without_override_is_an_error():
    with pytest.raises(UnknownDeviceError, match=rf"'Tesla T4'.*\n.*{PEAK_TFLOPS_ENV}"):
        resolve_peak("Tesla T4", "fp16", env={})
    with pytest.raises(UnknownDeviceError, match=f"missing for this run: {PEAK_BANDWIDTH_ENV}"):
        resolve_peak("Tesla T4", "fp16", env={PEAK_TFLOPS_ENV: "65"})


def test_resolve_unknown_with_env_override():
    peak = resolve_peak("Tesla T4", "fp16", env={PEAK_TFLOPS_ENV: "65", PEAK_BANDWIDTH_ENV: "320"})
    assert (peak.tflops, peak.bandwidth_gbps) == (65.0, 320.0)
    assert peak.source == f"{PEAK_TFLOPS_ENV}=65; {PEAK_BANDWIDTH_ENV}=320"


def test_override_beats_table_and_argument_beats_env():
    env = {PEAK_TFLOPS_ENV: "500"}
    assert resolve_peak("NVIDIA H200", "bf16", env=env).tflops == 500.0
    assert resolve_peak("NVIDIA H200", "bf16", env=env).bandwidth_gbps == 4800.0  # table, not overridden
    chosen = resolve_peak("NVIDIA H200", "bf16", peak_tflops=123.0, env=env)
    assert chosen.tflops == 123.0 and chosen.source.startswith("--peak-tflops=123")


def test_override_reads_os_environ(monkeypatch):
    monkeypatch.setenv(PEAK_TFLOPS_ENV, "1.5")
    monkeypatch.setenv(PEAK_BANDWIDTH_ENV, "50")
    assert resolve_peak("cpu", "fp32").tflops == 1.5


@pytest.mark.parametrize("bad", ["abc", "0", "-3", "inf", "nan"])
def test_bad_override_is_an_error(bad):
    with pytest.raises(ValueError, match=PEAK_TFLOPS_ENV):
        resolve_peak("NVIDIA H200", "bf16", env={PEAK_TFLOPS_ENV: bad})


def test_dtype_keys():
    assert dtype_key(torch.bfloat16) == "bf16"
    assert dtype_key(torch.float16) == "fp16"
    assert dtype_key(torch.float32, float32_matmul_precision="highest") == "fp32"
    assert dtype_key(torch.float32, float32_matmul_precision="high") == "tf32"
    with pytest.raises(ValueError, match="float64"):
        dtype_key(torch.float64)
    with pytest.raises(ValueError, match="dtype key"):
        resolve_peak("NVIDIA H200", "int8", env={})


def test_device_name_of_non_cuda_devices():
    assert device_name("cpu") == "cpu"
    assert device_name("meta") == "meta"
    with pytest.raises(UnknownDeviceError, match="'cpu'"):
        resolve_peak(device_name("cpu"), "fp32", env={})


def test_docs_table_is_the_table():
    from pathlib import Path

    docs = (Path(__file__).resolve().parents[1] / "docs" / "gpu.md").read_text(encoding="utf-8")
    assert peaks.peak_table_markdown() in docs, (
        "docs/gpu.md's peak table is stale: paste harness.gpu.peaks.peak_table_markdown() into it")
