"""worker_device: one pytest-xdist worker per GPU from CUDA_VISIBLE_DEVICES (CPU)."""

from __future__ import annotations

import pytest

from harness.gpu.workers import parse_visible_devices, worker_device, worker_index


@pytest.mark.parametrize("worker_id, visible, device, entry", [
    ("gw0", "0,1,2,3", "cuda:0", "0"),
    ("gw3", "0,1,2,3", "cuda:3", "3"),
    # CUDA renumbers the visible list from 0: physical GPUs 4 and 6 are cuda:0 and cuda:1
    ("gw1", "4,6", "cuda:1", "6"),
    ("gw1", " 2 , 5 ", "cuda:1", "5"),
    ("gw0", "GPU-8f1c2d3e-aaaa-bbbb-cccc-000000000001,GPU-8f1c2d3e-aaaa-bbbb-cccc-000000000002", "cuda:0",
     "GPU-8f1c2d3e-aaaa-bbbb-cccc-000000000001"),
    ("gw0", "MIG-4a5b6c7d-0000-1111-2222-333333333333", "cuda:0", "MIG-4a5b6c7d-0000-1111-2222-333333333333"),
    ("master", "3,1", "cuda:0", "3"),   # no -n: the first visible GPU
    (None, "7", "cuda:0", "7"),
])
def test_mapping(worker_id, visible, device, entry):
    assigned = worker_device(worker_id, visible)
    assert (assigned.device, assigned.visible) == (device, entry)


def test_unset_variable_uses_device_count():
    assert worker_device("gw2", None, device_count=4).device == "cuda:2"
    assert worker_device("gw2", None, device_count=4).visible == "2"
    with pytest.raises(ValueError, match="device_count"):
        worker_device("gw0", None)


def test_more_workers_than_gpus_is_an_error():
    with pytest.raises(RuntimeError, match=r"gw2 has no GPU of its own: 2 visible .*run with -n 2"):
        worker_device("gw2", "0,1")


def test_no_visible_gpu_is_an_error():
    with pytest.raises(RuntimeError, match="no GPU visible"):
        worker_device("gw0", "")
    with pytest.raises(RuntimeError, match="no GPU visible"):
        worker_device("master", None, device_count=0)


def test_invalid_entry_ends_the_list_like_cuda():
    assert parse_visible_devices("0,1,-1,2") == ("0", "1")
    assert parse_visible_devices("-1") == ()
    assert parse_visible_devices("0,,1,") == ("0", "1")


@pytest.mark.parametrize("bad", ["gw", "worker1", "gw-1", "1"])
def test_bad_worker_id(bad):
    with pytest.raises(ValueError, match="xdist worker id"):
        worker_index(bad)
