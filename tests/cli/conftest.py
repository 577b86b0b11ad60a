"""Run the `coinline` command in-process against the offline replay venue, in a scratch directory."""

import json

import pytest

from coinline.cli import main

NOW = "2026-06-01T12:30:00Z"
ENV = {"COINLINE_SYMBOLS": "BTC,ETH,TRX", "COINLINE_QUOTES": "USD,CAD", "COINLINE_REPLAY_HISTORY_DAYS": "45"}


def _runner(capsys):
    def run(*args: str, expect: int = 0, as_json: bool = False):
        capsys.readouterr()
        code = main(["--now", NOW, *args])
        out = capsys.readouterr()
        assert code == expect, f"exit {code}: {out.out[-2000:]} {out.err[-2000:]}"
        return json.loads(out.out) if as_json else out

    return run


def _environment(mp: pytest.MonkeyPatch, directory) -> None:
    mp.chdir(directory)
    for var in ("HIST_MARKET_DATA_API_KEY", "OBJECT_STORE_URL", "COINLINE_VENUE", "UNIVERSE_SOURCE_API_KEY"):
        mp.delenv(var, raising=False)
    for var, value in ENV.items():
        mp.setenv(var, value)


@pytest.fixture
def cli(tmp_path, monkeypatch, capsys):
    """A fresh scratch directory (and lake) per test."""
    _environment(monkeypatch, tmp_path)
    return _runner(capsys)
