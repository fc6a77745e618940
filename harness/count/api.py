"""``harness.count(model, *args, **kwargs)``: every installed counter, stock and patched, on one
call of any PyTorch model, with every delta explained. FLOPs = 2 x MACs.

The model runs where it lives: a model built under ``torch.device("meta")`` is counted on meta
(no storage, seconds at any size; its inputs are moved to meta); a real model on real tensors.
``device="meta"`` counts a real model on a meta copy (its weights are not copied).
"""

from __future__ import annotations

import copy
import difflib
from typing import Any, Callable, Iterable, Sequence

import torch
from torch import nn

from harness.measure import VARIANTS, CounterError, StageCount
from harness.measure import count as count_stage
from harness.measure.torch_counter import recording_dataflow

from harness.report.inputs import COUNTER_PACKAGES, counter_installed
from harness.targets.base import StageCall

from harness.verify import expected_verdict

from .result import CountResult, choose_reference, label_of

__all__ = ["count", "CountError", "COUNTER_PACKAGES", "installed_counters", "resolve_counters"]

#: Order of the counters (and of the rows of every table): stock before patched.
ORDER = tuple(COUNTER_PACKAGES)
VARIANT_ORDER = ("stock", "patched")


class CountError(ValueError):
    """Input :func:`count` cannot use; the message names it and says what to do."""


def installed_counters() -> dict[str, str | None]:
    """counter -> None when its package imports here, else what to install."""
    return {name: counter_installed(name) for name in COUNTER_PACKAGES}


def _names(value: str | Iterable[str] | None) -> list[str]:
    if value is None:
        return []
    items = [value] if isinstance(value, str) else list(value)
    out: list[str] = []
    for item in items:
        for part in str(item).split(","):
            part = part.strip()
            if part and part not in out:
                out.append(part)
    return out


def _unknown(what: str, name: str, choices: Sequence[str]) -> CountError:
    close = difflib.get_close_matches(name, list(choices), n=2, cutoff=0.5)
    hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    return CountError(f"unknown {what} {name!r}.{hint} Available: {', '.join(choices)}")


def resolve_counters(counters: str | Iterable[str] | None = None,
                     variants: str | Iterable[str] | None = None) -> tuple[list[tuple[str, str]], dict[str, str]]:
    """``([(counter, variant), ...], skipped)``: what to run, in table order.

    ``counters``: names (``"torch"``, ``"fvcore:stock"``; a list or comma-separated); default
    every installed counter. ``variants``: ``"stock"``, ``"patched"`` or both (the default) for
    counters named without one. A counter named explicitly must be installed; by default a
    missing package is skipped and said so.
    """
    wanted_variants = _names(variants) or list(VARIANT_ORDER)
    for v in wanted_variants:
        if v not in VARIANTS:
            raise _unknown("variant", v, VARIANT_ORDER)
    installed = installed_counters()
    specs: list[tuple[str, str]] = []
    skipped: dict[str, str] = {}
    names = _names(counters)
    if not names:
        for name in ORDER:
            if installed[name]:
                skipped[name] = installed[name]  # type: ignore[assignment]
                continue
            specs.extend((name, v) for v in VARIANT_ORDER if v in wanted_variants)
        return specs, skipped
    for text in names:
        name, _, variant = text.partition(":")
        if name not in COUNTER_PACKAGES:
            raise _unknown("counter", name, ORDER)
        if variant and variant not in VARIANTS:
            raise _unknown(f"variant of {name}", variant, VARIANT_ORDER)
        if installed[name]:
            raise CountError(f"counter {name}: {installed[name]}")
        for v in ([variant] if variant else [v for v in VARIANT_ORDER if v in wanted_variants]):
            if (name, v) not in specs:
                specs.append((name, v))
    specs.sort(key=lambda s: (ORDER.index(s[0]), VARIANT_ORDER.index(s[1])))
    return specs, skipped


# ------------------------------------------------------------------------------ the user's model
class ModelState:
    """Everything a forward can change in a model, taken before counting and put back after each
    counter run: every module's ``training`` flag and ``__dict__`` entries (a Python attribute a
    stateful forward rebinds: a step counter, a cache), and every buffer, by identity *and* value
    (BatchNorm updates ``running_mean``/``num_batches_tracked`` in place). Parameters are left
    alone: the counters run the forward under ``no_grad``, which does not write them. An object a
    forward mutates in place (a Python list it appends to) is not copied."""

    def __init__(self, model: nn.Module) -> None:
        self._modules: list[tuple[nn.Module, dict[str, Any], dict[str, Any]]] = []
        self._values: list[tuple[torch.Tensor, torch.Tensor]] = []
        seen: set[int] = set()
        for module in model.modules():
            if id(module) in seen:
                continue
            seen.add(id(module))
            state = {k: v for k, v in vars(module).items() if _plain_attribute(k)}
            self._modules.append((module, state, dict(module._buffers)))
            for buf in module._buffers.values():
                if isinstance(buf, torch.Tensor) and buf.device.type != "meta":
                    self._values.append((buf, buf.detach().clone()))

    def restore(self) -> None:
        for module, state, buffers in self._modules:
            for key in [k for k in vars(module) if k not in state and _plain_attribute(k)]:
                del module.__dict__[key]
            module.__dict__.update(state)
            module._buffers.clear()
            module._buffers.update(buffers)
        with torch.no_grad():
            for buf, value in self._values:
                if buf.shape == value.shape:
                    buf.copy_(value)
                else:  # resized in place: give it back its storage's old content and shape
                    buf.set_(value.clone())


def _plain_attribute(name: str) -> bool:
    """A module attribute :class:`ModelState` restores: not its parameter/buffer/child tables
    (handled apart) nor its hook tables (each counter removes its own hooks)."""
    return name not in ("_parameters", "_buffers", "_modules") and not name.startswith(("_forward", "_backward"))


def module_parameters(model: nn.Module) -> dict[str, int]:
    """module path -> its parameters, its descendants' included, in ``named_modules`` order (a
    tree, parents first; the model itself is ``""``). A parameter shared by two modules is
    counted once in each, and once in their common ancestors."""
    out: dict[str, int] = {}
    for path, module in model.named_modules():
        out[path] = sum(p.numel() for p in module.parameters())
    return out


# ------------------------------------------------------------------------------------- the call
class CallableModule(nn.Module):
    """Wraps a plain callable so the counters can hook and trace it. A bound method of a module
    registers that module as the child ``model`` (its submodules are named ``model.<path>``)."""

    def __init__(self, fn: Callable[..., Any]) -> None:
        super().__init__()
        self.fn = fn
        owner = getattr(fn, "__self__", None)
        if isinstance(owner, nn.Module):
            self.model = owner

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return self.fn(*args, **kwargs)


def _first_device(module: nn.Module) -> torch.device | None:
    for tensor in [*module.parameters(), *module.buffers()]:
        return tensor.device
    return None


def _input_devices(value: Any) -> set[str]:
    leaves, _ = torch.utils._pytree.tree_flatten(value)
    return {leaf.device.type for leaf in leaves if isinstance(leaf, torch.Tensor)}


def _to_device(value: Any, device: torch.device) -> Any:
    def move(leaf: Any) -> Any:
        if isinstance(leaf, torch.Tensor) and leaf.device != device:
            return leaf.to(device)
        return leaf
    return torch.utils._pytree.tree_map(move, value)


def meta_copy(module: nn.Module) -> nn.Module:
    """A copy of ``module`` on meta, without copying its weights (parameters and buffers are
    replaced by meta tensors of the same shapes and dtypes before the copy)."""
    memo: dict[int, Any] = {}
    for p in module.parameters():
        memo[id(p)] = nn.Parameter(torch.empty_like(p, device="meta"), requires_grad=p.requires_grad)
    for b in module.buffers():
        memo[id(b)] = torch.empty_like(b, device="meta")
    return copy.deepcopy(module, memo)


def _placement(module: nn.Module, args: tuple, kwargs: dict, device: str | torch.device | None
               ) -> tuple[nn.Module, tuple, dict, str, list[str]]:
    """Where to count: the model's own device unless ``device`` says otherwise."""
    notes: list[str] = []
    model_device = _first_device(module)
    inputs_on = _input_devices((args, kwargs))
    if device is None:
        if model_device is not None:
            target = model_device
        elif inputs_on:
            target = torch.device("meta" if "meta" in inputs_on else sorted(inputs_on)[0])
        else:
            target = torch.device("cpu")
    else:
        try:
            target = torch.device(device)
        except (RuntimeError, TypeError) as exc:
            raise CountError(f"device={device!r}: not a torch device ({exc}); use 'meta', 'cpu' or 'cuda:N'") from None
    if model_device is not None and model_device.type != target.type:
        if target.type == "meta":
            module = meta_copy(module)
            notes.append(f"counted on a meta copy of the model (its weights stay on {model_device})")
        else:
            raise CountError(
                f"device={str(target)!r}, but the model's parameters are on {model_device}: move the model "
                f"yourself (model.to({str(target)!r})) or build it under torch.device({str(target)!r}); "
                f"harness.count never moves your model")
    if inputs_on - {target.type}:
        notes.append(f"inputs moved from {', '.join(sorted(inputs_on - {target.type}))} to {target}")
        args, kwargs = _to_device((args, kwargs), target)
    return module, args, kwargs, str(target), notes


def _reason(counter: str, exc: Exception, device: str) -> str:
    """Why a counter could not count this model, in one line, with the fix."""
    text = " ".join(str(exc).split())
    if counter == "fvcore" and device == "meta" and "on meta tensors" in text:
        inner = exc.__cause__
        cause = f"{type(inner).__name__}: {str(inner).split('.')[0]}" if inner is not None else text
        return (f"fvcore cannot trace this model on meta ({cause}): torch.jit.trace fails in a "
                f"meta tensors in this model (convolutions are traced as on cpu; this op is not); build the "
                f"model on cpu to count it with fvcore")
    return text


def _expected_value(expected: int | Callable[..., int], model: Any, args: tuple, kwargs: dict) -> int:
    value = expected(model, *args, **kwargs) if callable(expected) else expected
    if isinstance(value, bool) or not isinstance(value, int):
        try:
            import numbers

            if isinstance(value, numbers.Integral):
                return int(value)
        except Exception:  # pragma: no cover
            pass
        raise CountError(f"expected: need an int count of matmul-class FLOPs (FLOPs = 2 x MACs), got "
                         f"{type(value).__name__} {value!r}" + (" from the callable" if callable(expected) else ""))
    if value < 0:
        raise CountError(f"expected: a FLOP count cannot be negative, got {value:,}")
    return value


def count(model_or_callable: nn.Module | Callable[..., Any], *args: Any,
          counters: str | Iterable[str] | None = None, variants: str | Iterable[str] | None = None,
          device: str | torch.device | None = None, expected: int | Callable[..., int] | None = None,
          rtol: float = 0.0, call_kwargs: dict | None = None, **kwargs: Any) -> CountResult:
    """Count ``model_or_callable(*args, **kwargs)`` with every counter, stock and patched.

    ``counters``: ``"torch"``, ``"fvcore"``, ``"thop"`` or ``"name:variant"`` (list or comma
    separated; default every installed one); ``variants``: ``"stock"`` and/or ``"patched"``
    (default both). ``device``: where to count (default: where the model is; ``"meta"`` counts a
    real model on a meta copy). ``expected``: the matmul-class FLOPs you derived (an int, or
    ``callable(model, *args, **kwargs) -> int``): the result gets a :class:`Verdict` (each
    counter's delta after its named causes within ``rtol``). A keyword input of the model that
    clashes with one of these names goes in ``call_kwargs``.

    A counter that cannot run this model (fvcore's jit trace failing on meta, ...) is
    listed in ``result.missing`` with the reason; an error of the model itself is raised.
    """
    if not callable(model_or_callable):
        raise CountError(f"harness.count: expected an nn.Module or a callable, got "
                         f"{type(model_or_callable).__name__}")
    kwargs = {**kwargs, **(call_kwargs or {})}
    if isinstance(model_or_callable, nn.Module):
        module = model_or_callable
        name = type(module).__name__
    else:
        module = CallableModule(model_or_callable)
        name = getattr(model_or_callable, "__qualname__", None) or type(model_or_callable).__name__
    if rtol < 0:
        raise CountError(f"rtol={rtol}: a tolerance cannot be negative")
    specs, skipped = resolve_counters(counters, variants)
    if not specs:
        raise CountError("no counter to run: " + ("; ".join(f"{k}: {v}" for k, v in skipped.items())
                                                   or "counters/variants selected nothing"))
    module, args, kwargs, where, notes = _placement(module, tuple(args), dict(kwargs), device)
    call = StageCall("model", "", module, args, kwargs)   # the whole model: one call, path ""
    counts: dict[str, StageCount] = {}
    missing: dict[str, str] = {label_of(c, "*").replace("*", "(all)"): why for c, why in skipped.items()}
    state = ModelState(module)   # each counter sees the model as the user left it, and so does the user after
    for counter, variant in specs:
        label = label_of(counter, variant)
        try:
            with recording_dataflow():
                counts[label] = count_stage(counter, [call], variant=variant, strict=False,
                                            target=name, stage="model")
        except CounterError as exc:
            missing[label] = _reason(counter, exc, where)
        except Exception as exc:
            if counter == "torch":  # FlopCounterMode is transparent: this is the model's own error
                raise CountError(f"{name} raised {type(exc).__name__} on these inputs (under torch "
                                 f"FlopCounterMode, which does not change what runs): "
                                 f"{str(exc).splitlines()[0] if str(exc) else ''}") from exc
            missing[label] = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        finally:
            state.restore()
    if not counts:
        raise CountError(f"no counter could count {name}: " + "; ".join(f"{k}: {v}" for k, v in missing.items()))
    result = CountResult(model=name, device=where, counts=counts, missing=missing,
                         reference=choose_reference(counts, counts), notes=notes,
                         parameters=module_parameters(module))
    if expected is not None:
        value = _expected_value(expected, model_or_callable, args, kwargs)
        reference = counts.get(result.reference) if result.reference else None
        result.verdict = expected_verdict(value, counts, reference, rtol=rtol)
    return result


