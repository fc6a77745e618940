"""The roofline plots' labels: each sits on its own point, inside the axes, and none overlaps another
label or any point (harness.report.plots.place_labels, as roofline_plot draws them)."""

from __future__ import annotations

import pytest

from harness.analytic import stage_costs
from harness.gpu.roofline import PeakUsed
from harness.report.plots import _box_gap, _crosses, _leader, _overlap, roofline_plot
from harness.inputs.workload import MODES, compute_view_layout, get_workload


def _points(peak: PeakUsed, target: str):
    """Every stage of every mode of ``target`` on a letter page, as the report's roofline shows them."""
    points = []
    for mode in MODES[target]:
        costs = stage_costs(target, compute_view_layout(get_workload(target, mode), 1700, 2200))
        for stage, cost in costs.items():
            roof = peak.roof(cost.matmul_flops, cost.fused_bytes)
            label = f"{mode} {stage}"
            points.append((label, cost.matmul_flops / cost.fused_bytes, cost.matmul_flops / roof.predicted_s, roof.bound))
    return points


def _check(placed, points):
    assert placed, "nothing was labelled"
    for p in placed:
        frame = p["frame"]
        box = p["box"]
        assert frame[0] <= box[0] and box[2] <= frame[2] and frame[1] <= box[1] and box[3] <= frame[3], p["label"]
        own = _box_gap(box, *p["point"])
        for q in placed:
            if q is p:
                continue
            assert not _overlap(box, q["box"]), (p["label"], q["label"])
            assert not any(_overlap(box, (x - 5, y - 5, x + 5, y + 5)) for x, y in [q["point"]]), \
                f"{p['label']!r} covers {q['label']!r}'s point"
            if p["leader"]:   # away from its point: the leader line joins them and crosses no other label
                a, b = _leader(box, *p["point"])
                inner = (a[0] + (b[0] - a[0]) * 0.1, a[1] + (b[1] - a[1]) * 0.1)
                assert not _crosses(q["box"], inner, b), f"{p['label']!r}'s leader crosses {q['label']!r}"
            else:             # beside its point: nearer it than any other point
                assert _box_gap(box, *q["point"]) > own, f"{p['label']!r} is nearer {q['label']!r}'s point"
    # every point has exactly one label naming it (coinciding points share one: "a/b stage", a line per stage)
    names = [f"{first} {line.partition(' ')[2]}" for p in placed for line in p["label"].split("\n")
             for first in line.partition(" ")[0].split("/")]
    assert sorted(names) == sorted(label for label, *_ in points)


@pytest.mark.parametrize("target", ["dsocr", "ocr2"])
def test_table_roofline_labels(tmp_path, target):
    peak = PeakUsed("A100 SXM4 40GB", "bf16", 312.0, 1555.0, "test")
    points = _points(peak, target)
    placed = roofline_plot(points, peak, tmp_path / "roofline_table.png", "test")
    _check(placed, points)
    assert (tmp_path / "roofline_table.png").stat().st_size > 0


def test_measured_roofline_labels(tmp_path):
    """The measured plot: each measured point joined to its stage's point, the stage labels placed
    as in the table plot (the case that used to label a base-prefill point "small prefill")."""
    peak = PeakUsed("cpu", "fp32", 1.2, 20.0, "test", measured=True)
    points = _points(peak, "ocr2")
    measured = [(label, x, y * f) for (label, x, y, _), f in zip(points, [0.3, 0.05, 0.6, 0.2, 0.01] * 10)]
    placed = roofline_plot(points, peak, tmp_path / "roofline_measured.png", "test", measured)
    _check(placed, points)
