"""COINLINE_REPLAY_PROFILE: which market the replay venue simulates (martingale by default, or the positive
control), validated like every setting and handed to the market the app builds."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from coinline.app import build_app
from coinline.errors import ConfigError
from coinline.replay.paths import DYNAMICS
from coinline.settings import REPLAY_PROFILES, load_settings


def test_the_default_market_is_the_martingale():
    assert load_settings({}, dotenv=None).replay_profile == "martingale"


def test_the_allowed_values_are_the_replay_markets_profiles():
    assert REPLAY_PROFILES == tuple(DYNAMICS)
    for name in REPLAY_PROFILES:
        assert load_settings({"COINLINE_REPLAY_PROFILE": name}, dotenv=None).replay_profile == name


@pytest.mark.parametrize("value", ["trending", "Positive-Control", "positive_control"])
def test_an_unknown_profile_is_a_config_error_naming_the_variable_and_the_allowed_values(value):
    with pytest.raises(ConfigError) as err:
        load_settings({"COINLINE_REPLAY_PROFILE": value}, dotenv=None)
    message = str(err.value)
    assert message.startswith(f"COINLINE_REPLAY_PROFILE={value!r}") and "\n" not in message
    assert "martingale" in message and "positive-control" in message


@pytest.mark.parametrize("name", ["martingale", "positive-control"])
def test_the_app_builds_the_replay_market_with_the_profile(tmp_path, name):
    settings = load_settings({"COINLINE_REPLAY_PROFILE": name, "COINLINE_VENUE": "replay",
                              "OBJECT_STORE_URL": f"file://{tmp_path}/lake",
                              "COINLINE_REPLAY_HISTORY_DAYS": "10"}, dotenv=None)
    with build_app(settings, now=datetime(2026, 6, 1, tzinfo=UTC)) as app:
        assert app.replay.market.dynamics is DYNAMICS[name]
