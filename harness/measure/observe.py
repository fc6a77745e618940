"""What ran, independently of any counter: the module chain and the functional products.

Three observers scoped to one ``with`` block: :class:`ModuleStack` (the running module chain and
each module's path), :class:`FunctionRecorder` (every matmul-class functional call, keyed and
sized by the reference formulas, in MACs) and :func:`call_inputs` (fresh arguments per run). They
let a counter's blind spots be sized, never silent zeros: docs/counters.md.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import Any, Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.module import register_module_forward_hook, register_module_forward_pre_hook
from torch.overrides import TorchFunctionMode

from .keys import ModuleFrame, op_key

__all__ = [
    "ModuleStack",
    "FunctionCall",
    "FunctionRecorder",
    "function_kind",
    "reference_macs",
    "sdpa_macs",
    "einsum_macs",
    "grouped_mm_macs",
    "call_inputs",
    "check_call",
    "prod",
]


def prod(values: Sequence[int]) -> int:
    """Integer product (1 for an empty sequence)."""
    return math.prod(int(v) for v in values)


# Reference formulas (MACs) ---------------------------------------------------------------------

def sdpa_macs(q_shape: Sequence[int], k_shape: Sequence[int], v_shape: Sequence[int]) -> tuple[int, int]:
    """(QK^T, AV) MACs of scaled dot-product attention: B*Hq*Lq*Lk*dq and B*Hq*Lq*Lk*dv.

    Leading dims of the query (batch, heads; GQA key/value heads broadcast to the query's) times
    Lq, Lk and the head dims. A causal or masked attention is counted in full, as torch's
    ``sdpa_flop`` does ("We aren't accounting for causal attention here").
    """
    rows = prod(q_shape[:-1])
    lk = int(k_shape[-2])
    return rows * lk * int(q_shape[-1]), rows * lk * int(v_shape[-1])


def einsum_macs(equation: str, shapes: Sequence[Sequence[int]]) -> int:
    """MACs of a two-operand einsum: the product of the sizes of every distinct label.

    Each output element of a contraction costs one multiply-add per combination of the summed
    labels, so the cost is prod(all labels). Ellipses are expanded from the operand ranks.
    """
    eq = equation.replace(" ", "")
    lhs = eq.split("->")[0]
    sizes: dict[str, int] = {}
    for term, shape in zip(lhs.split(","), shapes):
        if "..." in term:
            head, tail = term.split("...")
            n = len(shape) - len(head) - len(tail)
            labels = list(head) + [f"...{i}" for i in range(n)] + list(tail)
        else:
            labels = list(term)
        for label, size in zip(labels, shape):
            sizes[label] = max(sizes.get(label, 1), int(size))
    return prod(sizes.values())


def grouped_mm_macs(a_shape: Sequence[int], b_shape: Sequence[int], out_shape: Sequence[int]) -> int:
    """MACs of ``torch._grouped_mm`` / ``F.grouped_mm`` (offsets split one operand into groups).

    2d x 3d (ragged rows, the MoE case): each of the S rows meets its group's (K, N) weight:
    S*K*N = out.numel()*K. 3d x 2d and 3d x 3d: out.numel()*K as well. 2d x 2d (ragged K): every
    (M, N) output of each group sums over that group's slice of K, so M*K_total*N in all.
    Rows past the last offset are not computed; the shapes cannot tell, so all rows are counted
    (exact whenever offsets[-1] == S, which holds without expert parallelism).
    """
    if len(a_shape) == 2 and len(b_shape) == 2:
        return int(a_shape[0]) * int(a_shape[1]) * int(b_shape[-1])
    return prod(out_shape) * int(a_shape[-1])


def conv_macs(x_shape: Sequence[int], w_shape: Sequence[int], out_shape: Sequence[int],
              transposed: bool = False) -> int:
    """MACs of a convolution: batch * prod(weight) * prod(output spatial), as torch's conv_flop."""
    spatial = (x_shape if transposed else out_shape)[2:]
    return int(x_shape[0]) * prod(w_shape) * prod(spatial)


# Function identities --------------------------------------------------------------------------

_T = torch.Tensor
_LINEAR = {F.linear}
_MATMUL = {torch.matmul, _T.matmul, _T.__matmul__, _T.__rmatmul__, torch.bmm, _T.bmm, torch.mm,
           _T.mm, torch.addmm, _T.addmm, torch.baddbmm, _T.baddbmm, torch.addbmm, _T.addbmm,
           torch.mv, _T.mv, *[f for f in (getattr(torch, "_scaled_mm", None),) if f is not None]}
_EINSUM = {torch.einsum, torch.functional.einsum}
_SDPA = {F.scaled_dot_product_attention}
_CONV = {F.conv1d, F.conv2d, F.conv3d, F.conv_transpose1d, F.conv_transpose2d, F.conv_transpose3d}
_GROUPED = {f for f in (getattr(torch, "_grouped_mm", None), getattr(F, "grouped_mm", None)) if f}
_MHA = {F.multi_head_attention_forward}

_KIND_BY_FUNC: dict[Any, str] = {}
for _funcs, _kind in ((_LINEAR, "linear"), (_MATMUL, "matmul"), (_EINSUM, "einsum"), (_SDPA, "sdpa"),
                      (_CONV, "conv"), (_GROUPED, "grouped_mm"), (_MHA, "mha")):
    for _f in _funcs:
        _KIND_BY_FUNC[_f] = _kind


def function_kind(func: Any) -> str | None:
    """The matmul-class kind of a torch function (``None`` for anything else)."""
    try:
        return _KIND_BY_FUNC.get(func)
    except TypeError:  # unhashable
        return None


def function_name(func: Any) -> str:
    """A readable name: ``torch.matmul``, ``Tensor.__matmul__``, ``F.linear`` ..."""
    name = getattr(func, "__name__", repr(func))
    qual = getattr(func, "__qualname__", name)
    if qual.startswith("Tensor.") or qual.startswith("TensorBase."):
        return "Tensor." + name
    if func in _LINEAR or func in _SDPA or func in _CONV or func is getattr(F, "grouped_mm", None):
        return "F." + name
    return "torch." + name


def _shape(x: Any) -> tuple[int, ...] | None:
    return tuple(int(s) for s in x.shape) if isinstance(x, torch.Tensor) else None


def reference_macs(kind: str, func: Any, args: Sequence[Any], kwargs: dict, out: Any) -> tuple[int, ...]:
    """MACs of one functional call from its shapes: ``(macs,)``, or ``(qk, av)`` for SDPA."""
    def arg(i: int, name: str):
        return args[i] if len(args) > i else kwargs.get(name)

    if kind == "sdpa":
        q, k, v = arg(0, "query"), arg(1, "key"), arg(2, "value")
        return sdpa_macs(q.shape, k.shape, v.shape)
    if kind == "einsum":
        equation, operands = args[0], list(args[1:])
        if len(operands) == 1 and isinstance(operands[0], (list, tuple)):
            operands = list(operands[0])
        return (einsum_macs(equation, [o.shape for o in operands]),)
    if kind == "grouped_mm":
        a, b = arg(0, "mat_a") if len(args) > 0 else kwargs.get("input"), arg(1, "mat_b")
        return (grouped_mm_macs(a.shape, b.shape, out.shape),)
    if kind == "conv":
        x, w = arg(0, "input"), arg(1, "weight")
        return (conv_macs(x.shape, w.shape, out.shape, "transpose" in getattr(func, "__name__", "")),)
    if kind == "linear":
        x = arg(0, "input")
        return (out.numel() * int(x.shape[-1]),)
    if kind == "matmul":
        name = getattr(func, "__name__", "")
        if name in ("addmm", "baddbmm", "addbmm"):
            a = arg(1, "mat1" if name == "addmm" else "batch1")
        else:
            a = arg(0, "input")
        if name == "addbmm":  # sums the batch: b * n * m * p
            return (prod(a.shape) * int(arg(2, "batch2").shape[-1]),)
        return (out.numel() * int(a.shape[-1]),)
    return (0,)


# Module chain ---------------------------------------------------------------------------------

class ModuleStack:
    """The chain of modules running, with full paths, through global forward hooks.

    ``root`` is the module a :class:`StageCall` calls and ``root_path`` its path in the model;
    every module called under it is named ``root_path + "." + name`` (the first name
    ``named_modules`` gives it). A module called that is not a registered descendant is named
    ``<parent path>.<ClassName>``. Each module call gets a fresh ``call_id``.
    """

    def __init__(self, root: nn.Module, root_path: str = "", *, skip: Sequence[nn.Module] = ()) -> None:
        self.root_path = root_path
        self._skip = {id(m) for m in skip}
        self.calls_by_module: dict[int, int] = {}
        self.module_by_id: dict[int, nn.Module] = {}
        self.paths: dict[int, str] = {}
        self.modules_by_path: dict[str, nn.Module] = {}
        for name, module in root.named_modules():
            path = _join(root_path, name)
            self.paths.setdefault(id(module), path)
            self.modules_by_path.setdefault(path, module)
        self.frames: list[ModuleFrame] = []
        self.call_ids: list[int] = []
        self._next_call_id = 0
        self._handles: list[Any] = []

    def path_of(self, module: nn.Module) -> str:
        path = self.paths.get(id(module))
        if path is None:
            parent = self.frames[-1].path if self.frames else self.root_path
            path = _join(parent, type(module).__name__)
        return path

    def frames_for_path(self, path: str) -> tuple[ModuleFrame, ...]:
        """The chain root -> ``path`` reconstructed from the registered paths."""
        out = []
        parts = path.split(".") if path else []
        start = len(self.root_path.split(".")) if self.root_path else 0
        if self.root_path in self.modules_by_path:
            out.append(ModuleFrame(self.root_path, self.modules_by_path[self.root_path]))
        for i in range(start + 1, len(parts) + 1):
            p = ".".join(parts[:i])
            if p in self.modules_by_path:
                out.append(ModuleFrame(p, self.modules_by_path[p]))
        return tuple(out)

    def snapshot(self) -> tuple[ModuleFrame, ...]:
        return tuple(self.frames)

    @property
    def current_call_id(self) -> int | None:
        return self.call_ids[-1] if self.call_ids else None

    def _pre(self, module: nn.Module, args: Any) -> None:
        if id(module) in self._skip:
            return
        self.calls_by_module[id(module)] = self.calls_by_module.get(id(module), 0) + 1
        self.module_by_id[id(module)] = module
        self.frames.append(ModuleFrame(self.path_of(module), module))
        self.call_ids.append(self._next_call_id)
        self._next_call_id += 1

    def _post(self, module: nn.Module, args: Any, output: Any) -> None:
        for i in range(len(self.frames) - 1, -1, -1):  # robust to a module that raised
            if self.frames[i].module is module:
                del self.frames[i:]
                del self.call_ids[i:]
                return

    def __enter__(self) -> "ModuleStack":
        self._handles = [register_module_forward_pre_hook(self._pre),
                         register_module_forward_hook(self._post, always_call=True)]
        return self

    def __exit__(self, *exc: Any) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []
        self.frames.clear()
        self.call_ids.clear()


def _join(prefix: str, name: str) -> str:
    if not prefix:
        return name
    return f"{prefix}.{name}" if name else prefix


# Functional calls -----------------------------------------------------------------------------

@dataclass
class FunctionCall:
    """One matmul-class functional call as it ran."""

    seq: int
    func: Any
    name: str                      # e.g. "torch.matmul", "F.scaled_dot_product_attention"
    kind: str                      # linear | matmul | einsum | sdpa | conv | grouped_mm | mha
    frames: tuple[ModuleFrame, ...]
    key: str                       # op key (for SDPA: "sdpa", split into sdpa_qk/sdpa_av)
    macs: tuple[int, ...]          # reference MACs; (qk, av) for SDPA
    shapes: tuple[Any, ...] = ()
    output: Any = field(default=None, repr=False)
    counted: int = 0               # MACs or FLOPs a counter attributed to this call (its unit)

    @property
    def path(self) -> str:
        return self.frames[-1].path if self.frames else ""

    @property
    def total_macs(self) -> int:
        return sum(self.macs)

    def keyed_macs(self) -> dict[str, int]:
        """Reference MACs by op key (SDPA split into QK^T and AV)."""
        if self.kind == "sdpa":
            return {"sdpa_qk": self.macs[0], "sdpa_av": self.macs[1]}
        return {self.key: self.total_macs}


def _from_dispatch_mode() -> bool:
    """True when the torch function being handled was called by a ``__torch_dispatch__`` (a
    dispatch mode such as FlopCounterMode running the aten op it intercepted)."""
    import sys

    frame = sys._getframe(2)   # 0: here, 1: __torch_function__, 2: OpOverload.__call__ (or the caller)
    for _ in range(2):
        if frame is None:
            return False
        if frame.f_code.co_name == "__torch_dispatch__":
            return True
        frame = frame.f_back
    return False


class FunctionRecorder(TorchFunctionMode):
    """Records matmul-class functional calls (see module docstring), with keys and sizes.

    ``current`` is the call in progress (dispatch-level observers read it to know which
    function an aten op belongs to). Calls made while a call is in progress are not re-recorded
    (a TorchFunctionMode is not re-entered for the body of the function it intercepts).
    """

    def __init__(self, stack: ModuleStack) -> None:
        super().__init__()
        self.stack = stack
        self.calls: list[FunctionCall] = []
        self.current: FunctionCall | None = None
        self._matmul_ordinals: dict[int, int] = {}
        #: torch functions in progress (any, product or not): 0 while an aten op runs means no
        #: Python-level torch call carried it (it ran inside TorchScript or C++)
        self.depth = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        kind = function_kind(func)
        if kind is None:
            if isinstance(func, torch._ops.OpOverload) and _from_dispatch_mode():
                return func(*args, **kwargs)  # an outer dispatch mode running the op it got
            self.depth += 1
            try:
                return func(*args, **kwargs)
            finally:
                self.depth -= 1
        frames = self.stack.snapshot()
        ordinal = None
        if kind == "matmul":
            call_id = self.stack.current_call_id
            ordinal = self._matmul_ordinals.get(call_id, 0)
            self._matmul_ordinals[call_id] = ordinal + 1
        key = "sdpa" if kind == "sdpa" else op_key(kind, frames, ordinal=ordinal)
        record = FunctionCall(seq=len(self.calls), func=func, name=function_name(func), kind=kind,
                              frames=frames, key=key, macs=(0,),
                              shapes=tuple(_shape(a) for a in args if isinstance(a, torch.Tensor)))
        self.calls.append(record)
        previous, self.current = self.current, record
        self.depth += 1
        try:
            out = func(*args, **kwargs)
        finally:
            self.current = previous
            self.depth -= 1
        record.output = out
        try:
            record.macs = reference_macs(kind, func, args, kwargs, out)
        except Exception as exc:  # a shape the reference formula does not know: say so
            record.macs = (0,)
            record.name += f" [reference formula failed: {type(exc).__name__}: {exc}]"
        return out

    def find_by_output(self, out: Any) -> FunctionCall | None:
        for record in reversed(self.calls):
            if record.output is out:
                return record
        return None

    def release(self) -> None:
        """Drop references to outputs (they may be large)."""
        for record in self.calls:
            record.output = None


# StageCall inputs -----------------------------------------------------------------------------

def check_call(call: Any) -> None:
    """Duck-type check of a StageCall (``module``, ``args``, ``kwargs``, ``module_path``, ``stage``)."""
    missing = [a for a in ("module", "args", "kwargs", "module_path", "stage") if not hasattr(call, a)]
    if missing:
        raise TypeError(f"expected a StageCall (module, args, kwargs, module_path, stage); "
                        f"{type(call).__name__} lacks {', '.join(missing)}")
    if not isinstance(call.module, nn.Module):
        raise TypeError(f"StageCall.module must be an nn.Module, got {type(call.module).__name__}")


def _is_stateful(value: Any) -> bool:
    # a KV cache (transformers Cache / DynamicCache) grows when the forward runs
    return hasattr(value, "get_seq_length") and hasattr(value, "update")


def _fresh(value: Any) -> Any:
    if isinstance(value, torch.Tensor) or isinstance(value, nn.Module):
        return value
    if _is_stateful(value):
        return copy.deepcopy(value)
    if isinstance(value, tuple) and not hasattr(value, "_fields"):
        return tuple(_fresh(v) for v in value)
    if isinstance(value, list):
        return [_fresh(v) for v in value]
    if isinstance(value, dict):
        return {k: _fresh(v) for k, v in value.items()}
    return value


def call_inputs(call: Any) -> tuple[tuple, dict]:
    """Fresh ``(args, kwargs)`` for one run of ``call``: stateful objects (a KV cache) are copied."""
    return _fresh(tuple(call.args)), _fresh(dict(call.kwargs))


def iter_tensors(value: Any) -> Iterator[torch.Tensor]:
    """Every tensor inside nested tuples/lists/dicts/dataclass-like outputs."""
    leaves, _ = torch.utils._pytree.tree_flatten(value)
    for leaf in leaves:
        if isinstance(leaf, torch.Tensor):
            yield leaf
