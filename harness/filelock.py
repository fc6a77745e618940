"""One lock primitive: an exclusive, non-blocking ``fcntl.flock`` on a lock file, with the holder's
own description written into it so a refused run can name who holds it.

Used by the golden update lock (:class:`harness.golden.store.UpdateLock`) and the report's
``--out`` lock (:class:`harness.report.output.OutLock`); each keeps its own file name and messages.
The kernel's lock dies with the process, so a killed run never leaves a stale lock.
"""

from __future__ import annotations

import contextlib
import errno
import os
from pathlib import Path

__all__ = ["FileLock", "LockHeld"]

#: errno values of ``flock(LOCK_NB)`` on a lock another open file holds.
_BUSY = (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES)


class LockHeld(Exception):
    """The lock file is held by another process; ``holder`` is the text it wrote ("" if none)."""

    def __init__(self, holder: str, *, changing: bool = False) -> None:
        super().__init__(holder)
        self.holder = holder
        #: the lock file kept being replaced while we tried to lock it
        self.changing = changing


class FileLock:
    """An exclusive ``flock`` on ``path``.

    :meth:`acquire` takes it or raises :class:`LockHeld` at once; any other OS error (the file
    cannot be created) propagates. A lock file removed by its previous holder between our open
    and our lock is detected (inode check) and the new file is locked instead. :meth:`release`
    empties the file and, with ``unlink=True``, removes it.
    """

    def __init__(self, path: Path | str, *, unlink: bool = False) -> None:
        self.path = Path(path)
        self.unlink = unlink
        self.fd: int | None = None

    def acquire(self, holder: str) -> None:
        import fcntl

        for _ in range(10):
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                text = ""
                with contextlib.suppress(OSError):
                    text = os.pread(fd, 65536, 0).decode("utf-8", "replace").strip()
                os.close(fd)
                if exc.errno in _BUSY:
                    raise LockHeld(text) from exc
                raise
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except OSError:
                same = False
            if not same:            # removed by the run that held it: lock the file there now
                os.close(fd)
                continue
            os.ftruncate(fd, 0)
            os.pwrite(fd, holder.encode("utf-8"), 0)
            self.fd = fd
            return
        raise LockHeld("", changing=True)

    def release(self) -> None:
        if self.fd is None:
            return
        import fcntl

        try:
            if self.unlink:
                with contextlib.suppress(OSError):
                    os.unlink(self.path)
            else:
                with contextlib.suppress(OSError):
                    os.ftruncate(self.fd, 0)
            fcntl.flock(self.fd, fcntl.LOCK_UN)
        finally:
            os.close(self.fd)
            self.fd = None

    @property
    def held(self) -> bool:
        return self.fd is not None
