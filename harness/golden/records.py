"""What a golden stores: a page's layout record, a count entry, and the environment that made it."""

from __future__ import annotations

import functools
import importlib.metadata as md
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from harness.inputs.workload import ViewLayout

__all__ = ["layout_record", "entry_record", "built_environment", "environment_versions"]


@functools.lru_cache(maxsize=None)
def _versions() -> tuple[tuple[str, Any], ...]:
    import harness

    env: dict[str, Any] = {"harness": harness.__version__}
    for name, dist in (("torch", "torch"), ("transformers", "transformers"),
                       ("fvcore", "fvcore"), ("thop", "ultralytics-thop")):
        try:
            env[name] = md.version(dist)
        except md.PackageNotFoundError:
            env[name] = None
    return tuple(sorted(env.items()))


def environment_versions() -> dict[str, Any]:
    """Versions that make a count: harness, torch, transformers, fvcore, thop."""
    return dict(_versions())


def layout_record(layout: "ViewLayout", *, text_tokens: int) -> dict[str, Any]:
    """The page's layout as stored in its golden: views, grid, tokens."""
    from harness.inputs.workload import prefill_length

    return {
        "width": layout.width, "height": layout.height,
        "global_size": layout.global_size, "crop_grid": list(layout.crop_grid),
        "n_crops": layout.n_crops, "crop_size": layout.crop_size,
        "views": [{"role": v.role, "batch": v.batch, "size": v.size, "tokens_per_view": v.tokens_per_view}
                  for v in layout.views],
        "image_tokens": layout.image_tokens, "valid_tokens": layout.valid_tokens,
        "text_tokens": text_tokens, "prefill_length": prefill_length(layout, text_tokens),
    }


def entry_record(count: Any) -> dict[str, Any]:
    """One golden entry from a StageCount: raw, convention, FLOPs, per-op and per-key breakdowns,
    unknown and ignored ops (``version`` is information, never compared)."""
    return {
        "raw": count.raw, "convention": count.convention, "flops": count.flops,
        "by_op": dict(count.by_op), "by_key": dict(count.by_key),
        "unknown_ops": dict(count.unknown_ops), "ignored_ops": dict(count.ignored_ops),
        "variant": count.variant, "version": count.version,
    }


def built_environment(built: Any) -> dict[str, Any]:
    """What made a built model's counts, beyond the package versions: device, dtype, implementations,
    weights (the suite's golden ``environment`` and the report's per-target environment)."""
    return {
        "device": built.device,
        "stage_devices": dict(built.stage_devices),
        "dtype": str(built.dtype).replace("torch.", ""),
        "attn_implementation": built.attn_implementation,
        "experts_implementation": built.experts_implementation,
        "weights": built.weights,
    }
