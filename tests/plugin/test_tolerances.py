"""Tolerance bands from ``<golden-dir>/tolerances.toml``: the ``regress`` band widens the golden
comparison; a file that cannot be used (a typo in a stage or counter name, a bad value, not TOML,
a directory) is a usage error before any test runs; --update-golden never writes it."""

from __future__ import annotations

import pytest
from conftest import N_TESTS


def test_regress_band_applies_and_is_shown(made):
    (made.golden_dir / "tolerances.toml").write_text('schema = 1\n[regress.sam.torch]\nrel = 0.5\nnote = "loose"\n')
    made.set_flops(sam_g1024=1400)
    made.run().assert_outcomes(passed=N_TESTS)                # +40% within rel 0.5
    made.set_flops(sam_g1024=1600)
    result = made.run()
    result.assert_outcomes(passed=N_TESTS - 1, failed=1)
    result.stdout.fnmatch_lines(["band: rel 0.5, abs 0 ([[]regress.sam.torch[]]) -- loose",
                                 "*raw*1,600*1,000*+600 (+60.000%)"])


def test_the_band_covers_only_its_fields(made):
    """The band loosens counts, not the convention or the shape."""
    (made.golden_dir / "tolerances.toml").write_text('schema = 1\n[regress."*"."*"]\nrel = 1.0\n')
    made.set_flops(prefill_L300=2_200_001)
    made.run().assert_outcomes(passed=N_TESTS)
    made.values["text_tokens"] = 17
    made.save()
    result = made.run("-k", "layout")
    result.assert_outcomes(failed=2, deselected=N_TESTS - 2)
    result.stdout.fnmatch_lines(["*text_tokens*17*16*+1 (+6.250%)"])


@pytest.mark.parametrize("content, message", [
    ('schema = 1\n[regress.sma.torch]\nrel = 0.1\n',
     ["[[]regress.sma[]] names the stage 'sma', which does not exist. Did you mean: 'sam'?",
      'Known stages: clip, decode, encoder, prefill, projector, sam (or "*")']),
    ('schema = 1\n[regress.sam.torhc]\nrel = 0.1\n',
     ["[[]regress.sam.torhc[]] names the counter 'torhc', which does not exist. Did you mean: 'torch'?",
      'Known counters: fvcore, thop, torch (or "*")']),
    ('[verify."*"."*"]\nrel = -1\n', ["verify.*.*.rel must be a finite number >= 0, got -1"]),
    ('schema = 1\n[regress.sam\nrel = 0.1\n', ["not valid TOML: *"]),
    ('schema = 1\n[regres.sam]\nrel = 0.1\n',
     ["unknown top-level table [[]regres[]]; expected [[]verify[]] or [[]regress[]]"]),
])
def test_unusable_tolerance_file_is_a_usage_error(made, content, message):
    (made.golden_dir / "tolerances.toml").write_text(content)
    result = made.run()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: tolerance bands: {made.golden_dir}/tolerances.toml: {message[0]}",
                                 *message[1:]])
    result.stdout.no_fnmatch_line("*passed*")


def test_directory_in_place_of_the_tolerance_file_is_a_usage_error(made):
    (made.golden_dir / "tolerances.toml").mkdir()
    result = made.run("--update-golden")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: tolerance bands: */golden/tolerances.toml is a directory; the tolerance "
                                 "bands are a TOML file there.*"])


def test_update_never_writes_the_band_file(made):
    bands = made.golden_dir / "tolerances.toml"
    bands.write_text("schema = 1\n")
    before = bands.stat().st_mtime_ns
    made.set_flops(sam_g1024=5)
    made.run("--update-golden").assert_outcomes(passed=N_TESTS)
    assert bands.read_text() == "schema = 1\n" and bands.stat().st_mtime_ns == before
