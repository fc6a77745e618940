"""PDF pages: one page per PDF page, sized as DeepSeek-OCR's PDF runner renders it (144 dpi).

The runner (``DeepSeek-OCR-vllm/run_dpsk_ocr_pdf.py``) renders with PyMuPDF at
``fitz.Matrix(144 / 72, 144 / 72)``: a page of W x H points becomes ceil(2 W - 0.001) x
ceil(2 H - 0.001) pixels of its visible box (CropBox within MediaBox, turned by /Rotate, times
/UserUnit). The expected sizes below are worked out by hand from the boxes; the last test checks
the rule against PyMuPDF itself where it is installed.
"""

from __future__ import annotations

import io
import random
from pathlib import Path

import pytest

from pypdf import PdfWriter
from pypdf.generic import FloatObject, NameObject, NumberObject, RectangleObject

from harness.inputs.pages import PageError, load_page, load_pages, load_pdf, open_page_image


def write_pdf(path: Path, pages: list[dict], **encrypt) -> Path:
    """A PDF of blank pages; each dict: size (w, h) in pt, optional crop, rotate, user_unit, media."""
    writer = PdfWriter()
    for spec in pages:
        page = writer.add_blank_page(*spec.get("size", (612, 792)))
        if "media" in spec:
            if spec["media"] is None:
                del page[NameObject("/MediaBox")]
            else:
                page[NameObject("/MediaBox")] = RectangleObject(spec["media"])
        if "crop" in spec:
            page.cropbox = RectangleObject(spec["crop"])
        if "rotate" in spec:
            page[NameObject("/Rotate")] = NumberObject(spec["rotate"])
        if "user_unit" in spec:
            page[NameObject("/UserUnit")] = FloatObject(spec["user_unit"])
    if encrypt:
        writer.encrypt(**encrypt)
    buffer = io.BytesIO()
    writer.write(buffer)
    path.write_bytes(buffer.getvalue())
    return path


# (page spec, expected (width, height) in pixels at 144 dpi, how)
SIZES = [
    ({"size": (612, 792)}, (1224, 1584), "US Letter: 2 x 612, 2 x 792"),
    ({"size": (595.276, 841.89)}, (1191, 1684), "A4: ceil(1190.552), ceil(1683.78)"),
    ({"size": (100.25, 200.75)}, (201, 402), "ceil(200.5), ceil(401.5)"),
    ({"size": (612, 792), "rotate": 90}, (1584, 1224), "/Rotate 90 swaps the sides"),
    ({"size": (612, 792), "rotate": 270}, (1584, 1224), "/Rotate 270"),
    ({"size": (612, 792), "rotate": -90}, (1584, 1224), "/Rotate -90 is 270"),
    ({"size": (612, 792), "rotate": 180}, (1224, 1584), "/Rotate 180 keeps them"),
    ({"size": (612, 792), "rotate": 45}, (1584, 1224), "/Rotate 45 snaps to 90"),
    ({"size": (612, 792), "rotate": 44}, (1224, 1584), "/Rotate 44 snaps to 0"),
    ({"size": (612, 792), "crop": (10, 20, 300.3, 400.7)}, (581, 762), "CropBox 290.3 x 380.7 pt"),
    ({"size": (500, 500), "crop": (400, 400, 900, 900)}, (200, 200), "CropBox clipped to the MediaBox: 100 x 100"),
    ({"size": (300, 400), "crop": (0, 0, 300, 400.2)}, (600, 800), "a CropBox larger than the MediaBox"),
    ({"size": (300, 400), "crop": (100, 100, 100, 300)}, (1224, 1584), "an empty visible box is US Letter"),
    ({"size": (300, 400), "media": None}, (1224, 1584), "no MediaBox: US Letter"),
    ({"size": (300, 400), "media": (300, 400, 0, 0)}, (600, 800), "corners given the other way round"),
    ({"size": (300, 400), "media": (0, 0, 0.5, 400)}, (2, 2), "a side under 1 pt: a 1 x 1 pt page"),
    ({"size": (300, 200), "user_unit": 2.0}, (1200, 800), "/UserUnit 2 doubles the points"),
]


def test_page_sizes_from_the_boxes(tmp_path):
    path = write_pdf(tmp_path / "doc.pdf", [spec for spec, _, _ in SIZES])
    pages = load_pdf(path)
    assert [p.page_id for p in pages] == [f"doc-p{n:03d}" for n in range(1, len(SIZES) + 1)]
    got = {how: (p.width, p.height) for p, (_, _, how) in zip(pages, SIZES)}
    assert got == {how: size for _, size, how in SIZES}
    assert all(p.pdf_page == n and p.path == path and p.mode == "RGB" for n, p in enumerate(pages, 1))


def test_load_pages_reads_pdfs_and_images_alike(tmp_path):
    path = write_pdf(tmp_path / "two.pdf", [{"size": (612, 792)}, {"size": (842, 595)}])
    assert [(p.page_id, p.width, p.height) for p in load_pages(path)] == [
        ("two-p001", 1224, 1584), ("two-p002", 1684, 1190)]
    with pytest.raises(PageError, match=r"a PDF, not an image: its pages are read with load_pages\(\)"):
        load_page(path)


def test_many_pages_widen_the_number(tmp_path):
    path = write_pdf(tmp_path / "long.pdf", [{"size": (100, 100)}] * 1000)
    ids = [p.page_id for p in load_pdf(path)]
    assert ids[0] == "long-p0001" and ids[-1] == "long-p1000"


@pytest.mark.parametrize("make, match", [
    (lambda p: write_pdf(p, [{}], user_password="secret", owner_password="owner", algorithm="RC4-128"),
     r"encrypted: it needs a password to open, .* decrypt it first \(qpdf --decrypt --password=PASSWORD"),
    (lambda p: write_pdf(p, []), r"empty PDF: it has no pages"),
    (lambda p: p.write_bytes(b""), r"empty file \(0 bytes\)"),
    (lambda p: p.write_bytes(b"%PDF-1.7\n" + b"\x00garbage" * 50), r"broken PDF: it cannot be parsed .* repair it"),
    (lambda p: p.write_bytes(write_pdf(p, [{}, {}]).read_bytes()[:300]), r"broken PDF: it cannot be parsed"),
    (lambda p: p.write_text("no pdf here"), r"not a PDF \(no %PDF- header"),
], ids=["encrypted", "no-pages", "zero-bytes", "garbage", "cut-short", "not-a-pdf"])
def test_bad_pdfs(tmp_path, make, match):
    path = tmp_path / "bad.pdf"
    make(path)
    with pytest.raises(PageError, match=match) as info:
        load_pdf(path)
    assert info.value.path == path


def test_encrypted_with_an_empty_password_opens(tmp_path):
    # fitz.open opens these without asking: the vendor renders them, so they count
    path = write_pdf(tmp_path / "locked.pdf", [{"size": (300, 400)}], user_password="", owner_password="owner",
                     algorithm="RC4-128")
    (page,) = load_pdf(path)
    assert (page.width, page.height) == (600, 800)


def test_a_damaged_but_readable_pdf_warns(tmp_path):
    good = write_pdf(tmp_path / "good.pdf", [{"size": (300, 400)}]).read_bytes()
    # a wrong startxref offset: readers rebuild the cross-reference table and go on
    head, _, tail = good.rpartition(b"startxref\n")
    offset, _, rest = tail.partition(b"\n")
    damaged = tmp_path / "damaged.pdf"
    damaged.write_bytes(head + b"startxref\n" + str(int(offset) + 7).encode() + b"\n" + rest)
    warned: list[str] = []
    (page,) = load_pdf(damaged, warn=warned.append)
    assert (page.width, page.height) == (600, 800)
    assert len(warned) == 1 and warned[0].startswith(f"{damaged}: damaged PDF, read after repair")


def test_pixel_limit_applies_to_rendered_size(tmp_path, monkeypatch):
    path = write_pdf(tmp_path / "poster.pdf", [{"size": (612, 792)}])
    monkeypatch.setenv("HARNESS_MAX_IMAGE_PIXELS", "1000000")
    with pytest.raises(PageError, match=r"page 1: rendered at 144 dpi it is 1224x1584 = 1,938,816 pixels, over "
                                        r"the limit of 1,000,000"):
        load_pdf(path)


def test_rendering_needs_pymupdf(tmp_path, monkeypatch):
    import builtins

    (page,) = load_pdf(write_pdf(tmp_path / "one.pdf", [{"size": (100, 50)}]))
    real_import = builtins.__import__

    def no_fitz(name, *args, **kwargs):
        if name in ("fitz", "pymupdf"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_fitz)
    with pytest.raises(PageError, match=r"page 1: rendering a PDF page needs PyMuPDF, the vendor's renderer"):
        open_page_image(page)


def test_sizes_match_pymupdf(tmp_path):
    """The box rule against the vendor's renderer itself, on 200 random pages."""
    fitz = pytest.importorskip("pymupdf")
    rng = random.Random(7)
    specs = []
    for _ in range(200):
        width, height = round(rng.uniform(1, 2000), rng.choice([0, 1, 2, 3])), round(rng.uniform(1, 2000), 2)
        x0, y0 = round(rng.uniform(-50, 50), 2), round(rng.uniform(-50, 50), 2)
        spec = {"size": (width, height), "media": (x0, y0, x0 + width, y0 + height)}
        if rng.random() < 0.5:
            cx, cy = round(rng.uniform(-100, 900), 3), round(rng.uniform(-100, 900), 3)
            spec["crop"] = (cx, cy, cx + round(rng.uniform(0, 1500), 3), cy + round(rng.uniform(0, 1500), 3))
        if rng.random() < 0.5:
            spec["rotate"] = rng.choice([0, 90, 180, 270, -90, 45, 135, 450])
        if rng.random() < 0.2:
            spec["user_unit"] = rng.choice([0.5, 1.5, 2.0])
        specs.append(spec)
    path = write_pdf(tmp_path / "random.pdf", specs)
    ours = [(p.width, p.height) for p in load_pdf(path, max_pixels=None)]
    with fitz.open(str(path)) as document:
        theirs = [(pix.width, pix.height) for pix in
                  (page.get_pixmap(matrix=fitz.Matrix(2, 2), alpha=False) for page in document)]
    assert ours == theirs
    (first,) = load_pdf(write_pdf(tmp_path / "one.pdf", [{"size": (100.25, 50)}]))
    assert open_page_image(first).size == (201, 100)
