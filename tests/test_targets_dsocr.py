"""DeepSeek-OCR (vendor) target.

Without the vendor: ``prepare`` (it needs no vendor code) and every refusal message. With the
vendor (``-m vendor --model-path DIR --trust-remote-code``, vendor environment): the full-size
model builds with the documented parameter counts, the vision stages run on meta and the LM
stages on CPU, every shape matches the layout (Gundam and Base on a US Letter page), and the
pre-processing equals the vendor's own ``dynamic_preprocess``.
"""

from __future__ import annotations

import pytest
import torch

from harness.targets import StageMapError, get_target, validate_stage_map
from harness.targets.base import TargetError
from harness.targets.dsocr import IMAGE_TOKEN_ID
from harness.targets.vendor import REMOTE_CODE_FILES, VENDOR_ENV_VAR, VendorEnvironmentError
from harness.inputs.workload import DEFAULT_PROMPT_TOKENS, prefill_length

LETTER = (1700, 2200)
#: the padding colour 127 after ToTensor and Normalize(0.5, 0.5), in float32 as the pipeline computes it
MEAN = float((torch.tensor(127.0) / 255 - 0.5) / 0.5)


@pytest.fixture(scope="module")
def target():
    return get_target("dsocr")


# prepare: no vendor code needed ---------------------------------------------------------------

def test_gundam_letter_inputs_on_meta(target):
    inputs = target.prepare(LETTER, "gundam")
    layout = inputs.layout
    assert layout.crop_grid == (2, 3) and layout.n_crops == 6
    assert [(v.role, v.batch, v.size, v.tokens_per_view) for v in layout.views] == [
        ("crops", 6, 640, 100), ("global", 1, 1024, 256)]
    # 16 rows of (16 + 1) + separator, then (10 * 3) rows of (10 * 2 + 1)
    assert layout.image_tokens == 16 * 17 + 1 + 30 * 21 == 903
    assert inputs.seq_len == prefill_length(layout, DEFAULT_PROMPT_TOKENS) == 1 + 9 + 903
    assert inputs.input_ids[0, 0] == 0 and inputs.image_token_count == 903
    assert torch.equal(inputs.image_mask[0, 1:904], torch.ones(903, dtype=torch.bool))
    assert (inputs.input_ids[inputs.image_mask] == IMAGE_TOKEN_ID).all()
    assert [tuple(p.shape) for p in inputs.pixel_views] == [(6, 3, 640, 640), (1, 3, 1024, 1024)]
    assert all(p.device.type == "meta" for p in inputs.pixel_views)
    assert inputs.model_kwargs["images_spatial_crop"].tolist() == [[2, 3]]


def test_base_letter_inputs_on_meta(target):
    inputs = target.prepare(LETTER, "base", prompt_tokens=20)
    assert [(v.role, v.batch, v.size) for v in inputs.layout.views] == [("global", 1, 1024)]
    assert inputs.layout.image_tokens == 16 * 17 + 1 == 273
    assert inputs.seq_len == 1 + 20 + 273
    assert inputs.model_kwargs["images_spatial_crop"].tolist() == [[1, 1]]


def test_gundam_pixels_as_infer_builds_them(target):
    inputs = target.prepare(LETTER, "gundam", device="cpu")   # a white Letter page
    crops, global_view = inputs.pixel_views
    assert inputs.pixel_source == "blank"
    assert crops.shape == (6, 3, 640, 640) and torch.equal(crops, torch.ones_like(crops))
    # ImageOps.pad to 1024: the page becomes 791 x 1024 (round(1700 * 1024 / 2200)), centred
    row = global_view[0, 0, 512]
    assert torch.equal(row[:116], torch.full((116,), MEAN)) and torch.equal(row[-117:], torch.full((117,), MEAN))
    assert torch.equal(row[117:-118], torch.ones(1024 - 235))


def test_tiny_view_is_resized_not_padded(target):
    # image_size 512 <= 640: infer() resizes the page square (aspect distorted), no mean colour
    inputs = target.prepare(LETTER, "tiny", device="cpu")
    (global_view,) = inputs.pixel_views
    assert global_view.shape == (1, 3, 512, 512) and torch.equal(global_view, torch.ones_like(global_view))


# Refusals: clear messages, nothing executed ------------------------------------------------------

def _fake_vendor_dir(path):
    (path / "config.json").write_text("{}")
    for name in REMOTE_CODE_FILES:
        (path / name).write_text("raise RuntimeError('must never be imported by this test')\n")
    return path


def test_missing_model_path_says_how_to_give_one(monkeypatch):
    monkeypatch.delenv(VENDOR_ENV_VAR, raising=False)
    with pytest.raises(TargetError, match=f"pass model_path=DIR .*--model-path DIR.* or set {VENDOR_ENV_VAR}"):
        get_target("dsocr", trust_remote_code=True).build("meta")


def test_a_hub_id_is_refused():
    with pytest.raises(TargetError, match="not a local directory. The harness never downloads"):
        get_target("dsocr", "deepseek-ai/DeepSeek-OCR", trust_remote_code=True).build("meta")


def test_an_incomplete_directory_names_what_is_missing(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(TargetError, match="lacks modeling_deepseekocr.py"):
        get_target("dsocr", tmp_path, trust_remote_code=True).build("meta")


def test_remote_code_needs_explicit_consent(tmp_path):
    path = _fake_vendor_dir(tmp_path)
    with pytest.raises(TargetError, match=r"executes the vendor's Python files.*trust_remote_code=True.*--trust-remote-code"):
        get_target("dsocr", path).build("meta")


@pytest.mark.skipif(not __import__("transformers").__version__.startswith("5."), reason="checks the 5.x refusal")
def test_transformers_5_says_which_version_and_how_to_get_it(tmp_path):
    path = _fake_vendor_dir(tmp_path)
    with pytest.raises(VendorEnvironmentError) as info:
        get_target("dsocr", path, trust_remote_code=True).build("meta")
    message = str(info.value)
    assert "transformers==4.46.3" in message and "make vendor-env" in message
    assert ".venv-vendor/bin/python" in message


def test_attention_without_a_vendor_path_is_refused():
    with pytest.raises(TargetError, match="no SDPA path"):
        get_target("dsocr", trust_remote_code=True).build("meta", attn_implementation="sdpa")


# Vendor ------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def vendor_target(model_path):
    return get_target("dsocr", model_path, trust_remote_code=True)


@pytest.fixture(scope="module")
def vendor_meta(vendor_target):
    return vendor_target.build("meta")


@pytest.mark.vendor
def test_vendor_builds_with_the_documented_parameter_counts(vendor_meta):
    built = vendor_meta
    assert built.parameter_count == 3_336_106_240
    assert built.attn_implementation == "eager" and built.config._attn_implementation == "eager"
    assert built.stage_devices == {"sam": "meta", "clip": "meta", "projector": "meta", "prefill": "meta",
                                   "decode": "meta"}
    assert built.stage_parameters("sam") == 95_569_152
    assert built.stage_parameters("clip") == 303_177_728
    assert built.stage_parameters("projector") == 2_622_720
    assert built.stage_parameters("prefill") == 165_478_400 + 2_603_776_000 + 1_280 + 165_478_400


@pytest.mark.vendor
def test_vendor_code_ran_offline_with_private_stand_ins(vendor_meta):
    import importlib.util
    import os
    import sys
    import tempfile

    from transformers.utils import import_utils

    assert os.environ["HF_HUB_OFFLINE"] == "1" and os.environ["TRANSFORMERS_OFFLINE"] == "1"
    if importlib.util.find_spec("torchvision") is not None and "harness.stub" in getattr(
            sys.modules.get("torchvision"), "__version__", ""):
        stub = sys.modules["torchvision"]
        assert stub.__file__.startswith(tempfile.gettempdir())       # private temp dir, not the repo
        assert not import_utils.is_torchvision_available()           # transformers never saw it
        with pytest.raises(RuntimeError, match="stand-in"):
            stub.transforms.ToTensor()(None)


@pytest.mark.vendor
def test_vendor_stage_map_error_names_the_path(vendor_meta):
    with pytest.raises(StageMapError) as info:
        validate_stage_map(vendor_meta.model, {"clip": ("model.clip_model",)})
    message = str(info.value)
    assert "'model.clip_model'" in message and "Top-level modules: model (DeepseekOCRModel), lm_head (Linear)" in message
    assert "vision_model" in message


def check_vision(target, built, inputs):
    """SAM, CLIP, projector calls against the layout; returns the shapes seen per stage."""
    layout = inputs.layout
    seen = {}
    with torch.no_grad():
        calls = target.stage_calls(built, inputs, "sam")
        assert [c.module_path for c in calls] == ["model.sam_model"] * len(layout.views)
        for call, view in zip(calls, layout.views):
            side = int(view.tokens_per_view ** 0.5)
            assert call.args[0].shape == (view.batch, 3, view.size, view.size)
            assert call().shape == (view.batch, 1024, side, side)
        seen["sam"] = [tuple(c.args[0].shape) for c in calls]
        calls = target.stage_calls(built, inputs, "clip")
        for call, view in zip(calls, layout.views):
            assert call.args[1].shape[0] == view.batch
            assert call().shape == (view.batch, view.tokens_per_view + 1, 1024)   # + CLS
        seen["clip"] = [tuple(c.args[1].shape) for c in calls]
        calls = target.stage_calls(built, inputs, "projector")
        for call, view in zip(calls, layout.views):
            assert call.args[0].shape == (view.batch, view.tokens_per_view, 2048)  # [CLIP; SAM]
            assert call().shape == (view.batch, view.tokens_per_view, 1280)
        seen["projector"] = [tuple(c.args[0].shape) for c in calls]
    return seen


def check_lm(target, built, inputs):
    L = prefill_length(inputs.layout, inputs.prompt_tokens)
    with torch.no_grad():
        (call,) = target.stage_calls(built, inputs, "prefill")
        assert call.device == built.device and call.kwargs["input_ids"].shape == (1, L)
        assert call.kwargs["inputs_embeds"].shape == (1, L, 1280)
        logits = call().logits
        assert logits.shape == (1, L, 129280)   # the vendor forward has no logits_to_keep
        assert torch.isfinite(logits).all()
        (call,) = target.stage_calls(built, inputs, "decode")
        assert call.kwargs["past_key_values"].get_seq_length() == L
        assert call().logits.shape == (1, 1, 129280)
        assert call.kwargs["past_key_values"].get_seq_length() == L


@pytest.mark.vendor
@pytest.mark.parametrize("mode", ["gundam", "base", "tiny", "small", "large", "gundam6"])
def test_vendor_vision_stages_on_meta(vendor_target, vendor_meta, mode):
    check_vision(vendor_target, vendor_meta, vendor_target.prepare(LETTER, mode))


@pytest.mark.vendor
def test_vendor_whole_model_needs_a_real_device(vendor_target, vendor_meta):
    with pytest.raises(TargetError, match="cannot run vision on meta"):
        vendor_target.whole_model_call(vendor_meta, vendor_target.prepare(LETTER, "base"))


@pytest.mark.vendor
def test_preprocessing_equals_the_vendor_dynamic_preprocess(vendor_target, vendor_meta):
    import sys

    from harness.inputs.pagegen import render_page
    from harness.inputs.pagesets import grid_specs
    from harness.targets.pixels import normalize, to_tensor

    vendor_code = sys.modules[type(vendor_meta.model).__module__]
    (spec,) = [s for s in grid_specs() if s.page_id == "letter"]
    image = render_page(spec).convert("RGB")
    crops_list, ratio = vendor_code.dynamic_preprocess(image)
    inputs = vendor_target.prepare(image, "gundam", device="cpu")
    assert tuple(ratio) == inputs.layout.crop_grid
    ours = inputs.pixel_views[0]
    theirs = torch.stack([normalize(to_tensor(c)) for c in crops_list])
    assert torch.equal(ours, theirs)
