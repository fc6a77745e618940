"""Formula-level tests: the op keys, `Cost`, each building block's numbers (derivation beside each
expected value), the primitives against torch's own counts on small real tensors, and the configs."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from harness.analytic import (
    DSOCR_CLIP,
    DSOCR_PROJECTOR,
    DSOCR_SAM,
    ELEMENTWISE_FLOPS,
    OP_CLASS,
    Cost,
    load_dsocr_dims,
    load_ocr2_dims,
)
from harness.analytic import formulas as fm
from harness.analytic.config import DATA_DIR, lm_dims_from_dsocr_config
from harness.analytic.stages import decode_cost, prefill_cost, sam_grid, sam_output_grid



def torch_flops(fn) -> int:
    """FLOPs FlopCounterMode counts for ``fn`` (no grad)."""
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


# ---------------------------------------------------------------------------------------------
# op keys


def _documented_keys() -> dict[str, set[str]]:
    """The op keys docs/ARCHITECTURE.md states per class (its "Op keys" bullets)."""
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "docs" / "ARCHITECTURE.md").read_text()
    matmul = text[text.index("  - matmul class"):text.index("  - element-wise class")]
    elementwise = text[text.index("  - element-wise class"):text.index("`harness.analytic.OP_CLASS[key]`")]
    return {cls: set(re.findall(r"`([a-z_]+)`", part)) for cls, part in
            (("matmul", matmul), ("elementwise", elementwise))}


def test_op_classes_are_the_documented_contract() -> None:
    documented = _documented_keys()
    assert {k for k, c in OP_CLASS.items() if c == "matmul"} == documented["matmul"]
    assert {k for k, c in OP_CLASS.items() if c == "elementwise"} == documented["elementwise"]


# ---------------------------------------------------------------------------------------------
# Cost


def test_cost_arithmetic_and_classes() -> None:
    a = Cost({"linear": 100, "norm": 7}, weight_bytes=10, act_read_bytes=20, act_write_bytes=30)
    b = Cost({"linear": 1, "sdpa_qk": 2, "softmax": 3}, act_read_bytes=5)
    s = a + b
    assert dict(s.flops) == {"linear": 101, "norm": 7, "sdpa_qk": 2, "softmax": 3}
    assert s.matmul_flops == 103 and s.elementwise_flops == 10 and s.total_flops == 113
    assert s.total_bytes == 10 + 25 + 30
    assert s.intensity == pytest.approx(113 / 65)
    assert s.matmul_intensity == pytest.approx(103 / 65)
    assert dict(a.scaled(3).flops) == {"linear": 300, "norm": 21} and a.scaled(3).total_bytes == 180
    assert sum([a, b]) == s == Cost.total({"x": a, "y": b})
    assert Cost().intensity == 0.0
    assert dict(Cost({"linear": 0}).flops) == {}  # zero entries are dropped


def test_cost_rejects_unknown_keys_and_bad_values() -> None:
    with pytest.raises(KeyError, match="unknown op key 'bmm'"):
        Cost({"bmm": 1})
    with pytest.raises(ValueError):
        Cost({"linear": -1})
    with pytest.raises(ValueError):
        Cost({"linear": 1.5})  # type: ignore[dict-item]
    with pytest.raises(ValueError):
        Cost(weight_bytes=-2)
    with pytest.raises(TypeError):
        Cost().flops["linear"] = 3  # type: ignore[index]


def test_cost_bytes_by_key_and_fused() -> None:
    from harness.analytic import Traffic

    a = Cost({"linear": 4}, bytes_by_key={"linear": Traffic(10, 2, 3), "cast": Traffic(0, 4, 8)},
             fused_by_key={"linear": Traffic(10, 2, 3)})
    assert (a.weight_bytes, a.act_read_bytes, a.act_write_bytes) == (10, 6, 11)
    assert a.total_bytes == 27 and a.fused_bytes == 15 and a.key_bytes("cast") == 12
    b = Cost(act_read_bytes=5)  # totals only: keyed "unkeyed", fused = op-level
    assert b.bytes_by_key == {"unkeyed": (0, 5, 0)} and b.fused_bytes == 5
    s = a + b
    assert s.total_bytes == 32 and s.fused_bytes == 20 and s.scaled(2).fused_bytes == 40
    with pytest.raises(ValueError, match="disagree"):
        Cost(weight_bytes=1, bytes_by_key={"linear": Traffic(2, 0, 0)})
    with pytest.raises(KeyError, match="unknown byte key"):
        Cost(bytes_by_key={"bmm": Traffic(1, 0, 0)})


def test_cost_pickles_and_serialises() -> None:
    import pickle

    c = Cost({"linear": 12, "softmax": 5}, weight_bytes=4, act_read_bytes=2, act_write_bytes=2)
    assert pickle.loads(pickle.dumps(c)) == c
    d = c.as_dict()
    assert d["flops"] == {"linear": 12, "softmax": 5} and d["matmul_flops"] == 12 and d["total_bytes"] == 8
    assert json.loads(json.dumps(d))["intensity"] == pytest.approx(17 / 8)


def test_elementwise_convention_is_the_documented_one() -> None:
    assert dict(ELEMENTWISE_FLOPS) == {
        "layer_norm": 5, "rms_norm": 4, "gelu": 8, "quick_gelu": 5, "silu": 4, "softmax": 5, "add": 1, "mul": 1,
        "rotary_apply": 3, "rotary_table": 2, "rotary_freqs": 1, "interp_bicubic": 16, "interp_linear": 4}


# ---------------------------------------------------------------------------------------------
# building blocks, values derived by hand


def test_linear() -> None:
    c = fm.linear(196, 768, 2304, bias=True)
    assert c.flops["linear"] == 693_633_024  # 2*B*L*in*out = 2*1*196*768*2304
    assert c.flops["add"] == 451_584  # bias: 196*2304
    assert c.weight_bytes == 3_543_552  # (768*2304 + 2304) * 2
    assert c.act_read_bytes == 301_056 and c.act_write_bytes == 903_168  # 196*768*2, 196*2304*2
    assert fm.linear(5, 1280, 64, key="linear_functional").flops == {"linear_functional": 819_200}  # 2*5*1280*64
    with pytest.raises(ValueError):
        fm.linear(1, 2, 3, key="conv")  # type: ignore[arg-type]


def test_conv2d_and_output_size() -> None:
    # SAM patch embed at 1024: 2 * 768 * 64*64 * 3*16*16
    assert fm.conv2d(1, 3, 768, 1024, 1024, kernel=16, stride=16, bias=True).flops["conv"] == 4_831_838_208
    # k3 s2 p1 on odd sides rounds up: 7 -> 4, 28 -> 14, 14 -> 7
    assert [fm.conv_output_size(s, 3, 2, 1) for s in (7, 28, 14, 64)] == [4, 14, 7, 32]
    # net_3 at 640: 2 * 1024 * 10*10 * 512*9
    assert fm.conv2d(1, 512, 1024, 20, 20, kernel=3, stride=2, padding=1).flops == {"conv": 943_718_400}


@pytest.mark.parametrize("grid,expected", [(64, (70, 25)), (32, (42, 9)), (40, (42, 9)), (80, (84, 36)),
                                           (48, (56, 16)), (28, (28, 4)), (72, (84, 36))])
def test_padded_grid(grid: int, expected: tuple[int, int]) -> None:
    assert fm.padded_grid(grid, 14) == expected  # gp = 14*ceil(g/14), windows (gp/14)^2


def test_attention_sdpa_and_eager() -> None:
    s = fm.attention(25, 12, 196, 196, 64, impl="sdpa", mask_heads=12)
    assert s.flops["sdpa_qk"] == s.flops["sdpa_av"] == 1_475_174_400  # 2*25*12*196*196*64
    assert s.flops["softmax"] == 5 * 25 * 12 * 196 * 196 and s.flops["add"] == 25 * 12 * 196 * 196
    e = fm.attention(1, 10, 913, 913, 128, impl="matmul", mask_heads=1)
    assert e.flops["matmul_qk"] == e.flops["matmul_av"] == 2_133_936_640  # 2*10*913*913*128
    assert "sdpa_qk" not in e.flops
    # GQA: the products use the query heads; K/V bytes use the kv heads
    g = fm.attention(1, 14, 512, 512, 64, impl="sdpa", kv_heads=2, mask_heads=1)
    assert g.flops["sdpa_qk"] == 2 * 14 * 512 * 512 * 64
    # fused: q (14 heads) + k, v (2 kv heads) + the 1-head mask read once, bf16
    assert g.fused_bytes - 14 * 512 * 64 * 2 == (14 * 512 * 64 + 2 * 2 * 512 * 64 + 512 * 512) * 2
    # op-level (math path): GQA repeat writes K, V at 14 heads; q, k, v cast to fp32
    assert g.bytes_by_key["copy"] == (0, 2 * 2 * 512 * 64 * 2, 2 * 14 * 512 * 64 * 2)
    assert g.bytes_by_key["sdpa_qk"] == (0, 2 * 14 * 512 * 64 * 4, 14 * 512 * 512 * 4)  # q, k fp32 -> scores
    assert g.bytes_by_key["sdpa_av"] == (0, (14 * 512 * 512 + 14 * 512 * 64) * 4, 14 * 512 * 64 * 4)
    with pytest.raises(ValueError):
        fm.attention(1, 1, 1, 1, 1, impl="flash")  # type: ignore[arg-type]


def test_rel_pos_decomposed() -> None:
    w = fm.rel_pos_decomposed(25 * 12, 14, 14, 64, table_len=27)
    assert w.flops["einsum"] == 2 * (2 * 300 * 14 * 14 * 14 * 64) == 210_739_200
    assert w.flops["add"] == 300 * 196 * 196  # rel_h + rel_w broadcast into the (T x T) bias
    assert "interpolate" not in w.flops  # 27 = 2*14-1: no resize
    g = fm.rel_pos_decomposed(12, 40, 40, 64, table_len=127)
    assert g.flops["einsum"] == 2 * (2 * 12 * 40 * 40 * 40 * 64)
    assert g.flops["interpolate"] == 2 * 4 * 79 * 64  # two tables, 127 -> 79 rows, linear
    assert fm.rel_pos_decomposed(12, 14, 14, 64, table_len=27, always_interpolate=True).flops["interpolate"] == 2 * 4 * 27 * 64


def test_mlp_swiglu_moe() -> None:
    assert fm.mlp(4096, 768, 3072, activation_kind="gelu").flops["linear"] == 38_654_705_664  # 4*4096*768*3072
    assert fm.mlp(4096, 768, 3072, activation_kind="gelu").flops["activation"] == 8 * 4096 * 3072
    sw = fm.swiglu_mlp(913, 1280, 6848)
    assert sw.flops["linear"] == 48_017_080_320  # 6*913*1280*6848
    assert sw.flops["mul"] == 913 * 6848 and sw.flops["activation"] == 4 * 913 * 6848
    m = fm.moe(10, 1280, n_experts=64, top_k=6, expert_hidden=896, shared_hidden=1792)
    assert m.flops["linear_functional"] == 1_638_400  # gate: 2*10*1280*64
    assert m.flops["experts"] == 412_876_800  # 6 * (10*6 pairs) * 1280 * 896
    assert m.flops["linear"] == 137_625_600  # shared: 6*10*1280*1792
    assert m.flops["softmax"] == 5 * 10 * 64
    # weights read: the gate (cast to fp32), min(64, 60) = 60 experts gathered, the shared experts;
    # one token gathers exactly 6 experts. Fused: the same experts, read once by a grouped GEMM.
    assert m.weight_bytes == (1280 * 64 + 60 * 3 * 1280 * 896 + 3 * 1280 * 1792) * 2
    assert sum(t.weight for t in m.fused_by_key.values()) == m.weight_bytes
    one = fm.moe(1, 1280, n_experts=64, top_k=6, expert_hidden=896, shared_hidden=1792)
    assert one.weight_bytes == (1280 * 64 + 6 * 3 * 1280 * 896 + 3 * 1280 * 1792) * 2
    # batched_mm: the 60 pairs' gathered gate_up and down weights are written, then read by the bmm
    bm = fm.moe(10, 1280, n_experts=64, top_k=6, expert_hidden=896, shared_hidden=1792, implementation="batched_mm")
    assert bm.flops == m.flops and bm.weight_bytes == m.weight_bytes
    assert bm.bytes_by_key["experts"] == (0, (60 * 2 * 896 * 1280 + 60 * 1280 + 60 * 1280 * 896 + 60 * 896) * 2,
                                          (60 * 2 * 896 + 60 * 1280) * 2)
    # loop (the vendor moe_infer): each touched expert's three Linears read its weights; gate and up
    # each read the 60 routed rows, down reads the product; gate, up and down outputs written
    assert m.bytes_by_key["experts"] == (60 * 3 * 1280 * 896 * 2, (2 * 60 * 1280 + 60 * 896) * 2,
                                         (60 * 2 * 896 + 60 * 1280) * 2)


def test_lm_head_embedding_rotary() -> None:
    assert fm.lm_head(1, 1280, 129280).flops == {"lm_head": 330_956_800}  # 2*1*1280*129280
    v1 = fm.lm_head(913, 1280, 129280, fp32_logits_copy=True)
    assert v1.act_write_bytes == 913 * 129280 * 2 + 913 * 129280 * 4  # bf16 logits, then .float()
    e = fm.embedding(913, 1280)
    assert e.total_flops == 0 and e.weight_bytes == 913 * 1280 * 2
    assert e.bytes_by_key["index"] == (913 * 1280 * 2, 913 * 8, 913 * 1280 * 2)  # rows, int64 ids, rows
    r = fm.rotary_matmul(1, 913, 128)
    assert r.flops["rotary"] == 116_864  # (1, 64, 1) @ (1, 1, 913): 2*64*913
    assert "rotary" not in fm.rotary_elementwise(1, 913, 128).flops
    assert fm.rotary_apply(1, 10, 10, 913, 128).flops == {"other_elementwise": 3 * 20 * 913 * 128}


def test_norms_activations_interpolate() -> None:
    assert fm.layer_norm(4096 * 768, 768).flops == {"norm": 5 * 4096 * 768}
    assert fm.layer_norm(10, 768).weight_bytes == 2 * 768 * 2
    assert fm.layer_norm(768 * 4, 768).bytes_by_key["norm"] == (2 * 768 * 2, 768 * 4 * 2, 768 * 4 * 2 + 2 * 4 * 4)
    assert fm.rms_norm(913 * 1280, 1280).flops == {"norm": 4 * 913 * 1280}
    r = fm.rms_norm(10 * 1280, 1280)  # x cast to fp32 and back; pow, mean, +eps, rsqrt, scale in fp32; * weight
    e = 10 * 1280
    assert r.bytes_by_key["cast"] == (0, e * 2 + e * 4, e * 4 + e * 2)
    assert r.bytes_by_key["norm"] == (1280 * 2, (3 * e + 3 * 10) * 4 + e * 2, (2 * e + 3 * 10) * 4 + e * 2)
    assert r.fused_by_key == {"norm": (1280 * 2, e * 2, e * 2)}
    assert fm.activation(100, "quick_gelu").flops == {"activation": 500}
    assert fm.activation(100, "silu").flops == {"activation": 400}
    with pytest.raises(ValueError):
        fm.activation(1, "relu")  # type: ignore[arg-type]
    # SAM pos-embed 64x64 -> 40x40 bicubic: 16 * 768 * 40 * 40
    assert fm.interpolate(768, 40, 40, in_h=64, in_w=64, mode="bicubic").flops == {"interpolate": 19_660_800}


def test_window_partition_is_bytes_only() -> None:
    c = fm.window_partition(1, 64, 14, 768)
    assert c.total_flops == 0
    # pad: g^2 -> gp^2; partition copy gp^2; unpartition copy gp^2; crop copy g^2 (stored under the view)
    assert c.bytes_by_key == {"pad": (0, 4096 * 768 * 2, 4900 * 768 * 2),
                              "copy": (0, (2 * 4900 + 4096) * 768 * 2, (2 * 4900 + 4096) * 768 * 2)}
    assert fm.window_partition(1, 28, 14, 8).act_read_bytes == 784 * 2 * 8 * 2  # no padding: two copies


# ---------------------------------------------------------------------------------------------
# primitives against torch's own FLOP formulas on small real tensors


def test_primitives_match_torch_counts() -> None:
    torch.manual_seed(0)
    lin = nn.Linear(24, 40, bias=True)
    assert torch_flops(lambda: lin(torch.randn(3, 7, 24)))== fm.linear(21, 24, 40, bias=True).matmul_flops
    conv = nn.Conv2d(6, 10, kernel_size=3, stride=2, padding=1, bias=False)
    assert torch_flops(lambda: conv(torch.randn(2, 6, 7, 7))) == fm.conv2d(2, 6, 10, 7, 7, kernel=3, stride=2, padding=1).matmul_flops
    q = torch.randn(8, 5, 5, 16)  # (B*heads*windows, h, w, c)
    rh, rw = torch.randn(5, 5, 16), torch.randn(5, 5, 16)
    counted = torch_flops(lambda: (torch.einsum("bhwc,hkc->bhwk", q, rh), torch.einsum("bhwc,wkc->bhwk", q, rw)))
    assert counted == fm.rel_pos_decomposed(8, 5, 5, 16, table_len=9).flops["einsum"]
    inv, pos = torch.randn(1, 64, 1), torch.arange(37.0)[None, None, :]
    assert torch_flops(lambda: inv @ pos) == fm.rotary_matmul(1, 37, 128).flops["rotary"]


def test_sdpa_on_meta_is_counted_as_the_two_products() -> None:
    q = torch.empty(2, 3, 50, 16, device="meta")
    k = torch.empty(2, 3, 70, 16, device="meta")
    mask = torch.empty(2, 3, 50, 70, device="meta")
    expected = fm.attention(2, 3, 50, 70, 16, impl="sdpa", mask_heads=3)
    assert torch_flops(lambda: F.scaled_dot_product_attention(q, k, k, attn_mask=mask)) == expected.matmul_flops


# ---------------------------------------------------------------------------------------------
# configuration and vision shape helpers


def test_builtin_dsocr_config_is_the_vendor_lm() -> None:
    lm = load_dsocr_dims().lm
    assert (lm.hidden, lm.layers, lm.heads, lm.kv_heads, lm.head_dim) == (1280, 12, 10, 10, 128)
    assert (lm.intermediate, lm.moe_intermediate, lm.n_routed, lm.top_k, lm.n_shared) == (6848, 896, 64, 6, 2)
    assert lm.moe_layers == (False,) + (True,) * 11 and lm.vocab == 129280 and lm.shared_intermediate == 1792
    # parameters implied by the dims equal the vendor's measured 2,603,776,000 for the 12 layers (spec 1b)
    attn = 4 * 1280 * 1280
    dense = attn + 3 * 1280 * 6848 + 2 * 1280
    moe = attn + 64 * 1280 + 64 * 3 * 1280 * 896 + 3 * 1280 * 1792 + 2 * 1280
    assert dense + 11 * moe == 2_603_776_000


def test_dsocr_config_reads_a_vendor_config_json(tmp_path) -> None:
    raw = json.loads((DATA_DIR / "dsocr_config.json").read_text())
    vendor_style = {"language_config": {k: v for k, v in raw.items() if not k.startswith("_")},
                    "model_type": "deepseek_vl_v2"}
    vendor_style["language_config"].pop("moe_layer_freq")  # absent from the real config.json
    (tmp_path / "config.json").write_text(json.dumps(vendor_style))
    assert load_dsocr_dims(tmp_path).lm == load_dsocr_dims().lm
    with pytest.raises(NotImplementedError, match="use_mla"):
        lm_dims_from_dsocr_config({**raw, "use_mla": True})
    with pytest.raises(FileNotFoundError):
        load_dsocr_dims(tmp_path / "missing")


def test_vision_constants_and_ocr2_dims() -> None:
    assert (DSOCR_SAM.dim, DSOCR_SAM.depth, DSOCR_SAM.heads, DSOCR_SAM.window) == (768, 12, 12, 14)
    assert DSOCR_SAM.global_blocks == (2, 5, 8, 11) and DSOCR_SAM.downsample_channels == (512, 1024)
    assert (DSOCR_CLIP.layers, DSOCR_CLIP.dim, DSOCR_CLIP.heads, DSOCR_CLIP.ffn) == (24, 1024, 16, 4096)
    assert (DSOCR_PROJECTOR.in_features, DSOCR_PROJECTOR.out_features) == (2048, 1280)
    o = load_ocr2_dims()
    assert o.sam.downsample_channels == (512, 896) and o.sam.rel_pos_always_interpolates
    e = o.encoder
    assert (e.hidden, e.layers, e.heads, e.kv_heads, e.head_dim, e.intermediate) == (896, 24, 14, 2, 64, 4864)
    assert [e.queries_for(n) for n in (49, 100, 144, 196, 256, 400)] == [144, 144, 144, 256, 256, 256]
    assert (o.projector.in_features, o.projector.out_features) == (896, 1280)
    assert o.lm.moe_layers == load_dsocr_dims().lm.moe_layers


@pytest.mark.parametrize("size,g,out", [(512, 32, 8), (640, 40, 10), (768, 48, 12), (1024, 64, 16),
                                        (1280, 80, 20), (448, 28, 7), (896, 56, 14), (1152, 72, 18)])
def test_sam_grids(size: int, g: int, out: int) -> None:
    assert sam_grid(DSOCR_SAM, size) == g and sam_output_grid(DSOCR_SAM, size) == out


def test_prefill_and_decode_rules() -> None:
    v1, v2 = prefill_cost("dsocr", 913), prefill_cost("ocr2", 913)
    assert v1.flops["lm_head"] == 2 * 913 * 1280 * 129280  # v1: no logits_to_keep, all L positions
    assert v2.flops["lm_head"] == 2 * 1 * 1280 * 129280  # generate: logits_to_keep=1
    assert prefill_cost("ocr2", 913, logits_to_keep=0).flops["lm_head"] == v1.flops["lm_head"]
    assert v1.flops["rotary"] == 12 * 2 * 64 * 913 and "rotary" not in v2.flops
    assert v1.flops["matmul_qk"] == v2.flops["sdpa_qk"] == 12 * 2 * 10 * 913 * 913 * 128
    assert v1.flops["experts"] == v2.flops["experts"] == 11 * 6 * 913 * 6 * 1280 * 896
    d = decode_cost("dsocr", 913)
    assert d.flops["matmul_qk"] == 12 * 2 * 10 * 914 * 128  # one query over 913 cached + itself
    assert d.flops["experts"] == 11 * 6 * 6 * 1280 * 896
    with pytest.raises(NotImplementedError, match="flash_attention_2"):
        prefill_cost("dsocr", 10, attn_implementation="flash_attention_2")
    eager = prefill_cost("ocr2", 100, attn_implementation="eager")
    assert "matmul_qk" in eager.flops and "sdpa_qk" not in eager.flops


def test_sam_dense_bias_bytes_base_view():
    """The dense rel-pos bias SAM materialises (docs/gpu.md's no-mask figure), OCR-2 Base, bf16.

    1024 px: g = 64; window blocks pad to 70 = 5 x 14 -> 25 windows of T = 196; global blocks T = 4096;
    12 heads. Dense elements: window 25*12*196*196 = 11,524,800; global 12*4096*4096 = 201,326,592.
    transformers copies the dense bias ("dense"): add write + copy read + copy write + SDPA mask read
    = 4 x dense x 2 bytes; 8 window + 4 global blocks: (8 * 11,524,800 + 4 * 201,326,592) * 8.
    """
    from harness.analytic.config import load_dims
    from harness.analytic.stages import sam_dense_bias_bytes, sam_view

    sam = load_dims("ocr2").sam
    assert sam.rel_bias_copy == "dense"
    dense = sam_dense_bias_bytes(sam, 1024, dtype_bytes=2)
    assert dense == (8 * 11_524_800 + 4 * 201_326_592) * 8 == 7_180_038_144
    fused = sam_view(sam, 1024, dtype_bytes=2).fused_bytes
    assert 0.55 < dense / fused < 0.65                 # 60 % of SAM's fused bytes
    # the vendor copies the two factors instead of the dense bias: 2 x dense + 2 x factors
    vendor = load_dims("dsocr").sam
    assert vendor.rel_bias_copy == "factors"
    factors = 8 * 25 * 12 * 196 * 28 + 4 * 12 * 4096 * 128
    assert sam_dense_bias_bytes(vendor, 1024, dtype_bytes=2) == (
        2 * (8 * 11_524_800 + 4 * 201_326_592) + 2 * factors) * 2
    assert sam_dense_bias_bytes(sam, 1024, batch=3, dtype_bytes=2) == 3 * dense
