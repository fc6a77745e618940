"""harness.golden: keys, deterministic JSON, tolerance bands, entry comparison (no pytest runs)."""

from __future__ import annotations

import json

import pytest

from harness.golden import (
    Band,
    BandsError,
    GoldenKey,
    Mismatch,
    compare_entry,
    dumps_golden,
    format_table,
    load_bands,
    merge_entries,
)


@pytest.mark.parametrize("text, page", [
    ("dsocr-gundam-letter-sam-torch", "letter"),
    ("ocr2-base-slide-wide-prefill-fvcore", "slide-wide"),
    ("dsocr-gundam6-strip-h-decode-thop", "strip-h"),
])
def test_key_round_trip(text, page):
    key = GoldenKey.parse(text)
    assert key.page == page
    assert str(key) == text


@pytest.mark.parametrize("bad", ["a-b-c-d", "a--c-d-e"])
def test_bad_keys(bad):
    with pytest.raises(ValueError):
        GoldenKey.parse(bad)


def test_dumps_is_deterministic_and_rounds_floats():
    a = dumps_golden({"b": 1, "a": {"y": 0.1 + 0.2, "x": [3, 2]}})
    b = dumps_golden({"a": {"x": [3, 2], "y": 0.30000000000000004}, "b": 1})
    assert a == b
    assert json.loads(a)["a"]["y"] == 0.3
    assert a.endswith("\n")
    with pytest.raises(ValueError, match="not a finite number"):
        dumps_golden({"x": float("nan")})


BANDS = '''
schema = 1
[verify."*"."*"]
rel = 0.0
[verify."*".thop]
rel = 0.05
note = "thop misses functional ops"
[verify.sam."*"]
rel = 0.01
[verify.sam.thop]
rel = 0.02
[verify.sam.thop.mac]
abs = 7
[regress."*"."*"]
abs = 0
'''


def test_band_lookup_most_specific_wins(tmp_path):
    path = tmp_path / "tolerances.toml"
    path.write_text(BANDS)
    bands = load_bands(path)
    assert bands.lookup("verify", "sam", "thop", "mac") == Band(0.0, 7.0, "[verify.sam.thop.mac]")
    assert bands.lookup("verify", "sam", "thop", "flop").rel == 0.02
    assert bands.lookup("verify", "sam", "torch").rel == 0.01          # stage beats counter
    assert bands.lookup("verify", "clip", "thop").note == "thop misses functional ops"
    assert bands.lookup("verify", "clip", "torch").where == '[verify."*"."*"]'
    assert bands.lookup("regress", "x", "y").rel == 0
    assert bands.lookup("nothing", "x", "y").where == "default (exact)"


def test_missing_band_file_means_exact(tmp_path):
    assert load_bands(tmp_path / "none.toml").lookup("verify", "sam", "torch").allows(1, 1)
    assert not load_bands(tmp_path / "none.toml").lookup("verify", "sam", "torch").allows(2, 1)


@pytest.mark.parametrize("text, message", [
    ("[verify.sam.torch]\nrel = 'x'\n", "must be a finite number >= 0"),
    ("[verfy.sam.torch]\nrel = 0.1\n", "unknown top-level table [verfy]"),
    ("[verify.sam.torch]\nrelative = 0.1\n", "unknown key verify.sam.torch.relative"),
    ("schema = 2\n", "schema 2"),
    ("[verify\n", "not valid TOML"),
])
def test_bad_band_files(tmp_path, text, message):
    path = tmp_path / "tolerances.toml"
    path.write_text(text)
    with pytest.raises(BandsError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load_bands(path)


def test_band_arithmetic():
    band = Band(rel=0.01, abs=5)
    assert band.allows(1015, 1000) and not band.allows(1016, 1000)


def test_compare_entry_rows():
    expected = {"flops": 100, "raw": 50, "convention": "mac", "by_op": {"aten.mm": 100},
                "unknown_ops": {}, "version": "1"}
    obtained = {"flops": 103, "raw": 51, "convention": "flop", "by_op": {"aten.mm": 100, "aten.bmm": 4},
                "unknown_ops": {"aten.x": 2}, "version": "2"}
    rows = compare_entry(obtained, expected, Band(rel=0.03))
    assert [r.field for r in rows] == ["by_op[aten.bmm]", "convention", "unknown_ops[aten.x]"]
    table = format_table(rows)
    assert "new op" in table and "differs" in table


def test_compare_entry_band_does_not_apply_to_op_occurrences():
    rows = compare_entry({"unknown_ops": {"a": 101}}, {"unknown_ops": {"a": 100}}, Band(rel=0.5))
    assert rows == [Mismatch("unknown_ops[a]", 101, 100)]


def test_merge_entries_keeps_and_prunes():
    old = {"stages": {"sam": {"torch": {"flops": 1}, "thop": {"flops": 2}}, "clip": {"torch": {"flops": 3}}}}
    doc = merge_entries(old, ("t", "m", "p"), layout={"v": 1}, environment={"torch": "x"},
                        entries={("sam", "torch"): {"flops": 9}})
    assert doc["stages"] == {"sam": {"torch": {"flops": 9}, "thop": {"flops": 2}}, "clip": {"torch": {"flops": 3}}}
    doc = merge_entries(old, ("t", "m", "p"), layout=None, environment={},
                        entries={("sam", "torch"): {"flops": 9}}, keep=[("sam", "torch")])
    assert doc["stages"] == {"sam": {"torch": {"flops": 9}}}
