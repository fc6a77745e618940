"""Roofline and time per stage: predicted offline from a peak-table entry (``--gpu NAME``) and
measured on the device you have (``--measure --device D``).

Owns the assumptions the report prints beside the figures: analytic matmul-class FLOPs as executed
(the causal convention a separate column), the bytes of the ``--bytes`` convention, predicted time
= max(FLOPs / peak, bytes / bandwidth), and a request as TTFT plus its decode steps. Stated in
docs/report.md.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from harness.gpu.roofline import PeakUsed, Roofline, measured_peak, roofline, stage_bytes, sum_max_affine, table_peak
from harness.report.inputs import InputError

__all__ = ["ServingMode", "serving_modes", "PerfPlan", "StageRoof", "RequestTime", "MeasuredStage", "PerfResult", "ASSUMPTIONS",
           "gpu_entry", "causal_flops", "roofline_rows", "request_times",
           "measure_stages", "DEFAULT_NEW_TOKENS", "ATTENTION_KEYS"]

DEFAULT_NEW_TOKENS = 1000
#: Analytic op keys of attention's two matmuls (fused SDPA and eager torch.matmul).
ATTENTION_KEYS = ("sdpa_qk", "sdpa_av", "matmul_qk", "matmul_av")
CAUSAL_STAGES = ("prefill",)

#: How each ``--bytes`` convention reads in the stated assumptions.
BYTES_TEXT = {
    "fused": "the fused convention (--bytes fused: what production GPU kernels move; flash SDPA reads Q, K, V "
             "and writes O without the scores; norms and activations fused into one kernel each; docs/bytes.md)",
    "op": "the op-level convention (--bytes op: every aten op's reads and writes, no fusion, with the routed "
          "experts as the loop over the experts the tokens hit, what eager experts run on a GPU: experts model "
          "'loop', not the batched_mm a meta build runs, whose op-level bytes the stage tables show beside the "
          "byte counter's)",
}
ASSUMPTIONS = (
    "FLOPs: analytic matmul class as executed (FLOPs = 2 x MACs; causal prefill attention computes the "
    "full masked L x L scores). Bytes: {bytes} at the roofline dtype (bf16 = 2 B per element). Roofline time = max(FLOPs / dense peak, bytes / bandwidth); "
    "element-wise work is left out. A request generating N tokens = vision + prefill (TTFT, the first "
    "token from the prefill logits) + N - 1 decode steps, step j at context L + j - 1, each held to its "
    "own roofline. TPOT = one decode step at the page's context L. MFU (causal convention) counts half "
    "of the prefill's QK^T and AV work, as flash-attn and Megatron MFU do; it is a separate column, "
    "never mixed with the executed count. SAM's bytes include the dense rel-pos bias its code "
    "materialises and SDPA reads as a mask (60 % of OCR-2 Base SAM's fused bytes; without it H100 Base "
    "SAM predicts 1.42 ms, not 3.56: docs/gpu.md). The build has requires_grad=False (a default build "
    "also copies OCR-2's crop projector input: docs/bytes.md).")


@dataclass
class PerfPlan:
    """What the performance part of a report covers (None/False: that part is left out)."""

    gpu: Any = None                 # harness.gpu.peaks.DevicePeak from --gpu NAME
    dtype: str = "bf16"             # the --gpu roofline's dtype key
    measure_dtype: str = "fp32"     # the --measure run's dtype key (and its measured peak's)
    new_tokens: int = DEFAULT_NEW_TOKENS
    measure_device: str | None = None   # --measure: where stages are timed
    small: bool = False             # --small: the shrunken configuration for --measure
    warmup: int = 3
    repeats: int = 10
    peak_tflops: float | None = None    # overrides of the measured / table peak
    peak_bandwidth: float | None = None
    bytes_convention: str = "fused"     # --bytes: "fused" (production kernels) or "op" (every aten op)
    batches: tuple[int, ...] = ()       # --batch: the serving table's batch sizes (with --gpu); --measure times at the first

    @property
    def any(self) -> bool:
        return self.gpu is not None or self.measure_device is not None


def _norm(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", " ", text.casefold()).strip()


def gpu_entry(name: str) -> Any:
    """The peak-table entry ``--gpu NAME`` names: its label or torch name (case, spacing and
    punctuation ignored), or a word prefix unique to one entry (``h100 sxm``, ``a100 pcie 80``)."""
    from harness.gpu.peaks import PEAKS

    wanted = _norm(name)
    exact = [p for p in PEAKS if wanted in {_norm(p.label), *(_norm(n) for n in p.torch_names)}]
    if exact:
        return exact[0]
    words = wanted.split()
    partial = [p for p in PEAKS if any(all(w in _norm(t).split() or any(x.startswith(w) for x in _norm(t).split())
                                               for w in words) for t in (p.label, *p.torch_names))]
    if len(partial) == 1:
        return partial[0]
    labels = ", ".join(repr(p.label) for p in PEAKS)
    if partial:
        raise InputError(f"--gpu {name!r} matches several peak-table entries "
                         f"({', '.join(repr(p.label) for p in partial)}); name one of them")
    raise InputError(f"--gpu {name!r}: not in the peak table (harness/gpu/peaks.py). Known: {labels}")


def causal_flops(stage: str, cost: Any) -> int:
    """Matmul FLOPs under the causal convention: half of QK^T and AV for the causal prefill; every
    other stage (bidirectional vision attention, one-query decode) as executed."""
    if stage not in CAUSAL_STAGES:
        return int(cost.matmul_flops)
    attention = sum(int(cost.flops.get(k, 0)) for k in ATTENTION_KEYS)
    return int(cost.matmul_flops) - attention // 2


# ------------------------------------------------------------------------------ offline roofline
@dataclass(frozen=True)
class StageRoof:
    target: str
    mode: str
    pages: tuple[str, ...]
    stage: str
    context: int | None             # decode: cached tokens
    flops: int
    causal_flops: int
    bytes: int
    compute_s: float
    memory_s: float

    @property
    def intensity(self) -> float:
        return self.flops / self.bytes if self.bytes else float("inf")

    @property
    def predicted_s(self) -> float:
        return Roofline(self.compute_s, self.memory_s).predicted_s

    @property
    def bound(self) -> str:
        return Roofline(self.compute_s, self.memory_s).bound

    @property
    def label(self) -> str:
        return self.stage if self.context is None else f"{self.stage} (context {self.context})"

    def as_dict(self) -> dict[str, Any]:
        return {"target": self.target, "mode": self.mode, "pages": list(self.pages), "stage": self.stage,
                "decode_context": self.context, "matmul_flops": self.flops,
                "matmul_flops_causal_convention": self.causal_flops, "bytes": self.bytes,
                "intensity_flop_per_byte": self.intensity, "compute_s": self.compute_s, "memory_s": self.memory_s,
                "predicted_s": self.predicted_s, "bound": self.bound}


@dataclass(frozen=True)
class RequestTime:
    """Per layout group: a request that generates ``new_tokens`` tokens."""

    target: str
    mode: str
    pages: tuple[str, ...]
    prefill_length: int
    new_tokens: int
    vision_flops: int
    prefill_flops: int
    decode_flops: int               # the N - 1 decode steps, summed
    ttft_s: float | None = None
    tpot_s: float | None = None
    total_s: float | None = None

    @property
    def total_flops(self) -> int:
        return self.vision_flops + self.prefill_flops + self.decode_flops

    def as_dict(self) -> dict[str, Any]:
        return {"target": self.target, "mode": self.mode, "pages": list(self.pages),
                "prefill_length": self.prefill_length, "new_tokens": self.new_tokens,
                "vision_matmul_flops": self.vision_flops, "prefill_matmul_flops": self.prefill_flops,
                "decode_matmul_flops": self.decode_flops, "total_matmul_flops": self.total_flops,
                "ttft_s": self.ttft_s, "tpot_s": self.tpot_s, "time_for_new_tokens_s": self.total_s}


def _dtype_bytes(dtype: str) -> int:
    return {"bf16": 2, "fp16": 2, "tf32": 4, "fp32": 4}[dtype]


class _Costs:
    """Analytic costs per (target, mode, layout group) at one dtype, memoised by shape (never by page)."""

    def __init__(self, collected: Any, dtype: str, bytes_convention: str = "fused") -> None:
        self.collected = collected
        self.dtype_bytes = _dtype_bytes(dtype)
        self.bytes_convention = bytes_convention
        self._memo: dict[tuple, Any] = {}

    def nbytes(self, cost: Any) -> int:
        """The bytes of ``cost`` under the convention the user named (``--bytes``)."""
        return stage_bytes(cost, self.bytes_convention)

    def attn(self, target: str) -> str | None:
        return self.collected.target_environment.get(target, {}).get("attn_implementation")

    def stages(self, target: str, mode: str, page: str) -> dict[str, Any]:
        from harness.analytic import stage_costs

        layout = self.collected.layouts[(target, mode, page)]
        key = ("stages", target, tuple((v.role, v.batch, v.size) for v in layout.views), layout.image_tokens)
        if key not in self._memo:
            self._memo[key] = stage_costs(target, layout, text_tokens=self.collected.text_tokens,
                                          dtype_bytes=self.dtype_bytes, attn_implementation=self.attn(target))
        return self._memo[key]

    def decode(self, target: str, context: int) -> Any:
        from harness.analytic import decode_cost

        key = ("decode", target, context)
        if key not in self._memo:
            self._memo[key] = decode_cost(target, context, dtype_bytes=self.dtype_bytes,
                                          attn_implementation=self.attn(target))
        return self._memo[key]


def _groups(collected: Any):
    from harness.report.render import layout_groups

    for target, modes in layout_groups(collected).items():
        for mode, groups in modes.items():
            for pages, _ in groups:
                yield target, mode, tuple(pages)


def roofline_rows(collected: Any, peak: PeakUsed, costs: _Costs | None = None) -> list[StageRoof]:
    """Per target x mode x layout group x stage: intensity, bound and predicted time under ``peak``."""
    costs = costs or _Costs(collected, peak.dtype)
    rows = []
    for target, mode, pages in _groups(collected):
        by_stage = costs.stages(target, mode, pages[0])
        context = collected.layout_record(target, mode, pages[0])["prefill_length"]
        for stage in collected.stages_of(target):
            cost = by_stage[stage]
            compute, memory = peak.time(cost.matmul_flops, costs.nbytes(cost))
            rows.append(StageRoof(target, mode, pages, stage, context if stage == "decode" else None,
                                  int(cost.matmul_flops), causal_flops(stage, cost), costs.nbytes(cost),
                                  compute, memory))
    return rows


def request_times(collected: Any, new_tokens: int, peak: PeakUsed | None = None,
                  costs: _Costs | None = None) -> list[RequestTime]:
    """Per target x mode x layout group: FLOPs (and, with ``peak``, TTFT, TPOT and the time) of a
    request generating ``new_tokens`` tokens."""
    costs = costs or _Costs(collected, peak.dtype if peak is not None else "bf16")
    rows = []
    for target, mode, pages in _groups(collected):
        by_stage = costs.stages(target, mode, pages[0])
        length = collected.layout_record(target, mode, pages[0])["prefill_length"]
        vision = collected.stages_of(target)[:3]
        steps = new_tokens - 1
        first, second = costs.decode(target, length), costs.decode(target, length + 1)
        tri = steps * (steps - 1) // 2
        decode_flops = steps * first.matmul_flops + tri * (second.matmul_flops - first.matmul_flops)
        row = dict(target=target, mode=mode, pages=pages, prefill_length=length, new_tokens=new_tokens,
                   vision_flops=sum(by_stage[s].matmul_flops for s in vision),
                   prefill_flops=by_stage["prefill"].matmul_flops, decode_flops=int(decode_flops))
        if peak is not None:
            nb = costs.nbytes
            ttft = sum(max(*peak.time(by_stage[s].matmul_flops, nb(by_stage[s]))) for s in (*vision, "prefill"))
            tpot = max(*peak.time(first.matmul_flops, nb(first)))
            # affine in the context: step k costs first + k * (second - first), exactly; the time of a
            # step is the larger of two affine terms, so the sum over the steps has a closed form
            compute0, memory0 = peak.time(first.matmul_flops, nb(first))
            compute1, memory1 = peak.time(second.matmul_flops, nb(second))
            decode_s = sum_max_affine(compute0, compute1 - compute0, memory0, memory1 - memory0, steps)
            row.update(ttft_s=ttft, tpot_s=tpot, total_s=ttft + decode_s)
        rows.append(RequestTime(**row))
    return rows


# ------------------------------------------------------------------------------------- serving
@dataclass(frozen=True)
class ServingMode:
    """The serving prediction of one target x mode on the headline page: memory, capacity, and a
    :class:`harness.gpu.serving.BatchRow` per batch and execution (the largest fitting batch added)."""

    target: str
    mode: str
    page: str
    prefill_length: int
    new_tokens: int
    kv_bytes_per_token: int
    attention_kind: str
    weight_bytes: int
    capacity: dict[str, Any]        # execution -> harness.gpu.serving.Capacity
    rows: list[Any]                 # BatchRow, vendor then engine, by batch
    decode_bound: dict[str, Any]    # execution -> harness.gpu.serving.DecodeBound

    def as_dict(self) -> dict[str, Any]:
        return {"target": self.target, "mode": self.mode, "page": self.page, "prefill_length": self.prefill_length,
                "new_tokens": self.new_tokens, "kv_bytes_per_token": self.kv_bytes_per_token,
                "attention_kind": self.attention_kind, "weight_bytes": self.weight_bytes,
                "capacity": {k: v.as_dict() for k, v in self.capacity.items()},
                "rows": [r.as_dict() for r in self.rows],
                "decode_compute_bound": {k: v.as_dict() for k, v in self.decode_bound.items()}}


def serving_modes(collected: Any, plan: PerfPlan, peak: PeakUsed, costs: _Costs | None = None) -> list[ServingMode]:
    """Per target x mode, on the headline page: the throughput at each ``plan.batches`` and at the largest
    concurrency that fits ``peak``'s card, for the vendor code and the serving engine."""
    from harness.analytic import load_dims
    from harness.gpu import serving

    costs = costs or _Costs(collected, peak.dtype, plan.bytes_convention)
    page = collected.plan.plot_page or collected.plan.pages[0].page_id
    out = []
    for tplan in collected.plan.targets:
        target = tplan.name
        config = None   # the analytic model's LM config, as every other figure of the report (harness/data)
        lm = load_dims(target, config).lm
        attn = costs.attn(target)
        for mode in tplan.modes:
            layout = collected.layouts[(target, mode, page)]
            length = collected.layout_record(target, mode, page)["prefill_length"]
            caps, rows, bounds = {}, [], {}
            for execution in serving.EXECUTIONS:
                cap = serving.capacity(target, peak.label, length, plan.new_tokens, execution=execution, config=config,
                                       dtype_bytes=costs.dtype_bytes)
                caps[execution] = cap
                batches = list(plan.batches)
                if cap.max_concurrency and cap.max_concurrency not in batches:
                    batches.append(cap.max_concurrency)
                rows += serving.batch_rows(target, mode, layout, length, sorted(batches), peak,
                                           new_tokens=plan.new_tokens, execution=execution,
                                           bytes_convention=plan.bytes_convention,
                                           max_concurrency=cap.max_concurrency, config=config,
                                           attn_implementation=attn, dtype_bytes=costs.dtype_bytes)
                bounds[execution] = serving.compute_bound_batch(target, length, peak, execution=execution,
                                                                bytes_convention=plan.bytes_convention,
                                                                config=config, attn_implementation=attn,
                                                                dtype_bytes=costs.dtype_bytes)
            out.append(ServingMode(target, mode, page, length, plan.new_tokens,
                                   serving.kv_bytes_per_token(lm, costs.dtype_bytes), serving.attention_kind(lm),
                                   serving.weight_bytes(target, config, costs.dtype_bytes), caps, rows, bounds))
    return out


def context_limit(target: str) -> int | None:
    """The LM's ``max_position_embeddings`` in the configuration the analytic model reads."""
    from harness.analytic import load_dims

    return load_dims(target).lm.max_positions


def context_warnings(requests: list[RequestTime]) -> list[str]:
    """One line per target whose requests reach past its LM's context limit."""
    lines = []
    for target in dict.fromkeys(r.target for r in requests):
        limit = context_limit(target)
        rows = [r for r in requests if r.target == target]
        longest = max(rows, key=lambda r: r.prefill_length + r.new_tokens)
        context = longest.prefill_length + longest.new_tokens
        if limit is not None and context > limit:
            lines.append(f"--new-tokens {longest.new_tokens:,}: {target} {longest.mode} reaches a context of "
                         f"{context:,} tokens ({longest.prefill_length:,} prefill + {longest.new_tokens:,} new), "
                         f"past its LM's max_position_embeddings of {limit:,}; the model cannot generate that "
                         "far, and the per-page totals extrapolate the decode cost beyond it")
    return lines


# ------------------------------------------------------------------------------------- measured
@dataclass(frozen=True)
class MeasuredStage:
    """One timed stage on the measuring device, against its analytic cost and the measured peak."""

    target: str
    mode: str
    page: str
    stage: str
    context: int | None
    timing: Any                     # harness.gpu.timing.TimingResult
    flops: int
    causal_flops: int
    bytes: int
    peak: PeakUsed
    batch: int = 1                  # --measure --batch: pages timed together

    @property
    def label(self) -> str:
        text = self.stage if self.context is None else f"{self.stage} (context {self.context})"
        return text if self.batch == 1 else f"{text} ×{self.batch}"

    @property
    def achieved_flops(self) -> float:
        return self.flops / self.timing.median_s

    @property
    def mfu(self) -> float:
        return self.achieved_flops / (self.peak.tflops * 1e12)

    @property
    def mfu_causal(self) -> float:
        return self.causal_flops / self.timing.median_s / (self.peak.tflops * 1e12)

    @property
    def predicted_s(self) -> float:
        return self.peak.roof(self.flops, self.bytes).predicted_s

    @property
    def bound(self) -> str:
        return self.peak.roof(self.flops, self.bytes).bound

    def as_dict(self) -> dict[str, Any]:
        return {"target": self.target, "mode": self.mode, "page": self.page, "stage": self.stage,
                "decode_context": self.context, "batch": self.batch, "matmul_flops": self.flops,
                "matmul_flops_causal_convention": self.causal_flops, "bytes": self.bytes,
                "timing": self.timing.as_dict(), "achieved_flops_per_s": self.achieved_flops, "mfu": self.mfu,
                "mfu_causal_convention": self.mfu_causal, "roofline_predicted_s": self.predicted_s,
                "bound": self.bound, "measured_over_predicted": self.timing.median_s / self.predicted_s}


@dataclass
class PerfResult:
    """The performance part of a report."""

    plan: PerfPlan
    assumptions: str = ""
    gpu_peak: PeakUsed | None = None
    roofline: list[StageRoof] = field(default_factory=list)
    requests: list[RequestTime] = field(default_factory=list)
    device_peak: PeakUsed | None = None
    peak_measurement: Any = None    # harness.gpu.achievable.MeasuredPeak
    measured: list[MeasuredStage] = field(default_factory=list)
    measured_context: dict[str, Any] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)   # requested timings that produced nothing
    serving: list["ServingMode"] = field(default_factory=list)    # --batch with --gpu
    warnings: list[str] = field(default_factory=list)   # what the numbers go on with (a context too long)

    def as_dict(self) -> dict[str, Any]:
        return {"assumptions": self.assumptions, "new_tokens": self.plan.new_tokens,
                "batches": list(self.plan.batches),
                "serving": [s.as_dict() for s in self.serving],
                "gpu_peak": None if self.gpu_peak is None else self.gpu_peak.as_dict(),
                "roofline": [r.as_dict() for r in self.roofline],
                "requests": [r.as_dict() for r in self.requests],
                "device_peak": None if self.device_peak is None else self.device_peak.as_dict(),
                "peak_measurement": None if self.peak_measurement is None else self.peak_measurement.as_dict(),
                "measured": [m.as_dict() for m in self.measured], "measured_context": self.measured_context,
                "problems": list(self.problems), "warnings": list(self.warnings)}


def measure_stages(collected: Any, plan: PerfPlan, peak: PeakUsed, *, say: Any = None) -> tuple[list[MeasuredStage], dict, list[str]]:
    """Time every stage of each counted target on ``plan.measure_device``, per mode, on the report's
    headline page (``--plot-page``); decode at that page's context. Random weights (values never
    change time for dense work; the MoE routing of random weights is as good as any)."""
    import torch

    from harness.analytic import stage_costs
    from harness.gpu.measure import measure_calls
    from harness.gpu.profile import analytic_config, unshare_expanded_parameters
    from harness.gpu.serving import batch_calls, batched_stage_costs
    from harness.targets import get_target

    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "tf32": torch.float32,
             "fp32": torch.float32}[plan.measure_dtype]
    device = plan.measure_device
    cplan = collected.plan
    page_id = cplan.plot_page or cplan.pages[0].page_id
    page = next(p for p in cplan.pages if p.page_id == page_id)
    rows: list[MeasuredStage] = []
    problems: list[str] = []
    context: dict[str, Any] = {"device": device, "dtype": plan.measure_dtype, "page": page_id,
                               "configuration": "small (shrunken)" if plan.small else "full",
                               "warmup": plan.warmup, "repeats": plan.repeats}
    for tplan in cplan.targets:
        if tplan.unavailable:
            problems.append(f"--measure: {tplan.name} cannot run here ({tplan.unavailable})")
            continue
        try:
            target = get_target(tplan.name, model_path=cplan.model_path, trust_remote_code=cplan.trust_remote_code)
            if say:
                say(f"timing {tplan.name} on {device} ({context['configuration']} configuration, "
                    f"{plan.measure_dtype}) ...")
            built = target.build(device, dtype, small=plan.small)
            unshare_expanded_parameters(built.model)
            config = analytic_config(built, cplan.model_path)
            itemsize = _dtype_bytes(plan.measure_dtype)
            context[f"{tplan.name} build"] = (f"attention {built.attn_implementation}, experts "
                                              f"{built.experts_implementation}, {built.weights}")
            from harness.inputs.pages import ensure_page_image

            source = page if page.path is None else (page.path if page.attributes.get("generator") is None
                                                     else ensure_page_image(page))
            for mode in tplan.modes:
                inputs = target.prepare(source, mode, device=device, dtype=dtype)
                length = inputs.seq_len
                costs = stage_costs(tplan.name, inputs.layout, text_tokens=inputs.prompt_tokens, config=config,
                                    dtype_bytes=itemsize, attn_implementation=built.attn_implementation)
                for batch in plan.batches or (1,):
                    at_batch = costs if batch == 1 else batched_stage_costs(  # harness.gpu.serving's batch model
                        tplan.name, inputs.layout, batch, length=length, config=config,
                        attn_implementation=built.attn_implementation, dtype_bytes=itemsize)
                    for stage in target.stages:
                        ctx = length if stage == "decode" else None
                        calls = (target.stage_calls(built, inputs, stage, decode_context=ctx) if ctx
                                 else target.stage_calls(built, inputs, stage))
                        calls = batch_calls(calls, batch)
                        timing = measure_calls(calls, warmup=plan.warmup, repeats=plan.repeats, device=device)
                        del calls
                        cost = at_batch[stage]
                        rows.append(MeasuredStage(tplan.name, mode, page_id, stage, ctx, timing,
                                                  int(cost.matmul_flops), causal_flops(stage, cost),
                                                  stage_bytes(cost, plan.bytes_convention), peak, batch))
                del inputs
            del built
        except (KeyboardInterrupt, MemoryError):
            raise
        except Exception as exc:  # reported, and the exit code says so
            problems.append(f"--measure: timing {tplan.name} on {device} failed: {type(exc).__name__}: {exc}")
    return rows, context, problems


def run_perf(collected: Any, plan: PerfPlan, *, say: Any = None) -> PerfResult:
    """Everything ``--gpu`` and ``--measure`` ask for."""
    result = PerfResult(plan)
    if plan.gpu is not None:
        result.gpu_peak = table_peak(plan.gpu, plan.dtype)
        costs = _Costs(collected, plan.dtype, plan.bytes_convention)
        result.roofline = roofline_rows(collected, result.gpu_peak, costs)
        result.requests = request_times(collected, plan.new_tokens, result.gpu_peak, costs)
        if plan.batches:
            result.serving = serving_modes(collected, plan, result.gpu_peak, costs)
    else:
        result.requests = request_times(collected, plan.new_tokens)
    result.warnings = context_warnings(result.requests)
    result.assumptions = ASSUMPTIONS.format(bytes=BYTES_TEXT[plan.bytes_convention])
    if plan.measure_device is not None:
        from harness.gpu.achievable import measure_peak

        if say:
            say(f"measuring the achievable peak on {plan.measure_device} ({plan.measure_dtype}) ...")
        result.peak_measurement = measure_peak(plan.measure_device, plan.measure_dtype, warmup=plan.warmup,
                                               repeats=plan.repeats)
        result.device_peak = measured_peak(result.peak_measurement, tflops=plan.peak_tflops,
                                           bandwidth=plan.peak_bandwidth)
        result.measured, result.measured_context, result.problems = measure_stages(
            collected, plan, result.device_peak, say=say)
        if not result.measured and not result.problems:
            result.problems.append("--measure: no stage was timed")
    return result
