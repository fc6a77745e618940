"""``harness report --batch``: the serving section (with --gpu) and timing at a batch (with --measure),
end to end on CPU: ``--measure --batch 4 --device cpu --small`` runs here, in CI."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from harness.cli import main


def _run(argv: list[str], engine=None) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(argv, stdout=out, stderr=err, engine=engine)
    return code, out.getvalue(), err.getvalue()


#: The report below counts the default pages in Small with the session engine: under xdist it runs
#: where those counts are measured (the root conftest's scheduler).
@pytest.mark.measures("ocr2", "small", "letter", "a4", "slide", "small", "strip-h")
def test_measure_batch_on_cpu_small_with_the_serving_table(tmp_path: Path, engine) -> None:
    out = tmp_path / "r"
    code, stdout, err = _run(["report", "--page-set", "default", "--modes", "small", "--counters", "torch:patched",
                              "--measure", "--batch", "4", "--device", "cpu", "--small", "--warmup", "1",
                              "--repeats", "2", "--gpu", "A100 SXM4 40GB", "--new-tokens", "64", "-q",
                              "--out", str(out)], engine)
    assert code == 0, err
    doc = json.loads((out / "report.json").read_text())
    perf = doc["performance"]
    # --measure --batch 4: every stage timed at batch 4, held to the batched analytic cost
    measured = perf["measured"]
    assert [m["stage"] for m in measured] == ["sam", "encoder", "projector", "prefill", "decode"]
    assert all(m["batch"] == 4 and m["timing"]["median_s"] > 0 for m in measured)
    from harness.gpu.serving import batched_decode
    from harness.gpu.profile import analytic_config
    from harness.targets import get_target

    import torch

    small = analytic_config(get_target("ocr2").build("meta", torch.float32, small=True), None)
    decode = next(m for m in measured if m["stage"] == "decode")
    assert decode["matmul_flops"] == batched_decode("ocr2", decode["decode_context"], 4, config=small,
                                                    dtype_bytes=4).matmul_flops
    # --gpu --batch 4: the serving table at batch 4 and at the largest batch that fits, on stdout and in report.md
    (mode,) = perf["serving"]
    assert mode["mode"] == "small" and mode["kv_bytes_per_token"] == 61_440
    vendor = [r for r in mode["rows"] if r["execution"] == "vendor"]
    cap = mode["capacity"]["vendor"]["max_concurrency"]
    assert [r["batch"] for r in vendor] == [4, cap] and cap > 4
    four = vendor[0]
    assert four["output_tokens_per_s"] == pytest.approx(4 * 64 / four["time_per_batch_s"])
    md = (out / "report.md").read_text()
    for text in ("## Serving on A100 SXM4 40GB", "max concurrency", "pages/day", f"{cap} (max fit)"):
        assert text in md
        assert text.replace("## ", "# ") in stdout
    assert (out / "serving_ocr2.png").stat().st_size > 0 and (out / "request_vs_tokens_ocr2.png").stat().st_size > 0


@pytest.mark.parametrize("argv, message", [
    (["--batch", "4"], "--batch needs --gpu NAME"),
    (["--batch", "0,4", "--gpu", "A100 SXM4 40GB"], "--batch '0,4': expected comma-separated positive integers"),
])
def test_batch_input_errors(tmp_path: Path, argv: list[str], message: str) -> None:
    code, _, err = _run(["report", *argv, "--out", str(tmp_path / "never")])
    assert code == 2 and message in err
    assert not (tmp_path / "never").exists()
