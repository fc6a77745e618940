"""``--out``: nothing a user owns is lost, a failed run changes nothing, killed runs leave nothing behind.

The refusals before any work are rows of ``test_inputs_cases.py``; here are the writes themselves.
"""

from __future__ import annotations

import errno
import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

from harness.report import output
from harness.report.output import MANIFEST, OutputError, read_manifest, ReportDir, check_out_dir, stale_temp_dirs
from tests.test_inputs_cases import previous_report

REPO = Path(__file__).resolve().parents[1]


def write_report(out: Path, files: dict[str, str], **kwargs) -> None:
    """What run_report does: write into a ReportDir and commit (report.json lists the files)."""
    with ReportDir(out, **kwargs) as tmp:
        for name, text in files.items():
            tmp.write_text(name, text)
        tmp.write_text("report.json", json.dumps({"schema": "harness.report/1", "summary": {"files": sorted(files)}}))
        tmp.commit()


def listing(path: Path) -> dict[str, str]:
    """The report's files (its manifest, which every commit writes, checked and left out)."""
    assert set(json.loads((path / MANIFEST).read_text())["files"]) == {p.name for p in path.iterdir()} - {MANIFEST}
    return {p.name: p.read_text() for p in sorted(path.iterdir()) if p.is_file() and p.name != MANIFEST}


def names(path: Path) -> list[str]:
    return sorted(listing(path))


def siblings(path: Path) -> list[str]:
    return sorted(p.name for p in path.parent.iterdir() if p.name != path.name)


def killed_writing(out: Path, text: str, then: str) -> None:
    """A process that writes report.md into a ReportDir for ``out``, then runs ``then`` (which kills it)."""
    script = ("import os, signal, sys\n"
              "from harness.report.output import ReportDir\n"
              "tmp = ReportDir(sys.argv[1])\n"
              f"tmp.write_text('report.md', {text!r})\n" + then)
    run = subprocess.run([sys.executable, "-c", script, str(out)], cwd=REPO,
                         env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True)
    assert run.returncode == -9, run.stderr


def test_previous_report_is_replaced_as_a_whole(tmp_path):
    out = previous_report(tmp_path / "r")
    write_report(out, {"report.md": "new"})
    assert listing(out) == {"report.json": json.dumps({"schema": "harness.report/1", "summary": {"files": ["report.md"]}}),
                            "report.md": "new"}
    assert siblings(out) == []   # no temporary or backup directory left


def test_force_deletes_exactly_the_listed_entries(tmp_path):
    out = previous_report(tmp_path / "r", {"my_notes.txt": "mine", "sub/x.txt": "mine"})
    with pytest.raises(OutputError, match=r"2 entries that are not among its files: my_notes.txt, sub/"):
        check_out_dir(out)
    assert (out / "my_notes.txt").read_text() == "mine"   # refused: untouched
    said: list[str] = []
    plan = check_out_dir(out, force=True, warn=said.append)
    assert plan.remove == ["my_notes.txt", "sub"]
    assert said == [f"--force: --out {out}: deleting 2 entries that are not the previous report's: my_notes.txt, sub/"]
    write_report(out, {"report.md": "new"}, plan=plan)
    assert names(out) == ["report.json", "report.md"]


def test_force_is_remembered_for_the_same_directory(tmp_path, monkeypatch):
    monkeypatch.setattr(output, "_FORCED", set())
    out = previous_report(tmp_path / "r", {"keep.txt": "x"})
    check_out_dir(out, force=True)          # the command line's check, before the work
    assert check_out_dir(out).remove == ["keep.txt"]   # the report's own check later on
    with pytest.raises(OutputError):
        check_out_dir(previous_report(tmp_path / "other", {"keep.txt": "x"}))


def test_files_that_appear_during_the_run_are_kept(tmp_path):
    out = previous_report(tmp_path / "r")
    with pytest.raises(OutputError, match=r"late.txt appeared in it during the run and would be lost; the new "
                                          r"report is left in"):
        with ReportDir(out) as tmp:
            tmp.write_text("report.md", "new")
            (out / "late.txt").write_text("mine")
            tmp.commit()
    assert (out / "late.txt").read_text() == "mine" and (out / "report.md").read_text() == "old"


def test_a_mount_point_is_filled_in_place(tmp_path, monkeypatch):
    """A mount point cannot be renamed (EBUSY): the files go in one by one, the directory stays."""
    out = previous_report(tmp_path / "mnt")
    inode = out.stat().st_ino
    monkeypatch.setattr(output, "_own_filesystem", lambda path: False)
    plan = check_out_dir(out)
    assert plan.mode == "in-place"
    with ReportDir(out, plan) as tmp:
        assert tmp.path.parent == out   # built inside it: the same filesystem, so each move is a rename
        tmp.write_text("report.md", "new")
        tmp.write_text("report.json", json.dumps({"schema": "harness.report/1", "summary": {"files": ["report.md"]}}))
        tmp.commit()
    assert out.stat().st_ino == inode
    # the old report's other files are gone, nothing else is left
    assert names(out) == ["report.json", "report.md"]
    assert (out / "report.md").read_text() == "new"


def test_a_symlinked_out_keeps_its_link(tmp_path):
    real = previous_report(tmp_path / "real")
    link = tmp_path / "link"
    link.symlink_to(real, target_is_directory=True)
    assert check_out_dir(link).mode == "in-place"
    write_report(link, {"report.md": "new"})
    assert link.is_symlink() and (real / "report.md").read_text() == "new"
    assert names(real) == ["report.json", "report.md"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link", "real"]


def test_another_filesystem_is_filled_in_place_by_copy(tmp_path, monkeypatch):
    out = previous_report(tmp_path / "other-fs")
    monkeypatch.setattr(output, "_own_filesystem", lambda path: False)
    monkeypatch.setattr(output, "_same_filesystem", lambda a, b: False)
    write_report(out, {"report.md": "new"})
    assert names(out) == ["report.json", "report.md"]


def test_rename_refused_at_commit_falls_back_to_in_place(tmp_path, monkeypatch):
    """Not seen as a mount point beforehand, but the rename says EBUSY: fill in place, no OSError."""
    out = previous_report(tmp_path / "r")
    real_rename = os.rename

    def busy(src, dst):
        if Path(src) == out:
            raise OSError(errno.EBUSY, "Device or resource busy", str(src))
        return real_rename(src, dst)

    monkeypatch.setattr(os, "rename", busy)
    write_report(out, {"report.md": "new"})
    assert names(out) == ["report.json", "report.md"]
    assert siblings(out) == []


def test_the_real_mount_points_here_are_seen():
    mounts = [p for p in ("/proc", "/sys", "/dev") if os.path.ismount(p)]
    if not mounts:
        pytest.skip("no mount point to look at here")
    assert output._own_filesystem(Path(mounts[0])) is False


@pytest.mark.parametrize("code, says", [
    (errno.ENOSPC, "no space left on the device"),
    (errno.EDQUOT, "no space left on the device"),
    (errno.EACCES, "permission denied"),
    (errno.EROFS, "read-only filesystem"),
])
def test_write_errors_are_one_line_and_change_nothing(tmp_path, monkeypatch, code, says):
    out = previous_report(tmp_path / "r")
    before = listing(out)
    real_write = Path.write_text

    def failing(self, *args, **kwargs):
        if self.name == "report.csv":
            raise OSError(code, os.strerror(code), str(self))
        return real_write(self, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", failing)
    with pytest.raises(OutputError) as info:
        write_report(out, {"report.md": "new", "report.csv": "rows"})
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"--out {out}: writing the report failed (report.csv): {says}")
    assert message.endswith(f"nothing in {out} was changed")
    monkeypatch.undo()
    assert listing(out) == before and siblings(out) == []


def test_an_error_from_a_plot_is_one_line_too(tmp_path):
    """Plots are saved straight into the temporary directory: their OSError is caught on the way out."""
    out = tmp_path / "r"
    with pytest.raises(OutputError, match=r"writing the report failed \(stage_bars.png\): no space left"):
        with ReportDir(out) as tmp:
            raise OSError(errno.ENOSPC, "No space left on device", str(tmp.path / "stage_bars.png"))
    assert not out.exists() and siblings(out) == []


def test_other_exceptions_pass_through_and_clean_up(tmp_path):
    out = tmp_path / "r"
    with pytest.raises(KeyboardInterrupt):
        with ReportDir(out):
            raise KeyboardInterrupt
    assert not out.exists() and siblings(out) == []


def test_a_killed_run_leaves_a_temporary_directory_that_the_next_run_removes(tmp_path):
    out = tmp_path / "r"
    killed_writing(out, "half", "os.kill(os.getpid(), signal.SIGKILL)\n")
    (left,) = tmp_path.iterdir()
    assert left.name.startswith(".r.harness-tmp-") and (left / "report.md").read_text() == "half"
    said: list[str] = []
    plan = check_out_dir(out, warn=said.append)
    assert plan.cleaned == [left.name] and not left.exists()
    assert said == [f"--out {out}: removed 1 temporary directory left by killed runs: {left.name}"]


def test_only_our_marked_directories_of_dead_runs_are_removed(tmp_path):
    """Issue 30 case 4: a name is no proof; the marker inside and a dead owner are."""
    out = tmp_path / "r"
    with ReportDir(out) as tmp:      # this process is alive: its directory stays
        assert stale_temp_dirs(tmp_path, "r") == []
        check_out_dir(out)
        assert tmp.path.exists()
        tmp.discard()
    users = [tmp_path / ".r.old-2024", tmp_path / ".r.tmp-mine", tmp_path / ".r.harness-tmp-x-99999999-abc"]
    for path in users:
        path.mkdir()
        (path / "thesis.tex").write_text("mine")
    forged = users[-1]
    (forged / output.OWNER).write_text(json.dumps({"schema": output.OWNER_SCHEMA, "host": "elsewhere",
                                                   "pid": 99999999, "start": None}))
    said: list[str] = []
    assert check_out_dir(out, warn=said.append).cleaned == [] and said == []
    assert all((path / "thesis.tex").read_text() == "mine" for path in users)


def test_cli_force_end_to_end(tmp_path):
    """``harness report --force`` over a report with the user's files: listed, deleted, report written."""
    from harness.cli import main

    Image.new("RGB", (1700, 2200), "white").save(tmp_path / "letter.png")
    out = previous_report(tmp_path / "r", {"my_notes.txt": "mine"})
    argv = ["report", "--target", "ocr2", "--modes", "base", "--counters", "torch:patched", "--no-plots",
            "--jobs", "1", "-q", "--pages", str(tmp_path / "letter.png"), "--out", str(out)]
    err = io.StringIO()
    assert main(argv, stdout=io.StringIO(), stderr=err) == 2
    assert "my_notes.txt" in err.getvalue() and (out / "my_notes.txt").exists()
    err = io.StringIO()
    assert main(argv + ["--force"], stdout=io.StringIO(), stderr=err) == 0, err.getvalue()
    assert (f"harness report: warning: --force: --out {out}: deleting 1 entry that is not the previous "
            "report's: my_notes.txt") in err.getvalue()
    assert not (out / "my_notes.txt").exists() and (out / "report.md").exists()
    from harness.report.render import SCHEMA

    assert json.loads((out / "report.json").read_text())["schema"] == SCHEMA
    # the report just written knows its own files: only the user's new file is named
    (out / "later.txt").write_text("mine")
    err = io.StringIO()
    assert main(argv, stdout=io.StringIO(), stderr=err) == 2
    assert (f"--out {out}: a previous report, plus 1 entry that is not among its files: later.txt. The report "
            "replaces the directory") in err.getvalue()


def test_refused_places_lose_nothing(tmp_path, monkeypatch):
    """Issue 30 cases 1-3: ``--out .`` in a checkout, ``--out ''`` and ``--out`` = the pages, all with
    --force: exit 2 before any work, every file as it was."""
    from harness.cli import main
    from tests.test_inputs_cases import _checkout, img

    repo = _checkout(tmp_path)
    pages = img(repo / "one.png").parent
    before = {p: p.read_bytes() for p in repo.rglob("*") if p.is_file()}
    monkeypatch.chdir(repo)
    base = ["report", "--target", "ocr2", "--modes", "base", "--counters", "torch:patched", "--no-plots",
            "--force", "-q"]
    for more in (["--out", ".", "--pages", "one.png"], ["--out", "", "--pages", "one.png"],
                 ["--out", str(pages), "--pages", str(pages)], ["--out", "..", "--pages", "one.png"]):
        err = io.StringIO()
        assert main(base + more, stdout=io.StringIO(), stderr=err) == 2, err.getvalue()
        assert len(err.getvalue().splitlines()) == 1 and "Traceback" not in err.getvalue()
    assert {p: p.read_bytes() for p in repo.rglob("*") if p.is_file()} == before


def test_a_file_saved_during_a_force_run_is_kept(tmp_path, monkeypatch):
    """Issue 30 case 5: --force deletes what it listed, as it was when listed; a file saved since
    (a listed one changed, or a new one after the last look) stays in --out."""
    out = previous_report(tmp_path / "r", {"my_notes.txt": "mine", "draft.txt": "old draft"})
    plan = check_out_dir(out, force=True)
    assert plan.remove == ["draft.txt", "my_notes.txt"]
    swap = ReportDir._swap

    def late_save(self, target):     # the user saves just after the commit's last look
        (target / "late.txt").write_text("saved during the run")
        swap(self, target)

    monkeypatch.setattr(ReportDir, "_swap", late_save)
    with ReportDir(out, plan) as tmp:
        tmp.write_text("report.md", "new")
        time.sleep(0.01)
        (out / "draft.txt").write_text("new draft, saved during the run")
        tmp.commit()
    files = {p.name: p.read_text() for p in out.iterdir() if p.name != MANIFEST}
    assert files == {"report.md": "new", "draft.txt": "new draft, saved during the run",
                     "late.txt": "saved during the run"}
    assert tmp.kept == ["draft.txt", "late.txt"] and siblings(out) == []


def test_two_runs_into_one_out_the_second_refuses_naming_the_first(tmp_path):
    """Issue 30 case 5: a run holding --out (another process) makes a second one refuse at once."""
    from harness.cli import main
    from tests.test_inputs_cases import img

    out = tmp_path / "r"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\nfrom harness.report.output import OutLock\n"
         "lock = OutLock(sys.argv[1]).acquire()\nprint('held', flush=True)\ntime.sleep(60)\n", str(out)],
        cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "held\n"
        err = io.StringIO()
        argv = ["report", "--target", "ocr2", "--modes", "base", "--counters", "torch:patched", "--no-plots",
                "-q", "--jobs", "1", "--pages", str(img(tmp_path / "a.png")), "--out", str(out)]
        assert main(argv, stdout=io.StringIO(), stderr=err) == 2
        assert (f"harness report: error: --out {out}: another harness report is writing it (process "
                f"{holder.pid} on ") in err.getvalue()
        assert "wait for it to finish or choose another --out" in err.getvalue() and not out.exists()
    finally:
        holder.kill()
        holder.wait()
    with output.OutLock(out):       # its owner gone, the lock is free again
        pass
    assert siblings(out) == ["a.png"]


def test_a_run_killed_between_the_two_renames_gets_its_report_back(tmp_path):
    """The backup of a swap holds the previous report whole; its marker and a dead owner make the
    next run put it back, not delete it."""
    out = previous_report(tmp_path / "r")
    killed_writing(out, "new", "real = os.rename\n"
                               "def rename(a, b):\n"
                               "    real(a, b)\n"
                               "    if str(b).endswith('previous'): os.kill(os.getpid(), signal.SIGKILL)\n"
                               "os.rename = rename\n"
                               "tmp.commit()\n")
    assert not out.exists()
    said: list[str] = []
    check_out_dir(out, warn=said.append)
    assert (out / "report.md").read_text() == "old" and read_manifest(out) is not None
    assert said[0].startswith(f"--out {out}: restored the previous report from .r.harness-old-")
    assert [n for n in siblings(out) if "harness-old" in n] == []
