"""The live loop a user sees on the offline venue: after the data job, `coinline forecast` gives decision
inputs for every coin from the declared baseline (nothing promoted), the clock moves on, `coinline sync`
brings the realized candles, and `coinline scoreboard` scores the forecasts that matured."""

import json

from coinline.cli import main

T0 = "2026-06-01T12:30:00Z"


def _run(capsys, now, *args, expect=0):
    capsys.readouterr()
    code = main(["--now", now, *args])
    out = capsys.readouterr()
    assert code == expect, f"exit {code}: {out.out[-1500:]} {out.err[-1500:]}"
    return out.out


def test_forecast_then_sync_forward_then_score(cli, capsys):
    _run(capsys, T0, "run", "--no-train", "--json")
    doc = json.loads(_run(capsys, T0, "forecast", "--json"))
    assert doc["note"] == "no active model set: the champion is the declared baseline (climatology)"
    assert {(f["symbol"], f["horizon"]) for f in doc["forecasts"]} == {
        (s, h) for s in ("BTC", "ETH", "TRX") for h in (1, 4, 24)}
    assert {f["forecast_time"] for f in doc["forecasts"]} == {"2026-06-01T12:00:00+00:00"}
    board = json.loads(_run(capsys, T0, "scoreboard", "--json"))
    assert board["rows"] == {"ledger": 9, "matured": 0, "pending": 9, "missing_candle": 0}
    # six hours later: the hourly forecasts of every hour since have been made, and the 1h and 4h ones matured
    for hour in range(13, 19):
        now = f"2026-06-01T{hour:02d}:05:00Z"
        _run(capsys, now, "sync", "--quotes", "USD", "--json")
        _run(capsys, now, "forecast", "--json")
    board = json.loads(_run(capsys, "2026-06-01T18:05:00Z", "scoreboard", "--json"))
    assert board["rows"]["ledger"] == 7 * 9
    matured = {(p["horizon"]): p["n_rows"] for p in board["pooled"]}
    assert matured == {1: 3 * 6, 4: 3 * 3}           # forecast at 12..17h (1h), 12..14h (4h); none at 24h
    text = _run(capsys, "2026-06-01T18:05:00Z", "scoreboard")
    assert "baseline:climatology" in text and "champion" in text
