"""harness.golden: deterministic JSON, the files, tolerance bands, entry comparison (no pytest runs)."""

from __future__ import annotations

import json

import pytest

from harness.golden import (
    Band,
    BandsError,
    GoldenError,
    Mismatch,
    compare_entry,
    count_path,
    dumps_golden,
    format_table,
    load_bands,
    load_doc,
)


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


def test_a_string_where_a_number_belongs_never_prints_as_equal():
    rows = compare_entry({"flops": "100", "by_key": {"linear": 4}}, {"flops": 100, "by_key": {"linear": 4}}, Band())
    assert rows == [Mismatch("flops", "100", 100, "type differs (string vs golden number)")]
    table = format_table(rows)
    assert '"100"' in table and "type differs" in table


@pytest.mark.parametrize("text, message", [
    ("[verify.sma.torch]\nrel = 0.1\n", "names the stage 'sma', which does not exist. Did you mean: 'sam'?"),
    ("[verify.sam.fvcor]\nrel = 0.1\n", "names the counter 'fvcor'"),
    ("[verify.sam.torch.macs]\nrel = 0.1\n", "names the convention 'macs'"),
])
def test_band_names_are_checked(tmp_path, text, message):
    path = tmp_path / "tolerances.toml"
    path.write_text(text)
    with pytest.raises(BandsError, match=message.replace("[", r"\[").replace("]", r"\]").replace("?", r"\?")):
        load_bands(path, stages=("sam", "clip"), counters=("torch", "fvcore"))
    if "convention" not in message:
        load_bands(path)  # a user's own suite may name its own stages and counters (conventions are fixed)


def test_a_directory_in_place_of_the_bands_is_an_error(tmp_path):
    (tmp_path / "tolerances.toml").mkdir()
    with pytest.raises(BandsError, match="is a directory"):
        load_bands(tmp_path / "tolerances.toml")


@pytest.mark.parametrize("text, message", [
    ("{", "not valid JSON"),
    ('{"schema": 1}', "schema 1, this harness reads schema 2"),
    ('{"schema": 2, "kind": "layout"}', "kind 'layout', expected 'count'"),
    ('{"schema": 2, "kind": "count", "target": "t", "stage": "s", "shape_key": "k", "shape": {}, '
     '"pages": [], "counters": {"torch": 5}}', "every entry of counters must be an object"),
    ('{"schema": 2, "kind": "count", "target": "t", "stage": "s", "shape_key": 3}', "field 'shape_key' must be a str"),
])
def test_bad_golden_files_name_the_file_and_the_fix(tmp_path, text, message):
    path = count_path(tmp_path, "t", "s", "k")
    path.parent.mkdir(parents=True)
    path.write_text(text)
    with pytest.raises(GoldenError, match=message) as info:
        load_doc(path, "count", regenerate="pytest --update-golden X")
    assert str(path) in str(info.value) and "pytest --update-golden X" in str(info.value)
    assert load_doc(tmp_path / "absent.json", "count") is None
