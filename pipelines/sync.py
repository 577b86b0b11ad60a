"""coinline-sync: the continuous-ingestion cycle (scheduled hourly by `pipelines/schedules.py`). Per coin
group: append the newly closed candles from the historical provider and Kraken, retry gaps; then the
quality gate and parity; once the gate passed, one forecasting cycle (champion + shadows) for the newest
closed candle. Re-running adds nothing."""

from kfp import dsl

from pipelines import steps

NAME = "coinline-sync"


@dsl.pipeline(name=NAME, description="Append newly closed candles, retry gaps, validate, check parity, forecast.")
def sync_pipeline(
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
    forecast_quote: str = "USD",
    forecast_interval: str = "1h",
    train_config_json: str = "",
    now: str = "",
    k8s_secret_name: str = steps.SECRET_NAME,
    k8s_config_map_name: str = steps.CONFIG_MAP_NAME,
):
    k8s = steps.k8s_names(k8s_secret_name, k8s_config_map_name)
    with steps.exit_handler(NAME, object_store_url=object_store_url, now=now, k8s=k8s, name="sync-cycle"):
        checked = steps.preflight(k8s, object_store_url=object_store_url, venue=venue)
        validated = steps.ingest(
            k8s=k8s, mode="sync", object_store_url=object_store_url, symbols=symbols, quotes=quotes,
            intervals=intervals, universe_version=universe_version, venue=venue, group_size=group_size,
            replay_history_days=replay_history_days, replay_seed=replay_seed, replay_profile=replay_profile,
            reconcile_lookback=reconcile_lookback, gap_tolerance=gap_tolerance, now=now, after=checked)
        steps.forecast(validated, k8s=k8s, object_store_url=object_store_url, symbols=symbols,
                       universe_version=universe_version, quote=forecast_quote, interval=forecast_interval,
                       train_config_json=train_config_json, now=now)
