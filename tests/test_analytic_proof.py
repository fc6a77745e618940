"""Proof of the analytic model against real implementations at full size (meta device, no weights).

Every matmul-class op key is compared with integer equality against torch's FlopCounterMode,
mapped onto the analytic keys op by op:

* transformers 5.23 DeepSeek-OCR-2: SAM encoder (sdpa and eager; also rebuilt with the v1
  downsample [512, 1024] to prove the vendor SAM shape), Qwen2 encoder, projector, text model
  (prefill sdpa/eager, decode with a cache; experts_implementation="batched_mm", because the
  eager experts loop is data-dependent and fails on meta);
* transformers CLIP encoder layers configured as DeepSeek-OCR's CLIP-L (1024 wide, 16 heads,
  FFN 4096, quick_gelu) at DeepSeek-OCR's sequence lengths.

On meta, F.scaled_dot_product_attention decomposes to bmm, which FlopCounterMode counts.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections import Counter
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from harness.analytic import (
    DSOCR_CLIP,
    DSOCR_SAM,
    Cost,
    OP_CLASS,
    clip_view,
    decode_cost,
    encoder_view,
    load_dsocr_dims,
    load_ocr2_dims,
    ocr2_view_costs,
    prefill_cost,
    sam_view,
)
from harness.analytic.config import DATA_DIR
from harness.analytic.stages import sam_output_grid
from harness.run.modelrun import run_measurement

REPO = Path(__file__).resolve().parents[1]

pytest.importorskip("transformers.models.deepseek_ocr2",
                    reason="proves the analytic model against transformers 5's DeepSeek-OCR-2 modules; "
                           "this is the vendor environment (transformers 4.46.3)")
from transformers import CLIPVisionConfig, CLIPVisionModel, DeepseekOcr2Config  # noqa: E402
from transformers import DeepseekOcr2ForConditionalGeneration  # noqa: E402

# ---------------------------------------------------------------------------------------------
# A FlopCounterMode that records every counted op with the analytic key it belongs to.

_state = threading.local()


def _frames() -> list[dict[str, Any]]:
    if not hasattr(_state, "frames"):
        _state.frames = []
    return _state.frames


@contextlib.contextmanager
def _frame(kind: str, obj: Any = None) -> Iterator[None]:
    frames = _frames()
    frames.append({"kind": kind, "obj": obj, "n": 0})
    try:
        yield
    finally:
        frames.pop()


class KeyedCounter(FlopCounterMode):
    """FlopCounterMode that maps each counted aten op onto an analytic op key.

    Key = how the op was reached: inside F.scaled_dot_product_attention (1st product sdpa_qk,
    2nd sdpa_av), inside torch.einsum (einsum), inside an nn.Linear (linear, or lm_head for the
    designated head), nn.Conv2d (conv), an experts module (experts), a router module (F.linear:
    linear_functional), a rotary module (rotary), else inside an attention module (eager
    matmul: 1st product matmul_qk, 2nd matmul_av).
    """

    def __init__(self, *, lm_head: nn.Module | None = None) -> None:
        super().__init__(display=False)
        self.lm_head = lm_head
        self.by_key: Counter[str] = Counter()
        self.by_op: Counter[str] = Counter()

    def _key(self) -> str:
        for frame in reversed(_frames()):
            kind, obj = frame["kind"], frame["obj"]
            if kind == "sdpa":
                frame["n"] += 1
                return "sdpa_qk" if frame["n"] % 2 == 1 else "sdpa_av"
            if kind == "einsum":
                return "einsum"
            if kind != "module":
                continue
            name = type(obj).__name__
            if obj is self.lm_head:
                return "lm_head"
            if isinstance(obj, nn.Linear):
                return "linear"
            if isinstance(obj, nn.Conv2d):
                return "conv"
            if name.endswith("Experts"):
                return "experts"
            if name.endswith("Router") or name.endswith("Gate"):
                return "linear_functional"
            if "Rotary" in name:
                return "rotary"
            if "Attention" in name:
                frame["n"] += 1
                return "matmul_qk" if frame["n"] % 2 == 1 else "matmul_av"
        return "unattributed"

    def _count_flops(self, func_packet: Any, out: Any, args: Any, kwargs: Any) -> Any:
        if func_packet in self.flop_registry:
            flops = self.flop_registry[func_packet](*args, **kwargs, out_val=out)
            if flops:
                self.by_key[self._key()] += flops
                self.by_op[str(func_packet)] += flops
        return super()._count_flops(func_packet, out, args, kwargs)

    def __enter__(self) -> "KeyedCounter":
        self._patches = contextlib.ExitStack()
        orig_sdpa, orig_einsum = F.scaled_dot_product_attention, torch.einsum

        def sdpa(*a: Any, **k: Any) -> Any:
            with _frame("sdpa"):
                return orig_sdpa(*a, **k)

        def einsum(*a: Any, **k: Any) -> Any:
            with _frame("einsum"):
                return orig_einsum(*a, **k)

        def pre(module: nn.Module, _inputs: Any) -> None:
            _frames().append({"kind": "module", "obj": module, "n": 0})

        def post(module: nn.Module, _inputs: Any, _out: Any) -> None:
            frames = _frames()
            assert frames and frames[-1]["obj"] is module, "module frame stack out of order"
            frames.pop()

        F.scaled_dot_product_attention = sdpa  # type: ignore[assignment]
        torch.nn.functional.scaled_dot_product_attention = sdpa  # type: ignore[assignment]
        torch.einsum = einsum  # type: ignore[assignment]

        def restore() -> None:
            torch.nn.functional.scaled_dot_product_attention = orig_sdpa  # type: ignore[assignment]
            torch.einsum = orig_einsum  # type: ignore[assignment]
            _frames().clear()

        self._patches.callback(restore)
        self._patches.enter_context(torch.nn.modules.module.register_module_forward_pre_hook(pre))
        self._patches.enter_context(torch.nn.modules.module.register_module_forward_hook(post))
        super().__enter__()
        return self

    def __exit__(self, *exc: Any) -> Any:
        try:
            return super().__exit__(*exc)
        finally:
            self._patches.close()


def measure(fn: Callable[[], Any], *, lm_head: nn.Module | None = None) -> KeyedCounter:
    """Run ``fn`` (model code on meta) under a :class:`KeyedCounter` (no grad) and return the
    counter; at the suite's measurement boundary, as the engine's counts run (:mod:`harness.run.modelrun`)."""
    def run() -> KeyedCounter:
        counter = KeyedCounter(lm_head=lm_head)
        with torch.no_grad(), counter:
            fn()
        return counter

    return run_measurement(torch.empty(0, device="meta"), run)


def assert_matmul_keys_equal(analytic: Cost, measured: KeyedCounter) -> None:
    """Matmul-class FLOPs agree key by key and in total (integers, exact)."""
    __tracebackhide__ = True
    expected = {k: v for k, v in analytic.flops.items() if OP_CLASS[k] == "matmul"}
    got = dict(measured.by_key)
    assert "unattributed" not in got, f"ops not attributed to a key: {measured.by_op}"
    assert got == expected, (
        f"matmul-class FLOPs differ by key\n  analytic: {expected}\n  measured: {got}\n"
        f"  delta: { {k: got.get(k, 0) - expected.get(k, 0) for k in set(got) | set(expected)} }")
    assert sum(got.values()) == analytic.matmul_flops == measured.get_total_flops()


# ---------------------------------------------------------------------------------------------
# Full-size modules on meta, built once per module.


def _ocr2_config(**overrides: Any) -> DeepseekOcr2Config:
    cfg = json.loads((DATA_DIR / "ocr2_config.json").read_text())
    cfg.pop("_comment", None)
    for path, value in overrides.items():
        node = cfg
        *parents, leaf = path.split(".")
        for p in parents:
            node = node[p]
        node[leaf] = value
    return DeepseekOcr2Config(**cfg)


def _build_ocr2(attn: str, **overrides: Any) -> DeepseekOcr2ForConditionalGeneration:
    with torch.device("meta"):
        model = DeepseekOcr2ForConditionalGeneration._from_config(
            _ocr2_config(**overrides), attn_implementation=attn, experts_implementation="batched_mm")
    return model.eval()


@pytest.fixture(scope="module")
def ocr2_sdpa() -> DeepseekOcr2ForConditionalGeneration:
    model = _build_ocr2("sdpa")
    assert sum(p.numel() for p in model.parameters()) == 3_389_119_360  # the checkpoint's count
    return model


@pytest.fixture(scope="module")
def ocr2_eager() -> DeepseekOcr2ForConditionalGeneration:
    return _build_ocr2("eager")


@pytest.fixture(scope="module")
def v1_shaped_sam() -> nn.Module:
    """transformers' SAM encoder rebuilt with the v1 downsample [512, 1024] (the vendor's SAM shape)."""
    model = _build_ocr2("sdpa", **{"vision_config.sam_config.downsample_channels": [512, 1024]})
    sam = model.model.vision_tower.sam_encoder
    # the vendor SAM has 95,569,152 parameters (spec 1b); transformers' is the same module tree
    assert sum(p.numel() for p in sam.parameters()) == 95_569_152
    return sam


@pytest.fixture(scope="module")
def clip_l() -> nn.Module:
    """transformers CLIP vision encoder layers configured as DeepSeek-OCR's CLIP-L (24 x 1024, quick_gelu)."""
    cfg = CLIPVisionConfig(hidden_size=DSOCR_CLIP.dim, intermediate_size=DSOCR_CLIP.ffn,
                           num_hidden_layers=DSOCR_CLIP.layers, num_attention_heads=DSOCR_CLIP.heads,
                           hidden_act="quick_gelu", image_size=224, patch_size=14, layer_norm_eps=1e-5)
    with torch.device("meta"):
        model = CLIPVisionModel._from_config(cfg, attn_implementation="sdpa")
    encoder = model.eval().encoder
    # one CLIP-L layer has 12,596,224 parameters (spec 1b)
    assert sum(p.numel() for p in encoder.layers[0].parameters()) == 12_596_224
    return encoder


OCR2 = load_ocr2_dims()
DSOCR = load_dsocr_dims()

STANDARD_SIZES = (512, 640, 768, 1024, 1280)
NONSTANDARD_SIZES = (448, 896, 1152, 576)


def _pixels(batch: int, size: int) -> torch.Tensor:
    return torch.empty(batch, 3, size, size, device="meta")


# ---------------------------------------------------------------------------------------------
# SAM


@pytest.mark.parametrize("size", STANDARD_SIZES + NONSTANDARD_SIZES)
def test_ocr2_sam_sdpa_matches_transformers(ocr2_sdpa, size: int) -> None:
    sam = ocr2_sdpa.model.vision_tower.sam_encoder
    measured = measure(lambda: sam(_pixels(1, size)))
    assert_matmul_keys_equal(sam_view(OCR2.sam, size, 1, impl="sdpa", clone_net2=False), measured)


@pytest.mark.parametrize("size,batch", [(768, 6), (640, 2), (1024, 2)])
def test_ocr2_sam_batched_crops(ocr2_sdpa, size: int, batch: int) -> None:
    sam = ocr2_sdpa.model.vision_tower.sam_encoder
    measured = measure(lambda: sam(_pixels(batch, size)))
    analytic = sam_view(OCR2.sam, size, batch, impl="sdpa", clone_net2=False)
    assert_matmul_keys_equal(analytic, measured)
    # the matmul class batches exactly: a batch of n costs n single views (the pos-embed
    # interpolation runs once per call, so the element-wise class does not)
    single = sam_view(OCR2.sam, size, 1, clone_net2=False).scaled(batch)
    assert analytic.matmul_flops == single.matmul_flops
    assert analytic.flops["interpolate"] < single.flops["interpolate"]


@pytest.mark.parametrize("size", [1024, 640, 896])
def test_ocr2_sam_eager_matches_transformers(ocr2_eager, size: int) -> None:
    sam = ocr2_eager.model.vision_tower.sam_encoder
    measured = measure(lambda: sam(_pixels(1, size)))
    assert_matmul_keys_equal(sam_view(OCR2.sam, size, 1, impl="matmul", clone_net2=False), measured)


@pytest.mark.parametrize("size,batch", [(s, 1) for s in STANDARD_SIZES + NONSTANDARD_SIZES] + [(640, 6)])
def test_v1_sam_shape_matches_transformers_sam(v1_shaped_sam, size: int, batch: int) -> None:
    measured = measure(lambda: v1_shaped_sam(_pixels(batch, size)))
    assert_matmul_keys_equal(sam_view(DSOCR_SAM, size, batch), measured)


def test_sam_1024_hand_total() -> None:
    """SAM at 1024 (g=64, gp=70, 25 windows) summed by hand, independently of the stage code."""
    g, gp, d, w = 64, 70, 768, 14
    win_blocks, glob_blocks = 8, 4
    linear = (win_blocks * 2 * gp * gp * d * (3 * d + d)        # qkv + proj on padded tokens
              + glob_blocks * 2 * g * g * d * (3 * d + d)        # qkv + proj on g^2
              + 12 * 2 * g * g * d * 3072 * 2)                   # MLP on g^2 in every block
    einsum = (win_blocks * 2 * 2 * (25 * 12) * w * w * w * 64    # two einsums per window block
              + glob_blocks * 2 * 2 * 12 * g * g * g * 64)
    sdpa_each = win_blocks * 2 * 25 * 12 * 196 * 196 * 64 + glob_blocks * 2 * 12 * 4096 * 4096 * 64
    conv = (2 * g * g * d * 3 * 16 * 16 + 2 * g * g * 256 * d + 2 * g * g * 256 * 256 * 9
            + 2 * 32 * 32 * 512 * 256 * 9 + 2 * 16 * 16 * 1024 * 512 * 9)
    cost = sam_view(DSOCR_SAM, 1024)
    assert cost.flops["linear"] == linear == 726_134_685_696
    assert cost.flops["einsum"] == einsum
    assert cost.flops["sdpa_qk"] == cost.flops["sdpa_av"] == sdpa_each
    assert cost.flops["conv"] == conv
    assert cost.matmul_flops == linear + einsum + 2 * sdpa_each + conv


# ---------------------------------------------------------------------------------------------
# CLIP-L (v1)


# N = (g/4)^2 + 1: 65 (512), 101 (640), 145 (768), 257 (1024), 401 (1280); 50 (448), 197 (896), 325 (1152)
@pytest.mark.parametrize("size,batch", [(s, 1) for s in STANDARD_SIZES + NONSTANDARD_SIZES[:3]] + [(640, 6)])
def test_clip_layers_match_transformers_clip(clip_l, size: int, batch: int) -> None:
    n = sam_output_grid(DSOCR_SAM, size) ** 2
    hidden = torch.empty(batch, n + 1, DSOCR_CLIP.dim, device="meta")
    measured = measure(lambda: clip_l(inputs_embeds=hidden))
    analytic = clip_view(DSOCR_CLIP, n, batch)
    # the vendor embeddings (CLS cat, position add/interpolation) are element-wise only
    assert_matmul_keys_equal(analytic, measured)


def test_clip_1024_hand_total() -> None:
    n = 257  # 16x16 SAM tokens + CLS
    per_layer_linear = 2 * n * 1024 * (3072 + 1024 + 4096 + 4096)
    per_layer_sdpa = 2 * 16 * n * n * 64
    cost = clip_view(DSOCR_CLIP, 256)
    assert cost.flops["linear"] == 24 * per_layer_linear == 155_222_802_432
    assert cost.flops["sdpa_qk"] == cost.flops["sdpa_av"] == 24 * per_layer_sdpa


# ---------------------------------------------------------------------------------------------
# OCR-2 encoder, projector and the whole vision tower


@pytest.mark.parametrize("size,batch", [(768, 1), (1024, 1), (768, 4), (640, 1), (896, 1), (1280, 1)])
def test_ocr2_encoder_matches_transformers(ocr2_sdpa, size: int, batch: int) -> None:
    tower = ocr2_sdpa.model.vision_tower
    n = sam_output_grid(OCR2.sam, size) ** 2
    q = OCR2.encoder.queries_for(n)
    embeds = torch.empty(batch, n + q, OCR2.encoder.hidden, device="meta")
    measured = measure(lambda: tower.vision_encoder(inputs_embeds=embeds, num_patches=n))
    assert_matmul_keys_equal(encoder_view(OCR2.encoder, n, batch), measured)


@pytest.mark.parametrize("size,batch", [(768, 1), (1024, 1), (768, 3)])
def test_ocr2_vision_tower_and_projector(ocr2_sdpa, size: int, batch: int) -> None:
    """The whole tower: SAM + encoder over [SAM tokens; 144 or 256 queries]; the projector on the queries."""
    model = ocr2_sdpa.model
    out: dict[str, torch.Tensor] = {}

    def run() -> None:
        out["features"] = model.vision_tower(_pixels(batch, size)).last_hidden_state

    measured = measure(run)
    expected = ocr2_view_costs(OCR2, size, batch)
    assert_matmul_keys_equal(expected["sam"] + expected["encoder"], measured)
    q = {768: 144, 1024: 256}[size]
    assert tuple(out["features"].shape) == (batch, q, OCR2.encoder.hidden)
    projector = measure(lambda: model.multi_modal_projector(out["features"]))
    assert_matmul_keys_equal(expected["projector"], projector)
    # 2*B*q*896*1280
    assert expected["projector"].flops["linear"] == 2 * batch * q * 896 * 1280


def test_encoder_hand_total_1024() -> None:
    n, q = 256, 256
    seq = n + q  # every position runs through every layer
    per_layer_linear = 2 * seq * 896 * (896 + 128 + 128 + 896) + 2 * seq * 896 * 4864 * 3
    per_layer_sdpa = 2 * 14 * seq * seq * 64
    cost = encoder_view(OCR2.encoder, n)
    assert cost.flops["linear"] == 24 * per_layer_linear
    assert cost.flops["sdpa_qk"] == 24 * per_layer_sdpa == 24 * 2 * 14 * 512 * 512 * 64


# ---------------------------------------------------------------------------------------------
# Language model (OCR-2 text model; same shape as v1's)


def _prefill(model: DeepseekOcr2ForConditionalGeneration, length: int, logits_to_keep: int) -> Callable[[], Any]:
    ids = torch.zeros(1, length, dtype=torch.long, device="meta")
    # use_cache=True as generate does (and it skips the packed-sequence check that calls .item())
    return lambda: model(input_ids=ids, logits_to_keep=logits_to_keep, use_cache=True)


@pytest.mark.parametrize("length", [1, 93, 267, 1131])  # 267, 1131: Letter base / gundam
def test_ocr2_prefill_sdpa_matches_transformers(ocr2_sdpa, length: int) -> None:
    measured = measure(_prefill(ocr2_sdpa, length, 1), lm_head=ocr2_sdpa.lm_head)
    analytic = prefill_cost("ocr2", length)
    assert_matmul_keys_equal(analytic, measured)
    # routed experts: exactly T*k token-expert pairs per MoE layer, whatever the routing
    assert analytic.flops["experts"] == 11 * 6 * (length * 6) * 1280 * 896
    assert analytic.flops["lm_head"] == 2 * 1 * 1280 * 129280  # logits_to_keep=1, as generate does


@pytest.mark.parametrize("length", [93, 283, 913])  # 283, 913: v1 Letter base / gundam
def test_v1_prefill_shape_matches_transformers_eager_all_logits(ocr2_eager, length: int) -> None:
    """v1's LM shape: eager torch.matmul attention and lm_head over all L (logits_to_keep=0).

    The vendor's per-layer rotary inv_freq @ positions matmul is the one v1 term transformers 5
    no longer has (its rotary is element-wise); it is proven against the vendor model itself.
    """
    measured = measure(_prefill(ocr2_eager, length, 0), lm_head=ocr2_eager.lm_head)
    analytic = prefill_cost("dsocr", length)
    without_rotary = Cost({k: v for k, v in analytic.flops.items() if k != "rotary"})
    assert_matmul_keys_equal(without_rotary, measured)
    assert analytic.flops["lm_head"] == 2 * length * 1280 * 129280
    # the rotary term, against the vendor model's own torch count (recorded in its environment)
    golden = REPO / "golden" / "dsocr" / "count" / "prefill" / f"L{length}.json"
    if golden.is_file():
        vendor = json.loads(golden.read_text())["counters"]["torch"]["by_key"]
        assert analytic.flops["rotary"] == vendor["rotary"] > 0


def _cache(model: DeepseekOcr2ForConditionalGeneration, context: int) -> Any:
    from transformers import DynamicCache

    cfg = model.config.text_config
    cache = DynamicCache(config=cfg)
    shape = (1, cfg.num_key_value_heads, context, cfg.hidden_size // cfg.num_attention_heads)
    for layer in range(cfg.num_hidden_layers):
        cache.update(torch.empty(shape, device="meta"), torch.empty(shape, device="meta"), layer)
    return cache


@pytest.mark.parametrize("context", [93, 913, 4000])
@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_decode_matches_transformers(ocr2_sdpa, ocr2_eager, attn: str, context: int) -> None:
    model = ocr2_sdpa if attn == "sdpa" else ocr2_eager
    cache = _cache(model, context)
    ids = torch.zeros(1, 1, dtype=torch.long, device="meta")
    measured = measure(lambda: model(input_ids=ids, past_key_values=cache, use_cache=True, logits_to_keep=1),
                       lm_head=model.lm_head)
    analytic = decode_cost("ocr2", context, attn_implementation=attn)
    assert_matmul_keys_equal(analytic, measured)
    key = "sdpa_qk" if attn == "sdpa" else "matmul_qk"
    assert analytic.flops[key] == 12 * 2 * 10 * (context + 1) * 128  # one query over context + 1 keys


@pytest.mark.parametrize("mode", ["gundam", "small"])
def test_ocr2_letter_vision_stages_match_get_image_features(ocr2_sdpa, mode: str) -> None:
    """The vision stages of a Letter page as DeepseekOcr2Model.get_image_features runs them
    (global batch, then all crops in one batch), against stage_costs on the workload layout."""
    from harness.analytic import LETTER_PAGE, stage_costs
    from harness.inputs.workload import compute_view_layout, get_workload

    layout = compute_view_layout(get_workload("ocr2", mode), *LETTER_PAGE)
    views = {v.role: v for v in layout.views}
    model = ocr2_sdpa.model
    glob = _pixels(1, views["global"].size)
    local = _pixels(views["crops"].batch, views["crops"].size) if "crops" in views else None
    n_local = [views["crops"].batch] if "crops" in views else None
    measured = measure(lambda: model.get_image_features(glob, local, n_local))
    costs = stage_costs("ocr2", layout)
    vision = costs["sam"] + costs["encoder"] + costs["projector"]
    assert_matmul_keys_equal(vision, measured)
