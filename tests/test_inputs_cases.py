"""Every kind of input a new user may give, and its verdict: exit code and the one line it prints.

Each case builds its input in a temporary directory, runs the ``harness`` command line in this
process and checks the exit code and the message: exit 2 with an error that names the input and
the fix, or exit 0 with exactly the expected warning lines (the run goes on). The page cases run
``harness layout`` (no model); the ``--out`` cases run ``harness report``, which checks its output
directory before any work, so they fail in well under a second. docs/inputs.md has the table.
"""

from __future__ import annotations

import builtins
import errno
import io
import json
import os
import re
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pytest
from PIL import Image

from harness.cli import main
from tests.test_inputs_pdf import write_pdf
from harness.report.output import write_manifest

LAYOUT = ["layout", "--target", "ocr2", "--modes", "base"]


def png_bytes(width: int, height: int, chunks: list[tuple[bytes, bytes]] | None = None) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    body = chunks if chunks is not None else [(b"IDAT", zlib.compress(b"\x00" * (1 + 3 * width) * height))]
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + b"".join(chunk(k, d) for k, d in body) + chunk(b"IEND", b"")


def img(path: Path, size=(300, 200), fmt=None, **save) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, "white").save(path, fmt, **save)
    return path


def cut(path: Path) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def noise(path: Path, size=(256, 256), fmt=None) -> Path:
    Image.effect_noise(size, 64).convert("RGB").save(path, fmt)
    return path


def gif_frames(path: Path, n: int = 3) -> Path:
    frames = [Image.new("RGB", (120, 80), (60 * i, 255 - 60 * i, 0)) for i in range(n)]
    frames[0].save(path, save_all=True, append_images=frames[1:])
    return path


def tiff_pages(path: Path) -> Path:
    Image.new("RGB", (300, 200)).save(path, save_all=True, append_images=[Image.new("RGB", (50, 40))])
    return path


def exif_jpeg(path: Path) -> Path:
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.new("RGB", (300, 200)).save(path, exif=exif.tobytes())
    return path


def exif_after_idat(path: Path) -> Path:
    """A PNG whose eXIf chunk (orientation 6) follows the pixel data: Pillow finds it only on load."""
    exif = Image.Exif()
    exif[0x0112] = 6
    raw = png_bytes(300, 200)
    data = exif.tobytes()[6:]   # the chunk holds the TIFF structure without the "Exif\0\0" prefix
    chunk = struct.pack(">I", len(data)) + b"eXIf" + data + struct.pack(">I", zlib.crc32(b"eXIf" + data))
    path.write_bytes(raw[:-12] + chunk + raw[-12:])
    return path


def manifest(tmp: Path, entries: list[dict], *, name="m.json", bom=False, encoding="utf-8") -> Path:
    path = tmp / name
    text = json.dumps(entries)
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + text.encode(encoding))
    return path


def entry(image_path="a.png", width=300, height=200) -> dict:
    return {"layout_dets": [], "page_info": {"width": width, "height": height, "image_path": image_path,
                                             "page_no": 0, "page_attribute": {"data_source": "book"}}}


def previous_report(out: Path, extra: dict[str, str] | None = None) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    files = ["report.md", "report.json", "report.csv", "static_compute.json", "static_compute.md"]
    (out / "report.json").write_text(json.dumps({"schema": "harness.report/1",   # as run_report writes it
                                                 "summary": {"files": files, "plots": ["decode_ocr2.png"]}}))
    for name in ("report.md", "report.csv", "static_compute.json", "static_compute.md", "decode_ocr2.png"):
        (out / name).write_text("old")
    write_manifest(out)     # what ReportDir.commit writes last: the report's own files, by content
    for name, text in (extra or {}).items():
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_text(text)
    return out


def deny(monkeypatch, target: Path) -> None:
    """Reading ``target`` (a file) or listing it (a directory) raises PermissionError, as for a user
    without the right (the tests may run as root, for whom chmod 000 changes nothing)."""
    real_open, real_iterdir = builtins.open, Path.iterdir
    target = Path(target)

    def guarded_open(file, *args, **kwargs):
        if isinstance(file, (str, os.PathLike)) and Path(file) == target:
            raise PermissionError(errno.EACCES, "Permission denied", str(file))
        return real_open(file, *args, **kwargs)

    def guarded_iterdir(self):
        if self == target:
            raise PermissionError(errno.EACCES, "Permission denied", str(self))
        return real_iterdir(self)

    monkeypatch.setattr(builtins, "open", guarded_open)
    monkeypatch.setattr(io, "open", guarded_open)
    monkeypatch.setattr(Path, "iterdir", guarded_iterdir)


@dataclass
class Case:
    name: str
    #: (tmp_path, monkeypatch) -> the argv
    build: Callable[[Path, pytest.MonkeyPatch], list[str]]
    code: int
    #: regex the stderr must match (search), with {tmp} for the temporary directory
    message: str = ""
    #: for exit 0: the warning lines expected on stderr, as regexes, in order
    warnings: list[str] = field(default_factory=list)
    #: for exit 0 of layout: page id -> "WxH" expected in the table
    sizes: dict[str, str] = field(default_factory=dict)


def layout(*paths: Path | str) -> list[str]:
    return LAYOUT + ["--pages", *map(str, paths)]


def report_out(out: Path | str, *more: str) -> list[str]:
    return ["report", "--target", "ocr2", "--modes", "base", "--counters", "torch:patched", "--out", str(out),
            *more]


def _bomb(t: Path) -> Path:
    path = t / "bomb.png"
    path.write_bytes(png_bytes(20000, 20000, [(b"IDAT", zlib.compress(b"\x00" * 64))]))
    return path


def _trailer(path: Path) -> Path:
    """Camera makers append their own data after the JPEG end marker; readers ignore it."""
    with open(path, "ab") as f:
        f.write(b"SEFT-like trailer " * 400)
    return path


def _mixed_dir(t: Path) -> Path:
    folder = t / "scans"
    img(folder / "b.png", (400, 300))
    write_pdf(folder / "doc.pdf", [{"size": (612, 792)}, {"size": (300, 400), "rotate": 90}])
    (folder / "notes.txt").write_text("mine")
    (folder / "sub").mkdir()
    img(folder / "sub" / "hidden.png")
    return folder


def _pdf_text():
    """A PNG text chunk holding "%PDF-" (a tool's note), within the first KB of the file."""
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text("Comment", "exported from %PDF-1.7 by a scanner")
    return info


def _checkout(t: Path) -> Path:
    """A git checkout with the user's work in it (Issue 30 case 1)."""
    repo = t / "repo"
    for name, text in ((".git/HEAD", "ref: refs/heads/main\n"), ("src/main.py", "print(1)\n"), ("NOTES.txt", "mine")):
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_text(text)
    return repo


def _full_disk(monkeypatch):
    import shutil

    monkeypatch.setattr(shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(10 << 30, 10 << 30, 1 << 20))


def _read_only(monkeypatch):
    import tempfile

    def refuse(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(tempfile, "mkdtemp", refuse)


CASES = [
    # ---- image files ---------------------------------------------------------------------------
    Case("good png", lambda t, m: layout(img(t / "a.png")), 0, sizes={"a": "300x200"}),
    Case("missing file", lambda t, m: layout(t / "nope.png"), 2, r"--pages {tmp}/nope.png: no such file or directory"),
    Case("symbolic link loop", lambda t, m: ((t / "a.png").symlink_to(t / "b.png"), (t / "b.png").symlink_to(t / "a.png"),
                                             layout(t / "a.png"))[2], 2,
         r"--pages {tmp}/a.png: the symbolic link {tmp}/a.png is a loop \(it points back to itself\); fix or remove "
         r"the link$"),
    Case("png with %PDF- in its metadata", lambda t, m: layout(img(t / "meta.png", pnginfo=_pdf_text())), 0,
         sizes={"meta": "300x200"}),
    Case("tiff with exif orientation 6", lambda t, m: layout(img(t / "turn.tif", tiffinfo={274: 6})), 0,
         sizes={"turn": "200x300"}),
    Case("directory: an image with another ending", lambda t, m: layout(img(t / "d" / "scan.dat", fmt="PNG").parent),
         0, sizes={"scan": "300x200"}),
    Case("empty file", lambda t, m: layout((t / "e.png").write_bytes(b"") or t / "e.png"), 2,
         r"--pages {tmp}/e.png: empty file \(0 bytes\)$"),
    Case("text named .png", lambda t, m: layout((t / "t.png").write_text("hello") and t / "t.png"), 2,
         r"{tmp}/t.png: not an image file Pillow can identify\. Pass image files Pillow can read, PDFs, directories "
         r"of them, or an OmniDocBench-style JSON manifest"),
    Case("png cut in half", lambda t, m: layout(cut(noise(t / "c.png"))), 2,
         r"{tmp}/c.png: truncated or corrupt image data: the PNG 'IDAT' chunk at byte [\d,]+ runs past the end of "
         r"the file .*copy or export the image again"),
    Case("png without pixel data", lambda t, m: layout((t / "n.png").write_bytes(png_bytes(300, 200, [])) and t / "n.png"),
         2, r"{tmp}/n.png: no pixel data \(the PNG has no IDAT chunk\)"),
    Case("png without end chunk", lambda t, m: layout((t / "x.png").write_bytes(png_bytes(30, 20)[:-12]) and t / "x.png"),
         2, r"{tmp}/x.png: truncated or corrupt image data: the file ends at byte [\d,]+ before the PNG end chunk"),
    Case("jpeg cut in half", lambda t, m: layout(cut(noise(t / "c.jpg", fmt="JPEG"))), 2,
         r"{tmp}/c.jpg: truncated or corrupt image data: no JPEG end-of-image marker \(FF D9\)"),
    Case("jpeg with data after its end marker", lambda t, m: layout(_trailer(noise(t / "tail.jpg", fmt="JPEG"))), 0,
         sizes={"tail": "256x256"}),
    Case("gif cut short", lambda t, m: layout(cut(noise(t / "c.gif", fmt="GIF"))), 2,
         r"{tmp}/c.gif: truncated or corrupt image data"),
    Case("tiff cut short", lambda t, m: layout(cut(noise(t / "c.tif", fmt="TIFF"))), 2,
         r"{tmp}/c.tif: truncated or corrupt image data: a TIFF strip ends at byte"),
    Case("bmp cut short", lambda t, m: layout(cut(noise(t / "c.bmp", fmt="BMP"))), 2,
         r"{tmp}/c.bmp: truncated or corrupt image data: the BMP needs [\d,]+ bytes of pixel data"),
    Case("webp cut short", lambda t, m: layout(cut(noise(t / "c.webp", fmt="WEBP"))), 2,
         r"{tmp}/c.webp: truncated or corrupt image data: the WebP header declares"),
    Case("zero-size png", lambda t, m: layout((t / "z.png").write_bytes(png_bytes(0, 10, [])) and t / "z.png"), 2,
         r"{tmp}/z.png: zero-size image \(0x10 in its header\)"),
    Case("16-bit png", lambda t, m: layout(img(t / "d.png") and Image.new("I;16", (8, 8)).save(t / "d.png") or t / "d.png"),
         0, sizes={"d": "8x8"}),
    Case("decompression bomb", lambda t, m: layout(_bomb(t)), 2,
         r"{tmp}/bomb.png: 20000x20000 = 400,000,000 pixels is over the limit .*HARNESS_MAX_IMAGE_PIXELS=<pixels>"),
    Case("bomb allowed by the setting", lambda t, m: (m.setenv("HARNESS_MAX_IMAGE_PIXELS", "0"), layout(_bomb(t)))[1],
         0, sizes={"bomb": "20000x20000"}),
    Case("HARNESS_MAX_IMAGE_PIXELS=abc", lambda t, m: (m.setenv("HARNESS_MAX_IMAGE_PIXELS", "abc"),
                                                       layout(img(t / "a.png")))[1], 2,
         r"HARNESS_MAX_IMAGE_PIXELS='abc': expected a whole number of pixels .* fix or unset it"),
    Case("HARNESS_MAX_IMAGE_PIXELS=-5", lambda t, m: (m.setenv("HARNESS_MAX_IMAGE_PIXELS", "-5"),
                                                      layout(img(t / "a.png")))[1], 2,
         r"HARNESS_MAX_IMAGE_PIXELS='-5': expected a non-negative number of pixels"),
    Case("animated gif", lambda t, m: layout(gif_frames(t / "anim.gif")), 0,
         warnings=[r"{tmp}/anim.gif: 3 frames \(GIF\); frame 1 is the page \(120x80\): the vendors open a page "
                   r"with PIL \(Image.open, exif_transpose, convert\('RGB'\)\), which reads the first frame only"],
         sizes={"anim": "120x80"}),
    Case("multi-page tiff", lambda t, m: layout(tiff_pages(t / "pages.tif")), 0,
         warnings=[r"{tmp}/pages.tif: 2 frames \(TIFF\); frame 1 is the page \(300x200\)"], sizes={"pages": "300x200"}),
    Case("exif-rotated jpeg", lambda t, m: layout(exif_jpeg(t / "turned.jpg")), 0, sizes={"turned": "200x300"}),
    Case("png with eXIf after the pixels", lambda t, m: layout(exif_after_idat(t / "late.png")), 0,
         sizes={"late": "200x300"}),
    Case("unreadable file", lambda t, m: (img(t / "a.png"), deny(m, t / "a.png"), layout(t / "a.png"))[2], 2,
         r"--pages {tmp}/a.png: permission denied: the file cannot be read; make it readable \(chmod \+r\)"),
    # ---- directories ---------------------------------------------------------------------------
    Case("directory: images, a PDF, other files", lambda t, m: layout(_mixed_dir(t)), 0,
         warnings=[r"--pages {tmp}/scans: skipped 2 entries that are not a page image or PDF \(.*subdirectories "
                   r"are not searched\): notes.txt, sub/"],
         sizes={"b": "400x300", "doc-p001": "1224x1584", "doc-p002": "800x600"}),
    Case("directory without pages", lambda t, m: ((t / "d").mkdir(), (t / "d" / "notes.txt").write_text("x"),
                                                  layout(t / "d"))[2], 2,
         r"--pages {tmp}/d: the directory holds no image files or PDFs \(.*\); it holds notes.txt"),
    Case("empty directory", lambda t, m: ((t / "d").mkdir(), layout(t / "d"))[1], 2,
         r"--pages {tmp}/d: the directory holds no image files or PDFs"),
    Case("unreadable directory", lambda t, m: ((t / "d").mkdir(), img(t / "d" / "a.png"), deny(m, t / "d"),
                                               layout(t / "d"))[3], 2,
         r"--pages {tmp}/d: permission denied: the directory cannot be listed"),
    # ---- names ---------------------------------------------------------------------------------
    Case("same file twice", lambda t, m: layout(img(t / "a.png"), t / "a.png"), 0,
         warnings=[r"--pages {tmp}/a.png: the same file as {tmp}/a.png, given twice; counted once"],
         sizes={"a": "300x200"}),
    Case("same file by directory and by name", lambda t, m: layout(img(t / "d" / "a.png").parent, t / "d" / "a.png"), 0,
         warnings=[r"--pages {tmp}/d/a.png: the same file as {tmp}/d/a.png, given twice; counted once"]),
    Case("two files, one id", lambda t, m: layout(img(t / "a.png"), img(t / "a.jpg")), 2,
         r"--pages: two pages have the id 'a' \({tmp}/a.png and {tmp}/a.jpg\); .*rename one of them"),
    Case("newline in a file name", lambda t, m: layout(img(t / "bad\nname.png")), 2,
         r"page id 'bad\\nname' \(from '{tmp}/bad\\nname.png'\) holds the control character '\\n'.*rename the file"),
    Case("hidden file given by name", lambda t, m: layout(img(t / ".a.png")), 2,
         r"page id '.a' \(from {tmp}/.a.png\) cannot name a report row"),
    # ---- PDFs ----------------------------------------------------------------------------------
    Case("pdf", lambda t, m: layout(write_pdf(t / "paper.pdf", [{"size": (595.276, 841.89)}, {"size": (612, 792)}])), 0,
         sizes={"paper-p001": "1191x1684", "paper-p002": "1224x1584"}),
    Case("encrypted pdf", lambda t, m: layout(write_pdf(t / "lock.pdf", [{}], user_password="pw", owner_password="o",
                                                        algorithm="RC4-128")), 2,
         r"--pages {tmp}/lock.pdf: encrypted: it needs a password to open.*qpdf --decrypt"),
    Case("pdf with an empty password", lambda t, m: layout(write_pdf(t / "open.pdf", [{}], user_password="",
                                                                     owner_password="o", algorithm="RC4-128")), 0,
         sizes={"open-p001": "1224x1584"}),
    Case("broken pdf", lambda t, m: layout((t / "b.pdf").write_bytes(b"%PDF-1.7\n" + b"junk" * 99) and t / "b.pdf"), 2,
         r"--pages {tmp}/b.pdf: broken PDF: it cannot be parsed .*repair it \(e.g. qpdf in.pdf out.pdf\)"),
    Case("pdf without pages", lambda t, m: layout(write_pdf(t / "none.pdf", [])), 2,
         r"--pages {tmp}/none.pdf: empty PDF: it has no pages"),
    Case("zero-byte pdf", lambda t, m: layout((t / "z.pdf").write_bytes(b"") or t / "z.pdf"), 2,
         r"--pages {tmp}/z.pdf: empty file \(0 bytes\)"),
    # ---- manifests -----------------------------------------------------------------------------
    Case("manifest", lambda t, m: (img(t / "a.png"), layout(manifest(t, [entry()])))[1], 0, sizes={"a": "300x200"}),
    Case("manifest size disagrees with the image", lambda t, m: (img(t / "a.png", (800, 1000)),
                                                                 layout(manifest(t, [entry(width=4000, height=300)])))[1],
         2, r"--pages {tmp}/m.json: entry 0: page_info says 4000x300 but the image {tmp}/a.png is 800x1000 \(after EXIF "
            r"orientation\); fix page_info.width/height or the image_path$"),
    Case("manifest sides swapped (OmniDocBench)", lambda t, m: (img(t / "a.png", (200, 300)),
                                                                layout(manifest(t, [entry(width=300, height=200)])))[1],
         0, warnings=[r"{tmp}/m.json: 1 entry has width and height swapped against the image \(known in "
                      r"OmniDocBench's JSON\); the image's size is used: a"], sizes={"a": "200x300"}),
    Case("manifest image missing", lambda t, m: layout(manifest(t, [entry("gone.png")])), 2,
         r"--pages {tmp}/m.json: entry 0: image {tmp}/gone.png: file not found; fix page_info.image_path or add the image"),
    Case("manifest image outside its folder", lambda t, m: (img(t / "a.png"), (t / "sub").mkdir(),
                                                            layout(manifest(t / "sub", [entry("../a.png")])))[2], 2,
         r"--pages {tmp}/sub/m.json: entry 0: page_info.image_path '../a.png' points outside the folder {tmp}/sub"),
    Case("manifest with a UTF-8 BOM", lambda t, m: (img(t / "a.png"), layout(manifest(t, [entry()], bom=True)))[1], 0,
         sizes={"a": "300x200"}),
    Case("manifest not UTF-8", lambda t, m: layout((t / "m.json").write_bytes('[{"page_info": "\xe9"}]'.encode("latin-1"))
                                                   and t / "m.json"), 2,
         r"--pages {tmp}/m.json: not UTF-8 text .*save the manifest as UTF-8"),
    Case("manifest not JSON", lambda t, m: layout((t / "m.json").write_text("{oops") and t / "m.json"), 2,
         r"--pages {tmp}/m.json: not valid JSON .*\. A manifest is OmniDocBench's JSON shape"),
    Case("manifest not a list", lambda t, m: layout(manifest(t, {"page_info": {}})), 2,
         r"--pages {tmp}/m.json: expected a JSON list"),
    Case("manifest empty", lambda t, m: layout(manifest(t, [])), 2, r"--pages {tmp}/m.json: the manifest lists no pages"),
    Case("manifest entry without width", lambda t, m: layout(manifest(t, [entry(width=None)])), 2,
         r"entry 0: page_info.width must be a positive integer, got None"),
    Case("unreadable manifest", lambda t, m: (manifest(t, [entry()]), deny(m, t / "m.json"), layout(t / "m.json"))[2],
         2, r"--pages {tmp}/m.json: permission denied: the manifest cannot be read"),
    # ---- options -------------------------------------------------------------------------------
    Case("--modes ''", lambda t, m: ["layout", "--target", "ocr2", "--modes", ""], 2,
         r"--modes '': no name given; name at least one \(e.g. --modes base,gundam\) or leave --modes out"),
    Case("--target ''", lambda t, m: ["layout", "--target", ""], 2, r"--target '': no name given"),
    Case("--counters ''", lambda t, m: ["report", "--target", "ocr2", "--counters", "", "--out", str(t / "o")], 2,
         r"--counters '': no name given"),
    Case("--pages ''", lambda t, m: LAYOUT + ["--pages", ""], 2, r"--pages: no path given"),
    Case("--pages and --page-set", lambda t, m: layout(img(t / "a.png")) + ["--page-set", "grid"], 2,
         r"--pages and --page-set are exclusive"),
    Case("unknown mode", lambda t, m: ["layout", "--target", "ocr2", "--modes", "gundan"], 2,
         r"--modes 'gundan': unknown mode of ocr2\. Did you mean 'gundam'\?"),
    # ---- --out (checked before any work) -------------------------------------------------------
    Case("--out is a file", lambda t, m: report_out((t / "f").write_text("x") and t / "f"), 2,
         r"--out {tmp}/f: exists and is not a directory"),
    Case("--out holds the user's files", lambda t, m: ((t / "o").mkdir(), (t / "o" / "thesis.tex").write_text("x"),
                                                       report_out(t / "o"))[2], 2,
         r"--out {tmp}/o: a non-empty directory that is not a harness report .*: thesis.tex\. The report replaces "
         r"the directory, so these would be lost: move them out, choose another --out, or pass --force"),
    Case("--out: a previous report plus the user's files",
         lambda t, m: report_out(previous_report(t / "o", {"my_notes.txt": "mine", "sub/x.txt": "mine"})), 2,
         r"--out {tmp}/o: a previous report, plus 2 entries that are not among its files: my_notes.txt, sub/\. .*--force"),
    Case("--out . --force in a git checkout", lambda t, m: (m.chdir(_checkout(t)), report_out(Path("."), "--force"))[1],
         2, r"--out \. \({tmp}/repo\): is the current directory; the report replaces its directory, so name a "
            r"directory of its own, e.g. --out out/report \(created if missing\)$"),
    Case("--out the top of a git work tree", lambda t, m: report_out(_checkout(t), "--force"), 2,
         r"--out {tmp}/repo: is the top of a git work tree \(it holds \.git\)"),
    Case("--out above a git work tree, --force", lambda t, m: (_checkout(t), report_out(t, "--force"))[1], 2,
         r"--out {tmp}: --force would delete {tmp}/repo/\.git \(a git repository's data\) with the rest of: "
         r"repo/; --force never deletes a git work tree: choose another --out$"),
    Case("--out the home directory", lambda t, m: (m.setenv("HOME", str(t)), report_out(Path("~"), "--force"))[1], 2,
         r"--out ~ \({tmp}\): is the home directory"),
    Case("--out /", lambda t, m: report_out(Path("/"), "--force"), 2, r"--out /: is the root directory"),
    Case("--out ''", lambda t, m: report_out("", "--force"), 2,
         r"--out '': empty; name a directory for the report \(e\.g\. --out out/report\), or leave --out out "
         r"for the default \(an unset shell variable\?\)$"),
    Case("--out the --pages directory, --force",
         lambda t, m: report_out(img(t / "scans" / "a.png").parent, "--force", "--pages", str(t / "scans")), 2,
         r"--out {tmp}/scans: is the --pages input {tmp}/scans;"),
    Case("--out holding a --pages file",
         lambda t, m: report_out(t / "o", "--force", "--pages", str(img(t / "o" / "in" / "a.png"))), 2,
         r"--out {tmp}/o: holds the --pages input {tmp}/o/in/a\.png;"),
    Case("--out: a report's file changed since",
         lambda t, m: report_out(previous_report(t / "o") and (t / "o" / "report.md").write_text("my edits")
                                 and t / "o"), 2,
         r"--out {tmp}/o: a previous report, plus 1 entry that is not among its files: report\.md \(changed since "
         r"the report wrote it\)\. .*--force"),
    Case("--out under a file", lambda t, m: report_out((t / "f").write_text("x") and t / "f" / "out"), 2,
         r"--out {tmp}/f/out: {tmp}/f is a file, not a directory, so {tmp}/f/out cannot be created; choose another --out$"),
    Case("--out on a full disk", lambda t, m: (_full_disk(m), report_out(t / "o"))[1], 2,
         r"--out {tmp}/o: only 1.0 MiB free on its filesystem, under the 32 MiB a report needs"),
    Case("--out read-only", lambda t, m: (_read_only(m), report_out(t / "o"))[1], 2,
         r"--out {tmp}/o: cannot write in {tmp}: read-only filesystem \(choose an --out on a writable filesystem\)"),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_input_verdict(case: Case, tmp_path, monkeypatch):
    monkeypatch.delenv("HARNESS_MAX_IMAGE_PIXELS", raising=False)
    argv = case.build(tmp_path, monkeypatch)
    out, err = io.StringIO(), io.StringIO()
    code = main(argv, stdout=out, stderr=err)
    monkeypatch.undo()   # before any assertion: the guarded open must not outlive the case
    stderr = err.getvalue()
    fill = lambda text: text.replace("{tmp}", re.escape(str(tmp_path)))  # noqa: E731
    assert code == case.code, stderr
    assert "Traceback" not in stderr
    if case.code:
        lines = stderr.strip().splitlines()
        assert len(lines) == 1, stderr            # one line: the error
        assert lines[0].startswith(f"harness {argv[0]}: error: ")
        assert re.search(fill(case.message), lines[0]), lines[0]
        return
    warnings = [line for line in stderr.splitlines() if ": warning: " in line]
    assert len(warnings) == len(case.warnings), stderr
    for line, pattern in zip(warnings, case.warnings):
        assert re.search(fill(pattern), line), line
    table = out.getvalue()
    for page_id, size in case.sizes.items():
        assert re.search(rf"^ocr2\s+base\s+{re.escape(page_id)}\s+{size}\s", table, re.M), table


def test_the_table_covers_every_case_once():
    names = [c.name for c in CASES]
    assert len(names) == len(set(names))
    assert sum(c.code == 2 for c in CASES) >= 40
