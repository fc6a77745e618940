"""Pages: loading page images the way the vendors do, with clear errors.

:func:`load_page` reads a file's size after its EXIF orientation (the size the vendors' tilers
see); :func:`open_page_image` returns the pixels as the vendors feed them (``ImageOps.exif_transpose``
then ``.convert("RGB")``). Every problem with a file is a :class:`PageError` naming the file.
"""

from __future__ import annotations

import json
import os
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from PIL import Image, ImageOps, UnidentifiedImageError

__all__ = [
    "Page",
    "PageError",
    "MAX_PIXELS_ENV_VAR",
    "SUPPORTED_MODES",
    "max_image_pixels",
    "load_page",
    "open_page_image",
    "oriented_size",
    "ManifestError",
    "BUILTIN_SETS",
    "fixtures_dir",
    "cache_dir",
    "load_manifest",
    "builtin_pages",
    "ensure_page_image",
]

#: Environment variable that raises (or lowers) the pixel limit of :func:`load_page` and
#: :func:`open_page_image`; ``0`` or ``none`` switches the limit off.
MAX_PIXELS_ENV_VAR = "HARNESS_MAX_IMAGE_PIXELS"
#: Pillow modes with a defined conversion to 8-bit RGB (what ``.convert("RGB")`` in the vendor
#: loaders produces). 16-bit and float modes (``I``, ``I;16``, ``F``) would be clipped to 0..255.
SUPPORTED_MODES = frozenset({"1", "L", "LA", "La", "P", "PA", "RGB", "RGBA", "RGBa", "RGBX", "CMYK",
                             "YCbCr", "LAB", "HSV"})
_EXIF_ORIENTATION = 0x0112
_SWAPPING_ORIENTATIONS = frozenset({5, 6, 7, 8})


class PageError(ValueError):
    """A page image that cannot be used; the message names the file and the problem."""

    def __init__(self, path: str | os.PathLike[str] | None, problem: str) -> None:
        self.path = None if path is None else Path(path)
        self.problem = problem
        where = f"{self.path}: " if self.path is not None else ""
        super().__init__(f"{where}{problem}")


@dataclass(frozen=True)
class Page:
    """One page: its id, its size after EXIF orientation (what the tilers see), its file.

    ``path`` is None for a manifest page whose image has not been generated yet (see
    :func:`harness.fixtures.ensure_page_image`); ``mode`` is the file's Pillow mode when known.
    """

    page_id: str
    width: int
    height: int
    path: Path | None = None
    mode: str | None = None
    category: str | None = None
    attributes: Mapping[str, Any] = field(default_factory=dict, compare=False, hash=False, repr=False)

    @property
    def pixels(self) -> int:
        """width x height."""
        return self.width * self.height


def max_image_pixels() -> int | None:
    """The pixel limit: ``$HARNESS_MAX_IMAGE_PIXELS`` if set, else Pillow's error threshold."""
    raw = os.environ.get(MAX_PIXELS_ENV_VAR)
    if raw is None or raw.strip() == "":
        pillow = Image.MAX_IMAGE_PIXELS
        return None if pillow is None else 2 * int(pillow)  # Pillow errors above 2x, warns above 1x
    if raw.strip().lower() in ("0", "none", "off"):
        return None
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{MAX_PIXELS_ENV_VAR}={raw!r}: expected an integer number of pixels "
                         "(or 0 / none for no limit)") from None
    if value < 0:
        raise ValueError(f"{MAX_PIXELS_ENV_VAR}={raw!r}: expected a non-negative integer")
    return value or None


def _too_large(path: Path, width: int, height: int, limit: int) -> PageError:
    return PageError(
        path, f"{width}x{height} = {width * height:,} pixels is over the limit of {limit:,} pixels "
        f"(decompression-bomb guard); set {MAX_PIXELS_ENV_VAR}=<pixels> (0 = no limit) or pass "
        "max_pixels= to allow it")


def oriented_size(image: Image.Image) -> tuple[int, int]:
    """(width, height) after the EXIF orientation is applied (5..8 swap the sides)."""
    width, height = image.size
    try:
        orientation = image.getexif().get(_EXIF_ORIENTATION)
    except Exception:  # a broken EXIF block: the vendor's exif_transpose would fail too
        orientation = None
    if orientation in _SWAPPING_ORIENTATIONS:
        return height, width
    return width, height


def _declared_size(path: Path) -> tuple[int, int] | None:
    """Width and height from a PNG, GIF or BMP header (Pillow refuses 0-pixel images unnamed)."""
    import struct

    try:
        with open(path, "rb") as f:
            head = f.read(32)
    except OSError:
        return None
    if head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR" and len(head) >= 24:
        return struct.unpack(">II", head[16:24])
    if head[:6] in (b"GIF87a", b"GIF89a") and len(head) >= 10:
        return struct.unpack("<HH", head[6:10])
    if head[:2] == b"BM" and len(head) >= 26:
        width, height = struct.unpack("<ii", head[18:26])
        return abs(width), abs(height)
    return None


def _open(path: str | os.PathLike[str], max_pixels: int | None | str) -> tuple[Path, Image.Image]:
    """Open the header with every failure mapped to PageError (no pixel decoding yet)."""
    p = Path(path)
    limit = max_image_pixels() if max_pixels == "env" else max_pixels
    if not p.exists():
        raise PageError(p, "file not found")
    if not p.is_file():
        raise PageError(p, "not a regular file")
    if p.stat().st_size == 0:
        raise PageError(p, "empty file (0 bytes)")
    saved = Image.MAX_IMAGE_PIXELS
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            # Our limit replaces Pillow's for this call; its global is restored right after.
            Image.MAX_IMAGE_PIXELS = None
            image = Image.open(p)
    except UnidentifiedImageError:
        declared = _declared_size(p)
        if declared is not None and 0 in declared:
            raise PageError(p, f"zero-size image ({declared[0]}x{declared[1]} in its header)") from None
        raise PageError(p, "not an image file Pillow can identify") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise PageError(p, f"unreadable image header ({type(exc).__name__}: {exc})") from None
    finally:
        Image.MAX_IMAGE_PIXELS = saved
    width, height = image.size
    if width <= 0 or height <= 0:
        image.close()
        raise PageError(p, f"zero-size image ({width}x{height})")
    if limit is not None and width * height > limit:
        image.close()
        raise _too_large(p, width, height, limit)
    if image.mode not in SUPPORTED_MODES:
        mode = image.mode
        image.close()
        raise PageError(p, f"unsupported image mode {mode!r}: no defined conversion to 8-bit RGB "
                        f"(supported: {', '.join(sorted(SUPPORTED_MODES))})")
    return p, image


def _decode(p: Path, image: Image.Image) -> None:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image.load()
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        image.close()
        problem = "truncated or corrupt image data" if "truncated" in str(exc) or isinstance(exc, EOFError) \
            else "corrupt image data"
        raise PageError(p, f"{problem} ({type(exc).__name__}: {exc})") from None


def load_page(path: str | os.PathLike[str], *, decode: bool = True,
              max_pixels: int | None | str = "env") -> Page:
    """The page's size after EXIF orientation and its mode; ``decode`` also checks the pixel data."""
    p, image = _open(path, max_pixels)
    try:
        width, height = oriented_size(image)
        if decode:
            _decode(p, image)
        return Page(page_id=p.stem, width=width, height=height, path=p, mode=image.mode)
    finally:
        image.close()


def open_page_image(path: str | os.PathLike[str], *, max_pixels: int | None | str = "env") -> Image.Image:
    """The pixels as the vendors feed them: EXIF-transposed, then converted to RGB."""
    p, image = _open(path, max_pixels)
    _decode(p, image)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            try:
                transposed = ImageOps.exif_transpose(image)
            except Exception:  # the vendor's load_image falls back to the untransposed image
                transposed = image
            rgb = transposed.convert("RGB")
    except (OSError, ValueError) as exc:
        raise PageError(p, f"cannot convert to RGB ({type(exc).__name__}: {exc})") from None
    finally:
        image.close()
    return rgb


# --------------------------------------------------------------------------------------------
# manifests and fixtures

#: Sets :func:`builtin_pages` knows: the committed manifests and the small default set.
BUILTIN_SETS = ("grid", "corpus", "default")
FIXTURES_ENV_VAR = "HARNESS_FIXTURES_DIR"
CACHE_ENV_VAR = "HARNESS_FIXTURE_CACHE"


class ManifestError(ValueError):
    """A manifest that is not OmniDocBench-shaped; the message names the file and the entry."""


def fixtures_dir() -> Path:
    """The committed ``fixtures/`` directory (``$HARNESS_FIXTURES_DIR`` overrides)."""
    env = os.environ.get(FIXTURES_ENV_VAR)
    return Path(env) if env else Path(__file__).resolve().parents[1] / "fixtures"


def cache_dir() -> Path:
    """Where fixture images are drawn on demand (``$HARNESS_FIXTURE_CACHE``, else fixtures/cache)."""
    env = os.environ.get(CACHE_ENV_VAR)
    return Path(env) if env else fixtures_dir() / "cache"


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def load_manifest(path: str | os.PathLike[str], *, images_dir: str | os.PathLike[str] | None = None,
                  sizes_from_images: bool = False) -> list[Page]:
    """Pages of an OmniDocBench-shaped JSON list (``[{"page_info": {...}}, ...]``).

    Image paths are resolved against ``images_dir`` (default: the manifest's directory). With
    ``sizes_from_images`` the size is read from each image header (after EXIF) instead of
    ``page_info`` (the public OmniDocBench JSON has width/height swapped for some sources); the
    manifest's own size is kept in ``attributes["manifest_size"]``.
    """
    p = Path(path)
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ManifestError(f"{p}: manifest not found") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ManifestError(f"{p}: not valid JSON ({exc})") from None
    if not isinstance(data, list):
        raise ManifestError(f"{p}: expected a JSON list of {{\"page_info\": ...}} entries, got "
                            f"{type(data).__name__}")
    root = Path(images_dir) if images_dir is not None else p.parent
    pages: list[Page] = []
    seen: dict[str, int] = {}
    for n, entry in enumerate(data):
        where = f"{p}: entry {n}"
        if not isinstance(entry, dict) or not isinstance(entry.get("page_info"), dict):
            raise ManifestError(f"{where}: expected an object with a 'page_info' object")
        info = entry["page_info"]
        for key in ("width", "height"):
            if not _positive_int(info.get(key)):
                raise ManifestError(f"{where}: page_info.{key} must be a positive integer, got "
                                    f"{info.get(key)!r}")
        image_path = info.get("image_path")
        if not isinstance(image_path, str) or not image_path:
            raise ManifestError(f"{where}: page_info.image_path must be a non-empty string, got "
                                f"{image_path!r}")
        attribute = info.get("page_attribute", {})
        if not isinstance(attribute, dict):
            raise ManifestError(f"{where}: page_info.page_attribute must be an object")
        gen = entry.get("harness", {})
        if not isinstance(gen, dict):
            raise ManifestError(f"{where}: 'harness' must be an object")
        page_id = gen.get("id") or Path(image_path).stem
        if not isinstance(page_id, str):
            raise ManifestError(f"{where}: harness.id must be a string")
        if page_id in seen:
            raise ManifestError(f"{where}: page id {page_id!r} repeats entry {seen[page_id]}")
        seen[page_id] = n
        width, height = info["width"], info["height"]
        attributes: dict[str, Any] = {"page_no": info.get("page_no", n), "page_attribute": attribute,
                                      "manifest": str(p)}
        if gen:
            attributes["generator"] = gen
        image = root / image_path
        mode = gen.get("mode")
        if sizes_from_images:
            loaded = load_page(image, decode=False)
            attributes["manifest_size"] = (width, height)
            width, height, mode = loaded.width, loaded.height, loaded.mode
        pages.append(Page(page_id=page_id, width=width, height=height, path=image, mode=mode,
                          category=attribute.get("data_source"), attributes=attributes))
    return pages


def builtin_pages(set_name: str) -> list[Page]:
    """The pages of a built-in set: ``grid``, ``corpus`` or ``default`` (images drawn on demand)."""
    from harness.fixtures import DEFAULT_SET

    if set_name not in BUILTIN_SETS:
        import difflib
        close = difflib.get_close_matches(set_name, BUILTIN_SETS, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"Unknown page set {set_name!r}.{hint} Available: {', '.join(BUILTIN_SETS)}")
    manifest = "grid" if set_name == "default" else set_name
    pages = load_manifest(fixtures_dir() / f"{manifest}.json", images_dir=cache_dir())
    if set_name == "default":
        by_id = {page.page_id: page for page in pages}
        return [by_id[page_id] for page_id in DEFAULT_SET]
    return pages


def ensure_page_image(page: Page) -> Path:
    """The page's image file, drawn into the cache first if it is a fixture not drawn yet."""
    from harness import fixtures

    gen = page.attributes.get("generator")
    if page.path is None:
        raise PageError(None, f"page {page.page_id!r} has no image path")
    if page.path.is_file() and page.path.stat().st_size > 0:
        if not gen:
            return page.path
        stored = tuple(gen.get("stored_size", ()))
        try:
            with Image.open(page.path) as im:
                if im.size == stored and im.mode == gen.get("mode", im.mode):
                    return page.path
        except (OSError, ValueError):
            pass  # a broken cache file: draw it again
    if not gen:
        raise PageError(page.path, f"image of page {page.page_id!r} is missing and the page has no "
                        "generator entry to draw it from")
    set_name = Path(str(page.attributes.get("manifest", "grid"))).stem
    spec = fixtures.spec_from_entry({"page_info": {"width": page.width, "height": page.height},
                                     "harness": gen}, set_name)
    page.path.parent.mkdir(parents=True, exist_ok=True)
    # Draw into a temporary file and rename: concurrent test workers never see half a file.
    fd, tmp = tempfile.mkstemp(dir=page.path.parent, suffix=page.path.suffix)
    os.close(fd)
    try:
        fixtures.save_page(spec, Path(tmp))
        os.replace(tmp, page.path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return page.path
