"""``package.module:factory`` (or ``path/to/file.py:factory``): a model and its inputs, by name.

Owns the factory contract that ``harness count`` and anything else taking a spec relies on: a
no-argument call (``device`` passed when asked) returning ``(model, args)``, ``(model, args,
kwargs)`` or a :class:`ModelInputs`; the current directory is importable. The contract:
docs/count.md ("Command line").
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

__all__ = ["FactoryError", "ModelInputs", "load_factory", "call_factory", "SPEC_HELP"]

SPEC_HELP = ("package.module:factory or path/to/file.py:factory, where factory() returns "
             "(model, args) or (model, args, kwargs)")


class FactoryError(ValueError):
    """A spec or factory that cannot be used; the message names it and says what to do."""


@dataclass
class ModelInputs:
    """What a factory returns when it wants to say more than ``(model, args, kwargs)``."""

    model: Any
    args: tuple = ()
    kwargs: dict = field(default_factory=dict)
    expected: int | Callable[..., int] | None = None
    device: str | None = None


def load_factory(spec: str) -> Callable[[], Any]:
    """The callable named by ``spec`` (``package.module:factory`` or ``file.py:factory``)."""
    if not isinstance(spec, str) or spec.count(":") != 1 or not all(spec.split(":")):
        raise FactoryError(f"{spec!r}: expected {SPEC_HELP}")
    where, attr = spec.rsplit(":", 1)
    if where.endswith(".py") or os.sep in where or "/" in where:
        path = Path(where)
        if not path.is_file():
            raise FactoryError(f"{spec!r}: no file {where}; expected {SPEC_HELP}")
        name = path.stem
        existing = sys.modules.get(name)
        if existing is not None and os.path.realpath(getattr(existing, "__file__", "") or "") != os.path.realpath(path):
            name = f"_harness_count_file_{abs(hash(os.path.realpath(path))):x}_{path.stem}"  # never shadow a module
        module_spec = importlib.util.spec_from_file_location(name, path)
        if module_spec is None or module_spec.loader is None:
            raise FactoryError(f"{spec!r}: cannot import {where} as a Python file")
        module = importlib.util.module_from_spec(module_spec)
        # registered before it runs, as the import system does: a dataclass (under ``from
        # __future__ import annotations``) and pickling look their module up in sys.modules
        previous = sys.modules.get(module_spec.name)
        sys.modules[module_spec.name] = module
        try:
            module_spec.loader.exec_module(module)
        except Exception as exc:
            if previous is None:
                sys.modules.pop(module_spec.name, None)
            else:
                sys.modules[module_spec.name] = previous
            raise FactoryError(f"{spec!r}: importing {where} failed: {type(exc).__name__}: {exc}") from exc
    else:
        cwd = os.getcwd()
        if cwd not in sys.path and "" not in sys.path:
            sys.path.insert(0, cwd)
        try:
            module = importlib.import_module(where)
        except ModuleNotFoundError as exc:
            raise FactoryError(f"{spec!r}: cannot import {where!r} ({exc}); run from the directory that "
                               f"holds it, or install its package") from exc
        except Exception as exc:
            raise FactoryError(f"{spec!r}: importing {where} failed: {type(exc).__name__}: {exc}") from exc
    target: Any = module
    for part in attr.split("."):
        if not hasattr(target, part):
            names = [n for n in dir(module) if not n.startswith("_") and callable(getattr(module, n))]
            import difflib

            close = difflib.get_close_matches(attr, names, n=3)
            hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
            raise FactoryError(f"{spec!r}: {where} has no attribute {attr!r}.{hint}")
        target = getattr(target, part)
    if not callable(target):
        raise FactoryError(f"{spec!r}: {attr} is a {type(target).__name__}, not a callable factory")
    return target


def call_factory(spec: str, device: str | None = None) -> ModelInputs:
    """Load ``spec``, call the factory and check what it returned. A factory with a ``device``
    parameter gets ``device`` (when not None), so it builds the model there."""
    factory = load_factory(spec)
    extra: dict[str, Any] = {}
    if device is not None:
        try:
            params = inspect.signature(factory).parameters
        except (TypeError, ValueError):
            params = {}
        if "device" in params:
            extra["device"] = device
    try:
        value = factory(**extra)
    except Exception as exc:
        raise FactoryError(f"{spec}: the factory raised {type(exc).__name__}: {exc}") from exc
    return as_model_inputs(value, spec)


def as_model_inputs(value: Any, spec: str = "factory") -> ModelInputs:
    """``(model, args[, kwargs])`` or a :class:`ModelInputs` -> a checked :class:`ModelInputs`."""
    if isinstance(value, ModelInputs):
        out = value
    elif isinstance(value, tuple) and len(value) in (2, 3):
        model, args = value[0], value[1]
        kwargs = value[2] if len(value) == 3 else {}
        out = ModelInputs(model, args, kwargs)
    else:
        what = f"a tuple of {len(value)}" if isinstance(value, tuple) else type(value).__name__
        raise FactoryError(f"{spec}: the factory returned {what}; expected (model, args) or "
                           f"(model, args, kwargs) or harness.count.ModelInputs")
    if isinstance(out.args, torch.Tensor):
        out.args = (out.args,)
    elif isinstance(out.args, list):
        out.args = tuple(out.args)
    if not isinstance(out.args, tuple):
        raise FactoryError(f"{spec}: args must be a tuple of positional inputs, got {type(out.args).__name__}")
    if out.kwargs is None:
        out.kwargs = {}
    if not isinstance(out.kwargs, dict) or not all(isinstance(k, str) for k in out.kwargs):
        raise FactoryError(f"{spec}: kwargs must be a dict of keyword inputs, got {type(out.kwargs).__name__}")
    if not callable(out.model):
        raise FactoryError(f"{spec}: the model must be an nn.Module or a callable, got {type(out.model).__name__}")
    return out
