"""--golden-dir: goldens and tolerances.toml live elsewhere; the fix command names the directory."""

from __future__ import annotations

from conftest import literal


def test_golden_dir(fake_suite):
    elsewhere = fake_suite.pytester.path / "snapshots"
    fake_suite.run("--golden-dir", "snapshots", "--update-golden").assert_outcomes(passed=4)
    assert (elsewhere / "fake" / "base" / "letter.json").exists()
    assert not fake_suite.golden_dir.exists()
    fake_suite.run("--golden-dir", "snapshots").assert_outcomes(passed=4)
    fake_suite.set_values(sam=1, prefill=2_000_000)
    result = fake_suite.run("--golden-dir", "snapshots", "-k", "letter-sam")
    result.stdout.fnmatch_lines([
        "golden: snapshots/fake/base/letter.json",
        literal("  pytest --golden-dir snapshots --update-golden 'test_fake.py::test_stage[fake-base-letter-sam-torch]'")])


def test_golden_dir_bands(fake_suite):
    elsewhere = fake_suite.pytester.path / "snapshots"
    fake_suite.run("--golden-dir", "snapshots", "--update-golden")
    (elsewhere / "tolerances.toml").write_text('schema = 1\n[regress.sam.torch]\nrel = 0.5\nnote = "loose"\n')
    fake_suite.set_values(sam=1400, prefill=2_000_000)
    fake_suite.run("--golden-dir", "snapshots").assert_outcomes(passed=4)   # +40% within rel 0.5
    fake_suite.set_values(sam=1600, prefill=2_000_000)
    result = fake_suite.run("--golden-dir", "snapshots")
    result.assert_outcomes(passed=2, failed=2)
    result.stdout.fnmatch_lines(["band: rel 0.5, abs 0 ([[]regress.sam.torch[]]) -- loose"])


def test_update_never_writes_the_band_file(fake_suite):
    fake_suite.golden_dir.mkdir()
    bands = fake_suite.golden_dir / "tolerances.toml"
    bands.write_text("schema = 1\n")
    before = bands.stat().st_mtime_ns
    fake_suite.run("--update-golden").assert_outcomes(passed=4)
    assert bands.read_text() == "schema = 1\n" and bands.stat().st_mtime_ns == before
