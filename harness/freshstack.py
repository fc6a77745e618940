"""Run model code on a fresh Python stack: a new thread that the caller waits for.

CPython 3.11+ keeps its frames in a per-thread stack of 16 KiB chunks. A chunk is mapped (``mmap``)
when a call needs room past the last one and unmapped when the first frame in it returns. Model code
called a few dozen frames deep (pytest, the engine, a report) keeps crossing one of those borders:
every op under the border maps and unmaps a chunk and faults its pages in. On the OCR-2 encoder
under thop that was 308,000 ``mmap``/``munmap`` pairs for 15 runs at 200 frames deep, against 4,800
at the top of a script (twice the time); ``torch.jit.trace`` (fvcore) also walks every frame of the
stack for each op it records. A new thread starts on a root chunk that is never unmapped, with a
few frames on it, so the same counts cost what they cost at the top of a script.

What the new thread needs from its caller is carried over: the context variables (the engine's call
memo), torch's grad mode and, once CUDA is initialised, the current CUDA device. Code that runs under thread-local torch state the new thread would not
have (a torch function or dispatch mode such as ``with torch.device(...)`` or a FakeTensorMode,
inference mode, autocast, a jit trace in progress) runs where it is called, as does code already on
a fresh stack. The result is the callable's; its exception is raised in the caller's thread.
"""

from __future__ import annotations

import contextvars
import threading
from typing import Any, Callable, TypeVar

import torch

__all__ = ["on_a_fresh_stack"]

T = TypeVar("T")

_STATE = threading.local()


def _runs_in_place() -> bool:
    """True where a new thread would not see what the caller set up (or we are on one already)."""
    if getattr(_STATE, "fresh", False):
        return True
    autocast = getattr(torch._C, "_is_any_autocast_enabled", None)
    return bool(torch._C._len_torch_function_stack() or torch._C._len_torch_dispatch_stack()
                or torch.is_inference_mode_enabled() or (autocast is not None and autocast())
                or torch._C._get_tracing_state() is not None)


def on_a_fresh_stack(fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
    """``fn(*args, **kwargs)`` in a new thread started on a fresh stack, waited for (see the
    module's docstring); in place where that thread would miss the caller's torch state."""
    if _runs_in_place():
        return fn(*args, **kwargs)
    context = contextvars.copy_context()
    grad = torch.is_grad_enabled()
    cuda_device = torch.cuda.current_device() if torch.cuda.is_initialized() else None
    outcome: dict[str, Any] = {}

    def run() -> None:
        _STATE.fresh = True
        try:
            if cuda_device is not None:
                torch.cuda.set_device(cuda_device)
            with torch.set_grad_enabled(grad):
                outcome["value"] = context.run(fn, *args, **kwargs)
        except BaseException as exc:  # noqa: BLE001 - raised again in the caller's thread
            outcome["error"] = exc

    thread = threading.Thread(target=run, name="harness-fresh-stack", daemon=True)
    thread.start()
    thread.join()
    if "error" in outcome:
        error = outcome.pop("error")
        raise error
    return outcome["value"]
