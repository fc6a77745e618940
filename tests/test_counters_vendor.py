"""Every counter on every stage of the vendor DeepSeek-OCR (remote code, transformers 4.46.3).

Run in the vendor environment::

    /work/venv-vendor/bin/python -m pytest -m vendor --model-path DIR --trust-remote-code \
        tests/test_counters_vendor.py

Letter page (1700x2200), Gundam (6 crops of 640 + the 1024 global view). Every stage on meta:
vision at full size, the language model shrunk (``small=True``: two layers, 8 routed experts,
top-2; the vendor hard-codes the 1280 hidden size) and run with the meta build's balanced routing
(test_targets_dsocr proves its counts equal the vendor's own routing on CPU).
"""

from __future__ import annotations

import dataclasses
import json

import pytest

from harness.measure import KEY_CLASS, UNMAPPED, count
from harness.verify import explain_delta

pytestmark = pytest.mark.vendor

COUNTERS = ("torch", "fvcore", "thop")
VARIANTS = ("stock", "patched")
LETTER = (1700, 2200)


class VendorSetup:
    def __init__(self, model_path, small: bool):
        from harness.analytic import stage_costs
        from harness.analytic.config import load_dsocr_dims, lm_dims_from_dsocr_config
        from harness.targets import get_target
        from harness.targets.dsocr import SMALL_LM_OVERRIDES

        self.target = get_target("dsocr", model_path=model_path, trust_remote_code=True)
        self.built = self.target.build("meta", small=small)
        self.inputs = self.target.prepare(LETTER, "gundam", device="meta")
        dims = load_dsocr_dims(model_path)
        if small:
            cfg = json.loads((model_path / "config.json").read_text())
            # the top level wins over language_config in lm_dims_from_dsocr_config
            dims = dataclasses.replace(dims, lm=lm_dims_from_dsocr_config({**cfg, **SMALL_LM_OVERRIDES}))
        self.costs = stage_costs("dsocr", self.inputs.layout, config=dims)
        self._calls: dict = {}
        self._counts: dict = {}

    def count(self, stage, counter, variant):
        if stage not in self._calls:
            self._calls[stage] = self.target.stage_calls(self.built, self.inputs, stage)
        key = (stage, counter, variant)
        if key not in self._counts:
            self._counts[key] = count(counter, self._calls[stage], variant=variant, target="dsocr",
                                      stage=stage, strict=variant == "patched")
        return self._counts[key]


@pytest.fixture(scope="module")
def vendor(model_path):
    pytest.importorskip("transformers", minversion="4.46")
    return VendorSetup(model_path, small=True)


def matmul_keys(flops):
    return {k: int(v) for k, v in flops.items() if KEY_CLASS.get(k) == "matmul" and v}


@pytest.mark.parametrize("counter", COUNTERS)
@pytest.mark.parametrize("stage", ["sam", "clip", "projector", "prefill", "decode"])
def test_vendor_patched_equals_analytic(vendor, stage, counter):
    result = vendor.count(stage, counter, "patched")
    analytic = vendor.costs[stage]
    delta = explain_delta(analytic, result)
    assert UNMAPPED not in result.by_key, delta
    assert matmul_keys(result.by_key) == matmul_keys(analytic.flops), delta
    assert delta.remainder == 0, delta


@pytest.mark.parametrize("counter", COUNTERS)
@pytest.mark.parametrize("stage", ["sam", "clip", "projector", "prefill", "decode"])
def test_vendor_stock_differs_only_by_named_causes(vendor, stage, counter):
    result = vendor.count(stage, counter, "stock")
    delta = explain_delta(vendor.costs[stage], result)
    assert all(c.known for c in delta.components), delta
    assert abs(delta.remainder_rel) < 1e-3, delta


def test_vendor_lm_keys(vendor):
    prefill = vendor.count("prefill", "torch", "patched")
    # eager LlamaAttention (torch.matmul), per-layer rotary matmul, F.linear gate, expert loop
    for key in ("matmul_qk", "matmul_av", "rotary", "linear_functional", "experts", "lm_head", "linear"):
        assert prefill.by_key.get(key), (key, prefill.summary())
