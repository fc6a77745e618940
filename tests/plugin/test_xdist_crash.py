"""A worker killed under ``-n 2`` (as the kernel's OOM killer does): the run ends, reports the test it
died in once, and runs every other test -- with the project's own scheduler (the root conftest's
``--dist loadfile`` split).

xdist 3.8's LoadScopeScheduling re-queues a crashed worker's whole work unit, the test it crashed
in included, so a deterministic crash repeated on each replacement worker until
``--max-worker-restart`` (4 x 2) was spent: 9 crashes, each after a fresh worker start and collection.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

CONFTEST = f'''
import importlib.util

_spec = importlib.util.spec_from_file_location("harness_root_conftest", {str(ROOT / "conftest.py")!r})
_root = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_root)
pytest_xdist_make_scheduler = _root.pytest_xdist_make_scheduler
'''

CRASHING = '''
import os
import signal


def test_before():
    pass


def test_dies():
    os.kill(os.getpid(), signal.SIGKILL)


def test_after():
    pass
'''

OTHER = '''
def test_one():
    pass


def test_two():
    pass
'''


@pytest.mark.e2e
def test_a_killed_worker_ends_the_run_and_is_reported_once(tmp_path):
    (tmp_path / "conftest.py").write_text(CONFTEST)
    (tmp_path / "test_crashing.py").write_text(CRASHING)
    (tmp_path / "test_other.py").write_text(OTHER)
    (tmp_path / "pytest.ini").write_text("[pytest]\naddopts = -p no:cacheprovider\n")
    # A wide terminal, as on CI: the short summary then repeats xdist's crash message in full, which
    # must not be mistaken for a second crash (count crashed workers and failed entries instead).
    env = {**os.environ, "COLUMNS": "240"}
    proc = subprocess.run([sys.executable, "-m", "pytest", "-n", "2", "--dist", "loadfile", "-q", "-rf"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300, env=env)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out
    assert out.count("node down") == 1, out
    assert out.count("FAILED test_crashing.py::test_dies") == 1, out
    assert "maximum crashed workers" not in out, out
    assert "1 failed, 4 passed" in out, out
