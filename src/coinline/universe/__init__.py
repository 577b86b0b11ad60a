"""Versioned training universes (data files), their per-provider symbol maps, refresh proposals."""

from coinline.universe.model import Coin, Universe, load_universe

__all__ = ["Coin", "Universe", "load_universe"]
