"""One memo of per-call work on meta tensors, shared by the targets and the counters.

Inside :func:`call_memo`, work that depends only on the module and the call's
:func:`meta_signature` (upstream forwards, fvcore traces, torch and thop counts of one call) is
done once per (kind, module, signature); outside a block nothing is kept, and real tensors or
stateful arguments are never memoised. :func:`memoised_upstream` keeps a page's upstream outputs
on its inputs object. The memo layers: docs/counting-speed.md.
"""

from __future__ import annotations

import contextlib
import weakref
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import torch

__all__ = ["CallMemo", "call_memo", "memoised_call_work", "meta_signature", "memoised_forward", "memoised_upstream"]


#: Non-tensor arguments a call's meta signature may hold: values whose repr is the whole value.
_PLAIN = (bool, int, float, str, type(None), torch.dtype, torch.device)


def meta_signature(module: Any, args: tuple, kwargs: dict) -> tuple | None:
    """What a run of ``module(*args, **kwargs)`` on meta tensors depends on besides the module:
    the arguments' structure, each tensor's shape, stride, dtype and requires_grad, each other
    argument's value. None (not memoisable) unless every tensor is on meta (real tensors carry
    values that data-dependent code reads) and every other argument is a plain value (an object
    such as a KV cache is state, not a value)."""
    leaves, spec = torch.utils._pytree.tree_flatten((tuple(args), dict(kwargs)))
    parts: list[Any] = []
    for leaf in leaves:
        if isinstance(leaf, torch.Tensor):
            if leaf.device.type != "meta":
                return None
            parts.append((tuple(leaf.shape), tuple(leaf.stride()), leaf.dtype, leaf.requires_grad))
        elif isinstance(leaf, _PLAIN):
            parts.append((type(leaf).__name__, repr(leaf)))
        else:
            return None
    return (id(module), str(spec), tuple(parts))


@dataclass
class CallMemo:
    """Per-call work kept across stages, pages and shape keys (see :func:`call_memo`); ``hits``
    counts the reuses by kind of work."""

    entries: dict[tuple, tuple[Any, Any]] = field(default_factory=dict)
    hits: dict[str, int] = field(default_factory=dict)


_CALL_MEMO: ContextVar[CallMemo | None] = ContextVar("harness_call_memo", default=None)


@contextlib.contextmanager
def call_memo(memo: CallMemo) -> Iterator[CallMemo]:
    """Within the block, :func:`memoised_call_work` keeps its work in ``memo``."""
    token = _CALL_MEMO.set(memo)
    try:
        yield memo
    finally:
        _CALL_MEMO.reset(token)


def memoised_call_work(kind: str, module: Any, signature: tuple | None, make: Callable[[], Any]) -> Any:
    """``make()``, or what it gave for the same kind of work, module and signature inside the
    current :func:`call_memo` block (no block, or a signature of None: always ``make()``)."""
    memo = _CALL_MEMO.get()
    if memo is None or signature is None:
        return make()
    key = (kind, signature)
    found = memo.entries.get(key)
    if found is not None and found[0] is module:
        memo.hits[kind] = memo.hits.get(kind, 0) + 1
        return found[1]
    value = make()
    memo.entries[key] = (module, value)   # the module is held, so its id is not reused
    return value


def memoised_forward(module: Any, *args: Any) -> Any:
    """``module(*args)``, once per module and signature inside a :func:`call_memo` block."""
    return memoised_call_work("forward", module, meta_signature(module, args, {}), lambda: module(*args))


def memoised_upstream(inputs: Any, model: Any, name: str, compute: Callable[[], Any]) -> Any:
    """``compute()`` once per (model, name) for these inputs (a target's upstream stage outputs of
    one page, kept on ``inputs.cache``); a weak reference guards against a new model reusing a
    collected model's id."""
    key = (id(model), name)
    hit = inputs.cache.get(key)
    if hit is not None and hit[0]() is model:
        return hit[1]
    value = compute()
    inputs.cache[key] = (weakref.ref(model), value)
    return value
