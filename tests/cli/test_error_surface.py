"""One error surface: every bad setting and bad flag is one line on stderr naming what is wrong, with exit 2
(configuration or input), 1 (provider or runtime); never a traceback unless -v. Driven through the real
`coinline` entry point (`cli.main`) in a scratch directory, so no `.env` applies."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from coinline import cli
from coinline.settings import ENV_VARIABLES

ENV_EXAMPLE = Path(__file__).resolve().parents[2] / ".env.example"

# an invalid value for every setting that has a domain; secrets and free text have none (listed apart)
INVALID = {
    "HIST_MARKET_DATA_PROVIDER": "NOPE",
    "HIST_MARKET_DATA_BASE_URL": "not a url",
    "HIST_MARKET_DATA_EXCHANGE": "kraken spot",
    "UNIVERSE_SOURCE_PROVIDER": "NOPE",
    "UNIVERSE_SOURCE_API_TIER": "gold",
    "UNIVERSE_SOURCE_BASE_URL": "ftp://example.com",
    "UNIVERSE_REFRESH_CRON": "bad cron",
    "TRAINING_UNIVERSE_VERSION": "../etc/passwd",
    "ENABLE_CONTINUOUS_INGESTION": "maybe",
    "ENABLE_AUTONOMOUS_RETRAINING": "2",
    "KRAKEN_PUBLIC_BASE_URL": "api.kraken.com",
    "OBJECT_STORE_URL": "gs://bucket",
    "OBJECT_STORE_ENDPOINT_URL": "minio:9000",
    "OBJECT_STORE_REGION": "US East",
    "COINLINE_VENUE": "paper",
    "COINLINE_SYMBOLS": "BTC,$$$",
    "COINLINE_INTERVALS": "7m",
    "COINLINE_QUOTES": "XYZ",
    "COINLINE_REPLAY_HISTORY_DAYS": "-5",
    "COINLINE_REPLAY_SEED": "seven",
    "COINLINE_REPLAY_PROFILE": "lucky",
    "COINLINE_RECONCILE_LOOKBACK": "-1",
    "COINLINE_GAP_TOLERANCE": "-1",
    "COINLINE_PARITY_TOLERANCE_BPS": "nan",
    "COINLINE_TRAIN_WORKERS": "-4",
}
# more than one bad value of the same setting (the cases found by the bad-input trials)
MORE = [("UNIVERSE_REFRESH_CRON", "99 * * * *"), ("COINLINE_REPLAY_HISTORY_DAYS", "0"),
        ("COINLINE_PARITY_TOLERANCE_BPS", "-3"), ("COINLINE_INTERVALS", "1h,2h")]
FREE = {"HIST_MARKET_DATA_API_KEY", "HIST_MARKET_DATA_API_SECRET", "UNIVERSE_SOURCE_API_KEY", "KRAKEN_API_KEY",
        "KRAKEN_API_SECRET", "OBJECT_STORE_ACCESS_KEY_ID", "OBJECT_STORE_SECRET_ACCESS_KEY", "COINLINE_UNIVERSE_DIR",
        "COINLINE_TRAIN_CONFIG"}


@pytest.fixture
def scratch(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for var in ENV_VARIABLES:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("OBJECT_STORE_URL", f"file://{tmp_path / 'lake'}")
    return tmp_path


def _one_line_failure(capsys, code: int, expected_code: int, *names: str) -> str:
    captured = capsys.readouterr()
    lines = [ln for ln in captured.err.splitlines() if ln.strip() and " INFO " not in ln]
    assert code == expected_code, captured.err
    assert len(lines) == 1 and lines[0].startswith("coinline: error:"), captured.err
    assert "Traceback" not in captured.err
    for name in names:
        assert name in lines[0], lines[0]
    return lines[0]


def test_every_documented_setting_is_covered_by_the_matrix():
    documented = set(re.findall(r"^([A-Z][A-Z0-9_]+)=", ENV_EXAMPLE.read_text(), flags=re.M))
    assert documented == set(ENV_VARIABLES), "`.env.example` and the settings disagree"
    assert set(INVALID) | FREE == set(ENV_VARIABLES)


@pytest.mark.parametrize(("var", "value"), [*INVALID.items(), *MORE])
def test_an_invalid_setting_is_one_line_naming_the_variable_and_exit_2(scratch, capsys, monkeypatch, var, value):
    monkeypatch.setenv(var, value)
    _one_line_failure(capsys, cli.main(["status"]), 2, var)


@pytest.mark.parametrize(("argv", "names"), [
    (["--now", "yesterday", "status"], ["--now", "yesterday"]),
    (["backfill", "--quotes", "XYZ"], ["--quotes", "XYZ"]),
    (["backfill", "--intervals", "7m"], ["--intervals", "7m"]),
    (["backfill", "--symbols", "FOO"], ["FOO"]),
    (["sync", "--source", "binance"], ["--source", "binance"]),
    (["forecast", "--at", "soon"], ["--at", "soon"]),
    (["nonsense"], ["nonsense"]),
])
def test_a_bad_flag_is_one_line_and_exit_2(scratch, capsys, argv, names):
    try:
        code = cli.main(argv)
    except SystemExit as exc:   # argparse's own exit, after our one-line message
        code = exc.code
    _one_line_failure(capsys, code, 2, *names)


def test_an_unreachable_lake_is_one_line_naming_the_endpoint_and_exit_1(scratch, capsys, monkeypatch):
    monkeypatch.setenv("OBJECT_STORE_URL", "s3://bucket/lake")
    monkeypatch.setenv("OBJECT_STORE_ENDPOINT_URL", "http://127.0.0.1:9")   # discard port: nothing listens
    monkeypatch.setenv("OBJECT_STORE_ACCESS_KEY_ID", "canary-id")
    monkeypatch.setenv("OBJECT_STORE_SECRET_ACCESS_KEY", "canary-secret-value")
    line = _one_line_failure(capsys, cli.main(["status"]), 1, "OBJECT_STORE_ENDPOINT_URL", "127.0.0.1:9")
    assert "canary-secret-value" not in line and "-v" in line


def test_with_v_the_traceback_is_shown_and_secrets_stay_masked(scratch, capsys, monkeypatch):
    monkeypatch.setenv("OBJECT_STORE_URL", "s3://bucket/lake")
    monkeypatch.setenv("OBJECT_STORE_ENDPOINT_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("OBJECT_STORE_ACCESS_KEY_ID", "canary-id")
    monkeypatch.setenv("OBJECT_STORE_SECRET_ACCESS_KEY", "canary-secret-value")
    assert cli.main(["-v", "status"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and "canary-secret-value" not in err
