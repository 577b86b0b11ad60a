"""The chart carries COINLINE_REPLAY_PROFILE into the ConfigMap every coinline pod loads, and its schema
allows exactly the profiles the settings accept."""

from __future__ import annotations

import json

from coinline.settings import REPLAY_PROFILES
from tests.delivery.conftest import CHART


def test_the_configmap_carries_the_martingale_by_default(render):
    assert render().one("ConfigMap", "-config")["data"]["COINLINE_REPLAY_PROFILE"] == "martingale"


def test_the_configmap_carries_the_chosen_profile(render):
    data = render({"config": {"COINLINE_REPLAY_PROFILE": "positive-control"}}).one("ConfigMap", "-config")["data"]
    assert data["COINLINE_REPLAY_PROFILE"] == "positive-control"


def test_an_unknown_profile_is_refused_by_the_schema(render):
    err = render({"config": {"COINLINE_REPLAY_PROFILE": "trending"}}, expect_error=True)
    assert "COINLINE_REPLAY_PROFILE" in err and "positive-control" in err


def test_the_schema_enum_is_the_settings_list():
    schema = json.loads((CHART / "values.schema.json").read_text())
    config = schema["properties"]["config"]
    assert tuple(config["properties"]["COINLINE_REPLAY_PROFILE"]["enum"]) == REPLAY_PROFILES
    assert "COINLINE_REPLAY_PROFILE" in config["required"]

