"""The report's Live section, drawn from the forecasts ledger: forward scores over time, champion vs shadows
on the same matured rows, the champion's latest forecast per coin; "no forecasts recorded yet" without rows."""

from __future__ import annotations

import base64
import io
import re

import numpy as np
from PIL import Image

from coinline.forecasting import ledger
from coinline.report import build_report, report_content
from tests.report import SECTIONS
from tests.report.ledger_data import HOUR, T0, commit_walk, forecast_rows

RUN = "run-live"
NOW = T0 + 119 * HOUR      # candles 0..119: the forecast of hour 118 (h=1) is still pending


def _section(html: str, sid: str) -> str:
    m = re.search(rf'<section id="{sid}".*?</section>', html, re.S)
    assert m, f"no section {sid}"
    return m.group(0)


def _minimal_run(lake, run_id: str = RUN) -> None:
    lake.write_json(f"runs/{run_id}/metrics.json", {"run_id": run_id, "dataset_id": "no-such-dataset",
                                                    "per_coin": {}, "simulation": {}, "primary_horizon": 1})


def _ledger(lake) -> None:
    commit_walk(lake, ("BTC", "ETH"), 120, seed=3)
    rng = np.random.default_rng(4)
    noise = rng.normal(0, 0.04, (2, 200))

    def p(scale):
        return lambda sym, h: 0.5 + scale * noise[("BTC", "ETH").index(sym), h]

    last = {"BTC": 0.6123, "ETH": 0.4321}
    champ = forecast_rows(RUN, ("BTC", "ETH"), range(118), p_up=p(1.0), base_rate=0.51)
    newest = forecast_rows(RUN, ("BTC", "ETH"), [118], p_up=lambda sym, h: last[sym], base_rate=0.51,
                           regimes=(0.1, 0.2, 0.65, 0.05), abs_move=0.02)
    longer = forecast_rows(RUN, ("BTC", "ETH"), range(110), horizon=4, p_up=p(0.5), base_rate=0.51)
    ledger.record(lake, champ, role="champion", now=NOW)
    ledger.record(lake, newest, role="champion", now=NOW)
    ledger.record(lake, longer, role="champion", now=NOW)
    shadow = forecast_rows("run-shadow", ("BTC", "ETH"), range(100), p_up=p(-1.0), base_rate=0.5)
    ledger.record(lake, shadow, role="shadow", now=NOW)


def test_the_live_section_shows_scores_head_to_head_and_the_latest_forecasts(lake):
    _minimal_run(lake)
    _ledger(lake)
    html = build_report(lake, RUN, generated_at=NOW)
    assert re.findall(r'<section id="([^"]+)"', html) == list(SECTIONS)
    live = _section(html, "live")
    assert "no forecasts recorded yet" not in live.lower()
    # the forward-score figure, a real PNG
    src = re.search(r'<figure data-plot="live_scores"><img src="data:image/png;base64,([^"]+)"', live)
    assert src, "no live_scores figure"
    img = Image.open(io.BytesIO(base64.b64decode(src.group(1), validate=True)))
    assert img.format == "PNG" and img.size[0] > 300 and img.size[1] > 150
    # facts: matured / pending counts as of generated_at
    assert "run-live (champion)" in live and "run-shadow (shadow)" in live
    assert NOW.isoformat() in live
    # pooled forward scores per set and horizon
    assert "Forward scores per model set" in live and "LL skill vs base" in live
    # champion vs shadows on the same matured rows: one row, run-live vs run-shadow at h=1, 2 coins x 100 hours
    h2h = re.search(r"<h3>Champion vs shadows.*?</table>", live, re.S)
    assert h2h, "no head-to-head table"
    body = h2h.group(0)
    assert "run-live" in body and "run-shadow" in body and ">200<" in body
    # the latest champion forecast per coin and horizon
    last = re.search(r"<h3>Latest champion forecast per coin and horizon.*?</table>", live, re.S).group(0)
    for text in ("BTC-USD", "ETH-USD", "0.6123", "0.4321", "high vol (0.65)", (T0 + 118 * HOUR).isoformat(),
                 (T0 + 109 * HOUR).isoformat(), "pending", "matured", "trend (0.60)"):
        assert text in last, text
    assert last.count("<tr>") == 1 + 4                      # header + 2 coins x 2 horizons
    assert "run-shadow" not in last
    for needle in ("http://", "https://", "file://", "url(", "@import"):
        assert needle not in html
    keys = [p.key for p in report_content(lake, RUN, generated_at=NOW).plots()]
    assert keys == ["live_scores"]


def test_an_empty_ledger_says_no_forecasts_recorded_yet(lake):
    _minimal_run(lake)
    html = build_report(lake, RUN, generated_at=NOW)
    live = _section(html, "live")
    assert "no forecasts recorded yet" in live.lower()
    assert "<figure" not in live and "<table" not in live


def test_forecasts_that_have_not_matured_render_without_scores(lake):
    _minimal_run(lake)
    rows = forecast_rows(RUN, ("BTC",), range(5), p_up=0.55)           # no candles in the lake: nothing matures
    ledger.record(lake, rows, role="shadow", now=NOW)
    live = _section(build_report(lake, RUN, generated_at=NOW), "live")
    assert "no forecasts recorded yet" not in live.lower() and "<figure" not in live
    assert "no champion forecasts in the ledger yet" in live
    assert "no champion and shadow sets with matured forecasts yet" in live
