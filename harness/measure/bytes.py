"""Memory traffic measured at the dispatch level: bytes read and written by every aten op, by op key.

:func:`count_bytes` runs a stage's ``StageCall`` lists (meta tensors suffice) under a
``TorchDispatchMode`` and attributes each op's weight and activation bytes to its stage and to an
op key: the FLOP counters' matmul-class keys for product ops, data-movement keys
(:data:`DATA_KEYS`) for ops that really copy, element-wise keys otherwise; aliasing views move
nothing. Convention: op-level traffic, no fusion, no cache. Rules in full: docs/bytes.md.
"""

from __future__ import annotations

import re
import time
from collections import Counter as Tally
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from harness.analytic.cost import DATA_KEYS as _ANALYTIC_DATA_KEYS
from harness.analytic.cost import Traffic
from harness.run.modelrun import counting

from .base import checked_calls
from .keys import ELEMENTWISE_KEYS, MATMUL_KEYS, UNMAPPED, op_key
from .observe import FunctionRecorder, ModuleStack, call_inputs, iter_tensors

__all__ = [
    "Traffic",
    "ByteCount",
    "DATA_KEYS",
    "BYTE_KEYS",
    "PRODUCT_OPS",
    "count_bytes",
    "bytes_record",
]

#: Keys of ops that only move data (their own keys, never folded into an element-wise key).
DATA_KEYS: tuple[str, ...] = _ANALYTIC_DATA_KEYS
#: Every key a byte count can carry (matmul class, element-wise, data movement, and ``unmapped``).
BYTE_KEYS: tuple[str, ...] = (*MATMUL_KEYS, *ELEMENTWISE_KEYS, *DATA_KEYS, UNMAPPED)

#: aten ops that multiply matrices: their bytes go to the matmul-class keys.
PRODUCT_OPS = frozenset({
    "mm", "addmm", "bmm", "baddbmm", "addbmm", "mv", "dot", "convolution", "_convolution",
    "_grouped_mm", "_scaled_dot_product_flash_attention_for_cpu", "_scaled_dot_product_flash_attention",
    "_scaled_dot_product_efficient_attention", "_scaled_dot_product_cudnn_attention",
})
_SDPA_FUSED = frozenset(op for op in PRODUCT_OPS if op.startswith("_scaled_dot_product"))

_COPY = frozenset({"clone", "contiguous", "copy", "copy_", "repeat", "repeat_interleave", "roll", "flip",
                   "expand_copy", "permute_copy", "_unsafe_view_copy", "lift_fresh_copy", "alias_copy",
                   "view_copy", "transpose_copy", "unsqueeze_copy", "squeeze_copy", "slice_copy"})
_CAT = frozenset({"cat", "stack", "_cat", "hstack", "vstack"})
_INDEX = frozenset({"index", "index_select", "gather", "embedding", "_unsafe_index", "take", "masked_select",
                    "_embedding_bag"})
_SCATTER = frozenset({"index_put", "index_put_", "_index_put_impl_", "scatter", "scatter_", "scatter_add",
                      "scatter_add_", "scatter_reduce", "scatter_reduce_", "index_add", "index_add_",
                      "index_copy", "index_copy_", "masked_scatter", "masked_scatter_", "slice_scatter",
                      "select_scatter", "index_reduce", "index_reduce_"})
_PAD = frozenset({"constant_pad_nd", "pad", "reflection_pad1d", "reflection_pad2d", "replication_pad2d"})
_FILL = frozenset({"zeros", "ones", "full", "fill", "fill_", "zero_", "arange", "scalar_tensor", "new_zeros",
                   "new_ones", "new_full", "zeros_like", "ones_like", "full_like", "linspace", "eye",
                   "lift_fresh"})
#: Factory ops that take only the shape/dtype of a tensor argument (nothing is read).
_SHAPE_ONLY = frozenset({"zeros_like", "ones_like", "full_like", "empty_like", "new_zeros", "new_ones",
                         "new_full", "new_empty", "new_empty_strided", "rand_like", "randn_like"})
#: In-place ops that overwrite their first argument without reading it.
_WRITE_ONLY_SELF = frozenset({"copy_", "fill_", "zero_", "index_put_", "_index_put_impl_", "scatter_",
                              "index_copy_", "masked_scatter_", "normal_", "uniform_", "random_"})
#: In-place scatters write only the positions they address (the size of what they put).
_SCATTER_INPLACE = frozenset({"index_put_", "_index_put_impl_", "scatter_", "scatter_add_", "index_add_",
                              "index_copy_", "masked_scatter_", "scatter_reduce_", "index_reduce_"})
_GATHERS = frozenset({"index", "index_select", "gather", "embedding", "_unsafe_index", "take"})

_NORM_OPS = frozenset({"native_layer_norm", "layer_norm", "rms_norm", "_fused_rms_norm", "native_group_norm",
                       "native_batch_norm", "_native_batch_norm_legit_no_training", "group_norm"})
_ACTIVATION_OPS = frozenset({"gelu", "silu", "sigmoid", "relu", "tanh", "erf", "hardswish", "quick_gelu",
                             "elu", "leaky_relu", "mish", "softplus"})
_SOFTMAX_OPS = frozenset({"_softmax", "softmax", "_log_softmax", "log_softmax", "_safe_softmax"})
_ADD_OPS = frozenset({"add", "add_", "sub", "sub_", "rsub"})
_MUL_OPS = frozenset({"mul", "mul_", "div", "div_"})


@dataclass
class ByteCount:
    """Measured traffic of one stage (all its calls): bytes by op key and by aten op.

    Convention: op-level (every op reads its inputs and writes its outputs once, real element
    sizes). ``by_key[key]`` and ``by_op[op]`` are :class:`Traffic` (weight, read, write);
    ``by_key_op[key][op]`` says which aten ops make up a key; ``metadata_ops`` lists the ops that
    moved nothing (views, allocations) with their occurrences.
    """

    target: str
    stage: str
    version: str
    by_key: dict[str, Traffic]
    by_op: dict[str, Traffic]
    by_key_op: dict[str, dict[str, Traffic]]
    metadata_ops: dict[str, int]
    op_calls: dict[str, int]
    dtypes: tuple[str, ...] = ()
    devices: tuple[str, ...] = ()
    wall_time_s: float = 0.0
    notes: list[str] = field(default_factory=list)
    #: routed-expert modules (``...experts.<n>``) that ran, distinct per call: how many experts the
    #: routing hit (a module loop only; batched/grouped experts gather weights instead: 0)
    experts_called: int = 0

    @property
    def total(self) -> Traffic:
        """All keys summed."""
        return sum(self.by_key.values(), Traffic())

    @property
    def total_bytes(self) -> int:
        return self.total.total

    @property
    def weight_bytes(self) -> int:
        return self.total.weight

    def key_bytes(self, key: str) -> int:
        """Total bytes (weight + read + write) of ``key`` (0 when absent)."""
        return self.by_key.get(key, Traffic()).total


def _storage_id(t: torch.Tensor) -> int:
    try:
        return t.untyped_storage()._cdata
    except (RuntimeError, NotImplementedError):  # a tensor without storage (functional wrappers)
        return id(t)


def stored_bytes(t: torch.Tensor) -> int:
    """Bytes stored under a view: element size x prod(size of each dim with a non-zero stride)."""
    n = 1
    for size, stride in zip(t.shape, t.stride()):
        if stride != 0:
            n *= int(size)
    if t.dim() and any(int(s) == 0 for s in t.shape):
        n = 0
    return n * t.element_size()


def _short(func: Any) -> str:
    return func._overloadpacket.__name__ if hasattr(func, "_overloadpacket") else str(func)


def _is_view_op(func: Any) -> bool:
    """True when every output aliases an input and nothing is written (a view / metadata op)."""
    schema = func._schema
    if any(a.alias_info is not None and a.alias_info.is_write for a in schema.arguments):
        return False
    returns = schema.returns
    return bool(returns) and all(r.alias_info is not None for r in returns)


def _written_args(func: Any, args: Sequence[Any], kwargs: Mapping[str, Any]) -> list[torch.Tensor]:
    out = []
    for i, a in enumerate(func._schema.arguments):
        if a.alias_info is not None and a.alias_info.is_write:
            value = kwargs.get(a.name) if a.kwarg_only or i >= len(args) else args[i]
            out.extend(t for t in iter_tensors(value))
    return out


class _ByteRecorder(TorchDispatchMode):
    """Records every aten op's traffic under its op key (see the module docstring)."""

    def __init__(self, weights: set[int], functions: FunctionRecorder, stack: ModuleStack) -> None:
        super().__init__()
        self.weights = weights
        self.functions = functions
        self.stack = stack
        self.by_key: dict[str, Traffic] = {}
        self.by_op: dict[str, Traffic] = {}
        self.by_key_op: dict[str, dict[str, Traffic]] = {}
        self.metadata: Tally = Tally()
        self.calls: Tally = Tally()
        self.dtypes: set[str] = set()
        self._sdpa_ordinals: dict[int, int] = {}
        self.events: list[tuple] | None = None  # (module path, op, key, Traffic, inputs, outputs) when tracing
        self.experts: set[str] = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        name = _short(func)
        self.calls[name] += 1
        if name in ("empty", "empty_like", "empty_strided", "new_empty", "new_empty_strided", "_unsafe_view") \
                or _is_view_op(func) or name.startswith("sym_") or name in ("size", "stride", "dim", "numel",
                                                                              "is_contiguous", "storage_offset",
                                                                              "_assert_tensor_metadata",
                                                                              "_local_scalar_dense", "item"):
            self.metadata[name] += 1
            return out
        traffic = self._traffic(func, name, args, kwargs, out)
        if name in _SDPA_FUSED:  # one kernel: q and k to sdpa_qk, v, the mask and the output to sdpa_av
            qk = sum(stored_bytes(t) for t in args[:2] if isinstance(t, torch.Tensor))
            self._add("sdpa_qk", name, Traffic(0, qk, 0))
            self._add("sdpa_av", name, Traffic(traffic.weight, traffic.read - qk, traffic.write))
            return out
        key = self._key(name, args, out)
        self._add(key, name, traffic)
        if key == "experts":
            for frame in self.stack.frames:
                if _EXPERT_MODULE.fullmatch(frame.path):
                    self.experts.add(frame.path)
        if self.events is not None:
            self.events.append((self.stack.frames[-1].path if self.stack.frames else "", name, key, traffic,
                                [(tuple(t.shape), str(t.dtype)[6:], tuple(t.stride())) for t in iter_tensors(args)],
                                [(tuple(t.shape), str(t.dtype)[6:]) for t in iter_tensors(out)]))
        return out

    # traffic ------------------------------------------------------------------------------------
    def _traffic(self, func: Any, name: str, args: Sequence[Any], kwargs: Mapping[str, Any], out: Any) -> Traffic:
        written = _written_args(func, args, kwargs)
        written_ids = {id(t) for t in written}
        inputs, _ = tree_flatten((args, kwargs))
        tensors = [t for t in inputs if isinstance(t, torch.Tensor)]
        weight = read = 0
        if name not in _SHAPE_ONLY:
            gathered = None
            if name in _GATHERS and isinstance(out, torch.Tensor):
                gathered = out.numel()
            source = self._gather_source(name, args) if gathered is not None else None
            for t in tensors:
                if id(t) in written_ids and (name in _WRITE_ONLY_SELF or t is not (args[0] if args else None)):
                    continue  # only written (copy_ destination, out=)
                n = stored_bytes(t)
                if source is not None and t is source:
                    n = min(n, gathered * t.element_size())
                if _storage_id(t) in self.weights:
                    weight += n
                else:
                    read += n
                self.dtypes.add(str(t.dtype).replace("torch.", ""))
        write = 0
        if written:
            for t in written:
                if name in _SCATTER_INPLACE:
                    write += self._scatter_written(name, args, kwargs, t)
                else:
                    write += stored_bytes(t)
        else:
            input_storages = {_storage_id(t) for t in tensors}
            for t in iter_tensors(out):
                if _storage_id(t) not in input_storages:
                    write += stored_bytes(t)
        return Traffic(weight, read, write)

    @staticmethod
    def _gather_source(name: str, args: Sequence[Any]) -> torch.Tensor | None:
        if name == "embedding":
            return args[0] if args else None  # embedding(weight, indices)
        return args[0] if args and isinstance(args[0], torch.Tensor) else None

    @staticmethod
    def _scatter_written(name: str, args: Sequence[Any], kwargs: Mapping[str, Any], target: torch.Tensor) -> int:
        """Bytes an in-place scatter writes: the size of what it puts (values / source), never the whole target."""
        if name in ("index_put_", "_index_put_impl_"):
            values = args[2] if len(args) > 2 else kwargs.get("values")
            indices = [i for i in (args[1] if len(args) > 1 else kwargs.get("indices", [])) if i is not None]
            n = 0
            if indices:
                shape = torch.broadcast_shapes(*(i.shape for i in indices))
                n = 1
                for s in shape:
                    n *= int(s)
                n *= max(1, target.numel() // max(1, _prod(target.shape[:len(indices)])))
            return max(n, values.numel() if isinstance(values, torch.Tensor) else 0) * target.element_size()
        if name == "masked_scatter_":
            source = args[2] if len(args) > 2 else kwargs.get("source")
            mask = args[1] if len(args) > 1 else kwargs.get("mask")
            # every masked position is written: at most the source's size
            n = min(source.numel(), torch.broadcast_shapes(mask.shape, target.shape).numel())
            return n * target.element_size()
        # scatter_ / scatter_add_ / index_add_ / index_copy_: the source (or index) size
        src = None
        for a in list(args[2:]) + list(kwargs.values()):
            if isinstance(a, torch.Tensor):
                src = a
        if src is None:
            return stored_bytes(target)
        if name in ("index_add_", "index_copy_"):
            return src.numel() * target.element_size()
        return src.numel() * target.element_size()

    # keys ---------------------------------------------------------------------------------------
    def _key(self, name: str, args: Sequence[Any], out: Any) -> str:
        call = self.functions.current
        if name in PRODUCT_OPS:
            if call is not None and call.kind == "sdpa":
                n = self._sdpa_ordinals.get(call.seq, 0)
                self._sdpa_ordinals[call.seq] = n + 1
                return "sdpa_qk" if n == 0 else "sdpa_av" if n == 1 else UNMAPPED
            if call is not None:
                return call.key if call.key in MATMUL_KEYS else UNMAPPED
            kind = "conv" if "conv" in name else "grouped_mm" if "grouped" in name else "matmul"
            return op_key(kind, self.stack.snapshot())
        if name == "_to_copy" or name == "to":
            src = args[0] if args else None
            cast = isinstance(src, torch.Tensor) and isinstance(out, torch.Tensor) and out.dtype != src.dtype
            return "cast" if cast else "copy"
        for keyset, key in ((_COPY, "copy"), (_CAT, "cat"), (_INDEX, "index"), (_SCATTER, "scatter"),
                            (_PAD, "pad"), (_FILL, "fill")):
            if name in keyset:
                return key
        if name in _NORM_OPS:
            return "norm"
        if name in _SOFTMAX_OPS:
            return "softmax"
        if name in _ACTIVATION_OPS:
            return "activation"
        if name.startswith("upsample") or name.startswith("_upsample") or name == "grid_sampler_2d":
            return "interpolate"
        frames = self.stack.frames
        if frames and call is None:
            cls = type(frames[-1].module).__name__
            if "Norm" in cls:
                return "norm"
            if any(a in cls for a in ("GELU", "Gelu", "SiLU", "Activation", "Act")):
                return "activation"
        if name in _ADD_OPS:
            return "add"
        if name in _MUL_OPS:
            return "mul"
        return "other_elementwise"

    def _add(self, key: str, name: str, traffic: Traffic) -> None:
        self.by_key[key] = self.by_key.get(key, Traffic()) + traffic
        self.by_op[name] = self.by_op.get(name, Traffic()) + traffic
        per = self.by_key_op.setdefault(key, {})
        per[name] = per.get(name, Traffic()) + traffic


_EXPERT_MODULE = re.compile(r".*\.experts\.\d+")


def _prod(values: Iterable[int]) -> int:
    n = 1
    for v in values:
        n *= int(v)
    return n


def _weight_storages(module: torch.nn.Module) -> set[int]:
    return {_storage_id(p) for p in module.parameters()}


def count_bytes(calls: Sequence[Any], *, target: str = "", stage: str = "") -> ByteCount:
    """Measured op-level traffic of one stage: every aten op its ``calls`` run, by op key.

    ``calls`` are duck-typed StageCalls (``module``, ``args``, ``kwargs``, ``module_path``,
    ``stage``), run once each under no_grad; a KV cache in the kwargs is copied first.
    """
    calls = checked_calls(calls, stage, who="count_bytes", nothing="0 bytes")
    with counting():
        return _count_bytes(calls, target, stage)


def _count_bytes(calls: Sequence[Any], target: str, stage: str) -> ByteCount:
    start = time.perf_counter()
    by_key: dict[str, Traffic] = {}
    by_op: dict[str, Traffic] = {}
    by_key_op: dict[str, dict[str, Traffic]] = {}
    metadata: Tally = Tally()
    op_calls: Tally = Tally()
    dtypes: set[str] = set()
    devices: set[str] = set()
    experts_called = 0
    for call in calls:
        args, kwargs = call_inputs(call)
        devices.update(t.device.type for t in iter_tensors((args, kwargs)))
        stack = ModuleStack(call.module, call.module_path)
        functions = FunctionRecorder(stack)
        recorder = _ByteRecorder(_weight_storages(call.module), functions, stack)
        with torch.no_grad(), stack, functions, recorder:
            call.module(*args, **kwargs)
        functions.release()
        for key, t in recorder.by_key.items():
            by_key[key] = by_key.get(key, Traffic()) + t
        for op, t in recorder.by_op.items():
            by_op[op] = by_op.get(op, Traffic()) + t
        for key, ops in recorder.by_key_op.items():
            per = by_key_op.setdefault(key, {})
            for op, t in ops.items():
                per[op] = per.get(op, Traffic()) + t
        metadata.update(recorder.metadata)
        op_calls.update(recorder.calls)
        dtypes |= recorder.dtypes
        experts_called += len(recorder.experts)
    return ByteCount(target=target, stage=stage or ",".join(dict.fromkeys(str(c.stage) for c in calls)),
                     version=f"torch {torch.__version__}", by_key=by_key, by_op=by_op, by_key_op=by_key_op,
                     metadata_ops=dict(metadata), op_calls=dict(op_calls), dtypes=tuple(sorted(dtypes)),
                     devices=tuple(sorted(devices)), wall_time_s=time.perf_counter() - start,
                     experts_called=experts_called)


def bytes_record(count: ByteCount) -> dict[str, Any]:
    """JSON-ready golden record of a :class:`ByteCount` (exact integers; convention stated)."""
    return {
        "convention": "op-level: every aten op reads its inputs (stored bytes of each view) and writes "
                      "its outputs once, at the tensors' element sizes; views move nothing",
        "version": count.version,
        "target": count.target,
        "stage": count.stage,
        "total_bytes": count.total_bytes,
        "weight_bytes": count.total.weight,
        "act_read_bytes": count.total.read,
        "act_write_bytes": count.total.write,
        "by_key": {k: list(v) for k, v in sorted(count.by_key.items())},
        "by_op": {k: list(v) for k, v in sorted(count.by_op.items())},
        "metadata_ops": dict(sorted(count.metadata_ops.items())),
        "dtypes": list(count.dtypes),
    }
