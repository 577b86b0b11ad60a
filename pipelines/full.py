"""coinline-full: `coinline run` as one DAG: backfill (per coin group, with gap retry and Kraken venue
sync) -> validate (+ parity) -> per interval [materialize -> train -> report -> promote], all under an
exit handler that records the final state."""

from kfp import dsl

from pipelines import steps

NAME = "coinline-full"


@dsl.pipeline(name=NAME, description="Backfill, validate, materialize, train, report and promote.")
def full_pipeline(
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
    train_quote: str = "USD",
    train_config_json: str = "",
    train_workers: int = steps.DEFAULTS.train_workers,
    promote: bool = True,
    now: str = "",
    k8s_secret_name: str = steps.SECRET_NAME,
    k8s_config_map_name: str = steps.CONFIG_MAP_NAME,
    ray_address: str = "",
    trainer_accelerator_type: str = "",
    trainer_accelerator_count: int = 1,
    trainer_node_selector: dict = {},  # noqa: B006 (a pipeline parameter's default, never mutated)
    trainer_tolerations: list = [],  # noqa: B006
):
    k8s = steps.k8s_names(k8s_secret_name, k8s_config_map_name)
    with steps.exit_handler(NAME, object_store_url=object_store_url, now=now, k8s=k8s, name="main-job"):
        checked = steps.preflight(k8s, object_store_url=object_store_url, venue=venue,
                                  ray_address=ray_address)
        validated = steps.ingest(
            k8s=k8s, mode="backfill", object_store_url=object_store_url, symbols=symbols, quotes=quotes,
            intervals=intervals, universe_version=universe_version, venue=venue, group_size=group_size,
            replay_history_days=replay_history_days, replay_seed=replay_seed, replay_profile=replay_profile,
            reconcile_lookback=reconcile_lookback, gap_tolerance=gap_tolerance, now=now, after=checked)
        with dsl.ParallelFor(intervals) as interval:
            dataset = steps.materialize(interval, k8s=k8s, object_store_url=object_store_url, quotes=quotes,
                                        universe_version=universe_version, gap_tolerance=gap_tolerance,
                                        now=now).after(validated)
            steps.train_report_promote(dataset, interval, k8s=k8s, object_store_url=object_store_url,
                                       train_quote=train_quote, train_symbols=symbols,
                                       train_config_json=train_config_json, train_workers=train_workers,
                                       promote=promote, now=now, ray_address=ray_address,
                                       accelerator=steps.accelerator(trainer_accelerator_type,
                                                                     trainer_accelerator_count,
                                                                     trainer_node_selector, trainer_tolerations))
