"""Synthetic OmniDocBench-style page images and the builders of the committed manifests.

Images are drawn with PIL from a seed (header, text-line blocks in columns, tables, figures,
slides, handwriting-like notes), so a page is reproducible from its manifest entry alone and
nothing binary is committed: :func:`harness.pages.ensure_page_image` draws a page into
``fixtures/cache/`` the first time it is needed.

The manifests (``fixtures/grid.json``, ``fixtures/corpus.json``) are committed and are rebuilt
by ``python -m harness.fixtures --write``; a test checks that they match these builders.

* grid: pages chosen to reach every tile-grid outcome of every crop mode of both targets, the
  tie-break and 640/768 boundary cases, small pages, strips, a very large page, EXIF-rotated
  JPEGs and non-RGB modes.
* corpus: OmniDocBench v1.0 stand-in. Rule: 90 pages split over the nine v1.0 sources in
  proportion to the published page counts (largest-remainder rounding); every page of a source
  takes the size of one of that source's v1.0 pages measured in
  ``shared/data/omnidocbench_pages.csv``, the measured pages being used in turn (round robin,
  order shuffled with a fixed seed) so each gets an equal share.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import random
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

from PIL import Image, ImageDraw

__all__ = [
    "OMNIDOCBENCH_V1_COUNTS",
    "CORPUS_PAGES",
    "PageSpec",
    "render_page",
    "save_page",
    "grid_specs",
    "corpus_specs",
    "manifest_entries",
    "largest_remainder",
]

#: OmniDocBench v1.0 pages per source (981 in all), keyed by the ``data_source`` names.
OMNIDOCBENCH_V1_COUNTS: dict[str, int] = {
    "book": 104,
    "PPT2PDF": 133,
    "research_report": 81,
    "colorful_textbook": 96,
    "exam_paper": 114,
    "magazine": 97,
    "academic_literature": 129,
    "note": 116,
    "newspaper": 111,
}
#: Size of the corpus stand-in.
CORPUS_PAGES = 90
CORPUS_SEED = 20251020

_SHARED_CSV = Path("shared") / "data" / "omnidocbench_pages.csv"


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


# --------------------------------------------------------------------------------------------
# the grid set

def _canvas_pages() -> list[PageSpec]:
    """One page the size of each v1 Gundam tile canvas (640*cols x 640*rows).

    At exactly the canvas aspect the grid wins outright (diff 0); ties with a same-aspect grid
    of more tiles go to the larger only below half its canvas area, which a full canvas never is.
    """
    from harness.workload import candidate_grids, get_workload

    specs = []
    for n, (cols, rows) in enumerate(candidate_grids(get_workload("dsocr", "gundam"))):
        specs.append(PageSpec(f"c{cols}x{rows}", 640 * cols, 640 * rows,
                              "PPT2PDF" if cols > rows else "book", seed=1000 + n,
                              note=f"v1 Gundam tile canvas {cols}x{rows}"))
    return specs


def grid_specs() -> list[PageSpec]:
    """The grid set: every crop-grid outcome, tie-breaks, boundaries and odd files."""
    named = [
        PageSpec("letter", 1700, 2200, "academic_literature", 1, note="US Letter at 200 dpi"),
        PageSpec("a4", 1654, 2339, "research_report", 2, note="A4 at 200 dpi"),
        PageSpec("slide", 2000, 1500, "PPT2PDF", 3, note="4:3 slide as OmniDocBench renders it"),
        PageSpec("slide-wide", 2667, 1500, "PPT2PDF", 4, note="16:9 slide as OmniDocBench renders it"),
        PageSpec("note-old", 516, 729, "note", 5, note="v1.0 handwritten note"),
        PageSpec("newspaper", 2800, 4734, "newspaper", 6, note="v1.6 newspaper scan, 13.3 MP"),
        PageSpec("huge", 11100, 7400, "newspaper", 7, heavy=True,
                 note="v1.6-sized 82 MP page (widths reach 11.1k px); drawn only on request"),
        # exact-aspect ties (spec 1f): same aspect, more tiles only above half the canvas area
        PageSpec("tie-2000x1000", 2000, 1000, "PPT2PDF", 8, note="2:1 tie (2,1)/(4,2): 2.0 MP > 1.64 MP"),
        PageSpec("tie-1600x800", 1600, 800, "PPT2PDF", 9, note="2:1 tie: 1.28 MP < 1.64 MP"),
        PageSpec("tie-1400sq", 1400, 1400, "book", 10, note="1:1 tie (2,2)/(3,3): 1.96 MP > 1.84 MP"),
        PageSpec("tie-1300sq", 1300, 1300, "book", 11, note="1:1 tie: 1.69 MP < 1.84 MP"),
        # equal distance to two aspects (1.75 between 1.5 and 2.0), both targets
        PageSpec("mid-1750x1000", 1750, 1000, "PPT2PDF", 12, note="aspect 1.75: midway 3:2 / 2:1"),
        PageSpec("mid-1764x1008", 1764, 1008, "PPT2PDF", 13, note="aspect 1.75, 1.778 MP > 0.5*768^2*6"),
        PageSpec("mid-1000x1750", 1000, 1750, "book", 14, note="aspect 1/1.75"),
        # crop boundaries: v1 literal 640 (both sides <= 640), OCR-2 max side > 768
        PageSpec("b640", 640, 640, "book", 15, note="largest page without v1 crops"),
        PageSpec("b641x640", 641, 640, "book", 16, note="one pixel over 640 in width: crops"),
        PageSpec("b640x641", 640, 641, "book", 17, note="one pixel over 640 in height: crops"),
        PageSpec("b768", 768, 768, "book", 18, note="largest page without OCR-2 crops"),
        PageSpec("b769x768", 769, 768, "book", 19, note="OCR-2 crops from 769"),
        PageSpec("b700x500", 700, 500, "book", 20, note="spec example: 3x2 upscaled crops"),
        # small pages (no crops anywhere)
        PageSpec("small", 500, 300, "book", 21, note="under 640 both ways"),
        PageSpec("small-tall", 300, 500, "exam_paper", 22, note="under 640 both ways, portrait"),
        PageSpec("stamp", 64, 48, "book", 23, note="tiny image"),
        # strips
        PageSpec("strip-h", 6000, 200, "newspaper", 24, note="30:1 banner"),
        PageSpec("strip-v", 200, 6000, "newspaper", 25, note="1:30 column"),
        # EXIF orientation (stored sideways, upright after exif_transpose)
        PageSpec("letter-exif6", 1700, 2200, "academic_literature", 26, fmt="jpeg", exif_orientation=6,
                 note="stored 2200x1700 JPEG, EXIF orientation 6"),
        PageSpec("a4-exif8", 1654, 2339, "exam_paper", 27, fmt="jpeg", exif_orientation=8,
                 note="stored 2339x1654 JPEG, EXIF orientation 8"),
        # stored modes other than RGB
        PageSpec("mode-l", 1240, 1754, "book", 28, mode="L", note="grayscale A4 at 150 dpi"),
        PageSpec("mode-p", 1240, 1754, "magazine", 29, mode="P", note="palette PNG"),
        PageSpec("mode-rgba", 1240, 1754, "colorful_textbook", 30, mode="RGBA", note="PNG with alpha"),
        PageSpec("mode-cmyk", 1240, 1754, "magazine", 31, fmt="jpeg", mode="CMYK", note="CMYK JPEG"),
    ]
    return named + _canvas_pages()


DEFAULT_SET = ("letter", "a4", "slide", "small", "strip-h")


# --------------------------------------------------------------------------------------------
# the corpus set

def largest_remainder(counts: dict[str, int], total: int) -> dict[str, int]:
    """Integer shares of ``total`` proportional to ``counts`` (Hamilton / largest remainder)."""
    whole = sum(counts.values())
    quotas = {k: v * total / whole for k, v in counts.items()}
    shares = {k: math.floor(q) for k, q in quotas.items()}
    left = total - sum(shares.values())
    order = sorted(counts, key=lambda k: (-(quotas[k] - shares[k]), list(counts).index(k)))
    for k in order[:left]:
        shares[k] += 1
    return shares


def _find_shared_csv() -> Path:
    here = Path(__file__).resolve()
    for base in (here.parents[1], *here.parents[2:4]):
        for candidate in (base / _SHARED_CSV, base.parent / _SHARED_CSV):
            if candidate.is_file():
                return candidate
    raise FileNotFoundError(f"{_SHARED_CSV} not found next to the repository")


def read_measured_pages(path: Path | None = None) -> list[dict[str, Any]]:
    """Rows of ``omnidocbench_pages.csv`` (category, width, height, version, image)."""
    with open(path or _find_shared_csv(), newline="") as f:
        rows = list(csv.DictReader(f))
    for row in rows:
        row["width"], row["height"] = int(row["width"]), int(row["height"])
    return rows


def corpus_specs(rows: Sequence[dict[str, Any]] | None = None) -> list[PageSpec]:
    """The corpus set by the rule in the module docstring (v1.0 measured sizes only)."""
    rows = list(rows) if rows is not None else read_measured_pages()
    shares = largest_remainder(OMNIDOCBENCH_V1_COUNTS, CORPUS_PAGES)
    rng = random.Random(CORPUS_SEED)
    specs: list[PageSpec] = []
    for source, n in shares.items():
        measured = sorted((r for r in rows if r["category"] == source and r["version"] == "v1.0"),
                          key=lambda r: r["image"])
        if not measured:
            raise ValueError(f"no v1.0 page of source {source!r} in the measured sizes")
        rng.shuffle(measured)
        for k in range(n):
            row = measured[k % len(measured)]
            specs.append(PageSpec(f"{source}-{k + 1:02d}", row["width"], row["height"], source,
                                  seed=rng.randrange(1 << 30), set_name="corpus",
                                  note=f"size of OmniDocBench v1.0 {row['image']}"))
    return specs


# --------------------------------------------------------------------------------------------
# manifests (OmniDocBench page_info shape)

_LAYOUT = {"academic_literature": "double_column", "newspaper": "other_layout", "magazine": "three_column",
           "PPT2PDF": "single_column", "note": "single_column", "research_report": "double_column",
           "colorful_textbook": "double_column"}


def manifest_entries(specs: Iterable[PageSpec]) -> list[dict[str, Any]]:
    """OmniDocBench-shaped entries: ``page_info`` as the benchmark has it, plus ``harness``."""
    entries = []
    for n, s in enumerate(specs):
        entries.append({
            "layout_dets": [],
            "page_info": {
                "page_no": n,
                "height": s.height,
                "width": s.width,
                "image_path": s.image_path,
                "page_attribute": {
                    "data_source": s.style,
                    "language": "english",
                    "layout": _LAYOUT.get(s.style, "single_column"),
                    "watermark": False,
                    "fuzzy_scan": False,
                    "colorful_backgroud": s.style in ("PPT2PDF", "colorful_textbook", "magazine"),
                },
            },
            "extra": {"relation": []},
            "harness": {
                "id": s.page_id,
                "seed": s.seed,
                "style": s.style,
                "format": s.fmt,
                "mode": s.mode,
                "exif_orientation": s.exif_orientation,
                "stored_size": list(s.stored_size),
                "heavy": s.heavy,
                "note": s.note,
            },
        })
    return entries


def spec_from_entry(entry: dict[str, Any], set_name: str) -> PageSpec:
    """The drawing spec of a manifest entry written by :func:`manifest_entries`."""
    info, gen = entry["page_info"], entry["harness"]
    return PageSpec(gen["id"], info["width"], info["height"], gen["style"], gen["seed"], gen["format"],
                    gen["mode"], gen["exif_orientation"], gen.get("note", ""), gen.get("heavy", False),
                    set_name)


def _dump(entries: list[dict[str, Any]]) -> str:
    return json.dumps(entries, indent=1, ensure_ascii=False) + "\n"


def built_manifests() -> dict[str, str]:
    """File name -> JSON text of every committed manifest, as the builders make them now."""
    return {"grid.json": _dump(manifest_entries(grid_specs())),
            "corpus.json": _dump(manifest_entries(corpus_specs()))}


def main(argv: list[str] | None = None) -> int:
    """``python -m harness.fixtures --write``: rebuild the committed manifests."""
    from harness.pages import fixtures_dir

    parser = argparse.ArgumentParser(prog="python -m harness.fixtures", description=main.__doc__)
    parser.add_argument("--write", action="store_true", help="write fixtures/*.json")
    parser.add_argument("--draw", metavar="SET", help="draw every page of a set into the cache")
    args = parser.parse_args(argv)
    if args.write:
        for name, text in built_manifests().items():
            (fixtures_dir() / name).write_text(text)
            print(f"wrote {fixtures_dir() / name}")
    if args.draw:
        from harness.pages import builtin_pages, ensure_page_image
        for page in builtin_pages(args.draw):
            print(ensure_page_image(page))
    return 0


if __name__ == "__main__":
    sys.exit(main())
