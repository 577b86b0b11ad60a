"""Kraken public REST routes: /0/public/AssetPairs, OHLC, Trades, Time.

Envelope `{"error": [...], "result": {...}}`; API errors come with HTTP 200 (`EQuery:Unknown asset pair`,
`EGeneral:Invalid arguments`). OHLC returns at most 720 rows: the newest committed candles with
time > since, then the still-open candle (always present); `last` is the newest committed candle's time.
Trades: up to 1000 (or `count`) trades after `since` (nanoseconds, exclusive), else the newest;
`last` is the last trade's nanosecond time as a string.
"""

from __future__ import annotations

from dataclasses import dataclass
from email.utils import format_datetime
from typing import TYPE_CHECKING, Any

from coinline.replay.reply import Reply
from coinline.replay.trades import format_units
from coinline.timeframes import ms

if TYPE_CHECKING:
    from coinline.replay.market import SimulatedMarket
    from coinline.replay.server import ReplayServer

INTERVALS = {1: "1m", 5: "5m", 15: "15m", 30: "30m", 60: "1h", 240: "4h", 1440: "1d"}
OHLC_ROWS = 720
TRADES_MAX = 1000
_FIAT = {"USD", "CAD", "EUR", "GBP", "JPY", "CHF", "AUD"}
_TAKER = [[0, 0.4], [10000, 0.35], [50000, 0.24], [100000, 0.22], [250000, 0.2], [500000, 0.18],
          [1000000, 0.16], [2500000, 0.14], [5000000, 0.12], [10000000, 0.1], [100000000, 0.08], [500000000, 0.05]]
_MAKER = [[0, 0.25], [10000, 0.2], [50000, 0.14], [100000, 0.12], [250000, 0.1], [500000, 0.08],
          [1000000, 0.06], [2500000, 0.04], [5000000, 0.02], [10000000, 0.0], [100000000, 0.0], [500000000, 0.0]]


@dataclass(frozen=True)
class KrakenPair:
    symbol: str
    quote: str
    key: str          # XXBTZUSD
    altname: str      # XBTUSD


def pairs(market: SimulatedMarket) -> dict[str, KrakenPair]:
    """Every listed pair, reachable by its key and by its altname (upper case)."""
    out: dict[str, KrakenPair] = {}
    for sym, q in market.pairs():
        coin = market.universe.coin(sym)
        info = coin.kraken_pairs.get(q, {})
        alt = info.get("altname", f"{coin.kraken_altname}{q}")
        p = KrakenPair(sym, q, info.get("pair_key", alt), alt)
        out[p.key.upper()] = out[p.altname.upper()] = p
    return out


def _error(*messages: str) -> Reply:
    return Reply(200, {"error": list(messages)})


def handle(srv: ReplayServer, path: str, params: dict[str, str], headers: Any) -> Reply:
    name = path.rstrip("/").rsplit("/", 1)[-1]
    if not path.startswith("/0/public/"):
        return Reply(404, {"error": ["EGeneral:Unknown method"]})
    if name == "Time":
        now = srv.market.now
        return Reply(200, {"error": [], "result": {"unixtime": int(now.timestamp()),
                                                   "rfc1123": format_datetime(now, usegmt=True)}})
    if name == "AssetPairs":
        return asset_pairs(srv.market, params)
    if name not in ("OHLC", "Trades"):
        return Reply(404, {"error": ["EGeneral:Unknown method"]})
    if not params.get("pair"):
        return _error("EGeneral:Invalid arguments")
    pair = pairs(srv.market).get(params["pair"].upper())
    if pair is None:
        return _error("EQuery:Unknown asset pair")
    try:
        return ohlc(srv.market, pair, params) if name == "OHLC" else trades(srv.market, pair, params)
    except ValueError:
        return _error("EGeneral:Invalid arguments")


def asset_pairs(market: SimulatedMarket, params: dict[str, str]) -> Reply:
    index = pairs(market)
    wanted = [p.strip().upper() for p in params.get("pair", "").split(",") if p.strip()]
    if wanted:
        if any(w not in index for w in wanted):
            return _error("EQuery:Unknown asset pair")
        chosen = [index[w] for w in wanted]
    else:
        chosen = list({p.key: p for p in index.values()}.values())
    return Reply(200, {"error": [], "result": {p.key: _pair_record(market, p) for p in chosen}})


def _asset(code: str) -> str:
    return f"Z{code}" if code in _FIAT else code


def _pair_record(market: SimulatedMarket, p: KrakenPair) -> dict:
    coin = market.universe.coin(p.symbol)
    prof = market.profile(p.symbol)
    pdec, vdec = prof.price_decimals, prof.volume_decimals
    ordermin = float(f"{5.0 / prof.level:.1g}")
    major = p.quote in ("USD", "USDC") and coin.rank <= 10
    rec = {
        "altname": p.altname, "wsname": f"{coin.kraken_altname}/{p.quote}", "aclass_base": "currency",
        "base": coin.kraken_asset_id or coin.kraken_altname, "aclass_quote": "currency", "quote": _asset(p.quote),
        "lot": "unit", "cost_decimals": 5, "pair_decimals": pdec, "lot_decimals": vdec, "lot_multiplier": 1,
        "leverage_buy": [2, 3, 4, 5] if major else [], "leverage_sell": [2, 3, 4, 5] if major else [],
        "fees": _TAKER, "fees_maker": _MAKER, "fee_volume_currency": "ZUSD", "margin_call": 80, "margin_stop": 40,
        "ordermin": f"{ordermin:f}".rstrip("0").rstrip("."), "costmin": "0.5",
        "tick_size": f"{10.0 ** -pdec:.{pdec}f}", "status": "online",
    }
    if major:
        rec["long_position_limit"] = rec["short_position_limit"] = int(2_000_000 / prof.level) or 1
    return rec


def _num(params: dict[str, str], name: str) -> float | None:
    raw = params.get(name)
    return None if raw in (None, "") else float(raw)


def ohlc(market: SimulatedMarket, pair: KrakenPair, params: dict[str, str]) -> Reply:
    minutes = int(params.get("interval", "1"))
    if minutes not in INTERVALS:
        raise ValueError(minutes)
    iv = INTERVALS[minutes]
    since = _num(params, "since")
    pdec = market.price_decimals(pair.symbol)
    vdec = market.volume_decimals(pair.symbol)
    closed = market.recent(pair.symbol, pair.quote, iv, OHLC_ROWS - 1)
    rows: list[list] = []
    for t, o, h, lo, c, v, n in zip(closed.open_time // 1000, closed.open, closed.high, closed.low, closed.close,
                                    closed.volume, closed.trade_count, strict=True):
        if since is None or t > since:
            rows.append(_row(int(t), o, h, lo, c, v, int(n), pdec, vdec))
    step = minutes * 60
    last = int(closed.open_time[-1] // 1000) if len(closed) else (ms(market.now) // 1000 // step - 1) * step
    live = market.open_candle(pair.symbol, pair.quote, iv)
    if live is not None:
        rows.append(_row(live["open_time"] // 1000, live["open"], live["high"], live["low"], live["close"],
                         live["volume"], live["trade_count"], pdec, vdec))
    return Reply(200, {"error": [], "result": {pair.key: rows, "last": last}}, rows=rows)


def _row(t: int, o: float, h: float, lo: float, c: float, v: float, n: int, pdec: int, vdec: int) -> list:
    vwap = min(h, max(lo, round((h + lo + 2 * c) / 4, pdec)))
    units = round(float(v) * 10**vdec)
    return [t, f"{o:.{pdec}f}", f"{h:.{pdec}f}", f"{lo:.{pdec}f}", f"{c:.{pdec}f}", f"{vwap:.{pdec}f}",
            format_units(units, vdec), n]


def trades(market: SimulatedMarket, pair: KrakenPair, params: dict[str, str]) -> Reply:
    since = _num(params, "since")
    count = int(params.get("count", str(TRADES_MAX)))
    if not 1 <= count <= TRADES_MAX:
        raise ValueError(count)
    since_ns = None
    if since is not None:
        since_ns = int(since) * 1_000_000_000 if since < 1e11 else int(params["since"].split(".")[0])
    got, last = market.trades(pair.symbol, pair.quote, since_ns, count)
    rows = got.kraken_rows()
    return Reply(200, {"error": [], "result": {pair.key: rows, "last": str(last)}}, rows=rows)
