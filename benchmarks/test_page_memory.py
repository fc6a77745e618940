"""Memory of the header-only page read on a very large page (13000 x 13000 px PNG, 169 MP).

``load_page(decode=False)`` (what ``--pages`` and the layouts use) must read the size, the EXIF
orientation and the file's completeness from headers and chunk boundaries alone. Decoding the
page would hold 13000 x 13000 x 3 bytes = 484 MiB of pixels. In a fresh process, the peak resident
memory during the read (Linux VmHWM, reset just before) less what was resident before it is
recorded in ``extra_info`` (``header_read_peak_mb``), next to the same figure for Pillow's full
decode (``full_decode_peak_mb``); the target is under 32 MiB.
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import pytest

SIDE = 13000
TARGET_MB = 32
REPO = Path(__file__).resolve().parents[1]

_CHILD = """
import json, sys
from PIL import Image
from harness.inputs.pages import load_page

def status(key):
    with open("/proc/self/status") as f:
        return int(next(line for line in f if line.startswith(key)).split()[1])   # kB

with open("/proc/self/clear_refs", "w") as f:
    f.write("5")            # the peak (VmHWM) starts again from what is resident now
before = status("VmRSS:")
if sys.argv[2] == "read":
    page = load_page(sys.argv[1], decode=False, max_pixels=None)
    size = [page.width, page.height]
else:               # what a full decode costs (the read before this issue: getexif() loaded the PNG)
    Image.MAX_IMAGE_PIXELS = None
    with Image.open(sys.argv[1]) as image:
        image.getexif()
        size = list(image.size)
print(json.dumps({"before_kb": before, "peak_kb": status("VmHWM:"), "size": size}))
"""


def _big_png(path: Path, side: int) -> Path:
    """A real side x side RGB PNG (white), written row by row: a few hundred KB on disk."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    row = b"\x00" + b"\xff" * (3 * side)
    compressor = zlib.compressobj(9)
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)))
        pending = b""
        for _ in range(side):
            pending += compressor.compress(row)
            if len(pending) > 1 << 16:
                f.write(chunk(b"IDAT", pending))
                pending = b""
        f.write(chunk(b"IDAT", pending + compressor.flush()))
        f.write(chunk(b"IEND", b""))
    return path


def _peak_kb(path: Path, what: str) -> dict:
    run = subprocess.run([sys.executable, "-c", _CHILD, str(path), what], cwd=REPO, capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(REPO)}, check=True)
    return json.loads(run.stdout)


@pytest.fixture(scope="module")
def big_png(tmp_path_factory) -> Path:
    return _big_png(tmp_path_factory.mktemp("pages") / "huge.png", SIDE)


def test_header_only_read_memory(benchmark, big_png):
    from harness.inputs.pages import load_page

    if not os.access("/proc/self/clear_refs", os.W_OK):
        pytest.skip("needs Linux /proc/self/clear_refs to measure a peak")
    read = _peak_kb(big_png, "read")
    decoded = _peak_kb(big_png, "decode")
    assert read["size"] == decoded["size"] == [SIDE, SIDE]
    read_mb = (read["peak_kb"] - read["before_kb"]) / 1024
    decode_mb = (decoded["peak_kb"] - decoded["before_kb"]) / 1024
    benchmark.extra_info.update({"page": f"{SIDE}x{SIDE} PNG", "file_mb": round(big_png.stat().st_size / 2**20, 2),
                                 "header_read_peak_mb": round(read_mb, 1), "full_decode_peak_mb": round(decode_mb, 1),
                                 "target_mb": TARGET_MB})
    page = benchmark(load_page, big_png, decode=False, max_pixels=None)
    assert (page.width, page.height) == (SIDE, SIDE)
    assert read_mb < TARGET_MB, benchmark.extra_info
