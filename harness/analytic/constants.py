"""Sizes the vendor DeepSeek-OCR hard-codes in Python (not in config.json), in one named place.

Read from the vendor's ``deepencoder.py`` (``build_sam_vit_b``/``_build_sam``, ``vit_model_cfg``/
``build_clip_l``) and ``modeling_deepseekocr.py`` (``MlpProjector(projector_type="linear",
input_dim=2048, n_embed=1280)``); spec sections 1a, 1c-1e. The model code ignores the vision and
projector fields of config.json, so these are not read from it.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["SamDims", "ClipDims", "ProjectorDims", "DSOCR_SAM", "DSOCR_CLIP", "DSOCR_PROJECTOR"]


@dataclass(frozen=True)
class SamDims:
    """SAM ViT-B image encoder sizes (patch embed, blocks, neck, downsample convs)."""

    img_size: int = 1024                 # built size: abs pos-embed is (img_size/patch)^2
    patch: int = 16
    in_chans: int = 3
    dim: int = 768
    depth: int = 12
    heads: int = 12
    mlp_dim: int = 3072
    window: int = 14
    global_blocks: tuple[int, ...] = (2, 5, 8, 11)
    neck_channels: int = 256
    downsample_channels: tuple[int, int] = (512, 1024)
    qkv_bias: bool = True
    #: transformers' OCR-2 SAM calls F.interpolate on every rel-pos table, the vendor only on a
    #: length mismatch (element-wise only; no matmul-class effect).
    rel_pos_always_interpolates: bool = False
    #: Byte-level implementation facts (no FLOP effect). The vendor's neck LayerNorm2d is written
    #: out in Python (mean, sub, pow, mean, sub, +eps, sqrt, div, *w, +b at dtype); transformers'
    #: OCR-2 calls native layer_norm. The vendor copies the two rel-pos factors (rel_h, rel_w)
    #: before the broadcast add; transformers copies the dense (T x T) bias after it.
    neck_norm: str = "python"           # "python" | "native"
    rel_bias_copy: str = "factors"      # "factors" | "dense"
    #: The vendor resizes a rel-pos table in fp32 (cast up, F.interpolate, cast back); transformers in dtype.
    rel_pos_interp_fp32: bool = True

    @property
    def head_dim(self) -> int:
        """Per-head width: dim / heads."""
        return self.dim // self.heads

    @property
    def pos_grid(self) -> int:
        """Side of the learned abs pos-embed grid (64)."""
        return self.img_size // self.patch

    @property
    def out_channels(self) -> int:
        """Channels of the SAM output (last downsample conv)."""
        return self.downsample_channels[-1]


@dataclass(frozen=True)
class ClipDims:
    """CLIP-L sizes as DeepSeek-OCR builds it (``vit_model_cfg``): fed SAM features, CLS kept."""

    layers: int = 24
    dim: int = 1024
    heads: int = 16
    ffn: int = 4096
    pos_grid: int = 16                   # image_size 224 / patch 14: 16x16 (+ CLS) = 257 positions
    activation: str = "quick_gelu"

    @property
    def head_dim(self) -> int:
        """Per-head width: dim / heads."""
        return self.dim // self.heads


@dataclass(frozen=True)
class ProjectorDims:
    """The projector: one nn.Linear(in_features -> out_features)."""

    in_features: int
    out_features: int
    bias: bool = True


#: deepencoder.build_sam_vit_b: 768 wide, 12 blocks, 12 heads, window 14, global [2, 5, 8, 11],
#: neck 256, net_2 256->512, net_3 512->1024.
DSOCR_SAM = SamDims()
#: deepencoder.vit_model_cfg: 24 layers, 1024 wide, 16 heads, FFN 4096, quick_gelu.
DSOCR_CLIP = ClipDims()
#: modeling_deepseekocr: MlpProjector(projector_type="linear", input_dim=2048, n_embed=1280).
DSOCR_PROJECTOR = ProjectorDims(in_features=2048, out_features=1280, bias=True)
