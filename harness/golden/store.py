"""Golden files on disk: where they live, their format, atomic writes, the update lock, the store.

:class:`GoldenStore` is how the suite, the report and the ``flop_count`` fixture read goldens and
write obtained files (``<golden>.obtained.json``, ours by name and marker). Owns the layout and
count kinds (schema 2; the ``harness.count`` kind is :mod:`harness.count.golden`'s), the
deterministic JSON, the atomic replace, :class:`UpdateLock` and :func:`migrate_legacy`. Format and
rules: golden/README.md.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

__all__ = [
    "SCHEMA_VERSION", "TEMP_SUFFIX", "LOCK_NAME", "KINDS", "FLOP_COUNT_KIND", "OBTAINED_SUFFIX",
    "LEGACY_FIELDS", "GoldenError", "GoldenLockedError", "GoldenStore",
    "layout_path", "count_path", "obtained_path", "dumps_golden", "write_atomic", "load_doc", "facts",
    "UpdateLock", "sweep_temp_files", "iter_golden_files", "migrate_legacy",
]

#: Bumped when the layout of a golden file changes; a file with another schema is an error that
#: names the regenerate command.
SCHEMA_VERSION = 2
FLOAT_DIGITS = 12
TEMP_SUFFIX = ".tmp"
LOCK_NAME = ".harness-golden.lock"
#: The ``kind`` of a ``flop_count`` golden (a user's model; :mod:`harness.count.golden`).
FLOP_COUNT_KIND = "harness.count"
KINDS = ("layout", "count", FLOP_COUNT_KIND)
#: Schema each kind is read at.
_SCHEMA = {"layout": SCHEMA_VERSION, "count": SCHEMA_VERSION, FLOP_COUNT_KIND: 1}
#: Fields of each kind of document (besides schema, kind and environment), and the object of
#: objects that holds its entries.
_FIELDS: dict[str, dict[str, type]] = {
    "layout": {"target": str, "mode": str, "text_tokens": int, "pages": dict},
    "count": {"target": str, "stage": str, "shape_key": str, "shape": dict, "counters": dict},
    FLOP_COUNT_KIND: {"counts": dict},
}
_ENTRIES = {"layout": "pages", "count": "counters", FLOP_COUNT_KIND: "counts"}
#: Fields a kind no longer holds, still read (and ignored) in older files; a writing run drops
#: them (:func:`migrate_legacy`) and nothing else. ``pages`` of a count golden listed the pages
#: reaching its key, which the layout goldens state already (page -> shape key).
LEGACY_FIELDS: dict[str, tuple[str, ...]] = {"count": ("pages",)}
#: ``<golden>.obtained.json``: what a failing run obtained, beside the golden, for a reviewer to diff.
OBTAINED_SUFFIX = ".obtained.json"
#: The marker field of an obtained file (ours by name AND by this field's value).
OBTAINED_MARKER = "obtained"


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


def obtained_path(path: Path | str) -> Path:
    """``<golden>.obtained.json`` beside the golden ``<golden>.json``."""
    path = Path(path)
    return path.with_name(path.name[:-len(".json")] + OBTAINED_SUFFIX if path.name.endswith(".json")
                          else path.name + OBTAINED_SUFFIX)


def is_obtained_name(path: Path | str) -> bool:
    return Path(path).name.endswith(OBTAINED_SUFFIX)


def iter_golden_files(root: Path | str) -> list[Path]:
    """Every golden file under ``root`` (layout and count; obtained files are not goldens), sorted."""
    root = Path(root)
    return sorted(p for p in [*root.glob("*/layout/*.json"), *root.glob("*/count/*/*.json")]
                  if not is_obtained_name(p))


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
    if data.get(OBTAINED_MARKER) is True:
        raise GoldenError(f"golden file {shown} is an obtained file (what a failing run measured), not a "
                          f"golden; compare it with the golden, then delete it.{fix}")
    if data.get("kind") != kind and kind == FLOP_COUNT_KIND:
        raise GoldenError(f"golden file {shown}: not a {kind} golden of schema {_SCHEMA[kind]}.{fix}")
    if data.get("schema") != _SCHEMA[kind]:
        raise GoldenError(f"golden file {shown}: schema {data.get('schema')!r}, this harness reads schema "
                          f"{_SCHEMA[kind]}.{fix}")
    if data.get("kind") != kind:
        raise GoldenError(f"golden file {shown}: kind {data.get('kind')!r}, expected {kind!r}.{fix}")
    for name, typ in _FIELDS[kind].items():
        value = data.get(name)
        if not isinstance(value, typ) or isinstance(value, bool):
            raise GoldenError(f"golden file {shown}: field {name!r} must be a {typ.__name__}, got "
                              f"{type(value).__name__}.{fix}")
    inner = data[_ENTRIES[kind]]
    if not all(isinstance(v, dict) for v in inner.values()):
        raise GoldenError(f"golden file {shown}: every entry of {_ENTRIES[kind]} must be an object.{fix}")
    if not isinstance(data.get("environment", {}), dict):
        raise GoldenError(f"golden file {shown}: 'environment' must be an object.{fix}")
    return data


def facts(doc: Mapping[str, Any]) -> dict[str, Any]:
    """A document without its environment: what decides whether a golden is rewritten."""
    return {k: v for k, v in doc.items() if k != "environment"}


def without_legacy(doc: Mapping[str, Any]) -> dict[str, Any]:
    """``doc`` without the fields its kind no longer holds (:data:`LEGACY_FIELDS`)."""
    drop = LEGACY_FIELDS.get(str(doc.get("kind")), ())
    return {k: v for k, v in doc.items() if k not in drop}


def migrate_legacy(root: Path | str, lock: "UpdateLock",
                   failed: list[tuple[Path, OSError]] | None = None) -> list[Path]:
    """Drop the legacy fields from every golden under ``root`` that still holds one; only a lock
    holder may. The new text is the old document minus those fields, re-serialised; every other
    byte of its facts and environment is kept (checked before writing: a file whose remaining
    content would change in any other way is left alone). Returns the files rewritten; a file that
    cannot be written is added to ``failed`` with its error."""
    if not lock.held:
        raise RuntimeError("migrate_legacy needs the update lock")
    failed = [] if failed is None else failed
    done = []
    for path in iter_golden_files(root):
        kind = "layout" if path.parent.name == "layout" else "count"
        if not LEGACY_FIELDS.get(kind):
            continue
        try:
            doc = load_doc(path, kind)
        except GoldenError:
            continue            # a corrupt file is the session's to report, never rewritten here
        if doc is None or not any(f in doc for f in LEGACY_FIELDS[kind]):
            continue
        new = without_legacy(doc)
        if json.loads(dumps_golden(new)) != new:      # not already in canonical form: not ours to touch
            continue
        try:
            write_atomic(path, dumps_golden(new))
        except OSError as exc:     # a read-only file: the session reports it; the others go on
            failed.append((path, exc))
            continue
        done.append(path)
    return done


class GoldenStore:
    """One golden directory as the suite, the report and the ``flop_count`` fixture read and write
    it: documents loaded once (a corrupt one kept as its :class:`GoldenError`), paths shown
    relative to ``base``, atomic writes, and the obtained files of mismatches.

    ``obtained=False`` (the report): a reader that never writes into the golden directory.
    """

    def __init__(self, root: Path | str, *, base: Path | str | None = None, obtained: bool = True) -> None:
        self.root = Path(root)
        self.base = None if base is None else Path(base)
        self.writes_obtained = obtained
        self._docs: dict[Path, dict[str, Any] | GoldenError | None] = {}

    def display(self, path: Path | str) -> str:
        if self.base is not None:
            try:
                return str(Path(path).relative_to(self.base))
            except ValueError:
                pass
        return str(path)

    def load(self, path: Path | str, kind: str, *,
             regenerate: str | Callable[[], str] = "pytest --update-golden") -> dict[str, Any] | None:
        """The document at ``path`` (read once), None when absent; :class:`GoldenError` (naming
        ``regenerate``, or what it returns: made only then) when it cannot be used."""
        path = Path(path)
        if path not in self._docs:
            try:
                self._docs[path] = load_doc(path, kind, display=self.display(path))
            except GoldenError as exc:
                self._docs[path] = exc
            except OSError as exc:
                self._docs[path] = GoldenError(f"golden file {self.display(path)} cannot be read: {exc}")
        doc = self._docs[path]
        if isinstance(doc, GoldenError):
            text = str(doc).rsplit("\nTo regenerate it, run:", 1)[0]
            command = regenerate() if callable(regenerate) else regenerate
            raise GoldenError(f"{text}\nTo regenerate it, run:\n  {command}")
        return doc

    # ------------------------------------------------------------------ obtained files
    def write_obtained(self, golden: Path | str, doc: Mapping[str, Any], differs: list[str]) -> tuple[Path | None, str]:
        """Write ``<golden>.obtained.json``: ``doc`` (the golden's document with what this run
        obtained in place of the expected values), marked ours (``"obtained": true``) with the
        addresses that differ. Returns ``(path, "")``, or ``(None, why not)``: a read-only golden
        directory, a reader store, or a file of that name that is not ours (never replaced)."""
        if not self.writes_obtained:
            return None, "this command does not write into the golden directory"
        path = obtained_path(golden)
        if path.exists() and not self.is_ours(path):
            return None, f"{self.display(path)} exists and is not one harness wrote; left as it is"
        out = dict(doc)
        out[OBTAINED_MARKER] = True
        out["obtained_differs"] = sorted(set(differs))
        try:
            write_atomic(path, dumps_golden(out))
        except OSError as exc:
            return None, f"could not write {self.display(path)}: {exc.strerror or exc}"
        return path, ""

    @staticmethod
    def is_ours(path: Path | str) -> bool:
        """An obtained file harness wrote: named ``*.obtained.json`` and holding ``"obtained": true``."""
        path = Path(path)
        if not is_obtained_name(path) or path.is_symlink() or not path.is_file():
            return False
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return False
        return isinstance(data, dict) and data.get(OBTAINED_MARKER) is True \
            and isinstance(data.get("obtained_differs"), list)

    def obtained_differs(self, golden: Path | str) -> list[str] | None:
        """The addresses our obtained file beside ``golden`` names, None if there is none of ours."""
        path = obtained_path(golden)
        if not self.is_ours(path):
            return None
        return list(json.loads(path.read_text(encoding="utf-8"))["obtained_differs"])

    def remove_stale_obtained(self, golden: Path | str, passed: set[str]) -> bool:
        """Remove our obtained file beside ``golden`` when every address it names passed (or was
        recorded) in this run: it is then stale. A file not ours is never touched."""
        if not self.writes_obtained:
            return False
        differs = self.obtained_differs(golden)
        if differs is None or not set(differs) <= passed:
            return False
        try:
            obtained_path(golden).unlink()
        except OSError:
            return False
        return True


# ---------------------------------------------------------------------------------------- lock
class UpdateLock:
    """An exclusive, non-blocking lock on ``<root>/.harness-golden.lock`` for a writing run.

    The holder's pid and command line are written into the file, so a refused run can say who
    holds it. The lock is :class:`harness.filelock.FileLock` (the kernel's ``flock``): it dies
    with the process, so a killed run never leaves a stale lock.
    """

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)
        self.path = self.root / LOCK_NAME
        from harness.filelock import FileLock

        self._lock = FileLock(self.path)

    def acquire(self, what: str = "") -> None:
        from harness.filelock import LockHeld

        self.root.mkdir(parents=True, exist_ok=True)
        try:
            self._lock.acquire(f"pid {os.getpid()}, since {time.strftime('%H:%M:%S')}: {what}")
        except LockHeld as exc:
            holder = exc.holder
            raise GoldenLockedError(
                f"the golden directory {self.root} is being updated by another run"
                f"{' (' + holder + ')' if holder else ''}. Wait for it to finish, then run again; "
                "two runs that write goldens at once could leave one of them stale.") from exc

    def release(self) -> None:
        self._lock.release()

    @property
    def held(self) -> bool:
        return self._lock.held


def sweep_temp_files(root: Path | str, lock: UpdateLock) -> list[Path]:
    """Remove temporary files crashed golden writes left under ``root``; only a lock holder may (no
    other harness run can be writing a golden then, so every one found is stale). Obtained files'
    temporaries are left alone: runs that only check write those without the lock."""
    if not lock.held:
        raise RuntimeError("sweep_temp_files needs the update lock")
    removed = []
    for path in Path(root).rglob(".*.json.*" + TEMP_SUFFIX):
        if path.parent.name == "flop_count":     # the flop_count fixture's folder has a lock of its own
            continue
        if ".obtained.json." in path.name:       # check-only runs write obtained files without the lock
            continue
        try:
            path.unlink()
            removed.append(path)
        except FileNotFoundError:
            pass
    return removed
