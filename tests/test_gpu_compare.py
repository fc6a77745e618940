"""CountComparison with hand-made counts (CPU): what the GPU suite reports when devices disagree."""

from __future__ import annotations

import json
from types import SimpleNamespace

from harness.analytic import Cost
from harness.gpu.compare import CountComparison, matmul_by_key

# SAM window attention, one block at 1024 px: 25 windows x 12 heads x 196 x 196 x 64,
# 2 FLOPs per multiply-add: QK^T = PV = 2 x 25 x 12 x 196^2 x 64 = 1,475,174,400 each.
QK = AV = 2 * 25 * 12 * 196 * 196 * 64
LINEAR = 2 * 25 * 196 * 768 * 2304  # qkv on the padded windows


def stage_count(by_op, by_key, complete=True):
    return SimpleNamespace(by_op=by_op, by_key=by_key, complete=complete, unknown_ops={}, devices=(),
                           summary=lambda: f"by_key={by_key}")


ANALYTIC = Cost(flops={"linear": LINEAR, "sdpa_qk": QK, "sdpa_av": AV, "norm": 123})
META = stage_count({"aten.addmm": LINEAR, "aten.bmm": QK + AV},
                   {"linear": LINEAR, "sdpa_qk": QK, "sdpa_av": AV, "norm": 0})
CUDA = stage_count({"aten.addmm": LINEAR, "aten._scaled_dot_product_efficient_attention": QK + AV},
                   {"linear": LINEAR, "sdpa_qk": QK, "sdpa_av": AV})


def test_matmul_by_key_drops_elementwise_and_zeros():
    assert matmul_by_key({"linear": 5, "norm": 7, "conv": 0, "unmapped": 2}) == {"linear": 5, "unmapped": 2}


def test_agreeing_counts_with_different_raw_ops():
    comparison = CountComparison("sam", CUDA, META, ANALYTIC)
    assert comparison.problems() == []
    # the fused SDPA op on CUDA replaces the two bmm of the meta decomposition: same FLOPs
    assert comparison.raw_only() == {"cuda": {"aten._scaled_dot_product_efficient_attention": QK + AV},
                                     "meta": {"aten.bmm": QK + AV}}
    assert comparison.as_record()["analytic_matmul"] == {"linear": LINEAR, "sdpa_av": AV, "sdpa_qk": QK}


def test_cpu_like_blind_spot_is_reported():
    # real CPU tensors: SDPA dispatches to a kernel without a formula and counts 0
    cpu = stage_count({"aten.addmm": LINEAR}, {"linear": LINEAR}, complete=False)
    problems = CountComparison("sam", cpu, META, ANALYTIC).problems()
    assert len(problems) == 3
    assert problems[0].startswith("matmul-class work ran uncounted")
    assert "differ by op key" in problems[1] and "vs analytic" in problems[2]


def test_the_gpu_suite_path_runs_on_cpu_small():
    # The GPU suite's comparison, with a real CPU build standing in for CUDA: the small OCR-2,
    # one decode token. The patched torch counter gives CPU SDPA a formula, so all three agree.
    import torch

    from harness.gpu.compare import compare_stage_counts
    from harness.targets import get_target

    target = get_target("ocr2")
    page = (1000, 1400)  # a blank page of this size: pixels never change FLOPs
    real = (target, target.build("cpu", torch.float32, small=True),
            target.prepare(page, "small", device="cpu", dtype=torch.float32))
    meta = (target, target.build("meta", torch.float32, small=True),
            target.prepare(page, "small", device="meta", dtype=torch.float32))
    comparison = compare_stage_counts("decode", real, meta)
    assert comparison.problems() == []
    assert comparison.cuda_matmul["sdpa_qk"] > 0 and comparison.cuda_matmul["lm_head"] > 0


def test_count_record_writes_the_stages_it_collected(tmp_path):
    from harness.gpu.compare import count_record

    with count_record("cpu", "ocr2", "base", "letter", out_dir=tmp_path) as record:
        record["stages"]["sam"] = {"by_op": {"aten.bmm": 12}}
    written = json.loads((tmp_path / "counts-ocr2-base-letter-cpu.json").read_text())
    assert written["stages"] == {"sam": {"by_op": {"aten.bmm": 12}}}
    assert (written["device"], written["device_class"], written["target"]) == ("cpu", "cpu", "ocr2")
