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


def test_cli_unknown_device_fails_before_building(monkeypatch, capsys):
    monkeypatch.delenv(PEAK_TFLOPS_ENV, raising=False)
    monkeypatch.delenv(PEAK_BANDWIDTH_ENV, raising=False)
    assert main(["--device", "cpu", "--small", "--dtype", "fp32"]) == 2
    err = capsys.readouterr().err
    assert "Unknown device 'cpu'" in err and PEAK_TFLOPS_ENV in err


def test_cli_decode_contexts():
    assert _ints("512,1024") == (512, 1024)
    for bad in ("", "a", "0,5"):
        with pytest.raises(argparse.ArgumentTypeError):
            _ints(bad)
