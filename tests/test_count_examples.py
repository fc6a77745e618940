"""harness.count on four architectures built from configurations (nothing downloaded).

Every expected value is derived by hand from the shapes in ``harness.count.examples`` (FLOPs =
2 x MACs; matmul class only: element-wise work is each tool's own convention, kept apart), and
every counter x variant is checked: its count, what its delta to the hand value is made of, and
0 unexplained remainder between every pair of counters.
"""

from __future__ import annotations

import pytest

import harness
from harness.count import examples

pytest.importorskip("transformers")
pytest.importorskip("fvcore")
pytest.importorskip("thop")

ALL = ("torch stock", "torch patched", "fvcore stock", "fvcore patched", "thop stock", "thop patched")


def assert_explained(result) -> None:
    """0 unexplained remainder: between every pair of counters and against the hand value."""
    assert result.unexplained == {}, result.summary()
    assert result.verdict is not None and result.verdict.passed, result.summary()
    for label, row in result.verdict.rows.items():
        assert row.remainder == 0, f"{label}\n{row}"


def causes(result, label: str) -> dict[str, int]:
    """The named causes of ``label - expected`` (non-zero ones)."""
    return {c.name: c.flops for c in result.verdict.rows[label].components if c.flops}


# ------------------------------------------------------------------------------------------ ViT
# B=2 images 3x32x32, patch 8 -> N = 16 patches + CLS = 17 tokens; D=64, H=4 (hd 16), I=256, 2 layers.
VIT_PATCH = 2 * 2 * 16 * 64 * 3 * 8 * 8            # conv: 2*B*patches*D*(C*p*p)          =   786,432
VIT_LINEAR = 2 * (2 * 2 * 17 * (4 * 64 * 64 + 2 * 64 * 256))   # 2 layers x 2*B*N*(4*D*D + 2*D*I) = 6,684,672
VIT_SDPA = 2 * (4 * 2 * 17 * 17 * 64)              # 2 layers x 4*B*N*N*D (QK^T + AV)     =   295,936
VIT = VIT_PATCH + VIT_LINEAR + VIT_SDPA            #                                        7,767,040


def test_vit_on_cpu_every_counter():
    model, args = examples.vit(device="cpu")
    result = harness.count(model, *args, expected=VIT)
    assert VIT == 7_767_040
    assert tuple(result.counts) == ALL and not result.missing
    flops = {k: c.matmul_flops for k, c in result.counts.items()}
    # stock FlopCounterMode and stock fvcore count 0 for SDPA on CPU tensors (pytorch #195460, fvcore #129)
    assert flops == {"torch stock": VIT - VIT_SDPA, "torch patched": VIT, "fvcore stock": VIT - VIT_SDPA,
                     "fvcore patched": VIT, "thop stock": VIT, "thop patched": VIT}
    assert causes(result, "torch stock") == {"SDPA QK^T+AV not seen": -VIT_SDPA}
    # fvcore's layer_norm handle: 5 MACs per element (affine); 5 LayerNorms (2 per layer + the
    # final one) x B*N*D = 2*17*64 elements: 2 * 5 * 5 * 2,176 = 108,800 FLOPs, element-wise class
    assert result["fvcore patched"].elementwise_flops == 2 * 5 * 5 * (2 * 17 * 64) == 108_800
    assert causes(result, "fvcore stock") == {"element-wise class": result["fvcore stock"].elementwise_flops,
                                              "SDPA QK^T+AV not seen": -VIT_SDPA}
    # raw figures: fvcore and thop report MACs
    assert result["fvcore patched"].raw * 2 == result["fvcore patched"].flops
    assert_explained(result)


def test_vit_on_meta_every_counter():
    model, args = examples.vit()                    # built under torch.device("meta")
    result = harness.count(model, *args, expected=VIT)
    assert result.device == "meta"
    assert tuple(result.counts) == ALL and not result.missing
    # on meta SDPA decomposes to bmm, which stock FlopCounterMode counts: stock == patched
    assert result["torch stock"].matmul_flops == result["torch patched"].matmul_flops == VIT
    # fvcore traces the patch-embedding convolution on meta as on CPU (and still has no SDPA handle)
    cpu_model, cpu_args = examples.vit(device="cpu")
    cpu = harness.count(cpu_model, *cpu_args, expected=VIT)
    for label in ("fvcore stock", "fvcore patched"):
        assert result[label].flops == cpu[label].flops and result[label].by_key == cpu[label].by_key
    assert result["fvcore stock"].matmul_flops == VIT - VIT_SDPA and result["fvcore patched"].matmul_flops == VIT
    assert "NOT MEASURED" not in str(result)
    assert_explained(result)


# ---------------------------------------------------------------------------------------- Llama
# B=1, T=16 tokens; D=64, H=4 (hd 16), KV heads 2 (k/v width 32), I=176 (SwiGLU: gate, up, down),
# 2 layers, vocabulary 1000, logits for all T positions.
LLAMA_LINEAR = 2 * (2 * 16 * (64 * 64 + 2 * 64 * 32 + 64 * 64 + 3 * 64 * 176))   # 2 layers x 2*T*(q + k,v + o + mlp) = 2,949,120
LLAMA_SDPA = 2 * (4 * 16 * 16 * 64)                # 2 layers x 4*B*T*T*(H*hd), causal counted in full = 131,072
LLAMA_HEAD = 2 * 16 * 64 * 1000                    # lm_head: 2*T*D*V                            = 2,048,000
LLAMA = LLAMA_LINEAR + LLAMA_SDPA + LLAMA_HEAD     #                                               5,128,192


def test_llama_decoder_on_meta():
    model, args, kwargs = examples.llama()
    result = harness.count(model, *args, expected=LLAMA, **kwargs)
    assert LLAMA == 5_128_192
    assert tuple(result.counts) == ALL
    keys = result["torch patched"].by_key
    assert keys == {"linear": LLAMA_LINEAR, "sdpa_qk": LLAMA_SDPA // 2, "sdpa_av": LLAMA_SDPA // 2,
                    "lm_head": LLAMA_HEAD}
    # fvcore has no SDPA handle (fvcore #129): stock misses every attention
    assert result["fvcore stock"].matmul_flops == LLAMA - LLAMA_SDPA
    assert causes(result, "fvcore stock") == {"SDPA QK^T+AV not seen": -LLAMA_SDPA}
    # thop 2.2.3 counts SDPA itself; its patched variant adds RMSNorm (4 per element) and SiLU
    # (4 per element) under the harness convention, in the element-wise class:
    #   RMSNorm: (2 per layer + final) = 5 x T*D = 5*16*64 elements -> 4 * 5,120 = 20,480 FLOPs
    #   SiLU: 2 layers x T*I = 2*16*176 elements                     -> 4 * 5,632 = 22,528 FLOPs
    assert result["thop stock"].matmul_flops == LLAMA
    assert result["thop patched"].elementwise_flops == 4 * 5 * 16 * 64 + 4 * 2 * 16 * 176 == 43_008
    d = result.delta("fvcore stock", "torch patched")
    assert {c.name: c.flops for c in d.components} == {
        "convention": result["torch patched"].raw - result["fvcore stock"].raw - LLAMA_SDPA,
        "fvcore stock: SDPA QK^T+AV not seen": LLAMA_SDPA}
    assert d.remainder == 0
    assert_explained(result)


# ------------------------------------------------------------------------------------------ MoE
# One Mixtral sparse-MoE layer: T=8 tokens, D=64, 4 experts, top-2, expert I=128 (SwiGLU), bf16.
MOE_ROUTER = 2 * 8 * 64 * 4                        # gate: 2*T*D*E                                 =   4,096
MOE_GATE_UP = 2 * (8 * 2) * 64 * (2 * 128)         # grouped_mm over T*k rows: 2*(T*k)*D*(2*I)      = 524,288
MOE_DOWN = 2 * (8 * 2) * 128 * 64                  # grouped_mm: 2*(T*k)*I*D                        = 262,144
MOE = MOE_ROUTER + MOE_GATE_UP + MOE_DOWN          #                                                  790,528


def test_mixtral_moe_grouped_mm_on_meta():
    block, args = examples.mixtral_moe()
    result = harness.count(block, *args, expected=MOE)
    assert MOE == 790_528
    assert tuple(result.counts) == ALL
    experts = MOE_GATE_UP + MOE_DOWN
    # no stock tool has a formula for torch._grouped_mm: each counts the router only
    for label in ("torch stock", "fvcore stock", "thop stock"):
        assert result[label].matmul_flops == MOE_ROUTER, label
        assert causes(result, label) == {"grouped_mm experts not seen": -experts}, label
        assert not result[label].complete
    for label in ("torch patched", "fvcore patched", "thop patched"):
        assert result[label].by_key["experts"] == experts, label
        assert result[label].by_key["linear_functional"] == MOE_ROUTER, label
    # two stock tools that miss the same grouped_mm: the blind spot cancels, noted, no delta
    d = result.delta("torch stock", "fvcore stock")
    assert d.delta == 0 and d.remainder == 0
    assert any("both miss experts" in f for f in d.findings)
    assert_explained(result)


# ------------------------------------------------------------------------------------- conv net
# B=2 images 3x32x32: stem conv3x3 3->16 (32x32), maxpool -> 16x16, depthwise 3x3 (16 groups),
# pointwise 1x1 16->32, global average pool, linear 32->10.
CONV_STEM = 2 * 2 * 32 * 32 * 16 * 3 * 9          # 2*B*H*W*Cout*Cin*k*k                  = 1,769,472
CONV_DW = 2 * 2 * 16 * 16 * 16 * 9                 # depthwise: 2*B*H*W*C*k*k              =   147,456
CONV_PW = 2 * 2 * 16 * 16 * 32 * 16                # pointwise: 2*B*H*W*Cout*Cin           =   524,288
CONV_FC = 2 * 2 * 32 * 10                          # 2*B*in*out                            =     1,280
CONV = CONV_STEM + CONV_DW + CONV_PW + CONV_FC     #                                         2,442,496


def test_convnet_on_cpu_every_counter():
    model, args = examples.convnet()
    result = harness.count(model, *args, expected=CONV)
    assert CONV == 2_442_496
    assert tuple(result.counts) == ALL and not result.missing
    for label, c in result.counts.items():
        assert c.matmul_flops == CONV, label
        assert c.by_module["stem"] == CONV_STEM, label
    assert result["torch patched"].by_module["depthwise"] == CONV_DW
    # element-wise work, each tool's own convention (BatchNorm in eval, adaptive average pool):
    #   fvcore: BN 2 MACs/element (affine): bn1 2*16*32*32 = 32,768 el, bn2 2*32*16*16 = 16,384 el;
    #           pool 1 MAC per input element (16,384)  -> 2 * (2*32,768 + 2*16,384 + 16,384) = 229,376
    #   thop:   BN 4 MACs/element; pool (kernel 256 + 1) per output (2*32 = 64)
    #                                                -> 2 * (4*32,768 + 4*16,384 + 257*64) = 426,112
    assert result["fvcore stock"].elementwise_flops == 2 * (2 * 32_768 + 2 * 16_384 + 16_384) == 229_376
    assert result["thop stock"].elementwise_flops == 2 * (4 * 32_768 + 4 * 16_384 + 257 * 64) == 426_112
    d = result.delta("fvcore patched", "thop patched")
    assert {c.name: c.flops for c in d.components if c.name != "convention"} == {
        "element-wise conventions": 426_112 - 229_376}
    assert_explained(result)


# ---------------------------------------------------------------------------------------- GPT-2
# GPT2Config() defaults: D=768, 12 heads, 12 layers, V=50257, MLP 4D=3072; B=1, T=512 tokens.
# The projections are transformers' Conv1D (x @ W + b, W stored (in, out)): linear layers.
GPT2_LINEAR = 12 * 2 * 512 * (768 * 3 * 768 + 768 * 768 + 768 * 3072 + 3072 * 768)
#              12 layers x 2*T*(c_attn 3D^2 + attn.c_proj D^2 + c_fc 4D^2 + mlp.c_proj 4D^2) = 86,973,087,744
GPT2_SDPA = 12 * 4 * 512 * 512 * 768               # 12 layers x 4*T*T*D (QK^T + AV, causal in full) = 9,663,676,416
GPT2_HEAD = 2 * 512 * 768 * 50257                  # lm_head: 2*T*D*V                              = 39,523,713,024
GPT2 = GPT2_LINEAR + GPT2_SDPA + GPT2_HEAD         #                                                 136,160,477,184


def test_gpt2_conv1d_is_a_linear_on_meta():
    model, args, kwargs = examples.gpt2()
    result = harness.count(model, *args, expected=GPT2, **kwargs)
    assert (GPT2_LINEAR, GPT2_SDPA, GPT2_HEAD, GPT2) == (
        86_973_087_744, 9_663_676_416, 39_523_713_024, 136_160_477_184)
    assert tuple(result.counts) == ALL
    for label in ("torch stock", "torch patched", "fvcore patched", "thop patched"):
        assert result[label].by_key == {**result[label].by_key, "linear": GPT2_LINEAR, "lm_head": GPT2_HEAD}, label
        assert result[label].matmul_flops == GPT2, label
    assert "unmapped" not in result["torch patched"].by_key
    assert not any("could not be keyed" in f for f in result.findings())
    # stock thop has no rule for torch.addmm (what Conv1D runs): every projection unseen, sized
    assert causes(result, "thop stock") == {"element-wise class": result["thop stock"].elementwise_flops,
                                            "functional product without a thop rule": -GPT2_LINEAR}
    assert causes(result, "fvcore stock") == {"element-wise class": result["fvcore stock"].elementwise_flops,
                                              "SDPA QK^T+AV not seen": -GPT2_SDPA}
    assert result["thop patched"].complete and not result["thop patched"].uncounted_matmul_ops
    assert_explained(result)
    # the modules table is a tree in the model's order, with parameters and torch's figure at
    # the containers (transformer.h is a ModuleList: never called, so FlopCounterMode has no row)
    table = result.table("modules", depth=2)
    assert list(table.index[:4]) == ["(model)", "transformer", "transformer.wte", "transformer.wpe"]
    assert table.loc["transformer.h", "torch patched"] == GPT2_LINEAR + GPT2_SDPA
    assert table.loc["transformer.h", "params"] == 12 * (4 * 768 + 768 * 2304 + 2304 + 768 * 768 + 768
                                                         + 768 * 3072 + 3072 + 3072 * 768 + 768)
    assert table.loc["(model)", "params"] == sum(p.numel() for p in model.parameters())
