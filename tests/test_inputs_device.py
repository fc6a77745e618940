"""The one device parser (:mod:`harness.inputs.device`): what each entry point accepts, the one
error text per bad input, and that a CPU or meta device never asks torch about CUDA."""

from __future__ import annotations

import subprocess
import sys

import pytest

from harness.inputs.device import Device, DeviceError, DeviceUnavailableError, check_device, parse_device


@pytest.mark.parametrize(("text", "device", "normal"), [
    ("cpu", Device("cpu"), "cpu"), ("meta", Device("meta"), "meta"), ("cuda", Device("cuda"), "cuda:0"),
    ("cuda:3", Device("cuda", 3), "cuda:3"), (" cuda:1 ", Device("cuda", 1), "cuda:1"),
])
def test_parse(text, device, normal):
    assert parse_device(text) == device
    assert str(parse_device(text)) == normal


@pytest.mark.parametrize("bad", ["cuda:x", "tpu", "cuda:-1", "cpu:0", "CUDA", "", "mps"])
def test_bad_syntax_names_the_option_and_an_example(bad):
    with pytest.raises(DeviceError) as cli:
        parse_device(bad, "--device")
    assert str(cli.value) == (f"--device {bad!r}: expected cpu, meta, cuda or cuda:N (N a CUDA device index), "
                              "e.g. --device cuda:0")
    with pytest.raises(DeviceError) as keyword:
        parse_device(bad, "device")
    assert str(keyword.value).startswith(f"device={bad!r}: expected cpu, meta")
    assert str(keyword.value).endswith("e.g. device='cuda:0'")


def test_a_torch_device_is_parsed_by_its_text():
    import torch

    assert parse_device(torch.device("cuda", 2)) == Device("cuda", 2)
    assert parse_device(torch.device("cpu")) == Device("cpu")


def _no_cuda_lookup() -> int:
    raise AssertionError("a cpu or meta device must not ask for CUDA devices")


@pytest.mark.parametrize("text", ["cpu", "meta"])
def test_cpu_and_meta_never_look_for_cuda(text):
    assert check_device(text, device_count=_no_cuda_lookup) == text


def test_cuda_without_a_cuda_device_is_one_line_naming_the_option():
    with pytest.raises(DeviceUnavailableError) as exc:
        check_device("cuda:0", "--device", device_count=lambda: 0)
    text = str(exc.value)
    assert "\n" not in text
    assert text.startswith("--device cuda:0 was requested, but CUDA is unavailable (torch ")
    assert text.endswith("pass cpu or meta instead, or run where this torch sees a CUDA device")
    with pytest.raises(DeviceUnavailableError, match=r"^device='cuda' was requested"):
        check_device("cuda", "device", device_count=lambda: 0)


@pytest.mark.parametrize(("text", "count", "expected"), [
    ("cuda", 1, "cuda:0"), ("cuda:1", 2, "cuda:1"), ("cuda:0", 1, "cuda:0"),
])
def test_visible_cuda_devices_are_accepted(text, count, expected):
    assert check_device(text, device_count=lambda: count) == expected


@pytest.mark.parametrize(("text", "count", "message"), [
    ("cuda:2", 2, "--device cuda:2: only 2 CUDA device(s) visible (cuda:0..cuda:1)."),
    ("cuda:1", 1, "--device cuda:1: only 1 CUDA device(s) visible (cuda:0)."),
])
def test_an_index_past_the_visible_devices_is_an_error(text, count, message):
    with pytest.raises(DeviceError) as exc:
        check_device(text, device_count=lambda: count)
    assert not isinstance(exc.value, DeviceUnavailableError)
    assert str(exc.value) == message


def test_parsing_imports_no_torch():
    code = ("import sys; from harness.inputs.device import check_device, parse_device; "
            "check_device('meta'); check_device('cpu'); parse_device('cuda:1'); "
            "print('torch' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"


def test_targets_use_it_with_their_keyword():
    from harness.targets import get_target

    with pytest.raises(DeviceError, match=r"^device='tpu': expected cpu, meta, cuda or cuda:N"):
        get_target("ocr2").prepare("letter", "base", device="tpu")
