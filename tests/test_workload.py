"""Workload layouts: modes, the vendors' tiling rules, token counts."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.inputs.workload import (
    DEFAULT_PROMPT,
    DEFAULT_PROMPT_TOKENS,
    MODES,
    ViewBatch,
    Workload,
    candidate_grids,
    compute_view_layout,
    get_workload,
    layout_for_image,
    prefill_length,
)


def test_dsocr_candidate_order_is_the_vendor_set_order():
    # dynamic_preprocess: set((i, j) ...) then sorted(key=i*j); pinned literally (spec 1f).
    assert candidate_grids(get_workload("dsocr", "gundam")) == (
        (1, 2), (2, 1), (3, 1), (1, 3), (2, 2), (4, 1), (1, 4), (5, 1), (1, 5), (1, 6), (6, 1),
        (3, 2), (2, 3), (7, 1), (1, 7), (4, 2), (2, 4), (1, 8), (8, 1), (1, 9), (3, 3), (9, 1))


def test_ocr2_candidate_order_is_width_major_then_product():
    # get_all_supported_aspect_ratios(2, 6): for width, for height; stable sort by product.
    assert candidate_grids(get_workload("ocr2", "gundam")) == (
        (1, 2), (2, 1), (1, 3), (3, 1), (1, 4), (2, 2), (4, 1), (1, 5), (5, 1), (1, 6), (2, 3),
        (3, 2), (6, 1))


@pytest.mark.parametrize("size, grid, image_tokens", [
    # 2000/1000 = 2.0 ties (2,1) and (4,2) exactly; 2.0 MP > 0.5*640^2*8 = 1.64 MP -> (4,2);
    # 273 + (10*2)*(10*4+1) = 273 + 820 = 1093
    ((2000, 1000), (4, 2), 1093),
    # 1600*800 = 1.28 MP < 1.64 MP -> stays (2,1); 273 + 10*(20+1) = 483
    ((1600, 800), (2, 1), 483),
    # 1.0 ties (2,2) and (3,3); 1.96 MP > 0.5*640^2*9 = 1.84 MP -> (3,3); 273 + 30*31 = 1203
    ((1400, 1400), (3, 3), 1203),
    # 1.69 MP < 1.84 MP -> (2,2); 273 + 20*21 = 693
    ((1300, 1300), (2, 2), 693),
])
def test_dsocr_gundam_tie_break(size, grid, image_tokens):
    layout = compute_view_layout(get_workload("dsocr", "gundam"), *size)
    assert layout.crop_grid == grid
    assert layout.image_tokens == image_tokens


def test_unknown_mode_suggests():
    with pytest.raises(ValueError, match=r"Did you mean 'gundam'.*Available: tiny, small"):
        get_workload("dsocr", "gundum")
    with pytest.raises(ValueError, match=r"Unknown target 'ocr3'.*Did you mean 'ocr2'"):
        get_workload("ocr3", "gundam")


@pytest.mark.parametrize("kwargs, field", [
    (dict(target="ocr1"), "target"),
    (dict(base_size=0), "base_size"),
    (dict(image_size=650), "image_size"),
    (dict(min_tiles=5, max_tiles=4), "min_tiles"),
    (dict(crop_mode="yes"), "crop_mode"),
    (dict(tile_size=1024), "tile_size"),
])
def test_workload_validation_names_the_field(kwargs, field):
    args = dict(target="dsocr", mode="x", base_size=1024, image_size=640, crop_mode=True)
    args.update(kwargs)
    with pytest.raises(ValueError, match=rf"Workload\.{field}"):
        Workload(**args)


@pytest.mark.parametrize("width, height", [(0, 10), (10, -1), (10.5, 10), (True, 10)])
def test_bad_page_size_is_rejected(width, height):
    with pytest.raises(ValueError, match=r"width|height"):
        compute_view_layout(get_workload("dsocr", "base"), width, height)


def test_numpy_sizes_are_plain_ints():
    import numpy as np

    layout = compute_view_layout(get_workload("dsocr", "gundam"), np.int64(1700), np.int32(2200))
    assert (type(layout.width), layout.crop_grid) == (int, (2, 3))


def test_prefill_is_bos_text_image():
    layout = compute_view_layout(get_workload("dsocr", "base"), 1700, 2200)
    # 1 BOS + 9 text + 16*17+1 = 273 placeholders = 283
    assert prefill_length(layout, 9) == 283


def test_view_batch_validates():
    with pytest.raises(ValueError, match="ViewBatch.role"):
        ViewBatch("tiles", 1, 640, 100)


def test_every_mode_key_matches_its_name():
    for target, modes in MODES.items():
        for name, workload in modes.items():
            assert (workload.target, workload.mode) == (target, name)


# ---- properties over random page sizes -------------------------------------------------------

CROP_WORKLOADS = [get_workload("dsocr", "gundam"), get_workload("dsocr", "gundam6"), get_workload("ocr2", "gundam")]
ALL_WORKLOADS = [w for modes in MODES.values() for w in modes.values()]
sides = st.integers(min_value=1, max_value=20_000)


@settings(max_examples=300, deadline=None)
@given(width=sides, height=sides, index=st.integers(0, len(CROP_WORKLOADS) - 1))
def test_crop_grid_properties(width, height, index):
    workload = CROP_WORKLOADS[index]
    layout = compute_view_layout(workload, width, height)
    cols, rows = layout.crop_grid
    if workload.target == "dsocr":
        cropped = not (width <= 640 and height <= 640)
    else:
        cropped = max(width, height) > workload.tile_size
    if not cropped:
        assert layout.crop_grid == (1, 1) and layout.n_crops == 0
    else:
        # the tile count stays in [min_tiles, max_tiles] and is a candidate grid
        assert workload.min_tiles <= cols * rows <= workload.max_tiles
        assert layout.crop_grid in candidate_grids(workload)
        assert layout.n_crops == cols * rows
        # no candidate is strictly closer in aspect than the one chosen
        aspect = width / height
        chosen = abs(aspect - cols / rows)
        assert all(abs(aspect - c / r) >= chosen for c, r in candidate_grids(workload))
    # placeholder formulas (v1 infer(): newline per row + separator; OCR-2: separator only)
    n = layout.n_crops
    if workload.target == "dsocr":
        expected = 16 * 17 + 1 + (10 * rows * (10 * cols + 1) if n else 0)
    else:
        expected = 256 + 144 * n + 1
    assert layout.image_tokens == expected
    per_crop = 100 if workload.target == "dsocr" else 144
    assert layout.vision_tokens == 256 + per_crop * n
    assert layout.n_views == n + 1
    # valid tokens: the padded global view's share plus every crop
    assert layout.valid_tokens == -(-256 * min(width, height) // max(width, height)) + per_crop * n
    assert layout.valid_tokens <= layout.vision_tokens


@settings(max_examples=200, deadline=None)
@given(width=sides, height=sides, index=st.integers(0, len(ALL_WORKLOADS) - 1))
def test_valid_tokens_convention(width, height, index):
    workload = ALL_WORKLOADS[index]
    layout = compute_view_layout(workload, width, height)
    glob = [v for v in layout.views if v.role == "global"][0]
    crops = layout.vision_tokens - glob.tokens_per_view
    share = layout.valid_tokens - crops
    if layout.global_padded:
        # paper: ceil(N * (1 - (max - min) / max)) = smallest integer >= N * min / max
        assert share * max(width, height) >= glob.tokens_per_view * min(width, height)
        assert (share - 1) * max(width, height) < glob.tokens_per_view * min(width, height)
    else:
        assert share == glob.tokens_per_view
    # v1 infer()'s print truncates a float: int(N * ratio); 1 below where N*min/max is not whole,
    # 0 or 1 below where it is (the float can land just under the whole number)
    vendor = layout.valid_tokens_vendor
    if workload.target == "ocr2":
        assert vendor is None
    else:
        exact = glob.tokens_per_view * min(width, height) % max(width, height) == 0
        if not layout.global_padded:
            assert vendor == layout.valid_tokens
        elif exact:
            assert layout.valid_tokens - vendor in (0, 1)
        else:
            assert layout.valid_tokens - vendor == 1
    assert prefill_length(layout) == 1 + DEFAULT_PROMPT_TOKENS + layout.image_tokens


# ---- fixed facts -----------------------------------------------------------------------------

@pytest.mark.parametrize("target, mode, tokens_per_view", [
    ("dsocr", "tiny", 64),     # 512/16 = 32 -> /4 = 8 -> 8*8
    ("dsocr", "small", 100),   # 640/16 = 40 -> 10 -> 100
    ("dsocr", "base", 256),    # 1024/16 = 64 -> 16 -> 256
    ("dsocr", "large", 400),   # 1280/16 = 80 -> 20 -> 400
    ("ocr2", "small", 144),    # 768 view: query_768_resolution, 144 queries
    ("ocr2", "base", 256),     # 1024 view: query_1024_resolution, 256 queries
])
def test_no_crop_mode_single_view(target, mode, tokens_per_view):
    layout = compute_view_layout(get_workload(target, mode), 1700, 2200)
    assert len(layout.views) == 1
    (view,) = layout.views
    assert (view.role, view.batch, view.tokens_per_view) == ("global", 1, tokens_per_view)


def test_gundam_crop_tokens_per_view():
    # v1 crops: 640/16/4 = 10 -> 100 tokens; OCR-2 crops: 768 -> 144 queries
    v1 = compute_view_layout(get_workload("dsocr", "gundam"), 1700, 2200)
    o2 = compute_view_layout(get_workload("ocr2", "gundam"), 1700, 2200)
    assert [(v.role, v.batch, v.size, v.tokens_per_view) for v in v1.views] == [
        ("crops", 6, 640, 100), ("global", 1, 1024, 256)]
    assert [(v.role, v.batch, v.size, v.tokens_per_view) for v in o2.views] == [
        ("global", 1, 1024, 256), ("crops", 6, 768, 144)]


def test_gundam6_is_the_vllm_port():
    # vLLM config.py: BASE_SIZE 1024, IMAGE_SIZE 640, CROP_MODE True, MIN_CROPS 2, MAX_CROPS 6
    w = get_workload("dsocr", "gundam6")
    assert (w.base_size, w.image_size, w.crop_mode, w.min_tiles, w.max_tiles, w.tile_size) == (
        1024, 640, True, 2, 6, 640)
    # 1400x1400 is (3,3) under 9 tiles but (2,2) under 6: 273 + 20*21 = 693
    assert compute_view_layout(w, 1400, 1400).crop_grid == (2, 2)


def test_ocr2_no_crop_needs_matching_sizes():
    # transformers resizes to tile_size without crops but counts ceil(size/64)^2 placeholders
    with pytest.raises(ValueError, match=r"Workload\.base_size"):
        Workload("ocr2", "x", 1024, 768, False, min_tiles=2, max_tiles=6, tile_size=768)
    with pytest.raises(ValueError, match=r"Workload\.base_size.*learned queries"):
        Workload("ocr2", "x", 1280, 768, True, min_tiles=2, max_tiles=6, tile_size=768)


def test_default_prompt_tokens_is_the_measured_count_of_the_default_prompt():
    """The count was measured once with the vendor tokenizer (harness.inputs.workload): these
    pieces. They must still spell the prompt's text after ``<image>``, so a changed prompt
    cannot keep a stale count."""
    pieces = ["\n", "<|grounding|>", "Convert", " the", " document", " to", " mark", "down", "."]
    before, text = DEFAULT_PROMPT.split("<image>")
    assert before == "" and "".join(pieces) == text
    assert DEFAULT_PROMPT_TOKENS == len(pieces)


def test_prefill_rejects_negative_text():
    layout = compute_view_layout(get_workload("ocr2", "gundam"), 1700, 2200)
    with pytest.raises(ValueError, match="text_tokens"):
        prefill_length(layout, -1)
    # 1 BOS + 0 text + 256 + 144*6 + 1 = 1122
    assert prefill_length(layout, 0) == 1122


def test_layout_for_image_follows_exif(tmp_path):
    from PIL import Image

    path = tmp_path / "sideways.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 on display: stored 2200x1700 shows as 1700x2200
    Image.new("RGB", (2200, 1700), "white").save(path, exif=exif.tobytes())
    workload = get_workload("dsocr", "gundam")
    from_file = layout_for_image(workload, path)
    assert (from_file.width, from_file.height, from_file.crop_grid) == (1700, 2200, (2, 3))
    with Image.open(path) as im:
        from_image = layout_for_image(workload, im)
    assert from_image == from_file
    # without the EXIF tag the same pixels are a landscape page: 2200/1700 = 1.294 -> (3, 2)
    assert compute_view_layout(workload, 2200, 1700).crop_grid == (3, 2)


def test_vendor_valid_tokens_are_infer_prints():
    """valid_tokens_vendor is modeling_deepseekocr.py infer()'s printed figure, float for float
    (``ratio = 1 - ((max(w, h) - min(w, h)) / (max(w, h)))``; ``int(256 * ratio)`` for the 1024
    global view, ``int(400 * ratio)`` for 1280, plus ``len(crops) * 100``), and it differs from the
    paper's Eq. 1 on almost every page: 3,000 seeded random pages per padded mode."""
    import random

    rng = random.Random(0)
    pages = [(rng.randint(200, 4000), rng.randint(200, 4000)) for _ in range(3000)]
    differ = {}
    for mode, n in (("base", 256), ("large", 400), ("gundam", 256)):
        workload = get_workload("dsocr", mode)
        differ[mode] = 0
        for w, h in pages:
            layout = compute_view_layout(workload, w, h)
            ratio = 1 - ((max(w, h) - min(w, h)) / (max(w, h)))
            printed = int(n * ratio) + layout.n_crops * 100
            assert layout.valid_tokens_vendor == printed, (mode, w, h)
            differ[mode] += layout.valid_tokens != printed
    assert all(2900 < d < 3000 for d in differ.values()), differ
    # a page where N*min/max is whole and the float lands under it: 400 * 1695 / 3000 = 226
    layout = compute_view_layout(get_workload("dsocr", "large"), 3000, 1695)
    assert (layout.valid_tokens, layout.valid_tokens_vendor) == (226, 225)
    # not padded (tiny, small: resized square) or square: the same figure
    assert compute_view_layout(get_workload("dsocr", "small"), 1700, 2200).valid_tokens_vendor == 100
    square = compute_view_layout(get_workload("dsocr", "base"), 1000, 1000)
    assert square.valid_tokens == square.valid_tokens_vendor == 256
