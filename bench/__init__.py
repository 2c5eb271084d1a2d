"""mixerbench: the measuring harness (FLOPs, timing, memory, scaling fits, reports) and its CLI."""

__version__ = "0.1.0"
