"""harness.freshstack: model code runs a few frames deep, with its caller's state, or in place."""

from __future__ import annotations

import contextvars
import inspect
import threading

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from harness.callmemo import CallMemo, call_memo, memoised_call_work
from harness.freshstack import on_a_fresh_stack


def _deep(n: int, fn):
    return fn() if n == 0 else _deep(n - 1, fn)


def _where() -> tuple[int, int]:
    return threading.get_ident(), len(inspect.stack(0))


def test_runs_a_few_frames_deep_in_another_thread_whatever_the_caller_depth() -> None:
    here = _where()
    ident, depth = _deep(200, lambda: on_a_fresh_stack(_where))
    assert ident != here[0]
    assert depth <= 8, depth                        # the thread's own frames and fn's, not the caller's 200+
    assert _deep(200, _where)[1] >= 200 + here[1]   # the same call in place sees every frame


def test_result_args_and_errors_cross_back() -> None:
    assert on_a_fresh_stack(lambda a, *, b: a * b, 6, b=7) == 42

    def fails() -> None:
        raise KeyError("no such view")

    with pytest.raises(KeyError, match="no such view") as info:
        on_a_fresh_stack(fails)
    assert any(entry.name == "fails" for entry in info.traceback)   # the thread's frames are kept


_VAR: contextvars.ContextVar[str] = contextvars.ContextVar("_VAR", default="unset")


def test_context_variables_and_the_call_memo_are_carried() -> None:
    token = _VAR.set("caller's")
    try:
        assert on_a_fresh_stack(_VAR.get) == "caller's"
    finally:
        _VAR.reset(token)
    memo = CallMemo()
    module = torch.nn.Identity()
    made = []
    with call_memo(memo):
        for _ in range(2):
            on_a_fresh_stack(memoised_call_work, "forward", module, ("sig",), lambda: made.append(1) or 1)
    assert made == [1] and memo.hits == {"forward": 1}


@pytest.mark.parametrize("grad", [True, False])
def test_grad_mode_is_carried(grad: bool) -> None:
    with torch.set_grad_enabled(grad):
        assert on_a_fresh_stack(torch.is_grad_enabled) is grad


class _Noting(TorchDispatchMode):
    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("state", ["device context", "dispatch mode", "inference mode", "nested"])
def test_runs_in_place_where_a_thread_would_miss_the_callers_torch_state(state: str) -> None:
    def ident_and_device() -> tuple[int, str]:
        return threading.get_ident(), torch.empty(1).device.type

    if state == "device context":
        with torch.device("meta"):
            ident, device = on_a_fresh_stack(ident_and_device)
        assert (ident, device) == (threading.get_ident(), "meta")
    elif state == "dispatch mode":
        with _Noting():
            ident, _ = on_a_fresh_stack(ident_and_device)
        assert ident == threading.get_ident()
    elif state == "inference mode":
        with torch.inference_mode():
            ident, _ = on_a_fresh_stack(ident_and_device)
        assert ident == threading.get_ident()
    else:
        outer, inner = on_a_fresh_stack(lambda: (threading.get_ident(), on_a_fresh_stack(threading.get_ident)))
        assert outer == inner != threading.get_ident()
