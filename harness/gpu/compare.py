"""One stage counted on a CUDA build and on a meta build, held against the analytic model.

The GPU suite's question: does FlopCounterMode on the vendor's own execution (CUDA, bf16, its
attention kernels) agree with the meta/CPU count the rest of the harness trusts, op key by op
key? The raw op names may legitimately differ by device (a fused SDPA op on CUDA, two ``bmm`` on
meta); :meth:`CountComparison.raw_only` lists those differences for the report and the goldens.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.verify import Verdict, device_verdict, matmul_by_key

__all__ = ["CountComparison", "matmul_by_key", "compare_stage_counts"]


@dataclass
class CountComparison:
    """A stage's torch counts on CUDA and on meta, and its analytic cost."""

    stage: str
    cuda: Any       # harness.measure.StageCount
    meta: Any       # harness.measure.StageCount
    analytic: Any   # harness.analytic.Cost

    @property
    def cuda_matmul(self) -> dict[str, int]:
        return matmul_by_key(self.cuda.by_key)

    @property
    def meta_matmul(self) -> dict[str, int]:
        return matmul_by_key(self.meta.by_key)

    @property
    def analytic_matmul(self) -> dict[str, int]:
        return matmul_by_key(self.analytic.flops)

    def raw_only(self) -> dict[str, dict[str, int]]:
        """Raw ops seen on one device only: ``{"cuda": {...}, "meta": {...}}`` (op -> FLOPs)."""
        cuda, meta = dict(self.cuda.by_op), dict(self.meta.by_op)
        return {"cuda": {op: v for op, v in sorted(cuda.items()) if op not in meta},
                "meta": {op: v for op, v in sorted(meta.items()) if op not in cuda}}

    def verdict(self) -> Verdict:
        """:func:`harness.verify.device_verdict`: verified when CUDA == meta == analytic by matmul key
        and nothing ran uncounted on CUDA."""
        return device_verdict(self.cuda, self.meta, self.analytic, self.raw_only())

    def problems(self) -> list[str]:
        """The verdict's failure messages (empty: verified)."""
        return list(self.verdict().problems)

    def as_record(self) -> dict[str, Any]:
        return {"cuda_by_op": dict(self.cuda.by_op), "meta_by_op": dict(self.meta.by_op),
                "cuda_matmul": self.cuda_matmul, "meta_matmul": self.meta_matmul,
                "analytic_matmul": self.analytic_matmul, "raw_only": self.raw_only(),
                "cuda_unknown_ops": dict(self.cuda.unknown_ops), "cuda_devices": list(self.cuda.devices),
                "meta_devices": list(self.meta.devices)}


def compare_stage_counts(stage: str, cuda_run: tuple, meta_run: tuple, *,
                         model_path: Any = None) -> CountComparison:
    """Count ``stage`` with the torch counter on both builds; ``*_run`` = (target, built, inputs).

    The analytic cost is for the CUDA build's layout, dtype bytes and attention implementation.
    """
    import torch

    from harness.analytic import stage_costs
    from harness.measure import count
    from harness.gpu.profile import analytic_config

    target, built, inputs = cuda_run
    mtarget, mbuilt, minputs = meta_run
    cuda = count("torch", target.stage_calls(built, inputs, stage), target=target.name, stage=stage)
    meta = count("torch", mtarget.stage_calls(mbuilt, minputs, stage), target=mtarget.name, stage=stage)
    itemsize = torch.empty((), dtype=built.dtype).element_size()
    analytic = stage_costs(target.name, inputs.layout, text_tokens=inputs.prompt_tokens, dtype_bytes=itemsize,
                           config=analytic_config(built, model_path),
                           attn_implementation=built.attn_implementation)[stage]
    return CountComparison(stage, cuda, meta, analytic)


@contextmanager
def count_record(device: Any, target: str, mode: str, page: str, out_dir: Any = None) -> Iterator[dict[str, Any]]:
    """Collect raw per-op counts of each stage on this device class; written as JSON on exit.

    The file, ``counts-<target>-<mode>-<page>-<device class>.json`` under ``out_dir`` (default
    :func:`harness.gpu.profile.gpu_out_dir`), keeps the per-op tables that legitimately differ
    by device (one fused SDPA op on CUDA vs two bmm on meta) next to the device they came from.
    """
    import torch

    from harness.gpu.device import device_class, format_device_class
    from harness.gpu.peaks import device_name
    from harness.gpu.profile import gpu_out_dir

    record: dict[str, Any] = {"device": device_name(device), "device_class": format_device_class(device_class(device)),
                              "torch": torch.__version__, "target": target, "mode": mode, "page": page, "stages": {}}
    yield record
    directory = Path(out_dir) if out_dir is not None else gpu_out_dir()
    path = directory / f"counts-{target}-{mode}-{page}-{record['device_class']}.json"
    path.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
