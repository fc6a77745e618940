"""The formula registry: one pure function of sizes per building block, each returning a `Cost`.

Formulas are shape arithmetic only (no tensors). FLOPs = 2 x MACs for the matmul class; the
element-wise class follows :data:`harness.analytic.cost.ELEMENTWISE_FLOPS`; bytes follow
:data:`harness.analytic.cost.BYTES_CONVENTION` at ``dtype_bytes`` per element.
"""

from __future__ import annotations

import difflib
from typing import Callable, Literal, TypeVar

from harness.analytic.cost import DEFAULT_DTYPE_BYTES, ELEMENTWISE_FLOPS as EW, Cost, FlopsByKey

__all__ = [
    "FORMULAS",
    "register_formula",
    "get_formula",
    "conv_output_size",
    "padded_grid",
    "linear",
    "conv2d",
    "attention",
    "window_partition",
    "rel_pos_decomposed",
    "mlp",
    "swiglu_mlp",
    "moe",
    "layer_norm",
    "rms_norm",
    "activation",
    "softmax",
    "add",
    "mul",
    "embedding",
    "lm_head",
    "rotary_matmul",
    "rotary_elementwise",
    "rotary_apply",
    "interpolate",
]

F = TypeVar("F", bound=Callable[..., Cost])

#: name -> formula. Filled by :func:`register_formula`; read through :func:`get_formula`.
FORMULAS: dict[str, Callable[..., Cost]] = {}


def _qualname(fn: Callable[..., object]) -> str:
    return f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', repr(fn))}"


def register_formula(name: str) -> Callable[[F], F]:
    """Register a formula under ``name``; a second registration of the name is a RuntimeError."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"register_formula: expected a non-empty name, got {name!r}")

    def decorator(fn: F) -> F:
        existing = FORMULAS.get(name)
        if existing is not None:
            raise RuntimeError(
                f"duplicate formula registration for {name!r}: {_qualname(existing)} and {_qualname(fn)}"
            )
        FORMULAS[name] = fn
        return fn

    return decorator


def get_formula(name: str) -> Callable[..., Cost]:
    """The formula registered as ``name``; unknown names raise KeyError with suggestions."""
    try:
        return FORMULAS[name]
    except KeyError:
        close = difflib.get_close_matches(name, FORMULAS, n=3)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise KeyError(f"Unknown formula {name!r}.{hint}\nAvailable: {', '.join(sorted(FORMULAS))}") from None


def _make(flops: dict[str, int] | None = None, weight_bytes: int = 0, act_read_bytes: int = 0,
          act_write_bytes: int = 0) -> Cost:
    """A Cost from a formula's own arithmetic (literal keys, validated sizes): not re-validated."""
    items = sorted((k, v) for k, v in flops.items() if v) if flops else ()
    if min(weight_bytes, act_read_bytes, act_write_bytes, *(v for _, v in items)) < 0:
        raise ValueError(f"negative cost from a formula (check its sizes and dtype_bytes): flops={flops}, "
                         f"bytes=({weight_bytes}, {act_read_bytes}, {act_write_bytes})")
    return Cost._trusted(FlopsByKey(items), weight_bytes, act_read_bytes, act_write_bytes)


def _pos(name: str, value: int, *, zero: bool = False) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < (0 if zero else 1):
        kind = "non-negative" if zero else "positive"
        raise ValueError(f"{name}: expected a {kind} int, got {value!r}")
    return value


# --------------------------------------------------------------------------------------------
# shape helpers (no Cost)


def conv_output_size(size: int, kernel: int, stride: int = 1, padding: int = 0) -> int:
    """Output side of a convolution: floor((size + 2*padding - kernel) / stride) + 1."""
    return (size + 2 * padding - kernel) // stride + 1


def padded_grid(grid: int, window: int) -> tuple[int, int]:
    """(padded side gp = window*ceil(grid/window), windows per image (gp/window)^2)."""
    gp = -(-grid // window) * window
    return gp, (gp // window) ** 2


# --------------------------------------------------------------------------------------------
# matmul-class blocks

LinearKey = Literal["linear", "linear_functional", "lm_head", "experts"]


@register_formula("linear")
def linear(tokens: int, in_features: int, out_features: int, *, bias: bool = False,
           key: LinearKey = "linear", dtype_bytes: int = DEFAULT_DTYPE_BYTES) -> Cost:
    """y = x W^T (+ b) over ``tokens`` rows: 2*tokens*in*out FLOPs under ``key``; bias 1 add/elem."""
    _pos("tokens", tokens, zero=True)
    _pos("in_features", in_features)
    _pos("out_features", out_features)
    if key not in ("linear", "linear_functional", "lm_head", "experts"):
        raise ValueError(f"linear: key must be linear, linear_functional, lm_head or experts, got {key!r}")
    flops = {key: 2 * tokens * in_features * out_features}
    if bias:
        flops["add"] = EW["add"] * tokens * out_features
    return _make(
        flops=flops,
        weight_bytes=(in_features * out_features + (out_features if bias else 0)) * dtype_bytes,
        act_read_bytes=tokens * in_features * dtype_bytes,
        act_write_bytes=tokens * out_features * dtype_bytes,
    )


@register_formula("conv2d")
def conv2d(batch: int, in_channels: int, out_channels: int, height: int, width: int, *, kernel: int,
           stride: int = 1, padding: int = 0, bias: bool = False,
           dtype_bytes: int = DEFAULT_DTYPE_BYTES) -> Cost:
    """nn.Conv2d (groups=1): 2*B*Cout*Ho*Wo*Cin*k*k FLOPs; bias 1 add/elem."""
    _pos("batch", batch, zero=True)
    out_h = conv_output_size(height, kernel, stride, padding)
    out_w = conv_output_size(width, kernel, stride, padding)
    out_elems = batch * out_channels * out_h * out_w
    flops = {"conv": 2 * out_elems * in_channels * kernel * kernel}
    if bias:
        flops["add"] = EW["add"] * out_elems
    return _make(
        flops=flops,
        weight_bytes=(out_channels * in_channels * kernel * kernel + (out_channels if bias else 0)) * dtype_bytes,
        act_read_bytes=batch * in_channels * height * width * dtype_bytes,
        act_write_bytes=out_elems * dtype_bytes,
    )


@register_formula("attention")
def attention(batch: int, heads: int, q_len: int, kv_len: int, head_dim: int, *,
              impl: Literal["sdpa", "matmul"], kv_heads: int | None = None, v_head_dim: int | None = None,
              mask_heads: int = 0, dtype_bytes: int = DEFAULT_DTYPE_BYTES) -> Cost:
    """Dense attention core: QK^T and AV, 2*B*H*Lq*Lk*d FLOPs each, under sdpa_* or matmul_*.

    Element-wise: scale 1 mul/score, mask 1 add/score when ``mask_heads`` > 0 (the mask has
    ``mask_heads`` heads: 1 = broadcast, H = per-head float bias), softmax 5/score. No causal
    saving: every counter and kernel formula counts the full Lq x Lk product.
    """
    if impl not in ("sdpa", "matmul"):
        raise ValueError(f"attention: impl must be 'sdpa' or 'matmul', got {impl!r}")
    _pos("batch", batch, zero=True)
    kv_heads = heads if kv_heads is None else kv_heads
    v_head_dim = head_dim if v_head_dim is None else v_head_dim
    scores = batch * heads * q_len * kv_len
    prefix = "sdpa" if impl == "sdpa" else "matmul"
    flops = {
        f"{prefix}_qk": 2 * scores * head_dim,
        f"{prefix}_av": 2 * scores * v_head_dim,
        "mul": EW["mul"] * scores,
        "softmax": EW["softmax"] * scores,
    }
    if mask_heads:
        flops["add"] = EW["add"] * scores
    q_b = batch * heads * q_len * head_dim
    k_b = batch * kv_heads * kv_len * head_dim
    v_b = batch * kv_heads * kv_len * v_head_dim
    mask_b = batch * mask_heads * q_len * kv_len
    out_b = batch * heads * q_len * v_head_dim
    if impl == "sdpa":
        read, write = q_b + k_b + v_b + mask_b, out_b
    else:
        read = q_b + k_b + scores + (scores + mask_b if mask_heads else 0) + scores + scores + v_b
        write = scores + scores + (scores if mask_heads else 0) + scores + out_b
        if kv_heads != heads:  # repeat_kv materialises the expanded K and V
            read += k_b + v_b
            write += (k_b + v_b) * (heads // kv_heads)
    return _make(flops=flops, act_read_bytes=read * dtype_bytes, act_write_bytes=write * dtype_bytes)


@register_formula("rel_pos_decomposed")
def rel_pos_decomposed(batch_heads: int, q_h: int, q_w: int, head_dim: int, *, table_len: int,
                       dtype_bytes: int = DEFAULT_DTYPE_BYTES, always_interpolate: bool = False) -> Cost:
    """SAM decomposed rel-pos: einsum bhwc,hkc->bhwk and bhwc,wkc->bhwk (2*BH*h*w*k*c each), bias add.

    ``batch_heads`` = batch x windows x heads. The tables (``table_len`` rows) are linearly
    interpolated to 2*max(h, w)-1 rows when the length differs (or always, ``always_interpolate``:
    transformers' OCR-2 calls F.interpolate unconditionally); 4 FLOPs per output element.
    """
    _pos("batch_heads", batch_heads, zero=True)
    k_h, k_w = q_h, q_w
    tokens = q_h * q_w
    flops = {
        "einsum": 2 * batch_heads * q_h * q_w * k_h * head_dim + 2 * batch_heads * q_h * q_w * k_w * head_dim,
        "add": EW["add"] * batch_heads * tokens * k_h * k_w,
    }
    read = 2 * batch_heads * tokens * head_dim + (q_h * k_h + q_w * k_w) * head_dim
    write = batch_heads * tokens * (k_h + k_w)
    # the broadcast add reads both factors and writes the dense (T x T) bias
    read += batch_heads * tokens * (k_h + k_w)
    write += batch_heads * tokens * k_h * k_w
    interp = 0
    for side in (q_h, q_w):
        needed = 2 * side - 1
        if always_interpolate or needed != table_len:
            interp += EW["interp_linear"] * needed * head_dim
            read += table_len * head_dim
            write += needed * head_dim
    if interp:
        flops["interpolate"] = interp
    # get_rel_pos gathers an (q, k, c) table per axis
    read += (q_h * k_h + q_w * k_w) * head_dim
    write += (q_h * k_h + q_w * k_w) * head_dim
    return _make(flops=flops, weight_bytes=2 * table_len * head_dim * dtype_bytes,
                act_read_bytes=read * dtype_bytes, act_write_bytes=write * dtype_bytes)


@register_formula("mlp")
def mlp(tokens: int, dim: int, hidden: int, *, activation_kind: Literal["gelu", "quick_gelu", "silu"],
        bias: bool = True, dtype_bytes: int = DEFAULT_DTYPE_BYTES) -> Cost:
    """Two-layer MLP: Linear(dim->hidden), activation, Linear(hidden->dim): 4*tokens*dim*hidden."""
    return (linear(tokens, dim, hidden, bias=bias, dtype_bytes=dtype_bytes)
            + activation(tokens * hidden, activation_kind, dtype_bytes=dtype_bytes)
            + linear(tokens, hidden, dim, bias=bias, dtype_bytes=dtype_bytes))


@register_formula("swiglu_mlp")
def swiglu_mlp(tokens: int, dim: int, hidden: int, *, key: Literal["linear", "experts"] = "linear",
               dtype_bytes: int = DEFAULT_DTYPE_BYTES) -> Cost:
    """SwiGLU: down(silu(gate(x)) * up(x)), no bias: 6*tokens*dim*hidden FLOPs under ``key``."""
    return (linear(tokens, dim, hidden, key=key, dtype_bytes=dtype_bytes).scaled(2)
            + activation(tokens * hidden, "silu", dtype_bytes=dtype_bytes)
            + mul(tokens * hidden, dtype_bytes=dtype_bytes)
            + linear(tokens, hidden, dim, key=key, dtype_bytes=dtype_bytes))


@register_formula("moe")
def moe(tokens: int, dim: int, *, n_experts: int, top_k: int, expert_hidden: int, shared_hidden: int,
        dtype_bytes: int = DEFAULT_DTYPE_BYTES) -> Cost:
    """DeepSeek MoE: F.linear gate (2*T*dim*E), softmax over E, T*k routed SwiGLU pairs, shared SwiGLU.

    Routing-independent: every token reaches exactly ``top_k`` experts, so the routed work is
    6*(T*k)*dim*hidden whatever the routing. Combine: k muls and k-1 adds per token x dim, plus
    the shared-expert add. Routed weight bytes: min(E, T*k) experts.
    """
    _pos("tokens", tokens, zero=True)
    pairs = tokens * top_k
    gate = linear(tokens, dim, n_experts, key="linear_functional", dtype_bytes=dtype_bytes)
    routed = swiglu_mlp(pairs, dim, expert_hidden, key="experts", dtype_bytes=dtype_bytes)
    touched = min(n_experts, pairs)
    routed = _make(flops=routed.flops, weight_bytes=touched * 3 * dim * expert_hidden * dtype_bytes,
                  act_read_bytes=routed.act_read_bytes, act_write_bytes=routed.act_write_bytes)
    combine = mul(pairs * dim, dtype_bytes=dtype_bytes) + add(tokens * (top_k - 1) * dim, dtype_bytes=dtype_bytes)
    shared = swiglu_mlp(tokens, dim, shared_hidden, key="linear", dtype_bytes=dtype_bytes)
    # token gather into expert order (read T*dim... written T*k*dim) is data movement only
    gather = _make(act_read_bytes=pairs * dim * dtype_bytes, act_write_bytes=pairs * dim * dtype_bytes)
    return (gate + softmax(tokens * n_experts, dtype_bytes=dtype_bytes) + gather + routed + combine + shared
            + add(tokens * dim, dtype_bytes=dtype_bytes))


@register_formula("lm_head")
def lm_head(positions: int, dim: int, vocab: int, *, fp32_logits_copy: bool = False,
            dtype_bytes: int = DEFAULT_DTYPE_BYTES) -> Cost:
    """lm_head Linear(dim->vocab) on ``positions`` rows: 2*positions*dim*vocab FLOPs (key lm_head).

    ``fp32_logits_copy``: the v1 forward's ``logits.float()`` (reads the logits, writes 4-byte ones).
    """
    cost = linear(positions, dim, vocab, key="lm_head", dtype_bytes=dtype_bytes)
    if fp32_logits_copy:
        cost = cost + _make(act_read_bytes=positions * vocab * dtype_bytes, act_write_bytes=positions * vocab * 4)
    return cost


@register_formula("rotary_matmul")
def rotary_matmul(batch: int, positions: int, head_dim: int, *, dtype_bytes: int = DEFAULT_DTYPE_BYTES) -> Cost:
    """Llama-4.46 rotary table: (B, d/2, 1) @ (B, 1, P) = 2*B*(d/2)*P FLOPs (key rotary); cos, sin."""
    half = head_dim // 2
    return _make(
        flops={"rotary": 2 * batch * half * positions,
               "other_elementwise": EW["rotary_table"] * batch * positions * head_dim},
        act_read_bytes=(batch * half + batch * positions + 2 * batch * positions * head_dim) * dtype_bytes,
        act_write_bytes=(batch * half * positions + batch * positions * head_dim * 3) * dtype_bytes,
    )


@register_formula("rotary_elementwise")
def rotary_elementwise(batch: int, positions: int, head_dim: int, *,
                       dtype_bytes: int = DEFAULT_DTYPE_BYTES) -> Cost:
    """transformers-5 rotary table: positions[..., None] * inv_freq (element-wise), cat, cos, sin."""
    half = head_dim // 2
    return _make(
        flops={"other_elementwise": EW["rotary_freqs"] * batch * positions * half
               + EW["rotary_table"] * batch * positions * head_dim},
        act_read_bytes=(batch * positions + half + 2 * batch * positions * head_dim) * dtype_bytes,
        act_write_bytes=(batch * positions * half + 3 * batch * positions * head_dim) * dtype_bytes,
    )


@register_formula("rotary_apply")
def rotary_apply(batch: int, heads: int, kv_heads: int, positions: int, head_dim: int, *,
                 dtype_bytes: int = DEFAULT_DTYPE_BYTES) -> Cost:
    """apply_rotary_pos_emb on q and k: 3 FLOPs per element (2 mul, 1 add), rotate_half copies."""
    elems = batch * (heads + kv_heads) * positions * head_dim
    return _make(flops={"other_elementwise": EW["rotary_apply"] * elems},
                act_read_bytes=(2 * elems + 2 * batch * positions * head_dim) * dtype_bytes,
                act_write_bytes=2 * elems * dtype_bytes)


# --------------------------------------------------------------------------------------------
# element-wise and data-movement blocks


@register_formula("window_partition")
def window_partition(batch: int, grid: int, window: int, dim: int, *,
                     dtype_bytes: int = DEFAULT_DTYPE_BYTES) -> Cost:
    """SAM window partition (F.pad to gp=14*ceil(g/14), permute copy) and unpartition (copy, crop): bytes only."""
    gp, _ = padded_grid(grid, window)
    g2, gp2 = batch * grid * grid * dim, batch * gp * gp * dim
    read = g2 + gp2 + gp2 + (gp2 if gp != grid else 0)
    write = (gp2 if gp != grid else 0) + gp2 + gp2 + (g2 if gp != grid else 0)
    return _make(act_read_bytes=read * dtype_bytes, act_write_bytes=write * dtype_bytes)


def _ew(key: str, per_elem: int, elements: int, reads: int, dtype_bytes: int, weights: int = 0) -> Cost:
    _pos("elements", elements, zero=True)
    return _make(flops={key: per_elem * elements}, weight_bytes=weights * dtype_bytes,
                act_read_bytes=reads * elements * dtype_bytes, act_write_bytes=elements * dtype_bytes)


@register_formula("layer_norm")
def layer_norm(elements: int, dim: int, *, dtype_bytes: int = DEFAULT_DTYPE_BYTES) -> Cost:
    """LayerNorm (nn.LayerNorm or SAM's hand-written LayerNorm2d): 5 FLOPs/elem, weight+bias."""
    return _ew("norm", EW["layer_norm"], elements, 1, dtype_bytes, weights=2 * dim)


@register_formula("rms_norm")
def rms_norm(elements: int, dim: int, *, dtype_bytes: int = DEFAULT_DTYPE_BYTES) -> Cost:
    """RMSNorm: 4 FLOPs/elem, weight."""
    return _ew("norm", EW["rms_norm"], elements, 1, dtype_bytes, weights=dim)


@register_formula("activation")
def activation(elements: int, kind: Literal["gelu", "quick_gelu", "silu"], *,
               dtype_bytes: int = DEFAULT_DTYPE_BYTES) -> Cost:
    """Activation per element: gelu 8, quick_gelu 5, silu 4 FLOPs."""
    if kind not in ("gelu", "quick_gelu", "silu"):
        raise ValueError(f"activation: kind must be gelu, quick_gelu or silu, got {kind!r}")
    return _ew("activation", EW[kind], elements, 1, dtype_bytes)


@register_formula("softmax")
def softmax(elements: int, *, dtype_bytes: int = DEFAULT_DTYPE_BYTES) -> Cost:
    """Softmax: 5 FLOPs per element."""
    return _ew("softmax", EW["softmax"], elements, 1, dtype_bytes)


@register_formula("add")
def add(elements: int, *, dtype_bytes: int = DEFAULT_DTYPE_BYTES) -> Cost:
    """Element-wise add of two tensors: 1 FLOP per output element, reads two, writes one."""
    return _ew("add", EW["add"], elements, 2, dtype_bytes)


@register_formula("mul")
def mul(elements: int, *, dtype_bytes: int = DEFAULT_DTYPE_BYTES) -> Cost:
    """Element-wise multiply of two tensors: 1 FLOP per output element, reads two, writes one."""
    return _ew("mul", EW["mul"], elements, 2, dtype_bytes)


@register_formula("embedding")
def embedding(tokens: int, dim: int, *, dtype_bytes: int = DEFAULT_DTYPE_BYTES) -> Cost:
    """nn.Embedding lookup: no FLOPs; reads the ``tokens`` gathered rows, writes them."""
    _pos("tokens", tokens, zero=True)
    return _make(weight_bytes=tokens * dim * dtype_bytes, act_write_bytes=tokens * dim * dtype_bytes)


@register_formula("interpolate")
def interpolate(channels: int, out_h: int, out_w: int, *, in_h: int, in_w: int,
                mode: Literal["bicubic", "linear"], dtype_bytes: int = DEFAULT_DTYPE_BYTES) -> Cost:
    """F.interpolate: 16 FLOPs per output element (bicubic, separable) or 4 (linear, 1-D)."""
    if mode not in ("bicubic", "linear"):
        raise ValueError(f"interpolate: mode must be 'bicubic' or 'linear', got {mode!r}")
    per = EW["interp_bicubic"] if mode == "bicubic" else EW["interp_linear"]
    out = channels * out_h * out_w
    return _make(flops={"interpolate": per * out}, act_read_bytes=channels * in_h * in_w * dtype_bytes,
                act_write_bytes=out * dtype_bytes)
