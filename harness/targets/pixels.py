"""Page pixels as the vendors feed them, built from the workload layout (no torchvision).

:func:`resolve_page` accepts a path, a :class:`harness.inputs.pages.Page`, a PIL image or a
``(width, height)`` size and returns the oriented size plus a loader for the RGB pixels (a white
page for a bare size). :func:`dsocr_views` reproduces DeepSeek-OCR ``infer()`` pre-processing for
a layout: the global view padded with the mean colour (``ImageOps.pad``, (127, 127, 127)) or, for
``image_size <= 640`` without crops, resized square; crops from a resize to (640·cols, 640·rows)
with PIL's default resample, cut row-major; then ToTensor and Normalize(0.5, 0.5) written with
numpy/torch.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from PIL import Image, ImageOps

from harness.inputs import pages
from harness.inputs.workload import ViewLayout

__all__ = ["PageSource", "resolve_page", "to_tensor", "normalize", "dsocr_views", "MEAN_COLOUR"]

#: ``tuple(int(x * 255) for x in (0.5, 0.5, 0.5))``: the vendor's padding colour.
MEAN_COLOUR = (127, 127, 127)


@dataclass(frozen=True)
class PageSource:
    """A page's oriented size and how to get its RGB pixels (``kind``: image or blank)."""

    width: int
    height: int
    kind: str
    load: Callable[[], Image.Image]


def resolve_page(page: Any) -> PageSource:
    """Size after EXIF orientation and an RGB loader for a path, Page, PIL image or (w, h)."""
    if isinstance(page, (str, os.PathLike)):
        info = pages.load_page(page, decode=False)
        path = Path(page)
        return PageSource(info.width, info.height, "image", lambda: pages.open_page_image(path))
    if isinstance(page, pages.Page):
        if page.path is None:
            size = (page.width, page.height)
            return PageSource(page.width, page.height, "blank", lambda: _blank(size))
        return PageSource(page.width, page.height, "image", lambda: pages.open_page_image(page))
    if isinstance(page, Image.Image):
        width, height = pages.oriented_size(page)
        image = page

        def load() -> Image.Image:
            try:
                transposed = ImageOps.exif_transpose(image)
            except Exception:  # the vendor's load_image falls back to the untransposed image
                transposed = image
            return transposed.convert("RGB")

        return PageSource(width, height, "image", load)
    if isinstance(page, (tuple, list)) and len(page) == 2 and all(
            isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in page):
        size = (int(page[0]), int(page[1]))
        return PageSource(size[0], size[1], "blank", lambda: _blank(size))
    raise TypeError(f"page: expected a path, a harness.inputs.pages.Page, a PIL image or a (width, height) "
                    f"tuple of positive ints, got {page!r}")


def _blank(size: tuple[int, int]) -> Image.Image:
    return Image.new("RGB", size, (255, 255, 255))


def to_tensor(image: Image.Image) -> torch.Tensor:
    """torchvision ``ToTensor`` for an RGB PIL image: (3, H, W) float32 in [0, 1]."""
    array = np.asarray(image.convert("RGB"), dtype=np.uint8)
    return torch.from_numpy(array.copy()).permute(2, 0, 1).to(torch.float32).div_(255.0)


def normalize(tensor: torch.Tensor, mean: float = 0.5, std: float = 0.5) -> torch.Tensor:
    """torchvision ``Normalize(mean, std)`` with the same value for every channel."""
    return (tensor - mean) / std


def dsocr_views(image: Image.Image, layout: ViewLayout) -> dict[str, torch.Tensor]:
    """DeepSeek-OCR ``infer()`` views of an RGB image: ``{"crops": (n,3,t,t), "global": (1,3,g,g)}``.

    Everything is read from ``layout`` (grid, sizes, padding rule); the image size must be the
    layout's.
    """
    if image.size != (layout.width, layout.height):
        raise ValueError(f"image size {image.size} differs from the layout's "
                         f"{(layout.width, layout.height)}")
    views: dict[str, torch.Tensor] = {}
    if layout.n_crops:
        cols, rows = layout.crop_grid
        tile = layout.crop_size
        resized = image.resize((tile * cols, tile * rows))  # PIL default resample, as the vendor
        crops = []
        for i in range(cols * rows):
            col, row = i % cols, i // cols
            crops.append(resized.crop((col * tile, row * tile, (col + 1) * tile, (row + 1) * tile)))
        views["crops"] = torch.stack([normalize(to_tensor(c)) for c in crops])
    size = layout.global_size
    source = image if layout.global_padded else image.resize((size, size))
    global_view = ImageOps.pad(source, (size, size), color=MEAN_COLOUR)
    views["global"] = normalize(to_tensor(global_view)).unsqueeze(0)
    return views
