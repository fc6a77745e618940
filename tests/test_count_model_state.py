"""``harness.count`` never changes the user's model: it counts the model in the mode the user left
it (train or eval), and puts back every buffer, Python attribute and mode after each counter run,
so every counter x variant sees the same model and the user gets it back as it was."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import harness

pytest.importorskip("fvcore")
pytest.importorskip("thop")


def test_batchnorm_in_train_mode_keeps_its_running_stats():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU())
    model.train()
    bn = model[1]
    before = {k: v.clone() for k, v in bn.state_dict().items()}
    buffers = {k: id(v) for k, v in bn.named_buffers()}
    x = torch.randn(2, 3, 8, 8)
    result = harness.count(model, x)
    assert len(result.counts) == 6          # every counter x variant ran the forward in train mode
    assert model.training and bn.training   # the mode the user left it in
    assert int(bn.num_batches_tracked) == 0  # not 6: no run advanced it
    for key, value in bn.state_dict().items():
        assert torch.equal(value, before[key]), key
    assert {k: id(v) for k, v in bn.named_buffers()} == buffers
    # conv: 2 * B * H * W * Cout * Cin * 3 * 3 = 2 * 2 * 64 * 4 * 27
    assert result.flops == 2 * 2 * 64 * 4 * 27


class Stateful(nn.Module):
    """A forward that grows a buffer and a Python counter: each run would see the previous one."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(8, 8, bias=False)
        self.register_buffer("memory", torch.zeros(0, 8))
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        self.memory = torch.cat([self.memory, x])          # rebinds the buffer, one row per token
        return self.proj(self.memory)                      # work grows with the state


def test_a_stateful_module_shows_every_counter_the_same_state():
    model = Stateful()
    x = torch.randn(4, 8)
    result = harness.count(model, x, expected=2 * 4 * 8 * 8)   # 4 rows of memory after one call
    assert result.verdict.passed, str(result.verdict)
    assert {c.matmul_flops for c in result.counts.values()} == {2 * 4 * 8 * 8}
    assert model.calls == 0 and model.memory.shape == (0, 8)


def test_a_stateful_module_on_meta_is_restored_too():
    with torch.device("meta"):
        model = Stateful()
    memory = model.memory
    result = harness.count(model, torch.randn(4, 8), counters="torch,thop")
    assert {c.matmul_flops for c in result.counts.values()} == {2 * 4 * 8 * 8}
    assert model.memory is memory and model.calls == 0
