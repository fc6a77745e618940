"""Model sizes for the analytic model: dsocr from its config.json (LM) + `constants` (vision), ocr2 from data.

* dsocr: language-model values from a user's vendor ``config.json`` (``--model-path``) or the
  built-in copy ``harness/data/dsocr_config.json``; SAM, CLIP and projector sizes from
  :mod:`harness.analytic.constants` (the vendor hard-codes them in Python).
* ocr2: ``harness/data/ocr2_config.json`` (transformers 5.x ``deepseek_ocr2`` form); the learned
  query counts (144 / 256) are hard-coded in transformers' ``DeepseekOcr2VisionModel``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Mapping, Union

from harness.inputs.targets import target_facts
from harness.analytic.constants import DSOCR_CLIP, DSOCR_PROJECTOR, DSOCR_SAM, ClipDims, ProjectorDims, SamDims

__all__ = [
    "DATA_DIR",
    "LMDims",
    "EncoderDims",
    "DsocrDims",
    "Ocr2Dims",
    "ModelDims",
    "lm_dims_from_dsocr_config",
    "load_dsocr_dims",
    "load_ocr2_dims",
    "ocr2_dims_from_config",
    "load_dims",
]

DATA_DIR = Path(__file__).resolve().parent.parent / "data"


@dataclass(frozen=True)
class LMDims:
    """DeepSeek-V2-style MoE language model sizes (MHA, SwiGLU, dense + MoE layers)."""

    hidden: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate: int           # dense-layer SwiGLU width
    moe_intermediate: int       # one routed expert's SwiGLU width
    n_routed: int
    top_k: int
    n_shared: int
    moe_layers: tuple[bool, ...]  # per layer: True where the MLP is the MoE
    vocab: int
    attention_bias: bool = False
    max_positions: int | None = None  # max_position_embeddings, where the configuration states it

    @property
    def shared_intermediate(self) -> int:
        """Width of the single shared-expert SwiGLU: moe_intermediate x n_shared."""
        return self.moe_intermediate * self.n_shared

    @property
    def n_moe_layers(self) -> int:
        """Number of MoE layers."""
        return sum(self.moe_layers)


@dataclass(frozen=True)
class EncoderDims:
    """OCR-2's Qwen2-style vision encoder (decoder layers used as an encoder) and its queries."""

    hidden: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate: int
    #: DeepseekOcr2VisionModel: query_768_resolution (144) when SAM gives <= 144 patches, else
    #: query_1024_resolution (256). Hard-coded in transformers, not in the config.
    small_queries: int = 144
    large_queries: int = 256

    def queries_for(self, n_patches: int) -> int:
        """Learned queries appended after ``n_patches`` SAM tokens (144 if <= 144 else 256)."""
        return self.small_queries if n_patches <= self.small_queries else self.large_queries


@dataclass(frozen=True)
class DsocrDims:
    """All sizes of vendor DeepSeek-OCR (v1)."""

    sam: SamDims
    clip: ClipDims
    projector: ProjectorDims
    lm: LMDims


@dataclass(frozen=True)
class Ocr2Dims:
    """All sizes of transformers-native DeepSeek-OCR-2."""

    sam: SamDims
    encoder: EncoderDims
    projector: ProjectorDims
    lm: LMDims


ModelDims = Union[DsocrDims, Ocr2Dims]


def _read_json(path: Path) -> dict[str, Any]:
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


def lm_dims_from_dsocr_config(cfg: Mapping[str, Any]) -> LMDims:
    """LMDims from a vendor DeepSeek-OCR config.json (top level, else ``language_config``)."""
    lang = cfg.get("language_config") or {}

    def get(key: str, default: Any = ...) -> Any:
        if key in cfg:
            return cfg[key]
        if key in lang:
            return lang[key]
        if default is ...:
            raise KeyError(f"dsocr config: missing {key!r} (looked at the top level and language_config)")
        return default

    if get("use_mla", False):
        raise NotImplementedError("dsocr config: use_mla=true (MLA attention) is not modelled; "
                                  "DeepSeek-OCR ships use_mla=false (plain MHA)")
    hidden = get("hidden_size")
    heads = get("num_attention_heads")
    layers = get("num_hidden_layers")
    n_routed = get("n_routed_experts", None)
    first_dense = get("first_k_dense_replace", 0)
    freq = get("moe_layer_freq", 1)  # DeepseekV2Config default
    moe_layers = tuple(n_routed is not None and i >= first_dense and i % freq == 0 for i in range(layers))
    return LMDims(
        hidden=hidden,
        layers=layers,
        heads=heads,
        kv_heads=get("num_key_value_heads", heads),
        head_dim=hidden // heads,
        intermediate=get("intermediate_size"),
        moe_intermediate=get("moe_intermediate_size"),
        n_routed=n_routed or 0,
        top_k=get("num_experts_per_tok"),
        n_shared=get("n_shared_experts", None) or 0,
        moe_layers=moe_layers,
        vocab=get("vocab_size"),
        attention_bias=bool(get("attention_bias", False)),
        max_positions=get("max_position_embeddings", None),
    )


@lru_cache(maxsize=8)
def _load_dsocr(path: str) -> DsocrDims:
    lm = lm_dims_from_dsocr_config(_read_json(Path(path)))
    return DsocrDims(sam=DSOCR_SAM, clip=DSOCR_CLIP, projector=DSOCR_PROJECTOR, lm=lm)


def load_dsocr_dims(model_path: str | Path | None = None) -> DsocrDims:
    """dsocr sizes: LM from ``model_path``/config.json (or the built-in data copy), vision from constants."""
    if model_path is None:
        return _default_dims("dsocr")  # type: ignore[return-value]
    else:
        path = Path(model_path).expanduser()
        if path.is_dir():
            path = path / "config.json"
    if not path.is_file():
        raise FileNotFoundError(f"dsocr config: {path} does not exist (pass the vendor model directory)")
    return _load_dsocr(str(path.resolve()))


@lru_cache(maxsize=8)
def _load_ocr2(path: str) -> Ocr2Dims:
    return ocr2_dims_from_config(_read_json(Path(path)))


def ocr2_dims_from_config(cfg: Mapping[str, Any]) -> Ocr2Dims:
    """ocr2 sizes from a configuration dict (``config.json``'s content, or a built model's
    ``config.to_dict()``): no file in between."""
    sam_cfg = cfg["vision_config"]["sam_config"]
    enc = cfg["vision_config"]["encoder_config"]
    text = cfg["text_config"]
    sam = SamDims(
        img_size=sam_cfg["image_size"],
        patch=sam_cfg["patch_size"],
        in_chans=sam_cfg.get("num_channels", 3),
        dim=sam_cfg["hidden_size"],
        depth=sam_cfg["num_hidden_layers"],
        heads=sam_cfg["num_attention_heads"],
        mlp_dim=int(sam_cfg["hidden_size"] * sam_cfg.get("mlp_ratio", 4.0)),
        window=sam_cfg["window_size"],
        global_blocks=tuple(sam_cfg["global_attn_indexes"]),
        neck_channels=sam_cfg["output_channels"],
        downsample_channels=tuple(sam_cfg["downsample_channels"]),  # type: ignore[arg-type]
        qkv_bias=sam_cfg.get("qkv_bias", True),
        rel_pos_always_interpolates=True,
        neck_norm="native",
        rel_bias_copy="dense",
        rel_pos_interp_fp32=False,
    )
    encoder = EncoderDims(
        hidden=enc["hidden_size"],
        layers=enc["num_hidden_layers"],
        heads=enc["num_attention_heads"],
        kv_heads=enc["num_key_value_heads"],
        head_dim=enc.get("head_dim") or enc["hidden_size"] // enc["num_attention_heads"],
        intermediate=enc["intermediate_size"],
    )
    t_heads = text["num_attention_heads"]
    lm = LMDims(
        hidden=text["hidden_size"],
        layers=text["num_hidden_layers"],
        heads=t_heads,
        kv_heads=text.get("num_key_value_heads", t_heads),
        head_dim=text.get("head_dim") or text["hidden_size"] // t_heads,
        intermediate=text["intermediate_size"],
        moe_intermediate=text["moe_intermediate_size"],
        n_routed=text["n_routed_experts"],
        top_k=text["num_experts_per_tok"],
        n_shared=text["n_shared_experts"],
        moe_layers=tuple(t == "sparse" for t in text["mlp_layer_types"]),
        vocab=text["vocab_size"],
        attention_bias=bool(text.get("attention_bias", False)),
        max_positions=text.get("max_position_embeddings"),
    )
    projector = ProjectorDims(in_features=encoder.hidden, out_features=lm.hidden, bias=True)
    return Ocr2Dims(sam=sam, encoder=encoder, projector=projector, lm=lm)


def load_ocr2_dims(path: str | Path | None = None) -> Ocr2Dims:
    """ocr2 sizes from ``path`` (default ``harness/data/ocr2_config.json``)."""
    if path is None:
        return _default_dims("ocr2")  # type: ignore[return-value]
    p = Path(path).expanduser()
    if p.is_dir():
        p = p / "config.json"
    return _load_ocr2(str(p.resolve()))


@lru_cache(maxsize=2)
def _default_dims(target: str) -> "ModelDims":
    """The built-in data copies, read once per process."""
    if target == "dsocr":
        return _load_dsocr(str((DATA_DIR / "dsocr_config.json").resolve()))
    return _load_ocr2(str((DATA_DIR / "ocr2_config.json").resolve()))


def load_dims(target: str, config: "ModelDims | str | Path | None" = None) -> ModelDims:
    """Sizes for ``target``: a dims object as is, a path (dsocr model dir / ocr2 config), or the default."""
    target_facts(target)        # an unknown target is a ValueError naming the known ones
    if isinstance(config, (DsocrDims, Ocr2Dims)):
        expected = DsocrDims if target == "dsocr" else Ocr2Dims
        if not isinstance(config, expected):
            raise TypeError(f"config for {target!r} must be {expected.__name__}, got {type(config).__name__}")
        return config
    return load_dsocr_dims(config) if target == "dsocr" else load_ocr2_dims(config)
