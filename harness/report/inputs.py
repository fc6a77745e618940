"""What a report covers, resolved from the command line: pages, targets, modes, counters, device.

Every problem is an :class:`InputError` that names the input and says what to do; the CLI turns
it into exit code 2 before anything is measured or written.
"""

from __future__ import annotations

import importlib.util
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

from harness.inputs import selection
from harness.inputs.selection import split_names  # noqa: F401  (one vocabulary for the CLI and pytest)
from harness.inputs.pages import BUILTIN_SETS, ManifestError, Page, PageError
from harness.inputs.targets import DEFAULT_TARGET

__all__ = [
    "InputError",
    "CounterSpec",
    "TargetPlan",
    "ReportPlan",
    "IMAGE_SUFFIXES",
    "PAGE_SUFFIXES",
    "DEFAULT_TARGET",
    "COUNTER_PACKAGES",
    "resolve_pages",
    "resolve_targets",
    "resolve_modes",
    "resolve_counters",
    "resolve_device",
    "split_names",
    "names_given",
    "counter_installed",
    "unknown_name",
]

#: Image file name endings taken from a ``--pages`` directory (case-insensitive).
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
#: Everything a ``--pages`` directory contributes: images and PDFs (one page per PDF page).
PAGE_SUFFIXES = IMAGE_SUFFIXES + (".pdf",)
#: The target a report covers when none is named (needs nothing but the install).
#: counter -> (import name, distribution name, pip hint) of the package it needs.
COUNTER_PACKAGES: dict[str, tuple[str, str, str]] = {
    "torch": ("torch", "torch", "pip install torch"),
    "fvcore": ("fvcore", "fvcore", "pip install 'fvcore==0.1.5.post20221221' (or: pip install -e '.[counters]')"),
    "thop": ("thop", "ultralytics-thop", "pip install ultralytics-thop (or: pip install -e '.[counters]')"),
}
COUNTERS = tuple(COUNTER_PACKAGES)
VARIANTS = ("patched", "stock")


class InputError(ValueError):
    """A command-line input that cannot be used; the message names it and says what to do."""


def unknown_name(kind: str, name: str, known: Sequence[str], option: str) -> InputError:
    """The selection vocabulary's "unknown name" message (:mod:`harness.inputs.selection`) as an InputError."""
    return InputError(selection.unknown_name(kind, name, known, option))


# ---------------------------------------------------------------------------------------- pages
def names_given(values: Iterable[str] | str | None, option: str, example: str) -> list[str]:
    """:func:`split_names`, refusing an option given with nothing in it (``--modes ''``).

    An empty value is not "every": that is what leaving the option out means.
    """
    given = [values] if isinstance(values, str) else list(values or [])
    names = split_names(given)
    if given and not names:
        shown = ",".join(given)
        raise InputError(f"{option} {shown!r}: no name given; name at least one (e.g. {option} {example}) "
                         f"or leave {option} out for all of them")
    return names


_CONTROL = re.compile(r"[\x00-\x1f\x7f\u0085\u2028\u2029]")


def _check_page_ids(pages: list[Page], where: str) -> list[Page]:
    seen: dict[str, Page] = {}
    for page in pages:
        pid = page.page_id
        source = page.path if page.pdf_page is None else f"page {page.pdf_page} of {page.path}"
        if not pid or "/" in pid or "\\" in pid or pid.startswith("."):
            raise InputError(f"{where}: page id {pid!r} (from {source}) cannot name a report row; "
                             "rename the file (no leading dot, no path separators)")
        bad = _CONTROL.search(pid)
        if bad:
            raise InputError(f"{where}: page id {pid!r} (from {str(source)!r}) holds the control character "
                             f"{bad.group()!r}, which would break the report's tables and CSV; rename the file")
        if pid in seen:
            raise InputError(f"{where}: two pages have the id {pid!r} ({seen[pid].path} and {page.path}); "
                             "page ids come from file names without extension: rename one of them")
        seen[pid] = page
    return pages


def _bad_file(raw: str, exc: PageError) -> InputError:
    where = exc.path if exc.path is not None else raw
    if exc.problem.startswith(("not an image file", "not a regular file")):
        return InputError(f"--pages {where}: {exc.problem}. Pass image files Pillow can read, PDFs, directories "
                          "of them, or an OmniDocBench-style JSON manifest")
    return InputError(f"--pages {where}: {exc.problem}")


def _load_file(path: Path, raw: str, warn: Callable[[str], None]) -> list[Page]:
    from harness.inputs.pages import load_pages

    try:
        # headers and page boxes give the size the tilers see; pixels are never needed on meta
        return load_pages(path, warn=warn)
    except PageError as exc:
        raise _bad_file(raw, exc) from None


def _load_manifest(path: Path, warn: Callable[[str], None]) -> list[Page]:
    from harness.inputs.pages import load_manifest

    try:
        pages = load_manifest(path, warn=warn)
    except ManifestError as exc:
        text = str(exc)
        if any(word in text for word in ("not valid JSON", "expected", "must be")):   # its shape, not its images
            text += (". A manifest is OmniDocBench's JSON shape: a list of "
                     "{\"page_info\": {\"width\": W, \"height\": H, \"image_path\": \"...\"}}")
        raise InputError(f"--pages {text}") from None
    if not pages:
        raise InputError(f"--pages {path}: the manifest lists no pages")
    return pages


def _list_dir(path: Path, raw: str) -> tuple[list[Path], list[str]]:
    """The page files of a directory (images and PDFs, by name) and the names of what is skipped."""
    try:
        entries = sorted(path.iterdir())
    except PermissionError:
        raise InputError(f"--pages {raw}: permission denied: the directory cannot be listed; fix its "
                         "permissions (chmod +rx) or pass its files") from None
    except OSError as exc:
        raise InputError(f"--pages {raw}: cannot list the directory ({exc.strerror or exc})") from None
    files, skipped = [], []
    for entry in entries:
        try:
            is_file = entry.is_file()
            is_dir = not is_file and entry.is_dir()
        except OSError:
            is_file = is_dir = False
        if is_file and not entry.name.startswith(".") and (entry.suffix.lower() in PAGE_SUFFIXES
                                                           or _sniffs_as_page(entry)):
            files.append(entry)
        else:
            skipped.append(ascii(entry.name)[1:-1] + ("/" if is_dir else ""))
    return files, skipped


def _sniffs_as_page(path: Path) -> bool:
    """A file with another ending that Pillow identifies as an image, or that is a PDF (a scan
    saved as ``page.scan``, a PNG without an ending): what the vendor's ``Image.open`` would read."""
    from PIL import Image, UnidentifiedImageError

    from harness.inputs.pages import is_pdf

    try:
        if is_pdf(path):
            return True
        with Image.open(path) as image:
            return bool(image.format)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError):
        return False
    except Exception:
        return False


def resolve_pages(paths: Sequence[str | os.PathLike[str]] | None, page_set: str | None, *,
                  warnings: list[str] | None = None) -> tuple[list[Page], str]:
    """The pages of ``--pages`` (images, PDFs, directories, manifests) or of ``--page-set``.

    Returns the pages and a one-line description of where they came from. What the run goes on
    with despite it (skipped files, a file given twice, a multi-frame image, swapped manifest
    sizes) is appended to ``warnings``, one line each.
    """
    from harness.inputs.pages import SettingError, max_image_pixels

    notes = warnings if warnings is not None else []
    try:
        max_image_pixels()   # a bad setting is an error before any file is read
    except SettingError as exc:
        raise InputError(str(exc)) from None
    if paths and page_set:
        raise InputError("--pages and --page-set are exclusive: give page files/directories/manifests, "
                         "or a built-in set, not both")
    if paths and not [p for p in paths if str(p).strip()]:
        raise InputError("--pages: no path given; name page images, PDFs, directories or manifests, "
                         "or leave --pages out for the built-in default set")
    if not paths:
        name = page_set or "default"
        if name not in BUILTIN_SETS:
            raise unknown_name("page set", name, BUILTIN_SETS, "--page-set")
        from harness.inputs.pages import builtin_pages

        try:
            pages = builtin_pages(name)
        except (ManifestError, ValueError) as exc:
            raise InputError(f"--page-set {name}: {exc}") from None
        return _check_page_ids(pages, f"--page-set {name}"), f"built-in page set {name!r}"
    pages: list[Page] = []
    sources: list[str] = []
    taken: dict[str, str] = {}   # real path -> how it was first named

    def first_time(path: Path, named: str) -> bool:
        key = os.path.realpath(path)
        if key in taken:
            notes.append(f"--pages {named}: the same file as {taken[key]}, given twice; counted once")
            return False
        taken[key] = named
        return True

    for raw in paths:
        raw = str(raw)
        path = Path(raw).expanduser()
        try:
            exists, is_dir = path.exists(), path.is_dir()
        except PermissionError:
            raise InputError(f"--pages {raw}: permission denied: a directory on its path cannot be searched; "
                             "fix the permissions (chmod +x)") from None
        except OSError as exc:     # ELOOP, ENAMETOOLONG
            raise InputError(f"--pages {raw}: cannot look at it ({exc.strerror or exc})") from None
        if not exists:
            raise InputError(f"--pages {raw}: {_why_missing(path)}")
        if is_dir:
            files, skipped = _list_dir(path, raw)
            found = []
            for file in files:
                if first_time(file, str(file)):
                    found.extend(_load_file(file, str(file), notes.append))
            if skipped:
                notes.append(f"--pages {raw}: skipped {len(skipped)} entr{'y' if len(skipped) == 1 else 'ies'} "
                             f"that {'is' if len(skipped) == 1 else 'are'} not a page image or PDF "
                             f"({', '.join(PAGE_SUFFIXES)}; subdirectories are not searched): "
                             f"{', '.join(skipped)}")
            if not files:
                raise InputError(f"--pages {raw}: the directory holds no image files or PDFs "
                                 f"({', '.join(PAGE_SUFFIXES)})" + (f"; it holds {', '.join(skipped[:10])}"
                                                                    + (" ..." if len(skipped) > 10 else "")
                                                                    if skipped else ""))
            pages.extend(found)
            sources.append(f"{len(files)} file(s) in {path}")
        elif path.suffix.lower() == ".json":
            if first_time(path, raw):
                found = _load_manifest(path, notes.append)
                pages.extend(found)
                sources.append(f"manifest {path} ({len(found)} page(s))")
        elif first_time(path, raw):
            found = _load_file(path, raw, notes.append)
            pages.extend(found)
            sources.append(str(path) if len(found) == 1 and found[0].pdf_page is None
                           else f"{path} ({len(found)} PDF page(s))")
    return _check_page_ids(pages, "--pages"), "; ".join(sources)


def _why_missing(path: Path) -> str:
    """Why ``path`` does not exist: no such entry, or a symbolic link that leads nowhere (a loop, a
    dangling target), naming the link."""
    import errno

    for link in (path, *path.parents):
        try:
            if not link.is_symlink():
                continue
        except OSError:
            continue
        try:
            os.stat(link)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                return f"the symbolic link {link} is a loop (it points back to itself); fix or remove the link"
            if exc.errno == errno.ENOENT:
                return (f"the symbolic link {link} points to {os.readlink(link)}, which does not exist; fix the "
                        "link or pass the file itself")
    return "no such file or directory"


# ------------------------------------------------------------------------------------ targets
@dataclass
class TargetPlan:
    """One target of the report and whether its counters can run in this environment."""

    name: str
    modes: tuple[str, ...] = ()
    #: None: counters can run; otherwise why not (the analytic model and layouts still report).
    unavailable: str | None = None


def resolve_targets(names: Sequence[str] | None, model_path: str | None,
                    trust_remote_code: bool) -> list[TargetPlan]:
    """``--target`` names (default: ocr2, plus dsocr when ``--model-path`` names a directory)."""
    from harness.inputs.targets import FACTS, TARGETS

    wanted = names_given(names, "--target", DEFAULT_TARGET)
    for name in wanted:
        if name not in TARGETS:
            raise unknown_name("target", name, TARGETS, "--target")
    readers = [t for t in TARGETS if FACTS[t].needs_model_path]     # dsocr
    if not wanted:
        wanted = [DEFAULT_TARGET] + (readers if model_path else [])
    if model_path is not None and not set(readers) & set(wanted):
        raise InputError(f"--model-path {model_path}: only target {' or '.join(map(repr, readers))} reads a "
                         f"model directory, and --target {','.join(wanted)} leaves it out; add "
                         f"{readers[0]} to --target or drop --model-path")
    from harness.targets import target_class

    plans = []
    for name in wanted:
        if FACTS[name].needs_model_path:
            _check_dsocr_inputs(model_path, trust_remote_code)
        # the target's own rule (the suite gates on the same one)
        plans.append(TargetPlan(name, unavailable=target_class(name).environment_problem()))
    return plans


def _check_dsocr_inputs(model_path: str | None, trust_remote_code: bool) -> None:
    """Bad input for the vendor target (no directory, an incomplete one, no --trust-remote-code) raises."""
    from harness.targets.base import TargetError
    from harness.targets.vendor import VENDOR_ENV_VAR, find_model_dir

    path = model_path or os.environ.get(VENDOR_ENV_VAR)
    if not path:
        raise InputError("--target dsocr needs the vendor DeepSeek-OCR directory: pass --model-path DIR "
                         f"(config.json + remote code; weights optional) or set {VENDOR_ENV_VAR}, "
                         "and --trust-remote-code")
    # name what the user set: the option, or the environment variable it came from
    named = f"--model-path {path}" if model_path else f"{VENDOR_ENV_VAR}={path} (environment; no --model-path given)"
    try:
        find_model_dir(path)
    except TargetError as exc:
        text = str(exc)
        if not model_path:
            text = text.replace("--model-path", VENDOR_ENV_VAR)
        raise InputError(f"{named}: {text}") from None
    if not trust_remote_code:
        raise InputError(f"{named}: the vendor DeepSeek-OCR runs the Python files of that "
                         "directory; pass --trust-remote-code to allow it")


def resolve_modes(targets: list[TargetPlan], names: Sequence[str] | None) -> list[str]:
    """Fill each plan's modes from ``--modes`` (default: every mode of the target).

    A target none of whose modes is named is dropped from ``targets``; the returned notes say so.
    """
    from harness.inputs.workload import MODES

    wanted = names_given(names, "--modes", "base,gundam")
    every = list(dict.fromkeys(m for t in targets for m in MODES[t.name]))
    for name in wanted:
        if name not in every:
            raise unknown_name(f"mode of {', '.join(t.name for t in targets)}", name, every, "--modes")
    notes = []
    for plan in list(targets):
        plan.modes = tuple(MODES[plan.name]) if not wanted else tuple(m for m in wanted if m in MODES[plan.name])
        if not plan.modes:
            targets.remove(plan)
            notes.append(f"target {plan.name} left out: none of --modes {','.join(wanted)} is one of its modes "
                         f"({', '.join(MODES[plan.name])})")
    return notes


# ----------------------------------------------------------------------------------- counters
@dataclass(frozen=True, order=True)
class CounterSpec:
    """One counter column: a counter and its variant (``patched``: the suite's; ``stock``: as shipped)."""

    counter: str
    variant: str = "patched"

    @property
    def label(self) -> str:
        """``torch`` for the patched variant the suite asserts, ``torch stock`` for the stock one."""
        return self.counter if self.variant == "patched" else f"{self.counter} stock"

    @property
    def slug(self) -> str:
        return f"{self.counter}-{self.variant}"


def counter_installed(counter: str) -> str | None:
    """None when the counter's package imports here; otherwise what to install."""
    module, dist, hint = COUNTER_PACKAGES[counter]
    if importlib.util.find_spec(module) is None:
        return f"{dist} is not installed ({hint})"
    return None


#: Why the default leaves torch's stock variant out on meta (``--counters torch:stock`` counts it).
TORCH_STOCK_ON_META = (
    "not counted by default on meta: the two ops its patch adds formulas for never run there (SDPA "
    "decomposes to bmm on meta tensors; the experts run batched_mm), so stock equals patched; its "
    "blind spots show on real tensors (--device cpu) or with --counters torch:stock")


@dataclass
class CounterChoice:
    specs: list[CounterSpec] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)   # counter (or counter variant) -> why


def resolve_counters(names: Sequence[str] | None, device: str = "meta") -> CounterChoice:
    """``--counters``: ``NAME`` (patched and stock), ``NAME:patched`` or ``NAME:stock``.

    By default every counter whose package is installed, both variants (torch stock only off
    meta, see :data:`TORCH_STOCK_ON_META`); missing packages are skipped with a note. A counter
    named explicitly must be installed.
    """
    wanted = names_given(names, "--counters", "torch")
    choice = CounterChoice()
    if not wanted:
        for counter in COUNTERS:
            problem = counter_installed(counter)
            if problem:
                choice.skipped[counter] = problem
                continue
            for variant in VARIANTS:
                if counter == "torch" and variant == "stock" and device == "meta":
                    choice.skipped["torch stock"] = TORCH_STOCK_ON_META
                    continue
                choice.specs.append(CounterSpec(counter, variant))
        return choice
    for text in wanted:
        counter, _, variant = text.partition(":")
        if counter not in COUNTERS:
            raise unknown_name("counter", counter, COUNTERS, "--counters")
        if variant and variant not in VARIANTS:
            raise unknown_name(f"variant of {counter}", variant, VARIANTS, "--counters")
        problem = counter_installed(counter)
        if problem:
            raise InputError(f"--counters {text}: {problem}")
        for v in ([variant] if variant else VARIANTS):
            spec = CounterSpec(counter, v)
            if spec not in choice.specs:
                choice.specs.append(spec)
    return choice


# ------------------------------------------------------------------------------------- device
def resolve_device(text: str) -> str:
    """``meta`` (default), ``cpu`` or ``cuda[:N]``, checked by :func:`harness.inputs.device.check_device`."""
    from harness.inputs.device import DeviceError, check_device

    try:
        return check_device(text, "--device")
    except DeviceError as exc:
        raise InputError(str(exc)) from None


@dataclass
class ReportPlan:
    """Everything a report covers, resolved and checked."""

    pages: list[Page]
    pages_source: str
    targets: list[TargetPlan]
    counters: list[CounterSpec]
    skipped_counters: dict[str, str]
    device: str = "meta"
    page_set: str | None = None
    model_path: str | None = None
    trust_remote_code: bool = False
    plot_page: str | None = None
    command: str = ""
    notes: list[str] = field(default_factory=list)
    #: one line each: what the run goes on with about its inputs (skipped files, duplicates, ...)
    warnings: list[str] = field(default_factory=list)
    #: the ``--pages`` paths as given (files, directories, manifests): ``--out`` may hold none of them
    page_inputs: list[str] = field(default_factory=list)

    @property
    def stage_count(self) -> int:
        from harness.inputs.targets import TARGET_STAGES

        return max((len(TARGET_STAGES[t.name]) for t in self.targets), default=0)
