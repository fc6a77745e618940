"""Writing the report directory atomically: build in a temporary sibling, then swap it in.

A run that fails (bad input found late, an exception, Ctrl-C) leaves the previous ``--out``
exactly as it was; readers never see a half-written report. ``--out`` must be a new or empty
directory, or a previous harness report (it holds ``report.json`` with a ``harness.report/``
schema): anything else is refused before any work is done, so a typo cannot replace a
directory of the user's files.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

__all__ = ["OutputError", "check_out_dir", "ReportDir"]


class OutputError(ValueError):
    """``--out`` cannot be used; the message says why and what to do."""


def check_out_dir(out: Path) -> None:
    """Refuse an ``--out`` that is a file, or a non-empty directory that is not a harness report."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise OutputError(f"--out {out}: exists and is not a directory; choose a directory path "
                          "(it is created, or replaced if it holds a previous report)")
    if out.is_dir():
        entries = [p for p in out.iterdir()]
        if entries:
            marker = out / "report.json"
            schema = None
            try:
                schema = json.loads(marker.read_text(encoding="utf-8")).get("schema")
            except (OSError, ValueError, AttributeError):
                pass
            if not (isinstance(schema, str) and schema.startswith("harness.report/")):
                raise OutputError(
                    f"--out {out}: a non-empty directory that is not a harness report (no report.json "
                    "with a harness.report schema); the report replaces its --out directory as a whole, "
                    "so choose a new or empty directory, or a previous report's")
    parent = out.resolve().parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"--out {out}: cannot create its parent directory {parent} ({exc})") from None
    if not os.access(parent, os.W_OK):
        raise OutputError(f"--out {out}: the directory {parent} is not writable")


class ReportDir:
    """A temporary directory next to ``out``; :meth:`commit` swaps it in, :meth:`discard` removes it."""

    def __init__(self, out: Path) -> None:
        self.out = Path(out)
        self.out.resolve().parent.mkdir(parents=True, exist_ok=True)
        self.path = Path(tempfile.mkdtemp(prefix=f".{self.out.name}.tmp-", dir=self.out.resolve().parent))
        self.written: list[str] = []

    def write_text(self, name: str, text: str) -> Path:
        path = self.path / name
        path.write_text(text, encoding="utf-8")
        self.written.append(name)
        return path

    def commit(self) -> None:
        """Replace ``out`` with the finished directory (the old one is kept until the new one is in)."""
        target = self.out.resolve()
        os.chmod(self.path, 0o755)  # mkdtemp makes it private
        if target.exists():
            check_out_dir(target)          # still a report (or empty) at commit time
            backup = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
            backup.rmdir()
            os.rename(target, backup)
            try:
                os.rename(self.path, target)
            except BaseException:
                os.rename(backup, target)
                raise
            shutil.rmtree(backup, ignore_errors=True)
        else:
            os.rename(self.path, target)

    def discard(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)

    def __enter__(self) -> "ReportDir":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.discard()
