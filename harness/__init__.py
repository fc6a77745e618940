"""harness: verifies an analytic FLOP model of DeepSeek-OCR against what the model executes.

Convention everywhere: FLOPs = 2 x multiply-accumulates (MACs). Every raw counter figure is
kept next to its convention and its FLOP conversion.
"""

__version__ = "0.1.0"
