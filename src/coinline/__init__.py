"""coinline: a governed crypto market-data lake and continuously retrained, gated models."""

__version__ = "0.1.0"
