"""The replay market's profile (COINLINE_REPLAY_PROFILE) travels wherever COINLINE_REPLAY_SEED does: every
component that builds the app takes it as a parameter and hands it to the market, every ingesting pipeline
exposes it, and the schedules fill it from Settings."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest
from kfp.dsl import Artifact

from coinline.datasets.canonical import canonical_candles
from coinline.lake import open_lake, tables
from coinline.replay import SimulatedMarket
from coinline.settings import Settings
from coinline.universe import load_universe
from components.ingest.backfill.component import backfill_history
from components.ingest.retry_gaps.component import retry_gaps
from components.ingest.sync.component import sync_candles
from components.universe.refresh.component import refresh_universe
from pipelines import PIPELINES
from pipelines.schedules import ingest_params

NOW = datetime(2026, 6, 1, 12, 30, tzinfo=UTC)


@pytest.mark.parametrize("component", [backfill_history, sync_candles, retry_gaps, refresh_universe],
                         ids=lambda c: c.name)
def test_every_app_building_component_takes_the_profile_defaulting_to_the_martingale(component):
    spec = component.component_spec.inputs["replay_profile"]
    assert spec.type == "String" and spec.default == Settings().replay_profile == "martingale"


@pytest.mark.parametrize("name", ["backfill", "sync", "full"])
def test_every_ingesting_pipeline_exposes_the_profile(name):
    inputs = PIPELINES[name].component_spec.inputs
    assert inputs["replay_profile"].default == "martingale"
    assert set(inputs) >= {"replay_seed", "replay_history_days"}


def test_schedules_fill_the_profile_from_settings():
    assert ingest_params(Settings(replay_profile="positive-control"))["replay_profile"] == "positive-control"


def test_the_backfill_step_stores_the_market_of_its_profile(tmp_path):
    """The parameter reaches the market: the step's candles are the positive control's, not the martingale's."""
    backfill_history.python_func(object_store_url=f"file://{tmp_path}/lake", symbols="BTC", intervals=["1d"],
                                 outcomes=Artifact(uri=str(tmp_path / "outcomes.json")), quotes="USD",
                                 venue="replay", replay_history_days=20, replay_profile="positive-control",
                                 now=NOW.isoformat())
    lake = open_lake(f"file://{tmp_path}/lake")
    keys = [k for k, *_ in tables.series_in(lake)]
    stored = canonical_candles(lake, keys).to_pandas()["close"].to_numpy()
    universe = load_universe("UNIVERSE_V1_TOP30_NON_STABLE")
    closes = {name: SimulatedMarket(universe, seed=7, now=NOW, history_days=20, market_profile=name)
              .arrays("BTC", "USD", "1d").close
              for name in ("positive-control", "martingale")}
    assert len(stored) == len(closes["positive-control"]) > 10
    assert np.array_equal(stored, closes["positive-control"])
    assert not np.array_equal(stored, closes["martingale"])
