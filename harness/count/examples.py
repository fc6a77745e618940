"""Worked examples for ``harness.count``: small models built from configurations, nothing downloaded.

Each function is a factory (:mod:`harness.count.factory`; ``harness count
harness.count.examples:vit``) taking ``device`` ("meta" by default): :func:`vit`, :func:`llama`,
:func:`mixtral_moe`, :func:`convnet`, :func:`gpt2`. Their hand derivations, written from the shapes
and never from a counter: docs/count.md and ``tests/test_count_examples.py``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

__all__ = ["vit", "llama", "mixtral_moe", "convnet", "gpt2", "ConvNet", "VIT", "LLAMA", "MOE", "CONV", "GPT2"]

#: Shapes of the examples (the hand derivations read them from here and from the docs).
VIT = dict(batch=2, image=32, patch=8, channels=3, hidden=64, heads=4, intermediate=256, layers=2)
LLAMA = dict(batch=1, tokens=16, hidden=64, heads=4, kv_heads=2, intermediate=176, layers=2, vocab=1000)
MOE = dict(batch=1, tokens=8, hidden=64, intermediate=128, experts=4, top_k=2)
CONV = dict(batch=2, image=32, channels=3, width=16, classes=10)
#: GPT2Config() defaults (n_inner None -> 4 x hidden) and the prompt length counted.
GPT2 = dict(batch=1, tokens=512, hidden=768, heads=12, layers=12, vocab=50257, intermediate=3072)


def vit(device: str = "meta") -> tuple[nn.Module, tuple]:
    """ViTModel (no pooler) on ``device``, SDPA attention; input (B, 3, 32, 32)."""
    from transformers import ViTConfig, ViTModel

    s = VIT
    config = ViTConfig(hidden_size=s["hidden"], num_hidden_layers=s["layers"],
                       num_attention_heads=s["heads"], intermediate_size=s["intermediate"],
                       image_size=s["image"], patch_size=s["patch"], num_channels=s["channels"])
    config._attn_implementation = "sdpa"
    with torch.device(device):
        torch.manual_seed(0)
        model = ViTModel(config, add_pooling_layer=False).eval()
        pixels = torch.randn(s["batch"], s["channels"], s["image"], s["image"])
    return model, (pixels,)


def llama(device: str = "meta") -> tuple[nn.Module, tuple, dict[str, Any]]:
    """LlamaForCausalLM on ``device`` (GQA, SDPA); a prefill of (B, T) token ids, logits for all T."""
    from transformers import LlamaConfig, LlamaForCausalLM

    s = LLAMA
    config = LlamaConfig(vocab_size=s["vocab"], hidden_size=s["hidden"], intermediate_size=s["intermediate"],
                         num_hidden_layers=s["layers"], num_attention_heads=s["heads"],
                         num_key_value_heads=s["kv_heads"], tie_word_embeddings=False)
    config._attn_implementation = "sdpa"
    with torch.device(device):
        torch.manual_seed(0)
        model = LlamaForCausalLM(config).eval()
        ids = torch.zeros(s["batch"], s["tokens"], dtype=torch.long)
    return model, (), {"input_ids": ids}


def mixtral_moe(device: str = "meta") -> tuple[nn.Module, tuple]:
    """One MixtralSparseMoeBlock on ``device``, experts through ``torch._grouped_mm``, bf16."""
    from transformers import MixtralConfig
    from transformers.models.mixtral.modeling_mixtral import MixtralSparseMoeBlock

    s = MOE
    config = MixtralConfig(hidden_size=s["hidden"], intermediate_size=s["intermediate"],
                           num_local_experts=s["experts"], num_experts_per_tok=s["top_k"])
    config._experts_implementation = "grouped_mm"
    with torch.device(device):
        torch.manual_seed(0)
        block = MixtralSparseMoeBlock(config).to(torch.bfloat16).eval()
        hidden = torch.randn(s["batch"], s["tokens"], s["hidden"], dtype=torch.bfloat16)
    return block, (hidden,)


class ConvNet(nn.Module):
    """conv3x3 -> BN -> ReLU -> maxpool -> depthwise conv3x3 -> pointwise conv1x1 -> BN -> ReLU ->
    global average pool -> linear."""

    def __init__(self, channels: int = 3, width: int = 16, classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Conv2d(channels, width, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(width)
        self.pool = nn.MaxPool2d(2)
        self.depthwise = nn.Conv2d(width, width, 3, padding=1, groups=width)
        self.pointwise = nn.Conv2d(width, 2 * width, 1)
        self.bn2 = nn.BatchNorm2d(2 * width)
        self.act = nn.ReLU()
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(2 * width, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.act(self.bn1(self.stem(x))))
        x = self.act(self.bn2(self.pointwise(self.depthwise(x))))
        return self.head(self.gap(x).flatten(1))


def convnet(device: str = "cpu") -> tuple[nn.Module, tuple]:
    """:class:`ConvNet` on ``device`` (default cpu)."""
    s = CONV
    with torch.device(device):
        torch.manual_seed(0)
        model = ConvNet(s["channels"], s["width"], s["classes"]).eval()
        x = torch.randn(s["batch"], s["channels"], s["image"], s["image"])
    return model, (x,)


def gpt2(device: str = "meta") -> tuple[nn.Module, tuple, dict[str, Any]]:
    """GPT2LMHeadModel(GPT2Config()) on ``device`` (meta: no weights), a prefill of 512 token ids,
    logits for every position. ``harness count harness.count.examples:gpt2 --expected 136160477184``."""
    from transformers import GPT2Config, GPT2LMHeadModel

    s = GPT2
    config = GPT2Config()
    assert (config.n_embd, config.n_head, config.n_layer, config.vocab_size) == \
        (s["hidden"], s["heads"], s["layers"], s["vocab"]), "GPT2Config defaults changed"
    with torch.device(device):
        torch.manual_seed(0)
        model = GPT2LMHeadModel(config).eval()
        ids = torch.zeros(s["batch"], s["tokens"], dtype=torch.long)
    return model, (), {"input_ids": ids}
