"""The ``flop_count`` fixture end to end, in a fresh pytester project that has no conftest: the
fixture comes in through its ``pytest11`` entry point, as in any project with harness installed;
its options through the opt-in ``-p harness.count.pytest_options``.

Flow: no golden -> a failure that says how to record it; ``--flop-count-update-golden`` -> written
and passing; a rerun -> passing, file untouched; the model changes -> an obtained / expected /
difference failure, golden untouched; a band in ``golden/flop_count/tolerances.toml`` -> passing.

And a guest's manners: a foreign project with its own ``--device`` and ``--update-golden`` options
runs exactly as without harness (same outcome, no torch, no new option in ``--help``), and can opt
in to the fixture.
"""

from __future__ import annotations

import importlib.metadata as md
import json
import os
import re
from pathlib import Path

import pytest


pytest_plugins = ["pytester"]

PLUGINS = {"harness-count": "harness.count.pytest_plugin"}
OPT_IN = ("-p", "harness.count.pytest_options")
RECORD = "pytest -p harness.count.pytest_options test_model.py::test_mlp_flops --flop-count-update-golden"

TEST_FILE = '''
import torch
from torch import nn

WIDTH = {width}


def build():
    with torch.device("meta"):
        model = nn.Sequential(nn.Linear(64, WIDTH), nn.GELU(), nn.Linear(WIDTH, 64))
        x = torch.randn(4, 64)
    return model, x


def test_mlp_flops(flop_count):
    model, x = build()
    result = flop_count(model, x, counters="torch,thop")
    # 2*B*(64*W + W*64) matmul-class FLOPs, every counter
    assert result["torch patched"].matmul_flops == 2 * 4 * (64 * WIDTH + WIDTH * 64)
'''


def _entry_point_site(tmp: Path) -> Path:
    """A directory that declares the pytest11 entry points the installed harness lacks (an
    editable install made before they were added); empty when the install has them."""
    site = tmp / "site"
    have = {ep.value for dist in md.distributions() for ep in dist.entry_points if ep.group == "pytest11"}
    lines = [f"{name} = {value}" for name, value in PLUGINS.items() if value not in have]
    if lines:
        info = site / "harness_entry_points-0.0.dist-info"
        info.mkdir(parents=True)
        (info / "METADATA").write_text("Metadata-Version: 2.1\nName: harness-entry-points\nVersion: 0.0\n")
        (info / "entry_points.txt").write_text("[pytest11]\n" + "\n".join(lines) + "\n")
    return site


@pytest.fixture
def project(pytester: pytest.Pytester, tmp_path_factory: pytest.TempPathFactory, monkeypatch) -> pytest.Pytester:
    site = _entry_point_site(tmp_path_factory.mktemp("entry_points"))
    monkeypatch.syspath_prepend(str(site))          # the in-process runs find entry points on sys.path
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, (str(site), os.environ.get("PYTHONPATH")))))
    monkeypatch.delenv("PYTEST_ADDOPTS", raising=False)
    monkeypatch.delenv("PYTEST_PLUGINS", raising=False)
    pytester.makeini("[pytest]\n")
    pytester.makepyfile(test_model=TEST_FILE.format(width=128))
    return pytester


@pytest.fixture(scope="module", autouse=True)
def warm_imports() -> None:
    """In-process runs drop the modules they imported afterwards (pytester's sys.modules snapshot),
    and torch cannot be imported twice in one process: count once here, so that every module the
    inner runs need (torch, thop, the counters, hypothesis's plugin) is imported before the first of
    them, and is neither re-imported nor assertion-rewritten again by each run."""
    import hypothesis  # noqa: F401 -- its pytest plugin imports it in every run
    import torch
    from torch import nn

    from harness.count import count

    with torch.device("meta"):
        count(nn.Sequential(nn.Linear(4, 4), nn.GELU()), torch.randn(2, 4), counters="torch,thop")


def run(project: pytest.Pytester, *args: str) -> pytest.RunResult:
    # in process: the pytest11 entry points load exactly as in a subprocess (a new Config and
    # plugin manager), without paying a fresh interpreter and torch import per run
    return project.runpytest_inprocess("-p", "no:cacheprovider", "-p", "no:randomly", *args)


@pytest.mark.slow
def test_record_pass_then_fail_on_change(project: pytest.Pytester):
    golden = project.path / "golden" / "flop_count" / "test_model.test_mlp_flops.json"
    assert not (project.path / "conftest.py").exists()

    first = run(project)
    first.assert_outcomes(failed=1)
    first.stdout.fnmatch_lines(["*no flop_count golden golden/flop_count/test_model.test_mlp_flops.json*",
                                f"*{RECORD}*"])
    assert not golden.exists()

    recorded = run(project, *OPT_IN, "--flop-count-update-golden")
    recorded.assert_outcomes(passed=1)
    recorded.stdout.fnmatch_lines(["*flop_count goldens*", "written: golden/flop_count/test_model.test_mlp_flops.json"])
    text = golden.read_text()
    assert '"matmul_flops": 131072' in text          # 2*4*(64*128 + 128*64)
    assert '"convention": "mac"' in text and '"torch patched"' in text and '"thop stock"' in text

    again = run(project)
    again.assert_outcomes(passed=1)
    assert golden.read_text() == text

    project.makepyfile(test_model=TEST_FILE.format(width=96))
    changed = run(project)
    changed.assert_outcomes(failed=1)
    changed.stdout.fnmatch_lines([
        "*Sequential: FLOP counts differ from the golden*",
        "*field*obtained*expected*difference*",
        "*torch patched: matmul_flops*98,304*131,072*-32,768 (-25.000%)*",
        "*If the change is deliberate, regenerate this golden with:*",
        f"*{RECORD}*"])
    assert golden.read_text() == text               # a failing run never writes the golden...
    obtained = golden.with_name("test_model.test_mlp_flops.obtained.json")
    changed.stdout.fnmatch_lines(["*obtained: golden/flop_count/test_model.test_mlp_flops.obtained.json*"])
    doc = json.loads(obtained.read_text())          # ...but what it obtained, beside it, marked ours
    assert doc["obtained"] is True and doc["counts"]["torch patched"]["matmul_flops"] == 98_304

    (project.path / "golden" / "flop_count" / "tolerances.toml").write_text(
        '[regress."test_model.test_mlp_flops"."*"]\nrel = 0.3\nnote = "width sweep"\n')
    passing = run(project)
    passing.assert_outcomes(passed=1)
    assert golden.read_text() == text
    assert not obtained.exists(), "ours, and its test passes now: stale"
    passing.stdout.fnmatch_lines(["*removed stale golden/flop_count/test_model.test_mlp_flops.obtained.json*"])


def test_unused_goldens_are_listed_in_a_full_run_and_never_deleted(project: pytest.Pytester):
    folder = project.path / "golden" / "flop_count"
    run(project, *OPT_IN, "--flop-count-update-golden").assert_outcomes(passed=1)
    old = folder / "test_gone.test_old_model.json"
    old.write_text((folder / "test_model.test_mlp_flops.json").read_text())
    mine = folder / "notes.obtained.json"
    mine.write_text("{}")                            # an obtained file is not a golden
    full = run(project)
    full.assert_outcomes(passed=1)
    full.stdout.fnmatch_lines(["*1 unused golden(s): no test asked for them in this full run*",
                               "  unused: golden/flop_count/test_gone.test_old_model.json"])
    assert "notes.obtained" not in full.stdout.str()
    assert old.exists() and mine.exists()
    narrowed = run(project, "test_model.py")          # not a full run: says nothing
    narrowed.assert_outcomes(passed=1)
    assert "unused golden" not in narrowed.stdout.str()
    deselected = run(project, "-k", "nothing")
    assert "unused golden" not in deselected.stdout.str()


def test_a_pytest_run_inside_a_test_does_not_make_a_narrowed_run_full(project: pytest.Pytester):
    """Deselection is counted per run: a test that runs pytest in-process (as pytester does) starts
    a session of its own, which must not wipe the outer run's record of what it left out."""
    folder = project.path / "golden" / "flop_count"
    run(project, *OPT_IN, "--flop-count-update-golden").assert_outcomes(passed=1)
    (folder / "test_gone.test_old_model.json").write_text((folder / "test_model.test_mlp_flops.json").read_text())
    project.makepyfile(test_inner='''
        import pytest

        def test_inner(tmp_path):
            (tmp_path / "test_x.py").write_text("def test_x():\\n    pass\\n")
            assert pytest.main([str(tmp_path), "-q", "-p", "no:cacheprovider"]) == 0

        def test_left_out():
            pass
    ''')
    narrowed = run(project, "-k", "not left_out")
    narrowed.assert_outcomes(passed=2, deselected=1)
    assert "unused golden" not in narrowed.stdout.str()


def test_broken_golden_is_named_with_the_fix(project: pytest.Pytester):
    """Without the opt-in (no option of the fixture's): the fix names it."""
    golden = project.path / "golden" / "flop_count" / "test_model.test_mlp_flops.json"
    golden.parent.mkdir(parents=True)
    golden.write_text('{"schema": 1, "kind": "harness.count", "counts": {')
    result = run(project)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*test_model.test_mlp_flops.json is not valid JSON*", f"*{RECORD}*"])
    assert golden.read_text().endswith('{')         # left as the user had it


#: A foreign project's conftest: options of its own that the harness suite plugin also has, and a
#: record of what the process looked like at the end (torch imported, gc frozen, thread variable).
GUEST_CONFTEST = '''
import gc
import json
import os
import re
import sys


def pytest_addoption(parser):
    parser.addoption("--device", default="cpu")
    parser.addoption("--update-golden", action="store_true")


def pytest_sessionfinish(session):
    (session.config.rootpath / "process.json").write_text(json.dumps({
        "torch": "torch" in sys.modules, "xdist": "xdist" in sys.modules and session.config.pluginmanager.hasplugin("dsession"),
        "gc_frozen": gc.get_freeze_count(), "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS")}))
'''

GUEST_TESTS = '''
import sys


def test_its_own_options(pytestconfig):
    assert pytestconfig.getoption("--device") == "cuda:7"
    assert pytestconfig.getoption("--update-golden") is True


def test_no_torch():
    assert "torch" not in sys.modules
'''


def test_a_foreign_project_runs_as_without_harness_and_can_opt_in(project: pytest.Pytester):
    """Installed harness adds nothing to a project that does not ask: in a fresh interpreter, no
    torch imported, no xdist, no frozen gc, the same thread variable as without harness's entry
    point (``-p no:harness-count``); the same outcome and the same ``--help`` options and ini keys.
    Opting in, the project records a flop_count golden beside its own ``--update-golden``."""
    project.makeconftest(GUEST_CONFTEST)
    project.makepyfile(test_model=GUEST_TESTS)
    args = ("-p", "no:cacheprovider", "-p", "no:randomly", "--device", "cuda:7", "--update-golden")
    fresh = project.runpytest_subprocess(*args)                 # a fresh interpreter: is torch imported?
    fresh.assert_outcomes(passed=2)
    process = json.loads((project.path / "process.json").read_text())
    assert process["torch"] is False and process["gc_frozen"] == 0 and not process["xdist"]
    seen = {}
    for name, extra in (("installed", ()), ("without", ("-p", "no:harness-count"))):
        run(project, *args, *extra).assert_outcomes(passed=1, failed=1)    # in process: torch is here already
        seen[name] = json.loads((project.path / "process.json").read_text())["OMP_NUM_THREADS"]
        text = run(project, "--help", *extra).stdout.str()
        seen[name + " help"] = (set(re.findall(r"--[\w-]+", text)),             # options
                                set(re.findall(r"^  ([\w-]+) \(", text, re.M)))  # ini keys
    assert seen["installed"] == seen["without"] == process["OMP_NUM_THREADS"]
    assert seen["installed help"] == seen["without help"]
    assert "--device" in seen["installed help"][0] and "--update-golden" in seen["installed help"][0]
    assert not any("flop" in name for names in seen["installed help"] for name in names)

    project.makepyfile(test_flops=TEST_FILE.format(width=32))
    own = "test_model.py::test_its_own_options"
    opted_in = run(project, *args, *OPT_IN, "--flop-count-update-golden", "test_flops.py", own)
    opted_in.assert_outcomes(passed=2)
    assert (project.path / "golden" / "flop_count" / "test_flops.test_mlp_flops.json").is_file()
    run(project, *args, *OPT_IN, "test_flops.py", own).assert_outcomes(passed=2)
