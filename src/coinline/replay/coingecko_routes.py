"""CoinGecko v3 routes: /api/v3/ping, /api/v3/coins/list, /api/v3/coins/markets.

`coins/markets` lists the universe coins (priced from the simulated USD market), stablecoins and
wrapped/staked tokens, two other coins (dogecoin, hyperliquid: always just below the smallest universe
coin, so a refresh on replay reproduces the universe) and filler tokens, ranked by market cap.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from coinline.replay.profiles import crc
from coinline.replay.reply import Reply, iso_ms
from coinline.replay.trades import hash_u01
from coinline.timeframes import ms

if TYPE_CHECKING:
    from coinline.replay.market import SimulatedMarket
    from coinline.replay.server import ReplayServer

ALWAYS_FIELDS = ("id", "symbol", "name", "image", "current_price", "market_cap", "market_cap_rank",
                 "fully_diluted_valuation", "total_volume", "high_24h", "low_24h", "price_change_24h",
                 "price_change_percentage_24h", "market_cap_change_24h", "market_cap_change_percentage_24h",
                 "circulating_supply", "total_supply", "max_supply", "ath", "ath_change_percentage", "ath_date",
                 "atl", "atl_change_percentage", "atl_date", "roi", "last_updated")
MAX_PER_PAGE = 250
FILLERS = 260
_CHANGE_DAYS = {"1h": None, "24h": 1, "7d": 7, "14d": 14, "30d": 30, "200d": 200, "1y": 365}


@dataclass(frozen=True)
class Extra:
    id: str
    symbol: str
    name: str
    supply: float
    tracks: str | None = None     # universe symbol it wraps (None: a USD stablecoin)
    ratio: float = 1.0


EXTRAS = (
    Extra("tether", "usdt", "Tether", 142.5e9),
    Extra("usd-coin", "usdc", "USDC", 56.3e9),
    Extra("staked-ether", "steth", "Lido Staked Ether", 9.38e6, "ETH", 0.999),
    Extra("wrapped-bitcoin", "wbtc", "Wrapped Bitcoin", 129e3, "BTC", 0.998),
    Extra("weth", "weth", "WETH", 2.87e6, "ETH", 1.0),
    Extra("wrapped-steth", "wsteth", "Wrapped stETH", 3.55e6, "ETH", 1.21),
    Extra("ethena-usde", "usde", "Ethena USDe", 5.45e9),
    Extra("dai", "dai", "Dai", 5.3e9),
    Extra("usds", "usds", "USDS", 7.94e9),
    Extra("first-digital-usd", "fdusd", "First Digital USD", 1.9e9),
)
OTHERS = (("dogecoin", "doge", "Dogecoin", 0.18, 0.9), ("hyperliquid", "hype", "Hyperliquid", 15.0, 0.8))


def handle(srv: ReplayServer, path: str, params: dict[str, str], headers: Any) -> Reply:
    sub = path[len("/api/v3"):].rstrip("/")
    if sub == "/ping":
        return Reply(200, {"gecko_says": "(V3) To the Moon!"})
    if sub == "/coins/list":
        rows = [{"id": r["id"], "symbol": r["symbol"], "name": r["name"]} for r in market_rows(srv.market)]
        rows.sort(key=lambda r: r["id"])
        return Reply(200, rows, rows=rows)
    if sub == "/coins/markets":
        return coins_markets(srv.market, params)
    return Reply(404, {"error": "Not Found"})


def coins_markets(market: SimulatedMarket, params: dict[str, str]) -> Reply:
    vs = params.get("vs_currency")
    if not vs:
        return Reply(400, {"error": "Missing parameter vs_currency"})
    if vs.lower() != "usd":
        return Reply(400, {"error": "invalid vs_currency"})
    try:
        per_page = min(MAX_PER_PAGE, max(1, int(params.get("per_page", "100"))))
        page = max(1, int(params.get("page", "1")))
    except ValueError:
        return Reply(400, {"error": "invalid per_page or page"})
    changes = [p.strip() for p in params.get("price_change_percentage", "").split(",") if p.strip() in _CHANGE_DAYS]
    rows = market_rows(market, changes, params.get("sparkline", "false").lower() == "true")
    ids = {i.strip() for i in params.get("ids", "").split(",") if i.strip()}
    if ids:
        rows = [r for r in rows if r["id"] in ids]
    symbols = {s.strip().lower() for s in params.get("symbols", "").split(",") if s.strip()}
    if symbols:
        rows = [r for r in rows if r["symbol"] in symbols]
    order = params.get("order", "market_cap_desc")
    field, _, direction = order.rpartition("_")
    key = {"market_cap": "market_cap", "volume": "total_volume", "id": "id"}.get(field)
    if key is None or direction not in ("asc", "desc"):
        return Reply(400, {"error": f"invalid order {order!r}"})
    rows.sort(key=lambda r: r[key], reverse=direction == "desc")
    page_rows = rows[(page - 1) * per_page: page * per_page]
    return Reply(200, page_rows, rows=page_rows)


def market_rows(market: SimulatedMarket, changes: list[str] | None = None, sparkline: bool = False) -> list[dict]:
    """Every coin's row, ranked by market cap (market_cap_rank set)."""
    rows = [_universe_row(market, c.symbol, c.coingecko_id, changes or [], sparkline) for c in market.universe.coins]
    prices = {c.symbol: r["current_price"] for c, r in zip(market.universe.coins, rows, strict=True)}
    rows += [_extra_row(market, e, prices, changes or [], sparkline) for e in EXTRAS]
    floor_cap = min((r["market_cap"] for r in rows[: len(market.universe.coins)]), default=1e9)
    rows += [_synthetic_row(market, cid, sym, name, price, floor_cap * f, changes or [], sparkline)
             for cid, sym, name, price, f in OTHERS]
    rows += [_synthetic_row(market, f"replay-token-{i:03d}", f"rt{i:03d}", f"Replay Token {i:03d}",
                            0.01 + i % 17, floor_cap * 0.5 * 0.98**i, changes or [], sparkline) for i in range(1, FILLERS + 1)]
    rows.sort(key=lambda r: -r["market_cap"])
    for rank, r in enumerate(rows, 1):
        r["market_cap_rank"] = rank
    return rows


def _image(cid: str) -> str:
    return f"https://coin-images.coingecko.com/coins/images/{crc(cid) % 50000}/large/{cid}.png?1696501400"


def _base_row(market: SimulatedMarket, cid: str, symbol: str, name: str, price: float, supply: float,
              max_supply: float | None, hi: float, lo: float, open_24h: float, volume: float,
              ath: tuple[float, int], atl: tuple[float, int]) -> dict:
    now_ms = ms(market.now)
    change = price - open_24h
    pct = change / open_24h * 100 if open_24h else 0.0
    total = max_supply if max_supply else supply * 1.02
    roi = None
    if crc(cid) % 4 == 0:
        times = price / max(atl[0], 1e-12) / 50
        roi = {"times": times, "currency": "usd", "percentage": times * 100}
    return {
        "id": cid, "symbol": symbol, "name": name, "image": _image(cid), "current_price": price,
        "market_cap": int(round(price * supply)), "market_cap_rank": 0,
        "fully_diluted_valuation": int(round(price * total)), "total_volume": float(round(volume)),
        "high_24h": hi, "low_24h": lo, "price_change_24h": change, "price_change_percentage_24h": round(pct, 5),
        "market_cap_change_24h": change * supply, "market_cap_change_percentage_24h": round(pct, 5),
        "circulating_supply": float(supply), "total_supply": float(total), "max_supply": max_supply,
        "ath": ath[0], "ath_change_percentage": round((price / ath[0] - 1) * 100, 5), "ath_date": iso_ms(ath[1]),
        "atl": atl[0], "atl_change_percentage": round((price / atl[0] - 1) * 100, 5), "atl_date": iso_ms(atl[1]),
        "roi": roi, "last_updated": iso_ms(now_ms - now_ms % 60_000 - crc(cid) % 59_000),
    }


def _universe_row(market: SimulatedMarket, symbol: str, cid: str, changes: list[str], sparkline: bool) -> dict:
    prof = market.profile(symbol)
    hours = market.recent(symbol, "USD", "1h", 24 * 7)
    days = market.arrays(symbol, "USD", "1d")
    day = hours.take(slice(-24, None))
    price = float(day.close[-1])
    hi = max(float(day.high.max()), float(days.high.max()) if len(days) else 0.0)
    i_hi = int(np.argmax(days.high)) if len(days) else 0
    i_lo = int(np.argmin(days.low)) if len(days) else 0
    ath = (max(float(days.high[i_hi]), hi), int(days.open_time[i_hi]) + crc(cid) % 86_400_000)
    atl = (float(days.low[i_lo]), int(days.open_time[i_lo]) + crc(cid) % 86_400_000)
    volume = float((day.volume * day.close).sum()) * 15
    row = _base_row(market, cid, symbol.lower(), prof.name, price, prof.supply, prof.max_supply,
                    float(day.high.max()), float(day.low.min()), float(day.open[0]), volume, ath, atl)
    closes = days.close
    for ch in changes:
        n = _CHANGE_DAYS[ch]
        ref = float(hours.open[-1]) if n is None else (float(closes[-1 - n]) if len(closes) > n else None)
        row[f"price_change_percentage_{ch}_in_currency"] = None if ref is None else (price / ref - 1) * 100
    if sparkline:
        row["sparkline_in_7d"] = {"price": [float(x) for x in hours.close]}
    return row


def _extra_row(market: SimulatedMarket, e: Extra, prices: dict[str, float], changes: list[str], sparkline: bool) -> dict:
    if e.tracks and e.tracks in prices:
        price = prices[e.tracks] * e.ratio
    elif e.tracks:
        price = market.profile(e.tracks).level * e.ratio
    else:
        hour = ms(market.now) // 3_600_000
        price = round(1.0 + 0.001 * (float(hash_u01(np.array([hour]), crc(e.id) ^ market.seed)[0]) - 0.5), 6)
    return _synthetic_row(market, e.id, e.symbol, e.name, price, price * e.supply, changes, sparkline)


def _synthetic_row(market: SimulatedMarket, cid: str, symbol: str, name: str, price: float, cap: float,
                   changes: list[str], sparkline: bool) -> dict:
    supply = cap / price
    now_ms = ms(market.now)
    row = _base_row(market, cid, symbol, name, price, supply, None, price * 1.01, price * 0.99, price * 0.995,
                    cap * 0.03, (price * 1.8, now_ms - 400 * 86_400_000), (price * 0.05, now_ms - 2000 * 86_400_000))
    for ch in changes:
        row[f"price_change_percentage_{ch}_in_currency"] = 0.5
    if sparkline:
        row["sparkline_in_7d"] = {"price": [price] * 168}
    return row
