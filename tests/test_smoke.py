import importlib.metadata

import harness


def test_version_is_the_installed_distributions():
    """``harness --version`` (harness.__version__) and the installed metadata (pip, the reports'
    environment block) name the same release."""
    assert harness.__version__ == importlib.metadata.version("harness")
