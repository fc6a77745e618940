"""How the harness runs model code to count it: on a fresh stack, with torch's C++ meta kernels.

Neither changes what runs (the same modules, the same aten ops, the same shapes and dtypes) nor any
count; both only make a run cheaper. Every counter, the byte counter, the targets' upstream outputs,
a :class:`harness.targets.StageCall` and each engine measurement run their model code through
:func:`run_model_code` when it is on meta (:func:`runner_for`); real tensors run where called.

**A fresh stack.** CPython 3.11+ keeps its frames in a per-thread stack of 16 KiB chunks. A chunk
is mapped (``mmap``) when a call needs room past the last one and unmapped when the first frame in
it returns. Model code called a few dozen frames deep (pytest, the engine, a report) keeps crossing
one of those borders: every op under it maps and unmaps a chunk and faults its pages in. On the
OCR-2 encoder under thop that was 308,000 ``mmap``/``munmap`` pairs for 15 runs at 200 frames deep,
against 4,800 at the top of a script (twice the time); ``torch.jit.trace`` (fvcore) also walks
every frame of the stack for each op it records. A new thread starts on a root chunk that is never
unmapped, with a few frames on it; each calling thread gets one such thread, kept for its next runs
(a thread per run would also mean new allocator arenas and library buffers each time). What the
thread needs from its caller is carried over: the context variables (the engine's call memo),
torch's grad mode and, once CUDA is initialised, the current CUDA device. Code that runs under
thread-local torch state that thread would not have (a torch function or dispatch mode such as
``with torch.device(...)`` or a FakeTensorMode, inference mode, autocast, a jit trace in progress)
runs where it is called, as does code already inside.

**C++ meta kernels.** ``import torch`` registers a Python meta kernel (``torch._refs`` /
``torch._meta_registrations``) for 1,337 aten ops; for 636 of them (``mul``, ``add``, ``cat``, ...)
it overrides the C++ structured meta kernel, which computes the same output shape and dtype in
about 1 µs instead of about 100 µs. While model code runs here, those 636 ops use the C++ kernel;
the Python ones are put back when the outermost run ends (about 10 ms), so torch behaves as
shipped outside. The ops with only a Python meta kernel (convolution, ``_grouped_mm``, SDPA's
pieces, ...) keep it. A torch whose internals differ (no split possible) keeps its kernels and
only runs slower: :func:`cpp_meta_kernels_available` says which, and why.
"""

from __future__ import annotations

import contextlib
import contextvars
import itertools
import queue
import threading
import weakref
from typing import Any, Callable, Iterator, TypeVar

import torch

__all__ = ["run_model_code", "runner_for", "runner_for_calls", "on_meta", "cpp_meta_kernels", "cpp_meta_kernels_available"]

T = TypeVar("T")

_STATE = threading.local()


# -------------------------------------------------------------------------------------- meta kernels
class _MetaSplit:
    """torch's Python meta library, split in two once per process: the ops whose Python kernel
    overrides a C++ one (``overriding``, a library of their own that is dropped while counting)
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
        except Exception as exc:  # another torch: keep its kernels, count as before (slower)
            _SPLIT_ERROR = f"torch {torch.__version__}: {type(exc).__name__}: {exc}"
    return _SPLIT


def cpp_meta_kernels_available() -> tuple[bool, str]:
    """Whether :func:`cpp_meta_kernels` can switch this torch's meta kernels, and if not, why."""
    with _LOCK:
        split = _split()
        if split is None:
            return False, _SPLIT_ERROR or "unknown"
        return True, (f"{len(split.overriding_ops)} aten ops use their C++ meta kernel while counting "
                      f"(torch {torch.__version__})")


@contextlib.contextmanager
def cpp_meta_kernels() -> Iterator[None]:
    """Within the block (outermost block: process-wide), the aten ops that have a C++ meta kernel
    use it instead of torch's Python one; nested blocks are free."""
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


# --------------------------------------------------------------------------------------- fresh stack
def _runs_in_place() -> bool:
    """True where a new thread would not see what the caller set up (or we are inside already)."""
    if getattr(_STATE, "inside", False):
        return True
    autocast = getattr(torch._C, "_is_any_autocast_enabled", None)
    return bool(torch._C._len_torch_function_stack() or torch._C._len_torch_dispatch_stack()
                or torch.is_inference_mode_enabled() or (autocast is not None and autocast())
                or torch._C._get_tracing_state() is not None)


def _serve(jobs: "queue.SimpleQueue[Callable[[], None] | None]") -> None:
    _STATE.inside = True
    while True:
        job = jobs.get()
        if job is None:
            return
        job()
        del job   # its arguments and result belong to the caller now: keep nothing until the next


class _Runner:
    """The thread that runs one calling thread's model code, started once and kept (a new thread
    per run would also mean new per-thread allocator arenas and library buffers each time). It
    stops when the calling thread ends (its thread-local reference to this object goes away)."""

    def __init__(self) -> None:
        self.jobs: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self.thread = threading.Thread(target=_serve, args=(self.jobs,), name="harness-model-code",
                                       daemon=True)
        self.thread.start()
        weakref.finalize(self, self.jobs.put, None)


def _runner() -> _Runner:
    runner = getattr(_STATE, "runner", None)
    if runner is None or not runner.thread.is_alive():
        runner = _STATE.runner = _Runner()
    return runner


def run_model_code(fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
    """``fn(*args, **kwargs)`` on the calling thread's model-code thread (a fresh stack), with the
    C++ meta kernels, waited for (see the module's docstring). In place, as it is, under torch
    state that thread would miss, and inside another ``run_model_code``. The result is ``fn``'s;
    its exception is raised in the caller's thread."""
    if _runs_in_place():
        return fn(*args, **kwargs)
    context = contextvars.copy_context()
    grad = torch.is_grad_enabled()
    cuda_device = torch.cuda.current_device() if torch.cuda.is_initialized() else None
    outcome: dict[str, Any] = {}
    done = threading.Event()

    def job() -> None:
        try:
            if cuda_device is not None:
                torch.cuda.set_device(cuda_device)
            with torch.set_grad_enabled(grad), cpp_meta_kernels():
                outcome["value"] = context.run(fn, *args, **kwargs)
        except BaseException as exc:  # noqa: BLE001 - raised again in the caller's thread
            outcome["error"] = exc
        finally:
            done.set()

    _runner().jobs.put(job)
    done.wait()
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


def _in_place(fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
    return fn(*args, **kwargs)


def runner_for_calls(calls: Any) -> Callable[..., Any]:
    """:func:`runner_for` the modules and inputs of ``calls`` (duck-typed StageCalls: ``module``,
    ``args``, ``kwargs``)."""
    return runner_for([(c.module, c.args, c.kwargs) for c in calls])


def runner_for(*objects: Any) -> Callable[..., Any]:
    """:func:`run_model_code` for model code on meta (``on_meta(*objects)``: the modules and inputs
    it runs); a plain call for real tensors, which compute for real where they are called: their
    cost is the arithmetic, and they keep the calling thread's allocator and library state (the
    vendor LM's CPU forwards on the model-code thread grew a worker by 2-4 GB)."""
    return run_model_code if on_meta(*objects) else _in_place
