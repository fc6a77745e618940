"""Shared pieces of the counter tests on hand-built modules."""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import nn

COUNTERS = ("torch", "fvcore", "thop")
VARIANTS = ("stock", "patched")


@dataclass
class Call:
    """A duck-typed StageCall: what the counters need of one module call."""

    module: nn.Module
    args: tuple = ()
    kwargs: dict = field(default_factory=dict)
    module_path: str = "blk"
    stage: str = "toy"
