"""Writing the report directory: nothing a user owns is lost, and a failed run changes nothing.

:func:`check_out_dir` looks at ``--out`` before any work is done and decides how the report will
be written:

* ``swap`` (the usual case): the report is built in a temporary sibling directory, then swapped
  in with two renames; readers never see a half-written report, and a failed run leaves the
  previous ``--out`` exactly as it was.
* ``in-place``: ``--out`` is a mount point, on another filesystem than its parent, or a symbolic
  link, so it cannot (or should not) be renamed; the report is built in a temporary directory inside it and each file is
  moved in with an atomic rename (the report is complete file by file, not as a whole).

``--out`` may be new, empty, or a previous harness report (``report.json`` with a
``harness.report/`` schema lists its files). Anything else in it (``my_notes.txt``, ``sub/``)
is the user's: the run is refused, naming those entries, unless ``force`` (``--force``) says to
delete them. Stale temporary directories of killed runs (their process is gone) are removed
first. Running out of space, permissions and read-only filesystems are :class:`OutputError`
lines, checked before the work where they can be (a probe directory, the free space).
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import socket
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

__all__ = ["OutputError", "OutPlan", "check_out_dir", "ReportDir", "MIN_FREE_BYTES", "stale_temp_dirs"]

#: The data files every harness report has (its plots are listed in its report.json).
REPORT_FILES = ("report.md", "report.json", "report.csv", "static_compute.json", "static_compute.md")
#: Free space ``--out``'s filesystem needs before the work starts (a report with plots is a few MB).
MIN_FREE_BYTES = 32 * 1024 * 1024
#: Legacy temporary directories (no process id in the name) older than this are stale.
LEGACY_STALE_SECONDS = 24 * 3600
_FORCED: set[str] = set()


class OutputError(ValueError):
    """``--out`` cannot be used; the message says why and what to do."""


@dataclass
class OutPlan:
    """How a report goes into ``out``: ``mode`` ``new``, ``swap`` or ``in-place``."""

    out: Path
    mode: str
    #: the previous report's own files (replaced), from its report.json
    previous: set[str] = field(default_factory=set)
    #: entries that are not the previous report's, deleted because ``force`` said so
    remove: list[str] = field(default_factory=list)
    cleaned: list[str] = field(default_factory=list)


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9_.]", "_", socket.gethostname() or "host")


def _temp_prefix(kind: str, name: str, inside: bool) -> str:
    base = "" if inside else f".{name}"
    return f"{base}.harness-{kind}-{_host()}-{os.getpid()}-"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return True
    return True


def stale_temp_dirs(where: Path, name: str | None) -> list[Path]:
    """Temporary directories of runs that were killed: their process on this host is gone.

    ``name`` is the report directory's name (siblings ``.<name>.harness-tmp-<host>-<pid>-*``); None
    looks for the in-place ones inside ``where`` (``.harness-tmp-<host>-<pid>-*``). Legacy
    ``.<name>.tmp-*`` / ``.<name>.old-*`` siblings (no process id) count when over a day old.
    """
    base = "" if name is None else re.escape(f".{name}")
    pattern = re.compile(rf"^{base}\.harness-(tmp|old)-(?P<host>.+)-(?P<pid>\d+)-[A-Za-z0-9_]+$")
    legacy = re.compile(rf"^{base}\.(tmp|old)-[A-Za-z0-9_]+$") if name is not None else None
    found = []
    try:
        entries = list(where.iterdir())
    except OSError:
        return []
    now = time.time()
    for entry in entries:
        match = pattern.match(entry.name)
        try:
            if not entry.is_dir() or entry.is_symlink():
                continue
        except OSError:
            continue
        if match and match["host"] == _host() and not _alive(int(match["pid"])):
            found.append(entry)
        elif legacy is not None and legacy.match(entry.name):
            try:
                if now - entry.stat().st_mtime > LEGACY_STALE_SECONDS:
                    found.append(entry)
            except OSError:
                pass
    return sorted(found)


def _previous_report(out: Path) -> set[str] | None:
    """The files of the report in ``out`` (from its report.json), or None if it is not one."""
    try:
        data = json.loads((out / "report.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    schema = data.get("schema") if isinstance(data, dict) else None
    if not (isinstance(schema, str) and schema.startswith("harness.report/")):
        return None
    files = set(REPORT_FILES)
    summary = data.get("summary") if isinstance(data.get("summary"), dict) else {}
    for key in ("files", "plots"):      # run_report lists them in report.json's summary
        for names in (summary.get(key), data.get(key)):
            if isinstance(names, list):
                files.update(n for n in names if isinstance(n, str) and "/" not in n and n not in ("", ".", ".."))
    return files


def _shown(names: list[str], limit: int = 12) -> str:
    text = ", ".join(ascii(n)[1:-1] for n in names[:limit])
    return text + (f", ... ({len(names)} in all)" if len(names) > limit else "")


def _same_filesystem(a: Path, b: Path) -> bool:
    try:
        return os.stat(a).st_dev == os.stat(b).st_dev
    except OSError:
        return True


def _own_filesystem(out: Path) -> bool:
    """False when ``out`` is a mount point or on another filesystem than its parent (no rename)."""
    try:
        if os.path.ismount(out):
            return False
    except OSError:
        return True
    return _same_filesystem(out, Path(os.path.abspath(out)).parent)


def _io_problem(exc: OSError) -> str:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return "no space left on the device (free some space or choose another --out)"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return "permission denied (choose a directory you can write to, or fix its permissions)"
    if exc.errno == errno.EROFS:
        return "read-only filesystem (choose an --out on a writable filesystem)"
    return f"{exc.strerror or exc} (choose another --out)"


def check_out_dir(out: Path | str, *, force: bool | None = None,
                  warn: Callable[[str], None] | None = None) -> OutPlan:
    """Everything about ``--out`` that can be checked before the work; returns how to write it.

    Refuses a file, a directory holding entries that are not the previous report's (unless
    ``force``: they are listed to ``warn`` and deleted at the commit), a parent that cannot be
    created or written, and a filesystem with less than :data:`MIN_FREE_BYTES` free. Stale
    temporary directories of killed runs are removed (said to ``warn``). ``force=None`` keeps
    what an earlier call in this process decided for the same directory.
    """
    out = Path(out).expanduser()
    say = warn or (lambda message: None)
    key = os.path.realpath(out)
    if force is None:
        force = key in _FORCED
    elif force:
        _FORCED.add(key)
    try:
        exists, is_dir = out.exists(), out.is_dir()
    except OSError as exc:
        raise OutputError(f"--out {out}: cannot look at it: {_io_problem(exc)}") from None
    if exists and not is_dir:
        raise OutputError(f"--out {out}: exists and is not a directory; choose a directory path "
                          "(it is created, or replaced if it holds a previous report)")
    plan = OutPlan(out=out, mode="new")
    if is_dir:
        try:
            entries = sorted(p.name for p in out.iterdir())
        except OSError as exc:
            raise OutputError(f"--out {out}: cannot list it: {_io_problem(exc)}") from None
        # a symlink is the user's: fill the directory it points to rather than replace the link
        plan.mode = "swap" if _own_filesystem(out) and not out.is_symlink() else "in-place"
        inside_stale = {p.name for p in stale_temp_dirs(out, None)} if plan.mode == "in-place" else set()
        ours = re.compile(r"^\.harness-(tmp|old)-")
        entries = [e for e in entries if e not in inside_stale and not ours.match(e)]
        previous = _previous_report(out) if entries else set()
        foreign = entries if previous is None else [e for e in entries if e not in previous]
        plan.previous = previous or set()
        if foreign:
            labelled = [e + ("/" if (out / e).is_dir() and not (out / e).is_symlink() else "") for e in foreign]
            what = ("a non-empty directory that is not a harness report (no report.json with a "
                    "harness.report schema)" if previous is None else
                    f"a previous report, plus {len(foreign)} entr{'y' if len(foreign) == 1 else 'ies'} "
                    f"that {'is' if len(foreign) == 1 else 'are'} not among its files")
            if not force:
                raise OutputError(
                    f"--out {out}: {what}: {_shown(labelled)}. The report replaces the directory, so "
                    "these would be lost: move them out, choose another --out, or pass --force to "
                    "delete them")
            plan.remove = foreign
            say(f"--force: --out {out}: deleting {len(foreign)} entr{'y' if len(foreign) == 1 else 'ies'} "
                f"that {'is' if len(foreign) == 1 else 'are'} not the previous report's: {_shown(labelled)}")
    parent = Path(os.path.abspath(out)).parent
    blocker = next((p for p in (parent, *parent.parents) if p.exists()), None)
    if blocker is not None and not blocker.is_dir():
        raise OutputError(f"--out {out}: {blocker} is a file, not a directory, so {out} cannot be created; "
                          "choose another --out")
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"--out {out}: cannot create its parent directory {parent}: {_io_problem(exc)}") from None
    build_in = out if plan.mode == "in-place" else parent
    # stale temporary directories of killed runs (their process is gone)
    for stale in stale_temp_dirs(parent, out.name) + (stale_temp_dirs(out, None) if plan.mode == "in-place" else []):
        shutil.rmtree(stale, ignore_errors=True)
        if not stale.exists():
            plan.cleaned.append(stale.name)
    if plan.cleaned:
        say(f"--out {out}: removed {len(plan.cleaned)} temporary director{'y' if len(plan.cleaned) == 1 else 'ies'} "
            f"left by killed runs: {_shown(plan.cleaned)}")
    # can we write there at all? (read-only filesystem, permissions, a full inode table)
    try:
        probe = tempfile.mkdtemp(prefix=_temp_prefix("tmp", out.name, plan.mode == "in-place"), dir=build_in)
        os.rmdir(probe)
    except OSError as exc:
        raise OutputError(f"--out {out}: cannot write in {build_in}: {_io_problem(exc)}") from None
    try:
        free = shutil.disk_usage(build_in).free
    except OSError:
        free = None
    if free is not None and free < MIN_FREE_BYTES:
        raise OutputError(f"--out {out}: only {free / 2**20:.1f} MiB free on its filesystem, under the "
                          f"{MIN_FREE_BYTES // 2**20} MiB a report needs; free some space or choose another --out")
    return plan


class ReportDir:
    """A temporary directory for the report; :meth:`commit` puts it in place, :meth:`discard` removes it.

    Every ``OSError`` while writing (no space, permissions) becomes one :class:`OutputError` line,
    and the temporary directory is removed; ``out`` is unchanged.
    """

    def __init__(self, out: Path | str, plan: OutPlan | None = None) -> None:
        self.out = Path(out).expanduser()
        self.plan = plan if plan is not None else check_out_dir(self.out)
        inside = self.plan.mode == "in-place"
        where = self.out if inside else Path(os.path.abspath(self.out)).parent
        try:
            where.mkdir(parents=True, exist_ok=True)
            self.path = Path(tempfile.mkdtemp(prefix=_temp_prefix("tmp", self.out.name, inside), dir=where))
        except OSError as exc:
            raise OutputError(f"--out {self.out}: cannot create the report's temporary directory in {where}: "
                              f"{_io_problem(exc)}") from None
        self.written: list[str] = []

    def write_text(self, name: str, text: str) -> Path:
        path = self.path / name
        try:
            path.write_text(text, encoding="utf-8")
        except OSError as exc:
            raise self._failed(exc, name) from None
        self.written.append(name)
        return path

    def _failed(self, exc: OSError, name: str | None = None) -> OutputError:
        self.discard()
        what = f" ({name})" if name else ""
        return OutputError(f"--out {self.out}: writing the report failed{what}: {_io_problem(exc)}; nothing "
                           f"in {self.out} was changed")

    def _foreign_now(self, target: Path) -> list[str]:
        try:
            entries = sorted(p.name for p in target.iterdir())
        except OSError:
            return []
        allowed = set(self.plan.previous) | set(self.plan.remove)
        own = re.compile(r"^\.harness-(tmp|old)-")
        return [e for e in entries if e not in allowed and not own.match(e)]

    def commit(self) -> None:
        """Put the finished report in place (see the module docstring for the two ways)."""
        os.chmod(self.path, 0o755)  # mkdtemp makes it private
        target = Path(os.path.abspath(self.out))
        if target.exists():
            appeared = self._foreign_now(target)
            if appeared:
                raise OutputError(f"--out {self.out}: {_shown(appeared)} appeared in it during the run and "
                                  f"would be lost; the new report is left in {self.path}")
        try:
            if self.plan.mode == "in-place":
                self._fill_in_place(target)
            elif target.exists():
                self._swap(target)
            else:
                os.rename(self.path, target)
        except OutputError:
            raise
        except OSError as exc:
            raise self._failed(exc) from None

    def _swap(self, target: Path) -> None:
        backup = Path(tempfile.mkdtemp(prefix=_temp_prefix("old", target.name, False), dir=target.parent))
        backup.rmdir()
        try:
            os.rename(target, backup)
        except OSError as exc:
            if exc.errno in (errno.EBUSY, errno.EXDEV, errno.EPERM, errno.EACCES):
                # a mount point (EBUSY) or a directory we may fill but not rename: fill it in place
                self._fill_in_place(target)
                return
            raise
        try:
            os.rename(self.path, target)
        except BaseException:
            os.rename(backup, target)
            raise
        shutil.rmtree(backup, ignore_errors=True)

    def _fill_in_place(self, target: Path) -> None:
        """Move each file into ``target`` with an atomic rename, then drop the old report's leftovers."""
        same_fs = _same_filesystem(self.path, target)
        new = sorted(p.name for p in self.path.iterdir())
        for name in new:
            source = self.path / name
            if not same_fs:   # copy next to its place first, so the rename stays atomic
                staged = target / f".harness-tmp-{_host()}-{os.getpid()}-{name}"
                shutil.copy2(source, staged)
                source = staged
            os.replace(source, target / name)
        for name in sorted((set(self.plan.previous) - set(new)) | set(self.plan.remove)):
            path = target / name
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            elif path.exists() or path.is_symlink():
                path.unlink()
        shutil.rmtree(self.path, ignore_errors=True)

    def discard(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)

    def __enter__(self) -> "ReportDir":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            return
        if isinstance(exc, OutputError):
            return
        self.discard()
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM,
                                                      errno.EROFS, errno.EIO):
            name = Path(exc.filename).name if getattr(exc, "filename", None) else None
            raise self._failed(exc, name) from None
