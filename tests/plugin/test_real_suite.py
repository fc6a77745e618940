"""On the real suite and its committed goldens: a deleted count golden is recreated byte for byte
by ``--update-golden``, and nothing else in the golden directory changes.

One in-process run of tests/test_suite.py (rootdir: the repository) on a copy of golden/: OCR-2,
mode base, page letter, stage projector (one shape key, every counter; the model is built on meta).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from conftest import plugin_args

REPO = Path(__file__).resolve().parents[2]
SUITE = REPO / "tests" / "test_suite.py"
DELETED = Path("ocr2/count/projector/g1024.json")        # the key base/letter reaches at the projector


def _files(root: Path) -> dict[Path, bytes]:
    return {p.relative_to(root): p.read_bytes() for p in root.rglob("*")
            if p.is_file() and p.name != ".harness-golden.lock"}


@pytest.mark.slow
def test_deleted_count_golden_is_recreated_byte_identically(pytester: pytest.Pytester, tmp_path):
    from harness.targets import target_class

    if target_class("ocr2").environment_problem():
        pytest.skip(target_class("ocr2").environment_problem())
    copy = tmp_path / "golden"
    shutil.copytree(REPO / "golden", copy)
    committed = _files(copy)
    assert DELETED in committed
    (copy / DELETED).unlink()

    result = pytester.runpytest(
        "--noconftest", *plugin_args(), f"--rootdir={REPO}", str(SUITE), f"--golden-dir={copy}", "--update-golden",
        "--target", "ocr2", "--mode", "base", "--page", "letter", "--stage", "projector")
    assert result.ret == 0, result.stdout.str()
    result.stdout.fnmatch_lines(["1 golden file(s) written, 1 unchanged", f"  written: {copy / DELETED}"])
    assert (copy / DELETED).read_bytes() == committed[DELETED]
    assert _files(copy) == committed
