"""``harness.count``: explained FLOP counts for any PyTorch model (FLOPs = 2 x MACs).

``harness.count(model, *inputs, **keyword_inputs)`` (this package is itself callable) runs every
installed counter, stock and patched, on one call of the model and returns a :class:`CountResult`:
each counter's figures with their convention, the breakdowns, and every pair's delta split into
named causes; ``expected=`` adds a verdict. Names load on first use (no torch import). Also here:
``harness count`` (:mod:`.cli`) and the ``flop_count`` fixture (:mod:`.pytest_plugin`). docs/count.md.
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
