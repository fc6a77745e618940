"""`Cost`, the op keys and the counting conventions of the analytic model, in one place.

FLOPs = 2 x MACs everywhere. Matmul-class keys are compared exactly against counters; the
element-wise class follows :data:`ELEMENTWISE_FLOPS` (a stated per-element convention, never
mixed into the matmul total). Bytes follow :data:`BYTES_CONVENTION`.
"""

from __future__ import annotations

from types import MappingProxyType
from dataclasses import dataclass, field
from typing import Any, Mapping, NamedTuple

__all__ = [
    "Traffic",
    "DATA_KEYS",
    "BYTE_KEYS",
    "UNKEYED",
    "MATMUL_KEYS",
    "ELEMENTWISE_KEYS",
    "OP_CLASS",
    "ELEMENTWISE_FLOPS",
    "BYTES_CONVENTION",
    "FUSED_CONVENTION",
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
#: Byte keys of ops that only move data (their own keys, never folded into an element-wise key).
DATA_KEYS: tuple[str, ...] = ("copy", "cast", "cat", "index", "scatter", "pad", "fill")
#: Bytes given as totals only (``Cost(weight_bytes=...)`` without ``bytes_by_key``).
UNKEYED = "unkeyed"
#: Every key bytes can be attributed to: the op keys, the data-movement keys, ``unkeyed``.
BYTE_KEYS: tuple[str, ...] = (*MATMUL_KEYS, *ELEMENTWISE_KEYS, *DATA_KEYS, UNKEYED)
_BYTE_KEY_SET = frozenset(BYTE_KEYS)
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


class Traffic(NamedTuple):
    """Bytes one key moves: weights (parameters) read, activations read, activations written."""

    weight: int = 0
    read: int = 0
    write: int = 0

    @property
    def total(self) -> int:
        """weight + read + write."""
        return self.weight + self.read + self.write

    def __add__(self, other: "Traffic") -> "Traffic":  # type: ignore[override]
        return Traffic(self.weight + other.weight, self.read + other.read, self.write + other.write)

    def times(self, n: int) -> "Traffic":
        """This traffic repeated ``n`` times."""
        return Traffic(self.weight * n, self.read * n, self.write * n)

#: How bytes are counted (stated once; every formula follows it). Two conventions, side by side.
BYTES_CONVENTION = (
    "Op-level (Cost.bytes_by_key, the totals weight_bytes / act_read_bytes / act_write_bytes): the "
    "traffic of every aten op the implementation runs on the meta device, with no fusion and no "
    "cache reuse: each op reads each input once (the bytes stored under its view: a broadcast input "
    "counts what is stored) and writes each output once, at the tensor's element size. This is what "
    "harness.measure.bytes measures, op key by op key, when the routed experts are modelled as the build "
    "runs them (experts_implementation: the loop, or batched_mm as transformers 5 runs on meta): bf16 "
    "tensors at dtype_bytes, the fp32 "
    "intermediates the implementation makes (RMSNorm internals, SDPA's math path, the MoE router "
    "and combine) at 4 bytes, int64 index and position tensors at 8, bool masks at 1. Views move "
    "nothing. Weights are bytes read from parameters (an expert-weight gather reads parameters and "
    "writes an activation copy, which the batched matmul then reads as an activation). "
    "Fused (Cost.fused_by_key): what production GPU kernels move (see FUSED_CONVENTION)."
)

#: The fused convention (what production GPU kernels move; stated once).
FUSED_CONVENTION = (
    "Fused: flash / memory-efficient SDPA reads Q, K, V (and an explicit mask) and writes O, at "
    "dtype_bytes, without materialising scores, casts or a GQA repeat; LayerNorm / RMSNorm read "
    "their input and weights once and write their output once (no fp32 intermediates, no casts); "
    "SiLU-and-mul (SwiGLU) is one kernel reading the gate and up projections and writing their "
    "product; GELU is one kernel; bias adds are GEMM epilogues; rotary is applied in one pass "
    "over q and k reading the cos/sin tables; routed experts are one grouped GEMM reading each "
    "touched expert's weights once (min(E, tokens*top_k) experts) and the routed rows; the KV "
    "cache is static (only the new entries are written); dtype casts and the SDPA math path's "
    "mask building do not happen. Window partition / unpartition, padding and layout copies stay."
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


def _sum_keyed(a: Mapping[str, Any], b: Mapping[str, Any], cls: type) -> Any:
    """Key-wise sum of two validated maps of ``cls`` (FlopsByKey: ints; BytesByKey: Traffic, which
    adds field by field); no re-validation: both sides are already checked."""
    if not b:
        return a if isinstance(a, cls) else cls(a)
    if not a:
        return b if isinstance(b, cls) else cls(b)
    out = dict(a)
    for key, value in b.items():
        old = out.get(key)
        out[key] = value if old is None else old + value
    return cls(sorted(out.items()))


class BytesByKey(FlopsByKey):
    """A read-only, picklable dict of byte key -> :class:`Traffic` (``Cost.bytes_by_key``)."""

    def __reduce__(self) -> tuple[type, tuple[dict[str, Traffic]]]:  # type: ignore[override]
        return (type(self), (dict(self),))


def _check_bytes(name: str, by_key: Mapping[str, object]) -> BytesByKey:
    out: dict[str, Traffic] = {}
    for key, value in by_key.items():
        if key not in _BYTE_KEY_SET:
            raise KeyError(f"{name}: unknown byte key {key!r}; known keys: {', '.join(BYTE_KEYS)}")
        if not isinstance(value, tuple) or len(value) != 3:
            raise ValueError(f"{name}[{key!r}]: expected Traffic(weight, read, write), got {value!r}")
        t = Traffic(*(_check_int(f"{name}[{key!r}]", v) for v in value))
        if t.total:
            out[key] = t
    return BytesByKey(sorted(out.items()))


def _totals(by_key: Mapping[str, Traffic]) -> tuple[int, int, int]:
    w = r = x = 0
    for t in by_key.values():
        w += t[0]
        r += t[1]
        x += t[2]
    return w, r, x


_EMPTY_BYTES = BytesByKey()


@dataclass(frozen=True)
class Cost:
    """FLOPs by op key (FLOPs = 2 x MACs) and bytes moved by key under two conventions.

    ``bytes_by_key`` (op-level, :data:`BYTES_CONVENTION`) and ``fused_by_key`` (production
    kernels, :data:`FUSED_CONVENTION`) map byte keys (:data:`BYTE_KEYS`) to
    :class:`Traffic`; ``weight_bytes`` / ``act_read_bytes`` / ``act_write_bytes`` are the op-level
    totals. Built from totals alone (the old form), the bytes are keyed ``unkeyed``; without
    ``fused_by_key`` the fused traffic equals the op-level one.

    The constructor validates every key and value (the boundary); ``+``, :meth:`scaled` and
    :meth:`total` combine already-validated costs and skip the checks (the analytic model builds
    thousands of them per page).
    """

    flops: Mapping[str, int] = field(default_factory=dict)
    weight_bytes: int = 0
    act_read_bytes: int = 0
    act_write_bytes: int = 0
    bytes_by_key: Mapping[str, Traffic] = field(default_factory=dict)
    fused_by_key: Mapping[str, Traffic] | None = None

    def __post_init__(self) -> None:
        setattr_ = object.__setattr__
        setattr_(self, "flops", _check_flops(self.flops))
        totals = tuple(_check_int(f"Cost.{name}", getattr(self, name))
                       for name in ("weight_bytes", "act_read_bytes", "act_write_bytes"))
        by_key = _check_bytes("Cost.bytes_by_key", self.bytes_by_key)
        if not by_key and any(totals):
            by_key = BytesByKey({UNKEYED: Traffic(*totals)})
        elif by_key:
            keyed = _totals(by_key)
            if any(totals) and totals != keyed:
                raise ValueError(f"Cost: byte totals {totals} disagree with bytes_by_key, which sums to {keyed}; "
                                 "give one or the other")
            totals = keyed
        setattr_(self, "bytes_by_key", by_key)
        setattr_(self, "weight_bytes", totals[0])
        setattr_(self, "act_read_bytes", totals[1])
        setattr_(self, "act_write_bytes", totals[2])
        fused = by_key if self.fused_by_key is None else _check_bytes("Cost.fused_by_key", self.fused_by_key)
        setattr_(self, "fused_by_key", fused)

    @classmethod
    def _trusted(cls, flops: FlopsByKey, bytes_by_key: BytesByKey, fused_by_key: BytesByKey | None = None,
                 totals: tuple[int, int, int] | None = None) -> "Cost":
        """A Cost from parts that are already valid (internal sums and scalings): no checks."""
        self = object.__new__(cls)
        setattr_ = object.__setattr__
        w, r, x = _totals(bytes_by_key) if totals is None else totals
        setattr_(self, "flops", flops)
        setattr_(self, "weight_bytes", w)
        setattr_(self, "act_read_bytes", r)
        setattr_(self, "act_write_bytes", x)
        setattr_(self, "bytes_by_key", bytes_by_key)
        setattr_(self, "fused_by_key", bytes_by_key if fused_by_key is None else fused_by_key)
        return self

    @property
    def fused_bytes(self) -> int:
        """Total bytes under the fused convention (:data:`FUSED_CONVENTION`)."""
        return sum(t.total for t in self.fused_by_key.values())  # type: ignore[union-attr]

    def key_bytes(self, key: str, *, fused: bool = False) -> int:
        """Bytes (weight + read + write) of one byte key, op-level or fused (0 when absent)."""
        t = (self.fused_by_key if fused else self.bytes_by_key).get(key)  # type: ignore[union-attr]
        return t.total if t is not None else 0

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
                "total_bytes": self.total_bytes, "intensity": self.intensity,
                "bytes_by_key": {k: list(v) for k, v in self.bytes_by_key.items()},
                "fused_bytes": self.fused_bytes,
                "fused_by_key": {k: list(v) for k, v in self.fused_by_key.items()}}  # type: ignore[union-attr]

    def by_class(self) -> dict[str, int]:
        """FLOPs summed per op class: {"matmul": ..., "elementwise": ...}."""
        return {"matmul": self.matmul_flops, "elementwise": self.elementwise_flops}

    def __add__(self, other: "Cost") -> "Cost":
        if not isinstance(other, Cost):
            return NotImplemented
        by_key = _sum_keyed(self.bytes_by_key, other.bytes_by_key, BytesByKey)
        same = self.fused_by_key is self.bytes_by_key and other.fused_by_key is other.bytes_by_key
        fused = None if same else _sum_keyed(self.fused_by_key, other.fused_by_key, BytesByKey)  # type: ignore[arg-type]
        return Cost._trusted(_sum_keyed(self.flops, other.flops, FlopsByKey), by_key, fused,
                             (self.weight_bytes + other.weight_bytes, self.act_read_bytes + other.act_read_bytes,
                              self.act_write_bytes + other.act_write_bytes))

    def __radd__(self, other: object) -> "Cost":
        if other == 0:  # sum() starts from 0
            return self
        return NotImplemented

    def scaled(self, n: int) -> "Cost":
        """This cost repeated ``n`` times (every FLOP and byte times n)."""
        _check_int("Cost.scaled", n)
        if not n:
            return Cost._trusted(FlopsByKey(), _EMPTY_BYTES)
        flops = FlopsByKey((k, v * n) for k, v in self.flops.items())
        by_key = BytesByKey((k, Traffic(t[0] * n, t[1] * n, t[2] * n)) for k, t in self.bytes_by_key.items())
        fused = None
        if self.fused_by_key is not self.bytes_by_key:
            fused = BytesByKey((k, Traffic(t[0] * n, t[1] * n, t[2] * n))
                               for k, t in self.fused_by_key.items())  # type: ignore[union-attr]
        return Cost._trusted(flops, by_key, fused,
                             (self.weight_bytes * n, self.act_read_bytes * n, self.act_write_bytes * n))

    @staticmethod
    def combine(parts: "list[tuple[Cost, int]]") -> "Cost":
        """sum(cost.scaled(n) for cost, n in parts), in one pass (no intermediate Costs)."""
        flops: dict[str, int] = {}
        by_key: dict[str, list[int]] = {}
        fused: dict[str, list[int]] = {}
        distinct = False
        for cost, n in parts:
            for k, v in cost.flops.items():
                flops[k] = flops.get(k, 0) + v * n
            for target, source in ((by_key, cost.bytes_by_key), (fused, cost.fused_by_key)):
                for k, t in source.items():  # type: ignore[union-attr]
                    acc = target.get(k)
                    if acc is None:
                        target[k] = [t[0] * n, t[1] * n, t[2] * n]
                    else:
                        acc[0] += t[0] * n
                        acc[1] += t[1] * n
                        acc[2] += t[2] * n
            distinct = distinct or cost.fused_by_key is not cost.bytes_by_key
        keyed = BytesByKey(sorted((k, Traffic(*v)) for k, v in by_key.items() if any(v)))
        fused_keyed = BytesByKey(sorted((k, Traffic(*v)) for k, v in fused.items() if any(v))) if distinct else None
        return Cost._trusted(FlopsByKey(sorted((k, v) for k, v in flops.items() if v)), keyed, fused_keyed)

    @staticmethod
    def total(costs: "Mapping[str, Cost] | list[Cost] | tuple[Cost, ...]") -> "Cost":
        """Sum of several costs (a mapping's values or a sequence)."""
        values = list(costs.values()) if isinstance(costs, Mapping) else list(costs)
        return sum(values, Cost())
