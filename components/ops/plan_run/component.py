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
    from pathlib import Path

    from coinline.lake import tables
    from coinline.step_env import settings_lake, step_settings
    from coinline.universe import load_universe

    settings = step_settings({
        "OBJECT_STORE_URL": object_store_url, "COINLINE_SYMBOLS": symbols, "COINLINE_QUOTES": quotes,
        "COINLINE_INTERVALS": ",".join(intervals), "TRAINING_UNIVERSE_VERSION": universe_version})
    if group_size < 1:
        raise ValueError(f"group_size={group_size} must be >= 1")
    universe = load_universe(settings.training_universe_version, Path(settings.universe_dir))
    coins = [s.upper() for s in settings.symbols] or universe.symbols()
    for coin in coins:
        universe.coin(coin)  # an unknown symbol fails here, before any ingest pod starts
    lake = settings_lake(settings)
    tables.ensure_tables(lake)
    return [",".join(coins[i:i + group_size]) for i in range(0, len(coins), group_size)]
