"""Lineage replay: re-derive a promotion decision from what the lake stores."""
