"""Building blocks shared by the pipelines: each function adds a group of tasks to the pipeline being
defined and returns the tasks later blocks depend on.

Parameter defaults come from `coinline.settings.Settings` field defaults (never the environment), so a
run with no arguments means what `coinline run` means with no configuration. `now` (ISO-8601 UTC) pins
every step's clock, which makes a run reproducible (and lets the offline replay venue serve the same
market to every pod); empty, each step reads its own clock, as each `coinline` command does.
"""

from kfp import dsl, kubernetes

from coinline.preflight import CONFIG_MAP_MOUNT, SECRET_MOUNT
from coinline.settings import Settings
from components.datasets.materialize.component import materialize_dataset
from components.evaluation.evaluate.component import evaluate_run
from components.evaluation.report_html.component import report_html
from components.evaluation.report_metrics.component import report_metrics
from components.evaluation.simulate.component import simulate_run
from components.forecasting.forecast.component import forecast_cycle
from components.ingest.backfill.component import backfill_history
from components.ingest.retry_gaps.component import retry_gaps
from components.ingest.sync.component import sync_candles
from components.ops.notify_status.component import notify_status
from components.ops.plan_run.component import plan_run
from components.ops.preflight.component import preflight as preflight_component
from components.promotion.promote.component import promote_run
from components.quality.check_parity.component import check_parity
from components.quality.validate.component import validate_lake
from components.training.ensemble.component import build_ensemble
from components.training.global_models.component import train_global_models
from components.training.prepare.component import prepare_training
from components.training.specialists.component import train_specialists
from pipelines import resources

DEFAULTS = Settings()
QUOTES = ",".join(DEFAULTS.quotes)
INTERVALS = list(DEFAULTS.intervals)
UNIVERSE = DEFAULTS.training_universe_version
HIST_SOURCE = "coinapi"      # the source name the historical provider's candles are stored under
VENUE_QUOTES = "USD"         # Kraken venue-parity sync covers the USD pairs, as `coinline run` does
GROUP_SIZE = 5               # coins per ingest task
GROUP_PARALLELISM = 3        # coin groups ingested at once (they share the provider's request budget)

# What pods read from their environment at run time (never parameters, never compiled in): the secrets,
# from the Kubernetes Secret named by the `k8s_secret_name` parameter, and the deployment's endpoints,
# from the ConfigMap named by `k8s_config_map_name` (the Helm chart's `<release>-secrets` and
# `<release>-config`; "coinline-*" for a release named coinline: the chart's uploader sets these defaults to
# its release's names). Both optional: absent keys stay unset; the first step (preflight) checks that both
# exist and fails the run, naming what is missing, when not.
SECRET_NAME, CONFIG_MAP_NAME = "coinline-secrets", "coinline-config"
# Every pipeline pod carries these labels: part-of lets it reach the chart's MinIO, component the chart's
# Ray head (the chart's NetworkPolicies select on them).
POD_LABELS = {"app.kubernetes.io/part-of": "coinline", "app.kubernetes.io/component": "pipeline-step"}
SECRET_VARIABLES = ("HIST_MARKET_DATA_API_KEY", "HIST_MARKET_DATA_API_SECRET", "UNIVERSE_SOURCE_API_KEY",
                    "KRAKEN_API_KEY", "KRAKEN_API_SECRET", "OBJECT_STORE_ACCESS_KEY_ID",
                    "OBJECT_STORE_SECRET_ACCESS_KEY")
DEPLOYMENT_VARIABLES = ("HIST_MARKET_DATA_PROVIDER", "HIST_MARKET_DATA_BASE_URL", "HIST_MARKET_DATA_EXCHANGE",
                        "UNIVERSE_SOURCE_PROVIDER", "UNIVERSE_SOURCE_API_TIER", "UNIVERSE_SOURCE_BASE_URL",
                        "KRAKEN_PUBLIC_BASE_URL", "OBJECT_STORE_ENDPOINT_URL", "OBJECT_STORE_REGION",
                        "COINLINE_UNIVERSE_DIR")


def ingest_retry(task: dsl.PipelineTask) -> dsl.PipelineTask:
    """Provider calls fail transiently; ingest is resumable, so a retried task only fetches what is left."""
    return task.set_retry(num_retries=3, backoff_duration="60s", backoff_factor=2.0, backoff_max_duration="1800s")


def runtime_env(task: dsl.PipelineTask, k8s: dict) -> dsl.PipelineTask:
    """Expose the Secret and the ConfigMap named in `k8s` (pipeline parameters) to the task's pod, and label
    it as coinline's pipeline step (the Helm chart's NetworkPolicies let only such pods reach the object store
    and the Ray head)."""
    for key, value in POD_LABELS.items():
        kubernetes.add_pod_label(task, label_key=key, label_value=value)
    kubernetes.use_secret_as_env(task, secret_name=k8s["secret"], secret_key_to_env={v: v for v in SECRET_VARIABLES},
                                 optional=True)
    kubernetes.use_config_map_as_env(task, config_map_name=k8s["config_map"],
                                     config_map_key_to_env={v: v for v in DEPLOYMENT_VARIABLES}, optional=True)
    return task


def lake_task(task: dsl.PipelineTask, name: str, k8s: dict) -> dsl.PipelineTask:
    """A step that reads or writes the lake (and may call providers): it gets the runtime environment, its
    component's requests and limits (`pipelines/resources.py`), and is never cached, because its result
    depends on the lake's state and the clock, not only on its parameters."""
    return runtime_env(resources.size(task.set_caching_options(False).set_display_name(name)), k8s)


def accelerator(accelerator_type, accelerator_count, node_selector, tolerations) -> dict:
    """The pipeline parameters of the accelerator option (`resources.accelerate`), for train_report_promote."""
    return dict(accelerator_type=accelerator_type, accelerator_count=accelerator_count, node_selector=node_selector,
                tolerations=tolerations)


def k8s_names(secret_name, config_map_name) -> dict:
    return {"secret": secret_name, "config_map": config_map_name}


def preflight(k8s: dict, *, object_store_url, venue="auto", providers: bool = True,
              ray_address="") -> dsl.PipelineTask:
    """The first step of every pipeline (every other step runs after it): the Secret and ConfigMap exist, the
    credentials are set, the lake, the providers and the Ray cluster answer (`coinline.preflight`). The pod
    also mounts the Secret and the ConfigMap as optional volumes, which is how it sees whether they exist."""
    task = lake_task(preflight_component(object_store_url=object_store_url, secret_name=k8s["secret"],
                                         config_map_name=k8s["config_map"], venue=venue, providers=providers,
                                         ray_address=ray_address), "preflight", k8s)
    kubernetes.use_secret_as_volume(task, secret_name=k8s["secret"], mount_path=SECRET_MOUNT, optional=True)
    kubernetes.use_config_map_as_volume(task, config_map_name=k8s["config_map"], mount_path=CONFIG_MAP_MOUNT,
                                        optional=True)
    kubernetes.use_field_path_as_env(task, env_name="POD_NAMESPACE", field_path="metadata.namespace")
    return task


def exit_handler(pipeline: str, *, object_store_url, now, k8s: dict, name: str) -> dsl.ExitHandler:
    """The exit handler every pipeline runs in: `notify_status` records the final state, even on failure."""
    notify = notify_status(object_store_url=object_store_url, pipeline=pipeline, now=now)
    return dsl.ExitHandler(lake_task(notify, "notify", k8s), name=name)


def ingest(*, mode: str, k8s: dict, object_store_url, symbols, quotes, intervals, universe_version, venue, group_size,
           replay_history_days, replay_seed, replay_profile, reconcile_lookback, gap_tolerance,
           now, after: dsl.PipelineTask) -> dsl.PipelineTask:
    """Plan (once `after`, the preflight, passed); then per coin group the historical provider (`mode` backfill
    or sync) and its gap retry, with Kraken's venue sync beside them; then the quality gate and venue parity
    over the whole lake. Returns the quality gate's task."""
    planned = plan_run(object_store_url=object_store_url, intervals=intervals, symbols=symbols, quotes=quotes,
                       universe_version=universe_version, group_size=group_size)
    lake_task(planned, "plan", k8s).after(after)
    series = dict(object_store_url=object_store_url, universe_version=universe_version, venue=venue,
                  replay_history_days=replay_history_days, replay_seed=replay_seed, replay_profile=replay_profile,
                  now=now)
    with dsl.ParallelFor(planned.output, parallelism=GROUP_PARALLELISM) as group:
        step = backfill_history if mode == "backfill" else sync_candles
        hist = step(symbols=group, intervals=intervals, quotes=quotes, reconcile_lookback=reconcile_lookback,
                    **series)
        ingest_retry(lake_task(hist, f"{mode} (historical provider)", k8s))
        gaps = ingest_retry(lake_task(retry_gaps(symbols=group, **series).after(hist), "retry gaps", k8s))
        venue_sync = ingest_retry(lake_task(
            sync_candles(symbols=group, intervals=intervals, source="kraken", quotes=VENUE_QUOTES,
                         reconcile_lookback=reconcile_lookback, **series), "sync (Kraken venue)", k8s))
    validated = lake_task(validate_lake(object_store_url=object_store_url, gap_tolerance=gap_tolerance),
                          "validate", k8s).after(gaps, venue_sync)
    lake_task(check_parity(object_store_url=object_store_url, reference_source=HIST_SOURCE),
              "parity", k8s).after(gaps, venue_sync)
    return validated


def forecast(after: dsl.PipelineTask, *, k8s: dict, object_store_url, symbols, universe_version, quote, interval,
             train_config_json, now) -> dsl.PipelineTask:
    """One live forecasting cycle (champion + shadows, newest closed candle) once `after` succeeded: the
    ledger only ever gets forecasts from candles that passed the quality gate."""
    return lake_task(forecast_cycle(object_store_url=object_store_url, symbols=symbols,
                                    universe_version=universe_version, quote=quote, interval=interval,
                                    source=HIST_SOURCE, train_config_json=train_config_json, now=now),
                     "forecast", k8s).after(after)


def materialize(interval, *, k8s: dict, object_store_url, quotes, universe_version, gap_tolerance,
                now) -> dsl.PipelineTask:
    return lake_task(materialize_dataset(object_store_url=object_store_url, interval=interval, source=HIST_SOURCE,
                                         quotes=quotes, universe_version=universe_version,
                                         gap_tolerance=gap_tolerance, now=now), "materialize", k8s)


def train_report_promote(dataset: dsl.PipelineTask, interval, *, k8s: dict, object_store_url, train_quote,
                         train_symbols, train_config_json, train_workers, promote, now, accelerator: dict,
                         ray_address="") -> None:
    """Train on the dataset one step at a time (prepare; per-coin specialists on Ray beside the global regime
    model; ensemble; evaluate; simulate, which writes the run; the per-coin fan-out goes to the Ray cluster at
    `ray_address` when set, else to a Ray inside the pod), each step consuming the artifact of the one
    before (the run's lineage in KFP's metadata), turn the run's metrics into KFP visualizations, then (when
    `promote`) decide promotion through the gates, and last the HTML oversight report, which shows it.
    `accelerator` (steps.accelerator of the pipeline's trainer_* parameters) places the specialists' pod, which
    fits the LSTM and Transformer families, on accelerator nodes when its type is set."""
    store = dict(object_store_url=object_store_url)
    prepared = lake_task(prepare_training(dataset=dataset.outputs["manifest"], interval=interval, quote=train_quote,
                                          symbols=train_symbols, train_config_json=train_config_json,
                                          workers=train_workers, **store), "prepare training", k8s)
    specialists = lake_task(train_specialists(prepared=prepared.outputs["prepared"], workers=train_workers,
                                              ray_address=ray_address, **store), "per-coin specialists", k8s)
    resources.accelerate(specialists, **accelerator)
    regime = lake_task(train_global_models(prepared=prepared.outputs["prepared"], **store), "global regime model", k8s)
    ensemble = lake_task(build_ensemble(specialists=specialists.outputs["specialists"],
                                        regime_model=regime.outputs["regime_model"], workers=train_workers,
                                        ray_address=ray_address, **store),
                         "ensemble", k8s)
    evaluated = lake_task(evaluate_run(ensemble=ensemble.outputs["ensemble"], **store), "evaluate", k8s)
    simulated = lake_task(simulate_run(evaluation=evaluated.outputs["evaluation"], **store), "simulate", k8s)
    reported = resources.size(report_metrics(run_metrics=simulated.outputs["run_metrics"])
                              .set_display_name("report metrics"))
    run_id = simulated.outputs["Output"]
    with dsl.If(promote == True, name="promotion-enabled"):  # noqa: E712 (compares a pipeline parameter)
        decided = lake_task(promote_run(run_manifest=simulated.outputs["run_manifest"], now=now, **store),
                            "promote", k8s)
        lake_task(report_html(run_id=run_id, now=now, **store), "oversight report", k8s).after(decided, reported)
    with dsl.Else(name="promotion-disabled"):
        lake_task(report_html(run_id=run_id, now=now, **store), "oversight report", k8s).after(reported)
