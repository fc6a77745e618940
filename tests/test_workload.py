"""Workload layouts: modes, the vendors' tiling rules, token counts."""

from __future__ import annotations

import pytest

from harness.workload import (
    MODES,
    ViewBatch,
    Workload,
    candidate_grids,
    compute_view_layout,
    get_workload,
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
