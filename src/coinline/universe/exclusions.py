"""Which market rows may not enter a training universe, and why: rules as data, a pure classifier.

A universe is "top N non-stable coins": stablecoins, tokenized fiat/commodities, wrapped/bridged
copies and liquid-staking receipts track another asset's price and are excluded. Each exclusion
carries a reason code and the rule that fired, so a proposal can show reviewers exactly why.

Order of precedence (first match wins): the version's manual list, known CoinGecko ids, known
symbols, then name/id/symbol heuristics (liquid staking, commodity, fiat, stablecoin, wrapped).
Ids are authoritative; symbols are used only where they are unambiguous (they are not unique).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol


class Reason(StrEnum):
    STABLECOIN = "STABLECOIN"
    TOKENIZED_FIAT = "TOKENIZED_FIAT"            # non-USD fiat stablecoins, tokenized funds/treasuries
    TOKENIZED_COMMODITY = "TOKENIZED_COMMODITY"  # gold, silver
    WRAPPED = "WRAPPED"                          # wrapped / bridged / pegged copies of another coin
    LIQUID_STAKING = "LIQUID_STAKING"            # staked / restaked receipts (incl. wrapped ones)
    MANUAL = "MANUAL"                            # listed in the universe version's manual_exclusions


class RowLike(Protocol):
    """What the classifier reads from a market row (`coinline.providers.coingecko.MarketRow`)."""

    @property
    def id(self) -> str: ...
    @property
    def symbol(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def current_price(self) -> float | None: ...


@dataclass(frozen=True)
class Exclusion:
    reason: Reason
    rule: str  # which rule fired, e.g. "id:tether", "symbol contains 'usd'"


R = Reason

KNOWN_IDS: Mapping[str, Reason] = {
    # USD stablecoins (incl. savings/yield-bearing dollar wrappers)
    **dict.fromkeys([
        "tether", "usd-coin", "dai", "usds", "first-digital-usd", "ethena-usde", "ethena-staked-usde",
        "paypal-usd", "true-usd", "frax", "binance-usd", "paxos-standard", "gemini-dollar", "liquity-usd",
        "usdd", "ripple-usd", "usd1-wlfi", "global-dollar", "gho", "crvusd", "savings-dai", "susds",
        "usual-usd", "mountain-protocol-usdm", "magic-internet-money", "husd", "terrausd", "celo-dollar",
        "sperax-usd", "origin-dollar", "agora-dollar", "resolv-usr", "elixir-deusd",
    ], R.STABLECOIN),
    # non-USD fiat and tokenized funds / treasuries
    **dict.fromkeys([
        "euro-coin", "tether-eurt", "stasis-eurs", "ageur", "monerium-eur-money", "celo-euro",
        "brz", "bidr", "gyen", "xsgd", "cad-coin", "qcad",
        "blackrock-usd-institutional-digital-liquidity-fund", "ondo-us-dollar-yield",
        "franklin-onchain-u-s-government-money-fund",
    ], R.TOKENIZED_FIAT),
    **dict.fromkeys([
        "tether-gold", "pax-gold", "kinesis-gold", "kinesis-silver", "comtech-gold", "digix-gold",
    ], R.TOKENIZED_COMMODITY),
    **dict.fromkeys([
        "wrapped-bitcoin", "weth", "coinbase-wrapped-btc", "binance-bitcoin", "wbnb", "wrapped-solana",
        "solv-btc", "tbtc", "wrapped-avax", "wrapped-tron", "renbtc", "huobi-btc", "bitcoin-avalanche-bridged-btc-b",
        "arbitrum-bridged-weth-arbitrum-one",
    ], R.WRAPPED),
    **dict.fromkeys([
        "staked-ether", "wrapped-steth", "rocket-pool-eth", "coinbase-wrapped-staked-eth", "jito-staked-sol",
        "msol", "marinade-staked-sol", "binance-staked-sol", "wrapped-beacon-eth", "wrapped-eeth",
        "ether-fi-staked-eth", "mantle-staked-ether", "renzo-restaked-eth", "kelp-dao-restaked-eth",
        "stakewise-v3-oseth", "staked-frax-ether", "frax-ether", "lombard-staked-btc", "stader-ethx",
        "swell-ethereum", "jupiter-staked-sol", "benqi-liquid-staked-avax", "lido-staked-sol",
        "bybit-staked-sol", "liquid-staked-ethereum", "stakestone-ether",
    ], R.LIQUID_STAKING),
}

# Only symbols that do not collide with an eligible coin (e.g. not "frax": the governance token took it).
KNOWN_SYMBOLS: Mapping[str, Reason] = {
    **dict.fromkeys(["usdt", "usdc", "dai", "usds", "fdusd", "usde", "susde", "pyusd", "tusd", "busd", "usdp",
                     "gusd", "usdd", "lusd", "rlusd", "usd1", "usdy", "usd0", "usdb", "usdm"], R.STABLECOIN),
    **dict.fromkeys(["eurc", "eurt", "eurs", "ageur", "eure", "eurcv", "eurr", "xsgd", "gyen"], R.TOKENIZED_FIAT),
    **dict.fromkeys(["xaut", "paxg", "kau", "kag"], R.TOKENIZED_COMMODITY),
    **dict.fromkeys(["wbtc", "weth", "cbbtc", "btcb", "wbnb", "wsol", "wtrx", "wavax", "tbtc"], R.WRAPPED),
    **dict.fromkeys(["steth", "wsteth", "reth", "cbeth", "jitosol", "msol", "bnsol", "wbeth", "weeth", "eeth",
                     "meth", "ezeth", "rseth", "oseth", "sfrxeth", "frxeth", "lbtc", "ethx", "sweth",
                     "jupsol", "savax"], R.LIQUID_STAKING),
}

# `w` + one of these symbols is a wrapped copy (wbtc, weth, wsol, ...). Three letters or more only,
# so short real tickers (wld, wif, woo, wax) are not caught.
WRAPPED_BASE_SYMBOLS: frozenset[str] = frozenset({
    "btc", "eth", "bnb", "sol", "trx", "avax", "matic", "pol", "ftm", "xrp", "ada", "dot", "ltc", "doge",
    "near", "ton", "sui", "apt", "hbar", "xlm", "link", "kas", "icp", "algo", "fil", "xmr", "zec", "bch",
    "cro", "glmr", "mnt", "celo", "rose", "kava", "hype", "sei", "tia", "inj", "atom", "okt", "beth",
})


@dataclass(frozen=True)
class ExclusionRules:
    """The rule tables. `manual` is the universe version's own list: CoinGecko id -> note."""

    known_ids: Mapping[str, Reason] = field(default_factory=lambda: dict(KNOWN_IDS))
    known_symbols: Mapping[str, Reason] = field(default_factory=lambda: dict(KNOWN_SYMBOLS))
    wrapped_base_symbols: frozenset[str] = WRAPPED_BASE_SYMBOLS
    stable_price_band: float = 0.02  # |price - 1| <= band with "USD" in the name -> stablecoin
    # gold/silver in the name counts as a tokenized commodity only at a metal-like price (a gram of
    # gold or an ounce of silver is worth more than this); "Gold"-named meme coins are cheaper
    commodity_min_price: float = 10.0
    manual: Mapping[str, str] = field(default_factory=dict)


DEFAULT_RULES = ExclusionRules()

_STAKED = re.compile(r"staked|staking|restak", re.IGNORECASE)
_COMMODITY = re.compile(r"\b(gold|silver|xau|xag)\b", re.IGNORECASE)
_EURO = re.compile(r"\beuro\b|\beur[a-z]?\b", re.IGNORECASE)
_WRAPPED = re.compile(r"wrapped|bridged|binance-peg|\bpeg\b", re.IGNORECASE)


def classify(row: RowLike, rules: ExclusionRules = DEFAULT_RULES) -> Exclusion | None:
    """Why `row` may not enter a universe, or None when it is eligible. Pure: reads only `row` and
    `rules`."""
    cid, symbol, name = row.id.lower(), row.symbol.lower(), row.name
    if row.id in rules.manual:
        note = rules.manual[row.id]
        return Exclusion(R.MANUAL, f"manual: {note}" if note else "manual")
    if cid in rules.known_ids:
        return Exclusion(rules.known_ids[cid], f"id:{cid}")
    if symbol in rules.known_symbols:
        return Exclusion(rules.known_symbols[symbol], f"symbol:{symbol}")
    id_and_name = f"{cid} {name}"
    if _STAKED.search(id_and_name):
        return Exclusion(R.LIQUID_STAKING, "'staked' in name or id")
    price = row.current_price
    if (_COMMODITY.search(name) or _COMMODITY.search(cid.replace("-", " "))) and (price or 0) >= rules.commodity_min_price:
        return Exclusion(R.TOKENIZED_COMMODITY, f"gold/silver in name or id and price >= {rules.commodity_min_price:g}")
    if _EURO.search(name) or symbol.startswith("eur"):
        return Exclusion(R.TOKENIZED_FIAT, "euro in name or symbol")
    if "usd" in symbol:
        return Exclusion(R.STABLECOIN, "symbol contains 'usd'")
    if price is not None and abs(price - 1.0) <= rules.stable_price_band and "usd" in name.lower():
        return Exclusion(R.STABLECOIN, f"price within {rules.stable_price_band:.0%} of 1.0 and 'USD' in name")
    if _WRAPPED.search(id_and_name):
        return Exclusion(R.WRAPPED, "'wrapped'/'bridged'/'peg' in name or id")
    if symbol.startswith("w") and symbol[1:] in rules.wrapped_base_symbols:
        return Exclusion(R.WRAPPED, f"'w' + base symbol {symbol[1:]!r}")
    return None
