"""The analytic op-level bytes of the vendor DeepSeek-OCR vision stages proven against the byte counter.

Vendor environment only (remote code, transformers 4.46.3)::

    .venv-vendor/bin/python -m pytest -m vendor --model-path DIR --trust-remote-code tests/test_bytes_vendor.py

SAM, CLIP and the projector on meta in bf16, Letter page, every v1 mode: the matmul-class keys equal
to the byte, every other key equal or sized by a named cause, nothing unexplained. (The vendor LM
runs on CPU tensors with seeded random weights; prefill and decode are proven for Base, the number
of experts the routing hits being the one measured input, see docs/bytes.md.)
"""

from __future__ import annotations

import pytest
import torch

from harness.verify.bytes import bytes_table, format_bytes_table

pytestmark = pytest.mark.vendor


@pytest.fixture(scope="module")
def dsocr_meta(model_path):
    from harness.targets import get_target

    return get_target("dsocr", model_path=model_path, trust_remote_code=True).build("meta", torch.bfloat16)


@pytest.mark.parametrize("mode", ["tiny", "small", "base", "large", "gundam"])
def test_dsocr_vision_bytes_match_the_counter(dsocr_meta, model_path, mode: str) -> None:
    rows = bytes_table("dsocr", mode, built=dsocr_meta, stages=("sam", "clip", "projector"),
                       model_path=str(model_path))
    print("\n" + format_bytes_table(rows))
    for r in rows:
        if r.key_class == "matmul":
            assert r.difference == 0, r
        assert r.unexplained == 0, r
    totals = {r.stage: r for r in rows if r.key == "total"}
    assert totals["projector"].named < 0  # the feature concat runs before the projector StageCall
    assert all(t.measured > 0 for t in totals.values())


def test_dsocr_lm_bytes_match_the_counter(dsocr_meta, model_path) -> None:
    rows = bytes_table("dsocr", "base", built=dsocr_meta, stages=("prefill", "decode"), model_path=str(model_path))
    print("\n" + format_bytes_table(rows))
    for r in rows:
        if r.key_class == "matmul" and r.key != "experts":
            assert r.difference == 0, r  # experts: the weights of the experts the routing hit (named)
        assert r.unexplained == 0, r
    decode = next(r for r in rows if r.stage == "decode" and r.key == "total")
    assert decode.difference == 0  # one token hits exactly top_k experts per layer: nothing routing-dependent
