"""Op keys on models that are not DeepSeek-OCR (``harness.measure.keys``, rules 6, 10 and 11):
transformers' Conv1D is a linear, plain products get generic keys, the rest is ``unmapped``."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from harness.measure import UNMAPPED, op_key
from harness.measure.keys import ModuleFrame


class Conv1D(nn.Module):
    """The shape of transformers' Conv1D: ``nf`` outputs, weight (in, out), ``addmm(b, x, W)``."""

    def __init__(self, nf: int, nx: int) -> None:
        super().__init__()
        self.nf = nf
        self.weight = nn.Parameter(torch.empty(nx, nf))
        self.bias = nn.Parameter(torch.zeros(nf))


class SelfAttention(nn.Module):
    pass


def frames(*pairs: tuple[str, nn.Module]) -> tuple[ModuleFrame, ...]:
    return tuple(ModuleFrame(path, module) for path, module in pairs)


def test_conv1d_products_are_linear():
    chain = frames(("", nn.Module()), ("h.0.attn.c_attn", Conv1D(12, 4)))
    assert op_key("matmul", chain) == "linear"


def test_a_module_named_conv1d_without_its_shape_is_not_taken_for_one():
    class Conv1DLike(nn.Module):   # no nf, no 2-d weight
        pass
    Conv1DLike.__name__ = "Conv1D"
    assert op_key("matmul", frames(("x", Conv1DLike()))) == "matmul"


@pytest.mark.parametrize("kind, chain, key", [
    ("matmul", (), "matmul"),                                            # torch.mm at the top level
    ("matmul", (("block", nn.Module()),), "matmul"),                     # bmm in a plain module
    ("grouped_mm", (("router", nn.Module()),), "grouped_mm"),            # grouped mm outside experts
    ("grouped_mm", (("experts", nn.Module()),), "experts"),
    ("matmul", (("attn", SelfAttention()),), "matmul"),                  # attention, ordinal unknown
    ("mha", (), UNMAPPED),                                               # F.multi_head_attention_forward
    ("einsum", (), "einsum"),
    ("linear", (), "linear_functional"),
])
def test_generic_and_unmapped_keys(kind, chain, key):
    assert op_key(kind, frames(*chain)) == key


def test_generic_keys_count_in_the_matmul_class():
    """A product outside any known module lands on a generic key, and a count puts it in its
    matmul class (what the verdict compares), not in the element-wise one."""
    import harness

    result = harness.count(torch.bmm, torch.randn(3, 4, 5), torch.randn(3, 5, 6), counters="torch:patched")
    row = result["torch patched"]
    assert row.by_key == {"matmul": 720} and row.matmul_flops == 720 and row.elementwise_flops == 0
