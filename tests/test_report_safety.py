"""Issue 30: what ``harness report`` must never do to a user's files, processes or machine:
orphan its workers on SIGTERM, loop for days over --new-tokens, accept a number that means
nothing, trust a golden, manifest or cache file it cannot check. Each test reproduces one case of
the issue (the ``--out`` cases are in test_inputs_cases.py and test_inputs_output.py)."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.cli import main
from tests.test_inputs_cases import previous_report

REPO = Path(__file__).resolve().parents[1]


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rpartition(")")[2].split()[1]) == pid:
                found.append(int(entry.name))
    return found


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")
@pytest.mark.parametrize("signum", [signal.SIGTERM])
def test_sigterm_ends_the_workers_and_keeps_the_previous_report(tmp_path, signum):
    """Case 11: SIGTERM to ``harness report --jobs 2`` ends its forked workers too; the previous
    report is as it was and no temporary directory is left."""
    out = previous_report(tmp_path / "r")
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    run = subprocess.Popen([sys.executable, "-m", "harness", "report", "--target", "ocr2", "--page-set", "grid",
                            "--counters", "torch:patched", "--no-plots", "--jobs", "2", "-q", "--out", str(out)],
                           cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 240
        workers: list[int] = []
        while time.monotonic() < deadline and run.poll() is None:
            workers = [c for c in _children(run.pid)]
            if len(workers) >= 2:
                break
            time.sleep(0.2)
        assert len(workers) >= 2, "the report never started its workers"
        run.send_signal(signum)
        _, err = run.communicate(timeout=60)
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
    assert run.returncode == 128 + signum, err
    assert err.strip().splitlines()[-1] == (
        f"harness report: {signal.Signals(signum).name} received: stopped; its workers stopped too, nothing "
        "was written and a previous report in --out is as it was")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(Path(f"/proc/{w}").exists() for w in workers):
        time.sleep(0.1)
    alive = []
    for w in workers:
        try:
            state = Path(f"/proc/{w}/stat").read_text().rpartition(")")[2].split()[0]
        except OSError:
            continue
        if state != "Z":
            alive.append(w)
    assert alive == [], "workers outlived the report"
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r"]
