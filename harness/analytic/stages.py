"""Stage models: the building-block formulas composed the way each implementation executes them.

* ``dsocr``: the vendor remote code (transformers 4.46.3): SAM -> CLIP-L -> Linear projector per
  view batch (crops in one batched call, then the global view), a DeepSeek-V2 MoE LM with eager
  LlamaAttention (torch.matmul QK^T/AV over the full L x L, rotary recomputed in every layer as an
  inv_freq @ positions matmul), an F.linear MoE gate, and lm_head over all L prefill positions.
* ``ocr2``: transformers 5.x ``deepseek_ocr2``: SAM (downsample to 896) -> Qwen2-style encoder
  over [SAM tokens; learned queries] (every position runs through every layer; only the query
  outputs are kept) -> Linear projector, then the same-shape LM with SDPA attention (default),
  one shared element-wise rotary table, and lm_head over ``logits_to_keep`` positions (1).

All numbers: FLOPs = 2 x MACs by op key; element-wise and bytes conventions in `cost`.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Literal

from harness.analytic.config import DsocrDims, EncoderDims, LMDims, ModelDims, Ocr2Dims, load_dims
from harness.analytic.constants import ClipDims, ProjectorDims, SamDims
from harness.analytic.cost import DEFAULT_DTYPE_BYTES, BytesByKey, Cost, Traffic
from harness.analytic.formulas import (
    add,
    attention,
    conv2d,
    conv_output_size,
    embedding,
    interpolate,
    layer_norm,
    layer_norm2d_python,
    linear,
    lm_head,
    mlp,
    moe,
    BOOL,
    F32,
    I64,
    _acc,
    _make,
    padded_grid,
    rel_pos_decomposed,
    rms_norm,
    rotary_apply,
    rotary_elementwise,
    rotary_matmul,
    swiglu_mlp,
    window_partition,
)
from harness.inputs.targets import TARGET_STAGES, target_facts
from harness.inputs.workload import DEFAULT_PROMPT_TOKENS, ViewLayout, prefill_length

__all__ = [
    "TARGET_STAGES",
    "vision_attention",
    "sam_grid",
    "sam_output_grid",
    "sam_view",
    "sam_dense_bias_bytes",
    "clip_view",
    "projector_view",
    "encoder_view",
    "dsocr_view_costs",
    "ocr2_view_costs",
    "lm_forward",
    "prefill_cost",
    "decode_cost",
    "stage_costs",
    "request_cost",
]

Impl = Literal["sdpa", "matmul"]



def _moved(key: str, *, weight: int = 0, read: int = 0, write: int = 0, fused: bool = True) -> Cost:
    """Pure data movement under ``key`` (no FLOPs); ``fused=False``: a production kernel does not do it."""
    return _make(None, {key: Traffic(weight, read, write)}, None if fused else {})


#: Per-shape costs are pure functions of frozen dimensions and ints: each distinct shape is
#: computed once per process (the report asks for the same views and lengths page after page).
_memoised = lru_cache(maxsize=4096)
_ZERO = Cost()


# --------------------------------------------------------------------------------------------
# vision


def sam_grid(sam: SamDims, size: int) -> int:
    """Patch grid side g of a ``size`` x ``size`` view (size // patch)."""
    return conv_output_size(size, sam.patch, sam.patch)


def sam_output_grid(sam: SamDims, size: int) -> int:
    """Side of SAM's output grid after the two stride-2 convs (g/4 for g divisible by 4)."""
    g2 = conv_output_size(sam_grid(sam, size), 3, 2, 1)
    return conv_output_size(g2, 3, 2, 1)


@_memoised
def sam_view(sam: SamDims, size: int, batch: int = 1, *, impl: Impl = "sdpa", clone_net2: bool = True,
             dtype_bytes: int = DEFAULT_DTYPE_BYTES) -> Cost:
    """SAM ViT-B on ``batch`` views of ``size`` px: patch conv, 12 blocks (window blocks on the padded grid), neck, downsample.

    Window blocks: qkv/proj Linears, rel-pos einsums and attention run on gp^2 = (14*ceil(g/14))^2
    padded tokens (nw windows of 196); the MLP runs on g^2. Global blocks: g^2 tokens, one window.
    The abs pos-embed is bicubically interpolated when g != 64 (element-wise only).
    """
    b, d = dtype_bytes, sam.dim
    g = sam_grid(sam, size)
    tokens = batch * g * g
    cost = conv2d(batch, sam.in_chans, d, size, size, kernel=sam.patch, stride=sam.patch, bias=True, dtype_bytes=b)
    # x + pos_embed: the (1, g, g, C) table is broadcast over the batch, so one copy is read; it is
    # the parameter itself when no interpolation is needed
    pos = g * g * d * b
    if g != sam.pos_grid:
        cost += interpolate(d, g, g, in_h=sam.pos_grid, in_w=sam.pos_grid, mode="bicubic", dtype_bytes=b,
                            reads_weight=True, upcast=True)
    cost += _make({"add": tokens * d}, {"add": Traffic(0 if g != sam.pos_grid else pos,
                                                       tokens * d * b + (pos if g != sam.pos_grid else 0),
                                                       tokens * d * b)})
    for i in range(sam.depth):
        window = 0 if i in sam.global_blocks else sam.window
        if window:
            gp, nw = padded_grid(g, window)
            side, attn_tokens, table = window, batch * gp * gp, 2 * window - 1
            cost += window_partition(batch, g, window, d, dtype_bytes=b)
        else:
            nw, side, attn_tokens, table = 1, g, tokens, 2 * sam.pos_grid - 1
        cost += layer_norm(tokens * d, d, dtype_bytes=b)
        cost += linear(attn_tokens, d, 3 * d, bias=sam.qkv_bias, dtype_bytes=b)
        # reshape(3, B*nw*heads, T, hd) of the permuted qkv copies unless B*nw == 1 (then q stays a
        # strided view and both rel-pos einsums copy it instead of one)
        qkv_copied = batch * nw > 1
        if qkv_copied:
            cost += _moved("copy", read=3 * attn_tokens * d * b, write=3 * attn_tokens * d * b)
        cost += rel_pos_decomposed(batch * nw * sam.heads, side, side, sam.head_dim, table_len=table,
                                   always_interpolate=sam.rel_pos_always_interpolates, dtype_bytes=b,
                                   einsum_copies=1 if qkv_copied else 2, bias_copy=sam.rel_bias_copy,
                                   interp_fp32=sam.rel_pos_interp_fp32)
        cost += attention(batch * nw, sam.heads, side * side, side * side, sam.head_dim, impl=impl,
                          mask_heads=sam.heads, dtype_bytes=b)
        cost += _moved("copy", read=attn_tokens * d * b, write=attn_tokens * d * b)  # heads back: (B, h, w, C)
        cost += linear(attn_tokens, d, d, bias=True, dtype_bytes=b)
        cost += add(tokens * d, dtype_bytes=b)
        cost += layer_norm(tokens * d, d, dtype_bytes=b)
        cost += mlp(tokens, d, sam.mlp_dim, activation_kind="gelu", bias=True, dtype_bytes=b)
        cost += add(tokens * d, dtype_bytes=b)
    nc = sam.neck_channels
    neck_norm = (layer_norm(batch * nc * g * g, nc, dtype_bytes=b) if sam.neck_norm == "native"
                 else layer_norm2d_python(batch, nc, g, g, dtype_bytes=b))
    cost += conv2d(batch, d, nc, g, g, kernel=1, dtype_bytes=b)
    cost += neck_norm
    cost += conv2d(batch, nc, nc, g, g, kernel=3, padding=1, dtype_bytes=b)
    cost += neck_norm
    c1, c2 = sam.downsample_channels
    cost += conv2d(batch, nc, c1, g, g, kernel=3, stride=2, padding=1, dtype_bytes=b)
    g2 = conv_output_size(g, 3, 2, 1)
    if clone_net2:  # vendor: net_3(x2.clone())
        cost += _moved("copy", read=batch * c1 * g2 * g2 * b, write=batch * c1 * g2 * g2 * b)
    cost += conv2d(batch, c1, c2, g2, g2, kernel=3, stride=2, padding=1, dtype_bytes=b)
    return cost


def sam_dense_bias_bytes(sam: SamDims, size: int, batch: int = 1, *,
                         dtype_bytes: int = DEFAULT_DTYPE_BYTES) -> int:
    """Fused bytes :func:`sam_view` spends on the dense rel-pos bias, over an attention kernel that
    adds the decomposed bias itself from its two factors (which both read once).

    Per attention call, with ``dense`` = batch x windows x heads x T x T elements: the broadcast add
    that writes the dense bias, its copy (``rel_bias_copy`` "dense": the dense tensor read and
    written; "factors": the two factors copied before the add instead) and SDPA reading it as an
    explicit float mask. Subtracting this from ``sam_view(...).fused_bytes`` gives SAM's fused bytes
    without a materialised mask (the "no-mask" figure of docs/gpu.md).
    """
    b = dtype_bytes
    g = sam_grid(sam, size)
    total = 0
    for i in range(sam.depth):
        if i in sam.global_blocks or not sam.window:
            batch_heads, side = batch * sam.heads, g
        else:
            _, nw = padded_grid(g, sam.window)
            batch_heads, side = batch * nw * sam.heads, sam.window
        tokens = side * side
        dense = batch_heads * tokens * tokens
        factors = batch_heads * tokens * (side + side)
        copy = 2 * dense if sam.rel_bias_copy == "dense" else 2 * factors
        total += (dense + copy + dense) * b        # add's write, the copy, SDPA's mask read
    return total


@_memoised
def clip_view(clip: ClipDims, n_patches: int, batch: int = 1, *, impl: Impl = "sdpa",
              dtype_bytes: int = DEFAULT_DTYPE_BYTES) -> Cost:
    """DeepSeek-OCR CLIP-L on SAM features: N = n_patches + 1 tokens (CLS kept), 24 pre-LN layers.

    The 16x16 position table is bicubically interpolated to sqrt(N)^2 when N != 257.
    """
    b, d = dtype_bytes, clip.dim
    n_tokens = n_patches + 1
    tokens = batch * n_tokens
    # cat(CLS, SAM features), the 257-row position lookup, optional interpolation, add
    # (the CLS embedding is one parameter row, expanded over the batch: read once)
    cost = _moved("cat", weight=d * b, read=batch * n_patches * d * b, write=tokens * d * b)
    cost += embedding(clip.pos_grid ** 2 + 1, d, dtype_bytes=b)
    side = math.isqrt(n_tokens)  # the vendor's int(math.sqrt(N))
    if side != clip.pos_grid:  # the patch rows copied to (1, C, 16, 16), resized, cat after the CLS row
        grid = clip.pos_grid ** 2 * d * b
        cost += _moved("copy", read=grid, write=grid)
        cost += interpolate(d, side, side, in_h=clip.pos_grid, in_w=clip.pos_grid, mode="bicubic", dtype_bytes=b,
                            upcast=True)
        cost += _moved("cat", read=(1 + side * side) * d * b, write=(1 + side * side) * d * b)
    # + the position rows: one copy broadcast over the batch
    cost += _make({"add": tokens * d}, {"add": Traffic(0, (tokens + n_tokens) * d * b, tokens * d * b)})
    cost += layer_norm(tokens * d, d, dtype_bytes=b)  # pre_layrnorm
    layer = (layer_norm(tokens * d, d, dtype_bytes=b)
             + linear(tokens, d, 3 * d, bias=True, dtype_bytes=b)
             + attention(batch, clip.heads, n_tokens, n_tokens, clip.head_dim, impl=impl,
                         strided="qkv" if batch > 1 else "", dtype_bytes=b)
             + _moved("copy", read=tokens * d * b, write=tokens * d * b)  # heads back: transpose + reshape
             + linear(tokens, d, d, bias=True, dtype_bytes=b)
             + add(tokens * d, dtype_bytes=b)
             + layer_norm(tokens * d, d, dtype_bytes=b)
             + mlp(tokens, d, clip.ffn, activation_kind="quick_gelu", bias=True, dtype_bytes=b)  # type: ignore[arg-type]
             + add(tokens * d, dtype_bytes=b))
    return cost + layer.scaled(clip.layers)


@_memoised
def projector_view(projector: ProjectorDims, n_tokens: int, batch: int = 1, *, concat_inputs: int = 0,
                   strided_input: bool = False, dtype_bytes: int = DEFAULT_DTYPE_BYTES) -> Cost:
    """The Linear projector on batch x n_tokens rows; ``concat_inputs`` > 0 adds the v1 feature concat (bytes)."""
    cost = linear(batch * n_tokens, projector.in_features, projector.out_features, bias=projector.bias,
                  dtype_bytes=dtype_bytes)
    if strided_input and projector.bias and batch > 1:
        # a (batch, n, in) input that does not flatten to 2-D runs as matmul + a separate bias add
        b, out = dtype_bytes, projector.out_features
        rows = batch * n_tokens * out * b
        moved = Traffic(out * b, 0, 0)
        keyed = dict(cost.bytes_by_key)
        lin = keyed["linear"]
        keyed["linear"] = Traffic(lin.weight - moved.weight, lin.read, lin.write)
        keyed["add"] = Traffic(out * b, rows, rows)
        cost = Cost._trusted(cost.flops, BytesByKey(sorted(keyed.items())), cost.fused_by_key)
    if concat_inputs:
        elems = batch * n_tokens * projector.in_features
        cost += _moved("cat", read=elems * dtype_bytes, write=elems * dtype_bytes)
    return cost


@_memoised
def encoder_view(encoder: EncoderDims, n_patches: int, batch: int = 1, *, impl: Impl = "sdpa",
                 dtype_bytes: int = DEFAULT_DTYPE_BYTES) -> Cost:
    """OCR-2 Qwen2 encoder over L = n_patches + queries positions (all L through all layers; queries kept).

    Hybrid mask (bidirectional over SAM tokens, causal over queries) is an explicit mask: the
    attention still computes the full L x L product. Rotary table once per call (batch-1
    position ids), applied in every layer; final RMSNorm over all L.
    """
    e, b = encoder, dtype_bytes
    q = e.queries_for(n_patches)
    seq = n_patches + q
    tokens = batch * seq
    h, qd, kvd = e.hidden, e.heads * e.head_dim, e.kv_heads * e.head_dim
    # cat(SAM tokens, the learned queries expanded over the batch: one copy of the table is read)
    cost = encoder_inputs_cat(encoder, n_patches, batch, dtype_bytes=b)
    cost += hybrid_mask(seq, q, batch)
    cost += rotary_elementwise(1, seq, e.head_dim, dtype_bytes=b)
    layer = (rms_norm(tokens * h, h, dtype_bytes=b)
             + linear(tokens, h, qd, bias=True, dtype_bytes=b)
             + linear(tokens, h, kvd, bias=True, dtype_bytes=b).scaled(2)
             + rotary_apply(batch, e.heads, e.kv_heads, seq, e.head_dim, dtype_bytes=b)
             + attention(batch, e.heads, seq, seq, e.head_dim, impl=impl, kv_heads=e.kv_heads, mask_heads=1,
                         mask="bool", strided="q" if batch > 1 else "", dtype_bytes=b)
             + _moved("copy", read=tokens * qd * b, write=tokens * qd * b)  # heads back: transpose + reshape
             + linear(tokens, qd, h, bias=False, dtype_bytes=b)
             + add(tokens * h, dtype_bytes=b)
             + rms_norm(tokens * h, h, dtype_bytes=b)
             + swiglu_mlp(tokens, h, e.intermediate, dtype_bytes=b)
             + add(tokens * h, dtype_bytes=b))
    cost += layer.scaled(e.layers)
    cost += rms_norm(tokens * h, h, dtype_bytes=b)
    return cost  # keeping the query outputs is a slice (a view): nothing moves


def encoder_inputs_cat(encoder: EncoderDims, n_patches: int, batch: int = 1, *,
                       dtype_bytes: int = DEFAULT_DTYPE_BYTES) -> Cost:
    """cat(SAM tokens, learned queries): the queries are one (q, hidden) parameter broadcast over the batch."""
    q, h, b = encoder.queries_for(n_patches), encoder.hidden, dtype_bytes
    return _moved("cat", weight=q * h * b, read=batch * n_patches * h * b, write=batch * (n_patches + q) * h * b)


def hybrid_mask(seq: int, queries: int, batch: int = 1) -> Cost:
    """transformers' mask construction for OCR-2's encoder (bidirectional image tokens, causal queries).

    Per call: int64 positions (aranges, a (batch, seq) full, the query-part copy, two offsets,
    two gathers) and bool planes: two (seq x seq) ones shared by the batch (<=, |) and four
    (batch, seq, seq) ones (==, >=, &, |). Not fused.
    """
    L, B, plane = seq, batch, seq * seq
    t = {
        "fill": Traffic(0, 0, 3 * L * I64 + B * L * I64 + B * I64 + 2 * I64 + 1),
        "copy": Traffic(0, I64, B * queries * I64),
        "add": Traffic(0, 2 * L * I64, 2 * L * I64),
        "index": Traffic(0, 2 * (B * L * I64 + B * I64 + L * I64), 2 * B * L * I64),
        "other_elementwise": Traffic(
            0, 2 * L * I64 + (plane + 1) + 2 * B * L * I64 + B * L * I64 + (B * plane + B * L) + (plane + B * plane),
            plane + plane + B * plane + B * L + B * plane + B * plane),
    }
    return _make(None, t, {})


def dsocr_view_costs(dims: DsocrDims, size: int, batch: int = 1, *,
                     dtype_bytes: int = DEFAULT_DTYPE_BYTES) -> dict[str, Cost]:
    """Vendor v1 vision stages for one view batch: {"sam", "clip", "projector"}."""
    s = sam_output_grid(dims.sam, size)
    return {
        "sam": sam_view(dims.sam, size, batch, impl="sdpa", clone_net2=True, dtype_bytes=dtype_bytes),
        "clip": clip_view(dims.clip, s * s, batch, impl="sdpa", dtype_bytes=dtype_bytes),
        "projector": projector_view(dims.projector, s * s, batch, concat_inputs=1, dtype_bytes=dtype_bytes),
    }


def ocr2_view_costs(dims: Ocr2Dims, size: int, batch: int = 1, *, impl: Impl = "sdpa",
                    dtype_bytes: int = DEFAULT_DTYPE_BYTES) -> dict[str, Cost]:
    """transformers OCR-2 vision stages for one view batch: {"sam", "encoder", "projector"}."""
    s = sam_output_grid(dims.sam, size)
    q = dims.encoder.queries_for(s * s)
    return {
        "sam": sam_view(dims.sam, size, batch, impl=impl, clone_net2=False, dtype_bytes=dtype_bytes),
        "encoder": encoder_view(dims.encoder, s * s, batch, impl=impl, dtype_bytes=dtype_bytes),
        # the encoder's query outputs are a slice of each sequence: strided when batch > 1
        "projector": projector_view(dims.projector, q, batch, strided_input=True, dtype_bytes=dtype_bytes),
    }


# --------------------------------------------------------------------------------------------
# language model


@_memoised
def lm_forward(lm: LMDims, q_len: int, kv_len: int, *, impl: Impl, rotary: Literal["per_layer_matmul", "shared"],
               lm_head_positions: int, fp32_logits_copy: bool, mask_heads: int,
               experts_implementation: str = "loop", dtype_bytes: int = DEFAULT_DTYPE_BYTES) -> Cost:
    """One LM forward of ``q_len`` new tokens attending to ``kv_len`` keys (cache + new), batch 1.

    Per layer: RMSNorm, q/k/v/o Linears, rotary, attention (full q_len x kv_len), RMSNorm, dense
    SwiGLU or MoE (F.linear gate, q_len*top_k routed pairs, shared SwiGLU). Then the final norm
    and lm_head over ``lm_head_positions`` rows.
    """
    return (_lm_tokens(lm, q_len, rotary, lm_head_positions, fp32_logits_copy, experts_implementation, dtype_bytes)
            + _lm_attention(lm, q_len, kv_len, impl, mask_heads, rotary, dtype_bytes))


@_memoised
def _lm_attention(lm: LMDims, q_len: int, kv_len: int, impl: Impl, mask_heads: int, rotary: str,
                  dtype_bytes: int) -> Cost:
    """The attention cores and KV-cache appends of every layer: the part of a forward that depends on ``kv_len``.

    The cache update is DynamicCache's ``cat(cache, new)`` for K and V (reads the kv_len - q_len
    cached rows and the new ones, writes kv_len rows); fused: a static cache writes only the new rows.
    SDPA with q_len > 1 runs is_causal (the math path builds the causal mask). transformers 4.46
    (``rotary`` "per_layer_matmul", the vendor LM): the first cache update appends without a cat,
    and the eager 4-D mask is built once per forward (:func:`eager_lm_mask`).
    """
    b, kvd = dtype_bytes, lm.kv_heads * lm.head_dim
    mask = "causal" if (impl == "sdpa" and q_len > 1) else None
    core = attention(1, lm.heads, q_len, kv_len, lm.head_dim, impl=impl, kv_heads=lm.kv_heads,
                     mask_heads=mask_heads, mask=mask, dtype_bytes=b)  # type: ignore[arg-type]
    v446 = rotary == "per_layer_matmul"
    rows = 0 if (v446 and kv_len == q_len) else kv_len
    cache = _make(None, {"cat": Traffic(0, 2 * rows * kvd * b, 2 * rows * kvd * b)},
                  {"cat": Traffic(0, 2 * q_len * kvd * b, 2 * q_len * kvd * b)})
    per_layer = (core + cache).scaled(lm.layers)
    return per_layer + eager_lm_mask(q_len, kv_len, b) if v446 else per_layer


def eager_lm_mask(q_len: int, kv_len: int, dtype_bytes: int) -> Cost:
    """transformers 4.46's 4-D attention mask for eager attention, once per forward (not fused).

    q_len > 1: the causal (q, q) fp32 mask (aranges, full, lt, masked_fill_, cast to dtype); then the
    all-ones (1, kv) padding mask expanded to (q, kv) in dtype (cast, 1 - m, bool, masked_fill),
    combined with the causal one by a second bool + masked_fill.
    """
    b, plane = dtype_bytes, q_len * kv_len
    t: dict[str, Traffic] = {}
    if q_len > 1:
        _acc(t, "fill", 0, 0, 2 * q_len * I64 + q_len * q_len * F32)
        _acc(t, "add", 0, q_len * I64, q_len * I64)
        _acc(t, "other_elementwise", 0, 2 * q_len * I64 + q_len * q_len * (F32 + BOOL),
             q_len * q_len * (BOOL + F32))
        _acc(t, "cast", 0, q_len * q_len * F32, q_len * q_len * b)
    _acc(t, "cast", 0, kv_len * I64, plane * b)
    _acc(t, "add", 0, plane * b, plane * b)
    for _ in range(2 if q_len > 1 else 1):
        _acc(t, "cast", 0, plane * b, plane * BOOL)
        _acc(t, "other_elementwise", 0, plane * b + plane * BOOL, plane * b)
    return _make(None, t, {})


@_memoised
def _lm_tokens(lm: LMDims, q_len: int, rotary: str, lm_head_positions: int, fp32_logits_copy: bool,
               experts_implementation: str, b: int) -> Cost:
    """Everything in a forward of ``q_len`` tokens but the attention cores (a decode step: always q_len 1)."""
    h = lm.hidden
    qd = lm.heads * lm.head_dim
    kvd = lm.kv_heads * lm.head_dim
    L, n_moe = lm.layers, lm.n_moe_layers
    parts: list[tuple[Cost, int]] = [(embedding(q_len, h, dtype_bytes=b), 1)]
    if rotary == "shared":  # transformers 5: cache_position = past + arange(q_len) (int64), one rotary table
        parts.append((_make(None, {"fill": Traffic(0, 0, q_len * I64), "add": Traffic(0, q_len * I64, q_len * I64)},
                            {}), 1))
        parts.append((rotary_elementwise(1, q_len, lm.head_dim, dtype_bytes=b), 1))
    norm = rms_norm(q_len * h, h, dtype_bytes=b)
    residual = add(q_len * h, dtype_bytes=b)
    parts += [(norm, 2 * L + 1), (residual, 2 * L),
              (linear(q_len, h, qd, bias=lm.attention_bias, dtype_bytes=b), L),
              (linear(q_len, h, kvd, bias=lm.attention_bias, dtype_bytes=b), 2 * L),
              (rotary_apply(1, lm.heads, lm.kv_heads, q_len, lm.head_dim, dtype_bytes=b), L),
              (linear(q_len, qd, h, bias=lm.attention_bias, dtype_bytes=b), L)]
    if q_len > 1:  # heads back: transpose(1, 2) + reshape copies
        parts.append((_moved("copy", read=q_len * qd * b, write=q_len * qd * b), L))
    if rotary == "per_layer_matmul":
        parts.append((rotary_matmul(1, q_len, lm.head_dim, dtype_bytes=b), L))
    parts.append((swiglu_mlp(q_len, h, lm.intermediate, dtype_bytes=b), L - n_moe))
    parts.append((moe(q_len, h, n_experts=lm.n_routed, top_k=lm.top_k, expert_hidden=lm.moe_intermediate,
                      shared_hidden=lm.shared_intermediate, implementation=experts_implementation,  # type: ignore[arg-type]
                      dtype_bytes=b), n_moe))
    parts.append((lm_head(lm_head_positions, h, lm.vocab, fp32_logits_copy=fp32_logits_copy, dtype_bytes=b), 1))
    return Cost.combine(parts)


def vision_attention(target: str, attn_implementation: str | None) -> Impl:
    """How the vision stages attend under the build's attention implementation: OCR-2's ``eager``
    is matmul + softmax; everything else (v1's SAM and CLIP always) calls SDPA."""
    return "matmul" if (target == "ocr2" and attn_implementation == "eager") else "sdpa"


def _lm_settings(target: str, attn_implementation: str | None) -> dict[str, object]:
    impl = attn_implementation or target_facts(target).default_attention
    if target == "dsocr":
        if impl != "eager":
            raise NotImplementedError(
                f"dsocr LM attn_implementation={impl!r} is not modelled: the vendor LM runs eager "
                "LlamaAttention (torch.matmul); flash_attention_2 runs flash_attn kernels no torch counter sees")
        return {"impl": "matmul", "rotary": "per_layer_matmul", "fp32_logits_copy": target_facts(target).fp32_logits,
                "mask_heads": 1}
    if impl not in ("sdpa", "eager"):
        raise NotImplementedError(f"ocr2 attn_implementation={impl!r} is not modelled (sdpa or eager)")
    return {"impl": "sdpa" if impl == "sdpa" else "matmul", "rotary": "shared",
            "fp32_logits_copy": target_facts(target).fp32_logits,
            "mask_heads": 0 if impl == "sdpa" else 1}


def prefill_cost(target: str, length: int, *, config: "ModelDims | str | None" = None, logits_to_keep: int = 1,
                 attn_implementation: str | None = None, experts_implementation: str | None = None,
                 dtype_bytes: int = DEFAULT_DTYPE_BYTES) -> Cost:
    """Prefill of ``length`` tokens: v1 lm_head over all ``length`` positions; ocr2 over ``logits_to_keep`` (0 = all)."""
    dims = load_dims(target, config)
    s = _lm_settings(target, attn_implementation)
    all_rows = target_facts(target).prefill_logits_all_rows
    positions = length if all_rows or logits_to_keep == 0 else min(logits_to_keep, length)
    return lm_forward(dims.lm, length, length, lm_head_positions=positions, dtype_bytes=dtype_bytes,
                      experts_implementation=_experts(experts_implementation), **s)  # type: ignore[arg-type]


def decode_cost(target: str, context: int, *, config: "ModelDims | str | None" = None,
                attn_implementation: str | None = None, experts_implementation: str | None = None,
                dtype_bytes: int = DEFAULT_DTYPE_BYTES) -> Cost:
    """One decode step with ``context`` tokens already cached: 1 query over context + 1 keys, lm_head on 1 row."""
    dims = load_dims(target, config)
    s = _lm_settings(target, attn_implementation)
    return lm_forward(dims.lm, 1, context + 1, lm_head_positions=1, dtype_bytes=dtype_bytes,
                      experts_implementation=_experts(experts_implementation), **s)  # type: ignore[arg-type]


#: Byte models of the routed experts: "loop" (eager: the vendor MoE, transformers' eager experts on
#: CPU/GPU) or "batched_mm" (transformers 5 on meta). FLOPs do not depend on it.
EXPERTS_IMPLEMENTATIONS = ("loop", "batched_mm")


def _experts(name: str | None) -> str:
    name = name or "loop"
    if name == "eager":
        name = "loop"
    if name not in EXPERTS_IMPLEMENTATIONS:
        raise ValueError(f"experts_implementation: expected one of {EXPERTS_IMPLEMENTATIONS} (or 'eager' = 'loop'), "
                         f"got {name!r}; grouped_mm is not modelled for bytes")
    return name


def experts_model(target: str, implementation: str | None) -> str:
    """The experts byte model of a build whose experts run as ``implementation``: OCR-2's own
    (``batched_mm`` on meta; ``eager`` is the loop), the vendor DeepSeek-OCR's ``moe_infer`` loop."""
    return _experts(implementation) if target == "ocr2" else "loop"


# --------------------------------------------------------------------------------------------
# whole stages and requests


def _vision(target: str, dims: ModelDims, layout: ViewLayout, impl: Impl, dtype_bytes: int) -> dict[str, Cost]:
    return dict(_vision_views(target, dims, tuple((v.size, v.batch) for v in layout.views), impl, dtype_bytes))


@_memoised
def _vision_views(target: str, dims: ModelDims, views: tuple[tuple[int, int], ...], impl: Impl,
                  dtype_bytes: int) -> tuple[tuple[str, Cost], ...]:
    """The vision stages of a page with these (size, batch) view batches (a page's shape key)."""
    names = target_facts(target).vision_stages
    totals = {name: _ZERO for name in names}
    for size, batch in views:
        if target == "dsocr":
            per = dsocr_view_costs(dims, size, batch, dtype_bytes=dtype_bytes)  # type: ignore[arg-type]
        else:
            per = ocr2_view_costs(dims, size, batch, impl=impl, dtype_bytes=dtype_bytes)  # type: ignore[arg-type]
        for name in names:
            totals[name] = totals[name] + per[name]
    return tuple(totals.items())


def stage_costs(target: str, layout: ViewLayout, *, text_tokens: int = DEFAULT_PROMPT_TOKENS,
                decode_context: int | None = None, config: "ModelDims | str | None" = None,
                dtype_bytes: int = DEFAULT_DTYPE_BYTES, attn_implementation: str | None = None,
                logits_to_keep: int = 1, experts_implementation: str | None = None) -> dict[str, Cost]:
    """Analytic cost of every stage of ``target`` on ``layout`` (FLOPs = 2 x MACs, by op key).

    Vision stages sum the view batches as the implementation batches them; ``prefill`` is one LM
    forward over L = prefill_length(layout, text_tokens); ``decode`` is one step with
    ``decode_context`` cached tokens (default L), i.e. attention over context + 1 keys.
    ``experts_implementation`` selects the routed experts' byte model ("loop", the default, or
    "batched_mm", what transformers 5 runs on meta); FLOPs never depend on it.
    """
    if target not in TARGET_STAGES:
        raise ValueError(f"unknown target {target!r}; expected one of {', '.join(TARGET_STAGES)}")
    if not isinstance(dtype_bytes, int) or isinstance(dtype_bytes, bool) or dtype_bytes < 1:
        raise ValueError(f"dtype_bytes: expected a positive int (2 = bf16), got {dtype_bytes!r}")
    _experts(experts_implementation)
    dims = load_dims(target, config)
    vision_impl = vision_attention(target, attn_implementation)
    costs = _vision(target, dims, layout, vision_impl, dtype_bytes)
    length = prefill_length(layout, text_tokens)
    costs["prefill"] = prefill_cost(target, length, config=dims, logits_to_keep=logits_to_keep,
                                    experts_implementation=experts_implementation,
                                    attn_implementation=attn_implementation, dtype_bytes=dtype_bytes)
    context = length if decode_context is None else decode_context
    costs["decode"] = decode_cost(target, context, config=dims, attn_implementation=attn_implementation,
                                  experts_implementation=experts_implementation,
                                  dtype_bytes=dtype_bytes)
    return costs


def _affine_sum(first: Cost, second: Cost, n: int) -> Cost:
    """Sum of f(c), f(c+1), ..., f(c+n-1) for a cost affine in c, from f(c) and f(c+1)."""
    tri = n * (n - 1) // 2

    def lin(a: int, c: int) -> int:
        return n * a + tri * (c - a)

    def keyed(x: "dict[str, Traffic]", y: "dict[str, Traffic]") -> dict[str, Traffic]:
        zero = Traffic()
        return {k: Traffic(*(lin(p, q) for p, q in zip(x.get(k, zero), y.get(k, zero)))) for k in set(x) | set(y)}

    keys = set(first.flops) | set(second.flops)
    flops = {k: lin(first.flops.get(k, 0), second.flops.get(k, 0)) for k in keys}
    return Cost(flops=flops, bytes_by_key=keyed(first.bytes_by_key, second.bytes_by_key),  # type: ignore[arg-type]
                fused_by_key=keyed(first.fused_by_key, second.fused_by_key))  # type: ignore[arg-type]


def request_cost(target: str, layout: ViewLayout, *, new_tokens: int, text_tokens: int = DEFAULT_PROMPT_TOKENS,
                 config: "ModelDims | str | None" = None, dtype_bytes: int = DEFAULT_DTYPE_BYTES,
                 attn_implementation: str | None = None) -> dict[str, Cost]:
    """Whole request generating ``new_tokens`` tokens: vision once, prefill(L), then new_tokens - 1 decode steps.

    The prefill's logits give the first token; decode step j (1..N-1) has L + j - 1 cached
    tokens. Returns the vision stages, "prefill", "decode" (all steps summed) and "total".
    """
    if not isinstance(new_tokens, int) or new_tokens < 1:
        raise ValueError(f"new_tokens: expected a positive int, got {new_tokens!r}")
    costs = stage_costs(target, layout, text_tokens=text_tokens, config=config, dtype_bytes=dtype_bytes,
                        attn_implementation=attn_implementation)
    dims = load_dims(target, config)
    length = prefill_length(layout, text_tokens)
    steps = new_tokens - 1
    if steps:
        first = decode_cost(target, length, config=dims, attn_implementation=attn_implementation,
                            dtype_bytes=dtype_bytes)
        second = decode_cost(target, length + 1, config=dims, attn_implementation=attn_implementation,
                             dtype_bytes=dtype_bytes)
        costs["decode"] = _affine_sum(first, second, steps)
    else:
        costs["decode"] = Cost()
    costs["total"] = Cost.total(costs)
    return costs
