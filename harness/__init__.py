"""harness: verifies an analytic FLOP model of DeepSeek-OCR against what the model executes.

Convention everywhere: FLOPs = 2 x multiply-accumulates (MACs). Every raw counter figure is
kept next to its convention and its FLOP conversion.
"""

__version__ = "0.1.0"


def __getattr__(name: str):
    """``harness.count`` is imported on first use, so ``import harness`` stays light."""
    if name == "count":
        import importlib

        return importlib.import_module("harness.count")
    raise AttributeError(f"module 'harness' has no attribute {name!r}")
