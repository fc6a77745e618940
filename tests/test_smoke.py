import harness


def test_version_is_set():
    assert harness.__version__.count(".") == 2
