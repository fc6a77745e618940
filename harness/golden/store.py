"""Golden files on disk: where they live, their format, atomic writes, and the update lock.

Two kinds of golden, one fact each (``schema`` 2):

* **layout** -- ``<root>/<target>/layout/<mode>.json``: one table per target and mode listing
  every page: its size, views, crop grid, token counts and the shape keys it reaches;
* **count** -- ``<root>/<target>/count/<stage>/<shape key>.json``: the counts of one stage at one
  shape key (``g1024+6x768``, ``L1131``, ``T1131``), one entry per counter (raw, convention,
  FLOPs, per-op and per-key splits, unknown and ignored ops), the shape, the pages that reach it,
  and the environment that made it.

The JSON is deterministic (sorted keys, two-space indent, floats to 12 significant digits, no
timestamps), so deleting a golden and regenerating it on the same environment gives the same
bytes. Files are replaced atomically (temporary file in the same directory, ``fsync``,
``os.replace``): a crash leaves the previous golden. Runs that write take :class:`UpdateLock`, an
exclusive lock on ``<root>/.harness-golden.lock``; a second writer fails fast, naming the first.
Only a lock holder sweeps temporary files, so it never removes another run's.
"""

from __future__ import annotations

import errno
import json
import math
import os
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = [
    "SCHEMA_VERSION", "TEMP_SUFFIX", "LOCK_NAME", "KINDS", "GoldenError", "GoldenLockedError",
    "layout_path", "count_path", "dumps_golden", "write_atomic", "load_doc", "facts",
    "UpdateLock", "sweep_temp_files", "iter_golden_files",
]

#: Bumped when the layout of a golden file changes; a file with another schema is an error that
#: names the regenerate command.
SCHEMA_VERSION = 2
FLOAT_DIGITS = 12
TEMP_SUFFIX = ".tmp"
LOCK_NAME = ".harness-golden.lock"
KINDS = ("layout", "count")
#: Fields of each kind of document (besides schema, kind and environment).
_FIELDS: dict[str, dict[str, type]] = {
    "layout": {"target": str, "mode": str, "text_tokens": int, "pages": dict},
    "count": {"target": str, "stage": str, "shape_key": str, "shape": dict, "pages": list, "counters": dict},
}


class GoldenError(Exception):
    """A golden file that cannot be used (names the file and the command that fixes it)."""


class GoldenLockedError(GoldenError):
    """Another run holds the update lock of a golden directory."""


def layout_path(root: Path | str, target: str, mode: str) -> Path:
    """``<root>/<target>/layout/<mode>.json``."""
    return Path(root) / target / "layout" / f"{mode}.json"


def count_path(root: Path | str, target: str, stage: str, shape_key: str) -> Path:
    """``<root>/<target>/count/<stage>/<shape key>.json``."""
    return Path(root) / target / "count" / stage / f"{shape_key}.json"


def iter_golden_files(root: Path | str) -> list[Path]:
    """Every golden file under ``root`` (layout and count), sorted."""
    root = Path(root)
    return sorted([*root.glob("*/layout/*.json"), *root.glob("*/count/*/*.json")])


# ---------------------------------------------------------------------------------------- IO
def _stable(value: Any, where: str) -> Any:
    """A JSON-ready copy with floats rounded to :data:`FLOAT_DIGITS` significant digits."""
    if isinstance(value, bool) or value is None or isinstance(value, (int, str)):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"golden value at {where}: {value!r} is not a finite number")
        return float(f"{value:.{FLOAT_DIGITS}g}")
    if isinstance(value, Mapping):
        out = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"golden value at {where}: keys must be strings, got {key!r}")
            out[key] = _stable(item, f"{where}.{key}")
        return out
    if isinstance(value, (list, tuple)):
        return [_stable(item, f"{where}[{i}]") for i, item in enumerate(value)]
    raise TypeError(f"golden value at {where}: {type(value).__name__} is not JSON data")


def dumps_golden(data: Mapping[str, Any]) -> str:
    """Deterministic JSON text: sorted keys, indent 2, stable floats, trailing newline."""
    return json.dumps(_stable(data, "$"), sort_keys=True, indent=2, ensure_ascii=False,
                      allow_nan=False) + "\n"


def write_atomic(path: Path | str, text: str) -> bool:
    """Write ``text`` to ``path`` atomically; return False (and touch nothing) if unchanged.

    The text goes to a temporary file in the same directory, is flushed and fsync-ed, then
    ``os.replace``-d over the target: a reader (or a crash) sees the old file or the new one,
    never a partial one. A failed write removes its temporary file.
    """
    path = Path(path)
    data = text.encode("utf-8")
    try:
        if path.read_bytes() == data:
            return False
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TEMP_SUFFIX, dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return True


def load_doc(path: Path | str, kind: str, *, regenerate: str = "pytest --update-golden",
             display: str | None = None) -> dict[str, Any] | None:
    """Read and validate one golden file of ``kind``; None when it does not exist.

    :class:`GoldenError` names the file and the fix (``regenerate``) for anything else: unreadable,
    not JSON, another schema or kind, a missing or mistyped field.
    """
    path = Path(path)
    shown = display or str(path)
    fix = f"\nTo regenerate it, run:\n  {regenerate}"
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except IsADirectoryError as exc:
        raise GoldenError(f"golden file {shown} is a directory; move it away.{fix}") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise GoldenError(f"golden file {shown} cannot be read: {exc}{fix}") from exc
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise GoldenError(f"golden file {shown} is not valid JSON (line {exc.lineno}, column "
                          f"{exc.colno}: {exc.msg}); it may be truncated or hand-edited.{fix}") from exc
    if not isinstance(data, dict):
        raise GoldenError(f"golden file {shown}: expected a JSON object, got {type(data).__name__}.{fix}")
    if data.get("schema") != SCHEMA_VERSION:
        raise GoldenError(f"golden file {shown}: schema {data.get('schema')!r}, this harness reads schema "
                          f"{SCHEMA_VERSION}.{fix}")
    if data.get("kind") != kind:
        raise GoldenError(f"golden file {shown}: kind {data.get('kind')!r}, expected {kind!r}.{fix}")
    for name, typ in _FIELDS[kind].items():
        value = data.get(name)
        if not isinstance(value, typ) or isinstance(value, bool):
            raise GoldenError(f"golden file {shown}: field {name!r} must be a {typ.__name__}, got "
                              f"{type(value).__name__}.{fix}")
    inner = data["pages"] if kind == "layout" else data["counters"]
    if not all(isinstance(v, dict) for v in inner.values()):
        raise GoldenError(f"golden file {shown}: every entry of "
                          f"{'pages' if kind == 'layout' else 'counters'} must be an object.{fix}")
    if not isinstance(data.get("environment", {}), dict):
        raise GoldenError(f"golden file {shown}: 'environment' must be an object.{fix}")
    return data


def facts(doc: Mapping[str, Any]) -> dict[str, Any]:
    """A document without its environment: what decides whether a golden is rewritten."""
    return {k: v for k, v in doc.items() if k != "environment"}


# ---------------------------------------------------------------------------------------- lock
class UpdateLock:
    """An exclusive, non-blocking lock on ``<root>/.harness-golden.lock`` for a writing run.

    The holder's pid and command line are written into the file, so a refused run can say who
    holds it. The lock is the kernel's (``fcntl.flock``): it dies with the process, so a killed
    run never leaves a stale lock.
    """

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)
        self.path = self.root / LOCK_NAME
        self._fd: int | None = None

    def acquire(self, what: str = "") -> None:
        import fcntl

        self.root.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = ""
            try:
                holder = os.pread(fd, 4096, 0).decode("utf-8", "replace").strip()
            except OSError:
                pass
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise GoldenLockedError(
                    f"the golden directory {self.root} is being updated by another run"
                    f"{' (' + holder + ')' if holder else ''}. Wait for it to finish, then run again; "
                    "two runs that write goldens at once could leave one of them stale.") from exc
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()}, since {time.strftime('%H:%M:%S')}: {what}".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            import fcntl

            try:
                os.ftruncate(self._fd, 0)
                fcntl.flock(self._fd, fcntl.LOCK_UN)
            finally:
                os.close(self._fd)
                self._fd = None

    @property
    def held(self) -> bool:
        return self._fd is not None


def sweep_temp_files(root: Path | str, lock: UpdateLock) -> list[Path]:
    """Remove temporary files crashed writes left under ``root``; only a lock holder may (no
    other harness run can be writing then, so every one found is stale)."""
    if not lock.held:
        raise RuntimeError("sweep_temp_files needs the update lock")
    removed = []
    for path in Path(root).rglob(".*.json.*" + TEMP_SUFFIX):
        try:
            path.unlink()
            removed.append(path)
        except FileNotFoundError:
            pass
    return removed
