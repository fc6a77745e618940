"""OCR-2 target: every stage at full size on meta for every OCR-2 mode, the small configuration
on CPU with real pixels, shapes checked against the workload layout, stage-map errors, weights."""

from __future__ import annotations

import pytest
import torch

from harness.run.callmemo import memoised_forward
from harness.targets import StageMapError, get_target, validate_stage_map
from harness.targets.base import TargetError
from harness.inputs.workload import DEFAULT_PROMPT_TOKENS, MODES, prefill_length

FULL_PARAMETERS = 3_389_119_360
#: (mode, page size): every OCR-2 mode on a US Letter page (1700x2200 at 200 dpi), plus the
#: Gundam tiler on a landscape slide and on a page small enough to need no crops.
CASES = [(mode, (1700, 2200)) for mode in MODES["ocr2"]] + [("gundam", (2000, 1500)), ("gundam", (700, 500))]


@pytest.fixture(scope="module")
def target():
    return get_target("ocr2")


@pytest.fixture(scope="module")
def meta_built(engine):
    """The suite engine's full-size build on meta (the one its count facts measure)."""
    return engine.built_model("ocr2")


@pytest.fixture
def memo(engine):
    """The engine's call memo: on meta, a view's stage outputs are computed once per session
    (harness.run.callmemo), whichever test or count fact asks first."""
    from harness.run.callmemo import call_memo

    with call_memo(engine.session_memo()):
        yield


def _last_hidden(output):
    return output.last_hidden_state if hasattr(output, "last_hidden_state") else output


def _run(call):
    """A stage call's output (sam, encoder, projector: once per module and signature inside the
    engine's call memo on meta, as their upstream outputs are)."""
    return memoised_forward(call.module, *call.args) if not call.kwargs else call()


def check_stages(target, built, inputs, *, decode_context=None):
    """Run every stage and assert each call's shapes against the layout; return the outputs."""
    layout = inputs.layout
    enc_hidden = built.config.vision_config.encoder_config.hidden_size
    text_hidden = built.config.text_config.hidden_size
    vocab = built.config.text_config.vocab_size
    L = prefill_length(layout, inputs.prompt_tokens)
    assert inputs.seq_len == L and inputs.image_token_count == layout.image_tokens
    outputs = {}
    with torch.no_grad():
        calls = target.stage_calls(built, inputs, "sam")
        assert [c.module_path for c in calls] == ["model.vision_tower.sam_encoder"] * len(layout.views)
        for call, view in zip(calls, layout.views):
            assert call.args[0].shape == (view.batch, 3, view.size, view.size)
            out = _last_hidden(_run(call))
            assert out.shape[0] == view.batch and out.shape[2] * out.shape[3] == view.tokens_per_view
            assert out.shape[1] == enc_hidden  # SAM's last conv emits the encoder width
        calls = target.stage_calls(built, inputs, "encoder")
        for call, view in zip(calls, layout.views):
            combined, n_patches = call.args
            # [SAM tokens; learned queries]: as many queries as patches for 768 and 1024 views
            assert n_patches == view.tokens_per_view
            assert combined.shape == (view.batch, 2 * view.tokens_per_view, enc_hidden)
            assert _last_hidden(_run(call)).shape == combined.shape
        calls = target.stage_calls(built, inputs, "projector")
        rows = 0
        for call, view in zip(calls, layout.views):
            assert call.args[0].shape == (view.batch, view.tokens_per_view, enc_hidden)
            out = _run(call)
            assert out.shape == (view.batch, view.tokens_per_view, text_hidden)
            rows += view.batch * view.tokens_per_view
        assert rows + 1 == layout.image_tokens   # + view separator
        (call,) = target.stage_calls(built, inputs, "prefill")
        assert call.module_path == "" and call.kwargs["logits_to_keep"] == 1
        assert call.kwargs["inputs_embeds"].shape == (1, L, text_hidden)
        outputs["prefill"] = call().logits
        assert outputs["prefill"].shape == (1, 1, vocab)
        (call,) = target.stage_calls(built, inputs, "decode", decode_context=decode_context)
        context = decode_context or L
        assert call.kwargs["input_ids"].shape == (1, 1)
        assert call.kwargs["past_key_values"].get_seq_length() == context
        outputs["decode"] = call().logits
        outputs["decode_again"] = call().logits   # the cache does not grow between calls
        assert call.kwargs["past_key_values"].get_seq_length() == context
        assert outputs["decode"].shape == (1, 1, vocab)
    return outputs


# Full size on meta -----------------------------------------------------------------------------

def test_full_size_build(meta_built):
    assert meta_built.parameter_count == FULL_PARAMETERS
    assert (meta_built.attn_implementation, meta_built.experts_implementation) == ("sdpa", "batched_mm")
    assert meta_built.config.text_config._experts_implementation == "batched_mm"
    assert set(meta_built.stage_map) == set(get_target("ocr2").stages)
    assert meta_built.stage_parameters("projector") == 896 * 1280 + 1280
    assert meta_built.stage_parameters("encoder") == 357_898_112 + 129_024 + 229_376


@pytest.mark.parametrize("mode,size", CASES, ids=[f"{m}-{w}x{h}" for m, (w, h) in CASES])
def test_every_stage_on_meta_at_full_size(target, meta_built, memo, mode, size):
    inputs = target.prepare(size, mode)
    assert inputs.pixel_source == "meta" and all(p.device.type == "meta" for p in inputs.pixel_views)
    check_stages(target, meta_built, inputs)


def test_gundam_letter_layout_numbers(target):
    inputs = target.prepare((1700, 2200), "gundam")
    layout = inputs.layout
    # Letter is 0.77 wide: 2 cols x 3 rows of 768 tiles + the 1024 global view
    assert layout.crop_grid == (2, 3) and layout.n_crops == 6
    assert [(v.role, v.batch, v.size, v.tokens_per_view) for v in layout.views] == [
        ("global", 1, 1024, 256), ("crops", 6, 768, 144)]
    assert layout.image_tokens == 256 + 6 * 144 + 1 == 1121
    assert inputs.seq_len == 1 + DEFAULT_PROMPT_TOKENS + 1121
    assert inputs.input_ids[0, 0] == 0 and inputs.model_kwargs == {"num_local_patches": [6]}


def test_whole_model_forward_on_meta(target, meta_built):
    inputs = target.prepare((1700, 2200), "gundam")
    call = target.whole_model_call(meta_built, inputs)
    assert call.kwargs["pixel_values"].shape == (1, 3, 1024, 1024)
    assert call.kwargs["pixel_values_local"].shape == (6, 3, 768, 768)
    with torch.no_grad():
        assert call().logits.shape == (1, 1, 129280)


def test_decode_context_is_configurable(target, meta_built):
    inputs = target.prepare((1700, 2200), "base")
    (call,) = target.stage_calls(meta_built, inputs, "decode", decode_context=4096)
    assert call.kwargs["past_key_values"].get_seq_length() == 4096
    with pytest.raises(ValueError, match="decode_context"):
        target.stage_calls(meta_built, inputs, "decode", decode_context=0)


def test_eager_experts_are_refused_on_meta(target):
    with pytest.raises(TargetError, match="data-dependent"):
        target.build("meta", experts_implementation="eager")
    with pytest.raises(ValueError, match="attn_implementation"):
        target.build("meta", attn_implementation="flash")


def test_unknown_stage_and_mode(target, meta_built):
    inputs = target.prepare((1700, 2200), "small")
    with pytest.raises(ValueError, match=r"Unknown stage 'clip' for target 'ocr2'.*Available: sam, encoder"):
        target.stage_calls(meta_built, inputs, "clip")
    with pytest.raises(ValueError, match="Unknown ocr2 mode 'tiny'"):
        target.prepare((1700, 2200), "tiny")


# Stage map ---------------------------------------------------------------------------------------

def test_stage_map_rejects_a_wrong_path_with_a_useful_message(meta_built):
    with pytest.raises(StageMapError) as info:
        validate_stage_map(meta_built.model, {"sam": ("model.vision_tower.sam_model",)})
    message = str(info.value)
    assert "'model.vision_tower.sam_model'" in message and "stage 'sam'" in message
    assert "Top-level modules: model (DeepseekOcr2Model), lm_head (Linear)" in message
    assert "sam_encoder" in message   # the children of the deepest existing prefix


def test_build_validates_the_stage_map(monkeypatch):
    from harness.targets.ocr2 import Ocr2Target

    wrong = dict(Ocr2Target().stage_map(), projector=("model.projector",))
    monkeypatch.setattr(Ocr2Target, "stage_map", lambda self: wrong)
    with pytest.raises(StageMapError, match=r"'model.projector'.*Did you mean 'model.multi_modal_projector'"):
        Ocr2Target().build("meta", small=True)


# Small configuration on CPU -----------------------------------------------------------------------

@pytest.fixture(scope="module")
def cpu_small(target):
    return target.build("cpu", small=True)


@pytest.fixture(scope="module")
def letter_path():
    from harness.inputs import pages

    (letter,) = [p for p in pages.builtin_pages("default") if p.page_id == "letter"]
    return pages.ensure_page_image(letter)


def test_small_configuration_keeps_the_structure(cpu_small):
    config = cpu_small.config
    sam = config.vision_config.sam_config
    assert sam.window_size == 14 and list(sam.global_attn_indexes) == [1] and sam.use_rel_pos
    assert config.text_config.mlp_layer_types == ["dense", "sparse"]
    assert cpu_small.experts_implementation == "eager" and cpu_small.weights == "random(seed=0)"
    assert all(p.device.type == "cpu" for p in cpu_small.model.parameters())


def test_every_stage_on_cpu_small_with_a_real_page(target, cpu_small, letter_path):
    inputs = target.prepare(letter_path, "gundam", device="cpu")
    assert inputs.pixel_source == "image" and inputs.layout.n_crops == 6
    global_view, crops = inputs.pixel_views
    assert global_view.shape == (1, 3, 1024, 1024) and crops.shape == (6, 3, 768, 768)
    # processor padding: the mean colour (127) normalised with mean/std 0.5
    assert torch.allclose(global_view[0, :, 0, 0], torch.full((3,), 127 / 255 * 2 - 1))
    outputs = check_stages(target, cpu_small, inputs)
    assert torch.isfinite(outputs["prefill"]).all()
    assert torch.equal(outputs["decode"], outputs["decode_again"])
    # the whole forward scatters the same features and agrees with the prefill stage
    with torch.no_grad():
        whole = target.whole_model_call(cpu_small, inputs)().logits
    torch.testing.assert_close(whole, outputs["prefill"], rtol=1e-4, atol=1e-4)


def test_real_pixels_follow_exif_orientation(target, tmp_path):
    from PIL import Image

    path = tmp_path / "rotated.jpg"
    image = Image.new("RGB", (900, 600), (200, 10, 10))
    exif = image.getexif()
    exif[0x0112] = 6
    image.save(path, exif=exif.tobytes())
    inputs = target.prepare(path, "gundam", device="cpu")
    assert (inputs.layout.width, inputs.layout.height) == (600, 900)
    # 600x900 (after the rotation) has aspect 2/3 exactly: 2 cols x 3 rows, as the processor cuts
    assert inputs.layout.crop_grid == (2, 3)
    assert inputs.pixel_views[1].shape == (6, 3, 768, 768)


def test_checkpoint_weights_roundtrip(target, cpu_small, tmp_path):
    from safetensors.torch import save_file

    state = {k: v.contiguous() for k, v in cpu_small.model.state_dict().items()
             if k in dict(cpu_small.model.named_parameters())}
    save_file(state, str(tmp_path / "model.safetensors"))
    loaded = target.build("cpu", small=True, weights=tmp_path)
    assert loaded.weights == str(tmp_path)
    for name, param in loaded.model.named_parameters():
        assert torch.equal(param, state[name]), name
    del state["lm_head.weight"]
    save_file(state, str(tmp_path / "model.safetensors"))
    with pytest.raises(TargetError, match="checkpoint lacks 1 parameters.*lm_head.weight"):
        target.build("cpu", small=True, weights=tmp_path)


def test_meta_build_changes_nothing_global(target, meta_built):
    """The meta placeholder-count workaround lives on the model instance, not in transformers."""
    from transformers.models.deepseek_ocr2 import modeling_deepseek_ocr2 as mod

    assert not getattr(mod.torch_compilable_check, "_harness_meta_safe", False)
    assert "get_placeholder_mask" in vars(meta_built.model.model)
    assert vars(mod.DeepseekOcr2Model)["get_placeholder_mask"].__module__ == mod.__name__
