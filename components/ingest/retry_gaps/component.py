"""retry_gaps: for each stored series of one coin group from the historical provider, re-request every
unexplained gap once and record what is still missing as a known gap with the provider's answer
(`coinline.ingest.gaps.retry`). Nothing is forward-filled."""

from kfp import dsl
from kfp.dsl import Artifact, Output

from components.image import COINLINE_IMAGE


@dsl.component(base_image=COINLINE_IMAGE, packages_to_install=[], install_kfp_package=False)
def retry_gaps(
    object_store_url: str,
    symbols: str,
    gaps: Output[Artifact],
    universe_version: str = "UNIVERSE_V1_TOP30_NON_STABLE",
    venue: str = "auto",
    replay_history_days: int = 800,
    replay_seed: int = 7,
    replay_profile: str = "martingale",
    now: str = "",
) -> int:
    """Returns the number of candles still missing (recorded as known gaps); `gaps` lists every gap with
    its status (filled or known) and the provider's answer."""
    import json
    from datetime import UTC, datetime

    from coinline.app import build_app
    from coinline.ingest import gaps as gaps_lib
    from coinline.lake import tables
    from coinline.step_env import step_settings
    from coinline.timeframes import parse_iso_utc

    settings = step_settings({
        "OBJECT_STORE_URL": object_store_url, "COINLINE_SYMBOLS": symbols,
        "TRAINING_UNIVERSE_VERSION": universe_version, "COINLINE_VENUE": venue,
        "COINLINE_REPLAY_HISTORY_DAYS": replay_history_days, "COINLINE_REPLAY_SEED": replay_seed,
        "COINLINE_REPLAY_PROFILE": replay_profile})
    coins = {s.upper() for s in settings.symbols}
    found = []
    with build_app(settings, now=parse_iso_utc(now) if now else datetime.now(UTC)) as app:
        hist = app.hist_source()
        for key, *_ in tables.series_in(app.lake):
            if key.source == hist.name and (not coins or key.symbol in coins):
                found.extend(gaps_lib.retry(hist, app.lake, key, now=app.now))
    with open(gaps.path, "w") as f:
        json.dump({"gaps": [g.to_dict() for g in found]}, f, indent=1, sort_keys=True)
    return sum(g.missing_candles for g in found if g.status == "known")
