"""One small trained run shared by the forecasting tests (training is the slow part): three random-walk
coins committed to a lake, trained with the fast config. Tests that change the lake work on a copy."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest

from coinline.lake import open_lake
from coinline.training.run import train
from tests.training.conftest import START, fast_config, random_walk_dataset

BARS = 2400


@dataclass
class TrainedLake:
    root: str
    run_id: str
    dataset_id: str
    end: datetime          # close time of the last stored candle

    def copy(self, dest) -> object:
        shutil.copytree(self.root, dest)
        return open_lake(f"file://{dest}")


@pytest.fixture(scope="package")
def trained(tmp_path_factory) -> TrainedLake:
    root = tmp_path_factory.mktemp("trained") / "lake"
    lake = open_lake(f"file://{root}")
    from coinline.lake import tables

    tables.ensure_tables(lake)
    dataset_id = random_walk_dataset(lake, seed=5, bars=BARS)
    run = train(lake, dataset_id, fast_config(), workers=1)
    return TrainedLake(str(root), run.run_id, dataset_id, START + timedelta(hours=BARS))


@pytest.fixture
def trained_lake(trained, tmp_path):
    """A private copy of the trained lake (tests may add candles or ledger rows)."""
    return trained.copy(tmp_path / "lake-copy")


NOW = datetime(2030, 1, 1, tzinfo=UTC)
