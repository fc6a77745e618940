"""Device classes, the key under which expected values may legitimately differ.

Modelled on transformers' ``testing_utils.Expectations``: a class is ``(device_type, (major,
minor))``, e.g. ``("cuda", (9, 0))`` for H100/H200, ``("cuda", None)`` for any CUDA device,
``(None, None)`` for the default. :func:`select_expectation` picks the most specific entry that
matches the current device, falling back to the default; no match and no default is an error.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = ["DeviceClass", "DEFAULT_CLASS", "device_class", "format_device_class", "parse_device_class",
           "select_expectation"]

DeviceClass = tuple["str | None", "tuple[int, int] | None"]
#: The default entry of an expectation mapping.
DEFAULT_CLASS: DeviceClass = (None, None)

T = TypeVar("T")


def device_class(device: "str | torch.device") -> DeviceClass:
    """``("cuda", (major, minor))`` for ``cuda[:N]`` (compute capability), ``(type, None)`` otherwise;
    the device string is parsed by :func:`harness.inputs.device.parse_device`."""
    from harness.inputs.device import parse_device

    dev = parse_device(device, "device")
    if dev.kind == "cuda":
        import torch

        return ("cuda", tuple(torch.cuda.get_device_capability(dev.index)))  # type: ignore[return-value]
    return (dev.kind, None)


def format_device_class(cls: DeviceClass) -> str:
    """A string key for JSON: ``default``, ``cuda``, ``cuda-sm90``, ``cpu``, ``meta``."""
    kind, capability = cls
    if kind is None:
        if capability is not None:
            raise ValueError(f"device class {cls!r}: a capability needs a device type")
        return "default"
    if capability is None:
        return kind
    major, minor = capability
    return f"{kind}-sm{major}{minor}"


def parse_device_class(text: str) -> DeviceClass:
    """Inverse of :func:`format_device_class` (``cuda-sm120`` -> ``("cuda", (12, 0))``)."""
    if text == "default":
        return DEFAULT_CLASS
    kind, sep, sm = text.partition("-sm")
    if not sep:
        return (text, None)
    if not sm.isdigit() or len(sm) < 2:
        raise ValueError(f"device class {text!r}: expected <type>-sm<major><minor>, e.g. cuda-sm90")
    return (kind, (int(sm[:-1]), int(sm[-1])))


def _score(entry: DeviceClass, current: DeviceClass) -> int:
    """-1: does not apply; else higher = more specific (2 exact capability, 1 type, 0 default)."""
    kind, capability = entry
    if kind is None:
        return 0
    if kind != current[0]:
        return -1
    if capability is None:
        return 1
    return 2 if capability == current[1] else -1


def select_expectation(expectations: Mapping[DeviceClass, T], current: DeviceClass) -> T:
    """The value for the most specific class matching ``current``; the default otherwise."""
    best: tuple[int, DeviceClass] | None = None
    for entry in expectations:
        score = _score(entry, current)
        if score >= 0 and (best is None or score > best[0]):
            best = (score, entry)
    if best is None:
        known = ", ".join(format_device_class(e) for e in expectations)
        raise LookupError(f"no expected value for device class {format_device_class(current)} "
                          f"and no default; have: {known}")
    return expectations[best[1]]
