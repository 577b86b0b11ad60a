"""Orchestration: commit pages to the lake, backfill, sync, gaps, corrections, venue parity."""
