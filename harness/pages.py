"""Pages: loading page images the way the vendors do, with clear errors.

:func:`load_page` reads a file's size after its EXIF orientation (the size the vendors' tilers
see); :func:`open_page_image` returns the pixels as the vendors feed them (``ImageOps.exif_transpose``
then ``.convert("RGB")``). Every problem with a file is a :class:`PageError` naming the file.
"""

from __future__ import annotations

import os
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
