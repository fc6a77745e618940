"""harness.modelrun: model code runs a few frames deep, with its caller's state, or in place."""

from __future__ import annotations

import contextvars
import dataclasses
import inspect
import threading

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from harness.callmemo import CallMemo, call_memo, memoised_call_work
from harness.modelrun import cpp_meta_kernels, cpp_meta_kernels_available, run_model_code


def _deep(n: int, fn):
    return fn() if n == 0 else _deep(n - 1, fn)


def _where() -> tuple[int, int]:
    return threading.get_ident(), len(inspect.stack(0))


def test_runs_a_few_frames_deep_in_another_thread_whatever_the_caller_depth() -> None:
    here = _where()
    ident, depth = _deep(200, lambda: run_model_code(_where))
    assert ident != here[0]
    assert depth <= 8, depth                        # the thread's own frames and fn's, not the caller's 200+
    assert _deep(200, _where)[1] >= 200 + here[1]   # the same call in place sees every frame


def test_result_args_and_errors_cross_back() -> None:
    assert run_model_code(lambda a, *, b: a * b, 6, b=7) == 42

    def fails() -> None:
        raise KeyError("no such view")

    with pytest.raises(KeyError, match="no such view") as info:
        run_model_code(fails)
    assert any(entry.name == "fails" for entry in info.traceback)   # the thread's frames are kept


_VAR: contextvars.ContextVar[str] = contextvars.ContextVar("_VAR", default="unset")


def test_context_variables_and_the_call_memo_are_carried() -> None:
    token = _VAR.set("caller's")
    try:
        assert run_model_code(_VAR.get) == "caller's"
    finally:
        _VAR.reset(token)
    memo = CallMemo()
    module = torch.nn.Identity()
    made = []
    with call_memo(memo):
        for _ in range(2):
            run_model_code(memoised_call_work, "forward", module, ("sig",), lambda: made.append(1) or 1)
    assert made == [1] and memo.hits == {"forward": 1}


@pytest.mark.parametrize("grad", [True, False])
def test_grad_mode_is_carried(grad: bool) -> None:
    with torch.set_grad_enabled(grad):
        assert run_model_code(torch.is_grad_enabled) is grad


class _Noting(TorchDispatchMode):
    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("state", ["device context", "dispatch mode", "inference mode", "nested"])
def test_runs_in_place_where_a_thread_would_miss_the_callers_torch_state(state: str) -> None:
    def ident_and_device() -> tuple[int, str]:
        return threading.get_ident(), torch.empty(1).device.type

    if state == "device context":
        with torch.device("meta"):
            ident, device = run_model_code(ident_and_device)
        assert (ident, device) == (threading.get_ident(), "meta")
    elif state == "dispatch mode":
        with _Noting():
            ident, _ = run_model_code(ident_and_device)
        assert ident == threading.get_ident()
    elif state == "inference mode":
        with torch.inference_mode():
            ident, _ = run_model_code(ident_and_device)
        assert ident == threading.get_ident()
    else:
        outer, inner = run_model_code(lambda: (threading.get_ident(), run_model_code(threading.get_ident)))
        assert outer == inner != threading.get_ident()


# ------------------------------------------------------------------------------------ meta kernels
def _meta_kernel(op: str) -> str:
    """Where the active Meta kernel of ``op`` was registered (a C++ file, or a Python one)."""
    return next(line for line in torch._C._dispatch_dump(op).splitlines() if line.startswith("Meta:"))


def test_this_torch_can_use_its_cpp_meta_kernels() -> None:
    """A torch whose internals moved would silently count 2-4x slower: say so here."""
    available, why = cpp_meta_kernels_available()
    assert available, why
    assert int(why.split()[0]) > 500, why


@pytest.mark.parametrize("op, has_cpp", [("aten::mul.Tensor", True), ("aten::cat", True),
                                         ("aten::convolution", False), ("aten::_grouped_mm", False)])
def test_cpp_meta_kernels_only_inside_and_only_where_torch_has_one(op: str, has_cpp: bool) -> None:
    shipped = _meta_kernel(op)
    assert ".py:" in shipped                                  # torch as shipped: a Python meta kernel
    with cpp_meta_kernels():
        with cpp_meta_kernels():                              # nested: no change
            inner = _meta_kernel(op)
        assert _meta_kernel(op) == inner
        assert (".cpp:" in inner) is has_cpp and ((".py:" in inner) is not has_cpp)
    assert _meta_kernel(op) == shipped                        # given back when the block ends
    assert ".cpp:" in run_model_code(_meta_kernel, op) if has_cpp else ".py:" in run_model_code(_meta_kernel, op)
    assert _meta_kernel(op) == shipped


@pytest.fixture(scope="module")
def ocr2_sam_on_meta():
    pytest.importorskip("transformers.models.deepseek_ocr2")
    from harness.analytic import LETTER_PAGE
    from harness.targets import get_target

    target = get_target("ocr2")
    built = target.build("meta", dtype=torch.bfloat16)
    inputs = target.prepare(LETTER_PAGE, "base", device="meta", dtype=torch.bfloat16)
    return target.stage_calls(built, inputs, "sam")


def test_counts_with_cpp_meta_kernels_equal_torchs_python_ones(ocr2_sam_on_meta) -> None:
    """SAM (windows: pad, permute, view; convolutions; SDPA) counted by torch and by the byte
    counter with torch's Python meta kernels (each counter's own run, called here in place) and
    through run_model_code: the same record in every field but the wall time."""
    from harness.counters import count, get_counter
    from harness.counters.bytes import _count_bytes, count_bytes

    assert ".py:" in _meta_kernel("aten::mul.Tensor")
    python_flops = get_counter("torch").run(ocr2_sam_on_meta, variant="patched")
    python_bytes = _count_bytes(ocr2_sam_on_meta, "ocr2", "sam")
    fields = lambda c: {**c.to_dict(), "wall_time_s": 0, "target": "", "stage": ""}   # noqa: E731
    assert fields(count("torch", ocr2_sam_on_meta)) == fields(python_flops)
    assert python_flops.flops > 5 * 10**11                    # Base's SAM: 0.98 TFLOPs
    fast_bytes = count_bytes(ocr2_sam_on_meta, target="ocr2", stage="sam")
    same = lambda b: {**dataclasses.asdict(b), "wall_time_s": 0}   # noqa: E731
    assert same(fast_bytes) == same(python_bytes)
    assert sum(t.read + t.write for t in python_bytes.by_key.values()) > 10**9
