"""plan_run: the first step of the ingest pipelines. Validates the run's settings before any ingest pod
starts, creates the lake's tables before parallel writers race to append to them, and splits the coin
set into the groups that the ingest steps fan out over."""

from kfp import dsl

from components.image import COINLINE_IMAGE


@dsl.component(base_image=COINLINE_IMAGE, packages_to_install=[], install_kfp_package=False)
def plan_run(
    object_store_url: str,
    intervals: list,
    symbols: str = "",
    quotes: str = "USD,USDC,CAD",
    universe_version: str = "UNIVERSE_V1_TOP30_NON_STABLE",
    group_size: int = 5,
) -> list:
    """Returns the coin groups, each a comma list of symbols (`symbols` empty: the whole universe)."""
    import os
    from pathlib import Path

    from coinline.lake import open_lake, tables
    from coinline.logs import setup_logging
    from coinline.settings import load_settings
    from coinline.universe import load_universe

    settings = load_settings(dotenv=None, env={
        **os.environ, "OBJECT_STORE_URL": object_store_url, "COINLINE_SYMBOLS": symbols,
        "COINLINE_QUOTES": quotes, "COINLINE_INTERVALS": ",".join(intervals),
        "TRAINING_UNIVERSE_VERSION": universe_version})
    setup_logging(settings.secrets())
    if group_size < 1:
        raise ValueError(f"group_size={group_size} must be >= 1")
    universe = load_universe(settings.training_universe_version, Path(settings.universe_dir))
    coins = [s.upper() for s in settings.symbols] or universe.symbols()
    for coin in coins:
        universe.coin(coin)  # an unknown symbol fails here, before any ingest pod starts
    lake = open_lake(settings.object_store_url, endpoint_url=settings.object_store_endpoint_url,
                     access_key=settings.object_store_access_key_id,
                     secret_key=settings.object_store_secret_access_key, region=settings.object_store_region)
    tables.ensure_tables(lake)
    return [",".join(coins[i:i + group_size]) for i in range(0, len(coins), group_size)]
