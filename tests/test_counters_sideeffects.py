"""No side effects: after any counter runs -- normally or when the forward raises -- torch's
functions, the global hooks and modes, the tools' tables and the model (modules, buffers,
parameters, hooks, training flags, attributes) are exactly as before."""

from __future__ import annotations

import importlib
import logging

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules import module as module_globals
from torch.utils.flop_counter import flop_registry

from tests.toys import COUNTERS, VARIANTS, Call
from harness.measure import count

thop_profile = importlib.import_module("thop.profile")





class Block(nn.Module):
    """Linear, LayerNorm, GELU, einsum, SDPA and F.linear; optionally raises at the end."""

    def __init__(self, fail: bool = False):
        super().__init__()
        self.fail = fail
        self.norm = nn.LayerNorm(8)
        self.qkv = nn.Linear(8, 24)
        self.act = nn.GELU()
        self.gate = nn.Parameter(torch.randn(4, 8))
        self.register_buffer("scale", torch.ones(1))
        self.register_buffer("cache", torch.zeros(2), persistent=False)
        self.register_forward_hook(lambda m, i, o: None)

    def forward(self, x):
        q, k, v = self.qkv(self.act(self.norm(x))).chunk(3, dim=-1)
        e = torch.einsum("bqd,bkd->bqk", q, k)
        out = F.scaled_dot_product_attention(q[:, None], k[:, None], v[:, None]) * self.scale
        logits = F.linear(x, self.gate)
        if self.fail:
            raise RuntimeError("forward failed on purpose")
        return out, e, logits


def torch_state() -> dict:
    return {
        "F": {n: id(getattr(F, n)) for n in dir(F) if callable(getattr(F, n))},
        "torch": {n: id(getattr(torch, n)) for n in ("einsum", "matmul", "bmm", "mm", "addmm", "baddbmm",
                                                     "_grouped_mm", "conv2d")},
        "Tensor": {n: id(getattr(torch.Tensor, n)) for n in ("__matmul__", "__rmatmul__", "matmul", "bmm", "mm")},
        "nn.functional module attr": id(torch.nn.functional.scaled_dot_product_attention),
        "global hooks": {n: dict(getattr(module_globals, n)) for n in dir(module_globals)
                         if n.startswith("_global_") and isinstance(getattr(module_globals, n), dict)},
        "function modes": torch._C._len_torch_function_stack(),
        "dispatch modes": torch._C._len_torch_dispatch_stack(),
        "grad": torch.is_grad_enabled(),
        "tracing": torch._C._get_tracing_state(),
        "flop_registry": dict(flop_registry),
        "thop functional_hooks": dict(thop_profile.functional_hooks),
        "thop register_hooks": dict(thop_profile.register_hooks),
        "root log filters": list(logging.getLogger().filters),
    }


def model_state(model: nn.Module) -> dict:
    state = {"state_dict": list(model.state_dict().keys())}
    for name, m in model.named_modules():
        state[name] = (
            type(m), m.training, sorted(m.__dict__), {k: id(v) for k, v in m._buffers.items()},
            {k: id(v) for k, v in m._parameters.items()}, sorted(m._non_persistent_buffers_set),
            len(m._forward_hooks), len(m._forward_pre_hooks), len(m._backward_hooks),
            len(m._forward_hooks_with_kwargs), len(m._forward_hooks_always_called),
        )
    state["named_buffers"] = [n for n, _ in model.named_buffers()]
    return state


@pytest.mark.parametrize("fail", [False, True], ids=["ok", "forward-raises"])
@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("counter", COUNTERS)
def test_no_side_effects(counter, variant, fail):
    model = Block(fail=fail)
    model.train()  # thop switches to eval while profiling: it must come back
    x = torch.randn(2, 5, 8)
    before_torch, before_model = torch_state(), model_state(model)
    if fail:
        with pytest.raises(RuntimeError, match="forward failed on purpose"):
            count(counter, [Call(model, (x,))], variant=variant, strict=False)
    else:
        result = count(counter, [Call(model, (x,))], variant=variant, strict=False)
        assert result.flops > 0
    assert torch_state() == before_torch
    assert model_state(model) == before_model


@pytest.mark.parametrize("fail", [False, True], ids=["ok", "forward-raises"])
def test_thop_sdpa_monkeypatch_for_a_thop_without_sdpa_rule(monkeypatch, fail):
    """A thop that does not count SDPA itself gets the monkeypatch; F is restored even on error."""
    monkeypatch.delitem(thop_profile.functional_hooks, F.scaled_dot_product_attention)
    original = F.scaled_dot_product_attention
    model = Block(fail=fail)
    x = torch.randn(2, 5, 8)
    before_torch, before_model = torch_state(), model_state(model)
    if fail:
        with pytest.raises(RuntimeError, match="forward failed on purpose"):
            count("thop", [Call(model, (x,))], variant="patched")
    else:
        patched = count("thop", [Call(model, (x,))], variant="patched")
        assert any("SDPA monkeypatch applied" in p for p in patched.patches)
        # SDPA on (2, 1, 5, 8): QK^T 2 * 2 * 1 * 5 * 5 * 8 = 800, AV the same
        assert (patched.by_key["sdpa_qk"], patched.by_key["sdpa_av"]) == (800, 800)
        stock = count("thop", [Call(model, (x,))], variant="stock")
        assert "sdpa_qk" not in stock.by_key and stock.unseen["sdpa_qk"] == 800
    assert F.scaled_dot_product_attention is original
    assert torch.nn.functional.scaled_dot_product_attention is original
    assert torch_state() == before_torch
    assert model_state(model) == before_model


def test_thop_2_2_3_is_not_monkeypatched_for_sdpa():
    model = Block()
    result = count("thop", [Call(model, (torch.randn(2, 5, 8),))], variant="patched")
    assert any("SDPA monkeypatch not applied" in p for p in result.patches)
    assert (result.by_key["sdpa_qk"], result.by_key["sdpa_av"]) == (800, 800)  # once, not twice
