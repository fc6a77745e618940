"""The building-block formulas: one pure function of sizes per block, each returning a `Cost`;
the stage models (:mod:`harness.analytic.stages`) compose them by direct import.

Formulas are shape arithmetic only (no tensors). FLOPs = 2 x MACs for the matmul class; the
element-wise class follows :data:`harness.analytic.cost.ELEMENTWISE_FLOPS`; bytes follow
:data:`harness.analytic.cost.BYTES_CONVENTION` at ``dtype_bytes`` per element.
"""

from __future__ import annotations

from typing import Literal

from harness.analytic.cost import DEFAULT_DTYPE_BYTES, ELEMENTWISE_FLOPS as EW, BytesByKey, Cost, FlopsByKey, Traffic

__all__ = [
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

#: Element sizes the implementations use besides ``dtype_bytes`` (bytes per element).
F32, I64, BOOL = 4, 8, 1


def _make(flops: dict[str, int] | None = None, by_key: dict[str, Traffic] | None = None,
          fused: dict[str, Traffic] | None = None) -> Cost:
    """A Cost from a formula's own arithmetic (literal keys, validated sizes): not re-validated.

    ``by_key``: op-level traffic by byte key; ``fused``: the fused convention's (None = the same).
    """
    items = sorted((k, v) for k, v in flops.items() if v) if flops else ()
    keyed = _keyed(by_key)
    fused_keyed = None if fused is None else _keyed(fused)
    return Cost._trusted(FlopsByKey(items), keyed, fused_keyed)


def _keyed(by_key: dict[str, Traffic] | None) -> BytesByKey:
    if not by_key:
        return BytesByKey()
    out = []
    for key, t in sorted(by_key.items()):
        if min(t) < 0:
            raise ValueError(f"negative bytes from a formula under {key!r}: {t} (check its sizes and dtype_bytes)")
        if t.total:
            out.append((key, t))
    return BytesByKey(out)


def _acc(by_key: dict[str, Traffic], key: str, weight: int = 0, read: int = 0, write: int = 0) -> None:
    """Add (weight, read, write) bytes under ``key`` in a formula's working dict."""
    old = by_key.get(key)
    by_key[key] = Traffic(weight, read, write) if old is None else Traffic(old[0] + weight, old[1] + read,
                                                                          old[2] + write)


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


def linear(tokens: int, in_features: int, out_features: int, *, bias: bool = False,
           key: LinearKey = "linear", dtype_bytes: int = DEFAULT_DTYPE_BYTES) -> Cost:
    """y = x W^T (+ b) over ``tokens`` rows: 2*tokens*in*out FLOPs under ``key``; bias 1 add/elem.

    Bytes (one mm/addmm, both conventions): weights and bias read, x read, y written, under ``key``.
    """
    _pos("tokens", tokens, zero=True)
    _pos("in_features", in_features)
    _pos("out_features", out_features)
    if key not in ("linear", "linear_functional", "lm_head", "experts"):
        raise ValueError(f"linear: key must be linear, linear_functional, lm_head or experts, got {key!r}")
    flops = {key: 2 * tokens * in_features * out_features}
    if bias:
        flops["add"] = EW["add"] * tokens * out_features
    b = dtype_bytes
    return _make(flops, {key: Traffic((in_features * out_features + (out_features if bias else 0)) * b,
                                      tokens * in_features * b, tokens * out_features * b)})


def conv2d(batch: int, in_channels: int, out_channels: int, height: int, width: int, *, kernel: int,
           stride: int = 1, padding: int = 0, bias: bool = False,
           dtype_bytes: int = DEFAULT_DTYPE_BYTES) -> Cost:
    """nn.Conv2d (groups=1): 2*B*Cout*Ho*Wo*Cin*k*k FLOPs; bias 1 add/elem. Bytes: one convolution op."""
    _pos("batch", batch, zero=True)
    out_h = conv_output_size(height, kernel, stride, padding)
    out_w = conv_output_size(width, kernel, stride, padding)
    out_elems = batch * out_channels * out_h * out_w
    flops = {"conv": 2 * out_elems * in_channels * kernel * kernel}
    if bias:
        flops["add"] = EW["add"] * out_elems
    b = dtype_bytes
    return _make(flops, {"conv": Traffic((out_channels * in_channels * kernel * kernel
                                          + (out_channels if bias else 0)) * b,
                                         batch * in_channels * height * width * b, out_elems * b)})


MaskKind = Literal["none", "float", "bool", "causal"]


def attention(batch: int, heads: int, q_len: int, kv_len: int, head_dim: int, *,
              impl: Literal["sdpa", "matmul"], kv_heads: int | None = None, v_head_dim: int | None = None,
              mask_heads: int = 0, mask: MaskKind | None = None, strided: str = "",
              dtype_bytes: int = DEFAULT_DTYPE_BYTES) -> Cost:
    """Dense attention core: QK^T and AV, 2*B*H*Lq*Lk*d FLOPs each, under sdpa_* or matmul_*.

    Element-wise FLOPs: scale 1 mul/score, mask 1 add/score when ``mask_heads`` > 0 (the mask has
    ``mask_heads`` heads: 1 = broadcast, H = per-head float bias), softmax 5/score. No causal
    saving: every counter and kernel formula counts the full Lq x Lk product.

    Bytes, op-level. ``sdpa``: torch's math decomposition (what runs on meta and without a fused
    kernel): q, k, v are cast to fp32 when ``dtype_bytes`` < 4, q and k^T are each scaled by
    sqrt(scale), QK^T, the mask added (``mask``: "float" reads the stored bias of ``mask_heads``
    heads; "bool" first turns a 1-head bool mask into a dtype mask with ``where``; "causal" builds
    the Lq x Lk fp32 mask from ``ones``/``tril``/``where``), softmax, the probabilities cast back
    (and still read in fp32 by the AV product), AV, the output cast back. A GQA K/V is repeated to
    the query heads first (a copy); ``strided`` names which of q, k, v arrive as views whose batch
    and head dims do not merge (batch > 1): the math path copies each (in fp32) before its product.
    ``matmul``: eager torch.matmul attention at dtype_bytes (scores
    materialised, scale, mask add, softmax). Fused: Q, K, V (and an explicit mask) read, O written.
    """
    if impl not in ("sdpa", "matmul"):
        raise ValueError(f"attention: impl must be 'sdpa' or 'matmul', got {impl!r}")
    _pos("batch", batch, zero=True)
    kv_heads = heads if kv_heads is None else kv_heads
    v_head_dim = head_dim if v_head_dim is None else v_head_dim
    if mask is None:
        mask = "float" if mask_heads else "none"
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
    b = dtype_bytes
    q_e = batch * heads * q_len * head_dim
    k_e = batch * kv_heads * kv_len * head_dim
    v_e = batch * kv_heads * kv_len * v_head_dim
    ke_e = batch * heads * kv_len * head_dim          # K and V at the query heads
    ve_e = batch * heads * kv_len * v_head_dim
    out_e = batch * heads * q_len * v_head_dim
    plane = q_len * kv_len
    mask_e = batch * mask_heads * plane if mask in ("float", "bool") else 0
    t: dict[str, Traffic] = {}
    if kv_heads != heads:  # repeat_kv / expand + reshape materialises K and V at the query heads
        _acc(t, "copy", 0, (k_e + v_e) * b, (ke_e + ve_e) * b)
    if impl == "sdpa":
        c = max(b, F32)  # the math path computes reduced precision in fp32
        if c != b:
            _acc(t, "cast", 0, (q_e + ke_e + ve_e) * b, (q_e + ke_e + ve_e) * c)  # q, k, v up
            _acc(t, "cast", 0, scores * c, scores * b)                           # probabilities down
            _acc(t, "cast", 0, out_e * c, out_e * b)                             # output down
        _acc(t, "mul", 0, (q_e + ke_e) * c, (q_e + ke_e) * c)                    # q and k^T by sqrt(scale)
        copied = sum(n for name, n in (("q", q_e), ("k", ke_e), ("v", ve_e)) if name in strided)
        if copied:
            _acc(t, "copy", 0, copied * c, copied * c)
        _acc(t, "sdpa_qk", 0, (q_e + ke_e) * c, scores * c)
        if mask == "bool":
            _acc(t, "fill", 0, 0, 2 * b)
            _acc(t, "other_elementwise", 0, mask_e // mask_heads * BOOL + 2 * b, mask_e * b)
        if mask == "causal":
            _acc(t, "fill", 0, 0, plane * BOOL + 2 * c)
            _acc(t, "other_elementwise", 0, plane * BOOL + plane * BOOL + 2 * c, plane * BOOL + plane * c)
            _acc(t, "add", 0, scores * c + plane * c, scores * c)
        elif mask_e:
            _acc(t, "add", 0, scores * c + mask_e * b, scores * c)
        _acc(t, "softmax", 0, scores * c, scores * c)
        _acc(t, "sdpa_av", 0, (scores + ve_e) * c, out_e * c)
    else:  # eager: scores in dtype, softmax(dtype=float32) and back
        c = max(b, F32)
        _acc(t, "matmul_qk", 0, (q_e + ke_e) * b, scores * b)
        _acc(t, "mul", 0, scores * b, scores * b)
        if mask_e or mask == "causal":
            _acc(t, "add", 0, scores * b + (mask_e or plane) * b, scores * b)
        if c != b:
            _acc(t, "cast", 0, scores * b + scores * c, scores * c + scores * b)
        _acc(t, "softmax", 0, scores * c, scores * c)
        _acc(t, "matmul_av", 0, (scores + ve_e) * b, out_e * b)
    qk_key, av_key = f"{prefix}_qk", f"{prefix}_av"
    fused = {qk_key: Traffic(0, (q_e + k_e) * b, 0), av_key: Traffic(0, (v_e + mask_e) * b, out_e * b)}
    return _make(flops, t, fused)


def _rel_pos_axis(t: dict[str, Traffic], side: int, head_dim: int, table_len: int, interpolate: bool,
                  b: int, fp32: bool = False) -> None:
    """get_rel_pos for one axis: optional table interpolation (``fp32``: cast up and back), coordinates, gather."""
    needed = 2 * side - 1
    gathered = side * side * head_dim
    if interpolate and fp32 and b < F32:
        _acc(t, "cast", table_len * head_dim * b, needed * head_dim * F32, table_len * head_dim * F32 + needed * head_dim * b)
        _acc(t, "interpolate", 0, table_len * head_dim * F32, needed * head_dim * F32)
        _acc(t, "index", 0, min(gathered, needed * head_dim) * b + side * side * I64, gathered * b)
    elif interpolate:
        _acc(t, "interpolate", table_len * head_dim * b, 0, needed * head_dim * b)
        _acc(t, "index", 0, min(gathered, needed * head_dim) * b + side * side * I64, gathered * b)
    else:
        _acc(t, "index", min(gathered, table_len * head_dim) * b, side * side * I64, gathered * b)
    # q_coords - k_coords + offset: two int64 aranges, two scalings to fp32, sub, add, cast to int64
    _acc(t, "fill", 0, 0, 2 * side * I64)
    _acc(t, "mul", 0, 2 * side * I64, 2 * side * F32)
    _acc(t, "add", 0, 2 * side * F32 + side * side * F32, 2 * side * side * F32)
    _acc(t, "cast", 0, side * side * F32, side * side * I64)


def rel_pos_decomposed(batch_heads: int, q_h: int, q_w: int, head_dim: int, *, table_len: int,
                       dtype_bytes: int = DEFAULT_DTYPE_BYTES, always_interpolate: bool = False,
                       einsum_copies: int = 1, bias_copy: str = "dense", interp_fp32: bool = False) -> Cost:
    """SAM decomposed rel-pos: einsum bhwc,hkc->bhwk and bhwc,wkc->bhwk (2*BH*h*w*k*c each), bias add.

    ``batch_heads`` = batch x windows x heads. The tables (``table_len`` rows) are linearly
    interpolated to 2*max(h, w)-1 rows when the length differs (or always, ``always_interpolate``:
    transformers' OCR-2 calls F.interpolate unconditionally); 4 FLOPs per output element.

    Bytes: per axis the table interpolation (reads the parameter) and gather; each einsum is one
    bmm over the query (``einsum_copies`` of them first copy the query into the bmm's layout);
    the two factors are broadcast-added into the dense (T x T) bias; ``bias_copy`` "dense"
    (transformers): the reshape to (B*nw, H, T, T) copies that bias; "factors" (the vendor): the
    two factors are copied before the add instead.
    """
    _pos("batch_heads", batch_heads, zero=True)
    k_h, k_w = q_h, q_w
    tokens = q_h * q_w
    flops = {
        "einsum": 2 * batch_heads * q_h * q_w * k_h * head_dim + 2 * batch_heads * q_h * q_w * k_w * head_dim,
        "add": EW["add"] * batch_heads * tokens * k_h * k_w,
    }
    b = dtype_bytes
    t: dict[str, Traffic] = {}
    interp = 0
    for side in (q_h, q_w):
        needed = 2 * side - 1
        do = always_interpolate or needed != table_len
        if do:
            interp += EW["interp_linear"] * needed * head_dim
        _rel_pos_axis(t, side, head_dim, table_len, do, b, interp_fp32)
    if interp:
        flops["interpolate"] = interp
    q_elems = batch_heads * tokens * head_dim
    _acc(t, "copy", 0, einsum_copies * q_elems * b, einsum_copies * q_elems * b)
    for side, k in ((q_h, k_h), (q_w, k_w)):
        _acc(t, "einsum", 0, (q_elems + side * k * head_dim) * b, batch_heads * tokens * k * b)
    dense = batch_heads * tokens * k_h * k_w
    _acc(t, "add", 0, batch_heads * tokens * (k_h + k_w) * b, dense * b)
    if bias_copy == "dense":
        _acc(t, "copy", 0, dense * b, dense * b)
    else:
        factors = batch_heads * tokens * (k_h + k_w)
        _acc(t, "copy", 0, factors * b, factors * b)
    if not interp_fp32 or not interp:
        return _make(flops, t)
    # fused: the same ops, the tables resized in dtype (no fp32 round trip)
    plain = rel_pos_decomposed(batch_heads, q_h, q_w, head_dim, table_len=table_len, dtype_bytes=dtype_bytes,
                               always_interpolate=always_interpolate, einsum_copies=einsum_copies,
                               bias_copy=bias_copy)
    return _make(flops, t, dict(plain.bytes_by_key))


def mlp(tokens: int, dim: int, hidden: int, *, activation_kind: Literal["gelu", "quick_gelu", "silu"],
        bias: bool = True, dtype_bytes: int = DEFAULT_DTYPE_BYTES) -> Cost:
    """Two-layer MLP: Linear(dim->hidden), activation, Linear(hidden->dim): 4*tokens*dim*hidden."""
    return (linear(tokens, dim, hidden, bias=bias, dtype_bytes=dtype_bytes)
            + activation(tokens * hidden, activation_kind, dtype_bytes=dtype_bytes)
            + linear(tokens, hidden, dim, bias=bias, dtype_bytes=dtype_bytes))


def swiglu_mlp(tokens: int, dim: int, hidden: int, *, key: Literal["linear", "experts"] = "linear",
               dtype_bytes: int = DEFAULT_DTYPE_BYTES) -> Cost:
    """SwiGLU: down(silu(gate(x)) * up(x)), no bias: 6*tokens*dim*hidden FLOPs under ``key``.

    Fused: SiLU-and-mul is one kernel (reads gate and up, writes the product) under ``activation``.
    """
    b, e = dtype_bytes, tokens * hidden
    glu = _make({"activation": EW["silu"] * e, "mul": EW["mul"] * e},
                {"activation": Traffic(0, e * b, e * b), "mul": Traffic(0, 2 * e * b, e * b)},
                {"activation": Traffic(0, 2 * e * b, e * b)})
    return (linear(tokens, dim, hidden, key=key, dtype_bytes=b).scaled(2) + glu
            + linear(tokens, hidden, dim, key=key, dtype_bytes=b))


def moe(tokens: int, dim: int, *, n_experts: int, top_k: int, expert_hidden: int, shared_hidden: int,
        implementation: Literal["loop", "batched_mm"] = "loop", dtype_bytes: int = DEFAULT_DTYPE_BYTES) -> Cost:
    """DeepSeek MoE: F.linear gate (2*T*dim*E), softmax over E, T*k routed SwiGLU pairs, shared SwiGLU.

    Routing-independent: every token reaches exactly ``top_k`` experts, so the routed work is
    6*(T*k)*dim*hidden whatever the routing. Combine: k muls and k-1 adds per token x dim, plus
    the shared-expert add.

    Bytes, op-level: transformers 5's fp32 router (input and gate weight cast, F.linear, softmax,
    top-k, routing scale), then the experts by ``implementation``. ``loop`` (eager: a loop over
    the experts hit, as the vendor MoE and transformers' eager experts on CPU/GPU): the routed
    rows gathered, each touched expert's weights read once (min(E, T*k) experts: exact for one
    token and whenever every expert is hit, an upper bound otherwise; not proven: routing is
    data-dependent), the SwiGLU, the weighted rows scattered back. ``batched_mm`` (transformers 5
    on meta, proven against the byte counter): each token
    repeated k times, each pair's gate_up and down weights gathered from the parameters into
    activation copies (a gather of S = T*k rows reads at most all E experts), two batched products
    reading those copies, SiLU-and-mul, the fp32 routing-weight product, the sum over k in fp32
    and the cast back; the shared SwiGLU; the final add. Fused: a router at dtype_bytes and one
    grouped GEMM per projection reading min(E, T*k) experts' weights once.
    """
    _pos("tokens", tokens, zero=True)
    b, c = dtype_bytes, max(dtype_bytes, F32)
    T, h, i, E, k = tokens, dim, expert_hidden, n_experts, top_k
    pairs = T * k
    touched = min(E, pairs)
    flops = {"linear_functional": 2 * T * h * E, "softmax": EW["softmax"] * T * E}
    t: dict[str, Traffic] = {}
    if c != b:
        _acc(t, "cast", E * h * b, T * h * b, T * h * c + E * h * c)  # hidden and gate weight to fp32
    gate_w = 0 if c != b else E * h * b
    _acc(t, "linear_functional", gate_w, T * h * c + (E * h * c if c != b else 0), T * E * c)
    _acc(t, "softmax", 0, T * E * c, T * E * c)
    _acc(t, "other_elementwise", 0, T * E * c, pairs * c + pairs * I64)  # top-k values and indices
    _acc(t, "mul", 0, pairs * c, pairs * c)                              # routed scaling
    if implementation not in ("loop", "batched_mm"):
        raise ValueError(f"moe: implementation must be 'loop' or 'batched_mm', got {implementation!r}")
    if implementation == "loop":  # the vendor's moe_infer
        _acc(t, "fill", 0, 0, T * E * I64)                                  # tokens-per-expert counts
        _acc(t, "scatter", 0, pairs * I64, pairs * I64)
        _acc(t, "other_elementwise", 0, T * E * I64 + 2 * pairs * I64, E * I64 + 3 * pairs * I64)  # sum, sort, //
        _acc(t, "index", 0, min(pairs, T) * h * b + pairs * I64, pairs * h * b)  # rows in expert order
        # gate_proj and up_proj (separate Linears) each read the rows; down_proj reads the product
        _acc(t, "experts", touched * 3 * h * i * b, 2 * pairs * h * b + pairs * i * b,
             pairs * 2 * i * b + pairs * h * b)
        _acc(t, "activation", 0, pairs * i * b, pairs * i * b)
        _acc(t, "mul", 0, 2 * pairs * i * b, pairs * i * b)
        _acc(t, "cat", 0, pairs * h * b, pairs * h * b)                     # the experts' outputs
        _acc(t, "scatter", 0, pairs * h * b + pairs * I64, pairs * h * b)  # back in token order (index_put_)
        if c != b:
            _acc(t, "cast", 0, pairs * h * b, pairs * h * c)
        _acc(t, "mul", 0, pairs * h * c + pairs * c, pairs * h * c)          # routing weights (in place)
        _acc(t, "other_elementwise", 0, pairs * h * c, T * h * c)           # sum over k
        if c != b:
            _acc(t, "cast", 0, T * h * c, T * h * b)
        return _moe_finish(flops, t, T, h, i, E, k, pairs, touched, shared_hidden, b)
    # batched_mm experts
    _acc(t, "copy", 0, T * h * b, pairs * h * b)                          # repeat_interleave
    _acc(t, "index", min(pairs, E) * 2 * i * h * b, pairs * I64, pairs * 2 * i * h * b)
    _acc(t, "experts", 0, pairs * 2 * i * h * b + pairs * h * b, pairs * 2 * i * b)
    _acc(t, "activation", 0, pairs * i * b, pairs * i * b)
    _acc(t, "mul", 0, 2 * pairs * i * b, pairs * i * b)
    _acc(t, "index", min(pairs, E) * h * i * b, pairs * I64, pairs * h * i * b)
    _acc(t, "experts", 0, pairs * h * i * b + pairs * i * b, pairs * h * b)
    _acc(t, "mul", 0, pairs * h * b + pairs * c, pairs * h * c)            # routing weights (fp32)
    _acc(t, "other_elementwise", 0, pairs * h * c, T * h * c)              # sum over k
    if c != b:
        _acc(t, "cast", 0, T * h * c, T * h * b)
    return _moe_finish(flops, t, T, h, i, E, k, pairs, touched, shared_hidden, b)


def _moe_finish(flops: dict[str, int], t: dict[str, Traffic], T: int, h: int, i: int, E: int, k: int,
                pairs: int, touched: int, shared_hidden: int, b: int) -> Cost:
    routed_flops = {"experts": 6 * pairs * h * i, "activation": EW["silu"] * pairs * i,
                    "mul": EW["mul"] * pairs * i + EW["mul"] * pairs * h,
                    "add": EW["add"] * T * (k - 1) * h}
    for key, v in routed_flops.items():
        flops[key] = flops.get(key, 0) + v
    fused: dict[str, Traffic] = {
        "linear_functional": Traffic(E * h * b, T * h * b, T * E * b),
        "softmax": Traffic(0, T * E * b, T * E * b),
        "other_elementwise": Traffic(0, T * E * b, pairs * (b + I64)),
        "experts": Traffic(touched * 3 * h * i * b, pairs * h * b + pairs * i * b, pairs * 2 * i * b + pairs * h * b),
        "activation": Traffic(0, pairs * 2 * i * b, pairs * i * b),
        "mul": Traffic(0, pairs * h * b + pairs * b, T * h * b),  # weighted sum over k in one pass
    }
    routed = _make(flops, t, fused)
    shared = swiglu_mlp(T, h, shared_hidden, key="linear", dtype_bytes=b)
    return routed + shared + add(T * h, dtype_bytes=b)


def lm_head(positions: int, dim: int, vocab: int, *, fp32_logits_copy: bool = False,
            dtype_bytes: int = DEFAULT_DTYPE_BYTES) -> Cost:
    """lm_head Linear(dim->vocab) on ``positions`` rows: 2*positions*dim*vocab FLOPs (key lm_head).

    ``fp32_logits_copy``: the v1 forward's ``logits.float()`` (reads the logits, writes 4-byte ones).
    """
    cost = linear(positions, dim, vocab, key="lm_head", dtype_bytes=dtype_bytes)
    if fp32_logits_copy and dtype_bytes != F32:
        cost = cost + _make(None, {"cast": Traffic(0, positions * vocab * dtype_bytes, positions * vocab * F32)})
    return cost


def rotary_matmul(batch: int, positions: int, head_dim: int, *, dtype_bytes: int = DEFAULT_DTYPE_BYTES) -> Cost:
    """Llama-4.46 rotary table: (B, d/2, 1) @ (B, 1, P) = 2*B*(d/2)*P FLOPs (key rotary); cos, sin.

    Bytes, op-level (fp32 table, as transformers 4.46): int64 positions cast to fp32, the product,
    cat, cos and sin each scaled by attention_scaling, both cast to dtype_bytes. Fused: as
    :func:`rotary_elementwise`'s.
    """
    half, b, c = head_dim // 2, dtype_bytes, F32
    P = batch * positions
    t: dict[str, Traffic] = {}
    _acc(t, "cast", 0, P * I64, P * c)
    _acc(t, "rotary", 0, (batch * half + P) * c, P * half * c)
    _acc(t, "cat", 0, P * head_dim * c, P * head_dim * c)
    _acc(t, "other_elementwise", 0, 2 * P * head_dim * c, 2 * P * head_dim * c)
    _acc(t, "mul", 0, 2 * P * head_dim * c, 2 * P * head_dim * c)
    if b != c:
        _acc(t, "cast", 0, 2 * P * head_dim * c, 2 * P * head_dim * b)
    return _make(
        {"rotary": 2 * batch * half * positions,
         "other_elementwise": EW["rotary_table"] * batch * positions * head_dim}, t,
        {"rotary": Traffic(0, (batch * half + P) * b, P * half * b),
         "other_elementwise": Traffic(0, P * half * b, 2 * P * head_dim * b)})


def rotary_elementwise(batch: int, positions: int, head_dim: int, *,
                       dtype_bytes: int = DEFAULT_DTYPE_BYTES) -> Cost:
    """transformers-5 rotary table: positions[..., None] * inv_freq (element-wise), cat, cos, sin.

    Bytes, op-level (fp32 table): int64 positions cast to fp32, the outer product with inv_freq,
    cat, cos and sin each scaled by attention_scaling, both cast to dtype_bytes. Fused: the int64
    positions read, the cos and sin tables written at dtype_bytes.
    """
    half, b, c = head_dim // 2, dtype_bytes, F32
    P = batch * positions
    t: dict[str, Traffic] = {}
    _acc(t, "cast", 0, P * I64, P * c)
    _acc(t, "mul", 0, P * c + half * c, P * half * c)
    _acc(t, "cat", 0, P * head_dim * c, P * head_dim * c)
    _acc(t, "other_elementwise", 0, 2 * P * head_dim * c, 2 * P * head_dim * c)  # cos, sin
    _acc(t, "mul", 0, 2 * P * head_dim * c, 2 * P * head_dim * c)                # * attention_scaling
    if b != c:
        _acc(t, "cast", 0, 2 * P * head_dim * c, 2 * P * head_dim * b)
    return _make(
        {"other_elementwise": EW["rotary_freqs"] * P * half + EW["rotary_table"] * P * head_dim}, t,
        {"other_elementwise": Traffic(0, P * I64, 2 * P * head_dim * b)})


def rotary_apply(batch: int, heads: int, kv_heads: int, positions: int, head_dim: int, *,
                 dtype_bytes: int = DEFAULT_DTYPE_BYTES) -> Cost:
    """apply_rotary_pos_emb on q and k: 3 FLOPs per element (2 mul, 1 add), rotate_half copies.

    Bytes, op-level, for q and for k: x*cos and rotate_half(x)*sin (each reads the stored
    (positions, head_dim) table), rotate_half's neg of one half and cat, the add. Fused: one pass
    reading x and both tables, writing x.
    """
    b = dtype_bytes
    table = positions * head_dim
    t: dict[str, Traffic] = {}
    for x in (batch * heads * positions * head_dim, batch * kv_heads * positions * head_dim):
        _acc(t, "mul", 0, 2 * (x + table) * b, 2 * x * b)
        _acc(t, "other_elementwise", 0, x // 2 * b, x // 2 * b)
        _acc(t, "cat", 0, x * b, x * b)
        _acc(t, "add", 0, 2 * x * b, x * b)
    elems = batch * (heads + kv_heads) * positions * head_dim
    return _make({"other_elementwise": EW["rotary_apply"] * elems}, t,
                 {"other_elementwise": Traffic(0, (elems + 4 * table) * b, elems * b)})


# --------------------------------------------------------------------------------------------
# element-wise and data-movement blocks


def window_partition(batch: int, grid: int, window: int, dim: int, *,
                     dtype_bytes: int = DEFAULT_DTYPE_BYTES) -> Cost:
    """SAM window partition (F.pad to gp=14*ceil(g/14), permute copy) and unpartition (copy, crop): bytes only."""
    gp, _ = padded_grid(grid, window)
    g2, gp2, b = batch * grid * grid * dim, batch * gp * gp * dim, dtype_bytes
    t: dict[str, Traffic] = {}
    if gp != grid:
        _acc(t, "pad", 0, g2 * b, gp2 * b)
        _acc(t, "copy", 0, (2 * gp2 + g2) * b, (2 * gp2 + g2) * b)  # partition, unpartition, crop
    else:
        _acc(t, "copy", 0, 2 * gp2 * b, 2 * gp2 * b)
    return _make(None, t)


def _ew(key: str, per_elem: int, elements: int, reads: int, dtype_bytes: int, weights: int = 0) -> Cost:
    _pos("elements", elements, zero=True)
    b = dtype_bytes
    return _make({key: per_elem * elements}, {key: Traffic(weights * b, reads * elements * b, elements * b)})


def layer_norm(elements: int, dim: int, *, dtype_bytes: int = DEFAULT_DTYPE_BYTES) -> Cost:
    """LayerNorm (nn.LayerNorm or SAM's hand-written LayerNorm2d): 5 FLOPs/elem, weight+bias.

    Bytes: one native_layer_norm (also writes the fp32 mean and rstd per row). Fused: without them.
    """
    _pos("elements", elements, zero=True)
    b, rows = dtype_bytes, elements // dim
    return _make({"norm": EW["layer_norm"] * elements},
                 {"norm": Traffic(2 * dim * b, elements * b, elements * b + 2 * rows * F32)},
                 {"norm": Traffic(2 * dim * b, elements * b, elements * b)})


def layer_norm2d_python(batch: int, channels: int, height: int, width: int, *,
                        dtype_bytes: int = DEFAULT_DTYPE_BYTES) -> Cost:
    """The vendor SAM neck's LayerNorm2d written in Python, over channels per pixel: 5 FLOPs/elem (as layer_norm).

    Bytes, op-level (at dtype): u = mean; (x - u) twice; pow; mean; + eps; sqrt; div; * w; + b.
    Fused: one read, one write.
    """
    b = dtype_bytes
    e, rows = batch * channels * height * width, batch * height * width
    return _make({"norm": EW["layer_norm"] * e},
                 {"norm": Traffic(2 * channels * b, (8 * e + 5 * rows) * b, (6 * e + 4 * rows) * b)},
                 {"norm": Traffic(2 * channels * b, e * b, e * b)})


def rms_norm(elements: int, dim: int, *, dtype_bytes: int = DEFAULT_DTYPE_BYTES) -> Cost:
    """RMSNorm: 4 FLOPs/elem, weight.

    Bytes, op-level (transformers' RMSNorm): x cast to fp32, pow, mean, + eps, rsqrt, scale, cast
    back, * weight. Fused: x and the weight read once, the output written once.
    """
    _pos("elements", elements, zero=True)
    b, c, rows = dtype_bytes, max(dtype_bytes, F32), elements // dim
    t: dict[str, Traffic] = {}
    if c != b:
        _acc(t, "cast", 0, elements * b + elements * c, elements * c + elements * b)
    _acc(t, "norm", dim * b, (3 * elements + 3 * rows) * c + elements * b,
         (2 * elements + 3 * rows) * c + elements * b)
    return _make({"norm": EW["rms_norm"] * elements}, t, {"norm": Traffic(dim * b, elements * b, elements * b)})


def activation(elements: int, kind: Literal["gelu", "quick_gelu", "silu"], *,
               dtype_bytes: int = DEFAULT_DTYPE_BYTES) -> Cost:
    """Activation per element: gelu 8, quick_gelu 5, silu 4 FLOPs. Bytes: one read, one write."""
    if kind not in ("gelu", "quick_gelu", "silu"):
        raise ValueError(f"activation: kind must be gelu, quick_gelu or silu, got {kind!r}")
    if kind == "quick_gelu":  # x * sigmoid(1.702 x): the two muls are plain tensor ops, sigmoid one kernel
        e, b = elements, dtype_bytes
        return _make({"activation": EW[kind] * e},
                     {"activation": Traffic(0, e * b, e * b), "mul": Traffic(0, 3 * e * b, 2 * e * b)},
                     {"activation": Traffic(0, e * b, e * b)})
    return _ew("activation", EW[kind], elements, 1, dtype_bytes)


def softmax(elements: int, *, dtype_bytes: int = DEFAULT_DTYPE_BYTES) -> Cost:
    """Softmax: 5 FLOPs per element."""
    return _ew("softmax", EW["softmax"], elements, 1, dtype_bytes)


def add(elements: int, *, dtype_bytes: int = DEFAULT_DTYPE_BYTES) -> Cost:
    """Element-wise add of two tensors: 1 FLOP per output element, reads two, writes one."""
    return _ew("add", EW["add"], elements, 2, dtype_bytes)


def mul(elements: int, *, dtype_bytes: int = DEFAULT_DTYPE_BYTES) -> Cost:
    """Element-wise multiply of two tensors: 1 FLOP per output element, reads two, writes one."""
    return _ew("mul", EW["mul"], elements, 2, dtype_bytes)


def embedding(tokens: int, dim: int, *, dtype_bytes: int = DEFAULT_DTYPE_BYTES) -> Cost:
    """nn.Embedding lookup: no FLOPs; reads the int64 ids and the ``tokens`` gathered rows, writes them."""
    _pos("tokens", tokens, zero=True)
    b = dtype_bytes
    return _make(None, {"index": Traffic(tokens * dim * b, tokens * I64, tokens * dim * b)})


def interpolate(channels: int, out_h: int, out_w: int, *, in_h: int, in_w: int,
                mode: Literal["bicubic", "linear"], dtype_bytes: int = DEFAULT_DTYPE_BYTES,
                reads_weight: bool = False, upcast: bool = False) -> Cost:
    """F.interpolate: 16 FLOPs per output element (bicubic, separable) or 4 (linear, 1-D).

    Bytes: the input read (a parameter when ``reads_weight``), the output written. ``upcast``
    (transformers' OCR-2 SAM pos-embed): the input is cast to fp32 first and the output cast back,
    when ``dtype_bytes`` < 4 (fused: neither cast).
    """
    if mode not in ("bicubic", "linear"):
        raise ValueError(f"interpolate: mode must be 'bicubic' or 'linear', got {mode!r}")
    per = EW["interp_bicubic"] if mode == "bicubic" else EW["interp_linear"]
    out, src, b = channels * out_h * out_w, channels * in_h * in_w, dtype_bytes
    flops = {"interpolate": per * out}
    plain = {"interpolate": Traffic(src * b if reads_weight else 0, 0 if reads_weight else src * b, out * b)}
    if not upcast or b >= F32:
        return _make(flops, plain)
    t = {"cast": Traffic(src * b if reads_weight else 0, (0 if reads_weight else src * b) + out * F32,
                         src * F32 + out * b),
         "interpolate": Traffic(0, src * F32, out * F32)}
    return _make(flops, t, plain)
