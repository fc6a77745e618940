"""The profiling glue on CPU: expanded-parameter copies, analytic config of a build, pages, the CLI."""

from __future__ import annotations

import argparse

import pytest
import torch
from torch import nn

from harness.gpu.__main__ import main
from harness.gpu.profile_cli import _ints
from harness.gpu.peaks import PEAK_BANDWIDTH_ENV, PEAK_TFLOPS_ENV, ResolvedPeak
from harness.gpu.profile import analytic_config, find_page, report_name, unshare_expanded_parameters


def test_unshare_expanded_parameters():
    module = nn.Module()
    base = torch.randn(1, 3, 4)
    module.experts = nn.Parameter(base.expand(8, 3, 4), requires_grad=False)   # one tensor seen 8 times
    module.plain = nn.Parameter(torch.randn(3, 4), requires_grad=False)
    module.scalar = nn.Parameter(torch.zeros(()), requires_grad=False)
    assert module.experts.stride()[0] == 0
    assert unshare_expanded_parameters(module) == 1
    assert module.experts.stride() == (12, 4, 1)                                 # own storage: 8 x 3 x 4
    assert module.experts.untyped_storage().nbytes() == 8 * 3 * 4 * 4
    assert torch.equal(module.experts[5], base[0])
    assert unshare_expanded_parameters(module) == 0


def test_analytic_config_of_a_small_build():
    from harness.targets import get_target
    from harness.targets.ocr2 import SMALL_OVERRIDES

    built = get_target("ocr2").build("meta", torch.float32, small=True)
    dims = analytic_config(built)
    text = SMALL_OVERRIDES["text_config"]
    assert (dims.lm.hidden, dims.lm.layers, dims.lm.n_routed) == (
        text["hidden_size"], text["num_hidden_layers"], text["n_routed_experts"])
    assert dims.sam.dim == SMALL_OVERRIDES["sam_config"]["hidden_size"]
    assert dims.encoder.kv_heads == SMALL_OVERRIDES["encoder_config"]["num_key_value_heads"]
    assert analytic_config(built) == dims   # same content, same cached file


def test_find_page():
    assert find_page("letter").page_id == "letter"
    with pytest.raises(ValueError, match="unknown page 'nope'.*letter"):
        find_page("nope")


def test_report_name():
    peak = ResolvedPeak("NVIDIA H100 80GB HBM3", "bf16", 989.5, 3350.0, "table")
    assert report_name({"target": "ocr2", "mode": "base", "page": "letter"}, peak) == \
        "gpu-perf-nvidia-h100-80gb-hbm3-ocr2-base-letter-bf16"


def test_report_name():
    cpu = ResolvedPeak("cpu (AMD EPYC)", "fp32", 0.1, 10.0, "measured")
    assert report_name({"target": "ocr2", "mode": "base", "page": "letter", "device": "cpu"}, cpu) == \
        "cpu-perf-cpu-amd-epyc-ocr2-base-letter-fp32"


def test_cli_on_cpu_measures_its_peak_and_states_the_report_bound_and_ratio(monkeypatch, tmp_path, capsys):
    """``harness profile --device cpu`` works as ``report --measure --device cpu``: the peak measured
    here, the roofline over the report's bytes (fused by default), measured / roofline in x."""
    import json

    from harness.analytic import stage_costs
    from harness.gpu.roofline import PeakUsed, stage_bytes
    from harness.targets import get_target

    monkeypatch.delenv(PEAK_TFLOPS_ENV, raising=False)
    monkeypatch.delenv(PEAK_BANDWIDTH_ENV, raising=False)
    assert main(["--device", "cpu", "--small", "--dtype", "fp32", "--stage", "sam", "--warmup", "0",
                 "--repeats", "1", "--out", str(tmp_path)]) == 0
    md, = tmp_path.glob("cpu-perf-*-ocr2-base-letter-fp32.md")
    row, = json.loads(md.with_suffix(".json").read_text())["rows"]
    peak = row["peak"]
    assert peak["source"].startswith("measured by harness peak on ") and peak["tflops"] > 0
    assert md.read_text().splitlines()[-1].endswith(f"| {row['bound']} | "
                                                    f"{row['timing']['median_s'] / row['roofline_predicted_s']:.2f}× |")

    target = get_target("ocr2")
    built = target.build("meta", torch.float32, small=True)
    inputs = target.prepare(find_page("letter"), "base", device="meta", dtype=torch.float32)
    cost = stage_costs("ocr2", inputs.layout, text_tokens=inputs.prompt_tokens, config=analytic_config(built),
                       dtype_bytes=4, attn_implementation=built.attn_implementation)["sam"]
    assert (row["matmul_flops"], row["bytes"]) == (cost.matmul_flops, stage_bytes(cost, "fused"))
    report_peak = PeakUsed(peak["device_name"], "fp32", peak["tflops"], peak["bandwidth_gbps"], peak["source"])
    assert report_peak.roof(cost.matmul_flops, stage_bytes(cost, "fused")).bound == row["bound"]


def test_cli_decode_contexts():
    assert _ints("512,1024") == (512, 1024)
    for bad in ("", "a", "0,5"):
        with pytest.raises(argparse.ArgumentTypeError):
            _ints(bad)
