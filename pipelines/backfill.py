"""coinline-backfill: the data job (`coinline run --no-train`) as a DAG. Per coin group: walk the
historical provider back to its earliest candle, retry gaps, sync Kraken for venue parity; then the
quality gate, parity, and one hashed dataset per interval."""

from kfp import dsl

from pipelines import steps

NAME = "coinline-backfill"


@dsl.pipeline(name=NAME, description="Backfill the universe, retry gaps, validate, check parity, materialize.")
def backfill_pipeline(
    object_store_url: str,
    symbols: str = "",
    quotes: str = steps.QUOTES,
    intervals: list = steps.INTERVALS,
    universe_version: str = steps.UNIVERSE,
    venue: str = steps.DEFAULTS.venue,
    group_size: int = steps.GROUP_SIZE,
    replay_history_days: int = steps.DEFAULTS.replay_history_days,
    replay_seed: int = steps.DEFAULTS.replay_seed,
    replay_profile: str = steps.DEFAULTS.replay_profile,
    reconcile_lookback: int = steps.DEFAULTS.reconcile_lookback,
    gap_tolerance: int = steps.DEFAULTS.gap_tolerance,
    now: str = "",
    k8s_secret_name: str = steps.SECRET_NAME,
    k8s_config_map_name: str = steps.CONFIG_MAP_NAME,
):
    k8s = steps.k8s_names(k8s_secret_name, k8s_config_map_name)
    with steps.exit_handler(NAME, object_store_url=object_store_url, now=now, k8s=k8s, name="data-job"):
        checked = steps.preflight(k8s, object_store_url=object_store_url, venue=venue)
        validated = steps.ingest(
            k8s=k8s, mode="backfill", object_store_url=object_store_url, symbols=symbols, quotes=quotes,
            intervals=intervals, universe_version=universe_version, venue=venue, group_size=group_size,
            replay_history_days=replay_history_days, replay_seed=replay_seed, replay_profile=replay_profile,
            reconcile_lookback=reconcile_lookback, gap_tolerance=gap_tolerance, now=now, after=checked)
        with dsl.ParallelFor(intervals) as interval:
            steps.materialize(interval, k8s=k8s, object_store_url=object_store_url, quotes=quotes,
                              universe_version=universe_version, gap_tolerance=gap_tolerance,
                              now=now).after(validated)
