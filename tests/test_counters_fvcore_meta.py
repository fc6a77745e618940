"""fvcore on meta counts convolutions as on real CPU tensors (harness.measure.fvcore_counter).

Stock ``torch.jit.trace`` cannot trace ``nn.Conv2d`` on meta (pinned in test_counters_facts); the
counter's :class:`ConvTracedAsOnCpu` makes the tracer record the ``aten::_convolution`` node a CPU
trace records. Here: SAM of DeepSeek-OCR-2's small configuration on meta against the same model on
real CPU tensors, every field fvcore reports, op key by op key; the trace graphs node by node on
toy convolutions; and the mode's scope (this thread, the trace, meta tensors only).
"""

from __future__ import annotations

import threading
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from harness.measure import count
from tests.toys import Call
from harness.measure.fvcore_counter import ConvTracedAsOnCpu

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from fvcore.nn import jit_analysis

FIELDS = ("flops", "raw", "by_key", "by_op", "by_module", "unknown_ops", "ignored_ops", "unseen", "unseen_ops",
          "deviations", "uncalled_modules", "patches", "warnings", "notes")


def fields(result) -> dict:
    return {name: getattr(result, name) for name in FIELDS}


# ------------------------------------------------------------------------------- SAM, key by key
@pytest.fixture(scope="module")
def sam_calls():
    """SAM's calls for the Letter page, "small" mode (one 768 view), small configuration: on real CPU
    tensors and on meta, from one seeded build's structure."""
    pytest.importorskip("transformers.models.deepseek_ocr2")
    from harness.analytic import LETTER_PAGE
    from harness.targets import get_target

    target = get_target("ocr2")
    calls = {}
    for device in ("cpu", "meta"):
        built = target.build(device, small=True)
        inputs = target.prepare(LETTER_PAGE, "small", device=device)
        calls[device] = target.stage_calls(built, inputs, "sam")
    return calls


@pytest.mark.parametrize("variant", ["stock", "patched"])
def test_sam_on_meta_equals_sam_on_cpu_key_by_key(sam_calls, variant):
    cpu = count("fvcore", sam_calls["cpu"], variant=variant, target="ocr2", stage="sam")
    meta = count("fvcore", sam_calls["meta"], variant=variant, target="ocr2", stage="sam")
    assert cpu.devices == ("cpu",) and meta.devices == ("meta",)
    # the convolutions are there: patch embedding (16x16, stride 16) and the neck/downsample convs
    assert cpu.by_key.get("conv", 0) > 0 and cpu.by_op.get("conv", 0) == cpu.by_key["conv"]
    assert fields(meta) == fields(cpu)


# ------------------------------------------------------------------------------- graphs, node by node
def trace_nodes(module: nn.Module, x: torch.Tensor) -> list[tuple]:
    """(kind, scope, output sizes, constant inputs) of every node of fvcore's scoped trace."""
    from fvcore.nn import FlopCountAnalysis

    analysis = FlopCountAnalysis(module, (x,))
    mode = ConvTracedAsOnCpu() if x.is_meta else torch.no_grad()
    with torch.no_grad(), mode:
        graph = jit_analysis._get_scoped_trace_graph(module, (x,), analysis._aliases)
    rows = []
    for node in graph.nodes():
        outs = tuple(tuple(o.type().sizes()) if o.isCompleteTensor() else str(o.type()) for o in node.outputs())
        consts = tuple(i.toIValue() for i in node.inputs() if i.node().kind() == "prim::Constant"
                       and not i.type().kind() == "TensorType")
        rows.append((node.kind(), node.scopeName(), outs, consts))
    return rows


CONVS = {
    "conv2d": (nn.Conv2d(4, 8, 3, stride=2, padding=1), (2, 4, 17, 15)),
    "patch_embed": (nn.Conv2d(3, 16, 16, stride=16), (1, 3, 64, 64)),
    "grouped_dilated": (nn.Conv2d(8, 8, 3, padding=2, dilation=2, groups=4, bias=False), (1, 8, 9, 9)),
    "conv1d": (nn.Conv1d(4, 6, 5, padding=2), (3, 4, 20)),
    "conv3d": (nn.Conv3d(2, 4, (1, 3, 3), stride=(1, 2, 2)), (1, 2, 3, 8, 8)),
}


@pytest.mark.parametrize("name", CONVS)
def test_meta_trace_is_the_cpu_trace(name):
    conv, shape = CONVS[name]
    block = nn.Sequential(conv, nn.GELU())
    x = torch.randn(shape)
    cpu = trace_nodes(block, x)
    meta = trace_nodes(block.to("meta"), x.to("meta"))
    assert [r[0] for r in cpu].count("aten::_convolution") == 1
    assert meta == cpu


def test_functional_conv_with_keywords_on_meta():
    class Functional(nn.Module):
        def __init__(self):
            super().__init__()
            self.weight = nn.Parameter(torch.randn(6, 3, 3, 3))

        def forward(self, x):
            return F.conv2d(x, self.weight, stride=(2, 1), padding=[1])

    x = torch.randn(1, 3, 10, 12)
    cpu = count("fvcore", [Call(Functional(), (x,), {}, "f")], variant="patched", target="t", stage="s")
    meta = count("fvcore", [Call(Functional().to("meta"), (x.to("meta"),), {}, "f")], variant="patched",
                 target="t", stage="s")
    # 2 * (1 * 6 * 5 * 12 outputs) * (3 * 3 * 3) MACs each = 19,440
    assert cpu.flops == meta.flops == 2 * (6 * 5 * 12) * 27 == 19_440
    assert fields(meta) == fields(cpu)


def test_string_padding_is_not_redirected():
    """padding="same" goes to aten::_convolution_mode, which stock torch traces on meta as on CPU: it
    is left alone (fvcore has no handle for it, on either device, and says so)."""
    conv = nn.Conv2d(2, 2, 3, padding="same")
    x = torch.randn(1, 2, 6, 6)
    cpu = count("fvcore", [Call(conv, (x,), {}, "s")], variant="patched", target="t", stage="s", strict=False)
    meta = count("fvcore", [Call(conv.to("meta"), (x.to("meta"),), {}, "s")], variant="patched", target="t",
                 stage="s", strict=False)
    assert cpu.unknown_ops == {"aten::_convolution_mode": 1}
    assert fields(meta) == fields(cpu)


# ------------------------------------------------------------------------------- scope of the mode
def test_mode_redirects_nothing_outside_a_trace_nor_off_meta():
    """Outside a trace, and on CPU tensors, convolutions under the mode are torch's own calls."""
    seen = []

    class Spy(torch.overrides.TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            seen.append(getattr(func, "__name__", str(func)))
            return func(*args, **(kwargs or {}))

    x, w = torch.randn(1, 2, 5, 5), torch.randn(3, 2, 3, 3)
    with Spy(), ConvTracedAsOnCpu():
        out = F.conv2d(x, w)
        meta_out = F.conv2d(x.to("meta"), w.to("meta"))
    assert torch.equal(out, F.conv2d(x, w))
    assert meta_out.shape == out.shape and meta_out.is_meta
    assert "_convolution" not in seen               # the inner mode passed both through untouched


def test_mode_is_left_and_other_threads_never_see_it():
    """Counting on meta leaves no torch function mode behind, and a thread running beside the trace
    meets stock torch (its own meta convolution still fails in a trace)."""
    from torch.overrides import _get_current_function_mode_stack

    results = {}
    started, release = threading.Event(), threading.Event()

    class Slow(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(2, 2, 3)

        def forward(self, x):
            started.set()
            release.wait(10)
            return self.conv(x)

    def other():
        started.wait(10)
        results["stack"] = list(_get_current_function_mode_stack())
        try:
            torch.jit.trace(nn.Conv2d(2, 2, 3).to("meta"), torch.empty(1, 2, 6, 6, device="meta"))
            results["trace"] = "traced"
        except TypeError as exc:
            results["trace"] = str(exc)
        release.set()

    thread = threading.Thread(target=other)
    thread.start()
    result = count("fvcore", [Call(Slow().to("meta"), (torch.empty(1, 2, 6, 6, device="meta"),), {}, "s")],
                   variant="patched", target="t", stage="s")
    thread.join(20)
    assert result.by_key == {"conv": 2 * (2 * 4 * 4) * (2 * 9)}
    assert results["stack"] == []
    assert "cond must be a bool" in results["trace"]
    assert list(_get_current_function_mode_stack()) == []
