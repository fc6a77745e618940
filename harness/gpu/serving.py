"""Batch, concurrency and memory capacity: from one request to a serving plan (analytic, offline).

Owns the batch model (vision, prefill and decode at batch B; static batching per page batch), the two
executions (``vendor``: what the vendor code runs, as verified; ``engine``: what a serving engine runs
differently) and the per-card capacity (weights, KV cache per token, workspace). Composed from the
verified analytic stage model; nothing here feeds the counts or goldens. The model is stated in full
in docs/serving.md and printed by the report.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any, Iterable

from harness.analytic.config import LMDims, ModelDims, load_dims
from harness.gpu.roofline import sum_max_affine
from harness.analytic.cost import DEFAULT_DTYPE_BYTES, Cost, Traffic
from harness.analytic.stages import (
    TARGET_STAGES,
    _experts,
    _lm_attention,
    _lm_settings,
    _lm_tokens,
    _vision_views,
    vision_attention,
)
from harness.inputs.targets import target_facts
from harness.inputs.workload import ViewLayout

__all__ = [
    "EXECUTIONS", "EXECUTION_LABELS", "RESERVE_BYTES", "VISION_PARAMETERS", "BATCH_ASSUMPTIONS",
    "kv_bytes_per_token", "attention_kind", "lm_parameters", "parameter_count", "weight_bytes",
    "card_memory_bytes", "batched_vision", "batched_prefill", "batched_decode", "batched_stage_costs",
    "Capacity", "capacity", "BatchRow", "batch_rows", "compute_bound_batch", "DecodeBound", "parse_batches", "request_curve", "batch_calls",
]

#: The executions a serving prediction can follow: the vendor's code (verified) or a serving engine.
EXECUTIONS = ("vendor", "engine")
EXECUTION_LABELS = {
    "vendor": "vendor code (as verified: v1 prefill lm_head on all L rows, DynamicCache)",
    "engine": "serving engine (labelled option, not verified: last-row lm_head in prefill, paged/static KV cache)",
}
#: Memory the workspace assumption sets aside beyond one prefill's activations: CUDA context,
#: cuBLAS workspace, allocator slack (1 GiB).
RESERVE_BYTES = 1 << 30
#: Parameters of the vision stages (SAM, CLIP or the OCR-2 encoder, projector, the view
#: separator / newline vectors), from the meta builds: spec/deepseek-ocr.md section 1b for v1,
#: ``stage_parameters`` of the transformers build for OCR-2 (SAM, encoder with its queries,
#: projector, view separator). tests/test_serving.py proves both totals with :func:`parameter_count`.
#: The LM's parameters come from its config (:func:`lm_parameters`).
VISION_PARAMETERS = {
    "dsocr": 95_569_152 + 303_177_728 + 2_622_720 + 2_560,
    "ocr2": 94_979_328 + 358_256_512 + 1_148_160 + 1_280,
}

BATCH_ASSUMPTIONS = (
    "Batch B: B pages served together (static batching). Vision: the B pages' views in one call per "
    "view size; prefill: B sequences of L tokens in one forward; decode: B sequences, one token each "
    "per step, all at the same context. Weights are read once per call and shared across the batch "
    "(a MoE layer reads min(E, rows x top-k) experts); activations and the KV cache are per sequence. "
    "Per batch: TTFT = vision + prefill at batch B; then N - 1 decode steps at batch B, step k at "
    "context L + k, each held to its own roofline. Pages/s = B / (TTFT + decode time); output "
    "tokens/s = B x N / the same. TPOT = one decode step at context L and batch B. Capacity: card "
    "memory - weights (all parameters) - workspace (1 GiB reserve + one prefill's logits and widest MLP "
    "activation at batch B) over the KV cache of B sequences at L + N tokens; rows beyond it are "
    "not predicted.")


# ------------------------------------------------------------------------------------ config facts
def kv_bytes_per_token(lm: LMDims, dtype_bytes: int = DEFAULT_DTYPE_BYTES) -> int:
    """KV-cache bytes one token occupies: K and V, every layer, kv_heads x head_dim each."""
    return 2 * lm.layers * lm.kv_heads * lm.head_dim * dtype_bytes


def attention_kind(lm: LMDims) -> str:
    """"MHA" (kv_heads == heads), "MQA" (one KV head) or "GQA" (fewer KV heads than query heads)."""
    if lm.kv_heads == lm.heads:
        return "MHA"
    return "MQA" if lm.kv_heads == 1 else "GQA"


def lm_parameters(lm: LMDims) -> int:
    """Parameters of the language model (embedding, every layer with all routed experts, final
    norm, lm_head), from its sizes."""
    h, qd, kvd = lm.hidden, lm.heads * lm.head_dim, lm.kv_heads * lm.head_dim
    bias = (qd + 2 * kvd + h) if lm.attention_bias else 0
    attention = h * qd + 2 * h * kvd + qd * h + bias
    norms = 2 * h
    dense = 3 * h * lm.intermediate
    moe = h * lm.n_routed + lm.n_routed * 3 * h * lm.moe_intermediate + 3 * h * lm.shared_intermediate
    layers = lm.layers * (attention + norms) + (lm.layers - lm.n_moe_layers) * dense + lm.n_moe_layers * moe
    return lm.vocab * h + layers + h + h * lm.vocab


def parameter_count(target: str, config: "ModelDims | str | None" = None) -> int:
    """Every parameter of ``target``: the vision stages (:data:`VISION_PARAMETERS`) plus the LM."""
    return VISION_PARAMETERS[target] + lm_parameters(load_dims(target, config).lm)


def weight_bytes(target: str, config: "ModelDims | str | None" = None, dtype_bytes: int = DEFAULT_DTYPE_BYTES) -> int:
    return parameter_count(target, config) * dtype_bytes


def card_memory_bytes(label: str) -> int:
    """A peak-table label's memory ("A100 SXM4 40GB" -> 40 GiB: the figure nvidia-smi reports as
    total, 40,960 MiB for an A100-40GB)."""
    match = re.search(r"(\d+)\s*GB", label)
    if match is None:
        raise ValueError(f"card {label!r}: no memory size (NNGB) in its label")
    return int(match.group(1)) << 30


# ---------------------------------------------------------------------------------- batched costs
def _check_batch(batch: int) -> None:
    if not isinstance(batch, int) or isinstance(batch, bool) or batch < 1:
        raise ValueError(f"batch: expected a positive int, got {batch!r}")


def _lm_and_settings(target: str, batch: int, execution: str, config: Any,
                     attn_implementation: str | None) -> tuple[LMDims, dict[str, Any]]:
    """The checked arguments of an LM forward at a batch: the LM's sizes and the target's LM settings."""
    _check_batch(batch)
    _check_execution(execution)
    return load_dims(target, config).lm, _lm_settings(target, attn_implementation)


def _static_kv(cost: Cost) -> Cost:
    """``cost`` with the op-level KV-cache ``cat`` replaced by the static cache's traffic (new rows only)."""
    by_key = dict(cost.bytes_by_key)
    static = cost.fused_by_key.get("cat")  # type: ignore[union-attr]
    if static is None:
        by_key.pop("cat", None)
    else:
        by_key["cat"] = static
    return Cost(flops=dict(cost.flops), bytes_by_key=by_key, fused_by_key=dict(cost.fused_by_key))  # type: ignore[arg-type]


def _without(cost: Cost, key: str, traffic: Traffic) -> Cost:
    """``cost`` minus ``traffic`` under byte key ``key`` in both conventions (a copy that does not happen)."""
    def less(by_key: Any) -> dict[str, Traffic]:
        out = dict(by_key)
        have = out[key]
        left = Traffic(*(a - b for a, b in zip(have, traffic)))
        if min(left) < 0:
            raise AssertionError(f"{key}: {have} holds less than {traffic}")
        out[key] = left
        return out
    return Cost(flops=dict(cost.flops), bytes_by_key=less(cost.bytes_by_key),  # type: ignore[arg-type]
                fused_by_key=less(cost.fused_by_key))  # type: ignore[arg-type]


def batched_vision(target: str, layout: ViewLayout, batch: int, *, config: "ModelDims | str | None" = None,
                   attn_implementation: str | None = None, dtype_bytes: int = DEFAULT_DTYPE_BYTES) -> dict[str, Cost]:
    """The vision stages of ``batch`` pages of this layout, each view size in one call of B x its batch."""
    _check_batch(batch)
    dims = load_dims(target, config)
    views = tuple((v.size, v.batch * batch) for v in layout.views)
    return dict(_vision_views(target, dims, views, vision_attention(target, attn_implementation), dtype_bytes))


def batched_prefill(target: str, length: int, batch: int, *, execution: str = "vendor",
                    config: "ModelDims | str | None" = None, attn_implementation: str | None = None,
                    experts_implementation: str | None = None, dtype_bytes: int = DEFAULT_DTYPE_BYTES) -> Cost:
    """Prefill of ``batch`` sequences of ``length`` tokens in one forward (see the module's batch model)."""
    lm, s = _lm_and_settings(target, batch, execution, config, attn_implementation)
    if execution == "engine":
        rows = batch                                # the last row of each sequence
    elif target_facts(target).prefill_logits_all_rows:
        rows = batch * length                       # the vendor's lm_head on every row
    else:
        rows = batch                                # transformers' logits_to_keep = 1
    tokens = _lm_tokens(lm, batch * length, s["rotary"], rows, s["fp32_logits_copy"],
                        _experts(experts_implementation), dtype_bytes)
    attention = _lm_attention(lm, length, length, s["impl"], s["mask_heads"], s["rotary"], dtype_bytes)
    if execution == "engine":
        attention = _static_kv(attention)
    return tokens + attention.scaled(batch)


def batched_decode(target: str, context: int, batch: int, *, execution: str = "vendor",
                   config: "ModelDims | str | None" = None, attn_implementation: str | None = None,
                   experts_implementation: str | None = None, dtype_bytes: int = DEFAULT_DTYPE_BYTES) -> Cost:
    """One decode step of ``batch`` sequences with ``context`` cached tokens each (one new token each)."""
    lm, s = _lm_and_settings(target, batch, execution, config, attn_implementation)
    tokens = _lm_tokens(lm, batch, s["rotary"], batch, s["fp32_logits_copy"], _experts(experts_implementation),
                        dtype_bytes)
    if batch > 1:   # _lm_tokens counts the heads-back copy of a multi-row sequence; one row each has none
        rows = batch * lm.heads * lm.head_dim * dtype_bytes * lm.layers
        tokens = _without(tokens, "copy", Traffic(0, rows, rows))
    attention = _lm_attention(lm, 1, context + 1, s["impl"], s["mask_heads"], s["rotary"], dtype_bytes)
    if execution == "engine":
        attention = _static_kv(attention)
    return tokens + attention.scaled(batch)


def _check_execution(execution: str) -> None:
    if execution not in EXECUTIONS:
        raise ValueError(f"execution {execution!r}: expected one of {EXECUTIONS}")


def batched_stage_costs(target: str, layout: ViewLayout, batch: int, *, length: int, execution: str = "vendor",
                        decode_context: int | None = None, config: "ModelDims | str | None" = None,
                        attn_implementation: str | None = None, dtype_bytes: int = DEFAULT_DTYPE_BYTES) -> dict[str, Cost]:
    """Every stage of ``target`` at batch ``batch``: the vision stages, "prefill" and "decode" (one
    step at ``decode_context``, default ``length``)."""
    costs = batched_vision(target, layout, batch, config=config, attn_implementation=attn_implementation,
                           dtype_bytes=dtype_bytes)
    costs["prefill"] = batched_prefill(target, length, batch, execution=execution, config=config,
                                       attn_implementation=attn_implementation, dtype_bytes=dtype_bytes)
    costs["decode"] = batched_decode(target, length if decode_context is None else decode_context, batch,
                                     execution=execution, config=config, attn_implementation=attn_implementation,
                                     dtype_bytes=dtype_bytes)
    assert tuple(costs) == TARGET_STAGES[target]
    return costs


# ----------------------------------------------------------------------------------------- memory
def _workspace(lm: LMDims, target: str, length: int, batch: int, execution: str, dtype_bytes: int) -> int:
    """The workspace assumption: the reserve plus one prefill's logits (fp32 copy included where the
    vendor makes it) and its widest MLP intermediate (gate and up of the dense SwiGLU), for ``batch``
    sequences prefilled together."""
    facts = target_facts(target)
    rows = batch if (execution == "engine" or not facts.prefill_logits_all_rows) else batch * length
    logits = rows * lm.vocab * (dtype_bytes + (4 if facts.fp32_logits else 0))
    mlp = batch * length * 2 * lm.intermediate * dtype_bytes
    return RESERVE_BYTES + logits + mlp


@dataclass(frozen=True)
class Capacity:
    """What fits one card at a context of ``context`` tokens per sequence."""

    card: str
    memory_bytes: int
    weight_bytes: int
    kv_bytes_per_token: int
    attention_kind: str
    context: int
    workspace_bytes: int        # at the largest concurrency (its prefill batch)
    max_concurrency: int

    @property
    def kv_bytes_per_sequence(self) -> int:
        return self.kv_bytes_per_token * self.context

    def as_dict(self) -> dict[str, Any]:
        return {"card": self.card, "memory_bytes": self.memory_bytes, "weight_bytes": self.weight_bytes,
                "kv_bytes_per_token": self.kv_bytes_per_token, "attention_kind": self.attention_kind,
                "context_tokens": self.context, "kv_bytes_per_sequence": self.kv_bytes_per_sequence,
                "workspace_bytes": self.workspace_bytes, "max_concurrency": self.max_concurrency,
                "workspace_assumption": f"{RESERVE_BYTES >> 30} GiB reserve + one prefill's logits and widest "
                                        "MLP activation at the batch"}


def capacity(target: str, card: str, length: int, new_tokens: int, *, memory_bytes: int | None = None,
             execution: str = "vendor", config: "ModelDims | str | None" = None,
             dtype_bytes: int = DEFAULT_DTYPE_BYTES) -> Capacity:
    """The largest number of sequences of ``length + new_tokens`` tokens whose KV cache fits ``card``
    beside the weights and the workspace (0: not even one)."""
    lm = load_dims(target, config).lm
    memory = card_memory_bytes(card) if memory_bytes is None else memory_bytes
    weights = weight_bytes(target, config, dtype_bytes)
    per_seq = kv_bytes_per_token(lm, dtype_bytes) * (length + new_tokens)

    def fits(b: int) -> bool:
        return weights + _workspace(lm, target, length, b, execution, dtype_bytes) + b * per_seq <= memory

    lo, hi = 0, 1
    while fits(hi) and hi < 1 << 24:
        lo, hi = hi, hi * 2
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if fits(mid) else (lo, mid)
    return Capacity(card, memory, weights, kv_bytes_per_token(lm, dtype_bytes), attention_kind(lm),
                    length + new_tokens, _workspace(lm, target, length, max(lo, 1), execution, dtype_bytes), lo)


# ------------------------------------------------------------------------------------- throughput
@dataclass(frozen=True)
class BatchRow:
    """One batch size of one target x mode x execution under one peak."""

    target: str
    mode: str
    execution: str
    batch: int
    prefill_length: int
    new_tokens: int
    fits: bool
    stage_flops: dict[str, int] = field(default_factory=dict)      # matmul FLOPs of each stage at batch B
    stage_bytes: dict[str, int] = field(default_factory=dict)      # bytes (the --bytes convention)
    stage_s: dict[str, float] = field(default_factory=dict)        # roofline time of each stage
    stage_bound: dict[str, str] = field(default_factory=dict)
    ttft_s: float = 0.0
    tpot_s: float = 0.0
    decode_s: float = 0.0        # the N - 1 steps
    request_flops: int = 0       # per page: vision + prefill + every decode step, over B

    @property
    def batch_s(self) -> float:
        return self.ttft_s + self.decode_s

    @property
    def pages_per_s(self) -> float:
        return self.batch / self.batch_s

    @property
    def pages_per_day(self) -> float:
        return self.pages_per_s * 86400

    @property
    def tokens_per_s(self) -> float:
        return self.batch * self.new_tokens / self.batch_s

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"target": self.target, "mode": self.mode, "execution": self.execution,
                               "batch": self.batch, "prefill_length": self.prefill_length,
                               "new_tokens": self.new_tokens, "fits": self.fits}
        if not self.fits:   # beyond the card's capacity: nothing predicted
            return out
        return {**out, "stage_matmul_flops": dict(self.stage_flops), "stage_bytes": dict(self.stage_bytes),
                "stage_predicted_s": dict(self.stage_s), "stage_bound": dict(self.stage_bound),
                "ttft_s": self.ttft_s, "tpot_s": self.tpot_s, "decode_s": self.decode_s,
                "time_per_batch_s": self.batch_s, "pages_per_s": self.pages_per_s,
                "pages_per_day": self.pages_per_day, "output_tokens_per_s": self.tokens_per_s,
                "matmul_flops_per_page": self.request_flops}


def _nbytes(cost: Cost, convention: str) -> int:
    return int(cost.fused_bytes if convention == "fused" else cost.total_bytes)


@dataclass(frozen=True)
class _Request:
    """One request at batch B under a roofline: its stages' FLOPs, bytes and times, TTFT, and the
    decode steps (affine in the step: each step one token more of context)."""

    flops: dict[str, int]
    nbytes: dict[str, int]
    times: dict[str, float]
    ttft_s: float
    head_flops: int             # every stage but decode
    d_flops: int                # per-step growth of the decode step
    decode_roof: tuple[float, float, float, float]   # compute_s, its growth, memory_s, its growth

    def decode_s(self, steps: int) -> float:
        """``steps`` decode steps, each held to its own roofline (O(1))."""
        return sum_max_affine(*self.decode_roof, steps)

    def flops_after(self, steps: int) -> int:
        """Matmul FLOPs of the batch: every stage but decode, then ``steps`` decode steps."""
        return self.head_flops + steps * self.flops["decode"] + steps * (steps - 1) // 2 * self.d_flops


def _request(target: str, layout: ViewLayout, length: int, batch: int, peak: Any, *, execution: str,
             bytes_convention: str, config: "ModelDims | str | None", attn_implementation: str | None,
             dtype_bytes: int) -> _Request:
    costs = batched_stage_costs(target, layout, batch, length=length, execution=execution, config=config,
                                attn_implementation=attn_implementation, dtype_bytes=dtype_bytes)
    flops = {s: int(c.matmul_flops) for s, c in costs.items()}
    nbytes = {s: _nbytes(c, bytes_convention) for s, c in costs.items()}
    times = {s: max(*peak.time(flops[s], nbytes[s])) for s in costs}
    second = batched_decode(target, length + 1, batch, execution=execution, config=config,
                            attn_implementation=attn_implementation, dtype_bytes=dtype_bytes)
    df = int(second.matmul_flops) - flops["decode"]
    (c0, m0) = peak.time(flops["decode"], nbytes["decode"])
    (c1, m1) = peak.time(flops["decode"] + df, nbytes["decode"] + _nbytes(second, bytes_convention) - nbytes["decode"])
    return _Request(flops, nbytes, times, sum(t for s, t in times.items() if s != "decode"),
                    sum(v for s, v in flops.items() if s != "decode"), df, (c0, c1 - c0, m0, m1 - m0))


def batch_rows(target: str, mode: str, layout: ViewLayout, length: int, batches: Iterable[int], peak: Any, *,
               new_tokens: int, execution: str = "vendor", bytes_convention: str = "fused",
               max_concurrency: int | None = None, config: "ModelDims | str | None" = None,
               attn_implementation: str | None = None, dtype_bytes: int = DEFAULT_DTYPE_BYTES) -> list[BatchRow]:
    """A :class:`BatchRow` per batch under ``peak`` (``PeakUsed``: ``time(flops, bytes)``). Batches
    above ``max_concurrency`` are returned with ``fits=False`` and no times."""
    rows = []
    for batch in batches:
        if max_concurrency is not None and batch > max_concurrency:
            rows.append(BatchRow(target, mode, execution, batch, length, new_tokens, False))
            continue
        r = _request(target, layout, length, batch, peak, execution=execution, bytes_convention=bytes_convention,
                     config=config, attn_implementation=attn_implementation, dtype_bytes=dtype_bytes)
        bound = {s: peak.roof(r.flops[s], r.nbytes[s]).bound for s in r.flops}
        steps = new_tokens - 1
        rows.append(BatchRow(target, mode, execution, batch, length, new_tokens, True, r.flops, r.nbytes, r.times, bound,
                             r.ttft_s, r.times["decode"], r.decode_s(steps), r.flops_after(steps) // batch))
    return rows


@dataclass(frozen=True)
class DecodeBound:
    """Where decode at one context turns compute-bound under a peak, or why it never does."""

    context: int
    batch: int | None               # the smallest compute-bound batch; None: none up to ``limit``
    limit: int
    intensity_limit: float          # FLOP/B of decode as B grows without bound (per-sequence work only)
    ridge: float
    kv_over_weights_batch: int | None   # the smallest batch whose KV-cache read exceeds the weights read

    def as_dict(self) -> dict[str, Any]:
        return {"context": self.context, "compute_bound_batch": self.batch, "searched_up_to": self.limit,
                "intensity_limit_flop_per_byte": self.intensity_limit, "ridge_flop_per_byte": self.ridge,
                "kv_read_exceeds_weights_batch": self.kv_over_weights_batch}


def compute_bound_batch(target: str, context: int, peak: Any, *, execution: str = "vendor",
                        bytes_convention: str = "fused", limit: int = 4096, config: "ModelDims | str | None" = None,
                        attn_implementation: str | None = None, dtype_bytes: int = DEFAULT_DTYPE_BYTES) -> DecodeBound:
    """The smallest batch at which one decode step at ``context`` is compute-bound under ``peak``."""
    def cost(b: int) -> Cost:
        return batched_decode(target, context, b, execution=execution, config=config,
                              attn_implementation=attn_implementation, dtype_bytes=dtype_bytes)

    def bound_at(b: int) -> bool:
        c = cost(b)
        return peak.roof(c.matmul_flops, _nbytes(c, bytes_convention)).bound == "compute"

    lm = load_dims(target, config).lm
    kv_read = kv_bytes_per_token(lm, dtype_bytes) * (context + 1)

    def kv_over_weights(b: int) -> bool:
        c = cost(b)
        weights = sum(t.weight for t in (c.fused_by_key if bytes_convention == "fused" else c.bytes_by_key).values())
        return b * kv_read > weights

    # the marginal sequence's work, cost(2B) - cost(B), at B = limit (every expert touched)
    big, bigger = cost(limit), cost(2 * limit)
    d_flops = bigger.matmul_flops - big.matmul_flops
    d_bytes = _nbytes(bigger, bytes_convention) - _nbytes(big, bytes_convention)
    return DecodeBound(context, _first(bound_at, limit), limit, d_flops / d_bytes if d_bytes else math.inf,
                       peak.ridge, _first(kv_over_weights, limit))


def _first(pred: Any, limit: int) -> int | None:
    """The smallest b in 1..limit with pred(b) true, for a pred that stays true once true (doubling,
    then bisection); None when pred(limit) is false."""
    b = 1
    while b < limit and not pred(b):
        b *= 2
    b = min(b, limit)
    if not pred(b):
        return None
    lo, hi = b // 2, b
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if pred(mid) else (mid, hi)
    return hi


def parse_batches(text: str) -> tuple[int, ...]:
    """``--batch 1,8,32,128`` -> (1, 8, 32, 128): positive, distinct, in the order given."""
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        values = ()
    if not values or any(v < 1 for v in values):
        raise ValueError(f"--batch {text!r}: expected comma-separated positive integers, e.g. 1,8,32,128")
    return tuple(dict.fromkeys(values))


def request_curve(target: str, layout: ViewLayout, length: int, tokens: Iterable[int], peak: Any, *,
                  execution: str = "vendor", bytes_convention: str = "fused", batch: int = 1,
                  config: "ModelDims | str | None" = None, attn_implementation: str | None = None,
                  dtype_bytes: int = DEFAULT_DTYPE_BYTES) -> list[tuple[int, float, int]]:
    """Per N in ``tokens``: (N, predicted seconds, matmul FLOPs) of a request generating N tokens at
    batch ``batch`` (seconds of the batch; FLOPs of one page): TTFT then N - 1 decode steps."""
    wanted = sorted(set(tokens))
    if not wanted or wanted[0] < 1:
        raise ValueError(f"tokens: expected positive counts, got {wanted!r}")
    r = _request(target, layout, length, batch, peak, execution=execution, bytes_convention=bytes_convention,
                 config=config, attn_implementation=attn_implementation, dtype_bytes=dtype_bytes)
    return [(n, r.ttft_s + r.decode_s(n - 1), r.flops_after(n - 1) // batch) for n in wanted]


def batch_calls(calls: list[Any], batch: int) -> list[Any]:
    """The stage calls of one page made into calls of ``batch`` pages, for timing (``--measure
    --batch``): every tensor argument repeated ``batch`` times along its first dimension (pixel
    views, embeddings, masks, token ids, positions), a one-element list repeated, and a KV cache's
    keys and values repeated per layer. New tensors; the calls given are left as they are."""
    import copy

    import torch

    from harness.targets.base import StageCall

    _check_batch(batch)
    if batch == 1:
        return list(calls)

    def rep(value: Any) -> Any:
        if isinstance(value, torch.Tensor):
            return torch.cat([value] * batch, dim=0) if value.dim() else value
        if isinstance(value, list) and len(value) == 1:
            return value * batch
        if hasattr(value, "layers") and all(hasattr(layer, "keys") for layer in value.layers):   # transformers 5
            cache = copy.copy(value)
            cache.layers = []
            for layer in value.layers:
                new = copy.copy(layer)
                new.keys, new.values = rep(layer.keys), rep(layer.values)
                cache.layers.append(new)
            return cache
        if hasattr(value, "key_cache") and hasattr(value, "value_cache"):                        # transformers 4
            cache = copy.copy(value)
            cache.key_cache = [rep(k) for k in value.key_cache]
            cache.value_cache = [rep(v) for v in value.value_cache]
            return cache
        return value

    return [StageCall(c.stage, c.module_path, c.module, tuple(rep(a) for a in c.args),
                      {k: rep(v) for k, v in c.kwargs.items()}, device=c.device,
                      note=(c.note + "; " if c.note else "") + f"batch {batch}: every input repeated {batch} times")
            for c in calls]
