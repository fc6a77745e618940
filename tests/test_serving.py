"""Batch, concurrency and memory capacity (harness.gpu.serving), against hand derivations.

Every expected figure below is derived by hand from the model configs (harness/data/*.json, read
here directly) and the batch model in harness.gpu.serving's docstring: FLOPs = 2 x MACs,
weights read once per call, activations and the KV cache per sequence.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.gpu import serving
from harness.inputs.workload import compute_view_layout, get_workload, prefill_length

DATA = Path(__file__).resolve().parent.parent / "harness" / "data"
BATCHES = (1, 8, 64)
B2 = 2  # bf16 bytes


def _lm(target: str) -> dict:
    cfg = json.loads((DATA / f"{target}_config.json").read_text())
    return cfg["text_config"] if target == "ocr2" else cfg


def _letter(target: str, mode: str):
    layout = compute_view_layout(get_workload(target, mode), 1700, 2200)
    return layout, prefill_length(layout)


def _hand_lm(target: str) -> dict:
    c = _lm(target)
    h, heads, layers = c["hidden_size"], c["num_attention_heads"], c["num_hidden_layers"]
    kv = c.get("num_key_value_heads", heads)
    hd = h // heads
    n_moe = layers - 1      # both LMs: layer 0 dense, 1..11 MoE (first_k_dense_replace 1 / mlp_layer_types)
    E, k, i, shared = c["n_routed_experts"], c["num_experts_per_tok"], c["moe_intermediate_size"], c["n_shared_experts"]
    return dict(h=h, heads=heads, kv=kv, hd=hd, layers=layers, n_moe=n_moe, E=E, k=k, i=i, shared=shared,
                I=c["intermediate_size"], V=c["vocab_size"])


def _per_token_weight_flops(d: dict) -> int:
    """Matmul FLOPs of one token through every weight but lm_head (2 x MACs)."""
    attn = 2 * (d["h"] * d["heads"] * d["hd"] + 2 * d["h"] * d["kv"] * d["hd"] + d["heads"] * d["hd"] * d["h"])
    dense = 2 * 3 * d["h"] * d["I"]
    moe = 2 * d["h"] * d["E"] + 2 * 3 * d["k"] * d["h"] * d["i"] + 2 * 3 * d["h"] * d["i"] * d["shared"]
    return d["layers"] * attn + dense + d["n_moe"] * moe


def _weight_bytes_read(d: dict, rows: int, lm_head_rows_read: bool = True) -> int:
    """Fused weights read by one LM forward over ``rows`` token rows: every weight once, the
    touched experts min(E, rows x k), the embedding rows gathered, the norms' weights."""
    h = d["h"]
    attn = h * d["heads"] * d["hd"] + 2 * h * d["kv"] * d["hd"] + d["heads"] * d["hd"] * h
    moe = h * d["E"] + min(d["E"], rows * d["k"]) * 3 * h * d["i"] + 3 * h * d["i"] * d["shared"]
    params = d["layers"] * attn + 3 * h * d["I"] + d["n_moe"] * moe + d["V"] * h + (2 * d["layers"] + 1) * h
    return B2 * (params + rows * h)   # + the embedding rows gathered


# ------------------------------------------------------------------------------ config facts
@pytest.mark.parametrize("target", ["dsocr", "ocr2"])
def test_kv_bytes_per_token_from_config(target):
    c = _lm(target)
    heads = c["num_attention_heads"]
    expected = 2 * c["num_hidden_layers"] * c.get("num_key_value_heads", heads) * (c["hidden_size"] // heads) * B2
    from harness.analytic import load_dims

    lm = load_dims(target).lm
    assert serving.kv_bytes_per_token(lm) == expected == 61_440
    assert serving.attention_kind(lm) == "MHA"
    assert serving.kv_bytes_per_token(lm, 4) == 2 * expected


def test_dsocr_parameters_match_the_checkpoint():
    # spec/deepseek-ocr.md 1b: the safetensors index, 6,672,212,480 B = 3,336,106,240 bf16 params
    assert serving.parameter_count("dsocr") == 3_336_106_240
    assert serving.weight_bytes("dsocr") == 6_672_212_480


def test_ocr2_parameters_match_the_meta_build(engine):
    assert serving.parameter_count("ocr2") == engine.built_model("ocr2").parameter_count


def test_card_memory_from_label():
    assert serving.card_memory_bytes("A100 SXM4 40GB") == 40 * 2**30
    with pytest.raises(ValueError, match="no memory size"):
        serving.card_memory_bytes("Mystery card")


# --------------------------------------------------------------------------- batched costs
@pytest.mark.parametrize("batch", BATCHES)
def test_vision_stage_projector(batch):
    """dsocr Base: one 1024 view of 256 tokens; the projector Linear(2048 -> 1280) on B x 256 rows."""
    layout, _ = _letter("dsocr", "base")
    cost = serving.batched_vision("dsocr", layout, batch)["projector"]
    rows = batch * 256
    assert cost.flops["linear"] == 2 * rows * 2048 * 1280
    linear = cost.fused_by_key["linear"]
    assert linear.weight == (2048 * 1280 + 1280) * B2          # read once, whatever the batch
    assert (linear.read, linear.write) == (rows * 2048 * B2, rows * 1280 * B2)
    cat = cost.fused_by_key["cat"]                              # SAM and CLIP features concatenated
    assert (cat.read, cat.write) == (rows * 2048 * B2, rows * 2048 * B2)


@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("execution", serving.EXECUTIONS)
def test_prefill_batched(batch, execution):
    d = _hand_lm("dsocr")
    _, L = _letter("dsocr", "base")
    cost = serving.batched_prefill("dsocr", L, batch, execution=execution)
    lm_rows = batch * L if execution == "vendor" else batch
    attention = 2 * 2 * d["heads"] * d["hd"] * L * L * d["layers"]         # QK^T and AV, full L x L
    rotary = d["layers"] * 2 * (d["hd"] // 2) * L                          # inv_freq @ positions per layer
    expected = batch * (L * _per_token_weight_flops(d) + attention + rotary) + 2 * lm_rows * d["h"] * d["V"]
    assert cost.matmul_flops == expected
    assert cost.flops["lm_head"] == 2 * lm_rows * d["h"] * d["V"]
    weights = sum(t.weight for t in cost.fused_by_key.values())
    assert weights == _weight_bytes_read(d, batch * L)
    if batch == 1 and execution == "vendor":   # the verified single-request prefill
        from harness.analytic import prefill_cost

        assert cost == prefill_cost("dsocr", L)


@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("target", ["dsocr", "ocr2"])
def test_decode_batched(batch, target):
    d = _hand_lm(target)
    _, L = _letter(target, "base")
    cost = serving.batched_decode(target, L, batch)
    attention = 2 * 2 * d["heads"] * d["hd"] * (L + 1) * d["layers"]
    rotary = d["layers"] * d["hd"] if target == "dsocr" else 0
    assert cost.matmul_flops == batch * (_per_token_weight_flops(d) + attention + rotary + 2 * d["h"] * d["V"])
    # weights once per step: 6 experts per MoE layer at B = 1, 48 at B = 8, all 64 at B = 64
    weights = sum(t.weight for t in cost.fused_by_key.values())
    assert weights == _weight_bytes_read(d, batch)
    # the KV cache per sequence: the static cache writes 2 x kv_heads x head_dim per layer and sequence
    kv_row = 2 * d["kv"] * d["hd"] * B2 * d["layers"]
    assert cost.fused_by_key["cat"].write == batch * kv_row
    # every activation byte is per sequence (B x one sequence's), but the vendor's rotary
    # inv_freq buffer (head_dim / 2 values), read once per call like a weight
    one = serving.batched_decode(target, L, 1)
    assert sum(t.read + t.write for k, t in cost.fused_by_key.items() if k != "rotary") == \
        batch * sum(t.read + t.write for k, t in one.fused_by_key.items() if k != "rotary")
    if target == "dsocr":
        assert cost.fused_by_key["rotary"].read == d["layers"] * (d["hd"] // 2 * B2 + batch * B2)
    if batch == 1:
        from harness.analytic import decode_cost

        assert one == decode_cost(target, L)


def test_engine_decode_writes_only_new_kv_rows():
    _, L = _letter("dsocr", "base")
    vendor = serving.batched_decode("dsocr", L, 8)
    engine = serving.batched_decode("dsocr", L, 8, execution="engine")
    d = _hand_lm("dsocr")
    kv_row = 2 * d["kv"] * d["hd"] * B2 * d["layers"]
    assert engine.matmul_flops == vendor.matmul_flops
    # DynamicCache writes the whole cache again (L + 1 rows), a static / paged cache the new row only;
    # the other cat (the routed experts' outputs) is the same in both
    for side in ("read", "write"):
        assert getattr(vendor.bytes_by_key["cat"], side) - getattr(engine.bytes_by_key["cat"], side) == 8 * kv_row * L
    assert engine.fused_bytes == vendor.fused_bytes


# -------------------------------------------------------------------------------- capacity
def test_capacity_ocr2_by_hand():
    """OCR-2 Gundam on a letter page, A100 40GB, 1,000 new tokens: transformers keeps one logits row
    per sequence, so the workspace is linear in the batch and the largest batch is a closed form."""
    d = _hand_lm("ocr2")
    _, L = _letter("ocr2", "gundam")
    N = 1000
    free = 40 * 2**30 - 3_389_119_360 * B2 - 2**30
    per_sequence = 61_440 * (L + N) + d["V"] * B2 + L * 2 * d["I"] * B2
    cap = serving.capacity("ocr2", "A100 SXM4 40GB", L, N)
    assert cap.max_concurrency == free // per_sequence
    assert cap.kv_bytes_per_sequence == 61_440 * (L + N)


def test_capacity_is_the_largest_that_fits():
    _, L = _letter("dsocr", "gundam")
    for execution in serving.EXECUTIONS:
        cap = serving.capacity("dsocr", "A100 SXM4 40GB", L, 1000, execution=execution)
        lm = __import__("harness.analytic", fromlist=["load_dims"]).load_dims("dsocr").lm
        used = lambda b: (cap.weight_bytes + serving._workspace(lm, "dsocr", L, b, execution, B2)  # noqa: E731
                          + b * cap.kv_bytes_per_sequence)
        assert used(cap.max_concurrency) <= cap.memory_bytes < used(cap.max_concurrency + 1)


# ------------------------------------------------------------------------ throughput, bound
def _peak(tflops=312.0, bandwidth=1555.0):
    from harness.gpu.roofline import PeakUsed

    return PeakUsed("test", "bf16", tflops, bandwidth, "test")


def test_batch_rows_stop_at_capacity_and_add_up():
    layout, L = _letter("dsocr", "base")
    rows = serving.batch_rows("dsocr", "base", layout, L, (1, 8, 128), _peak(), new_tokens=3, max_concurrency=100)
    assert [r.fits for r in rows] == [True, True, False]
    one, eight = rows[0], rows[1]
    peak = _peak()
    # TTFT: vision + prefill at batch B; decode: steps at contexts L and L + 1
    costs = serving.batched_stage_costs("dsocr", layout, 8, length=L)
    ttft = sum(peak.roof(c.matmul_flops, c.fused_bytes).predicted_s for s, c in costs.items() if s != "decode")
    step2 = serving.batched_decode("dsocr", L + 1, 8)
    decode = costs["decode"]
    assert eight.ttft_s == pytest.approx(ttft, rel=1e-12)
    assert eight.decode_s == pytest.approx(peak.roof(decode.matmul_flops, decode.fused_bytes).predicted_s
                                           + peak.roof(step2.matmul_flops, step2.fused_bytes).predicted_s, rel=1e-12)
    assert eight.tokens_per_s == pytest.approx(8 * 3 / (eight.ttft_s + eight.decode_s))
    assert eight.pages_per_day == pytest.approx(86400 * 8 / (eight.ttft_s + eight.decode_s))
    # batching shares the weights: more pages per second, each step slower
    assert eight.pages_per_s > one.pages_per_s and one.tpot_s < eight.tpot_s < 8 * one.tpot_s


def test_decode_compute_bound_batch():
    _, L = _letter("dsocr", "base")
    a100 = _peak()
    found = serving.compute_bound_batch("dsocr", L, a100)
    # MHA decode reads each sequence's whole KV cache: 4 FLOPs per cached K/V element pair over
    # 2 x 2 bytes; with the weights' 2 FLOPs per 2 bytes shared, the limit stays far below the ridge
    assert found.batch is None and found.intensity_limit < a100.ridge
    low = _peak(tflops=31.2)       # ridge ~20 FLOP/B: decode turns compute-bound at a finite batch
    found = serving.compute_bound_batch("dsocr", L, low)
    b = found.batch
    assert b is not None and b > 1

    def bound(batch):
        c = serving.batched_decode("dsocr", L, batch)
        return low.roof(c.matmul_flops, c.fused_bytes).bound

    assert (bound(b - 1), bound(b)) == ("memory", "compute")


def test_parse_batches():
    assert serving.parse_batches("1,8,32,128") == (1, 8, 32, 128)
    assert serving.parse_batches("8, 8,1") == (8, 1)
    for bad in ("", "0", "a,1", "-4"):
        with pytest.raises(ValueError, match="--batch"):
            serving.parse_batches(bad)


def test_request_curve_matches_the_batch_rows():
    layout, L = _letter("dsocr", "base")
    peak = _peak()
    (row,) = serving.batch_rows("dsocr", "base", layout, L, (8,), peak, new_tokens=50)
    curve = dict((n, (s, f)) for n, s, f in serving.request_curve("dsocr", layout, L, (1, 50), peak, batch=8))
    assert curve[50][0] == pytest.approx(row.batch_s, rel=1e-12)
    assert curve[50][1] == row.request_flops
    assert curve[1][0] == pytest.approx(row.ttft_s, rel=1e-12)
