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


@pytest.fixture(scope="module", autouse=True)
def warm_imports() -> None:
    """In-process runs drop what they imported afterwards (pytester's module snapshot), and torch's
    operator libraries cannot be registered twice in one process: import the model's modules once
    here, before the first run, so that every run finds them."""
    try:
        import torch.distributed.tensor  # noqa: F401
        import transformers

        transformers.DeepseekOcr2ForConditionalGeneration  # noqa: B018 -- loads the lazy module
    except (ImportError, AttributeError):
        pass                    # the tests skip: no OCR-2 in this environment


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


#: The page a test adds to the built-in grid set: the letter page's size under another id.
TWIN = "letter-twin"


@pytest.fixture
def extra_builtin_page(monkeypatch):
    """A new built-in page (a copy of ``letter`` under another id) in the suite definition."""
    import dataclasses

    import harness.inputs.pages as pages
    from harness.run import plan

    real = pages.builtin_pages

    def with_twin(set_name):
        out = real(set_name)
        if set_name == "grid":
            letter = next(p for p in out if p.page_id == "letter")
            out = [*out, dataclasses.replace(letter, page_id=TWIN)]
        return out

    caches = (plan._layouts, plan._layout_map, plan.shape_index)
    for cache in caches:
        cache.cache_clear()
    monkeypatch.setattr(pages, "builtin_pages", with_twin)
    yield
    monkeypatch.undo()
    for cache in caches:
        cache.cache_clear()


@pytest.mark.slow
def test_a_new_builtin_page_changes_only_the_layout_golden_of_its_mode(pytester: pytest.Pytester, tmp_path,
                                                                        extra_builtin_page):
    """Count goldens hold counts, not the pages that reach them: a new page that reaches existing
    keys rewrites the layout golden of its mode and no count golden; its count facts pass as they are."""
    from harness.targets import target_class

    if target_class("ocr2").environment_problem():
        pytest.skip(target_class("ocr2").environment_problem())
    copy = tmp_path / "golden"
    shutil.copytree(REPO / "golden", copy)
    committed = _files(copy)
    args = ("--noconftest", *plugin_args(), f"--rootdir={REPO}", str(SUITE), f"--golden-dir={copy}",
            "--target", "ocr2", "--mode", "base", "--page", TWIN, "--stage", "projector", "-p", "no:randomly")

    checked = pytester.runpytest(*args)            # its count facts already pass; only its layout row is new
    outcomes = checked.parseoutcomes()
    assert outcomes.get("failed") == 1 and outcomes.get("passed", 0) >= 3, checked.stdout.str()
    checked.stdout.fnmatch_lines([f"*layout golden ocr2-base-{TWIN}: no row for this page in*"])

    result = pytester.runpytest(*args, "--update-golden")
    assert result.ret == 0, result.stdout.str()
    layout = Path("ocr2/layout/base.json")
    result.stdout.fnmatch_lines(["1 golden file(s) written, 1 unchanged", f"  written: {copy / layout}"])
    now = _files(copy)
    changed = sorted(str(p) for p in now if now[p] != committed.get(p))
    assert changed == [str(layout)], changed
    import json

    rows = json.loads(now[layout])["pages"]
    assert rows[TWIN] == rows["letter"]
