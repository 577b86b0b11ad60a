"""Universe files as typed objects. A universe is data: `versions/<VERSION>.json` in this package,
or any directory given as `universe_dir` (where refresh proposals and approvals are written)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from coinline.errors import ConfigError


@dataclass(frozen=True)
class Coin:
    rank: int
    symbol: str                 # universe symbol (BTC, not XBT)
    coingecko_id: str
    coinapi_asset_id: str
    kraken_altname: str         # XBT for BTC
    kraken_asset_id: str | None
    kraken_pairs: dict[str, dict[str, str]]  # quote -> {"pair_key": "XXBTZUSD", "altname": "XBTUSD"}


@dataclass(frozen=True)
class Universe:
    version: str
    status: str
    quotes: tuple[str, ...]
    coins: tuple[Coin, ...]

    def symbols(self) -> list[str]:
        return [c.symbol for c in self.coins]

    def coin(self, symbol: str) -> Coin:
        for c in self.coins:
            if c.symbol == symbol.upper():
                return c
        raise ConfigError(f"unknown symbol {symbol!r} in universe {self.version}")


def _parse(doc: dict, origin: str) -> Universe:
    try:
        coins = tuple(
            Coin(
                rank=int(c["rank"]),
                symbol=c["symbol"],
                coingecko_id=c["coingecko_id"],
                coinapi_asset_id=c["coinapi_asset_id"],
                kraken_altname=c["kraken"]["altname"],
                kraken_asset_id=c["kraken"].get("asset_id"),
                kraken_pairs=dict(c["kraken"].get("pairs", {})),
            )
            for c in doc["coins"]
        )
        return Universe(doc["version"], doc.get("status", "active"), tuple(doc["quotes"]), coins)
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(f"universe file {origin} is malformed: missing or bad field {exc}") from None


def load_universe(version: str, universe_dir: Path | None = None) -> Universe:
    """Load a universe version from `universe_dir` if it has it, else from the packaged versions."""
    if universe_dir is not None:
        path = Path(universe_dir) / f"{version}.json"
        if path.exists():
            return _parse(json.loads(path.read_text()), str(path))
    packaged = resources.files("coinline.universe") / "versions" / f"{version}.json"
    if not packaged.is_file():
        raise ConfigError(f"TRAINING_UNIVERSE_VERSION={version!r} is not a known universe version")
    return _parse(json.loads(packaged.read_text()), f"package:{version}.json")
