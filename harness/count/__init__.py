"""``harness.count``: explained FLOP counts for any PyTorch model (FLOPs = 2 x MACs).

``harness.count(model, *inputs, **keyword_inputs)`` runs every installed counter (torch
``FlopCounterMode``, fvcore, thop), stock and patched, on one call of the model and returns a
:class:`CountResult`: each counter's raw figure, convention and FLOPs, the breakdown per module,
op and op key, unknown / ignored ops, and the delta between every pair of counters split into
named causes with the unexplained remainder. ``expected=`` adds a verdict.

This package is itself callable (``harness.count(...)`` is :func:`harness.count.count`), so
``import harness.count`` and ``from harness.count import count`` give the same function. Its
names are imported on first use (torch is not imported by ``import harness.count``).
Also here: ``harness count MODULE:FACTORY`` (:mod:`.cli`) and the ``flop_count`` pytest fixture
(:mod:`.pytest_plugin`, registered by the ``pytest11`` entry point ``harness-count``).
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import Any

__all__ = ["count", "CountResult", "Verdict", "CountError", "FactoryError", "ModelInputs",
           "load_factory", "installed_counters", "resolve_counters", "TABLE_KINDS"]

#: ``CountResult.table(kind)`` kinds.
TABLE_KINDS = ("counters", "keys", "modules", "ops", "deltas")

_LAZY = {
    "count": ".api", "CountError": ".api", "installed_counters": ".api", "resolve_counters": ".api",
    "CountResult": ".result", "Verdict": ".result",
    "FactoryError": ".factory", "ModelInputs": ".factory", "load_factory": ".factory",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class _CallablePackage(types.ModuleType):
    """``harness.count`` is both this package and the function: calling it counts."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return importlib.import_module(".api", __name__).count(*args, **kwargs)


sys.modules[__name__].__class__ = _CallablePackage
