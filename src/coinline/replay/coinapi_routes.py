"""CoinAPI Market Data REST v1 routes: /v1/symbols[/{exchange_id}], /v1/ohlcv/{symbol_id}/history|latest,
/v1/ohlcv/periods. Errors are `{"error": "..."}`: 400 bad parameter, 401 bad key, 429 quota, 550 unknown
symbol. Every answer carries the x-ratelimit-* headers (cost = ceil(rows / 100), at least 1)."""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import numpy as np

from coinline.replay.market import CandleArrays
from coinline.replay.reply import Reply, iso7
from coinline.timeframes import interval_seconds, ms, parse_iso_utc

if TYPE_CHECKING:
    from coinline.replay.server import ReplayServer

PERIODS = {"1MIN": "1m", "5MIN": "5m", "15MIN": "15m", "30MIN": "30m", "1HRS": "1h", "4HRS": "4h",
           "1DAY": "1d", "7DAY": "7d"}
_COINAPI_PERIOD = re.compile(r"^\d+(SEC|MIN|HRS|DAY|MTH|YRS)$")
_WEEK_MS = 7 * 86_400_000
MAX_LIMIT = 100_000


class BadRequest(ValueError):
    pass


def handle(srv: ReplayServer, path: str, params: dict[str, str], headers: Any) -> Reply:
    if srv.required_coinapi_key is not None:
        key = headers.get("X-CoinAPI-Key") or headers.get("Authorization") or params.get("apikey")
        if key != srv.required_coinapi_key:
            return _limits(srv, Reply(401, {"error": "Invalid API key"}))
    if srv.coinapi_quota_spent():
        return _limits(srv, Reply(429, {"error": "You have exceeded your API key rate limits"}))
    parts = [p for p in path.split("/") if p]
    try:
        if parts[:2] == ["v1", "symbols"] and len(parts) <= 3:
            records = symbols(srv, parts[2] if len(parts) == 3 else None, params)
            return _limits(srv, Reply(200, records, rows=records))
        if parts == ["v1", "ohlcv", "periods"]:
            return _limits(srv, Reply(200, [_period_record(p) for p in PERIODS]))
        if len(parts) == 4 and parts[:2] == ["v1", "ohlcv"] and parts[3] in ("history", "latest"):
            return _limits(srv, ohlcv(srv, parts[2], parts[3], params))
    except BadRequest as exc:
        return _limits(srv, Reply(400, {"error": str(exc)}))
    return _limits(srv, Reply(404, {"error": f"Unknown endpoint {path}"}))


def _limits(srv: ReplayServer, reply: Reply) -> Reply:
    rows = len(reply.rows) if reply.rows is not None and reply.status == 200 else 0
    cost = max(1, math.ceil(rows / 100))
    limit, used = srv.coinapi_charge(cost if reply.status == 200 else 0)
    reset = datetime.now(UTC) + timedelta(days=1)
    reply.headers.update({
        "x-ratelimit-limit": str(limit),
        "x-ratelimit-remaining": str(limit - used),
        "x-ratelimit-request-cost": str(cost),
        "x-ratelimit-reset": iso7(int(reset.timestamp() * 1e9)),
        "x-ratelimit-used": str(used),
        "x-ratelimit-overage": "ENABLED" if srv.coinapi_overage else "DISABLED",
        "x-concurrencylimit-limit": "10",
        "x-concurrencylimit-remaining": "10",
    })
    return reply


def _parts(value: str | None) -> list[str]:
    return [p.strip() for p in re.split(r"[,;]", value or "") if p.strip()]


def symbol_map(srv: ReplayServer) -> dict[str, tuple[str, str]]:
    """CoinAPI symbol_id -> (universe symbol, quote), e.g. KRAKEN_SPOT_BTC_USD -> (BTC, USD)."""
    ex = srv.coinapi_exchange
    return {f"{ex}_SPOT_{srv.market.universe.coin(s).coinapi_asset_id}_{q}": (s, q) for s, q in srv.market.pairs()}


def symbols(srv: ReplayServer, exchange_id: str | None, params: dict[str, str]) -> list[dict]:
    m = srv.market
    ex = srv.coinapi_exchange
    if exchange_id is not None and exchange_id.upper() != ex:
        return []
    f_sym, f_ex, f_asset = _parts(params.get("filter_symbol_id")), _parts(params.get("filter_exchange_id")), \
        _parts(params.get("filter_asset_id"))
    if f_ex and ex not in [e.upper() for e in f_ex]:
        return []
    out = []
    usd_price: dict[str, float] = {}
    now_ns = ms(m.now) * 1_000_000
    for sid, (sym, q) in symbol_map(srv).items():
        coin = m.universe.coin(sym)
        if f_sym and not any(p in sid for p in f_sym):
            continue
        if f_asset and not ({coin.coinapi_asset_id, q} & {a.upper() for a in f_asset}):
            continue
        if sym not in usd_price:
            last = m.recent(sym, "USD", "1h", 1)
            usd_price[sym] = float(last.close[-1]) if len(last) else m.profile(sym).level
        hour, days = m.recent(sym, q, "1h", 1), m.recent(sym, q, "1d", 30)
        v1h = float(hour.volume[-1]) if len(hour) else 0.0
        v1d = float(days.volume[-1]) if len(days) else 0.0
        v1m = float(days.volume.sum()) if len(days) else 0.0
        start_ns = ms(m.listing_start(sym, q, "1m")) * 1_000_000
        # the first and last trade, as CoinAPI lists them: minutes without trades are no data
        first_trade, last_trade = m.arrays(sym, q, "1m", limit=1), m.recent(sym, q, "1m", 1)
        first_ns = int(first_trade.open_time[0]) * 1_000_000 if len(first_trade) else start_ns
        last_ns = int(last_trade.open_time[-1]) * 1_000_000 if len(last_trade) else now_ns
        pair = coin.kraken_pairs.get(q, {})
        out.append({
            "symbol_id": sid, "exchange_id": ex, "symbol_type": "SPOT",
            "asset_id_base": coin.coinapi_asset_id, "asset_id_quote": q,
            "data_start": iso7(start_ns)[:10], "data_end": iso7(now_ns)[:10],
            "data_quote_start": iso7(start_ns), "data_quote_end": iso7(now_ns),
            "data_orderbook_start": iso7(start_ns), "data_orderbook_end": iso7(now_ns),
            "data_trade_start": iso7(first_ns), "data_trade_end": iso7(last_ns),
            "volume_1hrs": round(v1h, 8), "volume_1hrs_usd": round(v1h * usd_price[sym], 2),
            "volume_1day": round(v1d, 8), "volume_1day_usd": round(v1d * usd_price[sym], 2),
            "volume_1mth": round(v1m, 8), "volume_1mth_usd": round(v1m * usd_price[sym], 2),
            "price": float(hour.close[-1]) if len(hour) else None,
            "symbol_id_exchange": pair.get("pair_key", f"{coin.kraken_altname}{q}"),
            "asset_id_base_exchange": coin.kraken_altname, "asset_id_quote_exchange": q,
            "price_precision": 10.0 ** -m.price_decimals(sym), "size_precision": 10.0 ** -m.volume_decimals(sym),
        })
    return out


def _int(params: dict[str, str], name: str, default: int, lo: int, hi: int) -> int:
    raw = params.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise BadRequest(f"Invalid value of the '{name}' parameter: {raw!r}") from None
    if not lo <= value <= hi:
        raise BadRequest(f"The '{name}' parameter must be between {lo} and {hi}, got {value}")
    return value


def _time(params: dict[str, str], name: str) -> datetime | None:
    raw = params.get(name)
    if raw is None:
        return None
    try:
        return parse_iso_utc(raw)
    except ValueError:
        raise BadRequest(f"Invalid value of the '{name}' parameter: {raw!r} is not ISO 8601") from None


def ohlcv(srv: ReplayServer, sid: str, kind: str, params: dict[str, str]) -> Reply:
    pair = symbol_map(srv).get(sid.upper())
    period = params.get("period_id", "")
    if period.upper() not in PERIODS:
        why = "not supported by the replay venue" if _COINAPI_PERIOD.match(period.upper()) else "invalid"
        raise BadRequest(f"The 'period_id' parameter {period!r} is {why}")
    limit = _int(params, "limit", 100, 1, MAX_LIMIT)
    start, end = _time(params, "time_start"), _time(params, "time_end")
    if start and end and end <= start:
        raise BadRequest("The 'time_end' parameter must be later than 'time_start'")
    if pair is None:
        return Reply(550, {"error": "No data"})
    sym, q = pair
    iv = PERIODS[period.upper()]
    m = srv.market
    if iv == "7d":
        days = m.arrays(sym, q, "1d", _week_floor(start), end) if kind == "history" else m.recent(sym, q, "1d", 7 * limit + 7)
        a = _weekly(days, ms(m.now))
        if start is not None:
            a = a.take(a.open_time >= ms(start))
        a = a.take(slice(0, limit) if kind == "history" else slice(max(0, len(a) - limit), None))
        step = 7 * 86400
        empties: list[int] = []
    elif kind == "history":
        a = m.arrays(sym, q, iv, start, end, limit=limit)
        step = interval_seconds(iv)
        empties = []
        if params.get("include_empty_items", "false").lower() == "true":
            lo, hi = ms(start) if start else 0, ms(end) if end else 1 << 62
            empties = [ms(t) for t in m.missing(sym, q, iv) if lo <= ms(t) < hi]
    else:
        a = m.recent(sym, q, iv, limit)
        step, empties = interval_seconds(iv), []
    records = records_of(a, step, empties)
    if kind == "history":
        records = records[:limit]
    else:
        records.reverse()
    return Reply(200, records, rows=records)


def records_of(a: CandleArrays, step_s: int, empties: list[int]) -> list[dict]:
    """CoinAPI TimeseriesItem records; `empties` (open times in ms) become null-price items."""
    step_ns = step_s * 1_000_000_000
    start_ns = a.open_time.astype(np.int64) * 1_000_000
    n = np.maximum(a.trade_count, 1)
    names = ("time_period_start", "time_period_end", "time_open", "time_close")
    cols = [_iso7_many(x) for x in (start_ns, start_ns + step_ns, start_ns + step_ns // (2 * n),
                                    start_ns + step_ns - step_ns // (2 * n))]
    out = [dict(zip(names, ts, strict=True)) | {
        "price_open": float(o), "price_high": float(h), "price_low": float(lo), "price_close": float(c),
        "volume_traded": float(v), "trades_count": int(k)}
        for *ts, o, h, lo, c, v, k in zip(*cols, a.open, a.high, a.low, a.close, a.volume, a.trade_count, strict=True)]
    if empties:
        e_ns = np.array(empties, dtype=np.int64) * 1_000_000
        starts, ends = _iso7_many(e_ns), _iso7_many(e_ns + step_ns)
        out += [{"time_period_start": s, "time_period_end": e, "time_open": None, "time_close": None,
                 "price_open": None, "price_high": None, "price_low": None, "price_close": None,
                 "volume_traded": 0.0, "trades_count": 0} for s, e in zip(starts, ends, strict=True)]
        out.sort(key=lambda r: r["time_period_start"])
    return out


def _iso7_many(ns: np.ndarray) -> list[str]:
    text = np.datetime_as_string(ns.astype("datetime64[ns]"), unit="ns")
    return [t[:-2] + "Z" for t in text.tolist()]


def _week_floor(t: datetime | None) -> datetime | None:
    if t is None:
        return None
    return datetime.fromtimestamp(ms(t) // _WEEK_MS * _WEEK_MS / 1000, tz=UTC)


def _weekly(d: CandleArrays, now_ms: int) -> CandleArrays:
    """Aggregate daily candles into closed epoch-aligned weeks."""
    if not len(d):
        return d
    week = d.open_time // _WEEK_MS
    _, first = np.unique(week, return_index=True)
    last = np.append(first[1:], len(week)) - 1
    w = CandleArrays(week[first] * _WEEK_MS, d.open[first], np.maximum.reduceat(d.high, first),
                     np.minimum.reduceat(d.low, first), d.close[last], np.add.reduceat(d.volume, first),
                     np.add.reduceat(d.trade_count, first))
    return w.take(w.open_time + _WEEK_MS <= now_ms)


def _period_record(pid: str) -> dict:
    iv = PERIODS[pid]
    secs = 7 * 86400 if iv == "7d" else interval_seconds(iv)
    unit, count = next((u, secs // s) for u, s in (("DAY", 86400), ("HRS", 3600), ("MIN", 60)) if secs % s == 0)
    name = {"DAY": "day", "HRS": "hour", "MIN": "minute"}[unit]
    return {"period_id": pid, "length_seconds": secs, "length_months": 0, "unit_count": count,
            "unit_name": name, "display_name": f"{count} {name.title()}{'s' if count > 1 else ''}"}
