"""``harness count SPEC``: the factory contract, the output formats and the exit codes."""

from __future__ import annotations

import io
import json
import textwrap

import pytest

from harness.cli import main

pytest.importorskip("fvcore")
pytest.importorskip("thop")

FACTORIES = '''
import torch
from torch import nn


def mlp():
    with torch.device("meta"):
        model = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 32))
    return model, (torch.randn(8, 32),)


def keywords():
    class TakesKeywords(nn.Module):
        def __init__(self):
            super().__init__()
            self.proj = nn.Linear(16, 16)

        def forward(self, x, *, scale):
            return self.proj(x) * scale

    return TakesKeywords(), (), {"x": torch.randn(4, 16), "scale": 2.0}


def with_device(device="meta"):
    with torch.device(device):
        return nn.Linear(8, 8), torch.randn(2, 8)


def raises():
    raise RuntimeError("weights not found")


def bad_return():
    return nn.Linear(2, 2)


def bad_inputs():
    return nn.Linear(2, 2), (torch.randn(3, 5),)
'''
# mlp: 2*B*(32*64 + 64*32) = 2*8*4,096 = 65,536 FLOPs
MLP = 2 * 8 * (32 * 64 + 64 * 32)


@pytest.fixture
def factories(tmp_path, monkeypatch):
    (tmp_path / "my_factories.py").write_text(textwrap.dedent(FACTORIES))
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(["count", *argv], stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def test_summary_of_a_module_factory(factories):
    code, out, err = run("my_factories:mlp", "--expected", str(MLP))
    assert code == 0, err
    assert "harness.count: Sequential on meta" in out
    assert "verdict: PASS against expected 65,536" in out
    for label in ("torch stock", "torch patched", "fvcore stock", "fvcore patched", "thop stock", "thop patched"):
        assert f"  {label} " in out


def test_file_spec_keywords_and_a_csv_table(factories):
    code, out, err = run(str(factories / "my_factories.py") + ":keywords", "--counters", "torch:patched,fvcore",
                         "--table", "keys", "--format", "csv")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == "key,class,torch patched,fvcore stock,fvcore patched"
    assert lines[1] == "linear,matmul,2048,2048,2048"               # 2*B*16*16 = 2*4*256


def test_device_goes_to_a_factory_that_takes_it_and_json(factories):
    code, out, err = run("my_factories:with_device", "--device", "cpu", "--counters", "torch", "--format", "json")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["device"] == "cpu"
    assert doc["counts"]["torch patched"]["matmul_flops"] == 2 * 2 * 8 * 8   # 256


def test_failed_verdict_exits_1(factories):
    code, out, _ = run("my_factories:mlp", "--counters", "torch", "--expected", str(MLP + 2))
    assert code == 1
    assert "verdict: FAIL" in out and "remainder -2" in out


@pytest.mark.parametrize("spec, message", [
    ("my_factories", "expected package.module:factory or path/to/file.py:factory"),
    ("no_such_module:f", "cannot import 'no_such_module'"),
    ("my_factories:mpl", "has no attribute 'mpl'. Did you mean 'mlp'?"),
    ("my_factories:raises", "the factory raised RuntimeError: weights not found"),
    ("my_factories:bad_return", "the factory returned Linear; expected (model, args)"),
    ("my_factories:bad_inputs", "Linear raised RuntimeError on these inputs"),
    ("missing.py:f", "no file missing.py"),
])
def test_bad_input_is_one_line_and_exit_2(factories, spec, message):
    code, out, err = run(spec)
    assert code == 2 and out == ""
    assert err.startswith("harness count: error: ") and message in err
    assert err.count("\n") == 1


def test_bad_counter_name_exit_2(factories):
    code, _, err = run("my_factories:mlp", "--counters", "fvcor")
    assert code == 2 and "unknown counter 'fvcor'. Did you mean 'fvcore'?" in err


DATACLASS_FILE = '''
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class Shapes:
    batch: int = 4
    width: int = 12


def build():
    s = Shapes()
    with torch.device("meta"):
        return nn.Linear(s.width, 2 * s.width, bias=False), (torch.randn(s.batch, s.width),)
'''


def test_path_spec_of_a_file_with_future_annotations_and_a_dataclass(tmp_path):
    """The path-form loader registers the module before running it (as importlib does): a
    @dataclass under ``from __future__ import annotations`` looks its module up in sys.modules."""
    (tmp_path / "dc_models.py").write_text(textwrap.dedent(DATACLASS_FILE))
    # 2 * batch * in * out = 2 * 4 * 12 * 24
    code, out, err = run(f"{tmp_path / 'dc_models.py'}:build", "--expected", str(2 * 4 * 12 * 24))
    assert (code, err) == (0, ""), err
    assert "verdict: PASS against expected 2,304" in out
