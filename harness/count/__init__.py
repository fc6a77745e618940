"""``harness.count``: explained FLOP counts for any PyTorch model (FLOPs = 2 x MACs).

``harness.count(model, *inputs, **keyword_inputs)`` runs every installed counter (torch
``FlopCounterMode``, fvcore, thop), stock and patched, on one call of the model and returns a
:class:`CountResult`: each counter's raw figure, convention and FLOPs, the breakdown per module,
op and op key, unknown / ignored ops, and the delta between every pair of counters split into
named causes with the unexplained remainder. ``expected=`` adds a verdict.

This package is itself callable (``harness.count(...)`` is :func:`harness.count.count`), so
``import harness.count`` and ``from harness.count import count`` give the same function.
Also here: ``harness count MODULE:FACTORY`` (:mod:`.cli`) and the ``flop_count`` pytest fixture
(:mod:`.pytest_plugin`, registered by the ``pytest11`` entry point ``harness-count``).
"""

from __future__ import annotations

import sys
import types

from .api import CountError, count, installed_counters, resolve_counters
from .factory import FactoryError, ModelInputs, load_factory
from .result import CountResult, Verdict

__all__ = ["count", "CountResult", "Verdict", "CountError", "FactoryError", "ModelInputs",
           "load_factory", "installed_counters", "resolve_counters"]


class _CallablePackage(types.ModuleType):
    """``harness.count`` is both this package and the function: calling it counts."""

    def __call__(self, *args, **kwargs) -> CountResult:
        return count(*args, **kwargs)


sys.modules[__name__].__class__ = _CallablePackage
