"""One pytest-xdist worker per GPU: ``pytest -m gpu -n <gpus>``.

Worker ``gw<k>`` gets the k-th entry of ``CUDA_VISIBLE_DEVICES``. Inside a process CUDA numbers
the visible devices 0..n-1 in list order, so that entry is ``cuda:<k>`` for torch; a plugin can
either use that device string as the worker's ``--device``, or set the worker's own
``CUDA_VISIBLE_DEVICES`` to the single entry (before CUDA is initialised) and use ``cuda:0``.
More workers than visible GPUs is an error: two workers timing on one GPU disturb each other.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["WorkerDevice", "parse_visible_devices", "worker_index", "worker_device"]

_WORKER_ID = re.compile(r"gw(\d+)")


@dataclass(frozen=True)
class WorkerDevice:
    """Where one worker runs: ``device`` for torch in a process that sees the whole visible list,
    ``visible`` the ``CUDA_VISIBLE_DEVICES`` entry (index, ``GPU-<uuid>`` or ``MIG-<uuid>``)."""

    worker_id: str
    index: int
    device: str
    visible: str


def parse_visible_devices(visible: str | None, device_count: int | None = None) -> tuple[str, ...]:
    """The entries of a ``CUDA_VISIBLE_DEVICES`` value, as CUDA reads them.

    Unset (None) means all ``device_count`` devices ("0".."n-1"); an empty string means none.
    CUDA stops at the first invalid entry (e.g. ``-1``), so a negative index ends the list.
    """
    if visible is None:
        if device_count is None:
            raise ValueError("CUDA_VISIBLE_DEVICES is unset: pass device_count "
                             "(torch.cuda.device_count()) to know how many GPUs are visible")
        return tuple(str(i) for i in range(device_count))
    entries = []
    for raw in visible.split(","):
        entry = raw.strip()
        if not entry:
            continue
        if re.fullmatch(r"-\d+", entry):
            break
        entries.append(entry)
    return tuple(entries)


def worker_index(worker_id: str | None) -> int | None:
    """``gw3`` -> 3; ``master`` or None (no xdist) -> None."""
    if worker_id in (None, "", "master"):
        return None
    match = _WORKER_ID.fullmatch(worker_id)
    if match is None:
        raise ValueError(f"unexpected xdist worker id {worker_id!r}: expected 'gw<N>' or 'master'")
    return int(match.group(1))


def worker_device(worker_id: str | None, visible: str | None, *,
                  device_count: int | None = None) -> WorkerDevice:
    """The GPU of xdist worker ``worker_id`` given ``CUDA_VISIBLE_DEVICES`` = ``visible``.

    ``master`` (a run without ``-n``) gets the first visible GPU. ``device_count`` is needed only
    when ``visible`` is None (the variable unset).
    """
    entries = parse_visible_devices(visible, device_count)
    index = worker_index(worker_id)
    if not entries:
        raise RuntimeError(f"no GPU visible (CUDA_VISIBLE_DEVICES={visible!r}) for worker "
                           f"{worker_id or 'master'}; GPU tests need at least one")
    k = 0 if index is None else index
    if k >= len(entries):
        raise RuntimeError(
            f"xdist worker {worker_id} has no GPU of its own: {len(entries)} visible "
            f"(CUDA_VISIBLE_DEVICES={visible if visible is not None else '<unset>'}); "
            f"run with -n {len(entries)} (one worker per GPU) or fewer")
    return WorkerDevice(worker_id or "master", k, f"cuda:{k}", entries[k])
