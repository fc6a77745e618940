"""Device classes and the expectation lookup keyed by them (CPU)."""

from __future__ import annotations

import pytest

from harness.gpu.device import (
    DEFAULT_CLASS,
    device_class,
    format_device_class,
    parse_device_class,
    select_expectation,
)

EXPECTED = {
    DEFAULT_CLASS: "default",
    ("cuda", None): "any cuda",
    ("cuda", (9, 0)): "hopper",
    ("meta", None): "meta",
}


@pytest.mark.parametrize("current, value", [
    (("cuda", (9, 0)), "hopper"),
    (("cuda", (8, 0)), "any cuda"),
    (("meta", None), "meta"),
    (("cpu", None), "default"),
])
def test_most_specific_match_wins(current, value):
    assert select_expectation(EXPECTED, current) == value


def test_no_match_and_no_default_is_an_error():
    with pytest.raises(LookupError, match="cpu.*have: cuda-sm90"):
        select_expectation({("cuda", (9, 0)): 1}, ("cpu", None))


def test_local_devices():
    assert device_class("cpu") == ("cpu", None)
    assert device_class("meta") == ("meta", None)


@pytest.mark.parametrize("cls, text", [
    (DEFAULT_CLASS, "default"), (("cuda", None), "cuda"), (("cuda", (9, 0)), "cuda-sm90"),
    (("cuda", (12, 0)), "cuda-sm120"), (("cpu", None), "cpu"),
])
def test_string_keys_round_trip(cls, text):
    assert format_device_class(cls) == text
    assert parse_device_class(text) == cls


def test_bad_string_key():
    with pytest.raises(ValueError):
        parse_device_class("cuda-smX")
