"""Through the `coinline` command: a history page that stays empty (or short) after every retry is never
`ok`. `backfill` exits 1 naming the gap, `status` and `gaps` list it, `materialize` refuses a dataset
covering it, and a later backfill that gets the candles closes it. Retries show with `-v`.

The embedded replay venue of each command gets its faults armed as it is built; the gateways record
their backoff waits instead of sleeping (attempts are counted, never timed). The clock is pinned to the
top of an hour: CoinAPI's listing vouches for the candle holding the last trade, which has then closed,
so a page stopping short of it contradicts the listing (mid-candle, a short last page is the real end
as far as anyone can tell)."""

from __future__ import annotations

import functools
import json

import pytest

import coinline.app as app_module
from coinline.errors import QualityGateError
from coinline.providers.http import Gateway, RetryPolicy, backoff_delay

SERIES = ("--symbols", "BTC", "--quotes", "USD", "--intervals", "1h")
ON_THE_HOUR = ("--now", "2026-06-01T12:00:00Z")
LABEL = "coinapi:KRAKEN:BTC-USD:1h"
ATTEMPTS = RetryPolicy().max_attempts
EVERY_WAIT = [backoff_delay(i, RetryPolicy()) for i in range(1, ATTEMPTS)]


@pytest.fixture
def venue(monkeypatch):
    """(faults to arm on every command's replay venue, the waits every gateway asked for)."""
    arms: list = []
    waits: list[float] = []
    build = app_module.build_app

    def build_armed(settings, **kw):
        app = build(settings, **kw)
        if app.replay is not None:
            for arm in arms:
                arm(app.replay.faults)
        return app

    monkeypatch.setattr(app_module, "build_app", build_armed)
    monkeypatch.setattr(app_module, "Gateway", functools.partial(Gateway, sleep=waits.append))
    return arms, waits


def _json(out) -> list[dict]:
    return json.loads(out.out)


@pytest.mark.parametrize("fault", ["empty_pages", "short_pages"])
def test_a_page_still_wrong_after_every_retry_is_a_named_gap_until_a_backfill_fills_it(cli, venue, fault):
    arms, waits = venue
    arms.append(lambda faults: getattr(faults, fault)(ATTEMPTS, path="KRAKEN_SPOT_BTC_USD/history"))

    out = cli(*ON_THE_HOUR, "-v", "backfill", "--json", *SERIES, expect=1)

    (row,) = _json(out)
    assert (row["series"], row["status"]) == (LABEL, "incomplete")
    assert "unexplained gap(s) recorded: [" in row["message"]
    assert f"gave up after {ATTEMPTS} attempts: {fault.split('_')[0]} page" in row["message"]
    assert waits == EVERY_WAIT
    retries = [line for line in out.err.splitlines() if "coinline.providers.http: coinapi: retry" in line]
    assert len(retries) == ATTEMPTS - 1 and "retry 1 of 5 in 0.5s after:" in retries[0]
    assert f"{fault.split('_')[0]} page" in retries[0] and "INFO" in retries[0]

    (gap,) = _json(cli(*ON_THE_HOUR, "gaps", "--json"))
    assert (gap["series"], gap["status"]) == (LABEL, "unexplained") and gap["missing_candles"] > 0
    assert "listing of KRAKEN_SPOT_BTC_USD says one exists" in gap["answer"]
    status = {r["series"]: r for r in _json(cli(*ON_THE_HOUR, "status", "--json"))}
    assert status[LABEL]["missing_candles"] == gap["missing_candles"]
    refused = cli(*ON_THE_HOUR, "materialize", "--json", "--intervals", "1h", "--quotes", "USD",
                  expect=getattr(QualityGateError, "exit_code", 2))
    assert "unexplained gap(s) block the dataset" in refused.err and LABEL in refused.err

    arms.clear()
    (again,) = _json(cli(*ON_THE_HOUR, "backfill", "--json", *SERIES))

    assert again["status"] == "ok" and again["inserted"] > 0
    assert _json(cli(*ON_THE_HOUR, "gaps", "--json")) == []
    assert {r["series"]: r for r in _json(cli(*ON_THE_HOUR, "status", "--json"))}[LABEL]["missing_candles"] == 0


def test_without_faults_the_backfill_is_ok_and_records_nothing(cli, venue):
    (row,) = _json(cli("backfill", "--json", *SERIES))
    assert row["status"] == "ok" and venue[1] == []
    assert _json(cli("gaps", "--json")) == []
