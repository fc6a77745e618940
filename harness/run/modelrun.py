"""How the harness runs model code to count it: plain torch in the library, one boundary for the suite.

The library (``harness.count``, every counter, a :class:`harness.targets.StageCall`) runs the model
synchronously in the calling thread with torch as shipped, one count at a time per process
(:func:`counting`). :func:`run_measurement`, called only by the engine, is the boundary the suite
and the report own: on meta it measures on a kept thread with torch's C++ meta kernels, and runs in
place wherever that could change what a caller sees. Rules and reasons: docs/counting-speed.md.
"""

from __future__ import annotations

import contextlib
import contextvars
import ctypes
import itertools
import queue
import sys
import threading
import weakref
from typing import Any, Callable, Iterator, TypeVar

import torch

__all__ = ["counting", "run_measurement", "placement", "on_meta", "cpp_meta_kernels", "cpp_meta_kernels_available"]

T = TypeVar("T")

_STATE = threading.local()


# ------------------------------------------------------------------------------ one count at a time
class _OneCount:
    """A process-wide lock, re-entrant for its owner: the calling thread, or the thread that
    measures on its behalf (:func:`run_measurement`)."""

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._owner: int | None = None
        self._depth = 0

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        me = getattr(_STATE, "on_behalf_of", None) or threading.get_ident()
        with self._cond:
            while self._owner not in (None, me):
                self._cond.wait()
            self._owner = me
            self._depth += 1
        try:
            yield
        finally:
            with self._cond:
                self._depth -= 1
                if self._depth == 0:
                    self._owner = None
                    self._cond.notify_all()


_ONE_COUNT = _OneCount()


def counting() -> contextlib.AbstractContextManager[None]:
    """Within the block this thread counts, and no other: a second thread waits at its own
    ``counting()`` until the first block ends (nested blocks of one thread are free)."""
    return _ONE_COUNT.held()


# -------------------------------------------------------------------------------------- meta kernels
class _MetaSplit:
    """torch's Python meta library, split in two once per process: the ops whose Python kernel
    overrides a C++ one (``overriding``, a library of their own that is dropped while measuring)
    and the rest (``python_only``, always registered)."""

    def __init__(self) -> None:
        import torch._meta_registrations as registrations
        from torch._C import DispatchKey

        torch_lib = registrations._meta_lib_dont_use_me_use_register_meta
        entries = []
        for key in sorted(torch_lib._op_impls):       # "aten/mul.Tensor/Meta"
            namespace, name, dispatch_key = key.split("/")
            if dispatch_key != "Meta":
                raise RuntimeError(f"unexpected registration {key!r}")
            op, _, overload = name.partition(".")
            overload_packet = getattr(getattr(torch.ops, namespace), op)
            op_overload = getattr(overload_packet, overload or "default")
            entries.append((op_overload, op_overload.py_kernels[DispatchKey.Meta]))
        torch_lib._destroy()
        try:
            self.python_only = torch.library.Library("aten", "IMPL", "Meta")
            self.overriding_ops = []
            for op_overload, kernel in entries:
                if torch._C._dispatch_has_kernel_for_dispatch_key(op_overload.name(), "Meta"):
                    self.overriding_ops.append((op_overload, kernel))   # a C++ kernel is under it
                else:
                    self.python_only.impl(op_overload, kernel)
            self.overriding: Any = None
            self.put_python_back()
        except BaseException:
            # leave torch as it was: every Python kernel registered again, in one library
            with contextlib.suppress(Exception):
                self.python_only._destroy()
            self.python_only = torch.library.Library("aten", "IMPL", "Meta")
            for op_overload, kernel in entries:
                self.python_only.impl(op_overload, kernel)
            registrations._meta_lib_dont_use_me_use_register_meta = self.python_only
            raise
        registrations._meta_lib_dont_use_me_use_register_meta = self.python_only

    def use_cpp(self) -> None:
        if self.overriding is not None:
            self.overriding._destroy()
            self.overriding = None

    def put_python_back(self) -> None:
        if self.overriding is None:
            lib = torch.library.Library("aten", "IMPL", "Meta")
            for op_overload, kernel in self.overriding_ops:
                lib.impl(op_overload, kernel)
            self.overriding = lib


_LOCK = threading.RLock()
_SPLIT: _MetaSplit | None = None
_SPLIT_ERROR: str | None = None
_DEPTH = 0


def _split() -> _MetaSplit | None:
    global _SPLIT, _SPLIT_ERROR
    if _SPLIT is None and _SPLIT_ERROR is None:
        try:
            _SPLIT = _MetaSplit()
        except Exception as exc:  # another torch: keep its kernels, measure as before (slower)
            _SPLIT_ERROR = f"torch {torch.__version__}: {type(exc).__name__}: {exc}"
    return _SPLIT


def cpp_meta_kernels_available() -> tuple[bool, str]:
    """Whether :func:`cpp_meta_kernels` can switch this torch's meta kernels, and if not, why."""
    with _LOCK:
        split = _split()
        if split is None:
            return False, _SPLIT_ERROR or "unknown"
        return True, (f"{len(split.overriding_ops)} aten ops use their C++ meta kernel while measuring "
                      f"(torch {torch.__version__})")


@contextlib.contextmanager
def cpp_meta_kernels() -> Iterator[None]:
    """Within the block (outermost block: process-wide), the aten ops that have a C++ meta kernel
    use it instead of torch's Python one; nested blocks are free. Only :func:`run_measurement`
    (the suite's and the report's boundary) uses it."""
    global _DEPTH
    with _LOCK:
        split = _split()
        if split is not None and _DEPTH == 0:
            split.use_cpp()
        _DEPTH += 1
    try:
        yield
    finally:
        with _LOCK:
            _DEPTH -= 1
            if split is not None and _DEPTH == 0:
                split.put_python_back()


# ------------------------------------------------------------------------------------------ boundary
def _observed() -> bool:
    """A profiler or tracer watches this thread: it must see the model code run here, as shipped."""
    enabled = getattr(getattr(torch._C, "_autograd", None), "_profiler_enabled", None)
    return (sys.getprofile() is not None or sys.gettrace() is not None
            or bool(enabled() if enabled is not None else torch.autograd.profiler._is_profiler_enabled))


def _thread_state() -> str | None:
    """Thread-local state a new thread would not see (or we are inside already), named."""
    if getattr(_STATE, "inside", False):
        return "inside a measurement"
    autocast = getattr(torch._C, "_is_any_autocast_enabled", None)
    if torch._C._len_torch_function_stack() or torch._C._len_torch_dispatch_stack():
        return "a torch function or dispatch mode"
    if torch.is_inference_mode_enabled():
        return "inference mode"
    if autocast is not None and autocast():
        return "autocast"
    if torch._C._get_tracing_state() is not None:
        return "a jit trace"
    return None


def placement(model: Any) -> str | None:
    """Where :func:`run_measurement` runs model code, decided once per measurement: None on the
    kept thread; otherwise why in place (real tensors, a profiler or tracer, thread-local torch
    state, nesting)."""
    if not on_meta(model):
        return "real tensors"
    if _observed():
        return "a profiler or tracer"
    return _thread_state()


def _serve(jobs: "queue.SimpleQueue[Callable[[], None] | None]") -> None:
    _STATE.inside = True
    try:
        while True:
            job = jobs.get()
            if job is None:
                return
            job()
            del job   # its arguments and result belong to the caller now: keep nothing until the next
    except KeyboardInterrupt:   # a cancellation that arrived between jobs: the thread ends
        return


class _Runner:
    """The thread that runs one calling thread's measurements, started once and kept (a new thread
    per run would also mean new per-thread allocator arenas and library buffers each time). It
    stops when the calling thread ends (its thread-local reference to this object goes away), or
    when a measurement is cancelled."""

    def __init__(self) -> None:
        self.jobs: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self.thread = threading.Thread(target=_serve, args=(self.jobs,), name="harness-measurement",
                                       daemon=True)
        self.thread.start()
        weakref.finalize(self, self.jobs.put, None)

    def cancel(self, done: threading.Event) -> None:
        """Raise ``KeyboardInterrupt`` in this thread's job, wait until the job has unwound, end
        the thread and join it."""
        ident = self.thread.ident
        if ident is not None and self.thread.is_alive() and not done.is_set():
            ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(ident), ctypes.py_object(KeyboardInterrupt))
        self.jobs.put(None)
        while True:
            try:
                self.thread.join()
                return
            except KeyboardInterrupt:   # another Ctrl-C: the job is unwinding already; keep waiting
                continue


def _runner() -> _Runner:
    runner = getattr(_STATE, "runner", None)
    if runner is None or not runner.thread.is_alive():
        runner = _STATE.runner = _Runner()
    return runner


def run_measurement(model: Any, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
    """``fn(*args, **kwargs)``, one measurement of the suite or the report, within
    :func:`counting`: when ``model`` (the modules and inputs its model code runs) is on meta
    (:func:`on_meta`), on the calling thread's measuring thread with torch's C++ meta kernels,
    waited for; in place where :func:`placement` says. The one-count lock is taken once, by the
    thread that runs ``fn``. The result is ``fn``'s; its exception is raised in the caller's
    thread."""
    if placement(model) is not None:
        with counting():
            return fn(*args, **kwargs)
    context = contextvars.copy_context()
    grad = torch.is_grad_enabled()
    cuda_device = torch.cuda.current_device() if torch.cuda.is_initialized() else None
    caller = threading.get_ident()
    outcome: dict[str, Any] = {}
    done = threading.Event()

    def job() -> None:
        _STATE.on_behalf_of = caller
        try:
            if cuda_device is not None:
                torch.cuda.set_device(cuda_device)
            with counting(), torch.set_grad_enabled(grad), cpp_meta_kernels():
                outcome["value"] = context.run(fn, *args, **kwargs)
        except BaseException as exc:  # noqa: BLE001 - raised again in the caller's thread
            outcome["error"] = exc
        finally:
            _STATE.on_behalf_of = None
            done.set()

    runner = _runner()
    runner.jobs.put(job)
    try:
        while not done.wait(0.1):   # a timed wait: a pending Ctrl-C is seen within 0.1 s
            pass
    except BaseException:
        runner.cancel(done)
        _STATE.runner = None
        raise
    if "error" in outcome:
        error = outcome.pop("error")
        raise error
    return outcome.pop("value")


def on_meta(*objects: Any) -> bool:
    """True when ``objects`` (nested tuples, lists, dicts) hold at least one tensor or module and
    every tensor among them, every parameter and buffer of every module among them, is on meta."""
    found = False
    for leaf in torch.utils._pytree.tree_flatten(objects)[0]:
        if isinstance(leaf, torch.nn.Module):
            tensors: Any = itertools.chain(leaf.parameters(), leaf.buffers())
        elif isinstance(leaf, torch.Tensor):
            tensors = (leaf,)
        else:
            continue
        for tensor in tensors:
            found = True
            if tensor.device.type != "meta":
                return False
    return found
