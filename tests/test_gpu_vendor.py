"""The vendor GPU suite: DeepSeek-OCR (remote code) on CUDA, in the vendor environment.

Run in the vendor environment (transformers 4.46.3, ``make vendor-env``)::

    .venv-vendor/bin/python -m pytest -m "gpu and vendor" --device cuda:0 \\
        --model-path "$DEEPSEEK_OCR_PATH" --trust-remote-code

The vendor's run is bf16 (``.to(torch.bfloat16)`` + autocast); its vision attention is SDPA (SAM
with the rel-pos float mask, CLIP without), which FlopCounterMode counts on CUDA through the fused
kernels' formulas. Its language model is built here with the target's default attention; the
official script's ``flash_attention_2`` runs ``flash_attn`` kernels that no torch-level counter
sees, which :func:`test_stage_count_on_cuda_bf16_matches_meta_and_analytic` would report as
uncounted work.

Skipped without CUDA, and without ``--model-path``/``--trust-remote-code`` (one reason each).
"""

from __future__ import annotations


import pytest
import torch

from harness.gpu.compare import count_record as gpu_count_record
from harness.gpu.profile import gpu_out_dir

pytestmark = [pytest.mark.gpu, pytest.mark.vendor]

TARGET, MODE, PAGE = "dsocr", "base", "letter"
VENDOR_DTYPE = torch.bfloat16
STAGES = ("sam", "clip", "projector", "prefill", "decode")


@pytest.fixture(scope="module")
def page():
    from harness.gpu.profile import find_page

    return find_page(PAGE)


@pytest.fixture(scope="module")
def vendor_target(model_path):
    from harness.targets import get_target

    return get_target(TARGET, model_path=model_path, trust_remote_code=True)


@pytest.fixture(scope="module")
def cuda_run(vendor_target, gpu_device, page):
    built = vendor_target.build(gpu_device, VENDOR_DTYPE)
    yield vendor_target, built, vendor_target.prepare(page, MODE, device=gpu_device, dtype=VENDOR_DTYPE)
    del built
    torch.cuda.empty_cache()


@pytest.fixture(scope="module")
def meta_run(vendor_target, page):
    built = vendor_target.build("meta", torch.float32)
    return vendor_target, built, vendor_target.prepare(page, MODE, device="meta", dtype=torch.float32)


@pytest.fixture(scope="module")
def count_record(gpu_device):
    """Raw per-op counts of every stage on this device class and on meta, written at the end."""
    with gpu_count_record(gpu_device, TARGET, MODE, PAGE) as record:
        yield record


@pytest.mark.parametrize("stage", STAGES)
def test_stage_count_on_cuda_bf16_matches_meta_and_analytic(stage, cuda_run, meta_run, count_record, model_path):
    from harness.gpu.compare import compare_stage_counts

    comparison = compare_stage_counts(stage, cuda_run, meta_run, model_path=model_path)
    count_record["stages"][stage] = comparison.as_record()
    problems = comparison.problems()
    assert not problems, "\n\n".join(problems)


def test_stage_timing_table(gpu_device, model_path):
    from harness.gpu.profile import profile_target

    profile = profile_target(TARGET, device=gpu_device, dtype=VENDOR_DTYPE, mode=MODE, page=PAGE,
                             decode_contexts=(512, 1024, 2048, 4096), warmup=3, repeats=10,
                             model_path=model_path, trust_remote_code=True)
    profile.write(gpu_out_dir())
    assert [row.stage for row in profile.rows][:4] == list(STAGES[:4])
    for row in profile.rows:
        assert row.timing.median_s > 0 and row.mfu <= 1.05, row.stage
