"""Typed settings, built once at an entry point from the environment (and `.env`), then passed down.

Validation happens here: a missing key for a provider that needs one, an unknown provider or a bad URL
is a one-line ConfigError naming the variable. Secrets are held as `Secret` and never print.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from urllib.parse import urlparse

from dotenv import dotenv_values

from coinline.errors import ConfigError
from coinline.secrets import Secret
from coinline.timeframes import known_intervals

HIST_PROVIDERS = ("COINAPI",)
UNIVERSE_PROVIDERS = ("COINGECKO",)
VENUES = ("auto", "replay", "live")
# The replay venue's market (coinline.replay.paths.DYNAMICS): a martingale (nothing to find), or the positive
# control, which plants a known lag-1 autocorrelation of hourly returns (+0.25) for runs that look for it.
REPLAY_PROFILES = ("martingale", "positive-control")
SUPPORTED_QUOTES = ("USD", "USDC", "CAD")


@dataclass(frozen=True)
class Settings:
    hist_provider: str = "COINAPI"
    hist_api_key: Secret = field(default_factory=lambda: Secret(""))
    hist_api_secret: Secret = field(default_factory=lambda: Secret(""))
    hist_base_url: str = "https://rest.coinapi.io"
    hist_exchange: str = "KRAKEN"           # CoinAPI exchange id whose spot symbols are backfilled
    universe_provider: str = "COINGECKO"
    universe_api_key: Secret = field(default_factory=lambda: Secret(""))
    universe_api_tier: str = "demo"          # demo | pro (selects CoinGecko's key header)
    universe_base_url: str = "https://api.coingecko.com/api/v3"
    universe_refresh_cron: str = "0 3 * * 1"
    training_universe_version: str = "UNIVERSE_V1_TOP30_NON_STABLE"
    enable_continuous_ingestion: bool = True
    enable_autonomous_retraining: bool = True
    kraken_api_key: Secret = field(default_factory=lambda: Secret(""))     # unused in this phase
    kraken_api_secret: Secret = field(default_factory=lambda: Secret(""))  # unused in this phase
    kraken_public_base_url: str = "https://api.kraken.com/0"
    object_store_url: str = "file://./lake"
    object_store_endpoint_url: str = ""
    object_store_access_key_id: Secret = field(default_factory=lambda: Secret(""))
    object_store_secret_access_key: Secret = field(default_factory=lambda: Secret(""))
    object_store_region: str = "us-east-1"
    venue: str = "auto"                      # auto: live when a historical key is set, else replay
    symbols: tuple[str, ...] = ()           # subset of the universe to ingest (empty: all of it)
    intervals: tuple[str, ...] = ("1h",)
    quotes: tuple[str, ...] = ("USD", "USDC", "CAD")
    replay_history_days: int = 800           # depth of the offline venue's simulated market
    replay_seed: int = 7
    replay_profile: str = "martingale"       # the replay market: martingale (no signal) | positive-control
    reconcile_lookback: int = 24             # closed candles sync re-reads to catch late revisions
    gap_tolerance: int = 0                   # unexplained missing candles a series may have
    parity_tolerance_bps: float = 50.0       # close-price divergence beyond which parity is flagged
    universe_dir: str = "./universe"         # where refresh proposals and approvals are written
    train_config: str = ""                   # JSON file of TrainConfig overrides (bigger budgets)
    train_workers: int = 0                   # Ray workers for training (0: one per CPU; 1: in-process)

    @property
    def offline(self) -> bool:
        """True when the run uses the embedded replay venue instead of the real providers."""
        return self.venue == "replay" or (self.venue == "auto" and not self.hist_api_key)

    def secrets(self) -> tuple[Secret, ...]:
        return tuple(getattr(self, f.name) for f in fields(self) if isinstance(getattr(self, f.name), Secret))


_ENV = {
    "HIST_MARKET_DATA_PROVIDER": "hist_provider",
    "HIST_MARKET_DATA_API_KEY": "hist_api_key",
    "HIST_MARKET_DATA_API_SECRET": "hist_api_secret",
    "HIST_MARKET_DATA_BASE_URL": "hist_base_url",
    "HIST_MARKET_DATA_EXCHANGE": "hist_exchange",
    "UNIVERSE_SOURCE_PROVIDER": "universe_provider",
    "UNIVERSE_SOURCE_API_KEY": "universe_api_key",
    "UNIVERSE_SOURCE_API_TIER": "universe_api_tier",
    "UNIVERSE_SOURCE_BASE_URL": "universe_base_url",
    "UNIVERSE_REFRESH_CRON": "universe_refresh_cron",
    "TRAINING_UNIVERSE_VERSION": "training_universe_version",
    "ENABLE_CONTINUOUS_INGESTION": "enable_continuous_ingestion",
    "ENABLE_AUTONOMOUS_RETRAINING": "enable_autonomous_retraining",
    "KRAKEN_API_KEY": "kraken_api_key",
    "KRAKEN_API_SECRET": "kraken_api_secret",
    "KRAKEN_PUBLIC_BASE_URL": "kraken_public_base_url",
    "OBJECT_STORE_URL": "object_store_url",
    "OBJECT_STORE_ENDPOINT_URL": "object_store_endpoint_url",
    "OBJECT_STORE_ACCESS_KEY_ID": "object_store_access_key_id",
    "OBJECT_STORE_SECRET_ACCESS_KEY": "object_store_secret_access_key",
    "OBJECT_STORE_REGION": "object_store_region",
    "COINLINE_VENUE": "venue",
    "COINLINE_SYMBOLS": "symbols",
    "COINLINE_INTERVALS": "intervals",
    "COINLINE_QUOTES": "quotes",
    "COINLINE_REPLAY_HISTORY_DAYS": "replay_history_days",
    "COINLINE_REPLAY_SEED": "replay_seed",
    "COINLINE_REPLAY_PROFILE": "replay_profile",
    "COINLINE_RECONCILE_LOOKBACK": "reconcile_lookback",
    "COINLINE_GAP_TOLERANCE": "gap_tolerance",
    "COINLINE_PARITY_TOLERANCE_BPS": "parity_tolerance_bps",
    "COINLINE_UNIVERSE_DIR": "universe_dir",
    "COINLINE_TRAIN_CONFIG": "train_config",
    "COINLINE_TRAIN_WORKERS": "train_workers",
}
ENV_VARIABLES = tuple(_ENV)


def _convert(var: str, raw: str, default: object) -> object:
    raw = raw.strip()
    if isinstance(default, Secret):
        return Secret(raw)
    if isinstance(default, bool):
        if raw.lower() in ("1", "true", "yes", "on"):
            return True
        if raw.lower() in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{var}={raw!r} is not a boolean (use true or false)")
    if isinstance(default, int):
        try:
            return int(raw)
        except ValueError:
            raise ConfigError(f"{var}={raw!r} is not an integer") from None
    if isinstance(default, float):
        try:
            return float(raw)
        except ValueError:
            raise ConfigError(f"{var}={raw!r} is not a number") from None
    if isinstance(default, tuple):
        return tuple(p.strip() for p in raw.split(",") if p.strip())
    return raw


def load_settings(env: Mapping[str, str] | None = None, dotenv: Path | None = Path(".env")) -> Settings:
    """Settings from `.env` (if present) overlaid by the process environment, then validated."""
    merged: dict[str, str] = {}
    if dotenv is not None and Path(dotenv).is_file():
        merged.update({k: v for k, v in dotenv_values(dotenv).items() if v is not None})
    merged.update(os.environ if env is None else env)
    defaults = Settings()
    values: dict[str, object] = {}
    for var, attr in _ENV.items():
        raw = merged.get(var)
        if raw is None or (raw.strip() == "" and not isinstance(getattr(defaults, attr), Secret)):
            continue
        values[attr] = _convert(var, raw, getattr(defaults, attr))
    settings = Settings(**values)
    validate(settings)
    return settings


def _check_url(var: str, value: str, schemes: tuple[str, ...]) -> None:
    parsed = urlparse(value)
    if parsed.scheme not in schemes or (parsed.scheme != "file" and not parsed.netloc):
        raise ConfigError(f"{var}={value!r} is not a valid URL (expected {' or '.join(schemes)}://...)")


def validate(s: Settings) -> None:
    if s.hist_provider.upper() not in HIST_PROVIDERS:
        raise ConfigError(f"HIST_MARKET_DATA_PROVIDER={s.hist_provider!r} is not a known provider "
                          f"(known: {', '.join(HIST_PROVIDERS)})")
    if s.universe_provider.upper() not in UNIVERSE_PROVIDERS:
        raise ConfigError(f"UNIVERSE_SOURCE_PROVIDER={s.universe_provider!r} is not a known provider "
                          f"(known: {', '.join(UNIVERSE_PROVIDERS)})")
    if s.venue not in VENUES:
        raise ConfigError(f"COINLINE_VENUE={s.venue!r} is not one of {', '.join(VENUES)}")
    if s.replay_profile not in REPLAY_PROFILES:
        raise ConfigError(f"COINLINE_REPLAY_PROFILE={s.replay_profile!r} is not one of {', '.join(REPLAY_PROFILES)}")
    # COINLINE_VENUE=live without HIST_MARKET_DATA_API_KEY is refused where providers are built
    # (`app.build_app`), so commands that only read the lake work without a key
    if s.universe_api_tier not in ("demo", "pro"):
        raise ConfigError(f"UNIVERSE_SOURCE_API_TIER={s.universe_api_tier!r} is not demo or pro")
    _check_url("HIST_MARKET_DATA_BASE_URL", s.hist_base_url, ("http", "https"))
    _check_url("KRAKEN_PUBLIC_BASE_URL", s.kraken_public_base_url, ("http", "https"))
    _check_url("UNIVERSE_SOURCE_BASE_URL", s.universe_base_url, ("http", "https"))
    _check_url("OBJECT_STORE_URL", s.object_store_url, ("file", "s3"))
    if s.object_store_endpoint_url:
        _check_url("OBJECT_STORE_ENDPOINT_URL", s.object_store_endpoint_url, ("http", "https"))
    for interval in s.intervals:
        if interval not in known_intervals():
            raise ConfigError(f"COINLINE_INTERVALS contains {interval!r}; known: {', '.join(known_intervals())}")
    if s.reconcile_lookback < 0:
        raise ConfigError(f"COINLINE_RECONCILE_LOOKBACK={s.reconcile_lookback} must be >= 0")
    for quote in s.quotes:
        if quote not in SUPPORTED_QUOTES:
            raise ConfigError(f"COINLINE_QUOTES contains {quote!r}; supported: {', '.join(SUPPORTED_QUOTES)}")
    _check_ranges(s)


def _check_ranges(s: Settings) -> None:
    """Numbers in range, names well formed, the cron parseable: a value that would be accepted and then
    silently misbehave (a negative history depth, a NaN tolerance) is refused here, naming the variable."""
    from croniter import croniter

    if not croniter.is_valid(s.universe_refresh_cron.strip()) or len(s.universe_refresh_cron.split()) != 5:
        raise ConfigError(f"UNIVERSE_REFRESH_CRON={s.universe_refresh_cron!r} is not a valid cron expression "
                          "(5 fields: minute hour day-of-month month day-of-week, UTC; e.g. '0 3 * * 1')")
    at_least = {"COINLINE_REPLAY_HISTORY_DAYS": (s.replay_history_days, 1), "COINLINE_REPLAY_SEED": (s.replay_seed, 0),
                "COINLINE_GAP_TOLERANCE": (s.gap_tolerance, 0), "COINLINE_TRAIN_WORKERS": (s.train_workers, 0)}
    for var, (value, low) in at_least.items():
        if value < low:
            raise ConfigError(f"{var}={value} must be >= {low}")
    if not math.isfinite(s.parity_tolerance_bps) or s.parity_tolerance_bps < 0:
        raise ConfigError(f"COINLINE_PARITY_TOLERANCE_BPS={s.parity_tolerance_bps} must be a finite number >= 0")
    if not re.fullmatch(r"[A-Z0-9_]+", s.hist_exchange):
        raise ConfigError(f"HIST_MARKET_DATA_EXCHANGE={s.hist_exchange!r} is not a CoinAPI exchange id "
                          "(upper-case letters, digits and _, e.g. KRAKEN)")
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", s.training_universe_version):
        raise ConfigError(f"TRAINING_UNIVERSE_VERSION={s.training_universe_version!r} is not a version name")
    if not re.fullmatch(r"[a-z0-9-]+", s.object_store_region):
        raise ConfigError(f"OBJECT_STORE_REGION={s.object_store_region!r} is not a region name (e.g. us-east-1)")
    for sym in s.symbols:
        if not re.fullmatch(r"[A-Za-z0-9]{2,10}", sym):
            raise ConfigError(f"COINLINE_SYMBOLS contains {sym!r}; symbols are upper-case tickers, e.g. BTC,ETH")
