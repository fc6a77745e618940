"""harness.run.modelrun: the library counts as plain torch in the calling thread, one count at a time;
the suite's and report's boundary (run_measurement) runs model code on meta a few frames deep with
its caller's state and torch's C++ meta kernels, or in place; Ctrl-C cancels it cleanly."""

from __future__ import annotations

import contextvars
import dataclasses
import inspect
import threading
from typing import Any

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from harness.run.callmemo import CallMemo, call_memo, memoised_call_work
from harness.run.modelrun import cpp_meta_kernels, cpp_meta_kernels_available, run_measurement

#: model code on meta (what run_measurement's first argument says)
META = torch.empty(0, device="meta")


def run_model_code(fn, *args, **kwargs):
    """A measurement of model code on meta at the boundary."""
    return run_measurement(META, fn, *args, **kwargs)


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


def test_where_a_measurement_runs_is_decided_once_and_the_lock_taken_once() -> None:
    """``placement`` names why a run stays in place (None: the kept thread), and the one-count lock
    is held once by the thread that runs the model code, whichever it is (a count inside nests)."""
    from harness.run.modelrun import _ONE_COUNT, placement

    assert placement(META) is None
    assert placement(torch.ones(1)) == "real tensors"
    with torch.inference_mode():
        assert placement(META) == "inference mode"
    with _Noting():
        assert placement(META) == "a torch function or dispatch mode"
    assert run_model_code(lambda: _ONE_COUNT._depth) == 1
    assert run_measurement(torch.ones(1), lambda: _ONE_COUNT._depth) == 1


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
    counter as the library does (plain torch, Python meta kernels) and at the boundary: the same
    record in every field but the wall time."""
    from harness.measure import count
    from harness.measure.bytes import count_bytes

    model = ocr2_sam_on_meta[0].module
    assert ".py:" in _meta_kernel("aten::mul.Tensor")
    python_flops = count("torch", ocr2_sam_on_meta)
    python_bytes = count_bytes(ocr2_sam_on_meta, target="ocr2", stage="sam")
    fields = lambda c: {**c.to_dict(), "wall_time_s": 0, "target": "", "stage": ""}   # noqa: E731
    assert fields(run_measurement(model, count, "torch", ocr2_sam_on_meta)) == fields(python_flops)
    assert python_flops.flops > 5 * 10**11                    # Base's SAM: 0.98 TFLOPs
    fast_bytes = run_measurement(model, count_bytes, ocr2_sam_on_meta, target="ocr2", stage="sam")
    same = lambda b: {**dataclasses.asdict(b), "wall_time_s": 0}   # noqa: E731
    assert same(fast_bytes) == same(python_bytes)
    assert sum(t.read + t.write for t in python_bytes.by_key.values()) > 10**9


def test_only_model_code_on_meta_leaves_the_calling_thread() -> None:
    """Real tensors compute for real where they are called (their cost is the arithmetic, and they
    keep the caller's allocator state); meta ones go to the measuring thread."""
    from harness.run.modelrun import on_meta

    here = threading.get_ident()
    real, meta = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2, device="meta")
    assert on_meta(meta, (torch.empty(1, 2, device="meta"),)) and not on_meta(meta, torch.ones(1, 2))
    assert not on_meta(real) and not on_meta("no tensors", 3)
    assert run_measurement((real, torch.ones(1, 2)), threading.get_ident) == here
    assert run_measurement((meta, {"x": torch.empty(1, 2, device="meta")}), threading.get_ident) != here


def test_under_a_profiler_the_boundary_runs_in_place() -> None:
    here = threading.get_ident()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        assert run_model_code(lambda: (threading.get_ident(), _meta_kernel("aten::mul.Tensor"))) == \
            (here, _meta_kernel("aten::mul.Tensor"))
        torch.mul(META, 2)
    assert any(e.name == "aten::mul" for e in prof.events())


# ------------------------------------------------------------------------- the library: plain torch
class _Probe(torch.nn.Module):
    """Linear, then ``x * 2`` (an op whose Meta kernel torch ships in Python over a C++ one), then
    ``during(x)``; on meta."""

    def __init__(self, during) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(8, 8, device="meta")
        self.during = during

    def forward(self, x):
        y = self.linear(x) * 2
        self.during(y)
        return y


def _hooks(model: torch.nn.Module) -> list[str]:
    """Every forward hook on ``model``'s modules, and torch's global module hooks."""
    from torch.nn.modules import module as nn_module

    found = [f"{name or 'model'}.{kind}" for name, m in model.named_modules()
             for kind in ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks") if getattr(m, kind)]
    found += [kind for kind in ("_global_forward_hooks", "_global_forward_pre_hooks")
              if getattr(nn_module, kind)]
    return found


def test_harness_count_leaves_torch_as_shipped_for_other_threads_and_user_kernels() -> None:
    """During and after ``harness.count``: the model runs in the calling thread, no thread is
    started, another thread sees torch's own Meta kernel, and a Meta kernel the user registered is
    the one that runs, during and after."""
    import harness

    shipped = _meta_kernel("aten::mul.Tensor")
    here, threads = threading.get_ident(), threading.active_count()
    user_calls: list[int] = []
    lib = torch.library.Library("aten", "IMPL", "Meta")    # the user's own Meta kernel of aten::mul
    seen: dict[str, Any] = {"idents": set()}
    try:
        lib.impl("mul.Tensor", lambda a, b: user_calls.append(1) or torch.empty_like(a))
        user = _meta_kernel("aten::mul.Tensor")
        assert user != shipped

        def during(y) -> None:
            seen["idents"].add(threading.get_ident())
            seen["threads"] = threading.active_count()
            other = threading.Thread(target=lambda: seen.setdefault("other", _meta_kernel("aten::mul.Tensor")))
            other.start()
            other.join()

        calls = len(user_calls)
        result = harness.count(_Probe(during), torch.empty(4, 8, device="meta"), counters="torch,thop")
        assert result["torch patched"].matmul_flops == 2 * 4 * 8 * 8
        assert seen["idents"] == {here} and seen["threads"] == threads
        assert seen["other"] == user                            # as the user left it, during the count
        assert len(user_calls) > calls                          # the user's kernel ran the model's mul
        assert _meta_kernel("aten::mul.Tensor") == user         # and after it
    finally:
        lib._destroy()
    assert _meta_kernel("aten::mul.Tensor") == shipped
    assert threading.active_count() == threads


def test_ctrl_c_during_a_count_leaves_no_hook_and_no_thread() -> None:
    import torch.nn.functional as F

    import harness

    threads, sdpa = threading.active_count(), F.scaled_dot_product_attention

    def interrupt(y) -> None:
        assert _hooks(model), "the counters' hooks are on the model while it runs"
        raise KeyboardInterrupt

    model = _Probe(interrupt)
    with pytest.raises(KeyboardInterrupt):
        harness.count(model, torch.empty(4, 8, device="meta"), counters="thop")
    assert _hooks(model) == []
    assert threading.active_count() == threads and F.scaled_dot_product_attention is sdpa


def test_ctrl_c_while_the_boundary_measures_cancels_it() -> None:
    """Ctrl-C reaches the caller waiting for a measurement: the measuring thread is interrupted
    too, unwinds (the counter's hooks come off the model, torch's kernels are given back) and
    ends; the caller gets the KeyboardInterrupt."""
    import signal
    import time

    from harness.measure import count
    from harness.targets import StageCall

    if threading.current_thread() is not threading.main_thread():
        pytest.skip("Ctrl-C reaches the main thread; this test runs in another")
    started, stop_waiting = threading.Event(), time.monotonic() + 60
    seen: dict[str, Any] = {}

    def block(y) -> None:
        seen["thread"] = threading.current_thread()
        seen["hooks"] = _hooks(model)
        started.set()
        while time.monotonic() < stop_waiting:      # Python code running: where Ctrl-C lands
            time.sleep(0.005)

    model = _Probe(block)
    call = StageCall("probe", "", model, (torch.empty(4, 8, device="meta"),), {})
    main = threading.main_thread().ident
    helper = threading.Thread(target=lambda: started.wait(30) and signal.pthread_kill(main, signal.SIGINT))
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        helper.start()
        with pytest.raises(KeyboardInterrupt):
            run_measurement(model, count, "thop", [call])
    finally:
        signal.signal(signal.SIGINT, previous)
        helper.join()
    assert time.monotonic() < stop_waiting, "the measurement was not cancelled"
    assert seen["thread"] is not threading.current_thread() and seen["hooks"]
    assert not seen["thread"].is_alive()
    assert _hooks(model) == [] and ".py:" in _meta_kernel("aten::mul.Tensor")     # Python kernels back
    assert run_model_code(threading.get_ident) != threading.get_ident()    # a new one serves the next


def test_one_count_at_a_time() -> None:
    """A second thread's count waits until the first one's has ended."""
    from harness.measure import count
    from harness.targets import StageCall

    first_in, second_in = threading.Event(), threading.Event()
    seen: dict[str, Any] = {}

    def first(y) -> None:
        first_in.set()
        seen["second ran meanwhile"] = second_in.wait(0.5)

    def stage(during) -> list:
        return [StageCall("probe", "", _Probe(during), (torch.empty(4, 8, device="meta"),), {})]

    def second_thread() -> None:
        first_in.wait(30)
        seen["second"] = count("torch", stage(lambda y: second_in.set())).flops

    other = threading.Thread(target=second_thread)
    other.start()
    seen["first"] = count("torch", stage(first)).flops
    other.join(30)
    assert seen["second ran meanwhile"] is False and second_in.is_set()
    assert seen["first"] == seen["second"] == 2 * 4 * 8 * 8
