"""Pages: reading page images and PDFs the way the vendors do, with a clear verdict for each file.

:func:`load_page` reads a file's size after its EXIF orientation (the size the vendors' tilers
see) from the header only, and checks that the pixel data is all there without decoding it;
:func:`open_page_image` returns the pixels as the vendors feed them (``ImageOps.exif_transpose``
then ``.convert("RGB")``). :func:`load_pages` also reads PDFs: one page per PDF page, sized as
DeepSeek-OCR's PDF runner renders it (:data:`PDF_DPI`), from the page box alone.

Every problem with a file is a :class:`PageError` naming the file; every oddity the run survives
(a multi-frame image, a manifest's swapped sides, a repaired PDF) is one :class:`PageWarning`
line, sent to the ``warn`` callback of the loader (default: :func:`warnings.warn`).
"""

from __future__ import annotations

import json
import logging
import math
import os
import stat
import struct
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

from PIL import Image, ImageOps, UnidentifiedImageError

from harness.inputs.pagegen import save_page, spec_from_entry

__all__ = [
    "Page",
    "PageError",
    "PageWarning",
    "SettingError",
    "MAX_PIXELS_ENV_VAR",
    "SUPPORTED_MODES",
    "PDF_DPI",
    "max_image_pixels",
    "load_page",
    "load_pdf",
    "load_pages",
    "is_pdf",
    "open_page_image",
    "oriented_size",
    "pdf_pixel_size",
    "ManifestError",
    "BUILTIN_SETS",
    "DEFAULT_SET",
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
                             "YCbCr", "LAB", "HSV", "I", "F", "I;16", "I;16L", "I;16B", "I;16N"})
#: DeepSeek-OCR's PDF runner (``DeepSeek-OCR-vllm/run_dpsk_ocr_pdf.py``,
#: ``pdf_to_images_high_quality(pdf_path, dpi=144)``) renders each page with PyMuPDF at
#: ``fitz.Matrix(144 / 72, 144 / 72)``, ``alpha=False``, and feeds the pixmap unresized.
PDF_DPI = 144
_EXIF_ORIENTATION = 0x0112
_SWAPPING_ORIENTATIONS = frozenset({5, 6, 7, 8})
#: Why the first frame of a multi-frame file is the page (said once per such file).
FIRST_FRAME_WHY = ("the vendors open a page with PIL (Image.open, exif_transpose, convert('RGB')), "
                   "which reads the first frame only")


class PageError(ValueError):
    """A page file that cannot be used; the message names the file and the problem."""

    def __init__(self, path: str | os.PathLike[str] | None, problem: str) -> None:
        self.path = None if path is None else Path(path)
        self.problem = problem
        where = f"{self.path}: " if self.path is not None else ""
        super().__init__(f"{where}{problem}")


class PageWarning(UserWarning):
    """Something about a page file that the run goes on with (one line, naming the file)."""


class SettingError(ValueError):
    """An environment setting of the harness with a value it cannot use (names the variable)."""


Warn = Callable[[str], None]


def _default_warn(message: str) -> None:
    warnings.warn(message, PageWarning, stacklevel=3)


@dataclass(frozen=True)
class Page:
    """One page: its id, its size after EXIF orientation (what the tilers see), its file.

    ``path`` is None for a page known by its size only; a manifest page whose image is drawn
    on demand has its cache path (see :func:`ensure_page_image`). ``pdf_page`` is the 1-based
    page number when ``path`` is a PDF. ``mode`` is the file's Pillow mode when known.
    """

    page_id: str
    width: int
    height: int
    path: Path | None = None
    mode: str | None = None
    category: str | None = None
    attributes: Mapping[str, Any] = field(default_factory=dict, compare=False, hash=False, repr=False)
    pdf_page: int | None = None

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
        value = int(raw.strip().replace("_", ""))
    except ValueError:
        raise SettingError(f"{MAX_PIXELS_ENV_VAR}={raw!r}: expected a whole number of pixels (e.g. "
                           f"{MAX_PIXELS_ENV_VAR}=400000000), or 0 / none for no limit; fix or unset it") from None
    if value < 0:
        raise SettingError(f"{MAX_PIXELS_ENV_VAR}={raw!r}: expected a non-negative number of pixels "
                           "(0 = no limit); fix or unset it")
    return value or None


def _too_large(path: Path, width: int, height: int, limit: int) -> PageError:
    return PageError(
        path, f"{width}x{height} = {width * height:,} pixels is over the limit of {limit:,} pixels "
        f"(decompression-bomb guard); set {MAX_PIXELS_ENV_VAR}=<pixels> (0 = no limit) or pass "
        "max_pixels= to allow it")


def oriented_size(image: Image.Image) -> tuple[int, int]:
    """(width, height) after the EXIF orientation is applied (5..8 swap the sides)."""
    width, height = image.size
    if image.format == "TIFF":
        # Pillow's TIFF reader reports the oriented size already (and transposes at load): the
        # stored size is the header's ImageWidth x ImageLength
        stored = (getattr(image, "tag_v2", {}).get(256), getattr(image, "tag_v2", {}).get(257))
        if stored != (width, height):
            return width, height
    try:
        orientation = image.getexif().get(_EXIF_ORIENTATION)
    except Exception:  # a broken EXIF block: the vendor's exif_transpose would fail too
        orientation = None
    if orientation in _SWAPPING_ORIENTATIONS:
        return height, width
    return width, height


# ------------------------------------------------------------------------------ the file itself
def _check_file(p: Path) -> int:
    """The file's size; every reason it cannot be read is a PageError."""
    try:
        st = p.stat()
    except FileNotFoundError:
        raise PageError(p, "file not found") from None
    except PermissionError:
        raise PageError(p, "permission denied: its directory cannot be searched; fix the permissions "
                        "(chmod +x on the directory) or leave it out") from None
    except OSError as exc:
        raise PageError(p, f"cannot read it ({exc.strerror or exc})") from None
    if not stat.S_ISREG(st.st_mode):
        raise PageError(p, "not a regular file")
    if st.st_size == 0:
        raise PageError(p, "empty file (0 bytes)")
    return st.st_size


def _read_head(p: Path, n: int = 1024) -> bytes:
    try:
        with open(p, "rb") as f:
            return f.read(n)
    except PermissionError:
        raise PageError(p, "permission denied: the file cannot be read; make it readable "
                        "(chmod +r) or leave it out") from None
    except OSError as exc:
        raise PageError(p, f"cannot read it ({exc.strerror or exc})") from None


#: How image files start: a file that starts so is an image, whatever its first KB holds after
#: (a PNG text chunk may hold "%PDF-").
_IMAGE_MAGIC = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF87a", b"GIF89a", b"II*\x00", b"MM\x00*", b"BM")


def _pdf_head(head: bytes) -> bool:
    """``%PDF-`` in the first 1024 bytes, as readers allow, in a file that is not an image."""
    if head.startswith(_IMAGE_MAGIC) or (head[:4] == b"RIFF" and head[8:12] == b"WEBP"):
        return False
    return b"%PDF-" in head[:1024]


def is_pdf(path: str | os.PathLike[str]) -> bool:
    """Whether the file starts like a PDF (``%PDF-`` in its first 1024 bytes, as readers allow,
    unless it starts as an image file does)."""
    try:
        with open(path, "rb") as f:
            return _pdf_head(f.read(1024))
    except OSError:
        return Path(path).suffix.lower() == ".pdf"


def _declared_size(head: bytes) -> tuple[int, int] | None:
    """Width and height from a PNG, GIF or BMP header (Pillow refuses 0-pixel images unnamed)."""
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
    size = _check_file(p)
    head = _read_head(p)
    if _pdf_head(head):
        raise PageError(p, f"a PDF, not an image: its pages are read with load_pages() (--pages takes "
                        f"PDFs), each the size DeepSeek-OCR's PDF runner renders at {PDF_DPI} dpi")
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":   # Pillow's WebP reader decodes on open
        declared = struct.unpack("<I", head[4:8])[0] + 8
        if declared > size:
            raise _truncated(p, f"the WebP header declares {declared:,} bytes, the file has {size:,}")
    saved = Image.MAX_IMAGE_PIXELS
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            # Our limit replaces Pillow's for this call; its global is restored right after.
            Image.MAX_IMAGE_PIXELS = None
            image = Image.open(p)
    except UnidentifiedImageError:
        declared = _declared_size(head)
        if declared is not None and 0 in declared:
            raise PageError(p, f"zero-size image ({declared[0]}x{declared[1]} in its header)") from None
        raise PageError(p, "not an image file Pillow can identify") from None
    except PermissionError:
        raise PageError(p, "permission denied: the file cannot be read; make it readable (chmod +r) "
                        "or leave it out") from None
    except (OSError, SyntaxError, ValueError, EOFError, struct.error) as exc:
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


# ------------------------------------------------------------- header-only completeness checks
_EXPORT_AGAIN = "copy or export the image again"


def _truncated(p: Path, what: str) -> PageError:
    return PageError(p, f"truncated or corrupt image data: {what}; {_EXPORT_AGAIN}")


def _scan_png(p: Path, image: Image.Image, size: int) -> None:
    """Walk the PNG chunks (headers only: seek over the data) to the end chunk.

    Finds a cut (a chunk running past the end, no IEND), a PNG without pixel data (no IDAT),
    and any eXIf / XMP chunk after the pixel data, which Pillow reads only by decoding the whole
    image; they go into ``image.info`` as Pillow would put them.
    """
    seen_idat = False
    with open(p, "rb") as f:
        pos = 8
        while True:
            f.seek(pos)
            header = f.read(8)
            if len(header) < 8:
                if not seen_idat:
                    raise PageError(p, f"no pixel data (the PNG has no IDAT chunk); {_EXPORT_AGAIN}")
                raise _truncated(p, f"the file ends at byte {size:,} before the PNG end chunk (IEND)")
            length, kind = struct.unpack(">I4s", header)
            end = pos + 8 + length + 4
            if end > size:
                raise _truncated(p, f"the PNG {kind.decode('latin-1')!r} chunk at byte {pos:,} runs past the "
                                 f"end of the file ({size:,} bytes)")
            if kind in (b"IDAT", b"fdAT"):
                seen_idat = True
            elif kind == b"eXIf" and seen_idat and "exif" not in image.info:
                image.info["exif"] = b"Exif\x00\x00" + f.read(length)
            elif kind == b"iTXt" and seen_idat and length < (1 << 20):
                data = f.read(length)
                keyword, _, rest = data.partition(b"\x00")
                # compression flag 0: the XMP packet is plain text after three more fields
                if keyword == b"XML:com.adobe.xmp" and rest[:1] == b"\x00":
                    parts = rest[2:].split(b"\x00", 2)
                    if len(parts) == 3:
                        image.info.setdefault("XML:com.adobe.xmp", parts[2].decode("utf-8", "replace"))
            elif kind == b"IEND":
                if not seen_idat:
                    raise PageError(p, f"no pixel data (the PNG has no IDAT chunk); {_EXPORT_AGAIN}")
                return
            pos = end


def _scan_for(p: Path, start: int, needle: bytes, chunk: int = 1 << 20) -> bool:
    with open(p, "rb") as f:
        f.seek(start)
        tail = b""
        while True:
            block = f.read(chunk)
            if not block:
                return False
            if needle in tail + block:
                return True
            tail = block[-(len(needle) - 1):]


def _check_complete(p: Path, image: Image.Image, size: int) -> None:
    """Is all the pixel data there? Read from the file's structure, never by decoding."""
    fmt = image.format
    if fmt == "PNG":
        _scan_png(p, image, size)
        return
    tile_offset = image.tile[0][2] if image.tile else 0
    if fmt in ("JPEG", "MPO"):
        # the entropy-coded data never holds FF D9 (0xFF is stuffed): the end-of-image marker after
        # the scan start is the end of the image; a cut file has none
        with open(p, "rb") as f:
            f.seek(max(tile_offset, size - 4096))
            ends_well = f.read().rstrip(b"\x00").endswith(b"\xff\xd9")   # the usual case: no scan needed
        if not ends_well and not _scan_for(p, tile_offset, b"\xff\xd9"):
            raise _truncated(p, "no JPEG end-of-image marker (FF D9) after the image data; the file was cut short")
    elif fmt == "GIF":
        with open(p, "rb") as f:
            f.seek(max(0, size - 4096))
            if f.read().rstrip(b"\x00")[-1:] != b";":
                raise _truncated(p, "no GIF trailer (3B) at the end of the file; the file was cut short")
    elif fmt == "BMP" and image.tile and image.tile[0][0] == "raw":
        args = image.tile[0][3]
        stride = args[1] if isinstance(args, tuple) and len(args) > 1 and isinstance(args[1], int) else 0
        needed = tile_offset + abs(stride) * image.size[1]
        if stride and needed > size:
            raise _truncated(p, f"the BMP needs {needed:,} bytes of pixel data, the file has {size:,}")
    elif fmt == "TIFF":
        tags = getattr(image, "tag_v2", {})
        offsets = tags.get(273) or tags.get(324) or ()
        counts = tags.get(279) or tags.get(325) or ()
        for offset, count in zip(offsets, counts):
            if offset + count > size:
                raise _truncated(p, f"a TIFF strip ends at byte {offset + count:,}, the file has {size:,}")


def _frames(p: Path, image: Image.Image) -> int:
    try:
        return int(getattr(image, "n_frames", 1) or 1)
    except (OSError, EOFError, ValueError, struct.error) as exc:
        raise _truncated(p, f"cannot walk its frames ({type(exc).__name__}: {exc})") from None


def _orientation_size(image: Image.Image) -> tuple[int, int]:
    """:func:`oriented_size` without Pillow's PNG ``getexif``, which decodes the whole image."""
    if image.format == "PNG":
        width, height = image.size
        try:
            orientation = Image.Image.getexif(image).get(_EXIF_ORIENTATION)
        except Exception:
            orientation = None
        return (height, width) if orientation in _SWAPPING_ORIENTATIONS else (width, height)
    return oriented_size(image)


def _decode(p: Path, image: Image.Image) -> None:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image.load()
    except (OSError, SyntaxError, ValueError, EOFError, struct.error) as exc:
        image.close()
        problem = "truncated or corrupt image data" if "truncated" in str(exc) or isinstance(exc, EOFError) \
            else "corrupt image data"
        raise PageError(p, f"{problem} ({type(exc).__name__}: {exc})") from None


def load_page(path: str | os.PathLike[str], *, decode: bool = True,
              max_pixels: int | None | str = "env", warn: Warn | None = None) -> Page:
    """The page's size after EXIF orientation and its mode.

    ``decode=False`` reads headers only (the file's structure says whether the pixel data is all
    there, e.g. every PNG chunk up to IEND); ``decode=True`` also decodes the pixels. A file of
    several frames (animated GIF/PNG/WebP, multi-page TIFF) is its first frame, said in one
    warning line.
    """
    p, image = _open(path, max_pixels)
    try:
        size = p.stat().st_size
        if decode:
            _decode(p, image)
            width, height = oriented_size(image)
        else:
            _check_complete(p, image, size)
            width, height = _orientation_size(image)
        frames = _frames(p, image)
        attributes: dict[str, Any] = {}
        if frames > 1:
            attributes["frames"] = frames
            (warn or _default_warn)(f"{p}: {frames} frames ({image.format}); frame 1 is the page "
                                    f"({width}x{height}): {FIRST_FRAME_WHY}")
        return Page(page_id=p.stem, width=width, height=height, path=p, mode=image.mode,
                    attributes=attributes)
    finally:
        image.close()


# ------------------------------------------------------------------------------------------- PDF
def _f32(x: float) -> float:
    return struct.unpack("f", struct.pack("f", x))[0]


def pdf_pixel_size(media: Any, crop: Any = None, rotate: Any = 0, user_unit: Any = 1,
                   dpi: int = PDF_DPI) -> tuple[int, int]:
    """Pixel size PyMuPDF renders a PDF page at ``dpi``, from the page dictionary's entries.

    MuPDF: the visible box is the CropBox clipped to the MediaBox (a missing or empty box is US
    Letter, 612x792 pt; a side under 1 pt is 1 pt), scaled by /UserUnit, turned by /Rotate snapped
    to a multiple of 90; the pixmap is that box times ``dpi / 72``, rounded outwards with
    MuPDF's 0.001 px tolerance (``fz_round_rect``), in single precision.
    """
    def rect(value: Any) -> tuple[float, float, float, float] | None:
        try:
            x0, y0, x1, y1 = (_f32(float(v)) for v in value)
        except (TypeError, ValueError):
            return None
        if not all(math.isfinite(v) for v in (x0, y0, x1, y1)):
            return None
        return min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)

    def empty(r: tuple[float, float, float, float] | None) -> bool:
        return r is None or r[0] >= r[2] or r[1] >= r[3]

    box = rect(media)
    if empty(box):
        box = (0.0, 0.0, 612.0, 792.0)
    cropped = rect(crop) if crop is not None else None
    if crop is not None and cropped is not None:
        box = (max(box[0], cropped[0]), max(box[1], cropped[1]), min(box[2], cropped[2]), min(box[3], cropped[3]))
        if empty(box):
            box = (0.0, 0.0, 612.0, 792.0)
    width, height = _f32(box[2] - box[0]), _f32(box[3] - box[1])
    if width < 1 or height < 1:
        width, height = 1.0, 1.0
    try:
        unit = float(user_unit) if user_unit is not None else 1.0
    except (TypeError, ValueError):
        unit = 1.0
    try:
        turn = int(rotate or 0)
    except (TypeError, ValueError):
        turn = 0
    turn = 360 - ((-turn) % 360) if turn < 0 else turn % 360
    turn = 90 * ((turn + 45) // 90) % 360
    if turn in (90, 270):
        width, height = height, width
    zoom = _f32(dpi / 72.0)
    pixels = [math.ceil(_f32(_f32(_f32(side * unit) * zoom) - _f32(0.001))) for side in (width, height)]
    return pixels[0], pixels[1]


class _LogRecords(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def _pdf_problem(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return f"broken PDF: it cannot be parsed ({text}); repair it (e.g. qpdf in.pdf out.pdf) or export it again"


def load_pdf(path: str | os.PathLike[str], *, dpi: int = PDF_DPI, max_pixels: int | None | str = "env",
             warn: Warn | None = None) -> list[Page]:
    """One page per PDF page, ``<stem>-p001`` ..., sized as the vendor renders it (no rendering).

    Only the page dictionaries are read (boxes, /Rotate, /UserUnit; see :func:`pdf_pixel_size`).
    An encrypted PDF opens when its user password is empty (as ``fitz.open`` does); otherwise it
    is an error, as are a broken file and a PDF without pages.
    """
    p = Path(path)
    limit = max_image_pixels() if max_pixels == "env" else max_pixels
    _check_file(p)
    head = _read_head(p)
    if b"%PDF-" not in head:
        raise PageError(p, "not a PDF (no %PDF- header in its first 1024 bytes)")
    try:
        import pypdf
        from pypdf.errors import DependencyError, FileNotDecryptedError, PyPdfError
    except ImportError:  # pragma: no cover - a dependency of the harness
        raise PageError(p, "reading PDF pages needs pypdf (a dependency of the harness): pip install pypdf") from None
    records = _LogRecords()
    logger = logging.getLogger("pypdf")
    saved_level, saved_propagate = logger.level, logger.propagate
    logger.addHandler(records)
    logger.setLevel(logging.WARNING)
    logger.propagate = False
    try:
        try:
            reader = pypdf.PdfReader(p, strict=False)
        except PermissionError:
            raise PageError(p, "permission denied: the file cannot be read; make it readable (chmod +r)") from None
        except (PyPdfError, ValueError, KeyError, TypeError, AttributeError, IndexError, RecursionError,
                struct.error, OSError) as exc:
            raise PageError(p, _pdf_problem(exc)) from None
        if reader.is_encrypted:
            try:
                opened = reader.decrypt("")
            except DependencyError:
                raise PageError(p, "encrypted with AES and an empty password: reading it needs the "
                                "'cryptography' package (pip install cryptography), or decrypt it first "
                                "(qpdf --decrypt in.pdf out.pdf)") from None
            except (PyPdfError, ValueError, KeyError, TypeError, NotImplementedError) as exc:
                raise PageError(p, f"encrypted in a way that cannot be opened ({exc}); decrypt it first "
                                "(qpdf --decrypt --password=PASSWORD in.pdf out.pdf)") from None
            if not opened:
                raise PageError(p, "encrypted: it needs a password to open, so no renderer (the vendor's "
                                "fitz.open included) can draw its pages; decrypt it first (qpdf --decrypt "
                                "--password=PASSWORD in.pdf out.pdf)")
        try:
            count = len(reader.pages)
            boxes = []
            for page in reader.pages:
                boxes.append((page.get("/MediaBox"), page.get("/CropBox"), page.get("/Rotate", 0),
                              page.get("/UserUnit", 1)))
        except FileNotDecryptedError:
            raise PageError(p, "encrypted: decrypt it first (qpdf --decrypt --password=PASSWORD in.pdf out.pdf)") from None
        except (PyPdfError, ValueError, KeyError, TypeError, AttributeError, IndexError, RecursionError,
                struct.error, OSError) as exc:
            raise PageError(p, _pdf_problem(exc)) from None
    finally:
        logger.removeHandler(records)
        logger.setLevel(saved_level)
        logger.propagate = saved_propagate
    if count == 0:
        raise PageError(p, "empty PDF: it has no pages; pass a PDF with at least one page")
    if records.messages:
        first = records.messages[0].strip().splitlines()[0]
        (warn or _default_warn)(f"{p}: damaged PDF, read after repair ({len(records.messages)} problem(s), "
                                f"first: {first}); page sizes are those of the repaired file, as a "
                                "renderer that repairs (fitz) would see them")
    width_digits = max(3, len(str(count)))
    pages = []
    for n, (media, crop, rotate, unit) in enumerate(boxes, start=1):
        try:
            media_box = [float(v) for v in media] if media is not None else None
            crop_box = [float(v) for v in crop] if crop is not None else None
        except (TypeError, ValueError):
            media_box, crop_box = None, None
        width, height = pdf_pixel_size(media_box, crop_box, rotate, unit, dpi)
        if limit is not None and width * height > limit:
            raise PageError(p, f"page {n}: rendered at {dpi} dpi it is {width}x{height} = {width * height:,} "
                            f"pixels, over the limit of {limit:,}; set {MAX_PIXELS_ENV_VAR}=<pixels> "
                            "(0 = no limit) to allow it")
        pages.append(Page(page_id=f"{p.stem}-p{n:0{width_digits}d}", width=width, height=height, path=p,
                          mode="RGB", pdf_page=n,
                          attributes={"pdf_page": n, "pdf_pages": count, "dpi": dpi,
                                      "media_box": media_box, "crop_box": crop_box}))
    return pages


def load_pages(path: str | os.PathLike[str], *, max_pixels: int | None | str = "env",
               warn: Warn | None = None) -> list[Page]:
    """The pages of one file: every page of a PDF, or the image (headers only, see :func:`load_page`)."""
    p = Path(path)
    _check_file(p)
    if _pdf_head(_read_head(p)):
        return load_pdf(p, max_pixels=max_pixels, warn=warn)
    return [load_page(p, decode=False, max_pixels=max_pixels, warn=warn)]


def _render_pdf_page(page: Page) -> Image.Image:
    """The page rendered as the vendor does (PyMuPDF at :data:`PDF_DPI`, no alpha), as RGB."""
    try:
        import pymupdf as fitz  # the vendor's renderer
    except ImportError:
        try:
            import fitz  # type: ignore[no-redef]
        except ImportError:
            raise PageError(page.path, f"page {page.pdf_page}: rendering a PDF page needs PyMuPDF, the "
                            "vendor's renderer (pip install pymupdf); the layouts and the counts on the "
                            "meta device need only its size") from None
    dpi = int(page.attributes.get("dpi", PDF_DPI))
    with fitz.open(str(page.path)) as document:
        pixmap = document[page.pdf_page - 1].get_pixmap(matrix=fitz.Matrix(dpi / 72.0, dpi / 72.0), alpha=False)
        image = Image.frombytes("RGB", (pixmap.width, pixmap.height), pixmap.samples)
    return image


def open_page_image(path: str | os.PathLike[str] | Page, *, max_pixels: int | None | str = "env") -> Image.Image:
    """The pixels as the vendors feed them: EXIF-transposed, then converted to RGB.

    A :class:`Page` of a PDF is rendered as DeepSeek-OCR's PDF runner does; a built-in page is
    drawn into the cache first.
    """
    if isinstance(path, Page):
        if path.pdf_page is not None:
            return _render_pdf_page(path)
        path = ensure_page_image(path) if path.attributes.get("generator") else path.path
        if path is None:
            raise PageError(None, "the page has no file")
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
# manifests and the built-in sets

#: Sets :func:`builtin_pages` knows: the committed manifests and the small default set.
BUILTIN_SETS = ("grid", "corpus", "default")
#: The pages of the ``default`` set (ids in ``fixtures/grid.json``).
DEFAULT_SET = ("letter", "a4", "slide", "small", "strip-h")
FIXTURES_ENV_VAR = "HARNESS_FIXTURES_DIR"
CACHE_ENV_VAR = "HARNESS_FIXTURE_CACHE"


class ManifestError(ValueError):
    """A manifest that is not OmniDocBench-shaped; the message names the file and the entry."""


def fixtures_dir() -> Path:
    """The committed ``fixtures/`` directory (``$HARNESS_FIXTURES_DIR`` overrides)."""
    env = os.environ.get(FIXTURES_ENV_VAR)
    return Path(env) if env else Path(__file__).resolve().parents[2] / "fixtures"


def cache_dir() -> Path:
    """Where fixture images are drawn on demand (``$HARNESS_FIXTURE_CACHE``, else fixtures/cache)."""
    env = os.environ.get(CACHE_ENV_VAR)
    return Path(env) if env else fixtures_dir() / "cache"


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _read_manifest(p: Path) -> Any:
    try:
        raw = p.read_bytes()
    except FileNotFoundError:
        raise ManifestError(f"{p}: manifest not found") from None
    except PermissionError:
        raise ManifestError(f"{p}: permission denied: the manifest cannot be read; make it readable "
                            "(chmod +r)") from None
    except IsADirectoryError:
        raise ManifestError(f"{p}: a directory, not a manifest file") from None
    except OSError as exc:
        raise ManifestError(f"{p}: cannot read the manifest ({exc.strerror or exc})") from None
    try:
        text = raw.decode("utf-8-sig")   # a UTF-8 byte-order mark, as some editors write, is fine
    except UnicodeDecodeError as exc:
        raise ManifestError(f"{p}: not UTF-8 text ({exc}); save the manifest as UTF-8") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ManifestError(f"{p}: not valid JSON ({exc})") from None


def _inside(root: Path, image_path: str) -> bool:
    base = os.path.normpath(os.path.abspath(root))
    target = os.path.normpath(os.path.abspath(os.path.join(root, image_path)))
    return target == base or target.startswith(base.rstrip(os.sep) + os.sep)


def load_manifest(path: str | os.PathLike[str], *, images_dir: str | os.PathLike[str] | None = None,
                  sizes_from_images: bool = False, warn: Warn | None = None,
                  generators: bool = False) -> list[Page]:
    """Pages of an OmniDocBench-shaped JSON list (``[{"page_info": {...}}, ...]``).

    Image paths are relative to ``images_dir`` (default: the manifest's directory) and must stay
    inside it. Each entry's image must exist, unless the entry says how to draw it (``harness``
    block: the built-in sets); its header is read and its size must be the manifest's. The public
    OmniDocBench JSON has width and height swapped for some sources: a swapped entry takes the
    image's size, said in one warning line for the manifest; any other mismatch is an error naming
    both sizes (``sizes_from_images=True`` takes the image's size for any mismatch, with the
    warning). The manifest's own size is kept in ``attributes["manifest_size"]``.

    ``harness`` blocks (how a built-in page is drawn) are honoured only with ``generators=True``
    (:func:`builtin_pages`, whose images live in the harness's own cache). In any other manifest
    (a copy of ``fixtures/grid.json``, say) they are ignored, with one warning line: its images are
    the user's, read as they are and never drawn over.
    """
    p = Path(path)
    data = _read_manifest(p)
    if not isinstance(data, list):
        raise ManifestError(f"{p}: expected a JSON list of {{\"page_info\": ...}} entries, got "
                            f"{type(data).__name__}")
    root = Path(images_dir) if images_dir is not None else p.parent
    pages: list[Page] = []
    seen: dict[str, int] = {}
    swapped: list[str] = []
    differing: list[str] = []
    ignored: list[str] = []
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
        if not _inside(root, image_path):
            raise ManifestError(f"{where}: page_info.image_path {image_path!r} points outside the folder "
                                f"{root}; image paths are relative to it (move the image into it, or "
                                "the manifest next to the images)")
        attribute = info.get("page_attribute", {})
        if not isinstance(attribute, dict):
            raise ManifestError(f"{where}: page_info.page_attribute must be an object")
        gen = entry.get("harness", {})
        if not generators:
            if "harness" in entry:
                ignored.append(image_path)
            gen = {}
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
                                      "manifest": str(p), "manifest_size": (width, height)}
        if gen:
            attributes["generator"] = gen
        image = root / image_path
        mode = gen.get("mode")
        if not gen:
            try:
                loaded = load_page(image, decode=False, warn=warn)
            except PageError as exc:
                raise ManifestError(f"{where}: image {image}: {exc.problem}"
                                    + ("; fix page_info.image_path or add the image" if exc.problem ==
                                       "file not found" else "")) from None
            mode = loaded.mode
            if (loaded.width, loaded.height) != (width, height):
                if (loaded.height, loaded.width) == (width, height):
                    swapped.append(page_id)
                elif sizes_from_images:
                    differing.append(f"{page_id} ({width}x{height} -> {loaded.width}x{loaded.height})")
                else:
                    raise ManifestError(
                        f"{where}: page_info says {width}x{height} but the image {image} is "
                        f"{loaded.width}x{loaded.height} (after EXIF orientation); fix page_info.width/"
                        "height or the image_path")
                width, height = loaded.width, loaded.height
            if loaded.attributes.get("frames"):
                attributes["frames"] = loaded.attributes["frames"]
        pages.append(Page(page_id=page_id, width=width, height=height, path=image, mode=mode,
                          category=attribute.get("data_source"), attributes=attributes))
    if ignored:
        (warn or _default_warn)(
            f"{p}: {len(ignored)} entr{'y has' if len(ignored) == 1 else 'ies have'} a 'harness' block (how "
            "the built-in page sets draw their pages); it is ignored: the images page_info.image_path names "
            "are read as they are, never drawn (for the built-in pages, use --page-set)")
    if swapped:
        (warn or _default_warn)(
            f"{p}: {len(swapped)} entr{'y has' if len(swapped) == 1 else 'ies have'} width and height "
            f"swapped against the image (known in OmniDocBench's JSON); the image's size is used: "
            f"{', '.join(swapped)}")
    if differing:
        (warn or _default_warn)(f"{p}: the image's size is used where page_info differs: {', '.join(differing)}")
    return pages


def builtin_pages(set_name: str) -> list[Page]:
    """The pages of a built-in set: ``grid``, ``corpus`` or ``default`` (images drawn on demand)."""
    if set_name not in BUILTIN_SETS:
        import difflib
        close = difflib.get_close_matches(set_name, BUILTIN_SETS, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"Unknown page set {set_name!r}.{hint} Available: {', '.join(BUILTIN_SETS)}")
    manifest = "grid" if set_name == "default" else set_name
    pages = load_manifest(fixtures_dir() / f"{manifest}.json", images_dir=cache_dir(), generators=True)
    if set_name == "default":
        by_id = {page.page_id: page for page in pages}
        return [by_id[page_id] for page_id in DEFAULT_SET]
    return pages


def ensure_page_image(page: Page) -> Path:
    """The page's image file, drawn into the cache first if it is a fixture not drawn yet."""
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
    spec = spec_from_entry({"page_info": {"width": page.width, "height": page.height}, "harness": gen}, set_name)
    tmp = None
    try:
        page.path.parent.mkdir(parents=True, exist_ok=True)
        # Draw into a temporary file and rename: concurrent test workers never see half a file.
        fd, tmp = tempfile.mkstemp(dir=page.path.parent, suffix=page.path.suffix)
        os.close(fd)
        save_page(spec, Path(tmp))
        os.chmod(tmp, 0o644)      # mkstemp's 0600 is for the drawing, not the page
        os.replace(tmp, page.path)
    except OSError as exc:
        raise PageError(page.path, f"cannot draw built-in page {page.page_id!r} into the page cache "
                        f"{page.path.parent} ({exc.strerror or exc}); set {CACHE_ENV_VAR} to a writable "
                        "directory (drawn pages are cached there)") from None
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
    return page.path
