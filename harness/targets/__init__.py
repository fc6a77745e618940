"""Targets: a model, the map from stage to module paths, and stage runners (see base.py).

``get_target("dsocr" | "ocr2", model_path=None, trust_remote_code=False)`` returns a
:class:`Target`; ``register_target`` adds one (re-registering a name with another class is an
error). ``dsocr`` is the vendor DeepSeek-OCR remote code from a local directory (transformers
4.46.3, vendor environment); ``ocr2`` is transformers' native DeepSeek-OCR-2 (5.x).
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Callable

from harness.targets.base import (
    BuiltModel,
    StageInputs,
    StageCall,
    StageMapError,
    Target,
    TargetError,
    validate_stage_map,
)

__all__ = [
    "BuiltModel",
    "StageInputs",
    "StageCall",
    "StageMapError",
    "Target",
    "TargetError",
    "validate_stage_map",
    "get_target",
    "register_target",
    "available_targets",
    "target_class",
]

TargetFactory = Callable[..., Target]
_REGISTRY: dict[str, TargetFactory] = {}


def register_target(name: str, factory: TargetFactory) -> None:
    """Register a target factory under ``name``; a different factory for a taken name is an error."""
    existing = _REGISTRY.get(name)
    if existing is not None and existing is not factory:
        raise ValueError(f"target {name!r} already registered (existing={existing!r}, new={factory!r})")
    _REGISTRY[name] = factory


def available_targets() -> tuple[str, ...]:
    """Registered target names."""
    return tuple(_REGISTRY)


def get_target(name: str, model_path: str | Path | None = None, trust_remote_code: bool = False) -> Target:
    """The target called ``name``; unknown names raise ``ValueError`` with suggestions."""
    if name not in _REGISTRY:
        close = difflib.get_close_matches(name, list(_REGISTRY), n=2, cutoff=0.4)
        hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise ValueError(f"Unknown target {name!r}.{hint} Available: {', '.join(_REGISTRY)}")
    return _REGISTRY[name](model_path=model_path, trust_remote_code=trust_remote_code)


def target_class(name: str) -> type[Target]:
    """The class of target ``name`` (its rules: stages, where it can run), without a model path."""
    if name not in _REGISTRY:
        get_target(name)        # raises the "Unknown target" error
    return type(_REGISTRY[name]())


def _dsocr(**kwargs) -> Target:
    from harness.targets.dsocr import DsocrTarget

    return DsocrTarget(**kwargs)


def _ocr2(**kwargs) -> Target:
    from harness.targets.ocr2 import Ocr2Target

    return Ocr2Target(**kwargs)


register_target("dsocr", _dsocr)
register_target("ocr2", _ocr2)
