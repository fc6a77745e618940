"""The target machinery on toy modules: registry, stage-map validation, materialisation, KV cache,
pixel helpers. No DeepSeek model is built here."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from harness.targets import StageMapError, available_targets, get_target, register_target, validate_stage_map
from harness.targets.base import (
    FILLER_TOKEN_BASE,
    StageCall,
    empty_parameters,
    materialize_parameters,
    prompt_token_ids,
)
from harness.targets.kv import frozen_kv_cache
from harness.targets.pixels import MEAN_COLOUR, normalize, resolve_page, to_tensor


class Toy(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(4, 8), nn.LayerNorm(8))
        self.experts = nn.ModuleList(nn.Linear(8, 8, bias=False) for _ in range(3))
        self.act = nn.GELU()
        self.register_buffer("scale", torch.arange(3.0))


# Registry ---------------------------------------------------------------------------------------

def test_registry_knows_both_targets_and_suggests_on_typos():
    assert set(available_targets()) >= {"dsocr", "ocr2"}
    with pytest.raises(ValueError, match=r"Unknown target 'ocr3'.*Did you mean 'ocr2'.*Available: dsocr, ocr2"):
        get_target("ocr3")


def test_registering_a_taken_name_with_another_factory_is_an_error():
    with pytest.raises(ValueError, match="'ocr2' already registered"):
        register_target("ocr2", lambda **kw: None)


@pytest.mark.parametrize("name", ["dsocr", "ocr2"])
def test_a_targets_stage_map_maps_its_stages_in_order(name):
    target = get_target(name)
    assert tuple(target.stage_map()) == target.stages


# Stage maps -------------------------------------------------------------------------------------

def test_stage_map_accepts_real_paths():
    assert validate_stage_map(Toy(), {"enc": ("encoder",), "moe": ("experts.0", "experts.2")}) == {
        "enc": ("encoder",), "moe": ("experts.0", "experts.2")}


def test_stage_map_names_the_wrong_path_and_lists_the_top_level_modules():
    with pytest.raises(StageMapError) as info:
        validate_stage_map(Toy(), {"enc": ("encoder.5",)})
    message = str(info.value)
    assert "stage 'enc'" in message and "'encoder.5'" in message
    assert "Top-level modules: encoder (Sequential), experts (ModuleList), act (GELU)" in message
    with pytest.raises(StageMapError, match=r"'encodr'.*Did you mean 'encoder'"):
        validate_stage_map(Toy(), {"enc": ("encodr",)})


def test_stage_without_parameters_is_an_error_not_a_zero():
    with pytest.raises(StageMapError, match=r"stage 'act': modules 'act' have no parameters.*Top-level"):
        validate_stage_map(Toy(), {"act": ("act",)})
    with pytest.raises(StageMapError, match="names no module path"):
        validate_stage_map(Toy(), {"nothing": ()})


# Building without storage, then materialising -----------------------------------------------------

def test_empty_parameters_keeps_buffers_real_and_parameters_on_meta():
    with empty_parameters():
        toy = Toy()
    assert all(p.device.type == "meta" for p in toy.parameters())
    assert torch.equal(toy.scale, torch.arange(3.0))   # computed in __init__, kept
    assert nn.Module.register_parameter.__name__ == "register_parameter"   # restored


def test_materialize_is_seeded_and_shares_expert_storage():
    def share(name, shape):
        return ("experts", tuple(shape), -1) if name.startswith("experts.") else None

    models = []
    for _ in range(2):
        with empty_parameters():
            toy = Toy()
        materialize_parameters(toy, "cpu", torch.float32, seed=3, share=share)
        models.append(toy)
    a, b = models
    assert torch.equal(a.encoder[0].weight, b.encoder[0].weight)            # seeded
    assert torch.equal(a.encoder[0].bias, torch.zeros(8))                    # biases zero
    assert torch.equal(a.encoder[1].weight, torch.ones(8))                   # norm weights one
    assert a.experts[0].weight.data_ptr() == a.experts[2].weight.data_ptr()  # one storage
    assert sum(p.numel() for p in a.parameters()) == 4 * 8 + 8 + 8 + 8 + 3 * 64  # counts unchanged
    assert not any(p.requires_grad for p in a.parameters())


def test_prompt_token_ids_are_ordinary_ids():
    ids = prompt_token_ids(12)
    assert len(ids) == 12 and min(ids) >= FILLER_TOKEN_BASE
    with pytest.raises(ValueError):
        prompt_token_ids(-1)


# StageCall and KV cache ---------------------------------------------------------------------------

def test_stage_call_calls_its_module():
    linear = nn.Linear(2, 3)
    call = StageCall("x", "linear", linear, (torch.ones(1, 2),), {})
    assert call().shape == (1, 3)


@pytest.mark.parametrize("device", ["cpu", "meta"])
def test_frozen_kv_cache_does_not_grow(device):
    cache = frozen_kv_cache(2, 3, 4, 10, device=device, dtype=torch.float32)
    assert cache.get_seq_length() == 10
    new = torch.zeros(1, 3, 1, 4, device=device)
    for _ in range(3):
        keys, values = cache.update(new, new, 1)
        assert keys.shape == values.shape == (1, 3, 11, 4)
    assert cache.get_seq_length() == 10
    assert copy.deepcopy(cache).get_seq_length() == 10   # counters copy caches per run
    with pytest.raises(ValueError, match="decode_context"):
        frozen_kv_cache(2, 3, 4, 0, device=device, dtype=torch.float32)


# Pixels -----------------------------------------------------------------------------------------

def test_to_tensor_and_normalize_match_torchvision_conventions():
    array = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3) * 10
    tensor = to_tensor(Image.fromarray(array, "RGB"))
    assert tensor.shape == (3, 2, 3) and tensor.dtype == torch.float32
    assert torch.equal(tensor, torch.from_numpy(array).permute(2, 0, 1).float() / 255)
    assert normalize(torch.tensor([0.0, 0.5, 1.0])).tolist() == [-1.0, 0.0, 1.0]
    assert MEAN_COLOUR == (127, 127, 127)


def test_resolve_page_accepts_sizes_images_and_rejects_the_rest():
    src = resolve_page((300, 200))
    assert (src.width, src.height, src.kind) == (300, 200, "blank")
    assert src.load().size == (300, 200)
    image = Image.new("RGB", (40, 30))
    exif = image.getexif()
    exif[0x0112] = 6   # rotate 90: the vendor's exif_transpose swaps the sides
    image.info["exif"] = exif.tobytes()
    image = Image.open(_roundtrip_jpeg(image, exif))
    src = resolve_page(image)
    assert (src.width, src.height) == (30, 40) and src.load().size == (30, 40)
    with pytest.raises(TypeError, match="expected a path"):
        resolve_page(123)
    with pytest.raises(TypeError):
        resolve_page((0, 10))


def _roundtrip_jpeg(image, exif):
    import io

    buffer = io.BytesIO()
    image.save(buffer, "JPEG", exif=exif.tobytes())
    buffer.seek(0)
    return buffer
