"""DeepSeek-OCR (vendor) on CPU with real tensors: full-size vision, LM shrunk (``small=True``).

* SAM, CLIP and projector run on a real Tiny (512) page; the prefill stage, fed the projected
  features scattered by the harness, gives the same logits as the vendor's whole forward (which
  runs vision and scatters itself).
* For crops (the mosaic with newlines), SAM and CLIP are swapped for cheap stand-ins of the same
  output shapes, in the harness calls and in the vendor forward alike, so the vendor's own glue
  code is compared with the harness's on a Gundam Letter page in seconds.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from harness.targets import get_target
from tests.test_targets_dsocr import check_lm

pytestmark = pytest.mark.vendor

LETTER = (1700, 2200)


def assert_logits_close(staged: torch.Tensor, whole: torch.Tensor) -> None:
    """``torch.testing.assert_close(staged, whole, rtol=1e-4, atol=1e-4)``, a block of rows at a time:
    the same check, without whole-logits temporaries (L x 129,280 floats each) in the vendor run."""
    assert staged.shape == whole.shape
    for start in range(0, staged.shape[1], 64):
        torch.testing.assert_close(staged[:, start:start + 64], whole[:, start:start + 64], rtol=1e-4, atol=1e-4)


@pytest.fixture(scope="module")
def vendor_target(model_path):
    return get_target("dsocr", model_path, trust_remote_code=True)


@pytest.fixture(scope="module")
def cpu_built(vendor_target):
    built = vendor_target.build("cpu", small=True)
    yield built
    del built


def test_small_cpu_build(cpu_built):
    assert cpu_built.config.num_hidden_layers == 2 and cpu_built.config.n_routed_experts == 8
    assert set(cpu_built.stage_devices.values()) == {"cpu"}
    assert all(p.device.type == "cpu" for p in cpu_built.model.parameters())


def test_real_vision_on_cpu_and_prefill_equals_the_vendor_forward(vendor_target, cpu_built):
    from harness.inputs.pagegen import render_page
    from harness.inputs.pagesets import grid_specs

    (spec,) = [s for s in grid_specs() if s.page_id == "letter"]
    inputs = vendor_target.prepare(render_page(spec), "tiny", device="cpu")
    (view,) = inputs.layout.views
    with torch.no_grad():
        (sam,) = vendor_target.stage_calls(cpu_built, inputs, "sam")
        assert sam().shape == (1, 1024, 8, 8)
        (clip,) = vendor_target.stage_calls(cpu_built, inputs, "clip")
        assert clip().shape == (1, 65, 1024)
        (projector,) = vendor_target.stage_calls(cpu_built, inputs, "projector")
        features = projector()
        assert features.shape == (1, 64, 1280) and torch.isfinite(features).all()
        (prefill,) = vendor_target.stage_calls(cpu_built, inputs, "prefill")
        assert "scattered" in prefill.note
        staged = prefill().logits
        whole = vendor_target.whole_model_call(cpu_built, inputs)().logits
    assert staged.shape == whole.shape == (1, inputs.seq_len, 129280)
    assert_logits_close(staged, whole)


class StandInSam(nn.Module):
    """(B, 3, S, S) -> (B, 1024, S/64, S/64), like SAM's output grid."""

    def __init__(self) -> None:
        super().__init__()
        self.pool = nn.AvgPool2d(64)
        self.lift = nn.Conv2d(3, 1024, 1)

    def forward(self, x):
        return self.lift(self.pool(x))


class StandInClip(nn.Module):
    """(pixels, SAM features) -> (B, 1 + n, 1024), like CLIP's output with its CLS token."""

    def __init__(self) -> None:
        super().__init__()
        self.mix = nn.Linear(1024, 1024)

    def forward(self, pixels, features):
        tokens = self.mix(features.flatten(2).transpose(1, 2))
        return torch.cat([tokens.mean(1, keepdim=True), tokens], dim=1)


def test_crop_mosaic_glue_equals_the_vendor_forward(vendor_target, cpu_built):
    inner = cpu_built.model.model
    real = inner.sam_model, inner.vision_model
    torch.manual_seed(0)
    inner.sam_model, inner.vision_model = StandInSam().eval(), StandInClip().eval()
    try:
        gen = torch.Generator().manual_seed(1)
        inputs = vendor_target.prepare(LETTER, "gundam", device="cpu")
        # a non-uniform page, so every tile (and its place in the mosaic) is different
        inputs.pixel_views = tuple(torch.rand(p.shape, generator=gen) * 2 - 1 for p in inputs.pixel_views)
        with torch.no_grad():
            (prefill,) = vendor_target.stage_calls(cpu_built, inputs, "prefill")
            staged = prefill().logits
            whole = vendor_target.whole_model_call(cpu_built, inputs)().logits
    finally:
        inner.sam_model, inner.vision_model = real
    assert inputs.layout.image_tokens == 903 and staged.shape == (1, 913, 129280)
    assert_logits_close(staged, whole)


def test_vendor_language_model_on_cpu(vendor_target, cpu_built):
    """The vendor LM on real CPU tensors (seeded random weights, the vendor's own routing): prefill
    over L tokens (the image features of a Tiny view scattered in), finite logits, one decode step."""
    inputs = vendor_target.prepare(LETTER, "tiny", device="cpu")
    check_lm(vendor_target, cpu_built, inputs)


def test_balanced_routing_counts_equal_the_seeded_run(vendor_target, cpu_built):
    """The meta build's fixed, balanced routing against the vendor's own routing on CPU (seeded random
    weights), same small LM: FLOPs, raw figures and op keys equal for prefill and decode; what depends
    on routing (how many experts run) is min(E, T*k) on meta."""
    from harness.measure import count
    from harness.targets.dsocr import balanced_counts

    meta = vendor_target.build("meta", small=True)
    for built in (meta, cpu_built):
        assert built.config.n_routed_experts == 8 and built.config.num_experts_per_tok == 2
    results = {}
    for name, built in (("meta", meta), ("cpu", cpu_built)):
        inputs = vendor_target.prepare(LETTER, "tiny", device=built.device)
        for stage in ("prefill", "decode"):
            results[name, stage] = count("torch", vendor_target.stage_calls(built, inputs, stage),
                                         variant="patched", target="dsocr", stage=stage)
    for stage in ("prefill", "decode"):
        cpu, on_meta = results["cpu", stage], results["meta", stage]
        # on meta, infer()'s zero images stay on the host (the forward tests their sum with .item())
        assert on_meta.devices == (("cpu", "meta") if stage == "prefill" else ("meta",)) and cpu.devices == ("cpu",)
        assert (on_meta.flops, on_meta.raw, on_meta.by_key, on_meta.by_op) == (cpu.flops, cpu.raw, cpu.by_key,
                                                                                cpu.by_op), stage
        assert on_meta.by_key["experts"] > 0
    # prefill: Tiny, L = 1 + 9 + 73 = 83 tokens x top-2 = 166 pairs over 8 experts: every expert runs
    # (one SiLU each, plus the shared expert's and the dense layer's)
    assert balanced_counts(166, 8).tolist() == [21, 21, 21, 21, 21, 21, 20, 20]
    assert results["meta", "prefill"].unknown_ops["aten.silu"] == 1 + 8 + 1
    # decode: one token, top-2: two experts
    assert results["meta", "decode"].unknown_ops["aten.silu"] == 1 + 2 + 1
