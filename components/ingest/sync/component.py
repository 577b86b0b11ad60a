"""sync_candles: append only the newly closed candles of one coin group (`coinline.ingest.sync.sync`),
from the historical provider (`source=hist`) or Kraken's public OHLC (`source=kraken`, venue parity).
Re-running adds nothing; `reconcile_lookback` re-reads recent candles to catch late revisions."""

from kfp import dsl
from kfp.dsl import Artifact, Output

from components.image import COINLINE_IMAGE


@dsl.component(base_image=COINLINE_IMAGE, packages_to_install=[], install_kfp_package=False)
def sync_candles(
    object_store_url: str,
    symbols: str,
    intervals: list,
    outcomes: Output[Artifact],
    source: str = "hist",
    quotes: str = "USD,USDC,CAD",
    universe_version: str = "UNIVERSE_V1_TOP30_NON_STABLE",
    venue: str = "auto",
    replay_history_days: int = 800,
    replay_seed: int = 7,
    replay_profile: str = "martingale",
    reconcile_lookback: int = 24,
    now: str = "",
) -> int:
    """Returns the number of new candles; fails when any series errored or its lease was held."""
    import json
    from collections import Counter
    from datetime import UTC, datetime

    from coinline.app import build_app
    from coinline.ingest.sync import sync
    from coinline.step_env import step_settings
    from coinline.timeframes import parse_iso_utc

    if source not in ("hist", "kraken"):
        raise ValueError(f"source={source!r}: use hist or kraken")
    settings = step_settings({
        "OBJECT_STORE_URL": object_store_url, "COINLINE_SYMBOLS": symbols, "COINLINE_QUOTES": quotes,
        "COINLINE_INTERVALS": ",".join(intervals), "TRAINING_UNIVERSE_VERSION": universe_version,
        "COINLINE_VENUE": venue, "COINLINE_REPLAY_HISTORY_DAYS": replay_history_days,
        "COINLINE_REPLAY_SEED": replay_seed, "COINLINE_REPLAY_PROFILE": replay_profile,
        "COINLINE_RECONCILE_LOOKBACK": reconcile_lookback})
    with build_app(settings, now=parse_iso_utc(now) if now else datetime.now(UTC)) as app:
        results = sync(app.source(source), app.lake, app.pairs(), now=app.now, progress=False,
                       lookback=settings.reconcile_lookback)
        requests = app.requests_made()
    rows = [o.to_dict() for o in results]
    with open(outcomes.path, "w") as f:
        json.dump({"source": source, "outcomes": dict(Counter(o.status for o in results)), "requests": requests,
                   "series": rows}, f, indent=1, sort_keys=True)
    failed = [o for o in results if o.status in ("error", "lease-held")]
    if failed:
        raise RuntimeError(f"{len(failed)} series failed, e.g. {failed[0].series}: {failed[0].message[:300]}")
    return sum(o.inserted for o in results)
