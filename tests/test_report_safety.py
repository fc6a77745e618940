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


@pytest.mark.e2e
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
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
    if signum == signal.SIGINT:      # Ctrl-C's own exit code and line
        assert run.returncode == 130, err
        assert err.strip().splitlines()[-1] == "harness report: interrupted; nothing was written"
    else:
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


def test_sum_max_affine_is_the_loop_in_closed_form():
    """Case 10's fix: the per-page decode time for N tokens is a closed form, equal to the loop."""
    from harness.gpu.roofline import sum_max_affine

    for a, b, c, d in ((1.0, 0.5, 3.0, 0.1), (5.0, -0.01, 1.0, 0.02), (2.0, 0.1, 2.0, 0.1), (0.0, 0.0, 1.0, 0.0),
                       (1e-3, 2e-9, 4e-3, 1e-9), (4e-3, 1e-9, 1e-3, 2e-9)):
        for n in (0, 1, 2, 7, 100, 2501):
            loop = sum(max(a + b * k, c + d * k) for k in range(n))
            assert sum_max_affine(a, b, c, d, n) == pytest.approx(loop, rel=1e-12, abs=1e-15), (a, b, c, d, n)


def test_a_trillion_new_tokens_is_refused_and_past_the_context_is_a_warning(tmp_path):
    """Case 10: --new-tokens 10**12 is refused at once (it used to loop for days); a request past the
    LM's max_position_embeddings (8,192 for ocr2) finishes, with a warning naming the limit."""
    argv = ["report", "--target", "ocr2", "--modes", "base", "--counters", "torch:patched", "--no-plots", "-q",
            "--jobs", "1", "--page-set", "default", "--gpu", "H100 SXM5 80GB", "--out", str(tmp_path / "r")]
    err = io.StringIO()
    assert main(argv + ["--new-tokens", "1000000000000"], stdout=io.StringIO(), stderr=err) == 2
    assert err.getvalue() == ("harness report: error: --new-tokens 1000000000000: expected a number of generated "
                              "tokens from 1 to 10,000,000, far past any LM's context (ocr2: 8,192)\n")
    err = io.StringIO()
    assert main(argv + ["--new-tokens", "10000000"], stdout=io.StringIO(), stderr=err) == 0, err.getvalue()
    (warning,) = [line for line in err.getvalue().splitlines() if "warning" in line]
    assert warning.startswith("harness report: warning: --new-tokens 10,000,000: ocr2 base reaches a context of "
                              "10,000,")
    assert "past its LM's max_position_embeddings of 8,192" in warning
    doc = json.loads((tmp_path / "r" / "report.json").read_text())
    assert doc["performance"]["warnings"] == [warning.partition("warning: ")[2]]
    (request, *_) = doc["performance"]["requests"]
    assert request["new_tokens"] == 10_000_000 and request["time_for_new_tokens_s"] > 0


@pytest.mark.parametrize("option, value", [("--peak-tflops", "inf"), ("--peak-tflops", "nan"),
                                           ("--peak-bandwidth", "1e300"), ("--peak-tflops", "-1")])
def test_peaks_must_be_finite_and_plausible(tmp_path, option, value):
    """Poor family: --peak-tflops inf ended in a ZeroDivisionError after the timing."""
    err = io.StringIO()
    argv = ["report", "--target", "ocr2", "--measure", "--device", "cpu", "--small", option, value,
            "--out", str(tmp_path / "r")]
    assert main(argv, stdout=io.StringIO(), stderr=err) == 2
    assert err.getvalue().startswith(f"harness report: error: {option} {float(value)}: expected a finite positive "
                                     "number of ")
    assert len(err.getvalue().splitlines()) == 1 and not (tmp_path / "r").exists()


def _golden_copy(tmp_path: Path, monkeypatch) -> Path:
    """The report reads a copy of golden/ (the committed files are never touched)."""
    import shutil

    from harness.report import collect

    root = tmp_path / "golden"
    shutil.copytree(collect.golden_dir(), root)
    monkeypatch.setattr(collect, "golden_dir", lambda: root)
    return root


def test_the_report_fails_on_a_truncated_count_golden(tmp_path, monkeypatch):
    """Case 8: a truncated count golden was read as "no golden" (exit 0, pass); now exit 3, named."""
    root = _golden_copy(tmp_path, monkeypatch)
    golden = root / "ocr2" / "count" / "projector" / "g1024.json"
    text = golden.read_text()
    golden.write_text(text[: len(text) // 2])
    argv = ["report", "--target", "ocr2", "--modes", "base", "--counters", "torch:patched", "--no-plots", "-q",
            "--jobs", "1", "--page-set", "default", "--out", str(tmp_path / "r")]
    out, err = io.StringIO(), io.StringIO()
    assert main(argv, stdout=out, stderr=err) == 3, err.getvalue()
    assert out.getvalue().rstrip().endswith("; exit 3")
    lines = [line for line in err.getvalue().splitlines() if "golden file" in line]
    shown = "golden/ocr2/count/projector/g1024.json"     # as the suite names it: from the checkout's top
    assert len(lines) == 1 and lines[0].startswith(f"harness report: golden file cannot be used: golden file {shown} "
                                                   "is not valid JSON (line ")
    assert lines[0].endswith(f"; fix or restore it (git checkout -- {shown}), or regenerate it: pytest --update-golden")
    doc = json.loads((tmp_path / "r" / "report.json").read_text())
    assert doc["summary"]["exit"]["golden_corrupt"] == [lines[0].partition("cannot be used: ")[2]]
    assert golden.read_text() == text[: len(text) // 2]      # read, never repaired


def test_a_copied_builtin_manifest_never_draws_over_the_users_image(tmp_path):
    """Case 6: a manifest copied from fixtures/grid.json kept its ``harness`` block, and
    ``--measure --device cpu --small`` drew a synthetic page over the user's scan.png (mode 0600).
    Now the block is ignored with a warning; the image is read as it is, its own size checked."""
    from PIL import Image

    from harness.inputs.pages import fixtures_dir

    entry = json.loads((fixtures_dir() / "grid.json").read_text())[0]
    scan = tmp_path / "scans" / "scan.png"
    scan.parent.mkdir()
    Image.new("RGB", (entry["page_info"]["width"], entry["page_info"]["height"]), "white").save(scan)
    os.chmod(scan, 0o644)
    entry["page_info"]["image_path"] = "scan.png"
    manifest = tmp_path / "scans" / "m.json"
    manifest.write_text(json.dumps([entry]))
    before = scan.read_bytes()
    argv = ["report", "--target", "ocr2", "--modes", "base", "--counters", "torch:patched",
            "--no-plots", "-q", "--jobs", "1", "--measure", "--device", "cpu", "--small", "--warmup", "0",
            "--repeats", "1", "--pages", str(manifest), "--out", str(tmp_path / "r")]
    err = io.StringIO()
    code = main(argv, stdout=io.StringIO(), stderr=err)
    assert code in (0, 4, 5), err.getvalue()
    assert (f"harness report: warning: {manifest}: 1 entry has a 'harness' block (how the built-in page sets draw "
            "their pages); it is ignored") in err.getvalue()
    assert scan.read_bytes() == before and (scan.stat().st_mode & 0o777) == 0o644
    assert sorted(p.name for p in scan.parent.iterdir()) == ["m.json", "scan.png"]
    # a size the image contradicts is not trusted: the block's size no longer stands in for the image
    entry["page_info"]["width"] += 7
    manifest.write_text(json.dumps([entry]))
    err = io.StringIO()
    assert main(["layout", "--target", "ocr2", "--modes", "base", "--pages", str(manifest)],
                stdout=io.StringIO(), stderr=err) == 2
    assert (f"page_info says {entry['page_info']['width']}x{entry['page_info']['height']} but the image {scan} is "
            f"{entry['page_info']['width'] - 7}x{entry['page_info']['height']}") in err.getvalue()


def test_measure_trusts_no_file_in_the_shared_temp_directory(tmp_path, monkeypatch):
    """Case 9: the analytic FLOPs of --measure's timed stages came from
    ``$TMPDIR/harness-ocr2-config-<hash>.json``, trusted by its name: anyone could plant it. Now the
    built model's configuration is read from memory, and a planted file changes nothing."""
    import hashlib
    import tempfile
    from types import SimpleNamespace

    from harness.analytic import stage_costs
    from harness.analytic.config import DATA_DIR
    from harness.gpu.profile import analytic_config
    from harness.inputs.workload import compute_view_layout, get_workload

    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr(tempfile, "tempdir", None)
    data = json.loads((DATA_DIR / "ocr2_config.json").read_text())
    text = json.dumps(data, default=str, sort_keys=True)
    planted = Path(tempfile.gettempdir()) / f"harness-ocr2-config-{hashlib.sha256(text.encode()).hexdigest()[:16]}.json"
    evil = json.loads(text)
    evil["vision_config"]["sam_config"]["hidden_size"] *= 2
    planted.write_text(json.dumps(evil))
    dims = analytic_config(SimpleNamespace(target="ocr2", config=data))
    layout = compute_view_layout(get_workload("ocr2", "base"), 1700, 2200)
    sam = stage_costs("ocr2", layout, config=dims)["sam"].matmul_flops
    assert sam == stage_costs("ocr2", layout)["sam"].matmul_flops      # the built-in configuration's count
    assert sorted(p.name for p in tmp_path.iterdir()) == [planted.name]   # nothing else written there


REPORT = ["report", "--target", "ocr2", "--modes", "base", "--counters", "torch:patched", "--no-plots", "-q",
          "--jobs", "1", "--page-set", "default"]


def _one_line(argv: list[str], stdout=None) -> tuple[int, str]:
    err = io.StringIO()
    code = main(argv, stdout=stdout or io.StringIO(), stderr=err)
    text = err.getvalue()
    assert "Traceback" not in text and len(text.strip().splitlines()) == 1, text
    return code, text.strip()


def test_a_malformed_bands_file_is_one_line(tmp_path, monkeypatch):
    """Poor family: a malformed golden/tolerances.toml under the report was a BandsError traceback."""
    root = _golden_copy(tmp_path, monkeypatch)
    (root / "tolerances.toml").write_text("[verify]\nsam = 'wide'\n")
    code, line = _one_line(REPORT + ["--out", str(tmp_path / "r")])
    assert code == 2 and line.startswith("harness report: error: the tolerance bands cannot be used: ")
    assert str(root / "tolerances.toml") in line and not (tmp_path / "r").exists()


def test_a_broken_pipe_is_one_line():
    """Poor family: ``harness layout | head -1`` ended in a BrokenPipeError traceback."""
    class Closed(io.StringIO):
        def write(self, text):
            raise BrokenPipeError(32, "Broken pipe")

    code, line = _one_line(["layout", "--target", "ocr2", "--page-set", "corpus"], stdout=Closed())
    assert code == 2 and line == ("harness layout: error: the output was closed before it was all written (broken "
                                  "pipe, e.g. piped into head); write it to a file to keep all of it")


def test_out_under_a_file_found_at_the_write_is_one_line(tmp_path):
    """Poor family: --out under a path that is a file (or a dangling link) by the time the report is
    written was a FileExistsError traceback; before the work it is a one-line refusal."""
    from harness.report.output import OutputError, ReportDir, check_out_dir

    (tmp_path / "gone").symlink_to(tmp_path / "nowhere")
    code, line = _one_line(REPORT + ["--out", str(tmp_path / "gone" / "r")])
    assert code == 2 and line == (f"harness report: error: --out {tmp_path}/gone/r: {tmp_path}/gone is a symbolic "
                                  f"link to {tmp_path}/nowhere, which does not exist, so {tmp_path}/gone/r cannot be "
                                  "created; fix the link or choose another --out")
    out = tmp_path / "d" / "r"
    plan = check_out_dir(out)
    (tmp_path / "d").rmdir()
    (tmp_path / "d").write_text("a file now")        # during the run
    with pytest.raises(OutputError, match=r"cannot create the report's temporary directory in .*/d: "):
        ReportDir(out, plan)
    assert (tmp_path / "d").read_text() == "a file now"


def test_the_model_path_named_is_the_one_the_user_set(tmp_path, monkeypatch):
    """Poor family: "--model-path /nonexistent" was named when it came from DEEPSEEK_OCR_PATH."""
    monkeypatch.setenv("DEEPSEEK_OCR_PATH", str(tmp_path / "nonexistent"))
    code, line = _one_line(["report", "--target", "dsocr", "--trust-remote-code", "--out", str(tmp_path / "r")])
    assert code == 2 and line.startswith(f"harness report: error: DEEPSEEK_OCR_PATH={tmp_path}/nonexistent "
                                         "(environment; no --model-path given): ")
    assert "--model-path /" not in line
    code, line = _one_line(["report", "--target", "dsocr", "--model-path", str(tmp_path / "other"),
                            "--trust-remote-code", "--out", str(tmp_path / "r")])
    assert code == 2 and line.startswith(f"harness report: error: --model-path {tmp_path}/other: ")


@pytest.mark.parametrize("value", ["nan", "inf", "-0.1", "1"])
def test_count_refuses_an_rtol_that_means_nothing(value):
    """Poor family: --rtol nan failed a correct count, --rtol inf passed one off by 10**6."""
    code, line = _one_line(["count", "no_such_module:factory", "--expected", "1", "--rtol", value])
    assert code == 2 and line == (f"harness count: error: --rtol {float(value)}: expected a finite fraction of "
                                  "--expected from 0 (exact) to below 1 (e.g. --rtol 0.01 for 1%)")


def test_a_space_in_a_page_id_keeps_its_plot_link():
    """Poor family: a space in a page name broke the Markdown link to its plot."""
    from harness.report.units import md_image

    assert md_image("ocr2: my page [base]", "stage_bars_ocr2_my page (1).png") == (
        r"![ocr2: my page \[base\]](stage_bars_ocr2_my%20page%20%281%29.png)")


@pytest.mark.e2e
def test_pytest_leaves_no_empty_benchmarks_directory(tmp_path):
    """Poor family: pytest-benchmark (a dependency) left an empty .benchmarks/ where a run of the
    suite's plugin started; one that was there before, or that holds something, stays. (The plugin is
    switched on as this repository's conftest does; a project that does not use it is not touched.)"""
    (tmp_path / "test_one.py").write_text("def test_one():\n    assert 1 + 1 == 2\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "HARNESS_"))}
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "harness.pytest.plugin", "-n", "0",
               "test_one.py"]
    run = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["test_one.py"]
    (tmp_path / ".benchmarks").mkdir()
    run = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0 and (tmp_path / ".benchmarks").is_dir()


def test_a_factory_that_asserts_is_one_line(tmp_path, monkeypatch):
    """Poor family: a factory raising AssertionError in ``harness count`` (a traceback then)."""
    (tmp_path / "asserting.py").write_text("def factory():\n    assert False, 'my own check'\n")
    monkeypatch.chdir(tmp_path)
    code, line = _one_line(["count", str(tmp_path / "asserting.py") + ":factory"])
    assert code == 2 and line == (f"harness count: error: {tmp_path}/asserting.py:factory: the factory raised "
                                  "AssertionError: my own check")
