"""The `forecasts` ledger's row schema (a Delta table in the lake, append-only, create-only per key).

One row per (model_set, symbol, quote, interval, horizon, decision_time). Times are UTC:
    decision_time   open_time of the last CLOSED candle the forecast used (row t of the features)
    forecast_time   decision_time + interval: the moment that candle closed and the forecast became possible
    target_time     forecast_time + horizon * interval: when the forecast matures
The forecast is for the log return  log(close[decision_time + horizon*interval] / close[decision_time]),
i.e. from the close of the decision candle to the close of the candle `horizon` bars later.
Baseline probabilities are fixed at forecast time from the set's own training window, so scoring never
fits anything on the outcomes it scores.
"""

from __future__ import annotations

import pyarrow as pa

TS = pa.timestamp("us", tz="UTC")
REGIME_COLUMNS = ("regime_trend", "regime_range", "regime_high_vol", "regime_stress")
KEY_COLUMNS = ("model_set", "symbol", "quote", "interval", "horizon", "decision_time")

FORECASTS_SCHEMA = pa.schema([
    pa.field("model_set", pa.string(), False),       # run id, or "baseline:climatology"
    pa.field("set_hash", pa.string(), False),        # the set's manifest content hash
    pa.field("role", pa.string(), False),            # champion | shadow | study (at the time of the forecast)
    pa.field("symbol", pa.string(), False),
    pa.field("quote", pa.string(), False),
    pa.field("interval", pa.string(), False),
    pa.field("source", pa.string(), False),          # the lake source the inputs were read from
    pa.field("horizon", pa.int32(), False),          # bars ahead
    pa.field("decision_time", TS, False),
    pa.field("forecast_time", TS, False),
    pa.field("target_time", TS, False),
    pa.field("p_up", pa.float64(), False),           # P(log return over the horizon > 0)
    pa.field("expected_move", pa.float64(), False),  # expected log return: (2 p_up - 1) * expected_abs_move
    pa.field("expected_abs_move", pa.float64(), False),  # risk: expected |log return| over the horizon
    pa.field("volatility", pa.float64(), False),     # trailing 1-bar volatility * sqrt(horizon)
    pa.field("confidence", pa.float64(), False),     # |2 p_up - 1|
    *(pa.field(c, pa.float64(), False) for c in REGIME_COLUMNS),   # regime posteriors (sum to 1)
    pa.field("p_base_rate", pa.float64(), False),    # climatology baseline, fixed at forecast time
    pa.field("p_momentum", pa.float64(), False),     # sign-of-trailing-return baseline, fixed at forecast time
    pa.field("combiner", pa.string(), False),        # how p_up was made: stacked | base_rate | mean | member:<family> | climatology
    pa.field("dataset_hash", pa.string(), False),    # the set's training dataset
    pa.field("input_hash", pa.string(), False),      # SHA-256 over the candles the forecast read
    pa.field("batch_id", pa.string(), False),
    pa.field("created_at", TS, False),
])
