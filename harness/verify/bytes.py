"""The byte fact's verdict: the analytic op-level bytes against the byte counter, key by key.

Owns what decides it: the named, sized causes of a measured-minus-analytic difference
(:data:`BYTE_CAUSES`, the routing of a loop over experts), the rows of the comparison
(:class:`BytesRow`, :func:`compare_bytes`), the band the stage total's unexplained part must keep
(:data:`UNEXPLAINED_BAND`), the verdict (:func:`bytes_verdict`) and its tables. The measuring is
:mod:`harness.measure.bytes`'s.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

from harness.analytic.cost import OP_CLASS
from harness.measure.bytes import BYTE_KEYS, DATA_KEYS, ByteCount
from harness.measure.keys import UNMAPPED

from .verdict import Verdict

__all__ = [
    "UNEXPLAINED_BAND", "BYTE_CAUSES", "BytesRow", "BytesVerdict", "named_byte_causes", "stage_tokens",
    "routing_cause", "compare_bytes", "bytes_verdict", "bytes_table", "format_bytes_table",
]


#: The unexplained remainder a stage may keep, as a fraction of its measured bytes.
UNEXPLAINED_BAND = 1e-3


def _ocr2_encoder_cat(layout: Any, dims: Any, b: int) -> dict[str, int]:
    from harness.analytic.stages import encoder_inputs_cat, sam_output_grid

    total: dict[str, int] = {}
    for view in layout.views:
        s = sam_output_grid(dims.sam, view.size)
        for key, t in encoder_inputs_cat(dims.encoder, s * s, view.batch, dtype_bytes=b).bytes_by_key.items():
            total[key] = total.get(key, 0) - t.total
    return total


def _prefill_embedding(layout: Any, dims: Any, b: int) -> dict[str, int]:
    from harness.analytic.formulas import embedding
    from harness.inputs.workload import prefill_length

    return {k: -t.total for k, t in embedding(prefill_length(layout), dims.lm.hidden, dtype_bytes=b).bytes_by_key.items()}


def _dsocr_image_check(layout: Any, dims: Any, b: int) -> dict[str, int]:
    size = layout.workload.image_size  # torch.sum(images[0][1]): the (1, 3, image_size, image_size) view, to a scalar
    return {"other_elementwise": 3 * size * size * b + b}


def _dsocr_projector_concat(layout: Any, dims: Any, b: int) -> dict[str, int]:
    from harness.analytic.stages import sam_output_grid

    total = 0
    for view in layout.views:
        s = sam_output_grid(dims.sam, view.size)
        total -= 2 * view.batch * s * s * dims.projector.in_features * b
    return {"cat": total}


#: (target, stage) -> [(cause, sizing function(layout, dims, dtype_bytes) -> {key: signed bytes})]:
#: work the stage's StageCalls run and the analytic model does not (positive), or the other way
#: round (negative: it runs upstream of them in the harness). Each is sized from the shapes, by
#: the analytic model's own formula where one exists, never from the measurement.
BYTE_CAUSES: dict[tuple[str, str], list[tuple[str, Callable[[Any, Any, int], dict[str, int]]]]] = {
    ("ocr2", "encoder"): [("cat(SAM tokens, learned queries) runs in the vision tower before the encoder "
                           "StageCall (its input is the concatenation)", _ocr2_encoder_cat)],
    ("dsocr", "projector"): [("the concat of CLIP and SAM features runs before the projector StageCall "
                              "(its input is the concatenation)", _dsocr_projector_concat)],
    ("dsocr", "prefill"): [("the token-embedding lookup runs before the prefill StageCall (inputs_embeds "
                            "are given)", _prefill_embedding),
                           ("the vendor forward sums the (text-only, zero) global image to decide whether "
                            "to run vision: the StageCall's dummy image_size view is read", _dsocr_image_check)],
    ("ocr2", "prefill"): [("the token-embedding lookup runs before the prefill StageCall (inputs_embeds "
                           "are given, with the image features already scattered in)", _prefill_embedding)],
}


def named_byte_causes(target: str, stage: str, layout: Any, dims: Any, dtype_bytes: int) -> list[tuple[str, dict[str, int]]]:
    """The named, sized causes of measured-minus-analytic differences for one stage, by key."""
    return [(text, fn(layout, dims, dtype_bytes)) for text, fn in BYTE_CAUSES.get((target, stage), [])]


def stage_tokens(stage: str, layout: Any) -> int:
    """Tokens one LM forward of ``stage`` runs (prefill: the prompt length; decode: 1)."""
    from harness.inputs.workload import prefill_length

    return prefill_length(layout) if stage == "prefill" else 1


def routing_cause(lm: Any, tokens: int, experts_called: int, dtype_bytes: int) -> tuple[str, dict[str, int]]:
    """The expert weights a routing-dependent loop did not read: the analytic ``loop`` model reads
    min(E, tokens*top_k) experts per MoE layer; the run called ``experts_called`` expert modules in all.
    The count of experts hit is the only measured input (FLOPs never depend on it)."""
    assumed = lm.n_moe_layers * min(lm.n_routed, tokens * lm.top_k)
    per_expert = 3 * lm.hidden * lm.moe_intermediate * dtype_bytes
    text = (f"routing: the loop model assumes min(E, T*k) = {assumed // max(lm.n_moe_layers, 1)} experts hit per "
            f"MoE layer ({assumed} in all); this run hit {experts_called} (the build's routing: balanced "
            f"on meta, the seeded random weights' on a real device); "
            f"each expert's gate/up/down weights are {per_expert:,} bytes")
    return text, {"experts": -(assumed - experts_called) * per_expert}


@dataclass(frozen=True)
class BytesRow:
    """One key (or ``total``) of one stage: analytic (op-level), measured, fused, the difference.

    ``difference`` = measured - analytic; ``named`` = the part of it the named causes size
    (``cause``); ``unexplained`` = difference - named. Bytes are weight + read + write.
    """

    stage: str
    key: str
    key_class: str        # "matmul" | "elementwise" | "data" | "total"
    analytic: int
    measured: int
    fused: int
    difference: int
    named: int
    unexplained: int
    cause: str

    @property
    def exact(self) -> bool:
        return self.difference == 0


def _key_class(key: str) -> str:
    if key in DATA_KEYS:
        return "data"
    return OP_CLASS.get(key, "matmul" if key == UNMAPPED else "data")


def compare_bytes(stage: str, analytic: Any, measured: ByteCount,
                  causes: Sequence[tuple[str, Mapping[str, int]]] = ()) -> list[BytesRow]:
    """Rows per byte key (then a ``total`` row) comparing an analytic Cost with a ByteCount.

    ``causes``: (text, {key: signed bytes the cause adds to measured - analytic}).
    """
    named: dict[str, int] = {}
    why: dict[str, list[str]] = {}
    for text, by_key in causes:
        for key, n in by_key.items():
            named[key] = named.get(key, 0) + n
            why.setdefault(key, []).append(text)
    keys = sorted(set(analytic.bytes_by_key) | set(measured.by_key) | set(named),
                  key=lambda k: (BYTE_KEYS.index(k) if k in BYTE_KEYS else len(BYTE_KEYS), k))
    rows = []
    for key in keys:
        a = analytic.key_bytes(key)
        m = measured.key_bytes(key)
        f = analytic.key_bytes(key, fused=True)
        n = named.get(key, 0)
        rows.append(BytesRow(stage, key, _key_class(key), a, m, f, m - a, n, m - a - n, "; ".join(why.get(key, []))))
    a, m = analytic.total_bytes, measured.total_bytes
    n = sum(named.values())
    rows.append(BytesRow(stage, "total", "total", a, m, analytic.fused_bytes, m - a, n, m - a - n,
                         "; ".join(sorted({c for cs in why.values() for c in cs}))))
    return rows


@dataclass(frozen=True)
class BytesVerdict(Verdict):
    """A byte fact's verdict: ``rows`` are :class:`BytesRow` (each key, then the stage ``total``)."""

    @property
    def total(self) -> BytesRow:
        return self.rows[-1]


def bytes_verdict(target: str, stage: str, layout: Any, cost: Any, measured: ByteCount, *, dims: Any,
                  experts: str, dtype_bytes: int = 2) -> BytesVerdict:
    """The byte counter's verdict on one stage: every key equal to the analytic op-level bytes
    (``cost``, of the ``experts`` byte model), or its difference sized exactly by a named cause
    (matmul-class keys: only a loop's routing, whose experts hit is the one measured input); the
    stage total's unexplained part within :data:`UNEXPLAINED_BAND` of the measured bytes."""
    causes = named_byte_causes(target, stage, layout, dims, dtype_bytes)
    if measured.experts_called and experts == "loop":
        causes.append(routing_cause(dims.lm, stage_tokens(stage, layout), measured.experts_called, dtype_bytes))
    rows = compare_bytes(stage, cost, measured, causes)
    total = rows[-1]
    # a matmul-class key may differ only by what a named cause sizes: the vendor's routed experts
    # loop reads the experts the routing hit (measured), where the model assumes min(E, T*k)
    bad = [r for r in rows if r.key != "total" and r.unexplained]
    if not bad and abs(total.unexplained) <= UNEXPLAINED_BAND * max(total.measured, 1):
        return BytesVerdict(tuple(rows))
    return BytesVerdict(tuple(rows), (
        f"bytes {target} {stage}: the analytic op-level bytes differ from the byte counter's "
        "(matmul-class keys must be exact; every other difference must be a named, sized cause):\n"
        + format_bytes_table(rows),))


def bytes_table(target: str, mode: str, page: Any = (1700, 2200), *, built: Any = None,
                stages: Sequence[str] | None = None, dtype: Any = None,
                model_path: str | None = None) -> list[BytesRow]:
    """Analytic (op-level), measured (the byte counter, on meta), fused and the difference, by stage and key.

    ``page``: anything a target's ``prepare`` takes (a (width, height) size, a path, a Page).
    The model is built on meta in bf16 (``dtype``) unless ``built`` is given (dsocr: from the vendor
    directory ``model_path``, every stage on meta). The analytic model is asked for the same experts
    implementation the build runs. Rows of :func:`bytes_verdict`, stage after stage.
    """
    import torch

    from harness.analytic import experts_model, stage_costs
    from harness.analytic.config import load_dims
    from harness.measure.bytes import count_bytes
    from harness.targets import get_target

    tgt = get_target(target, model_path=model_path, trust_remote_code=model_path is not None)
    dtype = dtype or torch.bfloat16
    if built is None:
        built = tgt.build("meta", dtype)
    inputs = tgt.prepare(page, mode, device="meta", dtype=built.dtype)
    b = torch.empty((), dtype=built.dtype).element_size()
    experts = experts_model(target, built.experts_implementation)
    costs = stage_costs(target, inputs.layout, dtype_bytes=b, attn_implementation=built.attn_implementation,
                        experts_implementation=experts, config=model_path)
    dims = load_dims(target, model_path)
    rows: list[BytesRow] = []
    for stage in stages or tgt.stages:
        measured = count_bytes(tgt.stage_calls(built, inputs, stage), target=target, stage=stage)
        rows.extend(bytes_verdict(target, stage, inputs.layout, costs[stage], measured, dims=dims,
                                  experts=experts, dtype_bytes=b).rows)
    return rows


def format_bytes_table(rows: Sequence[BytesRow], *, keys: bool = True) -> str:
    """Fixed-width text (MB) of :func:`bytes_table` rows; ``keys=False``: the stage totals only."""
    head = (f"{'stage':<10} {'key':<18} {'analytic MB':>14} {'measured MB':>14} {'fused MB':>12} "
            f"{'diff bytes':>14} {'unexplained':>12}  cause")
    lines = [head, "-" * len(head)]
    for r in rows:
        if not keys and r.key != "total":
            continue
        if keys and r.key != "total" and r.difference == 0 and r.named == 0:
            continue
        lines.append(f"{r.stage:<10} {r.key:<18} {r.analytic / 1e6:>14.3f} {r.measured / 1e6:>14.3f} "
                     f"{r.fused / 1e6:>12.3f} {r.difference:>14,} {r.unexplained:>12,}  {r.cause}")
    return "\n".join(lines)
