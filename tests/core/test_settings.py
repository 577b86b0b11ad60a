"""Settings: defaults, one-line validation errors naming the variable, secrets that never print."""

import pytest

from coinline.errors import ConfigError
from coinline.secrets import Secret
from coinline.settings import ENV_VARIABLES, load_settings

CANARY = "canary-key-5f2e9d"


def test_defaults_run_offline_on_the_replay_venue():
    s = load_settings({}, dotenv=None)
    assert s.offline and s.hist_provider == "COINAPI" and s.training_universe_version == "UNIVERSE_V1_TOP30_NON_STABLE"
    assert s.quotes == ("USD", "USDC", "CAD") and s.object_store_url.startswith("file://")


def test_a_key_switches_to_the_live_providers():
    assert not load_settings({"HIST_MARKET_DATA_API_KEY": "k"}, dotenv=None).offline


@pytest.mark.parametrize("env, variable", [
    ({"HIST_MARKET_DATA_PROVIDER": "POLYGON"}, "HIST_MARKET_DATA_PROVIDER"),
    ({"UNIVERSE_SOURCE_PROVIDER": "CMC"}, "UNIVERSE_SOURCE_PROVIDER"),
    ({"HIST_MARKET_DATA_BASE_URL": "rest.coinapi.io"}, "HIST_MARKET_DATA_BASE_URL"),
    ({"OBJECT_STORE_URL": "ftp://x/y"}, "OBJECT_STORE_URL"),
    ({"ENABLE_CONTINUOUS_INGESTION": "maybe"}, "ENABLE_CONTINUOUS_INGESTION"),
    ({"COINLINE_INTERVALS": "1h,7m"}, "COINLINE_INTERVALS"),
])
def test_bad_config_is_a_one_line_error_naming_the_variable(env, variable):
    with pytest.raises(ConfigError) as info:
        load_settings(env, dotenv=None)
    assert variable in str(info.value) and "\n" not in str(info.value)


def test_secrets_never_print():
    s = load_settings({"HIST_MARKET_DATA_API_KEY": CANARY, "COINLINE_VENUE": "live"}, dotenv=None)
    for text in (repr(s), str(s), f"{s}", f"{s.hist_api_key}", repr(s.hist_api_key)):
        assert CANARY not in text
    assert s.hist_api_key.reveal() == CANARY
    with pytest.raises(TypeError):
        import pickle

        pickle.dumps(Secret(CANARY))


def test_dotenv_file_is_read_and_the_environment_wins(tmp_path):
    env = tmp_path / ".env"
    env.write_text("COINLINE_INTERVALS=4h\nCOINLINE_QUOTES=USD\n")
    s = load_settings({"COINLINE_QUOTES": "CAD"}, dotenv=env)
    assert s.intervals == ("4h",) and s.quotes == ("CAD",)


def test_env_example_defines_every_variable():
    from pathlib import Path

    text = (Path(__file__).resolve().parents[2] / ".env.example").read_text()
    defined = {line.split("=", 1)[0] for line in text.splitlines() if "=" in line and not line.startswith("#")}
    assert set(ENV_VARIABLES) <= defined


def test_live_without_a_key_is_refused_where_providers_are_built_not_for_lake_reads(tmp_path):
    from coinline.app import build_app

    s = load_settings({"COINLINE_VENUE": "live", "OBJECT_STORE_URL": f"file://{tmp_path}/lake"}, dotenv=None)
    with pytest.raises(ConfigError, match="HIST_MARKET_DATA_API_KEY"):
        build_app(s)
    with build_app(s, providers=False) as app:   # status, export, validate: the lake only
        assert app.replay is None
