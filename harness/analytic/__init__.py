"""The analytic FLOP model: building-block formulas and the stage models composed of them.

FLOPs = 2 x MACs everywhere, split by op key (:data:`OP_CLASS`: "matmul" keys are compared
exactly with counters, "elementwise" keys follow :data:`ELEMENTWISE_FLOPS`); bytes follow
:data:`BYTES_CONVENTION` at ``dtype_bytes`` (bf16 = 2 by default).
"""

from harness.analytic.config import (
    DsocrDims,
    EncoderDims,
    LMDims,
    Ocr2Dims,
    load_dims,
    load_dsocr_dims,
    load_ocr2_dims,
)
from harness.analytic.constants import DSOCR_CLIP, DSOCR_PROJECTOR, DSOCR_SAM, ClipDims, ProjectorDims, SamDims
from harness.analytic.cost import (
    BYTE_KEYS,
    BYTES_CONVENTION,
    DATA_KEYS,
    FUSED_CONVENTION,
    Traffic,
    DEFAULT_DTYPE_BYTES,
    ELEMENTWISE_FLOPS,
    ELEMENTWISE_KEYS,
    MATMUL_KEYS,
    OP_CLASS,
    Cost,
)
from harness.analytic.stages import (
    TARGET_STAGES,
    clip_view,
    decode_cost,
    dsocr_view_costs,
    encoder_view,
    experts_model,
    lm_forward,
    ocr2_view_costs,
    prefill_cost,
    projector_view,
    request_cost,
    sam_view,
    stage_costs,
)
from harness.analytic.table import LETTER_PAGE, TableRow, analytic_table, format_table

__all__ = [
    "BYTES_CONVENTION", "DEFAULT_DTYPE_BYTES", "ELEMENTWISE_FLOPS", "ELEMENTWISE_KEYS", "MATMUL_KEYS", "OP_CLASS",
    "Cost", "Traffic", "BYTE_KEYS", "DATA_KEYS", "FUSED_CONVENTION",
    "SamDims", "ClipDims", "ProjectorDims", "DSOCR_SAM", "DSOCR_CLIP", "DSOCR_PROJECTOR",
    "LMDims", "EncoderDims", "DsocrDims", "Ocr2Dims", "load_dims", "load_dsocr_dims", "load_ocr2_dims",
    "TARGET_STAGES", "sam_view", "clip_view", "projector_view", "encoder_view", "dsocr_view_costs",
    "ocr2_view_costs", "lm_forward", "prefill_cost", "decode_cost", "stage_costs", "request_cost", "experts_model",
    "LETTER_PAGE", "TableRow", "analytic_table", "format_table",
]
