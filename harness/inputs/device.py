"""Device strings (``cpu``, ``meta``, ``cuda``, ``cuda:N``): parsed and checked here, for every
entry point (pytest's ``--device``, the ``harness`` commands, the targets' ``device=``).

One error text per bad input, naming the option and what to do. torch is imported only when a
CUDA device must be looked for.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any, Callable

__all__ = ["Device", "DeviceError", "DeviceUnavailableError", "parse_device", "check_device",
           "cuda_device_count"]

_DEVICE_RE = re.compile(r"^(cpu|meta|cuda)(?::(\d+))?$")


class DeviceError(ValueError):
    """A device string that is not a device, or names a CUDA device this process cannot see."""


class DeviceUnavailableError(DeviceError):
    """A CUDA device was asked for, but this torch sees none (pytest answers it with exit 2)."""


@dataclass(frozen=True)
class Device:
    """A parsed device: ``kind`` cpu, meta or cuda; ``index`` only for ``cuda:N``."""

    kind: str
    index: int | None = None

    def __str__(self) -> str:
        """The normal form: ``cpu``, ``meta``, ``cuda:N`` (``cuda`` is ``cuda:0``)."""
        return f"cuda:{self.index or 0}" if self.kind == "cuda" else self.kind


def _given(option: str, text: Any) -> str:
    """How the user wrote it: ``--device 'tpu'`` for an option, ``device='tpu'`` for a keyword."""
    return f"{option} {text!r}" if option.startswith("-") else f"{option}={text!r}"


def parse_device(text: Any, option: str = "--device") -> Device:
    """``"cuda:1"`` -> ``Device("cuda", 1)``; :class:`DeviceError` for anything else (syntax only:
    nothing is looked up). ``text`` may be a ``torch.device``."""
    shown = text if isinstance(text, str) else str(text)
    match = _DEVICE_RE.match(shown.strip())
    if match is None or (match.group(1) != "cuda" and match.group(2) is not None):
        example = f"{option} cuda:0" if option.startswith("-") else f"{option}='cuda:0'"
        raise DeviceError(f"{_given(option, shown)}: expected cpu, meta, cuda or cuda:N (N a CUDA device "
                          f"index), e.g. {example}")
    return Device(match.group(1), int(match.group(2)) if match.group(2) is not None else None)


def cuda_device_count() -> int:
    """CUDA devices this torch sees (0 without CUDA); imports torch."""
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def check_device(text: Any, option: str = "--device", *,
                 device_count: Callable[[], int] | None = None) -> str:
    """The normal form of a device this process can use (``cuda`` -> ``cuda:0``).

    :class:`DeviceError` for a string that is no device or a CUDA index past the visible ones;
    :class:`DeviceUnavailableError` for CUDA without a CUDA device. ``device_count`` (default
    :func:`cuda_device_count`) is asked only for ``cuda``.
    """
    device = parse_device(text, option)
    if device.kind != "cuda":
        return str(device)
    count = (device_count or cuda_device_count)()
    given = f"{option} {text}" if option.startswith("-") else _given(option, str(text))
    if count == 0:
        import torch

        raise DeviceUnavailableError(
            f"{given} was requested, but CUDA is unavailable (torch {torch.__version__}, "
            f"CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES')!r}); pass cpu or meta "
            "instead, or run where this torch sees a CUDA device")
    if device.index is not None and device.index >= count:
        raise DeviceError(f"{given}: only {count} CUDA device(s) visible "
                          f"(cuda:0{'..cuda:' + str(count - 1) if count > 1 else ''}).")
    return str(device)
