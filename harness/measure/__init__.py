"""FLOP counters (torch, fvcore, thop; stock and patched) measured stage by stage.

``count(counter, calls, variant=...)`` -> :class:`StageCount` (raw figure + convention + FLOPs,
by the tool's ops and by analytic op key, unknown/ignored ops, what ran uncounted). FLOPs = 2 x MACs.
Measuring only: the verdicts (a count against the analytic model, its delta split into named causes)
are :mod:`harness.verify`'s.
"""

from .base import (CONVENTIONS, VARIANTS, Counter, CounterError, StageCount, UncountedOpError,
                   UnknownCounterError,
                   available_counters, count, count_variants, get_counter, register_counter,
                   uncounted_error)
from .keys import ELEMENTWISE_KEYS, GENERIC_KEYS, KEY_CLASS, MATMUL_KEYS, UNMAPPED, is_matmul_like, op_key
from . import fvcore_counter, thop_counter, torch_counter  # noqa: F401  (register the counters)

__all__ = [
    "Counter", "CounterError", "UncountedOpError", "UnknownCounterError", "StageCount", "count", "count_variants", "uncounted_error", "register_counter",
    "get_counter", "available_counters", "VARIANTS", "CONVENTIONS",
    "MATMUL_KEYS", "GENERIC_KEYS", "ELEMENTWISE_KEYS", "KEY_CLASS", "UNMAPPED", "op_key", "is_matmul_like",
]
