"""Page loading (EXIF, modes, every kind of bad file), manifests and built-in page drawing."""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path

import pytest
from PIL import Image

from harness.inputs import pagegen, pagesets
from harness.inputs.pages import (
    MAX_PIXELS_ENV_VAR,
    ManifestError,
    Page,
    PageError,
    SettingError,
    builtin_pages,
    ensure_page_image,
    fixtures_dir,
    load_manifest,
    load_page,
    open_page_image,
)


def _png_bytes(width: int, height: int, payload: bytes = b"", bit_depth: int = 8, color_type: int = 2) -> bytes:
    """A PNG with the given header; the pixel data is whatever ``payload`` is (cheap to make)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(payload))
            + chunk(b"IEND", b""))


@pytest.fixture(autouse=True)
def _default_pixel_limit(monkeypatch):
    monkeypatch.delenv(MAX_PIXELS_ENV_VAR, raising=False)


# ---- good files ------------------------------------------------------------------------------

@pytest.mark.parametrize("orientation, stored, shown", [
    (1, (300, 200), (300, 200)),
    (3, (300, 200), (300, 200)),   # 180 degrees: sides unchanged
    (6, (300, 200), (200, 300)),   # 90 degrees: sides swap
    (8, (300, 200), (200, 300)),
])
def test_exif_orientation_sets_the_size(tmp_path, orientation, stored, shown):
    path = tmp_path / f"o{orientation}.jpg"
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.new("RGB", stored, "white").save(path, exif=exif.tobytes())
    page = load_page(path)
    assert (page.width, page.height, page.mode, page.page_id) == (*shown, "RGB", f"o{orientation}")
    image = open_page_image(path)
    assert image.size == shown and image.mode == "RGB"


@pytest.mark.parametrize("page_id, mode", [("mode-l", "L"), ("mode-p", "P"), ("mode-rgba", "RGBA"),
                                           ("mode-cmyk", "CMYK")])
def test_non_rgb_fixture_pages_open_as_rgb(page_id, mode):
    page = {p.page_id: p for p in builtin_pages("grid")}[page_id]
    path = ensure_page_image(page)
    loaded = load_page(path)
    assert (loaded.width, loaded.height, loaded.mode) == (page.width, page.height, mode)
    image = open_page_image(path)
    assert (image.size, image.mode) == ((page.width, page.height), "RGB")


def test_exif_fixture_page_is_upright():
    page = {p.page_id: p for p in builtin_pages("grid")}["letter-exif6"]
    path = ensure_page_image(page)
    with Image.open(path) as raw:
        assert raw.size == (2200, 1700)  # stored sideways
    loaded = load_page(path)
    assert (loaded.width, loaded.height) == (1700, 2200)
    assert open_page_image(path).size == (1700, 2200)


def test_a_large_real_page_loads():
    page = {p.page_id: p for p in builtin_pages("grid")}["newspaper"]
    loaded = load_page(ensure_page_image(page))
    assert (loaded.width, loaded.height) == (2800, 4734)  # 13.3 MP, decoded in full


# ---- bad files: each a PageError naming the file --------------------------------------------

def _expect(path: Path, match: str, *, opener=load_page):
    with pytest.raises(PageError, match=match) as info:
        opener(path)
    assert str(path) in str(info.value)
    assert info.value.path == path
    return info.value


@pytest.mark.parametrize("opener", [load_page, open_page_image])
def test_missing_file(tmp_path, opener):
    _expect(tmp_path / "nope.png", "file not found", opener=opener)


@pytest.mark.parametrize("opener", [load_page, open_page_image])
def test_empty_file(tmp_path, opener):
    path = tmp_path / "empty.png"
    path.write_bytes(b"")
    _expect(path, r"empty file \(0 bytes\)", opener=opener)


def test_directory_is_not_a_page(tmp_path):
    _expect(tmp_path, "not a regular file")


@pytest.mark.parametrize("opener", [load_page, open_page_image])
def test_not_an_image(tmp_path, opener):
    path = tmp_path / "notes.png"
    path.write_text("this is text, not pixels\n")
    _expect(path, "not an image file Pillow can identify", opener=opener)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
@pytest.mark.parametrize("opener", [load_page, open_page_image])
def test_truncated_file(tmp_path, fmt, opener):
    path = tmp_path / f"cut.{fmt.lower()}"
    noise = Image.effect_noise((256, 256), 64).convert("RGB")
    noise.save(path, fmt)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    err = _expect(path, "truncated or corrupt image data", opener=opener)
    assert "Traceback" not in str(err)


def test_truncated_file_found_without_decode(tmp_path):
    path = tmp_path / "cut.png"
    Image.effect_noise((64, 48), 64).convert("RGB").save(path)
    path.write_bytes(path.read_bytes()[:200])
    # the header alone is intact, but the chunk walk sees the pixel data run past the end
    _expect(path, r"truncated or corrupt image data: the PNG 'IDAT' chunk at byte \d+ runs past the end "
                  r"of the file \(200 bytes\)", opener=lambda p: load_page(p, decode=False))


@pytest.mark.parametrize("name, data", [
    ("zero.png", _png_bytes(0, 10)),
    ("zero.gif", b"GIF89a" + struct.pack("<HH", 12, 0) + b"\x00\x00\x00;"),
])
def test_zero_size_image(tmp_path, name, data):
    path = tmp_path / name
    path.write_bytes(data)
    _expect(path, r"zero-size image \((0x10|12x0)")


def test_decompression_bomb_names_the_setting(tmp_path, monkeypatch):
    path = tmp_path / "bomb.png"
    path.write_bytes(_png_bytes(20000, 20000, b"\x00" * 64))  # 400 MP declared, a few bytes on disk
    err = _expect(path, "over the limit")
    assert MAX_PIXELS_ENV_VAR in str(err) and "max_pixels=" in str(err)
    # the environment variable lifts the limit (header only: the data is not really there)
    monkeypatch.setenv(MAX_PIXELS_ENV_VAR, "0")
    assert load_page(path, decode=False).pixels == 400_000_000
    # and the argument does too
    monkeypatch.delenv(MAX_PIXELS_ENV_VAR)
    assert load_page(path, decode=False, max_pixels=None).width == 20000


def test_pixel_limit_from_environment(tmp_path, monkeypatch):
    path = tmp_path / "small.png"
    Image.new("RGB", (11, 10)).save(path)
    monkeypatch.setenv(MAX_PIXELS_ENV_VAR, "100")
    _expect(path, r"110 pixels is over the limit of 100 pixels")
    monkeypatch.setenv(MAX_PIXELS_ENV_VAR, "110")
    assert load_page(path).pixels == 110
    monkeypatch.setenv(MAX_PIXELS_ENV_VAR, "lots")
    with pytest.raises(SettingError, match=f"{MAX_PIXELS_ENV_VAR}='lots': expected a whole number of pixels"):
        load_page(path)


def test_pillow_global_limit_is_left_alone(tmp_path):
    before = Image.MAX_IMAGE_PIXELS
    path = tmp_path / "bomb.png"
    path.write_bytes(_png_bytes(20000, 20000))
    with pytest.raises(PageError):
        load_page(path)
    assert Image.MAX_IMAGE_PIXELS == before


def test_a_16_bit_png_is_a_page(tmp_path):
    """The vendors' convert("RGB") opens 16-bit grayscale, and FLOPs depend only on the size."""
    path = tmp_path / "deep.png"
    Image.new("I;16", (8, 6)).save(path)  # 16-bit grayscale
    page = load_page(path)
    assert (page.width, page.height, page.mode) == (8, 6, "I;16")
    with open_page_image(path) as image:
        assert image.size == (8, 6)


@pytest.mark.parametrize("opener", [load_page, open_page_image])
def test_unsupported_mode(tmp_path, opener, monkeypatch):
    import harness.inputs.pages

    monkeypatch.setattr(harness.inputs.pages, "SUPPORTED_MODES", harness.inputs.pages.SUPPORTED_MODES - {"I;16"})
    path = tmp_path / "deep.png"
    Image.new("I;16", (8, 8)).save(path)
    _expect(path, r"unsupported image mode 'I;16'", opener=opener)


# ---- manifests -------------------------------------------------------------------------------

def _write(tmp_path: Path, data) -> Path:
    Image.new("RGB", (1654, 2339)).save(tmp_path / "a.jpg")
    path = tmp_path / "manifest.json"
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


def _entry(**info):
    base = {"width": 1654, "height": 2339, "image_path": "a.jpg", "page_no": 0,
            "page_attribute": {"data_source": "exam_paper"}}
    base.update(info)
    return {"layout_dets": [], "page_info": base}


@pytest.mark.parametrize("data, match", [
    ("{not json", "not valid JSON"),
    ({"page_info": {}}, "expected a JSON list"),
    ([{"layout_dets": []}], r"entry 0: expected an object with a 'page_info'"),
    ([_entry(width="1654")], r"entry 0: page_info.width must be a positive integer"),
    ([_entry(), _entry(height=0)], r"entry 1: page_info.height"),
    ([_entry(image_path=None)], r"page_info.image_path must be a non-empty string"),
    ([_entry(), _entry()], r"entry 1: page id 'a' repeats entry 0"),
])
def test_malformed_manifest(tmp_path, data, match):
    path = _write(tmp_path, data)
    with pytest.raises(ManifestError, match=match) as info:
        load_manifest(path)
    assert str(path) in str(info.value)


def test_missing_manifest(tmp_path):
    with pytest.raises(ManifestError, match="manifest not found"):
        load_manifest(tmp_path / "absent.json")


def test_omnidocbench_manifest_sizes_from_images(tmp_path):
    # the public OmniDocBench JSON has width/height swapped for some sources: the image wins
    path = _write(tmp_path, [_entry(width=80, height=60)])
    Image.new("RGB", (60, 80)).save(tmp_path / "a.jpg")
    warned = []
    (page,) = load_manifest(path, warn=warned.append)
    assert (page.width, page.height, page.category) == (60, 80, "exam_paper")
    assert page.attributes["manifest_size"] == (80, 60)
    assert warned == [f"{path}: 1 entry has width and height swapped against the image (known in "
                      "OmniDocBench's JSON); the image's size is used: a"]
    assert ensure_page_image(page) == tmp_path / "a.jpg"


def test_manifest_size_mismatch_names_both_sizes(tmp_path):
    path = _write(tmp_path, [_entry(width=4000, height=300)])
    Image.new("RGB", (800, 1000)).save(tmp_path / "a.jpg")
    with pytest.raises(ManifestError, match=r"entry 0: page_info says 4000x300 but the image .*a.jpg is "
                                            r"800x1000 \(after EXIF orientation\)"):
        load_manifest(path)
    (page,) = load_manifest(path, sizes_from_images=True, warn=lambda text: None)
    assert (page.width, page.height) == (800, 1000)


def test_manifest_image_missing_or_outside(tmp_path):
    path = _write(tmp_path, [_entry(image_path="gone.jpg")])
    with pytest.raises(ManifestError, match=r"entry 0: image .*gone.jpg: file not found; fix page_info.image_path"):
        load_manifest(path)
    for outside in ("../a.jpg", str(tmp_path.parent / "a.jpg"), "sub/../../a.jpg"):
        path = _write(tmp_path, [_entry(image_path=outside)])
        with pytest.raises(ManifestError, match=r"entry 0: page_info.image_path .* points outside the folder"):
            load_manifest(path)


def test_unknown_builtin_set():
    with pytest.raises(ValueError, match=r"Did you mean 'grid'\?.*Available: grid, corpus, default"):
        builtin_pages("gird")


def test_builtin_sets():
    grid = builtin_pages("grid")
    default = builtin_pages("default")
    assert [p.page_id for p in default] == ["letter", "a4", "slide", "small", "strip-h"]
    assert {p.page_id for p in default} <= {p.page_id for p in grid}
    ids = [p.page_id for p in grid]
    assert len(ids) == len(set(ids))
    assert {"letter", "a4", "huge", "letter-exif6", "mode-cmyk"} <= set(ids)
    letter = grid[ids.index("letter")]
    assert (letter.width, letter.height) == (1700, 2200)
    assert len(builtin_pages("corpus")) == pagesets.CORPUS_PAGES


def test_manifests_are_omnidocbench_shaped():
    for name in ("grid.json", "corpus.json"):
        entries = json.loads((fixtures_dir() / name).read_text())
        for n, entry in enumerate(entries):
            info = entry["page_info"]
            assert set(info) >= {"width", "height", "image_path", "page_no", "page_attribute"}
            assert info["page_no"] == n
            assert info["page_attribute"]["data_source"] in pagesets.OMNIDOCBENCH_V1_COUNTS


def test_committed_manifests_match_the_builders():
    try:
        built = pagesets.built_manifests()
    except FileNotFoundError as exc:
        pytest.skip(f"measured page sizes not available: {exc}")
    for name, text in built.items():
        committed = (fixtures_dir() / name).read_text()
        assert committed == text, f"fixtures/{name} is stale: run python -m harness.inputs.pagesets --write"


def test_drawing_is_deterministic_and_cache_is_redrawn(tmp_path, monkeypatch):
    monkeypatch.setenv("HARNESS_FIXTURE_CACHE", str(tmp_path))
    page = {p.page_id: p for p in builtin_pages("grid")}["small"]
    path = ensure_page_image(page)
    assert path.parent.parent == tmp_path
    first = open_page_image(path).tobytes()
    spec = pagegen.spec_from_entry({"page_info": {"width": 500, "height": 300},
                                     "harness": page.attributes["generator"]}, "grid")
    assert pagegen.render_page(spec).tobytes() == first
    # a stale cache file (wrong size) is replaced, not trusted
    Image.new("RGB", (10, 10)).save(path)
    assert load_page(ensure_page_image(page)).width == 500


def test_page_is_hashable_and_compares_by_identity_fields():
    a = Page("p", 10, 20, attributes={"x": 1})
    b = Page("p", 10, 20, attributes={"x": 2})
    assert a == b and hash(a) == hash(b)


# ---- header-only reads never decode ----------------------------------------------------------

def test_header_only_read_never_decodes(tmp_path, monkeypatch):
    """Size, EXIF orientation (even an eXIf chunk after the pixel data) and completeness, no decode."""
    from PIL import ImageFile

    from tests.test_inputs_cases import exif_after_idat, exif_jpeg, gif_frames, img, tiff_pages

    files = {img(tmp_path / "plain.png"): (300, 200), exif_after_idat(tmp_path / "late.png"): (200, 300), exif_jpeg(tmp_path / "turned.jpg"): (200, 300),
             gif_frames(tmp_path / "anim.gif"): (120, 80), tiff_pages(tmp_path / "pages.tif"): (300, 200)}

    class Decoded(BaseException):   # not an Exception: no "except Exception" on the way swallows it
        pass

    def no_decoding(self, *args, **kwargs):
        raise Decoded(f"{self.filename}: decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decoding)
    monkeypatch.setattr(Image.Image, "load", no_decoding)
    got = {path: (lambda p: (p.width, p.height))(load_page(path, decode=False, warn=lambda text: None))
           for path in files}
    assert got == files
    monkeypatch.undo()
    # and Pillow's own reading, with the decode, agrees on the late eXIf chunk
    assert open_page_image(tmp_path / "late.png").size == (200, 300)


def test_read_only_page_cache_names_the_setting(tmp_path, monkeypatch):
    import errno
    import tempfile

    monkeypatch.setenv("HARNESS_FIXTURE_CACHE", str(tmp_path / "cache"))
    page = {p.page_id: p for p in builtin_pages("grid")}["small"]

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(tempfile, "mkstemp", read_only)
    with pytest.raises(PageError, match=r"cannot draw built-in page 'small' into the page cache .*\(Read-only file "
                                        r"system\); set HARNESS_FIXTURE_CACHE to a writable directory"):
        ensure_page_image(page)


def test_page_modules_import_no_circle():
    """pagegen draws (imports nothing of the harness); pages -> pagegen; workload -> pages;
    pagesets -> pagegen, pages, workload. Imports inside functions count too."""
    import ast

    root = Path(__file__).resolve().parents[1] / "harness" / "inputs"
    modules = {"pagegen", "pages", "pagesets", "workload"}
    graph = {}
    for name in modules:
        tree = ast.parse((root / f"{name}.py").read_text())
        found = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module:
                parts = node.module.split(".")
                if parts[:2] == ["harness", "inputs"] and len(parts) > 2:
                    found.add(parts[2])
                elif node.module == "harness.inputs":
                    found.update(alias.name for alias in node.names)
            elif isinstance(node, ast.Import):
                found.update(a.name.split(".")[2] for a in node.names if a.name.startswith("harness.inputs."))
        graph[name] = found & modules
    assert graph == {"pagegen": set(), "pages": {"pagegen"}, "workload": {"pages"},
                     "pagesets": {"pagegen", "pages", "workload"}}
