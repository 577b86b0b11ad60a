"""Fixtures shared across test folders (keep them few; folder-local fixtures live beside their tests)."""

import pytest

from coinline.lake import open_lake, tables


@pytest.fixture
def lake(tmp_path):
    """A fresh local lake with its tables created."""
    lk = open_lake(f"file://{tmp_path}/lake")
    tables.ensure_tables(lk)
    return lk
