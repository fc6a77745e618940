"""A fake project run end to end with ``pytester``: the plugin's golden workflow on a tiny suite.

The fake project defines its own suite (``pytest_harness_golden_definition``) for one target,
``fake``: a layout table for mode ``base`` with two pages, and count facts for two stages --
``sam`` at one shape key (counter torch) and ``prefill`` at two shape keys (torch and thop at
``L273``, torch at ``L300``). ``definition.json`` is that definition; ``values.json`` is what the
fake counter "measures", so a test changes the model by rewriting it. Six tests, four golden
files::

    golden/fake/layout/base.json
    golden/fake/count/sam/g1024.json
    golden/fake/count/prefill/L273.json
    golden/fake/count/prefill/L300.json
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
# pytester's in-process runs drop the modules they imported when they end, and torch cannot be
# imported twice in one process: import it (the real suite definition needs it) before any run
import torch  # noqa: F401

#: A project conftest that switches the plugin on (installing harness does not).
PLUGIN_CONFTEST = '''
pytest_plugins = ["harness.pytest.plugin"]
'''

#: The fake project's conftest: the plugin, and its suite definition from definition.json.
PROJECT_CONFTEST = PLUGIN_CONFTEST + '''
import json
import pathlib

from harness.golden.session import Expected

HERE = pathlib.Path(__file__).parent


def definition():
    return json.loads((HERE / "definition.json").read_text())


def shape(key):
    return {"global": int(key[1:])} if key.startswith("g") else {"tokens": int(key[1:])}


def pytest_harness_golden_definition(config):
    d = definition()
    exp = Expected()
    for mode, pages in d["modes"].items():
        exp.layouts[(d["target"], mode)] = tuple(pages)
    for stage, keys in d["counts"].items():
        for key, spec in keys.items():
            exp.counts[(d["target"], stage, key)] = (shape(key), tuple(spec["counters"]))
    for target, stage, key, counters in d.get("also_expected", []):     # facts of a target with no tests here
        exp.counts[(target, stage, key)] = (shape(key), tuple(counters))
    return exp
'''

FAKE_SUITE = '''
import json
import os
import pathlib
import time

import pytest

from conftest import definition, shape

HERE = pathlib.Path(__file__).parent
D = definition()
TARGET = D["target"]


def values():
    return json.loads((HERE / "values.json").read_text())


def layout_params():
    return [pytest.param(mode, page, id=f"{TARGET}-{mode}-{page}")
            for mode, pages in D["modes"].items() for page in pages]


def count_params():
    return [pytest.param(stage, counter, key, id=f"{TARGET}-{stage}-{counter}-{key}")
            for stage, keys in D["counts"].items() for key, spec in keys.items() for counter in spec["counters"]]


def act(v, name):
    """What values.json asks this test to do besides measuring (``"at": {name: action}``)."""
    action = v.get("at", {}).get(name)
    if action == "fail":
        assert False, f"{name}: a failing test"
    if action == "interrupt":
        raise KeyboardInterrupt
    if action == "exit":
        os._exit(3)
    if action == "block" and not (HERE / "blocked").exists():     # only the first run to get here blocks
        (HERE / "blocked").write_text(str(os.getpid()))
        deadline = time.monotonic() + 120
        while not (HERE / "release").exists():
            assert time.monotonic() < deadline, "never released"
            time.sleep(0.05)


@pytest.mark.parametrize("mode, page", layout_params())
def test_layout(mode, page, golden):
    v = values()
    act(v, f"{mode}-{page}")
    keys = {stage: k for stage, by_key in D["counts"].items()
            for k, spec in by_key.items() if f"{mode}/{page}" in spec["pages"]}
    size = dict(zip(("width", "height"), v["sizes"][page]))
    golden.layout(TARGET, mode, page, {"size": size, "views": [[1024, 1]], "shape_keys": keys},
                  text_tokens=v["text_tokens"])


@pytest.mark.parametrize("stage, counter, key", count_params())
def test_count(stage, counter, key, golden):
    """A fake counter: FLOPs of the stage at the key from values.json; thop reports MACs."""
    v = values()
    act(v, f"{stage}-{counter}-{key}")
    flops = v["flops"][f"{stage}/{key}"]
    raw, convention = (flops // 2, "mac") if counter == "thop" else (flops, "flop")
    by_op = {"aten.mm": flops}
    by_op.update(v.get("extra_ops", {}))
    entry = {"raw": raw, "convention": convention, "flops": flops, "by_op": by_op,
             "unknown_ops": v.get("unknown_ops", {}), "ignored_ops": [], "version": v["counter_version"]}
    golden.count(TARGET, stage, counter, key, entry, shape=shape(key), environment=v["environment"])
'''

DEFINITION = {
    "target": "fake",
    "modes": {"base": ["letter", "grid-1"]},
    "counts": {
        "sam": {"g1024": {"pages": ["base/letter", "base/grid-1"], "counters": ["torch"]}},
        "prefill": {"L273": {"pages": ["base/letter"], "counters": ["torch", "thop"]},
                    "L300": {"pages": ["base/grid-1"], "counters": ["torch"]}},
    },
}
VALUES = {
    "flops": {"sam/g1024": 1000, "prefill/L273": 2_000_000, "prefill/L300": 2_200_000},
    "sizes": {"letter": [1700, 2200], "grid-1": [640, 640]},
    "text_tokens": 16,
    "counter_version": "1.0",
    "environment": {"torch": "2.13.0", "transformers": "5.23.0", "dtype": "float32"},
}
#: Test ids of the fake suite (6 tests).
LAYOUT_IDS = ["test_fake.py::test_layout[fake-base-letter]", "test_fake.py::test_layout[fake-base-grid-1]"]
COUNT_IDS = ["test_fake.py::test_count[fake-sam-torch-g1024]", "test_fake.py::test_count[fake-prefill-torch-L273]",
             "test_fake.py::test_count[fake-prefill-thop-L273]", "test_fake.py::test_count[fake-prefill-torch-L300]"]
N_TESTS = 6
GOLDEN_FILES = ["fake/count/prefill/L273.json", "fake/count/prefill/L300.json", "fake/count/sam/g1024.json",
                "fake/layout/base.json"]


class FakeProject:
    """A temporary project with the harness plugin and the fake suite."""

    def __init__(self, pytester: pytest.Pytester) -> None:
        self.pytester = pytester
        self.path = pytester.path
        pytester.makeconftest(PROJECT_CONFTEST)
        pytester.makeini("[pytest]\naddopts = -p no:cacheprovider -p no:hypothesispytest -p no:benchmark "
                         "-p no:anyio\n")
        self.test_file = pytester.makepyfile(test_fake=FAKE_SUITE)
        self.golden_dir = pytester.path / "golden"
        self.definition = copy.deepcopy(DEFINITION)
        self.values = copy.deepcopy(VALUES)
        self.unused_snapshot: dict[str, bytes] = {}      # set by the ``unused`` fixture
        self.save()

    def save(self) -> None:
        """Write definition.json and values.json from :attr:`definition` and :attr:`values`."""
        (self.path / "definition.json").write_text(json.dumps(self.definition))
        (self.path / "values.json").write_text(json.dumps(self.values))

    def at(self, **actions: str) -> None:
        """``at(sam_torch_g1024="fail")``: make a test fail, interrupt, exit (``os._exit``) or block
        (the first run to get there waits until the file ``release`` exists) before it measures;
        ``at()`` clears."""
        self.values["at"] = {name.replace("_", "-"): action for name, action in actions.items()}
        self.save()

    def set_flops(self, **flops: int) -> None:
        """``set_flops(sam_g1024=1010)``: change what the fake counter measures."""
        for name, value in flops.items():
            self.values["flops"][name.replace("_", "/", 1)] = value
        self.save()

    def make_unused(self) -> dict[str, bytes]:
        """Make goldens with a larger definition, then shrink it back: the golden directory then
        holds an unused layout page (``base/old``), an unused counter entry (fvcore at
        ``sam/g1024``) and an unused count file (``prefill/L999``). Returns the snapshot."""
        small = copy.deepcopy(self.definition)
        self.definition["modes"]["base"].append("old")
        self.definition["counts"]["sam"]["g1024"]["counters"].append("fvcore")
        self.definition["counts"]["prefill"]["L999"] = {"pages": ["base/old"], "counters": ["torch"]}
        self.values["sizes"]["old"] = [100, 100]
        self.values["flops"]["prefill/L999"] = 9_990_000
        self.save()
        self.run("--update-golden").assert_outcomes(passed=N_TESTS + 3)
        self.definition = small
        self.save()
        snapshot = self.snapshot()
        assert sorted(snapshot) == sorted(GOLDEN_FILES + ["fake/count/prefill/L999.json"])
        return snapshot

    def layout(self, mode: str = "base") -> Path:
        return self.golden_dir / "fake" / "layout" / f"{mode}.json"

    def count(self, stage: str = "sam", key: str = "g1024") -> Path:
        return self.golden_dir / "fake" / "count" / stage / f"{key}.json"

    def snapshot(self) -> dict[str, bytes]:
        """Every file under the golden directory (relative path -> bytes), lock file and obtained
        files (what a failing run measured; test_obtained.py checks them) excluded."""
        if not self.golden_dir.exists():
            return {}
        return {p.relative_to(self.golden_dir).as_posix(): p.read_bytes()
                for p in sorted(self.golden_dir.rglob("*")) if p.is_file() and p.name != ".harness-golden.lock"
                and not p.name.endswith(".obtained.json")}

    def assert_all_valid(self) -> dict[str, dict]:
        """Every golden file is valid JSON of schema 2 that the harness reads; no temporary file left."""
        from harness.golden import iter_golden_files, load_doc

        docs = {}
        for path in iter_golden_files(self.golden_dir):
            kind = "layout" if path.parent.name == "layout" else "count"
            doc = load_doc(path, kind)
            assert doc is not None and doc["schema"] == 2, path
            docs[path.relative_to(self.golden_dir).as_posix()] = doc
        assert not list(self.golden_dir.rglob("*.tmp")), "a temporary file was left behind"
        return docs

    def run(self, *args: str) -> pytest.RunResult:
        """Run the inner pytest in-process (an inner Ctrl-C stays inside it)."""
        return self.pytester.runpytest(*args, no_reraise_ctrlc=True)

    def run_subprocess(self, *args: str, timeout: float = 120) -> pytest.RunResult:
        """Run the inner pytest in a fresh interpreter."""
        return self.pytester.runpytest_subprocess(*args, timeout=timeout)

    def update(self) -> pytest.RunResult:
        """``--update-golden`` of the whole fake suite; asserts it passed."""
        result = self.run("--update-golden")
        result.assert_outcomes(passed=N_TESTS)
        return result


@pytest.fixture(autouse=True)
def _inner_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The inner runs are top-level runs whatever the outer one is (pytester already drops
    PYTEST_ADDOPTS): not an xdist worker, no vendor directory from the environment."""
    for name in ("PYTEST_XDIST_WORKER", "PYTEST_XDIST_WORKER_COUNT", "PYTEST_XDIST_TESTRUNUID", "DEEPSEEK_OCR_PATH"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def fake(pytester: pytest.Pytester) -> FakeProject:
    """The fake project in a temporary directory (no goldens yet)."""
    return FakeProject(pytester)


@pytest.fixture
def unused(fake: FakeProject) -> FakeProject:
    """The fake project with goldens and three unused ones (see :meth:`FakeProject.make_unused`)."""
    fake.unused_snapshot = fake.make_unused()
    return fake


#: The summary lines that list them.
UNUSED = ["  unused: layout:fake-base-old", "  unused: count:fake-prefill-*-L999",
          "  unused: count:fake-sam-fvcore-g1024"]


@pytest.fixture
def made(fake: FakeProject) -> FakeProject:
    """The fake project with its goldens made by ``--update-golden``."""
    fake.update()
    assert sorted(fake.snapshot()) == GOLDEN_FILES
    return fake


def literal(pattern: str) -> str:
    """Escape ``[`` for ``fnmatch_lines`` (test ids contain brackets)."""
    return pattern.replace("[", "[[]")


def plugin_args() -> list[str]:
    """Arguments that load the plugin into a run without the project's conftest."""
    return ["-p", "harness.pytest.plugin"]
