"""One verdict for one count fact, as the suite (``test_count``) and ``harness report`` ask for it.

:func:`fact` takes the engine that measured the fact (:class:`harness.run.engine.Engine`: its
layouts, builds and analytic costs) and returns the fact's :class:`~harness.verify.verdict.Verdict`:
:func:`~harness.verify.flops.flop_verdict` for a FLOP counter, :func:`~harness.verify.bytes.bytes_verdict`
for the byte counter.
"""

from __future__ import annotations

from typing import Any

from .verdict import Verdict

__all__ = ["fact", "byte_inputs"]


def byte_inputs(engine: Any, case: Any) -> dict[str, Any]:
    """What a byte verdict of ``case`` is computed from, on ``engine``'s byte build (bf16 on its
    device): the layout, the analytic op-level cost of the build's experts byte model, the model
    dimensions that size the named causes, the experts model and the dtype bytes."""
    from harness.analytic import experts_model
    from harness.analytic.config import load_dims
    from harness.run.engine import BYTES_DTYPE

    built = engine.built_model(case.target, BYTES_DTYPE)
    return {"layout": engine.layout(case.target, case.mode, case.page), "cost": engine.byte_cost(case),
            "dims": load_dims(case.target, engine.config_path(case.target)), "experts": experts_model(case.target, built.experts_implementation),
            "dtype_bytes": built.dtype.itemsize}


def fact(engine: Any, case: Any, measured: Any, bands: Any = None, *, name: str | None = None) -> Verdict:
    """The verdict of ``case`` (target, mode, page, stage, counter) measured as ``measured`` on
    ``engine``: the analytic model against the count (FLOPs: within the ``verify`` band of
    ``bands`` after the named causes, torch exact by op key; bytes: key by key, every difference a
    named, sized cause). ``name`` names the fact in failure messages (default ``case.id``)."""
    from harness.run.engine import BYTES

    if case.counter == BYTES:
        from .bytes import bytes_verdict

        inputs = byte_inputs(engine, case)
        return bytes_verdict(case.target, case.stage, inputs["layout"], inputs["cost"], measured,
                             dims=inputs["dims"], experts=inputs["experts"], dtype_bytes=inputs["dtype_bytes"])
    from .flops import flop_verdict

    return flop_verdict(name or case.id, case.counter, case.stage, engine.analytic(case), measured, bands)
