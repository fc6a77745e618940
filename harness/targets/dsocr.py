"""DeepSeek-OCR (v1), the vendor's Hugging Face remote code from a local directory.

Runs in the vendor environment (``make vendor-env``), only with ``trust_remote_code=True`` (see
:mod:`harness.targets.vendor`); ``prepare`` needs no vendor code. Owns the vendor model's stage
calls: a fixed, balanced MoE routing on meta, the prefill called as ``generate`` calls it, and
the LM's attention choices. Why each is so: docs/targets.md.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode, _disable_current_modes

from harness.inputs.device import check_device
from harness.inputs.targets import FACTS
from harness.run.callmemo import memoised_upstream
from harness.targets import base, vendor
from harness.targets.base import BuiltModel, StageInputs, StageCall, Target, TargetError
from harness.targets.kv import frozen_kv_cache
from harness.targets.pixels import dsocr_views, resolve_page
from harness.inputs.workload import DEFAULT_PROMPT_TOKENS, compute_view_layout, get_workload, prefill_length

__all__ = ["DsocrTarget", "balanced_counts", "IMAGE_TOKEN_ID", "BOS_TOKEN_ID", "SMALL_LM_OVERRIDES", "LM_PATHS", "VISION_PATHS"]

#: ``infer()``: ``image_token_id = 128815``, ``bos_id = 0`` (hard-coded there).
IMAGE_TOKEN_ID = 128815
BOS_TOKEN_ID = 0
LM_PATHS = ("model.embed_tokens", "model.layers", "model.norm", "lm_head")
VISION_PATHS = ("model.sam_model", "model.vision_model", "model.projector")
ATTN_IMPLEMENTATIONS = FACTS["dsocr"].attn_implementations
#: ``small=True``: the LM shrunk to one dense and one MoE layer with 8 routed experts (top-2).
#: Vision and the 1280 hidden size are hard-coded in the vendor code and stay full size.
SMALL_LM_OVERRIDES = {"num_hidden_layers": 2, "n_routed_experts": 8, "num_experts_per_tok": 2}

_EXPERT_RE = re.compile(r"^model\.layers\.(\d+)\.mlp\.experts\.\d+\.(gate_proj|up_proj|down_proj)\.weight$")


class _MaskStaysOnDevice(torch.Tensor):
    """``images_seq_mask`` whose ``.cuda()`` is a no-op.

    The vendor forward scatters the image features with
    ``images_seq_mask[idx].unsqueeze(-1).cuda()``; on a CPU run that call would fail, so the mask
    handed to a CPU whole-model call keeps its device (indexing and unsqueeze keep the subclass).
    """

    def cuda(self, *args: Any, **kwargs: Any) -> torch.Tensor:  # type: ignore[override]
        return self


class DsocrTarget(Target):
    """The vendor DeepSeek-OCR (``DeepseekOCRForCausalLM``) from a local directory."""

    name = "dsocr"
    stages = FACTS[name].stages
    needs_model_path = FACTS[name].needs_model_path
    environment_hint = "Run it in the vendor environment: make vendor-env, then make test-vendor MODEL_PATH=DIR"

    def __init__(self, model_path: str | Path | None = None, trust_remote_code: bool = False) -> None:
        self.model_path = model_path
        self.trust_remote_code = trust_remote_code

    def input_problem(self) -> str | None:
        """A model directory is needed, its remote code complete, and running it allowed."""
        try:
            model_dir = vendor.find_model_dir(self.model_path)
        except TargetError as exc:
            return str(exc)
        if not self.trust_remote_code:
            return (f"target dsocr executes the vendor's Python files in {str(model_dir)!r}; allow it "
                    "explicitly with --trust-remote-code")
        return None

    def stage_map(self) -> dict[str, tuple[str, ...]]:
        return {
            "sam": ("model.sam_model",),
            "clip": ("model.vision_model",),
            "projector": ("model.projector",),
            "prefill": LM_PATHS,
            "decode": LM_PATHS,
        }

    # Build --------------------------------------------------------------------------------------
    def build(self, device: str = "meta", dtype: torch.dtype = torch.float32, weights: Any = None, *,
              small: bool = False, attn_implementation: str | None = None,
              experts_implementation: str | None = None, seed: int = 0) -> BuiltModel:
        """Build the vendor model on ``device`` (meta: the MoE with a balanced routing, see the module doc).

        ``weights``: None (the directory's safetensors when present, else seeded random),
        ``"random"``, or a ``.safetensors`` file / directory. Ignored for parts on meta.
        """
        device = check_device(device, "device")
        attn = attn_implementation or FACTS[self.name].default_attention
        if attn not in ATTN_IMPLEMENTATIONS:
            raise TargetError(
                f"attn_implementation {attn!r} is not available in the vendor DeepSeek-OCR LM: it maps "
                f"use_mla=false to 'mha_<impl>' with only {ATTN_IMPLEMENTATIONS} (no SDPA path; "
                "_supports_sdpa is unset). SAM and CLIP call SDPA whatever this setting")
        if attn == "flash_attention_2" and not device.startswith("cuda"):
            raise TargetError("attn_implementation='flash_attention_2' needs a CUDA device and flash_attn")
        if experts_implementation not in (None, "vendor"):
            raise TargetError("the vendor MoE has one implementation (moe_infer: a loop over experts that "
                              f"received tokens); experts_implementation={experts_implementation!r} is not available")
        model_dir = vendor.find_model_dir(self.model_path)
        config = vendor.load_vendor_config(model_dir, trust_remote_code=self.trust_remote_code,
                                           overrides=SMALL_LM_OVERRIDES if small else None)
        from transformers import AutoModel

        with base.empty_parameters():
            model = AutoModel.from_config(config, trust_remote_code=True, attn_implementation=attn,
                                          torch_dtype=dtype)
        notes: list[str] = []
        lm_device = device
        weights_path, weights_desc = self._weights(model_dir, weights, small, seed, device)
        if device == "meta":
            model.to("meta")
            routed = _balanced_routing(model)
            _rotary_on_meta(model)
            notes.append(f"every stage on meta; the vendor MoE ({routed} layers) runs moe_infer with a fixed, "
                         "balanced routing (T*k pairs dealt to the experts in order): FLOPs and op keys as "
                         "any routing; expert call counts and expert weight bytes those of min(E, T*k) experts")
        else:
            _materialize(model, ("",), device, dtype, seed, weights_path, notes)
        model.eval()
        for p in model.parameters():
            p.requires_grad_(False)
        stage_map = base.validate_stage_map(model, self.stage_map())
        stage_devices = {s: device for s in FACTS[self.name].vision_stages}
        stage_devices.update(prefill=lm_device, decode=lm_device)
        built = BuiltModel(
            target=self.name, model=model, device=device, dtype=dtype, attn_implementation=attn,
            experts_implementation="vendor moe_infer (loop over experts with tokens)",
            config=model.config, stage_map=stage_map, small=small, weights=weights_desc,
            stage_devices=stage_devices, parameter_count=sum(p.numel() for p in model.parameters()),
            notes=notes)
        built.extra.update(seed=seed, weights_path=weights_path, lm_ready=True, model_dir=model_dir)
        return built

    @staticmethod
    def _weights(model_dir: Path, weights: Any, small: bool, seed: int, device: str):
        if weights is None and not small and any(model_dir.glob("*.safetensors")):
            weights = model_dir
        if device == "meta":
            return None, "none (meta)"
        if weights is None or weights == "random":
            return None, f"random(seed={seed})"
        return Path(weights), str(weights)

    def _lm_ready(self, built: BuiltModel) -> None:
        """Give the LM real storage on its device, once (a meta build needs none)."""
        if built.extra.get("lm_ready"):
            return
        _materialize(built.model, LM_PATHS, built.stage_devices["prefill"], built.dtype,
                     built.extra.get("seed", 0), built.extra.get("weights_path"), built.notes)
        built.extra["lm_ready"] = True

    # Inputs -------------------------------------------------------------------------------------
    def prepare(self, page: Any, mode: str, prompt_tokens: int = DEFAULT_PROMPT_TOKENS, *,
                device: str = "meta", dtype: torch.dtype = torch.float32) -> StageInputs:
        """``infer()``'s tensors for one page: ``[BOS] + <image> x N + text``, views, crop grid.

        On meta the pixel views are meta tensors of the layout's shapes (no decoding); otherwise
        the page is pre-processed as ``infer()`` does (see :func:`harness.targets.pixels.dsocr_views`).
        """
        device = check_device(device, "device")
        workload = get_workload(self.name, mode)
        source = resolve_page(page)
        layout = compute_view_layout(workload, source.width, source.height)
        # The default prompt is "<image>\n...": the text before the image is empty, so BOS, then
        # the placeholders, then the text tokens (the mask is one contiguous run either way).
        ids = [BOS_TOKEN_ID] + [IMAGE_TOKEN_ID] * layout.image_tokens + base.prompt_token_ids(prompt_tokens)
        expected = prefill_length(layout, prompt_tokens)
        if len(ids) != expected:
            raise TargetError(f"dsocr input_ids have {len(ids)} tokens, prefill_length says {expected}")
        input_ids = torch.tensor([ids], dtype=torch.long)
        image_mask = input_ids == IMAGE_TOKEN_ID
        if device == "meta":
            views = tuple(torch.empty((v.batch, 3, v.size, v.size), device="meta", dtype=dtype)
                          for v in layout.views)
            kind = "meta"
        else:
            by_role = dsocr_views(source.load(), layout)
            views = tuple(by_role[v.role].to(device=device, dtype=dtype) for v in layout.views)
            kind = source.kind
        for batch, pixels in zip(layout.views, views):
            if tuple(pixels.shape) != (batch.batch, 3, batch.size, batch.size):
                raise TargetError(f"dsocr {batch.role} pixels have shape {tuple(pixels.shape)}, the layout "
                                  f"says {(batch.batch, 3, batch.size, batch.size)}")
        spatial = torch.tensor([list(layout.crop_grid)], dtype=torch.long)
        return StageInputs(
            target=self.name, mode=mode, layout=layout, prompt_tokens=prompt_tokens, device=device,
            dtype=dtype, input_ids=input_ids, image_mask=image_mask,
            attention_mask=torch.ones_like(input_ids), pixel_views=views,
            model_kwargs={"images_spatial_crop": spatial}, pixel_source=kind)

    # Stages -------------------------------------------------------------------------------------
    def stage_calls(self, built: BuiltModel, inputs: StageInputs, stage: str, *,
                    decode_context: int | None = None) -> list[StageCall]:
        self._check_stage(stage)
        self._check_built(built, inputs)
        inner = built.model.model
        dev = built.stage_devices[stage]
        if stage == "sam":
            return [StageCall("sam", "model.sam_model", inner.sam_model, (p,), {}, device=dev)
                    for p in _pixels(built, inputs)]
        if stage == "clip":
            return [StageCall("clip", "model.vision_model", inner.vision_model, (p, f), {}, device=dev)
                    for p, f in zip(_pixels(built, inputs), self._sam_outputs(built, inputs))]
        if stage == "projector":
            return [StageCall("projector", "model.projector", inner.projector, (x,), {}, device=dev)
                    for x in self._projector_inputs(built, inputs)]
        self._lm_ready(built)
        if stage == "prefill":
            embeds, note = self._prefill_embeds(built, inputs)
            kwargs = {
                "input_ids": inputs.input_ids.to(dev), "inputs_embeds": embeds,
                "attention_mask": inputs.attention_mask.to(dev),
                # infer()'s zero images, on the host when the LM is on meta: the forward tests their
                # sum with .item() (0: vision skipped, inputs_embeds used)
                "images": [_text_only_images(inputs, "cpu" if dev == "meta" else dev, built.dtype)],
                "images_seq_mask": inputs.image_mask.to(dev),
                "images_spatial_crop": torch.zeros((1, 2), dtype=torch.long),
                "use_cache": True,
            }
            return [StageCall("prefill", "", built.model, (), kwargs, device=dev, note=note)]
        # decode
        cfg = built.config
        context = decode_context if decode_context is not None else inputs.seq_len
        cache = frozen_kv_cache(cfg.num_hidden_layers, cfg.num_key_value_heads,
                                cfg.hidden_size // cfg.num_attention_heads, context, device=dev, dtype=built.dtype)
        kwargs = {
            "input_ids": torch.tensor([[base.FILLER_TOKEN_BASE]], dtype=torch.long, device=dev),
            "past_key_values": cache,
            "attention_mask": torch.ones((1, context + 1), dtype=torch.long, device=dev),
            "position_ids": torch.tensor([[context]], dtype=torch.long, device=dev),
            "use_cache": True,
        }
        return [StageCall("decode", "", built.model, (), kwargs, device=dev,
                          note=f"one generated token over a KV cache of {context} tokens (the cache does not "
                               "grow between calls); vision is skipped (input length 1)")]

    def whole_model_call(self, built: BuiltModel, inputs: StageInputs) -> StageCall:
        """``generate``'s first forward (vision + prefill) on the vendor model; CPU or CUDA only."""
        self._check_built(built, inputs)
        if built.device == "meta":
            raise TargetError(
                "the vendor forward cannot run vision on meta: it tests the image sums with .item(); build "
                "dsocr on 'cpu' (or 'cuda:N') for a whole-model call, or use stage_calls (every stage on meta)")
        self._lm_ready(built)
        dev = built.device
        pixels = dict(zip((v.role for v in inputs.layout.views), _pixels(built, inputs)))
        crops = pixels.get("crops")
        if crops is None:  # infer(): zeros(1, 3, base, base) when there are no crops
            size = inputs.layout.workload.base_size
            crops = torch.zeros((1, 3, size, size), device=dev, dtype=built.dtype)
        mask = inputs.image_mask.to(dev)
        if not dev.startswith("cuda"):
            mask = mask.as_subclass(_MaskStaysOnDevice)
        return StageCall("whole", "", built.model, (), {
            "input_ids": inputs.input_ids.to(dev), "attention_mask": inputs.attention_mask.to(dev),
            "images": [(crops, pixels["global"])], "images_seq_mask": mask,
            "images_spatial_crop": inputs.model_kwargs["images_spatial_crop"], "use_cache": True,
        }, device=dev, note="images_seq_mask's .cuda() is a no-op off CUDA (vendor forward calls it)"
           if not dev.startswith("cuda") else "")

    # Upstream outputs ----------------------------------------------------------------------------
    def _sam_outputs(self, built: BuiltModel, inputs: StageInputs) -> list[torch.Tensor]:
        sam = built.model.model.sam_model
        return memoised_upstream(inputs, built.model, "sam", lambda: _no_grad(
            lambda: [sam(p) for p in _pixels(built, inputs)]))

    def _clip_outputs(self, built: BuiltModel, inputs: StageInputs) -> list[torch.Tensor]:
        clip = built.model.model.vision_model
        return memoised_upstream(inputs, built.model, "clip", lambda: _no_grad(
            lambda: [clip(p, f) for p, f in zip(_pixels(built, inputs), self._sam_outputs(built, inputs))]))

    def _projector_inputs(self, built: BuiltModel, inputs: StageInputs) -> list[torch.Tensor]:
        # CLIP without its CLS token, then SAM flattened to tokens: (B, n, 1024 + 1024).
        return [torch.cat((c[:, 1:], s.flatten(2).permute(0, 2, 1)), dim=-1)
                for c, s in zip(self._clip_outputs(built, inputs), self._sam_outputs(built, inputs))]

    def _projector_outputs(self, built: BuiltModel, inputs: StageInputs) -> list[torch.Tensor]:
        projector = built.model.model.projector
        return memoised_upstream(inputs, built.model, "projector", lambda: _no_grad(
            lambda: [projector(x) for x in self._projector_inputs(built, inputs)]))

    def _image_sequence(self, built: BuiltModel, inputs: StageInputs) -> torch.Tensor:
        """The vendor's image token rows: [crop mosaic + newlines, global + newlines, separator]."""
        inner = built.model.model
        layout = inputs.layout
        by_role = dict(zip((v.role for v in layout.views), self._projector_outputs(built, inputs)))
        newline, separator = inner.image_newline, inner.view_seperator
        parts = []
        if "crops" in by_role:
            local = by_role["crops"]
            cols, rows = layout.crop_grid
            side = int(round(local.shape[1] ** 0.5))
            dim = local.shape[-1]
            mosaic = local.view(rows, cols, side, side, dim).permute(0, 2, 1, 3, 4).reshape(rows * side, cols * side, dim)
            mosaic = torch.cat([mosaic, newline[None, None, :].expand(rows * side, 1, dim)], dim=1)
            parts.append(mosaic.reshape(-1, dim))
        glob = by_role["global"][0]
        side = int(round(glob.shape[0] ** 0.5))
        dim = glob.shape[-1]
        grid = torch.cat([glob.view(side, side, dim), newline[None, None, :].expand(side, 1, dim)], dim=1)
        parts.extend([grid.reshape(-1, dim), separator[None, :]])
        sequence = torch.cat(parts, dim=0)
        if sequence.shape[0] != layout.image_tokens:
            raise TargetError(f"dsocr image sequence has {sequence.shape[0]} rows, the layout has "
                              f"{layout.image_tokens} placeholders")
        return sequence

    def _prefill_embeds(self, built: BuiltModel, inputs: StageInputs) -> tuple[torch.Tensor, str]:
        return memoised_upstream(inputs, built.model, "prefill_embeds", lambda: self._embeds(built, inputs))

    def _embeds(self, built: BuiltModel, inputs: StageInputs) -> tuple[torch.Tensor, str]:
        dev = built.stage_devices["prefill"]
        ids = inputs.input_ids.to(dev)
        with torch.no_grad():
            embeds = built.model.model.embed_tokens(ids)
            if built.stage_devices["projector"] != dev:
                return embeds, (
                    f"inputs_embeds: text-only prefill of the same length {inputs.seq_len} (vision ran on "
                    f"{built.stage_devices['projector']}, the LM on {dev}; image positions hold the placeholder "
                    "embedding): identical FLOPs, they depend on L only")
            sequence = self._image_sequence(built, inputs).to(embeds.dtype)
            embeds = embeds.masked_scatter(inputs.image_mask.to(dev).unsqueeze(-1), sequence)
        return embeds, ("inputs_embeds: token embeddings with the projected image features scattered into the "
                        "image placeholders (vendor order: crop mosaic, global, separator)")


class _BalancedCounts(TorchDispatchMode):
    """Inside one ``moe_infer`` call on meta: the routing counts it reads back to the host.

    ``moe_infer`` scatters ones at ``topk_ids`` into a (T, E) count table, sums it to
    ``tokens_per_expert`` (E,) and calls ``.cpu()`` on it. This mode sees the scatter (its index
    holds the T*k pairs) and answers that ``.cpu()`` -- a meta-to-host copy of an (E,) integer
    tensor -- with the balanced counts. Every other op runs as dispatched. A dispatch mode lives on
    this thread's mode stack, for this call only.
    """

    def __init__(self, experts: int) -> None:
        super().__init__()
        self.experts = experts
        self.pairs: int | None = None

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        packet = getattr(func, "overloadpacket", None)
        if packet in (torch.ops.aten.scatter_, torch.ops.aten.scatter) and len(args) > 2 \
                and isinstance(args[2], torch.Tensor) and args[2].is_meta and args[2].dim() == 2:
            self.pairs = args[2].numel()
        elif (func is torch.ops.aten._to_copy.default and self.pairs is not None and args
              and isinstance(args[0], torch.Tensor) and args[0].is_meta
              and tuple(args[0].shape) == (self.experts,) and not args[0].is_floating_point()
              and torch.device(kwargs.get("device") or "meta").type == "cpu"):
            # made with every dispatch mode of this thread set aside: a counter running the call
            # sees no op for it (a real run's .cpu() of a host tensor dispatches none either)
            with _disable_current_modes():
                return balanced_counts(self.pairs, self.experts, dtype=args[0].dtype)
        return func(*args, **kwargs)


def balanced_counts(pairs: int, experts: int, dtype: torch.dtype = torch.long) -> torch.Tensor:
    """Tokens per expert when ``pairs`` (token, expert) pairs are dealt to ``experts`` in order."""
    base_count, extra = divmod(pairs, experts)
    return torch.tensor([base_count + (1 if i < extra else 0) for i in range(experts)], dtype=dtype)


def _balanced_routing(model: nn.Module) -> int:
    """Give every vendor MoE layer of ``model`` (a meta build of our own) a ``moe_infer`` that runs the
    vendor's with balanced counts when its input is on meta; the number of layers."""
    import functools

    layers = 0
    for module in model.modules():
        if type(module).__name__ == "DeepseekV2MoE" and hasattr(type(module), "moe_infer"):
            module.moe_infer = functools.partial(_moe_infer_balanced, module, type(module).moe_infer)
            layers += 1
    return layers


def _rotary_on_meta(model: nn.Module) -> None:
    """transformers 4.46's ``LlamaRotaryEmbedding.forward(x, position_ids)`` (the vendor's eager
    attention uses it) reads ``x`` only for its device type and dtype, and opens
    ``torch.autocast(x.device.type, enabled=False)``, which torch refuses for "meta". On meta it is
    given an empty host tensor of ``x``'s dtype in its place (made here, not while counting): the
    same ops run, on the same meta ``inv_freq`` and ``position_ids``."""
    import functools
    import inspect

    for module in model.modules():
        if type(module).__name__.endswith("RotaryEmbedding") and \
                list(inspect.signature(type(module).forward).parameters)[1:3] == ["x", "position_ids"]:
            module.forward = functools.partial(_rotary_forward, module, type(module).forward,
                                               {dtype: torch.empty(0, dtype=dtype) for dtype in _FLOATS})


_FLOATS = (torch.float32, torch.bfloat16, torch.float16)


def _rotary_forward(module: nn.Module, forward: Any, stand_ins: dict, x: torch.Tensor, position_ids: torch.Tensor,
                    *args: Any, **kwargs: Any) -> Any:
    if x.is_meta and x.dtype in stand_ins:
        x = stand_ins[x.dtype]
    return forward(module, x, position_ids, *args, **kwargs)


def _moe_infer_balanced(moe: nn.Module, vendor_moe_infer: Any, x: torch.Tensor, topk_ids: torch.Tensor,
                        topk_weight: torch.Tensor) -> torch.Tensor:
    if not x.is_meta:
        return vendor_moe_infer(moe, x, topk_ids, topk_weight)
    with _BalancedCounts(len(moe.experts)):
        return vendor_moe_infer(moe, x, topk_ids, topk_weight)


def _no_grad(compute):
    with torch.no_grad():
        return compute()


def _pixels(built: BuiltModel, inputs: StageInputs) -> list[torch.Tensor]:
    device = built.stage_devices["sam"]
    return [p if (str(p.device) == device and p.dtype == built.dtype) else p.to(device=device, dtype=built.dtype)
            for p in inputs.pixel_views]


def _text_only_images(inputs: StageInputs, device: str, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """``infer()``'s all-zero image tensors for a prompt without an image: (crops, global)."""
    w = inputs.layout.workload
    return (torch.zeros((1, 3, w.base_size, w.base_size), device=device, dtype=dtype),
            torch.zeros((1, 3, w.image_size, w.image_size), device=device, dtype=dtype))


def _share_experts(name: str, shape: torch.Size):
    match = _EXPERT_RE.match(name)
    if match:
        return (int(match.group(1)), match.group(2)), tuple(shape), -1
    return None


def _materialize(model: nn.Module, prefixes: tuple[str, ...], device: str, dtype: torch.dtype, seed: int,
                 weights_path: Path | None, notes: list[str]) -> None:
    """Real storage for the parameters under ``prefixes``: checkpoint tensors (read only for these
    prefixes) or seeded random ones. A parameter the checkpoint lacks is an error."""
    state = base.load_safetensors(weights_path, prefixes) if weights_path is not None else None
    base.materialize_parameters(model, device, dtype, prefixes=prefixes, seed=seed,
                                share=_share_experts if state is None else None, state=state)
    missing, unused = base.checkpoint_gaps(model, state, prefixes)
    if missing:
        raise TargetError(f"checkpoint {str(weights_path)!r} lacks {len(missing)} parameters of the vendor "
                          f"model, e.g. {', '.join(missing[:5])}")
    if state is not None:
        if unused:  # recorded, not fatal: a checkpoint may carry tensors the code never builds
            notes.append(f"checkpoint tensors not in the model ({len(unused)}): {', '.join(unused[:5])}")
    elif any(p == "" or p == "model.layers" for p in prefixes):
        notes.append("random expert weights share one tensor per layer and projection: values never "
                     "change FLOPs")
