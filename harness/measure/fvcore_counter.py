"""fvcore ``FlopCountAnalysis``: a TorchScript trace and per-op handles, in MACs (``flops = 2 * raw``).

Owns the fvcore adapter: the positional wrapper for the trace, the patched handles, the observed
handles that key each count, and :class:`ConvTracedAsOnCpu` (convolutions traced on meta). The
rules and their reasons: docs/counters.md, "fvcore".
"""

from __future__ import annotations

import contextlib
import dataclasses
import warnings
from collections import Counter as Tally
from collections.abc import Mapping
from typing import Any, Callable, Iterator, Sequence

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from harness.run.callmemo import memoised_call_work, meta_signature

from .base import Counter, CounterError, StageCount, Tallies, register_counter
from .keys import is_matmul_like, op_key
from .observe import ModuleStack, call_inputs, einsum_macs, grouped_mm_macs, iter_tensors, prod, sdpa_macs

__all__ = ["EINSUM_ROUNDING", "ConvTracedAsOnCpu", "FvcoreCounter", "PositionalWrapper", "sdpa_flop_jit", "grouped_mm_flop_jit",
           "einsum_exact_jit", "baddbmm_flop_jit", "scaled_mm_flop_jit"]

_WRAPPER_CHILD = "module"

#: fvcore's einsum handle reads numpy's ``einsum_path`` report, which prints the FLOP count with 4
#: significant digits ("Optimized FLOP count:  8.781e+06"), so every einsum it counts through the
#: numpy path is rounded: the deviation from the exact label product is kept under this cause.
EINSUM_ROUNDING = "fvcore einsum handle rounds to 4 significant digits"


class PositionalWrapper(nn.Module):
    """Calls ``module(*args, **kwargs)`` from positional tensors, for ``torch.jit.trace``.

    ``inputs`` holds the tensor leaves of ``(args, kwargs)``; ``forward(*inputs)`` rebuilds the
    arguments (non-tensor leaves are constants) and returns the output's tensors as a tuple.
    """

    def __init__(self, module: nn.Module, args: tuple, kwargs: dict) -> None:
        super().__init__()
        self.module = module
        leaves, self._spec = torch.utils._pytree.tree_flatten((tuple(args), dict(kwargs)))
        self._leaves = leaves
        self._tensor_positions = [i for i, leaf in enumerate(leaves) if isinstance(leaf, torch.Tensor)]
        self.inputs = tuple(leaves[i] for i in self._tensor_positions)

    def forward(self, *tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
        leaves = list(self._leaves)
        for position, tensor in zip(self._tensor_positions, tensors):
            leaves[position] = tensor
        args, kwargs = torch.utils._pytree.tree_unflatten(leaves, self._spec)
        return tuple(_output_tensors(self.module(*args, **kwargs)))


def _output_tensors(value: Any) -> list[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, Mapping):  # transformers ModelOutput is an OrderedDict
        return [t for v in value.values() for t in _output_tensors(v)]
    if isinstance(value, (tuple, list)):
        return [t for v in value for t in _output_tensors(v)]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return [t for f in dataclasses.fields(value) for t in _output_tensors(getattr(value, f.name))]
    return []  # a cache object or a constant: not an output of the trace


# Handles (jit Values in, MACs out) ---------------------------------------------------------------

def _shape(value: Any) -> list[int] | None:
    return value.type().sizes() if value.isCompleteTensor() else None


def sdpa_flop_jit(inputs: list[Any], outputs: list[Any]) -> int:
    """Count MACs for aten::scaled_dot_product_attention: B*H*Lq*Lk*(dq + dv)."""
    qk, av = sdpa_macs(_shape(inputs[0]), _shape(inputs[1]), _shape(inputs[2]))
    return qk + av


def grouped_mm_flop_jit(inputs: list[Any], outputs: list[Any]) -> int:
    """Count MACs for aten::_grouped_mm: out.numel() * K (2d x 2d: M * K * N)."""
    return grouped_mm_macs(_shape(inputs[0]), _shape(inputs[1]), _shape(outputs[0]))


def einsum_exact_jit(inputs: list[Any], outputs: list[Any]) -> int:
    """Count MACs for aten::einsum: the product of every label's size (two operands)."""
    equation = inputs[0].toIValue()
    shapes = [_shape(v) for v in inputs[1].node().inputs()]
    return einsum_macs(equation, shapes)


def baddbmm_flop_jit(inputs: list[Any], outputs: list[Any]) -> int:
    """Count MACs for aten::baddbmm(input, batch1, batch2): b*n*m*p (the scaled add not counted)."""
    return prod(_shape(outputs[0])) * _shape(inputs[1])[-1]


def scaled_mm_flop_jit(inputs: list[Any], outputs: list[Any]) -> int:
    """Count MACs for aten::_scaled_mm(a, b, scale_a, scale_b, ...): M*K*N (scales not counted)."""
    return prod(_shape(outputs[0])) * _shape(inputs[0])[-1]


def _reference_jit(kind: str) -> Callable | None:
    """A reference handle sizing an unsupported product node (for ``unseen``), or None."""
    return {
        "aten::scaled_dot_product_attention": sdpa_flop_jit,
        "aten::_grouped_mm": grouped_mm_flop_jit,
        "aten::einsum": einsum_exact_jit,
        "aten::baddbmm": baddbmm_flop_jit,
        "aten::_scaled_mm": scaled_mm_flop_jit,
        "aten::addbmm": lambda i, o: prod(_shape(i[1])) * _shape(i[2])[-1],
        "aten::mv": lambda i, o: prod(_shape(i[0])),
        "aten::dot": lambda i, o: _shape(i[0])[0],
    }.get(kind)


_KIND_BY_NODE = {
    "aten::linear": "linear", "aten::addmm": "addmm", "aten::matmul": "matmul", "aten::mm": "matmul",
    "aten::bmm": "matmul", "aten::baddbmm": "matmul", "aten::_scaled_mm": "matmul", "aten::einsum": "einsum",
    "aten::_convolution": "conv", "aten::scaled_dot_product_attention": "sdpa",
    "aten::_grouped_mm": "grouped_mm", "aten::batch_norm": "norm", "aten::group_norm": "norm",
    "aten::layer_norm": "norm", "aten::instance_norm": "norm",
    "aten::upsample_nearest2d": "interpolate", "aten::upsample_bilinear2d": "interpolate",
    "aten::adaptive_avg_pool2d": "other_elementwise", "aten::grid_sampler": "interpolate",
}


class _Observer:
    """Keys every handle's count by the node's module scope; sizes unsupported products."""

    def __init__(self, stack: ModuleStack) -> None:
        self.stack = stack
        self.by_key: Tally = Tally()          # MACs
        self.counted = 0                      # MACs
        self.ignored: Tally = Tally()
        self.unseen: Tally = Tally()          # MACs by key
        self.unseen_ops: Tally = Tally()      # MACs by node kind
        self.notes: list[str] = []
        self.deviations: Tally = Tally()      # MACs counted minus the exact reference, by cause
        self.deviation_calls = 0
        self._ordinals: Tally = Tally()

    def path_of_scope(self, scope: str) -> str:
        inner = scope.split("/")[-1]
        if inner == _WRAPPER_CHILD or not inner:
            return self.stack.root_path
        if inner.startswith(_WRAPPER_CHILD + "."):
            rest = inner[len(_WRAPPER_CHILD) + 1:]
            return f"{self.stack.root_path}.{rest}" if self.stack.root_path else rest
        return self.stack.root_path

    def _key(self, kind: str, node: Any) -> tuple[str, ...]:
        scope = node.scopeName()
        frames = self.stack.frames_for_path(self.path_of_scope(scope))
        if kind == "addmm":
            inner = frames[-1] if frames else None
            kind = "linear" if inner is not None and isinstance(inner.module, nn.Linear) else "matmul"
        ordinal = None
        if kind == "matmul":
            ordinal = self._ordinals[scope]
            self._ordinals[scope] += 1
        return (op_key(kind, frames, ordinal=ordinal),)

    def wrap(self, name: str, handle: Callable) -> Callable:
        def observed(inputs: list[Any], outputs: list[Any]) -> Any:
            value = handle(inputs, outputs)
            macs = sum(value.values()) if isinstance(value, Mapping) else value
            node = outputs[0].node()
            kind = _KIND_BY_NODE.get(name, "other_elementwise" if not is_matmul_like(name) else "matmul")
            self.counted += macs
            if kind == "sdpa":
                qk, av = sdpa_macs(_shape(inputs[0]), _shape(inputs[1]), _shape(inputs[2]))
                qk_part = macs * qk // (qk + av) if qk + av else 0
                self.by_key["sdpa_qk"] += qk_part
                self.by_key["sdpa_av"] += macs - qk_part
            else:
                (key,) = self._key(kind, node)
                self.by_key[key] += macs
            if name == "aten::einsum":
                exact = einsum_exact_jit(inputs, outputs)
                if exact != macs:
                    self.deviations[EINSUM_ROUNDING] += macs - exact
                    self.deviation_calls += 1
            return value
        return observed

    def unsupported(self, node: Any) -> None:
        kind = node.kind()
        if not is_matmul_like(kind):
            return
        reference = _reference_jit(kind)
        outputs, inputs = list(node.outputs()), list(node.inputs())
        if reference is None:
            self.notes.append(f"{kind}: a product fvcore has no handle for, and no reference size")
            return
        try:
            macs = int(reference(inputs, outputs))
        except Exception as exc:  # incomplete shapes in the trace
            self.notes.append(f"{kind}: could not size ({type(exc).__name__}: {exc})")
            return
        self.unseen_ops[kind] += macs
        if kind == "aten::scaled_dot_product_attention":
            qk, av = sdpa_macs(_shape(inputs[0]), _shape(inputs[1]), _shape(inputs[2]))
            self.unseen["sdpa_qk"] += qk
            self.unseen["sdpa_av"] += av
        else:
            kind_name = {"aten::_grouped_mm": "grouped_mm", "aten::einsum": "einsum"}.get(kind, "matmul")
            (key,) = self._key(kind_name, node)
            self.unseen[key] += macs


def _import_fvcore() -> Any:
    """Import fvcore.nn; its import scripts functions (fvcore.nn.focal_loss), which torch 2.13
    deprecates with a warning that belongs to fvcore, not to the caller's log."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*torch.jit.script.* is deprecated", category=DeprecationWarning)
        import importlib

        import fvcore.nn
        importlib.import_module("fvcore.nn.flop_count")
    return fvcore.nn


def _analysis_class() -> type:
    FlopCountAnalysis = _import_fvcore().FlopCountAnalysis

    class _ObservedFlopCountAnalysis(FlopCountAnalysis):
        """FlopCountAnalysis that tells the observer about ignored and unsupported nodes."""

        observer: _Observer

        def _should_ignore_node(self, node: Any) -> bool:
            ignore = super()._should_ignore_node(node)
            kind = node.kind()
            if not kind.startswith("prim::"):
                if ignore:
                    self.observer.ignored[kind] += 1
                else:
                    self.observer.unsupported(node)
            return ignore

    return _ObservedFlopCountAnalysis


_HOOK_DICTS = ("_forward_hooks", "_forward_pre_hooks", "_forward_hooks_with_kwargs",
               "_forward_hooks_always_called", "_forward_pre_hooks_with_kwargs")


def _hook_keys(root: nn.Module) -> dict[int, dict[str, set]]:
    return {id(m): {d: set(getattr(m, d, {})) for d in _HOOK_DICTS} for m in root.modules()}


def _remove_hooks_added_since(root: nn.Module, before: dict[int, dict[str, set]]) -> None:
    """Drop forward hooks registered after ``before`` was taken (fvcore's, left behind on error)."""
    for m in root.modules():
        saved = before.get(id(m), {})
        for name in _HOOK_DICTS:
            hooks = getattr(m, name, None)
            if hooks is None:
                continue
            for key in [k for k in hooks if k not in saved.get(name, set())]:
                del hooks[key]


def _as_int(value: int | float) -> int | float:
    return int(value) if float(value).is_integer() else value


def _has_forward(module: nn.Module) -> bool:
    return all(type(module).forward is not base.forward
               for base in (nn.ModuleList, nn.ModuleDict, nn.Module, nn.Identity))


@register_counter
class FvcoreCounter(Counter):
    """fvcore FlopCountAnalysis (MACs: "one fused multiply-add as one flop"; FLOPs = 2 x raw)."""

    name = "fvcore"
    convention = "mac"
    description = "fvcore.nn.FlopCountAnalysis (jit trace + handles); raw MACs, FLOPs = 2 x raw"
    shares_variant_runs = True

    def version(self) -> str:
        from importlib.metadata import version
        return f"fvcore {version('fvcore')}"

    def run(self, calls: Sequence[Any], *, variant: str) -> StageCount:
        return self.run_variants(calls, (variant,))[variant]

    def run_variants(self, calls: Sequence[Any], variants: Sequence[str]) -> dict[str, StageCount]:
        """One ``torch.jit.trace`` per call, read with each variant's handle table.

        Only the handle table differs between the variants; the traced graph is the same, so each
        call is traced once and every variant's ``FlopCountAnalysis`` is run over that graph. The
        tracer's warnings belong to every variant (each separate run would have raised them).
        Inside :func:`harness.run.callmemo.call_memo`, a trace on meta is kept for the next call
        with the same module and signature (its warnings with it).
        """
        import importlib

        _import_fvcore()
        jit_analysis = importlib.import_module("fvcore.nn.jit_analysis")
        handles: dict[str, dict[str, Callable]] = {}
        patches: dict[str, list[str]] = {}
        for variant in variants:
            handles[variant], patches[variant] = _handle_table(variant)
        analysis_cls = _analysis_class()
        tallies = {variant: _Tallies() for variant in variants}
        devices: set[str] = set()
        for call in calls:
            args, kwargs = call_inputs(call)
            devices.update(t.device.type for t in iter_tensors((args, kwargs)))
            wrapper = PositionalWrapper(call.module, args, kwargs)
            # inside the engine's call memo, a call traced before on meta (same module, same
            # signature) reads that trace: the graph and its scope names are the same
            graph, trace_records = memoised_call_work(
                "fvcore:trace", call.module, meta_signature(call.module, args, kwargs),
                lambda: _trace(jit_analysis, analysis_cls(wrapper, wrapper.inputs), wrapper, call, devices))
            for variant in variants:
                stack = ModuleStack(call.module, call.module_path)
                observer = _Observer(stack)
                analysis = analysis_cls(wrapper, wrapper.inputs)
                analysis.observer = observer
                analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False).tracer_warnings("all")
                analysis.set_op_handle(**{n: observer.wrap(n, h) for n, h in handles[variant].items()})
                with warnings.catch_warnings(record=True) as records, _supplied_graph(jit_analysis, wrapper, graph):
                    warnings.simplefilter("always")
                    with torch.no_grad():
                        total = analysis.total()
                if observer.counted != total:
                    raise CounterError(f"fvcore counter: analysis total {total:,} != observed handles "
                                       f"{observer.counted:,} for {call.module_path!r}")
                tallies[variant].add(call, wrapper, analysis, observer, total, [*trace_records, *records])
        return {variant: tallies[variant].result(self, variant, patches[variant], devices) for variant in variants}


def _handle_table(variant: str) -> tuple[dict[str, Callable], list[str]]:
    """fvcore's default handles, plus (patched) the harness handles; and what was patched."""
    import importlib

    _DEFAULT_SUPPORTED_OPS = importlib.import_module("fvcore.nn.flop_count")._DEFAULT_SUPPORTED_OPS
    handles: dict[str, Callable] = dict(_DEFAULT_SUPPORTED_OPS)
    patches: list[str] = []
    if variant == "patched":
        for name, handle, text in (
            ("aten::scaled_dot_product_attention", sdpa_flop_jit, "B*H*Lq*Lk*(dq+dv) MACs"),
            ("aten::_grouped_mm", grouped_mm_flop_jit, "S*K*N MACs"),
            ("aten::einsum", einsum_exact_jit, "exact label product (replaces the numpy-path handle)"),
            ("aten::baddbmm", baddbmm_flop_jit, "b*n*m*p MACs (GPT-2-style eager attention)"),
            ("aten::_scaled_mm", scaled_mm_flop_jit, "M*K*N MACs (fp8 scaled matmul)"),
        ):
            if name in _DEFAULT_SUPPORTED_OPS and name != "aten::einsum":
                patches.append(f"not patched, fvcore has its own handle: {name}")
                continue
            handles[name] = handle
            patches.append(f"handle set: {name}: {text}")
    return handles, patches


def _trace(jit_analysis: Any, analysis: Any, wrapper: PositionalWrapper, call: Any,
           devices: set[str]) -> tuple[Any, list[Any]]:
    """fvcore's scoped trace of ``wrapper`` (as ``analysis.total()`` would take it), and the
    warnings raised while tracing. fvcore removes its scope hooks only when the trace succeeds:
    on error they are removed here."""
    hooks_before = _hook_keys(wrapper)
    on_meta = ConvTracedAsOnCpu() if "meta" in devices else contextlib.nullcontext()
    with warnings.catch_warnings(record=True) as records:
        warnings.simplefilter("always")
        try:
            with torch.no_grad(), on_meta:
                graph = jit_analysis._get_scoped_trace_graph(wrapper, wrapper.inputs, analysis._aliases)
        except Exception as exc:
            _remove_hooks_added_since(wrapper, hooks_before)
            if "meta" in devices:
                raise CounterError(
                    f"fvcore could not trace {call.module_path!r} on meta tensors "
                    f"({type(exc).__name__}: {exc}). torch.jit.trace runs torch's meta kernels with "
                    f"the tracer on; count this stage on real tensors (the small config on CPU).") from exc
            raise
    return graph, list(records)


_CONV_DIMS = {torch.conv1d: 1, torch.conv2d: 2, torch.conv3d: 3}


class ConvTracedAsOnCpu(TorchFunctionMode):
    """While ``torch.jit.trace`` runs in this thread: ``torch.conv1d/2d/3d`` (``F.conv*d``,
    ``nn.Conv*d``) on meta tensors record the ``aten::_convolution`` node a CPU trace records.

    On CPU, ``at::conv2d`` calls ``at::convolution``, which the tracer does not record (it is on
    torch's ``DONT_RECORD_TRACE`` list), and whose CPU kernel calls ``at::_convolution``, which it
    records. On meta, ``at::convolution`` runs torch's Python meta kernel instead, with the tracer
    still on: its size checks get traced tensors and raise, and no ``aten::_convolution`` node would
    be recorded. Here the call goes to ``torch._convolution`` with the arguments ``at::convolution``
    gives it (sizes expanded to the spatial rank, not transposed, output padding 0, the cuDNN flags
    of ``torch.backends``): the tracer records that node and runs its meta kernel with tracing paused.

    Only those three functions, only on meta tensors, only while this thread traces, only with
    numeric padding and batched input (the shapes ``nn.Conv*d`` gives); anything else runs as
    torch ships it. A ``TorchFunctionMode`` lives on this thread's mode stack: other threads, and
    this one after the block, see torch unchanged.
    """

    def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        dims = _CONV_DIMS.get(func)
        if dims is not None and torch._C._get_tracing_state() is not None:
            redirected = _convolution_args(dims, args, kwargs)
            if redirected is not None:
                return torch._convolution(*redirected)
        return func(*args, **kwargs)


def _convolution_args(dims: int, args: tuple, kwargs: dict) -> tuple | None:
    """``at::_convolution``'s arguments for ``torch.conv{dims}d(*args, **kwargs)``, as
    ``at::convolution`` passes them; None when the call is not one to redirect (not on meta, string
    padding, unbatched input)."""
    names = ("input", "weight", "bias", "stride", "padding", "dilation", "groups")
    defaults = {"bias": None, "stride": 1, "padding": 0, "dilation": 1, "groups": 1}
    if len(args) > len(names) or set(kwargs) - set(names):
        return None
    given = {**defaults, **dict(zip(names, args)), **kwargs}
    if "input" not in given or "weight" not in given:
        return None
    input, weight = given["input"], given["weight"]
    if not (isinstance(input, torch.Tensor) and isinstance(weight, torch.Tensor)):
        return None
    if not (input.is_meta and weight.is_meta) or input.dim() != dims + 2:
        return None

    def spatial(value: Any) -> list[int] | None:
        if isinstance(value, int) and not isinstance(value, bool):
            return [value] * dims
        if isinstance(value, (tuple, list)) and all(isinstance(v, int) for v in value):
            return list(value) * dims if len(value) == 1 else list(value) if len(value) == dims else None
        return None

    stride, padding, dilation = (spatial(given[k]) for k in ("stride", "padding", "dilation"))
    if stride is None or padding is None or dilation is None or not isinstance(given["groups"], int):
        return None
    cudnn = torch.backends.cudnn
    return (input, weight, given["bias"], stride, padding, dilation, False, [0] * dims, given["groups"],
            cudnn.benchmark, cudnn.deterministic or torch.are_deterministic_algorithms_enabled(),
            cudnn.enabled, cudnn.allow_tf32)


@contextlib.contextmanager
def _supplied_graph(jit_analysis: Any, wrapper: nn.Module, graph: Any) -> Iterator[None]:
    """For the block, fvcore's tracing step returns ``graph`` (the trace of ``wrapper``) instead of
    tracing again; restored on exit, even on error."""
    original = jit_analysis._get_scoped_trace_graph

    def supplied(module: nn.Module, inputs: Any, aliases: Any) -> Any:
        if module is not wrapper:  # pragma: no cover - only our analysis runs inside the block
            return original(module, inputs, aliases)
        return graph

    jit_analysis._get_scoped_trace_graph = supplied
    try:
        yield
    finally:
        jit_analysis._get_scoped_trace_graph = original


class _Tallies(Tallies):
    """One variant's sums over the calls of a stage (MACs from fvcore, kept as FLOPs = 2 x MACs)."""

    def __init__(self) -> None:
        super().__init__()
        self.uncalled: list[str] = []
        self.caught: Tally = Tally()
        self.deviations: Tally = Tally()
        self.deviation_calls = 0

    def add(self, call: Any, wrapper: PositionalWrapper, analysis: Any, observer: _Observer,
            total: int | float, records: list[Any]) -> None:
        for record in records:
            self.caught[f"{record.category.__name__}: {str(record.message).splitlines()[0]}"] += 1
        self.raw += total
        for op, value in analysis.by_operator().items():
            self.by_op[op] += 2 * value
        for name, value in analysis.by_module().items():
            if name == "":
                continue
            path = observer.path_of_scope(name)
            if name == _WRAPPER_CHILD or name.startswith(_WRAPPER_CHILD + "."):
                self.by_module[path] += 2 * value
        self.unknown.update(analysis.unsupported_ops())
        self.ignored.update(observer.ignored)
        for key, macs in observer.by_key.items():
            self.by_key[key] += 2 * macs
        for key, macs in observer.unseen.items():
            self.unseen[key] += 2 * macs
        for op, macs in observer.unseen_ops.items():
            self.unseen_ops[op] += 2 * macs
        named = dict(wrapper.named_modules())
        for name in sorted(analysis.uncalled_modules()):
            module = named.get(name)
            if module is not None and _has_forward(module) and name.startswith(_WRAPPER_CHILD):
                self.uncalled.append(observer.path_of_scope(name))
        self.notes.extend(observer.notes)
        for cause, macs in observer.deviations.items():
            self.deviations[cause] += 2 * macs
        self.deviation_calls += observer.deviation_calls

    def result(self, counter: "FvcoreCounter", variant: str, patches: list[str], devices: set[str]) -> StageCount:
        notes = list(self.notes)
        if self.deviation_calls:
            notes.append(f"{self.deviation_calls} aten::einsum counts differ from the exact label product "
                         f"(numpy einsum_path report rounded to 4 significant digits): "
                         f"{_as_int(self.deviations[EINSUM_ROUNDING]):+,} FLOPs in all")
        raw = self.raw
        raw_value = int(raw) if float(raw).is_integer() else raw
        return StageCount(
            counter=counter.name, variant=variant, version=counter.version(), target="", stage="",
            raw=raw_value, convention=counter.convention, flops=int(round(2 * raw)),
            by_op={k: _as_int(v) for k, v in self.by_op.items()},
            by_key={k: _as_int(v) for k, v in self.by_key.items() if v}, unknown_ops=dict(self.unknown),
            ignored_ops=dict(self.ignored), wall_time_s=0.0,
            by_module={k: _as_int(v) for k, v in self.by_module.items()},
            unseen={k: _as_int(v) for k, v in self.unseen.items() if v},
            unseen_ops={k: _as_int(v) for k, v in self.unseen_ops.items()},
            deviations={k: _as_int(v) for k, v in self.deviations.items() if v},
            uncalled_modules=tuple(dict.fromkeys(self.uncalled)), patches=tuple(patches),
            warnings=[m if n == 1 else f"{m} (x{n})" for m, n in self.caught.items()],
            notes=list(dict.fromkeys(notes)), devices=tuple(sorted(devices)))
