"""thop ``profile`` (ultralytics-thop): module hooks and functional products, in MACs (``flops = 2 * raw``).

Owns the thop adapter: the patched custom ops and functional rules (scoped to one call), the SDPA
monkeypatch where the installed thop needs it, and the recorder that sizes what thop left unseen.
The rules and their reasons: docs/counters.md, "thop".
"""

from __future__ import annotations

import contextlib
import io
import os
from collections import Counter as Tally
from typing import Any, Callable, Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from harness.run.callmemo import memoised_call_work, meta_signature

from .base import Counter, CounterError, StageCount, Tallies, register_counter
from .keys import KEY_CLASS, UNMAPPED, is_matmul_like, op_key
from .observe import (FunctionCall, FunctionRecorder, ModuleStack, _KIND_BY_FUNC, call_inputs,
                      function_name, iter_tensors, reference_macs, sdpa_macs)

__all__ = ["ThopCounter", "ELEMENTWISE_RULES", "elementwise_rule_for", "thop_counts_sdpa"]

from harness.analytic.cost import ELEMENTWISE_FLOPS as _ELEMENTWISE_FLOPS

#: Per-element conventions of the patched thop custom_ops: (match, convention name, op key).
#: ``match`` is tested against the module class name (and its bases' names).
ELEMENTWISE_RULES: tuple[tuple[Callable[[str], bool], str, str], ...] = (
    (lambda n: n.endswith("RMSNorm"), "rms_norm", "norm"),
    (lambda n: n == "LayerNorm" or n.endswith("LayerNorm") or n.endswith("LayerNorm2d"), "layer_norm", "norm"),
    (lambda n: "QuickGELU" in n, "quick_gelu", "activation"),
    (lambda n: "GELU" in n or n == "GELUActivation", "gelu", "activation"),
    (lambda n: n in ("SiLU", "SiLUActivation") or n.endswith("SiLU"), "silu", "activation"),
    (lambda n: n == "Softmax", "softmax", "softmax"),
)

#: thop module rules -> the kind they count (for keying).
_RULE_KINDS = {
    "count_linear": "linear", "count_convNd": "conv", "count_convtNd": "conv",
    "count_normalization": "norm", "count_softmax": "softmax", "count_upsample": "interpolate",
    "count_prelu": "activation", "count_avgpool": "other_elementwise",
    "count_adap_avgpool": "other_elementwise", "count_multihead_attention": "mha",
    "count_bilinear": "matmul",
}
_MATMUL_RULE_KINDS = {"linear", "conv", "mha", "matmul"}


def elementwise_rule_for(module_type: type) -> tuple[str, str] | None:
    """(convention name, op key) of the patched element-wise rule for a module type, or None."""
    for cls in module_type.__mro__:
        if cls is nn.Module:
            break
        for match, convention, key in ELEMENTWISE_RULES:
            if match(cls.__name__):
                return convention, key
    return None


def thop_counts_sdpa() -> bool:
    """True when the installed thop counts F.scaled_dot_product_attention itself."""
    tp = _thop_profile_module()
    return bool(getattr(tp, "_COUNTS_FUNCTIONS", False)) and \
        F.scaled_dot_product_attention in getattr(tp, "functional_hooks", {})


def _thop_profile_module() -> Any:
    """The ``thop.profile`` module (``thop.profile`` the attribute is the function)."""
    import importlib
    return importlib.import_module("thop.profile")


class _CallWrapper(nn.Module):
    """``forward()`` runs ``module(*args, **kwargs)``: thop.profile only passes positional inputs."""

    def __init__(self, module: nn.Module, args: tuple, kwargs: dict) -> None:
        super().__init__()
        self.module = module
        self._call_args = args
        self._call_kwargs = kwargs

    def forward(self) -> Any:
        return self.module(*self._call_args, **self._call_kwargs)


class _Observer:
    def __init__(self, stack: ModuleStack, functions: FunctionRecorder) -> None:
        self.stack = stack
        self.functions = functions
        self.module_ops: float = 0.0
        self.function_ops: float = 0.0
        self.patch_ops: float = 0.0        # the SDPA monkeypatch: outside thop's total
        self.by_key: Tally = Tally()       # MAC units (floats allowed)
        self.by_op: Tally = Tally()
        self.by_path: Tally = Tally()
        self.counted: Tally = Tally()      # FunctionCall.seq -> MACs this observer's rules counted
        self.notes: list[str] = []

    def module_rule(self, rule: Callable, kind: str, key_override: str | None = None) -> Callable:
        def observed(m: nn.Module, x: Any, y: Any) -> Any:
            before = m.__dict__.get("total_ops", 0)
            result = rule(m, x, y)
            ops = m.__dict__.get("total_ops", 0) - before
            if ops:
                path = self.stack.path_of(m)
                frames = self.stack.frames_for_path(path)
                key = key_override or (op_key(kind, frames) if kind in _MATMUL_RULE_KINDS or kind in KEY_CLASS
                                       else "other_elementwise")
                if kind == "mha":
                    key = UNMAPPED
                self.module_ops += ops
                self.by_key[key] += ops
                self.by_op[f"module:{getattr(rule, '__name__', 'rule')}"] += ops
                self.by_path[path] += ops
            return result
        observed.__name__ = getattr(rule, "__name__", "rule")
        return observed

    def functional_rule(self, rule: Callable, *, patch: bool = False) -> Callable:
        def observed(args: Any, kwargs: Any, y: Any) -> Any:
            ops = rule(args, kwargs, y)
            record = self.functions.find_by_output(y)
            if record is None:
                self.notes.append(f"thop counted a functional call the recorder did not see ({ops} MACs)")
                self.by_key[UNMAPPED] += ops
            else:
                self.counted[record.seq] += ops
                self._key_function(record, ops, prefix="patch" if patch else "function")
            self.function_ops += ops  # inside thop's own total, patch rules included
            return ops
        return observed

    def _key_function(self, record: FunctionCall, ops: float, prefix: str) -> None:
        if record.kind == "sdpa":
            qk, av = record.macs
            qk_part = ops * qk / (qk + av) if qk + av else 0
            self.by_key["sdpa_qk"] += qk_part
            self.by_key["sdpa_av"] += ops - qk_part
        else:
            self.by_key[record.key] += ops
        self.by_op[f"{prefix}:{record.name}"] += ops
        self.by_path[record.path] += ops


def _resolve(module_type: type, table: dict) -> Callable | None:
    for cls in module_type.__mro__:
        if cls in table:
            return table[cls]
    return None


@contextlib.contextmanager
def _scoped_items(mapping: dict, items: dict) -> Iterator[None]:
    """Set ``items`` in ``mapping`` for the block; put back exactly what was there."""
    missing = object()
    saved = {k: mapping.get(k, missing) for k in items}
    mapping.update(items)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is missing:
                mapping.pop(k, None)
            else:
                mapping[k] = v


@contextlib.contextmanager
def _sdpa_monkeypatch(observer: _Observer, ruled: Callable[[nn.Module], bool]) -> Iterator[None]:
    """Wrap ``torch.nn.functional.scaled_dot_product_attention`` for the block (restored on error).

    ``torch.nn.functional`` is one module object, so code that did ``from torch.nn import
    functional as F`` sees the wrapper too; code that imported the function itself does not (the
    function recorder lists those calls as unseen).
    """
    original = F.scaled_dot_product_attention

    def counted_sdpa(query, key, value, *args, **kwargs):
        out = original(query, key, value, *args, **kwargs)
        if not any(ruled(f.module) for f in observer.stack.frames):
            qk, av = sdpa_macs(query.shape, key.shape, value.shape)
            record = observer.functions.find_by_output(out)
            if record is not None:
                observer.counted[record.seq] += qk + av
                observer._key_function(record, qk + av, prefix="patch")
            else:
                observer.by_key["sdpa_qk"] += qk
                observer.by_key["sdpa_av"] += av
            observer.patch_ops += qk + av
        return out

    torch.nn.functional.scaled_dot_product_attention = counted_sdpa
    try:
        yield
    finally:
        torch.nn.functional.scaled_dot_product_attention = original


@register_counter
class ThopCounter(Counter):
    """ultralytics-thop ``profile`` (MACs; FLOPs = 2 x raw)."""

    name = "thop"
    convention = "mac"
    description = "thop.profile (module rules + functional products); raw MACs, FLOPs = 2 x raw"
    shares_variant_runs = True

    def version(self) -> str:
        import thop
        return f"ultralytics-thop {thop.__version__}"

    def run(self, calls: Sequence[Any], *, variant: str) -> StageCount:
        return self.run_variants(calls, (variant,))[variant]

    def run_variants(self, calls: Sequence[Any], variants: Sequence[str]) -> dict[str, StageCount]:
        """One ``thop.profile`` forward per call, observed with every variant's rules.

        Each module rule of each variant runs on the module's call with ``total_ops`` isolated, so
        every variant gets exactly its own rules' counts; thop's own total is the primary variant's
        (patched when asked for, checked against its observed rules as in a single run). A stock
        functional product that ran inside a module only the patched rules cover would be hidden
        from stock by thop's "inside a ruled module" depth: the stock variant is then run again on
        its own (on these models it never is: such modules are norms and activations).
        """
        primary = "patched" if "patched" in variants else variants[0]
        sums = {variant: _VariantSums() for variant in variants}
        devices: set[str] = set()
        rerun: set[str] = set()
        for call in calls:
            args, kwargs = call_inputs(call)
            devices.update(t.device.type for t in iter_tensors((args, kwargs)))
            # inside the engine's call memo, a call on meta that ran before (same module, path and
            # signature, same variants) adds that run's sums
            parts, hidden = memoised_call_work(
                f"thop:{','.join(variants)}:{call.module_path}", call.module,
                meta_signature(call.module, args, kwargs), lambda: _profile_call(call, args, kwargs, variants, primary))
            rerun.update(hidden)
            for variant in variants:
                sums[variant].merge(parts[variant])
        results = {variant: sums[variant].result(self, variant, calls, devices) for variant in variants}
        for variant in sorted(rerun):  # exactness over speed: the separate run
            results[variant] = self.run_variants(calls, (variant,))[variant]
        return results


def _profile_call(call: Any, args: tuple, kwargs: dict, variants: Sequence[str],
                  primary: str) -> tuple[dict[str, "_VariantSums"], set[str]]:
    """One ``thop.profile`` forward of one call observed with every variant's rules: each variant's
    sums over this call, and the variants whose rules a shared run may hide products from."""
    import thop

    tp = _thop_profile_module()
    sums = {variant: _VariantSums() for variant in variants}
    counts_sdpa = thop_counts_sdpa()
    wrapper = _CallWrapper(call.module, args, kwargs)
    stack = ModuleStack(call.module, call.module_path, skip=(wrapper,))
    functions = FunctionRecorder(stack)
    types = {type(m) for m in call.module.modules()}
    rules = {variant: _VariantRules(variant, tp, thop.__version__, counts_sdpa, types,
                                    _Observer(stack, functions), sums[variant])
             for variant in variants}
    sink = _LogSink({v: sums[v].captured for v in variants})
    custom_ops = _merged_module_rules(rules, primary, sink)
    functional = _merged_functional_rules(rules, primary, sink)
    main = rules[primary]
    sdpa_patch = (_sdpa_monkeypatch(main.observer, main.matmul_ruled)
                  if primary == "patched" and not counts_sdpa else contextlib.nullcontext())
    out = io.StringIO()
    with torch.no_grad(), stack, functions, _scoped_items(tp.functional_hooks, functional), \
            sdpa_patch, contextlib.redirect_stdout(out), _captured_thop_logs(sink):
        total, _params = thop.profile(wrapper, inputs=(), custom_ops=custom_ops, verbose=False)
    printed = [line for line in out.getvalue().splitlines() if line.strip()]
    observed = main.observer.module_ops + main.observer.function_ops
    if abs(observed - total) > 1e-6 * max(1.0, abs(total)):
        raise CounterError(f"thop counter: profile returned {total:,} MACs but the observed rules "
                           f"add up to {observed:,} for {call.module_path!r}")
    ruled_types = set(custom_ops)
    hidden: set[str] = set()
    for variant, vr in rules.items():
        if variant != primary and vr.hidden_by_depth(functions, ruled_types):
            hidden.add(variant)
        sums[variant].captured.extend(printed)
        sums[variant].add(vr, stack, functions,
                          total + vr.observer.patch_ops if variant == primary
                          else vr.observer.module_ops + vr.observer.function_ops + vr.observer.patch_ops)
    functions.release()
    return sums, hidden


class _VariantRules:
    """One variant's thop rules for one call: module rules (``custom_ops``), functional rules, and
    which module types carry a rule (for the depth check, unknown and ignored ops)."""

    def __init__(self, variant: str, tp: Any, version: str, counts_sdpa: bool, types: set[type],
                 observer: _Observer, sums: "_VariantSums") -> None:
        patched = variant == "patched"
        self.variant = variant
        self.observer = observer
        self.custom_ops: dict[type, Callable] = {}
        self.rule_kind: dict[type, str] = {}
        for module_type in types:
            rule = _resolve(module_type, tp.register_hooks)
            elementwise = elementwise_rule_for(module_type) if patched else None
            if elementwise is not None:
                convention, key = elementwise
                self.custom_ops[module_type] = observer.module_rule(
                    _elementwise_rule(convention, observer, key), key, key_override=key)
                self.rule_kind[module_type] = key
            elif rule is not None and rule is not tp.zero_ops:
                kind = _RULE_KINDS.get(getattr(rule, "__name__", ""), "other_elementwise")
                self.custom_ops[module_type] = observer.module_rule(rule, kind)
                self.rule_kind[module_type] = kind
            elif rule is tp.zero_ops:
                self.rule_kind[module_type] = "zero"
        self.functional: dict[Any, Callable] = {f: observer.functional_rule(r) for f, r in tp.functional_hooks.items()}
        if patched:
            added = []
            for func, kind in _KIND_BY_FUNC.items():
                if func not in tp.functional_hooks and kind not in ("mha", "sdpa"):
                    self.functional[func] = observer.functional_rule(_reference_rule(kind, func), patch=True)
                    added.append(function_name(func))
            if added:
                sums.patches.append("functional rules added (thop has none; reference MACs): "
                                    + ", ".join(sorted(added)))
            if counts_sdpa:
                sums.patches.append("SDPA monkeypatch not applied: thop "
                                    f"{version} counts F.scaled_dot_product_attention itself "
                                    "(functional_hooks); wrapping it would double count")
            else:
                sums.patches.append("SDPA monkeypatch applied: F.scaled_dot_product_attention wrapped, "
                                    "B*H*Lq*Lk*(dq+dv) MACs per call")
            names = sorted({_elementwise_label(t) for t in types if elementwise_rule_for(t)})
            if names:
                sums.patches.append("custom_ops (harness per-element FLOPs, half in thop MAC units): "
                                    + ", ".join(names))

    def matmul_ruled(self, m: nn.Module) -> bool:
        return self.rule_kind.get(type(m)) in _MATMUL_RULE_KINDS

    def hidden_by_depth(self, functions: FunctionRecorder, ruled_types: set[type]) -> bool:
        """True when a functional product ran inside a module that had a rule in the shared run
        but has none in this variant, outside every module this variant rules: thop (counting
        functional products only outside ruled modules) may have hidden it from this variant."""
        extra = ruled_types - set(self.custom_ops)
        if not extra:
            return False
        return any(any(type(f.module) in extra for f in record.frames)
                   and not any(type(f.module) in self.custom_ops for f in record.frames)
                   for record in functions.calls)


def _merged_module_rules(rules: dict[str, _VariantRules], primary: str, sink: "_LogSink") -> dict[type, Callable]:
    """``custom_ops`` for the shared run: per module type, every variant's rule in turn, each on
    the module's ``total_ops`` as it was before the call; thop keeps the primary variant's."""
    if len(rules) == 1:
        return dict(rules[primary].custom_ops)
    merged: dict[type, Callable] = {}
    for module_type in set().union(*(vr.custom_ops for vr in rules.values())):
        entries = [(vr.variant, vr.custom_ops[module_type]) for vr in rules.values() if module_type in vr.custom_ops]

        def rule(m: nn.Module, x: Any, y: Any, entries=entries) -> None:
            state = m.__dict__
            before = state.get("total_ops", 0)
            kept = before
            for variant, observed in entries:
                state["total_ops"] = before
                with sink.only(variant):
                    observed(m, x, y)
                if variant == primary:
                    kept = state.get("total_ops", 0)
            state["total_ops"] = kept
        rule.__name__ = "harness_variants"
        merged[module_type] = rule
    return merged


def _merged_functional_rules(rules: dict[str, _VariantRules], primary: str, sink: "_LogSink") -> dict[Any, Callable]:
    """``functional_hooks`` for the shared run: every variant's rule for a function, in turn;
    thop adds the primary variant's count (0 when it has no rule for the function)."""
    if len(rules) == 1:
        return dict(rules[primary].functional)
    merged: dict[Any, Callable] = {}
    for func in dict.fromkeys(f for vr in rules.values() for f in vr.functional):
        entries = [(vr.variant, vr.functional[func]) for vr in rules.values() if func in vr.functional]

        def rule(args: Any, kwargs: Any, y: Any, entries=entries) -> Any:
            kept = 0
            for variant, observed in entries:
                with sink.only(variant):
                    ops = observed(args, kwargs, y)
                if variant == primary:
                    kept = ops
            return kept
        merged[func] = rule
    return merged


class _LogSink:
    """Where thop's log lines go: every variant's list, or (inside one variant's rule) its own."""

    def __init__(self, by_variant: dict[str, list[str]]) -> None:
        self._by_variant = by_variant
        self._targets = list(by_variant.values())

    def append(self, line: str) -> None:
        for target in self._targets:
            target.append(line)

    @contextlib.contextmanager
    def only(self, variant: str) -> Iterator[None]:
        previous = self._targets
        self._targets = [self._by_variant[variant]]
        try:
            yield
        finally:
            self._targets = previous


class _VariantSums(Tallies):
    """One variant's sums over the calls of a stage (thop MAC units until :meth:`result`;
    ``by_module`` per path, made inclusive by :meth:`result`)."""

    def __init__(self) -> None:
        super().__init__()
        self.raw = 0.0
        self.patches: list[str] = []
        self.captured: list[str] = []

    def add(self, rules: _VariantRules, stack: ModuleStack, functions: FunctionRecorder, raw: float) -> None:
        observer = rules.observer
        self.raw += raw
        self.by_op.update(observer.by_op)
        self.by_key.update(observer.by_key)
        self.by_module.update(observer.by_path)
        self.notes.extend(observer.notes)
        # leaf modules that ran with no rule, and zero rules (ignored on purpose). A leaf module
        # named like a product whose products ran as functional calls (transformers' Conv1D:
        # torch.addmm) is not a product without a rule: those calls are counted or listed as
        # unseen, each with its size. (Other rule-less leaves stay listed, products or not.)
        with_products = {id(f.module) for record in functions.calls if record.total_macs for f in record.frames}
        for module_id, calls_made in stack.calls_by_module.items():
            module = stack.module_by_id[module_id]
            kind = rules.rule_kind.get(type(module))
            name = f"module:{type(module).__name__}"
            if kind == "zero":
                self.ignored[name] += calls_made
            elif kind is None and not list(module.children()) and not (
                    module_id in with_products and is_matmul_like(name)):
                self.unknown[name] += calls_made
        for record in functions.calls:  # products thop could not see
            reference = record.total_macs
            if observer.counted[record.seq] or not reference:
                continue
            if any(rules.matmul_ruled(f.module) for f in record.frames):
                continue  # inside nn.Linear & co: the module rule counts it
            self.unknown[f"function:{record.name}"] += 1
            self.unseen_ops[record.name] += 2 * reference
            for key, macs in record.keyed_macs().items():
                self.unseen[key] += 2 * macs

    def merge(self, other: "_VariantSums") -> None:
        super().merge(other)
        self.patches.extend(other.patches)
        self.captured.extend(other.captured)

    def result(self, counter: "ThopCounter", variant: str, calls: Sequence[Any], devices: set[str]) -> StageCount:
        # by_key is in thop's MAC units (the element-wise custom rules hold half their FLOPs): x2
        by_key_flops = {k: _as_int(2 * v) for k, v in self.by_key.items() if v}
        inclusive: Tally = Tally()
        roots = {len(c.module_path.split(".")) if c.module_path else 0 for c in calls}
        for path, ops in self.by_module.items():
            parts = path.split(".") if path else []
            for i in range(min(roots), len(parts) + 1):
                inclusive[".".join(parts[:i])] += ops
        return StageCount(
            counter=counter.name, variant=variant, version=counter.version(), target="", stage="",
            raw=_as_int(self.raw), convention=counter.convention, flops=_as_int(round(2 * self.raw)),
            by_op={k: _as_int(2 * v) for k, v in self.by_op.items() if v}, by_key=by_key_flops,
            unknown_ops=dict(self.unknown), ignored_ops=dict(self.ignored), wall_time_s=0.0,
            by_module={k: _as_int(2 * v) for k, v in inclusive.items()},
            unseen={k: v for k, v in self.unseen.items() if v}, unseen_ops=dict(self.unseen_ops),
            patches=tuple(dict.fromkeys(self.patches)), warnings=self.captured,
            notes=list(dict.fromkeys(self.notes)), devices=tuple(sorted(devices)))


@contextlib.contextmanager
def _captured_thop_logs(sink: Any) -> Iterator[None]:
    """Route thop's log records (it logs on the root logger and on its module loggers) into ``sink``.

    A filter on each logger thop logs through drops thop's records after copying their message;
    everything else passes. The filters are removed on exit.
    """
    import logging

    class _ThopRecords(logging.Filter):
        def filter(self, record: logging.LogRecord) -> bool:
            if f"{os.sep}thop{os.sep}" in record.pathname:
                sink.append(f"{record.levelname}: {record.getMessage().splitlines()[0]}")
                return False
            return True

    filt = _ThopRecords()
    loggers = [logging.getLogger(), logging.getLogger("thop.vision.basic_hooks"), logging.getLogger("thop.profile")]
    for logger in loggers:
        logger.addFilter(filt)
    try:
        yield
    finally:
        for logger in loggers:
            logger.removeFilter(filt)


def _as_int(value: float | int) -> int | float:
    value = float(value)
    return int(value) if value.is_integer() else value


def _elementwise_label(module_type: type) -> str:
    convention, _key = elementwise_rule_for(module_type)
    return f"{module_type.__name__}={_ELEMENTWISE_FLOPS[convention]}/elem ({convention})"


def _elementwise_rule(convention: str, observer: _Observer, key: str) -> Callable:
    per_element = _ELEMENTWISE_FLOPS[convention]

    def rule(m: nn.Module, x: Any, y: Any) -> None:
        out = y[0] if isinstance(y, (tuple, list)) else y
        m.total_ops += per_element * out.numel() / 2  # MAC units: x2 gives the harness FLOPs
    rule.__name__ = f"harness_{convention}"
    return rule


def _reference_rule(kind: str, func: Any) -> Callable:
    def rule(args: Any, kwargs: Any, y: Any) -> int:
        return sum(reference_macs(kind, func, args, kwargs or {}, y))
    rule.__name__ = f"harness_{kind}"
    return rule
