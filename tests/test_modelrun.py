"""harness.modelrun: model code runs a few frames deep, with its caller's state, or in place."""

from __future__ import annotations

import contextvars
import dataclasses
import inspect
import threading
from typing import Any

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


def test_grad_mode_is_carried() -> None:
    for grad in (True, False):
        with torch.set_grad_enabled(grad):
            assert run_model_code(torch.is_grad_enabled) is grad


class _Noting(TorchDispatchMode):
    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        return func(*args, **(kwargs or {}))


def test_runs_in_place_where_a_thread_would_miss_the_callers_torch_state() -> None:
    """A device context, a dispatch mode, inference mode, and a run inside a run."""
    here = threading.get_ident()

    def ident_and_device() -> tuple[int, str]:
        return threading.get_ident(), torch.empty(1).device.type

    with torch.device("meta"):
        assert run_model_code(ident_and_device) == (here, "meta")
    with _Noting():
        assert run_model_code(ident_and_device)[0] == here
    with torch.inference_mode():
        assert run_model_code(ident_and_device)[0] == here
    outer, inner = run_model_code(lambda: (threading.get_ident(), run_model_code(threading.get_ident)))
    assert outer == inner != here


def test_one_kept_thread_per_calling_thread_that_stops_with_it() -> None:
    """Every run of a calling thread uses the same model-code thread (one set of per-thread
    allocator arenas and buffers, not one per run); another calling thread gets its own, which
    ends when that caller ends."""
    here = {run_model_code(threading.get_ident) for _ in range(3)}
    assert len(here) == 1 and threading.get_ident() not in here
    seen: dict[str, Any] = {}

    def caller() -> None:
        seen["ident"] = run_model_code(threading.get_ident)
        seen["thread"] = next(t for t in threading.enumerate() if t.ident == seen["ident"])

    other = threading.Thread(target=caller)
    other.start()
    other.join()
    assert seen["ident"] not in here
    seen["thread"].join(timeout=10)
    assert not seen["thread"].is_alive(), "the model-code thread outlived its caller"


# ------------------------------------------------------------------------------------ meta kernels
def _meta_kernel(op: str) -> str:
    """Where the active Meta kernel of ``op`` was registered (a C++ file, or a Python one)."""
    return next(line for line in torch._C._dispatch_dump(op).splitlines() if line.startswith("Meta:"))


def test_this_torch_can_use_its_cpp_meta_kernels() -> None:
    """A torch whose internals moved would silently count 2-4x slower: say so here."""
    available, why = cpp_meta_kernels_available()
    assert available, why
    assert int(why.split()[0]) > 500, why


def test_cpp_meta_kernels_only_inside_and_only_where_torch_has_one() -> None:
    """mul and cat have a C++ meta kernel under torch's Python one; convolution and _grouped_mm
    only a Python one."""
    for op, has_cpp in (("aten::mul.Tensor", True), ("aten::cat", True),
                        ("aten::convolution", False), ("aten::_grouped_mm", False)):
        shipped = _meta_kernel(op)
        assert ".py:" in shipped, op                          # torch as shipped: a Python meta kernel
        with cpp_meta_kernels():
            with cpp_meta_kernels():                          # nested: no change
                inner = _meta_kernel(op)
            assert _meta_kernel(op) == inner, op
            assert (".cpp:" in inner) is has_cpp and ((".py:" in inner) is not has_cpp), (op, inner)
        assert _meta_kernel(op) == shipped, op                # given back when the block ends
        assert (".cpp:" in run_model_code(_meta_kernel, op)) is has_cpp, op
        assert _meta_kernel(op) == shipped, op


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


def test_only_model_code_on_meta_leaves_the_calling_thread() -> None:
    """Real tensors compute for real where they are called (their cost is the arithmetic, and they
    keep the caller's allocator state); meta ones go to the model-code thread."""
    from harness.modelrun import on_meta, runner_for

    here = threading.get_ident()
    real, meta = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2, device="meta")
    assert on_meta(meta, (torch.empty(1, 2, device="meta"),)) and not on_meta(meta, torch.ones(1, 2))
    assert not on_meta(real) and not on_meta("no tensors", 3)
    assert runner_for(real, torch.ones(1, 2))(threading.get_ident) == here
    assert runner_for(meta, {"x": torch.empty(1, 2, device="meta")})(threading.get_ident) != here
