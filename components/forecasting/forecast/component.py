"""forecast_cycle: one live forecasting cycle (`coinline.forecasting.service.forecast_cycle`): the champion
(the active promoted run, else the declared baseline `baseline:climatology`) and every shadow challenger
forecast the newest closed candle; the rows go to the `forecasts` ledger (Delta) in the lake. Re-running
adds nothing (the ledger inserts only new keys)."""

from kfp import dsl
from kfp.dsl import Artifact, Metrics, Output

from components.image import COINLINE_IMAGE


@dsl.component(base_image=COINLINE_IMAGE, packages_to_install=[], install_kfp_package=False)
def forecast_cycle(
    object_store_url: str,
    forecasts: Output[Artifact],
    summary: Output[Metrics],
    symbols: str = "",
    universe_version: str = "UNIVERSE_V1_TOP30_NON_STABLE",
    quote: str = "USD",
    interval: str = "1h",
    source: str = "coinapi",
    train_config_json: str = "",
    now: str = "",
) -> str:
    """Returns the champion's model set id. `symbols` (comma list; empty: the whole universe), `quote`,
    `interval`, `source` and `train_config_json` (TrainConfig overrides) define the baseline when no run is
    active; an active set forecasts its own coins. `forecasts`: the cycle's JSON summary (one entry per
    model set: role, rows, inserted, skipped coins, forecast time); `summary`: its counts as KFP Metrics."""
    import json
    import logging
    from datetime import UTC, datetime
    from pathlib import Path

    from coinline.forecasting.service import forecast_cycle as cycle
    from coinline.step_env import step_lake
    from coinline.timeframes import parse_iso_utc
    from coinline.training.config import train_config_from_json
    from coinline.universe import load_universe

    settings, lake = step_lake(object_store_url, COINLINE_SYMBOLS=symbols,
                               TRAINING_UNIVERSE_VERSION=universe_version)
    coins = [s.upper() for s in settings.symbols] or load_universe(
        settings.training_universe_version, Path(settings.universe_dir)).symbols()
    cfg = train_config_from_json(train_config_json)
    out = cycle(lake, cfg=cfg, quote=quote, interval=interval, source=source, symbols=coins,
                now=parse_iso_utc(now) if now else datetime.now(UTC))
    out.pop("batches", None)  # the predicted frames: not JSON, and already in the ledger
    champion, shadows = out["sets"][0], out["sets"][1:]
    with open(forecasts.path, "w") as f:
        json.dump(out, f, indent=1, sort_keys=True, default=str)
    forecasts.metadata.update({"at": out["at"], "champion": champion["model_set"], "rows": champion["rows"],
                               "inserted": champion["inserted"], "shadows": [s["model_set"] for s in shadows]})
    summary.log_metric("champion_rows", champion["rows"])
    summary.log_metric("champion_inserted", champion["inserted"])
    summary.log_metric("champion_skipped_coins", len(champion["skipped"]))
    summary.log_metric("shadow_sets", len(shadows))
    summary.log_metric("shadow_rows", sum(s["rows"] for s in shadows))
    log = logging.getLogger("coinline")
    log.info("forecast at %s: champion %s, %d forecasts (%d new), %d shadow set(s)", out["at"],
             champion["model_set"], champion["rows"], champion["inserted"], len(shadows))
    for why in champion["skipped"].values():
        log.warning("skipped %s", why)
    return champion["model_set"]
