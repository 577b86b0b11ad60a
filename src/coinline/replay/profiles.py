"""Reference levels of the simulated coins: price level, daily volatility, venue turnover, supply.

Values are rough 2025-era magnitudes so that candles look plausible (BTC in the tens of thousands,
SHIB around 1e-5): each coin is at its level at the replay market's anchor date and walks freely
(a martingale) from there. A coin missing from the table gets a deterministic profile from its symbol.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass


@dataclass(frozen=True)
class Profile:
    level: float          # USD price at the anchor date (no reversion to it)
    sigma: float          # daily log-return volatility (its long-run average)
    usd_volume: float     # daily USD turnover on the simulated venue's USD pair
    supply: float         # circulating supply (CoinGecko)
    max_supply: float | None
    name: str

    @property
    def price_decimals(self) -> int:
        """About six significant digits at the reference level (BTC 1, ETH 2, XRP 5, SHIB 10)."""
        return min(10, max(1, 5 - math.floor(math.log10(self.level))))

    @property
    def volume_decimals(self) -> int:
        """Base-unit decimals keeping any daily volume in integer units below 2**53."""
        daily_units = self.usd_volume / self.level * 100.0
        return min(8, max(0, math.floor(15.9 - math.log10(daily_units))))


_P = Profile
PROFILES: dict[str, Profile] = {
    "BTC": _P(60000.0, 0.028, 400e6, 19.8e6, 21e6, "Bitcoin"),
    "ETH": _P(3000.0, 0.037, 250e6, 120.6e6, None, "Ethereum"),
    "BNB": _P(600.0, 0.030, 20e6, 145.9e6, 200e6, "BNB"),
    "XRP": _P(2.0, 0.045, 80e6, 57.9e9, 100e9, "XRP"),
    "SOL": _P(150.0, 0.050, 120e6, 508e6, None, "Solana"),
    "TRX": _P(0.25, 0.030, 5e6, 86.1e9, None, "TRON"),
    "ADA": _P(0.7, 0.045, 30e6, 35.9e9, 45e9, "Cardano"),
    "BCH": _P(350.0, 0.040, 10e6, 19.8e6, 21e6, "Bitcoin Cash"),
    "XMR": _P(250.0, 0.035, 8e6, 18.4e6, None, "Monero"),
    "LINK": _P(15.0, 0.050, 20e6, 638e6, 1e9, "Chainlink"),
    "XLM": _P(0.3, 0.045, 10e6, 30.7e9, 50e9, "Stellar"),
    "HBAR": _P(0.2, 0.050, 5e6, 41.9e9, 50e9, "Hedera"),
    "LTC": _P(95.0, 0.040, 20e6, 75.6e6, 84e6, "Litecoin"),
    "AVAX": _P(25.0, 0.050, 15e6, 414e6, 720e6, "Avalanche"),
    "ZEC": _P(50.0, 0.050, 10e6, 16.2e6, 21e6, "Zcash"),
    "SUI": _P(3.0, 0.060, 20e6, 3.17e9, 10e9, "Sui"),
    "SHIB": _P(1.5e-5, 0.055, 10e6, 589e12, None, "Shiba Inu"),
    "TON": _P(3.0, 0.045, 5e6, 2.48e9, None, "Toncoin"),
    "DOT": _P(5.0, 0.050, 15e6, 1.52e9, None, "Polkadot"),
    "UNI": _P(8.0, 0.055, 8e6, 600e6, 1e9, "Uniswap"),
    "AAVE": _P(200.0, 0.055, 8e6, 15e6, 16e6, "Aave"),
    "TAO": _P(400.0, 0.060, 5e6, 8.6e6, 21e6, "Bittensor"),
    "NEAR": _P(3.0, 0.055, 6e6, 1.2e9, None, "NEAR Protocol"),
    "ETC": _P(20.0, 0.045, 5e6, 150e6, 210.7e6, "Ethereum Classic"),
    "ICP": _P(6.0, 0.055, 4e6, 530e6, None, "Internet Computer"),
    "POL": _P(0.3, 0.055, 4e6, 10.4e9, None, "POL (ex-MATIC)"),
    "KAS": _P(0.1, 0.060, 3e6, 26e9, 28.7e9, "Kaspa"),
    "ALGO": _P(0.25, 0.050, 4e6, 8.6e9, 10e9, "Algorand"),
    "FIL": _P(3.0, 0.055, 5e6, 650e6, None, "Filecoin"),
    "APT": _P(6.0, 0.055, 5e6, 600e6, None, "Aptos"),
}

# Share of the USD pair's turnover traded in other quotes, and the average trade size (USD).
QUOTE_SHARE = {"USD": 1.0, "USDC": 0.12, "CAD": 0.04}
AVG_TRADE_USD = {"USD": 1500.0, "USDC": 800.0, "CAD": 400.0}
FX_LEVEL = {"USD": 1.0, "USDC": 1.0, "CAD": 1.36}


def crc(text: str) -> int:
    """A stable (process-independent) integer for a name."""
    return zlib.crc32(text.encode())


def profile(symbol: str) -> Profile:
    if symbol in PROFILES:
        return PROFILES[symbol]
    h = crc(symbol)
    level = 10.0 ** ((h % 7) - 2)
    return Profile(level, 0.05, 3e6, 1e9 / level, None, symbol.title())
