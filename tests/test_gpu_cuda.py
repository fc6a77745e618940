"""The GPU suite (``pytest -m gpu --device cuda:N``): counts, timing and MFU on a real CUDA device.

DeepSeek-OCR-2 runs as its vendor (transformers) runs it: bf16, SDPA attention. What this proves:

* each stage's FlopCounterMode count on CUDA/bf16 equals, op key by op key, the count of the same
  stage on ``meta`` (fp32) and the analytic model. The raw op names legitimately differ: on meta
  SDPA decomposes into two ``aten.bmm``; on CUDA it is one fused op
  (``_scaled_dot_product_{flash,efficient,cudnn}_attention``) whose registered formula gives the
  same 4·B·H·Lq·Lk·d (no causal halving in either). On real CPU tensors SDPA counts 0
  (``_scaled_dot_product_flash_attention_for_cpu`` has no formula), which is why the CPU suite
  counts on meta. Those raw ``by_op`` tables are written per device class to ``$HARNESS_GPU_OUT``
  (default ``out/gpu``) for the golden keying;
* each SDPA backend counts the same as the math decomposition, per attention shape the model uses;
* CUDA-event timing works, and MFU against the table's dense peak is <= 1 on a large matmul
  (a sparse figure or a wrong SKU in the table would show up here first);
* every stage timed, with TFLOP/s, MFU and roofline, written as a Markdown table.

Everything here is skipped without CUDA (one reason, from the plugin).
"""

from __future__ import annotations

import os

import pytest
import torch

from harness.gpu.peaks import (
    PEAK_BANDWIDTH_ENV,
    PEAK_TFLOPS_ENV,
    device_name,
    dtype_key,
    lookup_peak,
    resolve_peak,
)
from harness.gpu.compare import count_record as gpu_count_record
from harness.gpu.profile import gpu_out_dir
from harness.gpu.roofline import mfu
from harness.gpu.timing import time_stage

pytestmark = pytest.mark.gpu

TARGET, MODE, PAGE = "ocr2", "base", "letter"
#: The vendor's run: transformers' native OCR-2 loads in bf16 with its default attention (sdpa).
VENDOR_DTYPE = torch.bfloat16
VENDOR_ATTN = "sdpa"
STAGES = ("sam", "encoder", "projector", "prefill", "decode")


# ------------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def page():
    from harness.gpu.profile import find_page

    return find_page(PAGE)


@pytest.fixture(scope="module")
def cuda_run(gpu_device, page):
    from harness.targets import get_target

    target = get_target(TARGET)
    built = target.build(gpu_device, VENDOR_DTYPE, attn_implementation=VENDOR_ATTN)
    inputs = target.prepare(page, MODE, device=gpu_device, dtype=VENDOR_DTYPE)
    yield target, built, inputs
    del built, inputs
    torch.cuda.empty_cache()


@pytest.fixture(scope="module")
def meta_run(page):
    from harness.targets import get_target

    target = get_target(TARGET)
    built = target.build("meta", torch.float32, attn_implementation=VENDOR_ATTN)
    return target, built, target.prepare(page, MODE, device="meta", dtype=torch.float32)


@pytest.fixture(scope="module")
def count_record(gpu_device):
    """Raw per-op counts of every stage on this device class and on meta, written at the end."""
    with gpu_count_record(gpu_device, TARGET, MODE, PAGE) as record:
        yield record


# ------------------------------------------------------------------------------------ counts
@pytest.mark.parametrize("stage", STAGES)
def test_stage_count_on_cuda_bf16_matches_meta_and_analytic(stage, cuda_run, meta_run, count_record):
    from harness.gpu.compare import compare_stage_counts

    comparison = compare_stage_counts(stage, cuda_run, meta_run)
    count_record["stages"][stage] = comparison.as_record()
    problems = comparison.problems()
    assert not problems, "\n\n".join(problems)


# The attention shapes of the model: (batch, q heads, kv heads, Lq, Lk, head_dim, mask kind).
SDPA_CASES = {
    "sam-window": (25, 12, 12, 196, 196, 64, "float"),     # 25 windows of 14x14, rel-pos bias as float mask
    "sam-global": (1, 12, 12, 4096, 4096, 64, "float"),    # 64x64 grid at 1024 px
    "encoder": (1, 14, 2, 512, 512, 64, "float"),          # Qwen2 encoder, GQA 14/2, hybrid mask
    "lm-prefill": (1, 10, 10, 300, 300, 128, "causal"),
    "lm-decode": (1, 10, 10, 1, 4097, 128, "none"),
}


@pytest.mark.parametrize("case", list(SDPA_CASES))
@pytest.mark.parametrize("backend", ["FLASH_ATTENTION", "EFFICIENT_ATTENTION", "CUDNN_ATTENTION", "MATH"])
def test_sdpa_backend_counts_equal_the_meta_decomposition(case, backend, gpu_device):
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.nn.functional import scaled_dot_product_attention as sdpa
    from torch.utils.flop_counter import FlopCounterMode

    batch, heads, kv_heads, lq, lk, dim, mask = SDPA_CASES[case]

    def run(device: str, dtype: torch.dtype) -> int:
        q = torch.randn(batch, heads, lq, dim, device=device, dtype=dtype)
        k = torch.randn(batch, kv_heads, lk, dim, device=device, dtype=dtype)
        v = torch.randn(batch, kv_heads, lk, dim, device=device, dtype=dtype)
        kwargs: dict = {"enable_gqa": kv_heads != heads}
        if mask == "float":
            kwargs["attn_mask"] = torch.randn(batch, heads, lq, lk, device=device, dtype=dtype)
        elif mask == "causal":
            kwargs["is_causal"] = True
        with FlopCounterMode(display=False) as counter:
            sdpa(q, k, v, **kwargs)
        return counter.get_total_flops()

    # 4 * B * H * Lq * Lk * d: QK^T and PV, 2 FLOPs per multiply-add each; no causal halving.
    expected = 4 * batch * heads * lq * lk * dim
    assert run("meta", torch.float32) == expected
    try:
        with sdpa_kernel(getattr(SDPBackend, backend)):
            measured = run(gpu_device, VENDOR_DTYPE)
    except RuntimeError as exc:  # this backend cannot run this shape/mask on this GPU
        pytest.skip(f"{backend} cannot run {case} here: {str(exc).splitlines()[0]}")
    except AssertionError as exc:  # older torch: sdpa_flop_count asserted equal q/kv heads
        pytest.fail(f"FlopCounterMode's SDPA formula rejects {case} ({backend}) in torch "
                    f"{torch.__version__}: {exc}")
    assert measured == expected, f"{backend} {case}: FlopCounterMode {measured:,} vs 4·B·H·Lq·Lk·d {expected:,}"


# ------------------------------------------------------------------------------------ timing, MFU
def test_this_gpu_has_a_peak(gpu_device):
    name = device_name(gpu_device)
    if os.environ.get(PEAK_TFLOPS_ENV) and os.environ.get(PEAK_BANDWIDTH_ENV):
        pytest.skip(f"peaks overridden for {name!r}")
    peak = resolve_peak(name, "bf16")  # an unknown GPU fails here, naming itself and the override
    assert peak.tflops > 0 and peak.bandwidth_gbps > 0
    # the entry matched by name is the right architecture
    assert lookup_peak(name).capability == torch.cuda.get_device_capability(gpu_device)


def test_cuda_event_timing_and_matmul_mfu_within_dense_peak(gpu_device):
    n = 8192
    a = torch.randn(n, n, device=gpu_device, dtype=VENDOR_DTYPE)
    b = torch.randn(n, n, device=gpu_device, dtype=VENDOR_DTYPE)
    timing = time_stage(lambda: torch.mm(a, b), warmup=5, repeats=20, device=gpu_device)
    assert timing.clock == "cuda_event" and timing.device.startswith("cuda:")
    assert timing.median_s > 0
    peak = resolve_peak(device_name(gpu_device), dtype_key(VENDOR_DTYPE))
    utilisation = mfu(2 * n**3, timing.median_s, peak.tflops)   # 2 x 8192^3 = 1.0995e12 FLOPs
    # Above 1 would mean the table holds less than the dense peak; far below, a sparse figure
    # (or a throttled GPU). cuBLAS reaches 60-90 % of the dense bf16 peak on this shape.
    assert 0.25 < utilisation <= 1.05, f"{peak.device_name}: matmul MFU {utilisation:.1%} of {peak.tflops} TFLOP/s"


def test_stage_timing_table(gpu_device):
    from harness.gpu.profile import profile_target

    profile = profile_target(TARGET, device=gpu_device, dtype=VENDOR_DTYPE, mode=MODE, page=PAGE,
                             decode_contexts=(512, 1024, 2048, 4096), warmup=3, repeats=10,
                             attn_implementation=VENDOR_ATTN)
    md, _ = profile.write(gpu_out_dir())
    labels = [row.stage for row in profile.rows]
    assert labels == ["sam", "encoder", "projector", "prefill", "decode@512", "decode@1024", "decode@2048",
                      "decode@4096"]
    for row in profile.rows:
        assert row.timing.clock == "cuda_event" and row.timing.median_s > 0
        # the compute term of the roofline is a hard floor: nothing runs faster than FLOPs / peak
        assert row.mfu <= 1.05, f"{row.stage}: MFU {row.mfu:.1%} > 100 %"
    decode = [row for row in profile.rows if row.stage.startswith("decode@")]
    assert all(row.roofline.bound == "memory" for row in decode)  # batch-1 decode reads every weight
    assert md.read_text().count("\n| decode@") == 4
