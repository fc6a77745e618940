"""`Cost`, the op keys and the counting conventions of the analytic model, in one place.

FLOPs = 2 x MACs everywhere. Matmul-class keys are compared exactly against counters; the
element-wise class follows :data:`ELEMENTWISE_FLOPS` (a stated per-element convention, never
mixed into the matmul total). Bytes follow :data:`BYTES_CONVENTION`.
"""

from __future__ import annotations

from types import MappingProxyType
from dataclasses import dataclass, field
from typing import Mapping

__all__ = [
    "MATMUL_KEYS",
    "ELEMENTWISE_KEYS",
    "OP_CLASS",
    "ELEMENTWISE_FLOPS",
    "BYTES_CONVENTION",
    "DEFAULT_DTYPE_BYTES",
    "Cost",
    "FlopsByKey",
]

#: Matmul-class op keys (ARCHITECTURE.md): the key says how the work runs, which decides which
#: counter sees it.
MATMUL_KEYS: tuple[str, ...] = (
    "linear",             # nn.Linear modules
    "linear_functional",  # F.linear / x @ W outside nn.Linear (the MoE gate)
    "experts",            # routed experts, whatever the implementation
    "conv",               # nn.Conv2d
    "einsum",             # torch.einsum (SAM decomposed rel-pos)
    "sdpa_qk",            # QK^T inside F.scaled_dot_product_attention
    "sdpa_av",            # PV inside F.scaled_dot_product_attention
    "matmul_qk",          # eager QK^T through torch.matmul / @
    "matmul_av",          # eager PV through torch.matmul / @
    "rotary",             # a rotary embedding's inv_freq @ positions product
    "lm_head",            # the output projection
)
#: Element-wise op keys, counted under :data:`ELEMENTWISE_FLOPS`.
ELEMENTWISE_KEYS: tuple[str, ...] = (
    "norm", "activation", "softmax", "add", "mul", "interpolate", "other_elementwise",
)
#: op key -> "matmul" | "elementwise".
OP_CLASS: Mapping[str, str] = MappingProxyType(
    {**{k: "matmul" for k in MATMUL_KEYS}, **{k: "elementwise" for k in ELEMENTWISE_KEYS}}
)

#: The element-wise convention: FLOPs per element of the op's output (the one place it is set).
#: Chosen to match common hand counts (thop custom_ops / fvcore norm handles), not any kernel.
ELEMENTWISE_FLOPS: Mapping[str, int] = MappingProxyType({
    "layer_norm": 5,       # mean, subtract, variance (square + mean), normalise, affine
    "rms_norm": 4,         # square, mean, rsqrt scale, weight
    "gelu": 8,             # exact erf GELU
    "quick_gelu": 5,       # x * sigmoid(1.702 x): scale, sigmoid (3), multiply
    "silu": 4,             # x * sigmoid(x): sigmoid (3), multiply
    "softmax": 5,          # max, subtract, exp, sum, divide (per score)
    "add": 1,              # residual, bias, mask, rel-pos bias, pos-embed adds
    "mul": 1,              # attention scale (per score), SwiGLU product, routing weights
    "rotary_apply": 3,     # q*cos + rotate_half(q)*sin, per element of q and of k
    "rotary_table": 2,     # cos and sin, per (position, head_dim) element
    "rotary_freqs": 1,     # positions x inv_freq as an element-wise product, per (position, d/2)
    "interp_bicubic": 16,  # separable: 4 taps x 2 axes x 2 FLOPs per output element (antialias widening ignored)
    "interp_linear": 4,    # 2 taps x 2 FLOPs per output element
})

DEFAULT_DTYPE_BYTES = 2

#: How bytes are counted (stated once; every formula follows it).
BYTES_CONVENTION = (
    "Op-level traffic, no fusion and no cache reuse: every op reads each operand once and writes "
    "its result once. Every tensor is counted at dtype_bytes (default 2 = bf16), including the "
    "vendor's fp32 upcasts, except the v1 logits.float() copy which writes 4-byte logits. Weights "
    "are read once per module call, whatever the batch; an embedding reads only the rows it "
    "gathers; routed experts read min(n_experts, tokens*top_k) experts' weights (exact for one "
    "token, an upper bound otherwise). Fused SDPA reads q, k, v (and the float mask if any) and "
    "writes its output; eager attention materialises the scores. The KV cache append writes only "
    "the new entries (a static cache; DynamicCache's torch.cat re-copy is not counted)."
)


class FlopsByKey(dict):  # type: ignore[type-arg]
    """A read-only, picklable dict of op key -> FLOPs (the type of ``Cost.flops``)."""

    def _readonly(self, *args: object, **kwargs: object) -> None:
        raise TypeError("Cost.flops is read-only; build a new Cost instead")

    __setitem__ = __delitem__ = clear = pop = popitem = setdefault = update = _readonly  # type: ignore[assignment]
    __ior__ = _readonly  # type: ignore[assignment]

    def __reduce__(self) -> tuple[type, tuple[dict[str, int]]]:
        return (type(self), (dict(self),))


def _check_int(name: str, value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"{name}: expected a non-negative int, got {value!r}")
    return value


def _check_flops(flops: Mapping[str, int]) -> FlopsByKey:
    out: dict[str, int] = {}
    for key, value in flops.items():
        if key not in OP_CLASS:
            raise KeyError(f"unknown op key {key!r}; known keys: {', '.join(OP_CLASS)}")
        if _check_int(f"Cost.flops[{key!r}]", value):
            out[key] = value
    return FlopsByKey(sorted(out.items()))


def _sum_flops(a: Mapping[str, int], b: Mapping[str, int]) -> FlopsByKey:
    """Key-wise sum of two validated FLOP maps (no re-validation: both sides are already checked)."""
    if not b:
        return a if isinstance(a, FlopsByKey) else FlopsByKey(a)
    if not a:
        return b if isinstance(b, FlopsByKey) else FlopsByKey(b)
    out = dict(a)
    for key, value in b.items():
        out[key] = out.get(key, 0) + value
    return FlopsByKey(sorted(out.items()))


@dataclass(frozen=True)
class Cost:
    """FLOPs by op key (FLOPs = 2 x MACs) and bytes moved (:data:`BYTES_CONVENTION`).

    The constructor validates every key and value (the boundary); ``+``, :meth:`scaled` and
    :meth:`total` combine already-validated costs and skip the checks (the analytic model builds
    thousands of them per page).
    """

    flops: Mapping[str, int] = field(default_factory=dict)
    weight_bytes: int = 0
    act_read_bytes: int = 0
    act_write_bytes: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "flops", _check_flops(self.flops))
        for name in ("weight_bytes", "act_read_bytes", "act_write_bytes"):
            _check_int(f"Cost.{name}", getattr(self, name))

    @classmethod
    def _trusted(cls, flops: FlopsByKey, weight_bytes: int, act_read_bytes: int, act_write_bytes: int) -> "Cost":
        """A Cost from parts that are already valid (internal sums and scalings): no checks."""
        self = object.__new__(cls)
        setattr_ = object.__setattr__
        setattr_(self, "flops", flops)
        setattr_(self, "weight_bytes", weight_bytes)
        setattr_(self, "act_read_bytes", act_read_bytes)
        setattr_(self, "act_write_bytes", act_write_bytes)
        return self

    @property
    def matmul_flops(self) -> int:
        """FLOPs of the matmul class (2 x MACs), the exactly compared total."""
        return sum(v for k, v in self.flops.items() if OP_CLASS[k] == "matmul")

    @property
    def elementwise_flops(self) -> int:
        """FLOPs of the element-wise class under :data:`ELEMENTWISE_FLOPS`."""
        return sum(v for k, v in self.flops.items() if OP_CLASS[k] == "elementwise")

    @property
    def total_flops(self) -> int:
        """Matmul plus element-wise FLOPs."""
        return self.matmul_flops + self.elementwise_flops

    @property
    def total_bytes(self) -> int:
        """Weights read + activations read + activations written."""
        return self.weight_bytes + self.act_read_bytes + self.act_write_bytes

    @property
    def intensity(self) -> float:
        """Arithmetic intensity: total FLOPs per byte moved (0.0 when nothing moves)."""
        return self.total_flops / self.total_bytes if self.total_bytes else 0.0

    @property
    def matmul_intensity(self) -> float:
        """Matmul-class FLOPs per byte moved (0.0 when nothing moves)."""
        return self.matmul_flops / self.total_bytes if self.total_bytes else 0.0

    def as_dict(self) -> dict[str, object]:
        """JSON-ready form: flops by key, FLOPs by class, bytes and intensity."""
        return {"flops": dict(self.flops), "matmul_flops": self.matmul_flops,
                "elementwise_flops": self.elementwise_flops, "weight_bytes": self.weight_bytes,
                "act_read_bytes": self.act_read_bytes, "act_write_bytes": self.act_write_bytes,
                "total_bytes": self.total_bytes, "intensity": self.intensity}

    def by_class(self) -> dict[str, int]:
        """FLOPs summed per op class: {"matmul": ..., "elementwise": ...}."""
        return {"matmul": self.matmul_flops, "elementwise": self.elementwise_flops}

    def __add__(self, other: "Cost") -> "Cost":
        if not isinstance(other, Cost):
            return NotImplemented
        return Cost._trusted(_sum_flops(self.flops, other.flops),
                             self.weight_bytes + other.weight_bytes,
                             self.act_read_bytes + other.act_read_bytes,
                             self.act_write_bytes + other.act_write_bytes)

    def __radd__(self, other: object) -> "Cost":
        if other == 0:  # sum() starts from 0
            return self
        return NotImplemented

    def scaled(self, n: int) -> "Cost":
        """This cost repeated ``n`` times (every FLOP and byte times n)."""
        _check_int("Cost.scaled", n)
        flops = FlopsByKey((k, v * n) for k, v in self.flops.items()) if n else FlopsByKey()
        return Cost._trusted(flops, self.weight_bytes * n, self.act_read_bytes * n, self.act_write_bytes * n)

    @staticmethod
    def total(costs: "Mapping[str, Cost] | list[Cost] | tuple[Cost, ...]") -> "Cost":
        """Sum of several costs (a mapping's values or a sequence)."""
        values = list(costs.values()) if isinstance(costs, Mapping) else list(costs)
        return sum(values, Cost())
