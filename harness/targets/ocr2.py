"""DeepSeek-OCR-2, transformers-native (``transformers.models.deepseek_ocr2``, 5.x).

Full size from ``harness/data/ocr2_config.json``; ``small=True`` is a shrunken configuration with
the same structure, for CPU tests that need real numbers. The attention and experts
implementations chosen for counting are recorded on :class:`BuiltModel`; why: docs/targets.md.
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import torch
from torch import nn

from harness.inputs.device import check_device
from harness.inputs.targets import FACTS
from harness.run.callmemo import memoised_forward, memoised_upstream
from harness.targets import base
from harness.targets.base import BuiltModel, StageInputs, StageCall, Target, TargetError
from harness.targets.kv import frozen_kv_cache
from harness.targets.pixels import resolve_page
from harness.inputs.workload import DEFAULT_PROMPT_TOKENS, compute_view_layout, get_workload, prefill_length

__all__ = ["Ocr2Target", "SMALL_OVERRIDES", "load_ocr2_config"]

ATTN_IMPLEMENTATIONS = FACTS["ocr2"].attn_implementations
EXPERTS_IMPLEMENTATIONS = ("batched_mm", "eager", "grouped_mm")

#: The shrunken configuration (``small=True``): same module structure, tiny widths. SAM keeps
#: patch 16, the 64x64 pos-embed (real 1024/768 views), window 14 and rel-pos: block 0 windowed,
#: block 1 global.
SMALL_OVERRIDES: dict[str, dict[str, Any]] = {
    "sam_config": {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
                   "global_attn_indexes": [1], "output_channels": 32, "downsample_channels": [48, 64]},
    "encoder_config": {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
                       "num_attention_heads": 4, "num_key_value_heads": 2},
    "text_config": {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
                    "num_attention_heads": 4, "num_key_value_heads": 4, "n_routed_experts": 8,
                    "num_experts_per_tok": 2, "n_shared_experts": 1, "moe_intermediate_size": 32,
                    "mlp_layer_types": ["dense", "sparse"]},
}

_EXPERT_RE = re.compile(r"^model\.language_model\.layers\.\d+\.mlp\.experts\.(gate_up_proj|down_proj)$")


@lru_cache(maxsize=1)
def _config_data() -> dict[str, Any]:
    text = resources.files("harness").joinpath("data/ocr2_config.json").read_text()
    data = json.loads(text)
    data.pop("_comment", None)
    return data


def load_ocr2_config(small: bool = False, path: str | Path | None = None):
    """``DeepseekOcr2Config`` from the data file (or a local ``config.json``), optionally shrunk."""
    try:
        from transformers import DeepseekOcr2Config
    except ImportError as exc:
        import transformers

        raise TargetError(
            f"target 'ocr2' needs transformers{FACTS['ocr2'].transformers_needed} with DeepSeek-OCR-2 (found "
            f"{transformers.__version__}). {Ocr2Target.environment_hint}") from exc
    data = json.loads(Path(path).read_text()) if path is not None else json.loads(json.dumps(_config_data()))
    data.pop("_comment", None)
    if small:
        data["vision_config"]["sam_config"].update(SMALL_OVERRIDES["sam_config"])
        data["vision_config"]["encoder_config"].update(SMALL_OVERRIDES["encoder_config"])
        data["text_config"].update(SMALL_OVERRIDES["text_config"])
    return DeepseekOcr2Config(**data)


def _install_meta_placeholder_check(model: Any) -> None:
    """Let this model's ``get_placeholder_mask`` work on meta tensors (this instance only).

    ``DeepseekOcr2Model.get_placeholder_mask`` checks ``n_image_tokens * hidden ==
    features.numel()`` with ``.item()``, impossible on meta. The instance override builds the
    same mask and skips only that check when the ids are on meta; everything else delegates to
    transformers. Nothing global changes (no module attribute is replaced), so counters see
    torch and transformers exactly as they were; :meth:`Ocr2Target.prepare` checks the same
    count against the layout instead.
    """
    inner = model.model
    original = inner.get_placeholder_mask
    image_token_id = inner.config.image_token_id

    def get_placeholder_mask(input_ids: Any, inputs_embeds: torch.Tensor, image_features: torch.Tensor) -> Any:
        if input_ids is None or input_ids.device.type != "meta":
            return original(input_ids, inputs_embeds, image_features)
        return (input_ids == image_token_id).unsqueeze(-1).to(inputs_embeds.device)

    inner.get_placeholder_mask = get_placeholder_mask


class Ocr2Target(Target):
    """DeepSeek-OCR-2 (transformers 5.x ``DeepseekOcr2ForConditionalGeneration``)."""

    name = "ocr2"
    stages = FACTS[name].stages
    environment_hint = "Run ocr2 in the main environment (make setup; .venv/bin/python), not the vendor one"

    def __init__(self, model_path: str | Path | None = None, trust_remote_code: bool = False) -> None:
        # transformers-native: no remote code; model_path may hold config.json (+ safetensors).
        self.model_path = Path(model_path).expanduser() if model_path else None
        if self.model_path is not None and not (self.model_path / "config.json").is_file():
            raise TargetError(f"ocr2 model_path {str(self.model_path)!r} has no config.json")

    # Build --------------------------------------------------------------------------------------
    def config(self, small: bool = False):
        """The configuration the model is built from."""
        path = self.model_path / "config.json" if self.model_path is not None and not small else None
        return load_ocr2_config(small=small, path=path)

    def stage_map(self) -> dict[str, tuple[str, ...]]:
        return {
            "sam": ("model.vision_tower.sam_encoder",),
            "encoder": ("model.vision_tower.vision_encoder", "model.vision_tower.query_768_resolution",
                        "model.vision_tower.query_1024_resolution"),
            "projector": ("model.multi_modal_projector",),
            "prefill": ("model.language_model", "lm_head"),
            "decode": ("model.language_model", "lm_head"),
        }

    def build(self, device: str = "meta", dtype: torch.dtype = torch.float32, weights: Any = None, *,
              small: bool = False, attn_implementation: str | None = None,
              experts_implementation: str | None = None, seed: int = 0) -> BuiltModel:
        """Build on ``meta`` (no storage) or with seeded random / checkpoint weights on CPU/CUDA.

        ``weights``: None (random; a ``model_path`` with safetensors is used when present),
        ``"random"``, or a ``.safetensors`` file / directory. Ignored on meta.
        """
        from transformers import DeepseekOcr2ForConditionalGeneration

        device = check_device(device, "device")
        attn = attn_implementation or FACTS[self.name].default_attention
        if attn not in ATTN_IMPLEMENTATIONS:
            raise ValueError(f"attn_implementation: expected one of {ATTN_IMPLEMENTATIONS}, got {attn!r}")
        experts = experts_implementation or ("batched_mm" if device == "meta" else "eager")
        if experts not in EXPERTS_IMPLEMENTATIONS:
            raise ValueError(f"experts_implementation: expected one of {EXPERTS_IMPLEMENTATIONS}, got {experts!r}")
        if device == "meta" and experts == "eager":
            raise TargetError("experts_implementation='eager' cannot run on meta: its expert loop is "
                              "data-dependent (one_hot/nonzero/where); use 'batched_mm' on meta")
        config = self.config(small)
        kwargs = dict(attn_implementation=attn, experts_implementation=experts, dtype=dtype)
        notes: list[str] = []
        if device == "meta":
            with torch.device("meta"):
                model = DeepseekOcr2ForConditionalGeneration._from_config(config, **kwargs)
            _install_meta_placeholder_check(model)
            weights_desc = "none (meta)"
        else:
            with base.empty_parameters():
                model = DeepseekOcr2ForConditionalGeneration._from_config(config, **kwargs)
            state, weights_desc = self._weights(weights, small, seed)
            share = None
            if state is None and not small:
                share = _share_experts
                notes.append("random expert weights share one tensor per layer and projection "
                             "(expanded over experts): values never change FLOPs")
            materialize_and_check(model, device, dtype, seed=seed, share=share, state=state)
        model.eval()
        for p in model.parameters():
            p.requires_grad_(False)
        stage_map = base.validate_stage_map(model, self.stage_map())
        return BuiltModel(
            target=self.name, model=model, device=device, dtype=dtype, attn_implementation=attn,
            experts_implementation=experts, config=model.config, stage_map=stage_map, small=small,
            weights=weights_desc, stage_devices={s: device for s in self.stages},
            parameter_count=sum(p.numel() for p in model.parameters()), notes=notes)

    def _weights(self, weights: Any, small: bool, seed: int):
        if weights is None and self.model_path is not None and not small \
                and any(self.model_path.glob("*.safetensors")):
            weights = self.model_path
        if weights is None or weights == "random":
            return None, f"random(seed={seed})"
        return base.load_safetensors(weights), str(weights)

    # Inputs -------------------------------------------------------------------------------------
    def prepare(self, page: Any, mode: str, prompt_tokens: int = DEFAULT_PROMPT_TOKENS, *,
                device: str = "meta", dtype: torch.dtype = torch.float32) -> StageInputs:
        """The processor's inputs for one page: ``[BOS] + <image> x N + text``, pixel views.

        On meta the pixel tensors are meta of the layout's shapes; otherwise the page goes through
        transformers' own ``DeepseekOcr2ImageProcessorPil`` with the workload's settings, and the
        result is checked against the layout (crop count and view sizes).
        """
        device = check_device(device, "device")
        workload = get_workload(self.name, mode)
        source = resolve_page(page)
        layout = compute_view_layout(workload, source.width, source.height)
        data = _config_data()
        ids = [data["text_config"]["bos_token_id"]] + [data["image_token_id"]] * layout.image_tokens \
            + base.prompt_token_ids(prompt_tokens)
        expected = prefill_length(layout, prompt_tokens)
        if len(ids) != expected:
            raise TargetError(f"ocr2 input_ids have {len(ids)} tokens, prefill_length says {expected}")
        input_ids = torch.tensor([ids], dtype=torch.long)
        image_mask = input_ids == data["image_token_id"]
        if device == "meta":
            views = tuple(torch.empty((v.batch, 3, v.size, v.size), device="meta", dtype=dtype)
                          for v in layout.views)
            kind = "meta"
        else:
            views = self._process(source.load(), layout, device, dtype)
            kind = source.kind
        return StageInputs(
            target=self.name, mode=mode, layout=layout, prompt_tokens=prompt_tokens, device=device,
            dtype=dtype, input_ids=input_ids, image_mask=image_mask,
            attention_mask=torch.ones_like(input_ids), pixel_views=views,
            model_kwargs={"num_local_patches": [layout.n_crops]}, pixel_source=kind)

    @staticmethod
    def _process(image, layout, device: str, dtype: torch.dtype) -> tuple[torch.Tensor, ...]:
        from transformers.models.deepseek_ocr2.image_processing_pil_deepseek_ocr2 import (
            DeepseekOcr2ImageProcessorPil,
        )

        w = layout.workload
        processor = DeepseekOcr2ImageProcessorPil()
        out = processor(images=[image], size={"height": w.base_size, "width": w.base_size},
                        tile_size=w.tile_size, crop_to_patches=w.crop_mode, min_patches=w.min_tiles,
                        max_patches=w.max_tiles, return_tensors="pt")
        n_local = [int(n) for n in out["num_local_patches"]]
        if n_local != [layout.n_crops]:
            raise TargetError(f"the OCR-2 image processor cut {n_local[0]} crops, the workload layout "
                              f"says {layout.n_crops} ({layout.width}x{layout.height}, mode {w.mode})")
        by_role = {"global": out["pixel_values"]}
        if layout.n_crops:
            by_role["crops"] = out["pixel_values_local"]
        views = []
        for batch in layout.views:
            pixels = by_role[batch.role]
            if tuple(pixels.shape) != (batch.batch, 3, batch.size, batch.size):
                raise TargetError(f"the OCR-2 image processor gave {batch.role} pixels of shape "
                                  f"{tuple(pixels.shape)}, the layout says "
                                  f"{(batch.batch, 3, batch.size, batch.size)}")
            views.append(pixels.to(device=device, dtype=dtype))
        return tuple(views)

    # Stages -------------------------------------------------------------------------------------
    def stage_calls(self, built: BuiltModel, inputs: StageInputs, stage: str, *,
                    decode_context: int | None = None) -> list[StageCall]:
        self._check_stage(stage)
        self._check_built(built, inputs)
        model = built.model
        tower = model.model.vision_tower
        if stage == "sam":
            return [StageCall("sam", "model.vision_tower.sam_encoder", tower.sam_encoder, (pixels,), {},
                              device=built.device)
                    for pixels in _pixels(built, inputs)]
        if stage == "encoder":
            return [StageCall("encoder", "model.vision_tower.vision_encoder", tower.vision_encoder,
                              (combined, n), {}, device=built.device)
                    for combined, n in self._encoder_inputs(built, inputs)]
        if stage == "projector":
            return [StageCall("projector", "model.multi_modal_projector", model.model.multi_modal_projector,
                              (features,), {}, device=built.device)
                    for features in self._encoder_outputs(built, inputs)]
        if stage == "prefill":
            embeds = self._prefill_embeds(built, inputs)
            return [StageCall("prefill", "", model, (), {
                "inputs_embeds": embeds, "attention_mask": _attention_mask(built, inputs.attention_mask),
                "use_cache": True, "logits_to_keep": 1}, device=built.device,
                note="language model over the full prompt with the projected image features scattered "
                     "into the placeholders; lm_head on the last position (logits_to_keep=1, as generate)")]
        # decode
        text = built.config.text_config
        context = decode_context if decode_context is not None else inputs.seq_len
        cache = frozen_kv_cache(text.num_hidden_layers, text.num_key_value_heads, _head_dim(text), context,
                                device=built.device, dtype=built.dtype)
        token = torch.tensor([[base.FILLER_TOKEN_BASE]], dtype=torch.long, device=built.device)
        return [StageCall("decode", "", model, (), {
            "input_ids": token, "past_key_values": cache,
            "attention_mask": _attention_mask(built, torch.ones((1, context + 1), dtype=torch.long)),
            "use_cache": True, "logits_to_keep": 1}, device=built.device,
            note=f"one generated token over a KV cache of {context} tokens (the cache does not grow "
                 "between calls)")]

    def whole_model_call(self, built: BuiltModel, inputs: StageInputs) -> StageCall:
        """The processor's inputs through ``DeepseekOcr2ForConditionalGeneration.forward`` (prefill)."""
        self._check_built(built, inputs)
        pixels = dict(zip((v.role for v in inputs.layout.views), _pixels(built, inputs)))
        return StageCall("whole", "", built.model, (), {
            "input_ids": inputs.input_ids.to(built.device), "pixel_values": pixels["global"],
            "pixel_values_local": pixels.get("crops"), "num_local_patches": [inputs.layout.n_crops],
            "attention_mask": _attention_mask(built, inputs.attention_mask), "use_cache": True,
            "logits_to_keep": 1}, device=built.device)

    # Upstream outputs (computed once per model, cached on the inputs; on meta inside the engine's
    # call memo, each view once per session: harness.run.callmemo) ----------------------------------------
    def _sam_outputs(self, built: BuiltModel, inputs: StageInputs) -> list[torch.Tensor]:
        sam = built.model.model.vision_tower.sam_encoder
        return memoised_upstream(inputs, built.model, "sam", lambda: _no_grad(
            lambda: [memoised_forward(sam, p).last_hidden_state for p in _pixels(built, inputs)]))

    def _encoder_inputs(self, built: BuiltModel, inputs: StageInputs) -> list[tuple[torch.Tensor, int]]:
        tower = built.model.model.vision_tower
        result = []
        for features in self._sam_outputs(built, inputs):
            # DeepseekOcr2VisionModel.forward: SAM tokens then the learned queries for the view size.
            hidden = features.flatten(2).transpose(1, 2)
            batch, n, _ = hidden.shape
            queries = tower.query_768_resolution.weight if n <= 144 else tower.query_1024_resolution.weight
            result.append((torch.cat([hidden, queries.unsqueeze(0).expand(batch, -1, -1)], dim=1), n))
        return result

    def _encoder_outputs(self, built: BuiltModel, inputs: StageInputs) -> list[torch.Tensor]:
        encoder = built.model.model.vision_tower.vision_encoder
        return memoised_upstream(inputs, built.model, "encoder", lambda: _no_grad(
            lambda: [memoised_forward(encoder, c, n).last_hidden_state[:, n:, :]
                     for c, n in self._encoder_inputs(built, inputs)]))

    def _projector_outputs(self, built: BuiltModel, inputs: StageInputs) -> list[torch.Tensor]:
        projector = built.model.model.multi_modal_projector
        return memoised_upstream(inputs, built.model, "projector", lambda: _no_grad(
            lambda: [memoised_forward(projector, f) for f in self._encoder_outputs(built, inputs)]))

    def _prefill_embeds(self, built: BuiltModel, inputs: StageInputs) -> torch.Tensor:
        return memoised_upstream(inputs, built.model, "prefill_embeds", lambda: self._scatter(built, inputs))

    def _scatter(self, built: BuiltModel, inputs: StageInputs) -> torch.Tensor:
        inner = built.model.model
        by_role = dict(zip((v.role for v in inputs.layout.views), self._projector_outputs(built, inputs)))
        # get_image_features: [local (crops, row-major), global, view_separator]
        parts = []
        if "crops" in by_role:
            parts.append(by_role["crops"].reshape(-1, by_role["crops"].shape[-1]))
        parts.append(by_role["global"].reshape(-1, by_role["global"].shape[-1]))
        parts.append(inner.view_separator.unsqueeze(0))
        features = torch.cat(parts, dim=0)
        if features.shape[0] != inputs.layout.image_tokens:
            raise TargetError(f"ocr2 image features have {features.shape[0]} rows, the layout has "
                              f"{inputs.layout.image_tokens} image placeholders")
        ids = inputs.input_ids.to(built.device)
        with torch.no_grad():
            embeds = inner.language_model.embed_tokens(ids)
            mask = inputs.image_mask.to(built.device).unsqueeze(-1)
            return embeds.masked_scatter(mask, features.to(embeds.dtype))


def _no_grad(compute):
    with torch.no_grad():
        return compute()


def _pixels(built: BuiltModel, inputs: StageInputs) -> list[torch.Tensor]:
    """The pixel views on the model's device and dtype (meta copies of real pixels are cheap)."""
    return [p if (str(p.device) == built.device and p.dtype == built.dtype)
            else p.to(device=built.device, dtype=built.dtype) for p in inputs.pixel_views]


def _attention_mask(built: BuiltModel, mask: torch.Tensor) -> torch.Tensor | None:
    """generate's all-ones mask; None on meta, where ``create_causal_mask`` cannot test it for
    all-ones (``.item()``) and where None gives the same mask (none for SDPA, causal for eager)."""
    return None if built.device == "meta" else mask.to(built.device)


def _head_dim(config: Any) -> int:
    return getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads


def _share_experts(name: str, shape: torch.Size):
    if _EXPERT_RE.match(name):
        return name, (1, *shape[1:]), 0
    return None


def materialize_and_check(model: nn.Module, device: str, dtype: torch.dtype, *, seed: int, share, state) -> None:
    """Materialise every parameter; with a checkpoint, missing or unused tensors are errors."""
    base.materialize_parameters(model, device, dtype, seed=seed, share=share, state=state)
    missing, unused = base.checkpoint_gaps(model, state)
    if missing:
        raise TargetError(f"checkpoint lacks {len(missing)} parameters of the model, e.g. "
                          f"{', '.join(missing[:5])}")
    if unused:
        raise TargetError(f"checkpoint has {len(unused)} tensors the model does not use, e.g. "
                          f"{', '.join(unused[:5])}")
