"""The shape of every verdict: ``Verdict(rows, problems)``, one per fact.

``rows`` is the table a person reads (a FLOP delta's per-key rows, a byte comparison's
:class:`~harness.verify.bytes.BytesRow`, each counter's explanation against an expected count, a
device comparison by op key); ``problems`` are the failure messages, empty when the fact is verified.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["Verdict"]


@dataclass(frozen=True)
class Verdict:
    """One fact's verdict: ``rows`` (the table a person reads) and ``problems`` (empty: verified)."""

    rows: Any = ()
    problems: tuple[str, ...] = ()

    @property
    def verified(self) -> bool:
        return not self.problems

    def __bool__(self) -> bool:
        return self.verified
