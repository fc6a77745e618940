"""Mapping a counter's raw op onto the analytic op keys (ARCHITECTURE.md, "Op keys").

Owns :func:`op_key` (an op's kind and module context -> its key, first rule that matches), the key
classes (matmul or element-wise) and :data:`UNMAPPED`. The rules in order: docs/counters.md,
"Op keys".
"""

from __future__ import annotations

import re
from typing import Sequence

from torch import nn

__all__ = [
    "MATMUL_KEYS",
    "GENERIC_KEYS",
    "ELEMENTWISE_KEYS",
    "UNMAPPED",
    "KEY_CLASS",
    "MATMUL_KINDS",
    "ModuleFrame",
    "op_key",
    "is_matmul_like",
    "is_matmul_key",
]

try:  # the analytic package owns the key list; mirror it when it is importable
    from harness.analytic.cost import ELEMENTWISE_KEYS as _ANALYTIC_ELEMENTWISE
    from harness.analytic.cost import MATMUL_KEYS as _ANALYTIC_MATMUL
except ImportError:  # pragma: no cover - analytic not installed yet
    _ANALYTIC_MATMUL = None
    _ANALYTIC_ELEMENTWISE = None

#: Matmul-class keys, compared exactly against the analytic model.
MATMUL_KEYS: tuple[str, ...] = tuple(_ANALYTIC_MATMUL or (
    "linear", "linear_functional", "experts", "conv", "einsum", "sdpa_qk", "sdpa_av",
    "matmul_qk", "matmul_av", "rotary", "lm_head",
))
#: Element-wise keys: a stated per-element convention, never mixed into the matmul total.
ELEMENTWISE_KEYS: tuple[str, ...] = tuple(_ANALYTIC_ELEMENTWISE or (
    "norm", "activation", "softmax", "add", "mul", "interpolate", "other_elementwise",
))
#: Matmul-class keys for products of any model that the analytic keys do not name (rule 10): a
#: plain matrix product outside attention, a grouped mm outside the experts. Matmul class; no
#: analytic model has them.
GENERIC_KEYS: tuple[str, ...] = ("matmul", "grouped_mm")
#: Matmul-class work a counter saw but no rule could key. Reported, never hidden in a real key.
UNMAPPED = "unmapped"

#: op key -> "matmul" | "elementwise" (``unmapped`` is matmul class: it is a product).
KEY_CLASS: dict[str, str] = {
    **{k: "matmul" for k in MATMUL_KEYS},
    **{k: "matmul" for k in GENERIC_KEYS},
    **{k: "elementwise" for k in ELEMENTWISE_KEYS},
    UNMAPPED: "matmul",
}

#: Kinds of the matmul class (what a call *is*, before its module context is known).
MATMUL_KINDS = frozenset({"linear", "matmul", "einsum", "sdpa", "sdpa_qk", "sdpa_av", "conv",
                          "grouped_mm", "mha"})
_ELEMENTWISE_KIND_KEYS = {
    "norm": "norm", "activation": "activation", "softmax": "softmax", "add": "add", "mul": "mul",
    "interpolate": "interpolate", "other_elementwise": "other_elementwise",
}


class ModuleFrame(tuple):
    """(path, module): one module on the call chain; ``path`` is its full path in the model."""

    __slots__ = ()

    def __new__(cls, path: str, module: nn.Module):
        return super().__new__(cls, (path, module))

    @property
    def path(self) -> str:
        return self[0]

    @property
    def module(self) -> nn.Module:
        return self[1]

    @property
    def name(self) -> str:
        """The module's own name (last path component)."""
        return self[0].rsplit(".", 1)[-1]


def is_matmul_key(key: str) -> bool:
    """True for the matmul-class keys (including :data:`UNMAPPED`)."""
    return KEY_CLASS.get(key) == "matmul"


def _is_experts(frame: ModuleFrame) -> bool:
    cls = type(frame.module).__name__
    return frame.name == "experts" or (cls.endswith("Experts") and not cls.endswith("SharedExperts"))


def _is_attention(frame: ModuleFrame) -> bool:
    cls = type(frame.module).__name__.lower()
    return "attention" in cls or "attn" in cls


def _is_conv1d(frame: ModuleFrame | None) -> bool:
    """transformers' ``Conv1D`` (GPT-2): ``addmm(bias, x, weight)`` with weight (in, out)."""
    if frame is None:
        return False
    module = frame.module
    weight = getattr(module, "weight", None)
    return type(module).__name__ == "Conv1D" and hasattr(module, "nf") and getattr(weight, "ndim", 0) == 2


def _is_rotary(frame: ModuleFrame) -> bool:
    return "Rotary" in type(frame.module).__name__ or "rotary" in frame.name


def op_key(kind: str, frames: Sequence[ModuleFrame], *, ordinal: int | None = None) -> str:
    """The analytic op key for one op of ``kind`` run under ``frames`` (root first).

    ``ordinal`` is the 0-based index of this ``matmul``-kind call among the matmul calls of the
    innermost module's current call (rule 9); ``None`` when the counter cannot tell.
    """
    if kind in _ELEMENTWISE_KIND_KEYS:
        return _ELEMENTWISE_KIND_KEYS[kind]
    if kind == "conv":
        return "conv"
    if kind in ("sdpa_qk", "sdpa_av"):
        return kind
    innermost = frames[-1] if frames else None
    if any(_is_experts(f) for f in frames) or (innermost is not None and "experts" in innermost.path.split(".")):
        return "experts"
    if innermost is not None and innermost.name == "lm_head":
        return "lm_head"
    if kind == "einsum":
        return "einsum"
    if kind == "linear":
        if innermost is not None and isinstance(innermost.module, nn.Linear):
            return "linear"
        return "linear_functional"
    if kind == "matmul" and _is_conv1d(innermost):
        return "linear"
    if any(_is_rotary(f) for f in frames):
        return "rotary"
    if kind == "matmul" and innermost is not None and _is_attention(innermost) and ordinal is not None:
        return "matmul_qk" if ordinal % 2 == 0 else "matmul_av"
    if kind in GENERIC_KEYS:
        return kind
    return UNMAPPED


# Matmul-like op names ---------------------------------------------------------------------------

_MATMUL_TOKENS = frozenset({
    "mm", "bmm", "matmul", "linear", "conv", "convolution", "conv1d", "conv2d", "conv3d",
    "conv_transpose1d", "conv_transpose2d", "conv_transpose3d", "einsum", "addmm", "baddbmm",
    "addbmm", "addmv", "mv", "dot", "vdot", "tensordot", "bilinear", "attention", "attn",
})
_MATMUL_SUBSTRINGS = ("grouped_mm", "scaled_mm", "_int_mm", "attention", "flash_attn", "conv_transpose")


def is_matmul_like(name: str) -> bool:
    """True when an op/function/module name looks like a product (matmul, conv, attention ...).

    Used to decide whether an op that ran without a formula is a *finding* (it multiplies
    matrices, so a count of 0 is wrong) rather than element-wise or data-movement work.
    ``name`` may be ``aten.mm.default``, ``aten::_grouped_mm``, ``transformers::grouped_mm_fallback``,
    ``function:torch.matmul`` or ``module:Conv2d``; ``aten::upsample_bilinear2d`` is not a product.
    """
    low = name.lower()
    tokens = set(re.split(r"[^a-z0-9]+|_", low)) | set(re.split(r"[^a-z0-9_]+", low))
    return bool(tokens & _MATMUL_TOKENS) or any(s in low for s in _MATMUL_SUBSTRINGS)
