"""Drawing the built-in pages: synthetic OmniDocBench-style page images from a manifest entry.

Images are drawn with PIL from a seed (header, text-line blocks in columns, tables, figures,
slides, handwriting-like notes), so a page is reproducible from its manifest entry alone and
nothing binary is committed: :func:`harness.inputs.pages.ensure_page_image` draws a page into
``fixtures/cache/`` the first time it is needed. This module imports nothing of the harness:
which pages the built-in sets hold is :mod:`harness.inputs.pagesets`.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw

__all__ = ["PageSpec", "render_page", "save_page", "spec_from_entry"]


@dataclass(frozen=True)
class PageSpec:
    """How to draw one fixture page (its manifest entry, before JSON)."""

    page_id: str
    width: int           # after EXIF orientation: what the tilers see
    height: int
    style: str           # an OmniDocBench data_source name
    seed: int
    fmt: str = "png"     # "png" | "jpeg"
    mode: str = "RGB"    # stored Pillow mode
    exif_orientation: int | None = None
    note: str = ""
    heavy: bool = False  # large enough that tests should not draw it by default
    set_name: str = "grid"

    @property
    def stored_size(self) -> tuple[int, int]:
        """Pixel size in the file (sides swapped for EXIF orientations 5..8)."""
        if self.exif_orientation in (5, 6, 7, 8):
            return self.height, self.width
        return self.width, self.height

    @property
    def image_path(self) -> str:
        """Path of the image relative to the cache directory."""
        ext = "jpg" if self.fmt == "jpeg" else "png"
        return f"{self.set_name}/{self.page_id}.{ext}"


# --------------------------------------------------------------------------------------------
# drawing

_PALETTES = {
    "PPT2PDF": [(31, 78, 121), (237, 125, 49), (112, 173, 71), (255, 192, 0)],
    "colorful_textbook": [(46, 117, 182), (197, 90, 17), (84, 130, 53), (191, 144, 0)],
    "magazine": [(192, 0, 0), (0, 112, 192), (112, 48, 160), (0, 176, 80)],
}
_INK = (30, 30, 30)


def _text_line(d: ImageDraw.ImageDraw, rng: random.Random, x0: int, y: int, x1: int, h: int,
               ink: tuple[int, int, int], fill_ratio: float = 1.0) -> None:
    """A line of 'words': dark boxes with gaps, like text seen from afar."""
    x = x0
    end = x0 + int((x1 - x0) * fill_ratio)
    gap = max(2, h // 2)
    while x < end:
        word = max(2, int(rng.uniform(1.5, 7.0) * h))
        d.rectangle([x, y, min(x + word, end), y + h], fill=ink)
        x += word + gap


def _paragraph(d, rng, x0, y, x1, line_h, lines, ink) -> int:
    for k in range(lines):
        ratio = rng.uniform(0.35, 0.85) if k == lines - 1 else 1.0
        _text_line(d, rng, x0, y, x1, max(1, int(line_h * 0.55)), ink, ratio)
        y += line_h
    return y


def _table(d, rng, x0, y, x1, line_h, rows, cols, ink) -> int:
    h = rows * int(line_h * 1.4)
    d.rectangle([x0, y, x1, y + h], outline=ink, width=max(1, line_h // 12))
    for r in range(1, rows):
        yy = y + r * h // rows
        d.line([x0, yy, x1, yy], fill=ink, width=max(1, line_h // 14))
    for c in range(1, cols):
        xx = x0 + c * (x1 - x0) // cols
        d.line([xx, y, xx, y + h], fill=ink, width=max(1, line_h // 14))
    cell_h = h // rows
    for r in range(rows):
        for c in range(cols):
            cx0 = x0 + c * (x1 - x0) // cols + line_h // 3
            cx1 = x0 + (c + 1) * (x1 - x0) // cols - line_h // 3
            if cx1 > cx0:
                _text_line(d, rng, cx0, y + r * cell_h + cell_h // 3, cx1, max(1, line_h // 3),
                           ink, rng.uniform(0.3, 0.9))
    return y + h + line_h


def _figure(d, rng, x0, y, x1, height, palette) -> int:
    d.rectangle([x0, y, x1, y + height], fill=(235, 238, 242), outline=(150, 150, 150))
    bars = rng.randint(4, 9)
    bw = (x1 - x0) / (bars * 1.6 + 0.6)
    for b in range(bars):
        bx = x0 + bw * (0.6 + 1.6 * b)
        bh = height * rng.uniform(0.2, 0.85)
        d.rectangle([int(bx), int(y + height - bh), int(bx + bw), y + height - 1],
                    fill=palette[b % len(palette)])
    return y + height


def _draw_document(img: Image.Image, rng: random.Random, style: str) -> None:
    w, h = img.size
    d = ImageDraw.Draw(img)
    palette = _PALETTES.get(style, [(60, 90, 140), (140, 60, 60), (70, 120, 70)])
    columns = {"academic_literature": 2, "newspaper": 5 if w > h * 0.5 else 2, "magazine": 3,
               "research_report": 2, "exam_paper": 1, "book": 1, "colorful_textbook": 2}.get(style, 1)
    if w > 2.5 * h:           # wide strips: many short columns
        columns = max(columns, min(12, round(w / h)))
    margin = max(2, int(min(w, h) * 0.07))
    line_h = max(3, int(min(w, 1.4 * h) / 75))
    if style == "newspaper":
        line_h = max(3, int(w / 110))
    y = margin
    # header: a running head or a masthead
    head_h = line_h * (4 if style == "newspaper" else 2)
    if h > 6 * head_h:
        if style == "research_report":
            d.rectangle([0, 0, w, head_h + margin // 2], fill=palette[0])
        _text_line(d, rng, margin, y, w - margin, head_h // 2, _INK, 0.6)
        y += head_h + line_h
        d.line([margin, y - line_h // 2, w - margin, y - line_h // 2], fill=_INK, width=max(1, line_h // 10))
    gutter = line_h * 2
    col_w = (w - 2 * margin - (columns - 1) * gutter) / columns
    for c in range(columns):
        x0 = int(margin + c * (col_w + gutter))
        x1 = int(x0 + col_w)
        cy = y
        while cy < h - margin - line_h:
            room = h - margin - cy
            kind = rng.random()
            if kind < 0.12 and room > 8 * line_h and x1 - x0 > 6 * line_h:
                cy = _table(d, rng, x0, cy, x1, line_h, rng.randint(3, 6), rng.randint(2, 5), _INK)
            elif kind < 0.24 and room > 10 * line_h:
                cy = _figure(d, rng, x0, cy, x1, min(room - line_h, int((x1 - x0) * rng.uniform(0.4, 0.7))),
                             palette) + line_h
            else:
                lines = min(rng.randint(3, 12), max(1, (room - line_h) // line_h))
                cy = _paragraph(d, rng, x0, cy, x1, line_h, lines, _INK) + line_h // 2


def _draw_slide(img: Image.Image, rng: random.Random) -> None:
    w, h = img.size
    d = ImageDraw.Draw(img)
    palette = _PALETTES["PPT2PDF"]
    d.rectangle([0, 0, w, int(h * 0.16)], fill=palette[0])
    line_h = max(3, h // 22)
    _text_line(d, rng, int(w * 0.06), int(h * 0.05), int(w * 0.8), line_h, (255, 255, 255), 0.7)
    y = int(h * 0.24)
    split = int(w * (0.55 if rng.random() < 0.6 else 0.94))
    while y < h * 0.88:
        d.ellipse([int(w * 0.06), y + line_h // 4, int(w * 0.06) + line_h // 2, y + line_h * 3 // 4],
                  fill=palette[1])
        _text_line(d, rng, int(w * 0.06) + line_h, y, split - line_h, max(1, line_h // 2), _INK,
                   rng.uniform(0.5, 1.0))
        y += int(line_h * 1.6)
    if split < w * 0.9:
        _figure(d, rng, split + line_h, int(h * 0.26), int(w * 0.94), int(h * 0.55), palette)


def _draw_note(img: Image.Image, rng: random.Random) -> None:
    w, h = img.size
    d = ImageDraw.Draw(img)
    rule = max(6, h // 28)
    for y in range(rule * 2, h, rule):
        d.line([0, y, w, y], fill=(170, 200, 230), width=1)
    ink = (20, 40, 120)
    for y in range(rule * 2, h - rule, rule):
        if rng.random() < 0.15:
            continue
        x = int(w * 0.08)
        end = int(w * rng.uniform(0.55, 0.93))
        pts = []
        while x < end:
            pts.append((x, y - rule * rng.uniform(0.15, 0.6)))
            x += max(2, rule // 3)
        if len(pts) > 1:
            d.line(pts, fill=ink, width=max(1, rule // 10))


def render_page(spec: PageSpec) -> Image.Image:
    """Draw the page upright (``width`` x ``height``) in RGB; deterministic in ``spec.seed``."""
    rng = random.Random(spec.seed)
    paper = (255, 255, 255) if spec.style not in ("note", "newspaper") else (248, 246, 238)
    img = Image.new("RGB", (spec.width, spec.height), paper)
    if spec.style == "PPT2PDF":
        _draw_slide(img, rng)
    elif spec.style == "note":
        _draw_note(img, rng)
    else:
        _draw_document(img, rng, spec.style)
    return img


def save_page(spec: PageSpec, path: Path) -> None:
    """Draw ``spec`` and write it to ``path`` in its stored mode, format and EXIF orientation."""
    img = render_page(spec)
    exif = None
    if spec.exif_orientation is not None:
        # Store the pixels so that ImageOps.exif_transpose gives the upright page back.
        undo = {3: Image.Transpose.ROTATE_180, 6: Image.Transpose.ROTATE_90,
                8: Image.Transpose.ROTATE_270}
        if spec.exif_orientation not in undo:
            raise ValueError(f"exif_orientation: only 3, 6 and 8 are generated, got {spec.exif_orientation}")
        img = img.transpose(undo[spec.exif_orientation])
        exif = Image.Exif()
        exif[0x0112] = spec.exif_orientation
    if spec.mode == "L":
        img = img.convert("L")
    elif spec.mode == "P":
        img = img.convert("P", palette=Image.Palette.ADAPTIVE, colors=64)
    elif spec.mode == "RGBA":
        img = img.convert("RGBA")
        alpha = Image.new("L", img.size, 255)
        ImageDraw.Draw(alpha).rectangle([0, 0, img.size[0] // 8, img.size[1] // 8], fill=0)
        img.putalpha(alpha)
    elif spec.mode == "CMYK":
        img = img.convert("CMYK")
    elif spec.mode != "RGB":
        raise ValueError(f"mode: cannot generate {spec.mode!r}")
    path.parent.mkdir(parents=True, exist_ok=True)
    kwargs: dict[str, Any] = {}
    if spec.fmt == "jpeg":
        kwargs = {"quality": 85}
        if exif is not None:
            kwargs["exif"] = exif.tobytes()
        img.save(path, "JPEG", **kwargs)
    else:
        if exif is not None:
            kwargs["exif"] = exif.tobytes()
        img.save(path, "PNG", compress_level=1, **kwargs)


def spec_from_entry(entry: dict[str, Any], set_name: str) -> PageSpec:
    """The drawing spec of a manifest entry written by :func:`manifest_entries`."""
    info, gen = entry["page_info"], entry["harness"]
    return PageSpec(gen["id"], info["width"], info["height"], gen["style"], gen["seed"], gen["format"],
                    gen["mode"], gen["exif_orientation"], gen.get("note", ""), gen.get("heavy", False),
                    set_name)

