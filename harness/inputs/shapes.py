"""The shape key: what a stage's count depends on besides the target and its configuration.

Pages that share a shape key share every count, so the engine measures a key once and the goldens
hold one file per key:

* vision stages (``sam``, ``clip``/``encoder``, ``projector``): the view batches, in execution
  order, as ``(role, batch, size, tokens_per_view)``; named like ``g1024+6x768``;
* ``prefill``: the prefill length L (BOS + prompt text + image placeholders), named ``L1131``;
* ``decode``: the decode context T (default: L), named ``T1131``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from harness.inputs.targets import VISION_STAGES

if TYPE_CHECKING:  # pragma: no cover
    from harness.inputs.workload import ViewLayout

__all__ = ["VISION_STAGES", "shape_key", "key_name", "shape_record"]



def shape_key(stage: str, layout: "ViewLayout", *, text_tokens: int, decode_context: int | None = None) -> tuple:
    """What a stage's count depends on, besides the target and its configuration."""
    from harness.inputs.workload import prefill_length

    if stage in VISION_STAGES:
        return ("views",) + tuple((v.role, v.batch, v.size, v.tokens_per_view) for v in layout.views)
    length = prefill_length(layout, text_tokens)
    if stage == "prefill":
        return ("L", length)
    if stage == "decode":
        return ("T", length if decode_context is None else decode_context)
    raise ValueError(f"shape_key: unknown stage {stage!r}")


def key_name(key: tuple) -> str:
    """A shape key's short, file-name-safe name: ``g1024+6x768``, ``6x640+g1024``, ``L913``, ``T913``."""
    kind = key[0]
    if kind == "views":
        parts = []
        for role, batch, size, _tokens in key[1:]:
            if role == "global":
                parts.append(f"g{size}" if batch == 1 else f"{batch}xg{size}")
            else:
                parts.append(f"{batch}x{size}")
        return "+".join(parts)
    if kind in ("L", "T"):
        return f"{kind}{key[1]}"
    raise ValueError(f"key_name: unknown shape key {key!r}")


def shape_record(key: tuple) -> dict[str, Any]:
    """The shape a key stands for, as stored in its count golden."""
    if key[0] == "views":
        return {"views": [{"role": r, "batch": b, "size": s, "tokens_per_view": t} for r, b, s, t in key[1:]]}
    if key[0] == "L":
        return {"prefill_length": key[1]}
    if key[0] == "T":
        return {"decode_context": key[1]}
    raise ValueError(f"shape_record: unknown shape key {key!r}")
