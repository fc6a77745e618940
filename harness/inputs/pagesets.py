"""The built-in page sets (grid, corpus) and the builders of their committed manifests.

``python -m harness.inputs.pagesets --write`` rebuilds ``fixtures/grid.json`` and
``fixtures/corpus.json``; a test checks they match these builders. The images are drawn by
:mod:`harness.inputs.pagegen`. The sets' rules: docs/inputs.md ("Built-in pages").
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import random
import sys
from pathlib import Path
from typing import Any, Iterable, Sequence

from harness.inputs.pagegen import PageSpec
from harness.inputs.pages import builtin_pages, ensure_page_image, fixtures_dir
from harness.inputs.workload import candidate_grids, get_workload

__all__ = [
    "OMNIDOCBENCH_V1_COUNTS",
    "CORPUS_PAGES",
    "grid_specs",
    "corpus_specs",
    "manifest_entries",
    "largest_remainder",
    "read_measured_pages",
    "built_manifests",
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


# --------------------------------------------------------------------------------------------
# the grid set

def _canvas_pages() -> list[PageSpec]:
    """One page the size of each v1 Gundam tile canvas (640*cols x 640*rows).

    At exactly the canvas aspect the grid wins outright (diff 0); ties with a same-aspect grid
    of more tiles go to the larger only below half its canvas area, which a full canvas never is.
    """
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
    for base in here.parents[2:5]:
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


def _dump(entries: list[dict[str, Any]]) -> str:
    return json.dumps(entries, indent=1, ensure_ascii=False) + "\n"


def built_manifests() -> dict[str, str]:
    """File name -> JSON text of every committed manifest, as the builders make them now."""
    return {"grid.json": _dump(manifest_entries(grid_specs())),
            "corpus.json": _dump(manifest_entries(corpus_specs()))}


def main(argv: list[str] | None = None) -> int:
    """``python -m harness.inputs.pagesets --write``: rebuild the committed manifests."""
    parser = argparse.ArgumentParser(prog="python -m harness.inputs.pagesets", description=main.__doc__)
    parser.add_argument("--write", action="store_true", help="write fixtures/*.json")
    parser.add_argument("--draw", metavar="SET", help="draw every page of a set into the cache")
    args = parser.parse_args(argv)
    if args.write:
        for name, text in built_manifests().items():
            (fixtures_dir() / name).write_text(text)
            print(f"wrote {fixtures_dir() / name}")
    if args.draw:
        for page in builtin_pages(args.draw):
            print(ensure_page_image(page))
    return 0


if __name__ == "__main__":
    sys.exit(main())
