"""Recurring runs on a Kubeflow Pipelines cluster: the hourly sync cycle and the retraining cycle.

Schedules are not part of a compiled spec; they are made through the KFP API
(`kfp.Client().create_recurring_run`). `create_schedules(client, settings)` takes the client as an
argument (tests pass a fake), creates each schedule once (an existing one of the same name is left
alone), always with `max_concurrency=1` (a cycle never overlaps the previous one: ingest leases and the
promotion pointer expect one writer) and `no_catchup=True` (after a pause, one run catches up, since every
run fetches whatever the lake lacks). Run parameters come from Settings; secrets never do: the pods get
them from Kubernetes secrets as environment variables.

    coinline schedule --host http://ml-pipeline-ui.kubeflow:80 [--dry-run]

Ownership: these KFP recurring runs are for users who schedule inside Kubeflow. The Helm chart schedules
the same work with Argo CronWorkflows (`coinline sync` then `coinline forecast`, `coinline retrain
--trigger ...`) and creates no KFP recurring runs, so enable one or the other, not both (both would be
safe, since ingest leases, the retrain lock, the promotion pointer's compare-and-swap and the forecasts
ledger's create-only MERGE keep one writer, but would do the work twice).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from coinline.autopilot import RetrainPolicy
from coinline.errors import ConfigError
from coinline.settings import Settings
from pipelines.compile import COMPILED

SYNC_CRON = "0 5 * * * *"   # KFP cron (seconds first): 5 minutes past every hour, once hourly candles closed
EXPERIMENT = "coinline"


@dataclass(frozen=True)
class Schedule:
    name: str
    pipeline: str                      # key of pipelines.PIPELINES, compiled to pipelines/compiled/<pipeline>.yaml
    cron: str                          # KFP's 6-field cron
    params: dict[str, Any] = field(default_factory=dict)


def kfp_cron(expression: str) -> str:
    """KFP's cron has a leading seconds field; a classic 5-field expression (UNIVERSE_REFRESH_CRON's
    form) gets second 0."""
    parts = expression.split()
    if len(parts) == 5:
        return " ".join(["0", *parts])
    if len(parts) == 6:
        return " ".join(parts)
    raise ConfigError(f"cron expression {expression!r} has {len(parts)} fields; expected 5 (or 6 with seconds)")


def ingest_params(s: Settings) -> dict[str, Any]:
    return {"object_store_url": s.object_store_url, "symbols": ",".join(s.symbols), "quotes": ",".join(s.quotes),
            "intervals": list(s.intervals), "universe_version": s.training_universe_version, "venue": s.venue,
            "replay_history_days": s.replay_history_days, "replay_seed": s.replay_seed,
            "replay_profile": s.replay_profile,
            "reconcile_lookback": s.reconcile_lookback, "gap_tolerance": s.gap_tolerance}


def train_params(s: Settings) -> dict[str, Any]:
    """The training config file (COINLINE_TRAIN_CONFIG) is read here and passed as its JSON text, so each
    run records exactly the overrides it trained with."""
    config = Path(s.train_config).read_text() if s.train_config else ""
    if config:
        json.loads(config)  # fail here, not in a pod hours later
    return {"object_store_url": s.object_store_url, "quotes": ",".join(s.quotes), "intervals": list(s.intervals),
            "universe_version": s.training_universe_version, "gap_tolerance": s.gap_tolerance,
            "train_symbols": ",".join(s.symbols), "train_config_json": config, "train_workers": s.train_workers}


def plan_schedules(settings: Settings, *, sync_cron: str = SYNC_CRON,
                   train_cron: str | None = None) -> list[Schedule]:
    """The schedules the settings ask for: sync unless ENABLE_CONTINUOUS_INGESTION=false, retraining
    (on `train_cron`, default the retraining policy's cron, Mondays 04:00 UTC) unless
    ENABLE_AUTONOMOUS_RETRAINING=false."""
    if urlparse(settings.object_store_url).scheme == "file":
        raise ConfigError(f"OBJECT_STORE_URL={settings.object_store_url!r} is a local path; scheduled runs on a "
                          f"cluster need a shared object store (s3://...)")
    out = []
    if settings.enable_continuous_ingestion:
        # the sync cycle ends with a forecast, whose baseline (no active run) takes the training config
        sync = {**ingest_params(settings), "train_config_json": train_params(settings)["train_config_json"]}
        out.append(Schedule("coinline-sync-hourly", "sync", kfp_cron(sync_cron), sync))
    if settings.enable_autonomous_retraining:
        out.append(Schedule("coinline-train-and-promote", "train_and_promote",
                            kfp_cron(train_cron or RetrainPolicy().cron), train_params(settings)))
    return out


def _existing(client: Any, experiment_id: str) -> set[str]:
    names, token = set(), ""
    while True:
        page = client.list_recurring_runs(experiment_id=experiment_id, page_size=100, page_token=token)
        names.update(r.display_name for r in (page.recurring_runs or []))
        token = page.next_page_token or ""
        if not token:
            return names


def create_schedules(client: Any, settings: Settings, *, experiment: str = EXPERIMENT, compiled: Path = COMPILED,
                     sync_cron: str = SYNC_CRON, train_cron: str | None = None) -> list[dict[str, Any]]:
    """Create the recurring runs that do not exist yet; returns what was done for each schedule."""
    planned = plan_schedules(settings, sync_cron=sync_cron, train_cron=train_cron)
    experiment_id = client.create_experiment(name=experiment).experiment_id  # returns the existing one
    existing = _existing(client, experiment_id)
    done = []
    for s in planned:
        package = compiled / f"{s.pipeline}.yaml"
        if not package.is_file():
            raise ConfigError(f"{package} is missing; run `python -m pipelines.compile`")
        if s.name in existing:
            done.append({"name": s.name, "action": "exists", "cron": s.cron})
            continue
        run = client.create_recurring_run(
            experiment_id=experiment_id, job_name=s.name, cron_expression=s.cron, max_concurrency=1,
            no_catchup=True, params=s.params, pipeline_package_path=str(package),
            description=f"coinline {s.pipeline} on {s.cron} (pipelines/schedules.py)")
        done.append({"name": s.name, "action": "created", "cron": s.cron,
                     "id": getattr(run, "recurring_run_id", None)})
    return done
