"""Under pytest-xdist the controller merges the workers' records and is the only writer; a crashed
worker makes the run incomplete: nothing is deleted and every golden stays valid."""

from __future__ import annotations

import os
import shutil

import pytest
from conftest import GOLDEN_FILES, N_TESTS, UNUSED


def test_xdist_update_and_prune_are_byte_identical_to_a_serial_update(unused):
    """The controller merges the workers' records into one write per file, and sees every
    outcome: a complete -n 2 run prunes, and the result is what a serial update makes."""
    for path in (unused.count("sam", "g1024"), unused.count("prefill", "L273"), unused.layout()):
        path.unlink()
    result = unused.run("-n", "2", "--update-golden", "--prune-golden")
    result.assert_outcomes(passed=N_TESTS)
    assert result.ret == 0
    result.stdout.fnmatch_lines(["3 golden file(s) written, 1 unchanged", "*", "*", "*",
                                 "1 unused golden(s) pruned", "  pruned: count:fake-prefill-*-L999"])
    merged = unused.snapshot()
    assert sorted(merged) == GOLDEN_FILES

    shutil.rmtree(unused.golden_dir)
    unused.update()
    assert unused.snapshot() == merged


def test_crashed_worker_deletes_nothing_and_leaves_valid_goldens(unused):
    unused.set_flops(sam_g1024=77, prefill_L300=88)
    unused.at(prefill_thop_L273="exit")
    result = unused.run("-n", "2", "--update-golden", "--prune-golden")
    result.stdout.fnmatch_lines(["*worker*crashed*"])
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines([
        "3 unused golden(s) (the suite definition no longer expects them)*", *sorted(UNUSED),
        "PRUNE REFUSED: nothing pruned: not a complete run (an xdist worker crashed)"])
    after = unused.snapshot()
    assert set(after) == set(unused.unused_snapshot), "nothing deleted, nothing left behind"
    docs = unused.assert_all_valid()
    assert docs["fake/count/sam/g1024.json"]["counters"]["fvcore"], "the unused entry is kept"
    assert sorted(docs["fake/layout/base.json"]["pages"]) == ["grid-1", "letter", "old"]
    # each golden is the old one or the new one, whole: the crashed worker's records are lost
    # (they reach the controller only when a worker finishes), the other worker's are written
    assert docs["fake/count/sam/g1024.json"]["counters"]["torch"]["raw"] in (1000, 77)
    assert docs["fake/count/prefill/L300.json"]["counters"]["torch"]["raw"] in (2_200_000, 88)
    assert docs["fake/count/prefill/L273.json"]["counters"]["thop"]["raw"] == 1_000_000


def test_left_out_cases_are_said_by_the_controller(pytester: pytest.Pytester, monkeypatch):
    """Under xdist the workers collect and leave out; the controller says, once, how many and why
    (the header points there), and the engine lines come per worker. Each of the N workers gets
    OMP_NUM_THREADS = cores // N (at least 1), which torch's CPU pools start with; the controller's
    environment is given back."""
    from conftest import PLUGIN_CONFTEST

    from harness.pytest.plugin import CUDA_NOT_AVAILABLE_MSG, THREADS_VAR, _cuda_available, _usable_cores

    if _cuda_available():
        pytest.skip("needs a machine without CUDA (the gpu test would run)")
    monkeypatch.delenv(THREADS_VAR, raising=False)
    threads = max(1, _usable_cores() // 2)
    pytester.makeconftest(PLUGIN_CONFTEST)
    pytester.makeini("[pytest]\n")
    pytester.makepyfile(test_mixed=f'''
import os
import pytest

@pytest.mark.gpu
def test_on_gpu():
    pass

@pytest.mark.gpu
def test_on_gpu_too():
    pass

def test_on_cpu():
    assert os.environ["{THREADS_VAR}"] == "{threads}"   # torch's CPU pools start with this many
''')
    result = pytester.runpytest("-n", "2", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines([
        "harness: cases that cannot run here are left out by the xdist workers*",
        f"harness: 2 xdist workers, {THREADS_VAR}={threads} CPU thread(s) each (cores // workers*",
        "*harness: left out (decided in the xdist workers)*",
        "harness: 2 case(s) left out, by reason:",
        f"      2 -- {CUDA_NOT_AVAILABLE_MSG}"])
    assert result.stdout.str().count("case(s) left out, by reason") == 1
    assert THREADS_VAR not in os.environ


def _auto_workers(cores: int, monkeypatch, **options) -> int:
    from types import SimpleNamespace

    import harness.pytest.plugin as plugin

    monkeypatch.setattr(plugin.os, "sched_getaffinity", lambda pid: set(range(cores)))
    monkeypatch.setattr(plugin, "_cuda_device_count", lambda: 3)
    config = SimpleNamespace(getoption=lambda name, default=None: options.get(name, default))
    return plugin.pytest_xdist_auto_num_workers(config)


def test_auto_worker_count(monkeypatch):
    """``-n auto`` (the default addopts): a worker per core up to MAX_AUTO_WORKERS; none for one
    core, a benchmark run, a GPU run on one named device, or a slice of a few facts; one per GPU
    with ``--device cuda``."""
    from harness.pytest.plugin import FACTS_PER_WORKER, MAX_AUTO_WORKERS
    from harness.inputs.selection import Selection
    from harness.run.plan import count_cases

    assert _auto_workers(2, monkeypatch) == 2
    assert _auto_workers(16, monkeypatch) == MAX_AUTO_WORKERS
    assert _auto_workers(1, monkeypatch) == 0
    assert _auto_workers(16, monkeypatch, benchmark_only=True) == 0
    assert _auto_workers(16, monkeypatch, harness_device="cuda:0") == 0
    assert _auto_workers(16, monkeypatch, harness_device="cuda") == 3
    assert _auto_workers(16, monkeypatch, markexpr="gpu and not slow") == 0
    assert _auto_workers(16, monkeypatch, markexpr="not gpu") == MAX_AUTO_WORKERS
    sliced = dict(harness_target="ocr2", harness_mode="gundam", harness_page="letter", harness_stage="sam")
    n = len(count_cases(Selection(targets=("ocr2",), modes=("gundam",), pages=("letter",), stages=("sam",)))[0])
    assert 0 < n < 2 * FACTS_PER_WORKER
    assert _auto_workers(16, monkeypatch, **sliced) == 0
    wide = len(count_cases(Selection(targets=("ocr2",)))[0])
    assert _auto_workers(16, monkeypatch, harness_target="ocr2") == min(MAX_AUTO_WORKERS, wide // FACTS_PER_WORKER)



def test_an_explicit_thread_count_is_kept(monkeypatch):
    """OMP_NUM_THREADS set by the user reaches the workers unchanged (and is not removed after)."""
    from harness.pytest.plugin import THREADS_VAR, _share_cores

    monkeypatch.setenv(THREADS_VAR, "2")
    assert _share_cores(4) == ("2", False)
    monkeypatch.delenv(THREADS_VAR)
    monkeypatch.setattr("harness.pytest.plugin._usable_cores", lambda: 16)
    assert _share_cores(4) == ("4", True) and os.environ[THREADS_VAR] == "4"
    monkeypatch.setattr("harness.pytest.plugin._usable_cores", lambda: 2)
    monkeypatch.delenv(THREADS_VAR)
    assert _share_cores(4) == ("1", True)


def test_readers_of_measurements_are_scheduled_with_the_facts_they_read(monkeypatch, tmp_path):
    """--dist loadfile with the root conftest's scheduler: each count fact goes to the scope of the
    unit it is measured in (harness.run.plan); a test marked ``measures(target, mode, page)``, as a
    worker reports it, runs in the scope of every fact that page's stages reach, with them; a fact
    nobody reads keeps a scope apart, and an unmarked test its module's."""
    import importlib.util
    from pathlib import Path
    from types import SimpleNamespace

    from xdist.scheduler import LoadScopeScheduling

    from harness.inputs.selection import Selection
    from harness.run.plan import count_cases

    root = Path(__file__).resolve().parents[2]
    spec = importlib.util.spec_from_file_location("harness_root_conftest", root / "conftest.py")
    conftest_module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(conftest_module)
    monkeypatch.setattr(LoadScopeScheduling, "__init__", lambda self, config, log=None: None)

    stash = pytest.Stash()
    stash[conftest_module._READERS_DIR] = str(tmp_path)
    controller = SimpleNamespace(stash=stash, getvalue=lambda name: "loadfile" if name == "dist" else None,
                                 getoption=lambda *a, **k: None)
    bytes_test = "tests/test_bytes.py::test_ocr2_letter_bytes_match_the_counter"
    marked = {"tests/test_counters_ocr2.py::test_full_size_meta_counts_are_not_trivial": ("ocr2", "gundam", "letter"),
              f"{bytes_test}[base]": ("ocr2", "base", "letter"),
              "tests/test_report.py::test_version": ("ocr2", "small", "letter"),
              "tests/test_x.py::test_two_pages": ("ocr2", "gundam", "slide", "note-old")}
    items = [SimpleNamespace(nodeid=n, get_closest_marker=lambda name, a=a: pytest.mark.measures(*a).mark)
             for n, a in marked.items()]
    items.append(SimpleNamespace(nodeid="tests/test_pages.py::test_a_large_real_page_loads",
                                 get_closest_marker=lambda name: None))
    worker = SimpleNamespace(workerinput={"harness_readers": str(tmp_path), "workerid": "gw0"})
    conftest_module.pytest_collection_modifyitems(worker, items)      # as a worker reports its collection

    scope = conftest_module.pytest_xdist_make_scheduler(controller, None)._split_scope
    cases = count_cases(Selection())[0]
    fact = {c.id: scope(f"tests/test_suite.py::test_count[{c.id}]") for c in cases}
    for reader, (target, mode, *pages) in marked.items():
        reached = [c.id for c in cases if c.target == target and any(f"{mode}/{p}" in c.pages for p in pages)]
        assert {c.split("-")[1] for c in reached} == {"sam", "encoder", "projector", "prefill", "decode"}
        assert {fact[c] for c in reached} == {scope(reader)}, reader
    assert scope("tests/test_counters_ocr2.py::test_full_size_meta_counts_are_not_trivial") == \
        fact["ocr2-sam-torch-g1024+6x768"] != scope("tests/test_report.py::test_version")
    # two pages whose keys are measured apart: the reader joins both
    slide, note = ({c.id for c in cases if c.target == "ocr2" and f"gundam/{p}" in c.pages and c.stage == "sam"}
                   for p in ("slide", "note-old"))
    assert slide != note and scope("tests/test_x.py::test_two_pages") == fact[min(slide)] == fact[min(note)]
    # the key of the Letter page in Base is measured on another page: the reader goes there
    assert fact["ocr2-sam-torch-g1024"] == scope(f"{bytes_test}[base]") != scope(f"{bytes_test}[gundam]")
    # the plan's units: a page chain's upstream-fed stages together, a decode key nobody reads apart
    unread = [c for c in cases if c.stage == "decode" and fact[c.id] == f"{c.target}-{c.first[0]}-{c.first[1]}-decode"]
    assert unread and len({fact[c.id] for c in cases if c.stage != "decode"}) < len(cases) // 10
    assert scope("tests/test_pages.py::test_a_large_real_page_loads") == "tests/test_pages.py"
    assert scope(f"{bytes_test}[gundam]") == "tests/test_bytes.py"      # not reported by a worker: its module
