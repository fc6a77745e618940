"""Writing the report directory: nothing a user owns is lost, and a failed run changes nothing.

:func:`check_out_dir` checks ``--out`` before any work and chooses how the report is written: built
in a temporary sibling and swapped in, or, where ``--out`` cannot be renamed, moved in file by file.
Anything in ``--out`` that is not our previous report is refused unless ``--force``; problems are
:class:`OutputError` lines. The rules: docs/inputs.md ("``--out``").
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import shlex
import shutil
import socket
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

__all__ = ["OutputError", "OutPlan", "check_out_dir", "ReportDir", "OutLock", "MIN_FREE_BYTES", "MANIFEST",
           "stale_temp_dirs", "write_manifest", "read_manifest"]

#: The file a report writes last into its own directory: every file of the report with its SHA-256.
#: Only files whose content still matches it are the previous report's (replaced without --force).
MANIFEST = ".harness-manifest.json"
MANIFEST_SCHEMA = "harness.report-manifest/1"
#: The marker inside every temporary directory a run makes: its host, process id and start time.
OWNER = ".harness-owner"
OWNER_SCHEMA = "harness.tmp-owner/1"
#: Free space ``--out``'s filesystem needs before the work starts (a report with plots is a few MB).
MIN_FREE_BYTES = 32 * 1024 * 1024
#: Entries ``--force`` looks through for a ``.git`` before deleting a directory's contents.
GIT_SEARCH_LIMIT = 100_000
_FORCED: set[str] = set()


class OutputError(ValueError):
    """``--out`` cannot be used; the message says why and what to do."""


@dataclass
class OutPlan:
    """How a report goes into ``out``: ``mode`` ``new``, ``swap`` or ``in-place``."""

    out: Path
    mode: str
    #: the previous report's own files (replaced): listed in its manifest, content unchanged
    previous: set[str] = field(default_factory=set)
    #: entries that are not the previous report's, deleted because ``force`` said so
    remove: list[str] = field(default_factory=list)
    cleaned: list[str] = field(default_factory=list)
    #: what each entry of ``remove`` was when it was listed (deleted only if it still is)
    seen: dict[str, tuple] = field(default_factory=dict)


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
    except OSError:
        return True
    return True


def _process_start(pid: int) -> str | None:
    """The start time of process ``pid`` (clock ticks since boot, from /proc), None where unknown."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text.rpartition(")")[2].split()[19] if ")" in text else None


def _owner_record() -> dict:
    return {"schema": OWNER_SCHEMA, "host": _host(), "pid": os.getpid(), "start": _process_start(os.getpid())}


def write_owner(directory: Path) -> None:
    """Put the marker that proves ``directory`` is a temporary directory of this process."""
    (directory / OWNER).write_text(json.dumps(_owner_record()), encoding="utf-8")


def _owner_dead(directory: Path) -> bool:
    """True only when ``directory`` holds our marker and the process it names (on this host) is gone."""
    try:
        record = json.loads((directory / OWNER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if not isinstance(record, dict) or record.get("schema") != OWNER_SCHEMA or record.get("host") != _host():
        return False
    pid = record.get("pid")
    if not isinstance(pid, int) or pid <= 0:
        return False
    if not _alive(pid):
        return True
    start = _process_start(pid)    # a live process with another start time: the pid was reused
    return start is not None and record.get("start") is not None and start != record.get("start")


def stale_temp_dirs(where: Path, name: str | None) -> list[Path]:
    """Temporary directories of runs that were killed: they hold our marker (:data:`OWNER`) and the
    process it names on this host is gone.

    ``name`` is the report directory's name (siblings ``.<name>.harness-tmp-<host>-<pid>-*``); None
    looks for the in-place ones inside ``where`` (``.harness-tmp-<host>-<pid>-*``). A directory
    without the marker is never one, whatever its name.
    """
    base = "" if name is None else re.escape(f".{name}")
    pattern = re.compile(rf"^{base}\.harness-(tmp|old)-(?P<host>.+)-(?P<pid>\d+)-[A-Za-z0-9_]+$")
    found = []
    try:
        entries = list(where.iterdir())
    except OSError:
        return []
    for entry in entries:
        if not pattern.match(entry.name):
            continue
        try:
            if not entry.is_dir() or entry.is_symlink():
                continue
        except OSError:
            continue
        if _owner_dead(entry):
            found.append(entry)
    return sorted(found)


def _digest(path: Path) -> str | None:
    import hashlib

    try:
        if path.is_symlink() or not path.is_file():
            return None
        with open(path, "rb") as handle:
            return hashlib.file_digest(handle, "sha256").hexdigest()
    except OSError:
        return None


def write_manifest(directory: Path) -> dict[str, str]:
    """Write :data:`MANIFEST` into ``directory``: every regular file in it with its SHA-256."""
    files = {}
    for path in sorted(directory.iterdir()):
        if path.name in (MANIFEST, OWNER):
            continue
        digest = _digest(path)
        if digest is not None:
            files[path.name] = digest
    (directory / MANIFEST).write_text(json.dumps({"schema": MANIFEST_SCHEMA, "files": files}, indent=1),
                                      encoding="utf-8")
    return files


def read_manifest(directory: Path) -> dict[str, str] | None:
    """The files :data:`MANIFEST` in ``directory`` lists, name -> SHA-256; None if there is none."""
    try:
        data = json.loads((directory / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("schema") != MANIFEST_SCHEMA or not isinstance(data.get("files"), dict):
        return None
    return {n: d for n, d in data["files"].items()
            if isinstance(n, str) and isinstance(d, str) and n not in ("", ".", "..", MANIFEST, OWNER)
            and "/" not in n and "\\" not in n}


def _previous_report(out: Path) -> tuple[set[str], list[str]] | None:
    """``(ours, changed)``: the files of the report in ``out`` whose content is what its manifest
    says (plus the manifest), and those it lists whose content changed since; None if ``out``
    holds no manifest."""
    listed = read_manifest(out)
    if listed is None:
        return None
    ours, changed = {MANIFEST}, []
    for name, digest in listed.items():
        found = _digest(out / name)
        if found == digest:
            ours.add(name)
        elif found is not None or (out / name).is_symlink() or (out / name).exists():
            changed.append(name)
    return ours, changed


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


def _fingerprint(path: Path) -> tuple:
    try:
        st = os.lstat(path)
    except OSError:
        return ()
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def _within(inner: str, outer: str) -> bool:
    """``inner`` is ``outer`` or below it (both real paths)."""
    return inner == outer or inner.startswith(outer.rstrip(os.sep) + os.sep)


def _refuse_places(out: Path, raw: str, inputs: Sequence[str | os.PathLike[str]]) -> None:
    """The directories no report may replace, with or without --force."""
    real = os.path.realpath(out)
    say = f"--out {raw}" + ("" if raw == real else f" ({real})")
    tail = ("; the report replaces its directory, so name a directory of its own, e.g. --out out/report "
            "(created if missing)")
    if real == os.path.realpath(os.sep):
        raise OutputError(f"{say}: is the root directory{tail}")
    cwd = os.path.realpath(os.getcwd())
    if _within(cwd, real):
        where = "the current directory" if real == cwd else f"above the current directory {cwd}"
        raise OutputError(f"{say}: is {where}{tail}")
    home = os.path.realpath(os.path.expanduser("~"))
    if _within(home, real):
        where = "the home directory" if real == home else f"above the home directory {home}"
        raise OutputError(f"{say}: is {where}{tail}")
    if os.path.lexists(os.path.join(real, ".git")):
        raise OutputError(f"{say}: is the top of a git work tree (it holds .git){tail}")
    for given in inputs:
        page = os.path.realpath(given)
        if _within(page, real):
            what = "is" if page == real else "holds"
            raise OutputError(f"{say}: {what} the --pages input {given}{tail}")


def _find_git(out: Path, entries: list[str]) -> str | None:
    """A ``.git`` among ``entries`` of ``out`` and below them (symlinks not followed), or a note that
    there are too many entries to look; None if there is none."""
    seen = 0
    for entry in entries:
        top = out / entry
        if entry == ".git":
            return str(top)
        if top.is_symlink() or not top.is_dir():
            continue
        for root, dirs, files in os.walk(top):
            seen += len(dirs) + len(files)
            if ".git" in dirs or ".git" in files:
                return os.path.join(root, ".git")
            if seen > GIT_SEARCH_LIMIT:
                return f"more than {GIT_SEARCH_LIMIT:,} entries"
    return None


def check_out_dir(out: Path | str, *, force: bool | None = None,
                  warn: Callable[[str], None] | None = None,
                  inputs: Sequence[str | os.PathLike[str]] = ()) -> OutPlan:
    """Everything about ``--out`` that can be checked before the work; returns how to write it.

    Refuses, even with ``force``: an empty ``--out``, ``/``, the current directory, the home
    directory or any directory above them, a directory holding ``.git`` (or, with ``force``, with
    one below the entries it would delete), and any directory holding one of ``inputs`` (the
    ``--pages`` paths). Refuses a file, a directory holding entries that are not the previous
    report's (unless ``force``: they are listed to ``warn`` and deleted at the commit), a parent
    that cannot be created or written, and a filesystem with less than :data:`MIN_FREE_BYTES`
    free. Stale temporary directories of killed runs (our marker inside, owner gone) are removed
    (said to ``warn``). ``force=None`` keeps what an earlier call in this process decided for
    the same directory.
    """
    if isinstance(out, str) and not out.strip():
        raise OutputError(f"--out {out!r}: empty; name a directory for the report (e.g. --out out/report), "
                          "or leave --out out for the default (an unset shell variable?)")
    raw = str(out)
    out = Path(out).expanduser()
    say = warn or (lambda message: None)
    key = os.path.realpath(out)
    if force is None:
        force = key in _FORCED
    elif force:
        _FORCED.add(key)
    _refuse_places(out, raw, inputs)
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
        inside_ours = {p.name for p in stale_temp_dirs(out, None)} if plan.mode == "in-place" else set()
        entries = [e for e in entries if e not in inside_ours]
        previous = _previous_report(out) if entries else (set(), [])
        ours, changed = previous if previous is not None else (set(), [])
        foreign = [e for e in entries if e not in ours]
        plan.previous = ours
        if foreign:
            labelled = [e + ("/" if (out / e).is_dir() and not (out / e).is_symlink() else "")
                        + (" (changed since the report wrote it)" if e in changed else "") for e in foreign]
            what = ("a non-empty directory that is not a harness report (no " + MANIFEST + " written by "
                    "harness report)" if previous is None else
                    f"a previous report, plus {len(foreign)} entr{'y' if len(foreign) == 1 else 'ies'} "
                    f"that {'is' if len(foreign) == 1 else 'are'} not among its files")
            if not force:
                raise OutputError(
                    f"--out {out}: {what}: {_shown(labelled)}. The report replaces the directory, so "
                    "these would be lost: move them out, choose another --out, or pass --force to "
                    "delete them")
            git = _find_git(out, foreign)
            if git is not None:
                raise OutputError(f"--out {out}: --force would delete {git} (a git repository's data) with "
                                  f"the rest of: {_shown(labelled)}; --force never deletes a git work tree: "
                                  "choose another --out")
            plan.remove = foreign
            plan.seen = {e: _fingerprint(out / e) for e in foreign}
            say(f"--force: --out {out}: deleting {len(foreign)} entr{'y' if len(foreign) == 1 else 'ies'} "
                f"that {'is' if len(foreign) == 1 else 'are'} not the previous report's: {_shown(labelled)}")
    parent = Path(os.path.abspath(out)).parent
    blocker = next((p for p in (parent, *parent.parents) if os.path.lexists(p)), None)
    if blocker is not None and blocker.is_symlink() and not blocker.exists():
        raise OutputError(f"--out {out}: {blocker} is a symbolic link to {os.readlink(blocker)}, which does not "
                          f"exist, so {out} cannot be created; fix the link or choose another --out")
    if blocker is not None and not blocker.is_dir():
        raise OutputError(f"--out {out}: {blocker} is a file, not a directory, so {out} cannot be created; "
                          "choose another --out")
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"--out {out}: cannot create its parent directory {parent}: {_io_problem(exc)}") from None
    build_in = out if plan.mode == "in-place" else parent
    # temporary directories of killed runs: our marker inside, its process gone
    for stale in stale_temp_dirs(parent, out.name) + (stale_temp_dirs(out, None) if plan.mode == "in-place" else []):
        restored = _clean_stale(stale, out)
        if restored:
            say(f"--out {out}: restored the previous report from {stale.name}, left by a run killed while "
                "swapping it")
        if not stale.exists():
            plan.cleaned.append(stale.name)
        else:
            say(f"--out {out}: kept {stale} (a killed run's directory that still holds files it cannot "
                "prove it wrote); look through it and delete it yourself")
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


#: Inside a backup directory (``.<out>.harness-old-*``): the previous report, renamed there whole.
PREVIOUS = "previous"


def _clear_verified(directory: Path) -> list[str]:
    """Delete the files of ``directory`` its manifest proves a report wrote (content unchanged) and
    the manifest; returns what is left."""
    listed = read_manifest(directory) or {}
    for name, digest in listed.items():
        if _digest(directory / name) == digest:
            (directory / name).unlink()
    if listed and (directory / MANIFEST).is_file():
        (directory / MANIFEST).unlink()
    try:
        return sorted(p.name for p in directory.iterdir())
    except OSError:
        return ["?"]


def _clean_stale(stale: Path, out: Path) -> bool:
    """Remove a killed run's directory (our marker inside, owner dead). A backup whose report never
    got back (the run died between the two renames) is restored to ``out``; True when it was.
    Anything its manifests do not prove ours is kept (the directory stays, without its marker)."""
    previous = stale / PREVIOUS
    if previous.is_dir() and not previous.is_symlink():
        if not os.path.lexists(out):
            os.rename(previous, out)
            (stale / OWNER).unlink(missing_ok=True)
            with contextlib.suppress(OSError):
                stale.rmdir()
            return True
        if _clear_verified(previous):
            (stale / OWNER).unlink(missing_ok=True)   # never again taken for ours
            return False
        previous.rmdir()
    # a temporary directory of a report being built: everything in it was written by the run
    (stale / OWNER).unlink(missing_ok=True)
    shutil.rmtree(stale, ignore_errors=True)
    return False


class OutLock:
    """One run at a time per ``--out``: an exclusive ``flock`` on ``.<name>.harness-lock`` beside it.

    A second run refuses at once, naming the first (process id, host, command, start time).
    """

    def __init__(self, out: Path | str) -> None:
        self.out = Path(out).expanduser()
        parent = Path(os.path.abspath(self.out)).parent
        self.path = parent / f".{self.out.name}.harness-lock"
        from harness.filelock import FileLock

        self._lock = FileLock(self.path, unlink=True)    # the shared primitive; the file goes on release

    def acquire(self) -> "OutLock":
        from harness.filelock import LockHeld

        argv = list(sys.argv)
        if argv and (argv[0].endswith(os.path.join("harness", "__main__.py")) or Path(argv[0]).name == "harness"):
            argv[0] = "harness"
        record = {**_owner_record(), "command": shlex.join(argv),
                  "started": time.strftime("%Y-%m-%d %H:%M:%S %Z")}
        try:
            self._lock.acquire(json.dumps(record))
        except LockHeld as exc:
            if exc.changing:
                raise OutputError(f"--out {self.out}: its lock file {self.path} keeps changing; another run "
                                  "is using it") from None
            raise OutputError(f"--out {self.out}: another harness report is writing it ({_holder(exc.holder)}); "
                              "wait for it to finish or choose another --out") from None
        except OSError as exc:
            raise OutputError(f"--out {self.out}: cannot create its lock file {self.path}: "
                              f"{_io_problem(exc)}") from None
        return self

    def release(self) -> None:
        self._lock.release()

    @property
    def fd(self) -> int | None:
        return self._lock.fd

    def __enter__(self) -> "OutLock":
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def _holder(text: str) -> str:
    try:
        record = json.loads(text)
        return (f"process {record['pid']} on {record['host']}, started {record['started']}: "
                f"{record['command']}")
    except (ValueError, KeyError, TypeError):
        return "its lock is held"


class ReportDir:
    """A temporary directory for the report; :meth:`commit` puts it in place, :meth:`discard` removes it.

    Every ``OSError`` while writing (no space, permissions) becomes one :class:`OutputError` line,
    and the temporary directory is removed; ``out`` is unchanged. The directory holds our marker
    (:data:`OWNER`) until the commit, so a later run may remove it if this one is killed.
    """

    def __init__(self, out: Path | str, plan: OutPlan | None = None) -> None:
        self.out = Path(out).expanduser()
        self.plan = plan if plan is not None else check_out_dir(self.out)
        inside = self.plan.mode == "in-place"
        where = self.out if inside else Path(os.path.abspath(self.out)).parent
        try:
            where.mkdir(parents=True, exist_ok=True)
            self.path = Path(tempfile.mkdtemp(prefix=_temp_prefix("tmp", self.out.name, inside), dir=where))
            write_owner(self.path)
        except OSError as exc:
            raise OutputError(f"--out {self.out}: cannot create the report's temporary directory in {where}: "
                              f"{_io_problem(exc)}") from None
        self.written: list[str] = []
        #: entries of ``out`` kept because they appeared during the run or are not provably ours
        self.kept: list[str] = []

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

    def _deletable(self, directory: Path, name: str, listed: dict[str, str]) -> bool:
        """``name`` in ``directory`` (the old ``--out``) may go: a file of the previous report whose
        content is still what its manifest says, or an entry --force listed, unchanged since."""
        if name in self.plan.remove:
            return _fingerprint(directory / name) == self.plan.seen.get(name, ())
        if name == MANIFEST:
            return MANIFEST in self.plan.previous
        if name in self.plan.previous:
            return name in listed and _digest(directory / name) == listed[name]
        return False

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
            write_manifest(self.path)
            if self.plan.mode == "in-place":
                self._fill_in_place(target)
            elif target.exists():
                self._swap(target)
            else:
                (self.path / OWNER).unlink(missing_ok=True)
                os.rename(self.path, target)
        except OutputError:
            raise
        except OSError as exc:
            raise self._failed(exc) from None

    def _swap(self, target: Path) -> None:
        backup = Path(tempfile.mkdtemp(prefix=_temp_prefix("old", target.name, False), dir=target.parent))
        write_owner(backup)
        previous = backup / PREVIOUS
        try:
            os.rename(target, previous)
        except OSError as exc:
            shutil.rmtree(backup, ignore_errors=True)
            if exc.errno in (errno.EBUSY, errno.EXDEV, errno.EPERM, errno.EACCES):
                # a mount point (EBUSY) or a directory we may fill but not rename: fill it in place
                self._fill_in_place(target)
                return
            raise
        try:
            (self.path / OWNER).unlink(missing_ok=True)
            os.rename(self.path, target)
        except BaseException:
            os.rename(previous, target)
            shutil.rmtree(backup, ignore_errors=True)
            raise
        self._settle(previous, target)
        (backup / OWNER).unlink(missing_ok=True)
        if os.path.lexists(previous):
            self._kept_in(backup)
        else:
            backup.rmdir()

    def _settle(self, previous: Path, target: Path) -> None:
        """The old ``--out``, now at ``previous``: delete what may go, move the rest back into ``target``."""
        listed = read_manifest(previous) or {}
        for entry in sorted(previous.iterdir()):
            name = entry.name
            if self._deletable(previous, name, listed):
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry)
                else:
                    entry.unlink()
            elif not os.path.lexists(target / name):
                os.rename(entry, target / name)     # appeared during the run: kept where it was
                self.kept.append(name)
        with contextlib.suppress(OSError):
            previous.rmdir()

    def _kept_in(self, backup: Path) -> None:
        raise OutputError(f"--out {self.out}: the new report is in place, but {backup / PREVIOUS} holds "
                          f"{_shown(sorted(p.name for p in (backup / PREVIOUS).iterdir()))}, which appeared "
                          "in --out during the run under names the report uses; they are kept there: move "
                          "them back yourself")

    def _fill_in_place(self, target: Path) -> None:
        """Move each file into ``target`` with an atomic rename, then drop the old report's leftovers."""
        (self.path / OWNER).unlink(missing_ok=True)
        same_fs = _same_filesystem(self.path, target)
        new = sorted(p.name for p in self.path.iterdir())
        # what may go is decided on the old content, before any new file lands on its name
        listed = read_manifest(target) or {}
        leftovers = [n for n in sorted((set(self.plan.previous) - set(new)) | set(self.plan.remove))
                     if self._deletable(target, n, listed)]
        for name in new:
            source = self.path / name
            if not same_fs:   # copy next to its place first, so the rename stays atomic
                staged = target / f".harness-tmp-{_host()}-{os.getpid()}-{name}"
                shutil.copy2(source, staged)
                source = staged
            os.replace(source, target / name)
        for name in leftovers:
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
