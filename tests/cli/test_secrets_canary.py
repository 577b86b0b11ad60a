"""A canary key used for a full backfill appears in no log line, exception, artifact or report."""

import logging
from pathlib import Path

CANARY = "canary-9c1e7b2f-do-not-leak"


def _leaks(root: Path) -> list[str]:
    return [str(p) for p in root.rglob("*") if p.is_file() and CANARY.encode() in p.read_bytes()]


def test_canary_key_never_leaves_the_request_headers(cli, monkeypatch, tmp_path, caplog, capsys):
    monkeypatch.setenv("COINLINE_VENUE", "replay")  # the replay venue then demands this key
    monkeypatch.setenv("HIST_MARKET_DATA_API_KEY", CANARY)
    monkeypatch.setenv("UNIVERSE_SOURCE_API_KEY", CANARY + "-gecko")
    monkeypatch.setenv("COINLINE_SYMBOLS", "BTC,TRX")
    caplog.set_level(logging.DEBUG)
    out = cli("-v", "run", "--no-train")
    assert "BTC-USD" in out.out
    more = cli("-v", "forecast", "--json"), cli("-v", "scoreboard")     # the ledger and its outputs too
    assert CANARY not in out.out + out.err + caplog.text + "".join(o.out + o.err for o in more)
    assert _leaks(tmp_path) == []


def test_rejected_key_gives_an_error_without_the_key(cli, monkeypatch, tmp_path):
    from coinline.app import build_app
    from coinline.ingest.backfill import backfill
    from coinline.settings import load_settings

    monkeypatch.setenv("COINLINE_VENUE", "replay")
    monkeypatch.setenv("HIST_MARKET_DATA_API_KEY", CANARY)
    with build_app(load_settings()) as app:
        app.replay.required_coinapi_key = "another-key"  # the venue now rejects our canary key
        (outcome,) = backfill(app.hist_source(), app.lake, [("BTC", "USD", "1h")], now=app.now, progress=False)
    assert outcome.status == "error" and "401" in outcome.message
    assert CANARY not in outcome.message and _leaks(tmp_path) == []
