"""The targets' facts (:mod:`harness.inputs.targets`): the transformers releases each runs on, the
message that names them, and the analytic model's default attention being the build's."""

from __future__ import annotations

import pytest

from harness.inputs.targets import FACTS, target_facts


@pytest.mark.parametrize(("target", "version", "runs"), [
    ("dsocr", "4.45.2", False), ("dsocr", "4.46.0", True), ("dsocr", "4.46.3", True), ("dsocr", "4.57.1", True),
    ("dsocr", "5.0.0", False), ("dsocr", "none", False),
    ("ocr2", "4.46.3", False), ("ocr2", "4.99.0", False), ("ocr2", "5.0.0", True), ("ocr2", "5.23.0", True),
    ("ocr2", "none", False),
])
def test_transformers_releases(target, version, runs):
    assert FACTS[target].runs_on_transformers(version) is runs


@pytest.mark.parametrize(("target", "version", "expected"), [
    ("ocr2", "4.46.3", "target ocr2 (transformers' native DeepSeek-OCR-2) needs transformers>=5; this Python has "
                       "4.46.3. Run ocr2 in the main environment (make setup; .venv/bin/python), not the vendor one"),
    ("dsocr", "5.23.0", "target dsocr (the vendor DeepSeek-OCR remote code) needs transformers==4.46.3; this Python "
                        "has 5.23.0. Run it in the vendor environment: make vendor-env, then make test-vendor "
                        "MODEL_PATH=DIR"),
    ("ocr2", "5.23.0", None), ("dsocr", "4.46.3", None),
])
def test_environment_problem_names_the_release_and_where_to_run(monkeypatch, target, version, expected):
    from harness.targets import target_class

    cls = target_class(target)
    monkeypatch.setattr(cls, "installed_version", staticmethod(lambda dist: version))
    assert cls.environment_problem() == expected


def test_unknown_target():
    with pytest.raises(ValueError, match=r"unknown target 'ocr3'; expected one of dsocr, ocr2"):
        target_facts("ocr3")


@pytest.mark.parametrize("target", ["dsocr", "ocr2"])
def test_the_analytic_default_attention_is_the_builds(target):
    """The analytic model, asked without an attention implementation, costs the one a build takes
    by default; the other implementation costs differently (so the default is what decides)."""
    from harness.analytic.stages import prefill_cost

    default = target_facts(target).default_attention
    assert prefill_cost(target, 300) == prefill_cost(target, 300, attn_implementation=default)
    if target == "ocr2":
        assert prefill_cost(target, 300) != prefill_cost(target, 300, attn_implementation="eager")
