"""torch ``FlopCounterMode``: FLOPs (2 per multiply-add) per aten op and module, stock or patched.

Owns the torch counter adapter: the scoped ``custom_mapping`` formulas the patched variant adds,
and the dispatch recorder that lists what FlopCounterMode ran without a formula. The rules and
their reasons: docs/counters.md, "torch".
"""

from __future__ import annotations

from collections import Counter as Tally
from typing import Any, Callable, Sequence

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode, flop_registry

from harness.run.callmemo import memoised_call_work, meta_signature

from .base import Counter, CounterError, StageCount, Tallies, register_counter
from .keys import UNMAPPED, op_key
from .observe import (FunctionCall, FunctionRecorder, ModuleStack, call_inputs, grouped_mm_macs,
                      iter_tensors, sdpa_macs)

__all__ = ["TorchCounter", "patched_formulas", "ZERO_FLOP_ATEN_OPS", "RAN_AS", "LAYOUT_CAUSE", "LAYOUT_FIXES",
           "recording_dataflow"]

aten = torch.ops.aten


# Formulas for the patched variant (shape arithmetic, as torch's own; FLOPs = 2 x MACs) ------------

def sdpa_cpu_flop(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    """Count flops for CPU flash SDPA: 2 * (QK^T + AV) MACs; masks and causality not discounted."""
    qk, av = sdpa_macs(query_shape, key_shape, value_shape)
    return 2 * (qk + av)


def grouped_mm_flop(a_shape, b_shape, *args, out_shape=None, **kwargs) -> int:
    """Count flops for grouped mm: 2 * out.numel() * K (2d x 2d: 2 * M * K * N)."""
    return 2 * grouped_mm_macs(a_shape, b_shape, out_shape)


def _bshd_attention_flop(torch_formula: Callable, offsets_at: int) -> Callable:
    """The FLOPs of a fused attention kernel whose dense inputs are laid out (batch, seq, heads,
    dim): 4*B*H*Lq*Lk*d (QK^T + AV, dq and dv apart). Packed (nested / varlen) inputs, with
    cumulative offsets at argument ``offsets_at``, are read correctly by torch's own formula."""
    def formula(query, key, value, *args, out_val=None, **kwargs) -> int:
        if len(args) > offsets_at - 3 and args[offsets_at - 3] is not None:
            return int(torch_formula(query, key, value, *args, **kwargs))
        qk, av = sdpa_macs(_bhsd(query.shape), _bhsd(key.shape), _bhsd(value.shape))
        return 2 * (qk + av)
    formula._get_raw = True  # type: ignore[attr-defined]
    return formula


def _bhsd(shape: Sequence[int]) -> tuple[int, ...]:
    """(batch, seq, heads, dim) -> (batch, heads, seq, dim)."""
    b, s, h, d = (int(v) for v in shape)
    return b, h, s, d


#: torch 2.13 formulas that read the dense (batch, seq, heads, dim) layout of the fused attention
#: kernels as (batch, heads, seq, dim) (``sdpa_flop_count(query.shape, ...)``): packet -> (the
#: corrected formula, the cause stock torch's figure is named by). With (2, 128, 8, 64) inputs
#: torch counts 4*2*128*8*8*64 = 4,194,304 instead of 4*2*8*128*128*64 = 67,108,864. The varlen
#: forms (``_varlen_attn``) always pass offsets and take torch's correct packed path.
LAYOUT_CAUSE = "torch 2.13 reads fused attention (B, S, H, D) inputs as (B, H, S, D)"
LAYOUT_FIXES: dict[Any, tuple[Callable, str]] = {
    aten._flash_attention_forward: (
        _bshd_attention_flop(flop_registry[aten._flash_attention_forward], 3),
        "aten._flash_attention_forward, dense (B, S, H, D) inputs: 4*B*H*Lq*Lk*d"),
    aten._efficient_attention_forward: (
        _bshd_attention_flop(flop_registry[aten._efficient_attention_forward], 4),
        "aten._efficient_attention_forward, dense (B, M, H, K) inputs: 4*B*H*Lq*Lk*d"),
}


def patched_formulas() -> tuple[dict[Any, Callable], list[str]]:
    """``custom_mapping`` for the patched FlopCounterMode, and a line per patch (or skip).

    A formula torch lacks is added; a formula torch has is kept, except the ones in
    :data:`LAYOUT_FIXES`, which are replaced by the corrected formula (stock torch's figure is
    then a sized deviation of the stock count, :data:`LAYOUT_CAUSE`)."""
    wanted: list[tuple[Any, Callable, str]] = [
        (aten._scaled_dot_product_flash_attention_for_cpu, sdpa_cpu_flop,
         "SDPA on CPU tensors (_scaled_dot_product_flash_attention_for_cpu): 4*B*H*Lq*Lk*d"),
        (aten._grouped_mm, grouped_mm_flop, "torch._grouped_mm / F.grouped_mm: 2*S*K*N"),
    ]
    fallback = _transformers_grouped_mm_fallback()
    if fallback is not None:
        wanted.append((fallback, grouped_mm_flop, "transformers::grouped_mm_fallback: 2*S*K*N"))
    mapping: dict[Any, Callable] = {}
    lines: list[str] = []
    for packet, formula, text in wanted:
        if packet in flop_registry:
            lines.append(f"not patched, torch has its own formula: {text}")
        else:
            mapping[packet] = formula
            lines.append(f"formula registered: {text}")
    for packet, (formula, text) in LAYOUT_FIXES.items():
        mapping[packet] = formula
        lines.append(f"formula corrected ({LAYOUT_CAUSE}): {text}")
    return mapping, lines


def _transformers_grouped_mm_fallback() -> Any:
    try:
        return torch.ops.transformers.grouped_mm_fallback
    except (AttributeError, RuntimeError):
        return None


# Ops that move or describe data: 0 FLOPs by nature (the analogue of fvcore's _IGNORED_OPS) --------
ZERO_FLOP_ATEN_OPS = frozenset({
    "alias", "arange", "as_strided", "cat", "chunk", "clone", "constant_pad_nd", "contiguous",
    "copy", "copy_", "detach", "diagonal", "embedding", "empty", "empty_like", "empty_strided",
    "eq", "expand", "expand_as", "fill", "fill_", "flatten", "full", "full_like", "gather", "ge",
    "gt", "index", "index_put", "index_put_", "index_select", "is_nonzero", "item", "le", "lift_fresh",
    "lift_fresh_copy", "linspace", "lt", "masked_fill", "masked_fill_", "masked_scatter",
    "masked_scatter_", "narrow", "ne", "new_empty", "new_empty_strided", "new_full", "new_ones",
    "new_zeros", "nonzero", "one_hot", "ones", "ones_like", "permute", "repeat", "repeat_interleave",
    "reshape", "resize_", "roll", "scalar_tensor", "select", "slice", "slice_scatter", "sort",
    "split", "split_with_sizes", "squeeze", "stack", "t", "topk", "transpose", "unbind", "unflatten",
    "unfold", "unsqueeze", "view", "view_as", "where", "zero_", "zeros", "zeros_like", "_local_scalar_dense",
    "_reshape_alias", "_to_copy", "_unsafe_view", "bitwise_not", "bitwise_and", "logical_not",
    "argmax", "argsort", "max", "min", "tril", "triu", "histc", "bincount", "cumsum", "floor_divide",
    "remainder", "isin", "all", "any", "_assert_async", "_assert_tensor_metadata", "sym_size",
    "sym_stride", "sym_numel", "sym_storage_offset", "size", "stride", "dim", "numel", "is_contiguous",
    "sym_is_contiguous", "is_strides_like_format", "is_non_overlapping_and_dense", "storage_offset",
    "_has_compatible_shallow_copy_type", "set_", "_unsafe_index", "index_add", "index_add_",
    "scatter", "scatter_", "scatter_add", "scatter_add_", "pad", "_pad_enum", "zero", "clamp",
    "clamp_", "floor", "ceil", "round", "sign",
})


def _aten_name(packet: Any) -> str:
    return str(packet)  # "aten.mm"


def _short(name: str) -> str:
    parts = name.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


#: How a counted product ran, when that hides it from a tool that reads the model another way
#: (``StageCount.ran_as``; each product in at most one, in this order of precedence):
#: ``torchscript`` -- no Python-level torch call was in progress (a scripted function or module);
#: ``autograd_function`` -- inside the forward of a custom ``torch.autograd.Function``;
#: ``unused`` -- its result reaches no output of the call (recorded only while
#: :func:`recording_dataflow` is on: it follows every op's inputs to the outputs).
RAN_AS = ("torchscript", "autograd_function", "unused")

_DATAFLOW = [0]


class recording_dataflow:
    """While active (any thread), the torch counter follows the dataflow of every call to size
    the products whose results reach no output (``ran_as["unused"]``). ``harness.count`` turns
    it on, to size what fvcore's trace drops; the suite does not, and does not pay for it."""

    def __enter__(self) -> "recording_dataflow":
        _DATAFLOW[0] += 1
        return self

    def __exit__(self, *exc: Any) -> None:
        _DATAFLOW[0] -= 1


def _in_autograd_function() -> bool:
    """True when a custom ``torch.autograd.Function`` forward is on the Python stack."""
    import sys

    frame = sys._getframe(2)
    while frame is not None:
        code = frame.f_code
        if code.co_name == "apply" and code.co_filename.endswith(("autograd/function.py", "autograd\\function.py")):
            return True
        frame = frame.f_back
    return False


class _Dataflow:
    """Which op produced each live tensor, and each op's producers: enough to tell, at the end
    of a call, which counted products reach its outputs. Tensors are held weakly."""

    def __init__(self) -> None:
        from torch.utils.weak import WeakIdKeyDictionary

        self.producer = WeakIdKeyDictionary()
        self.inputs: list[tuple[int, ...]] = []
        self.roots: list[int] = []
        self.products: dict[int, int] = {}   # node -> FLOPs (counted, not otherwise classed)

    def add(self, func: Any, args: Any, kwargs: Any, out: Any) -> int:
        node = len(self.inputs)
        sources = {self.producer[t] for t in iter_tensors((args, kwargs)) if t in self.producer}
        self.inputs.append(tuple(sources))
        if getattr(func, "_schema", None) is not None and func._schema.is_mutable:
            self.roots.append(node)   # a write to something: kept (a trace keeps side effects)
        for t in iter_tensors(out):
            self.producer[t] = node
        return node

    def unused_flops(self, output: Any) -> int:
        from .fvcore_counter import _output_tensors  # the outputs a trace keeps: the same rule

        live: set[int] = set(self.roots)
        live.update(self.producer[t] for t in _output_tensors(output) if t in self.producer)
        todo = list(live)
        while todo:
            for src in self.inputs[todo.pop()]:
                if src not in live:
                    live.add(src)
                    todo.append(src)
        return sum(f for node, f in self.products.items() if node not in live)


class _AtenRecorder(TorchDispatchMode):
    """Sees every aten op FlopCounterMode executed (it sits below it), keys the counted ones."""

    def __init__(self, registry: dict, functions: FunctionRecorder, stack: ModuleStack) -> None:
        super().__init__()
        self.registry = registry
        self.functions = functions
        self.stack = stack
        self.ran_as: Tally = Tally()
        self.unseen: Tally = Tally()      # FLOPs of uncounted kernels inside another function
        self.unseen_ops: Tally = Tally()
        self.dataflow = _Dataflow() if _DATAFLOW[0] else None
        self.by_key: Tally = Tally()
        self.counted_total = 0
        self.unknown: Tally = Tally()
        self.ignored: Tally = Tally()
        self.notes: list[str] = []
        self.deviations: Tally = Tally()
        self._ordinals: dict[int, int] = {}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        packet = func._overloadpacket
        name = _aten_name(packet)
        if packet in self.registry:
            flops = int(self.registry[packet](*args, **kwargs, out_val=out))
            fix = LAYOUT_FIXES.get(packet)
            if fix is not None and self.registry[packet] is not fix[0]:  # stock: size its error
                self.deviations[LAYOUT_CAUSE] += flops - int(fix[0](*args, **kwargs, out_val=out))
            node = self.dataflow.add(func, args, kwargs, out) if self.dataflow is not None else None
            if flops:
                self._attribute(name, args, flops)
                if self.functions.depth == 0:
                    self.ran_as["torchscript"] += flops
                elif _in_autograd_function():
                    self.ran_as["autograd_function"] += flops
                elif node is not None:
                    self.dataflow.products[node] = flops
            return out
        if self.dataflow is not None:
            self.dataflow.add(func, args, kwargs, out)
        if _short(name) in ZERO_FLOP_ATEN_OPS or name.startswith("prim."):
            self.ignored[name] += 1
        else:
            self.unknown[name] += 1
            call = self.functions.current
            if packet is aten._scaled_dot_product_flash_attention_for_cpu and (call is None or call.kind != "sdpa"):
                # SDPA run by another function (F.multi_head_attention_forward): not a call of
                # its own for the recorder, so size the uncounted kernel here
                qk, av = sdpa_macs(args[0].shape, args[1].shape, args[2].shape)
                self.unseen["sdpa_qk"] += 2 * qk
                self.unseen["sdpa_av"] += 2 * av
                self.unseen_ops[name] += 2 * (qk + av)
        return out

    def _attribute(self, name: str, args: Sequence[Any], flops: int) -> None:
        self.counted_total += flops
        call: FunctionCall | None = self.functions.current
        if call is not None:
            call.counted += flops
        if "attention" in name:  # a fused SDPA kernel: split QK^T / AV from the shapes
            qk, av = sdpa_macs(args[0].shape, args[1].shape, args[2].shape)
            qk_flops = flops * qk // (qk + av) if qk + av else 0
            if "scaled_dot_product" in name and 2 * (qk + av) != flops:
                self.notes.append(f"{name}: formula gave {flops:,} FLOPs, reference {2 * (qk + av):,}")
            self.by_key["sdpa_qk"] += qk_flops
            self.by_key["sdpa_av"] += flops - qk_flops
            return
        if call is not None and call.kind == "sdpa":  # SDPA decomposed (meta / math path): bmm, bmm
            n = self._ordinals.get(call.seq, 0)
            self._ordinals[call.seq] = n + 1
            self.by_key["sdpa_qk" if n == 0 else "sdpa_av" if n == 1 else UNMAPPED] += flops
            return
        if call is not None:
            self.by_key[call.key] += flops
            return
        kind = ("conv" if "convolution" in name else "grouped_mm" if "grouped_mm" in name else "matmul")
        self.by_key[op_key(kind, self.stack.snapshot())] += flops


def _map_module_name(name: str, root_type: str, root_path: str) -> str:
    """FlopCounterMode names modules ``<RootClass>.<child>...``; make them model paths."""
    if name == root_type:
        return root_path
    if name.startswith(root_type + "."):
        rest = name[len(root_type) + 1:]
        return f"{root_path}.{rest}" if root_path else rest
    return f"{root_path}::{name}" if root_path else name


@register_counter
class TorchCounter(Counter):
    """torch.utils.flop_counter.FlopCounterMode (FLOPs, 2 per MAC)."""

    name = "torch"
    convention = "flop"
    description = "torch.utils.flop_counter.FlopCounterMode over aten ops; FLOPs = 2 x MACs"

    def version(self) -> str:
        return f"torch {torch.__version__}"

    def run(self, calls: Sequence[Any], *, variant: str) -> StageCount:
        """One FlopCounterMode run per call, summed. Inside :func:`harness.run.callmemo.call_memo` a
        call on meta that ran before (same module, path and signature) adds that run's counts."""
        mapping, patch_lines = patched_formulas() if variant == "patched" else ({}, [])
        total = _CallCounts()
        for call in calls:
            args, kwargs = call_inputs(call)
            part = memoised_call_work(f"torch:{variant}:{call.module_path}", call.module,
                                      meta_signature(call.module, args, kwargs),
                                      lambda: _count_call(call, args, kwargs, mapping))
            total.merge(part)
        notes = list(total.notes)
        if "meta" in total.devices:
            notes.append("on meta, SDPA takes the math path and is counted as two bmm per call")
        return StageCount(
            counter=self.name, variant=variant, version=self.version(), target="", stage="",
            raw=total.raw, convention=self.convention, flops=total.raw, by_op=dict(total.by_op),
            by_key={k: v for k, v in total.by_key.items() if v}, unknown_ops=dict(total.unknown),
            ignored_ops=dict(total.ignored), wall_time_s=0.0, by_module=dict(total.by_module),
            unseen={k: v for k, v in total.unseen.items() if v}, unseen_ops=dict(total.unseen_ops),
            deviations={k: v for k, v in total.deviations.items() if v},
            ran_as={k: v for k, v in total.ran_as.items() if v}, patches=tuple(patch_lines), notes=_dedupe(notes), devices=tuple(sorted(total.devices)))


class _CallCounts(Tallies):
    """What FlopCounterMode and the recorders saw in one call (or, summed, in a stage): FLOPs,
    and the devices of the inputs."""

    def __init__(self) -> None:
        super().__init__()
        self.devices: set[str] = set()
        self.deviations: Tally = Tally()
        self.ran_as: Tally = Tally()

    def merge(self, other: "_CallCounts") -> None:
        super().merge(other)
        self.devices.update(other.devices)
        self.deviations.update(other.deviations)
        self.ran_as.update(other.ran_as)


def _count_call(call: Any, args: tuple, kwargs: dict, mapping: dict) -> _CallCounts:
    part = _CallCounts()
    part.devices.update(t.device.type for t in iter_tensors((args, kwargs)))
    stack = ModuleStack(call.module, call.module_path)
    functions = FunctionRecorder(stack)
    mode = FlopCounterMode(display=False, custom_mapping=mapping)
    recorder = _AtenRecorder(mode.flop_registry, functions, stack)
    with torch.no_grad(), stack, functions, recorder, mode:
        output = call.module(*args, **kwargs)
    if recorder.dataflow is not None:
        recorder.ran_as["unused"] += recorder.dataflow.unused_flops(output)
    del output
    total = mode.get_total_flops()
    if total != recorder.counted_total:
        raise CounterError(f"torch counter: FlopCounterMode counted {total:,} FLOPs but the "
                           f"recorder attributed {recorder.counted_total:,} in "
                           f"{call.module_path!r}; the attribution is broken")
    part.raw = total
    counts = mode.get_flop_counts()
    for packet, value in counts.get("Global", {}).items():
        part.by_op[_aten_name(packet)] += value
    root_type = type(call.module).__name__
    for name, ops in counts.items():
        if name != "Global":
            part.by_module[_map_module_name(name, root_type, call.module_path)] += sum(ops.values())
    part.by_key.update(recorder.by_key)
    part.unknown.update(recorder.unknown)
    part.ignored.update(recorder.ignored)
    part.notes.extend(recorder.notes)
    part.deviations.update(recorder.deviations)
    part.ran_as.update(recorder.ran_as)
    part.unseen.update(recorder.unseen)
    part.unseen_ops.update(recorder.unseen_ops)
    for fcall in functions.calls:  # products that ran and that torch counted 0 for
        reference = 2 * fcall.total_macs
        if fcall.counted == 0 and reference:
            for key, macs in fcall.keyed_macs().items():
                part.unseen[key] += 2 * macs
            part.unseen_ops[fcall.name] += reference
        elif fcall.counted and fcall.counted != reference:
            part.notes.append(f"{fcall.name} at {fcall.path}: torch counted {fcall.counted:,} "
                              f"FLOPs, reference formula {reference:,}")
    functions.release()
    return part


def _dedupe(lines: list[str]) -> list[str]:
    seen = Tally(lines)
    return [line if n == 1 else f"{line} (x{n})" for line, n in seen.items()]
