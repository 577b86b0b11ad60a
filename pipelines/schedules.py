"""Recurring runs on a Kubeflow Pipelines cluster: the hourly sync cycle and the retraining cycle.

Schedules are not part of a compiled spec; they are made through the KFP API
(`kfp.Client().create_recurring_run`). `create_schedules(client, settings)` takes the client as an
argument (tests pass a fake) and makes the experiment's recurring runs match the plan, one per name: each
runs a version of the uploaded pipeline `coinline-<pipeline>` (the newest one, which the Helm chart's
uploader keeps current with the chart's images and names; the local compiled spec is uploaded as a version
when there is no such pipeline yet, or always with `upload=True`). A missing run is created, one that
differs (another pipeline version, cron or parameters) is replaced under the same name, extra runs of one
name are deleted, and an identical one is left alone. Always `max_concurrency=1` (a cycle never overlaps
the previous one: ingest leases and the promotion pointer expect one writer) and `no_catchup=True` (after a
pause, one run catches up, since every run fetches whatever the lake lacks). Run parameters come from
Settings; secrets never do: the pods get them from Kubernetes secrets as environment variables. The
Secret/ConfigMap names and the Ray address are not passed either: the version's defaults (the chart's) apply.

    coinline schedule --host http://ml-pipeline-ui.kubeflow:80 [--dry-run] [--upload]

On a chart upgrade, the uploader moves these recurring runs to the new pipeline versions itself.

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

import coinline
from coinline import kfp_deploy
from coinline.autopilot import RetrainPolicy
from coinline.errors import ConfigError
from coinline.settings import Settings
from pipelines.compile import COMPILED

SYNC_CRON = "0 5 * * * *"   # KFP cron (seconds first): 5 minutes past every hour, once hourly candles closed
EXPERIMENT = "coinline"
PIPELINE_PREFIX = "coinline-"   # uploaded pipeline names: the Helm chart's kubeflow.pipelinePrefix


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


def _normal(value: Any) -> Any:
    """A parameter value as KFP hands it back (numbers may come back as floats) for comparison."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, list):
        return [_normal(v) for v in value]
    if isinstance(value, dict):
        return {k: _normal(v) for k, v in value.items()}
    return value


def _same(run: Any, schedule: Schedule, version_id: str) -> bool:
    trigger = getattr(getattr(run, "trigger", None), "cron_schedule", None)
    params = getattr(getattr(run, "runtime_config", None), "parameters", None) or {}
    return (kfp_deploy.runs_version(run) == version_id and getattr(trigger, "cron", None) == schedule.cron
            and _normal(dict(params)) == _normal(schedule.params) and getattr(run, "no_catchup", False) is True
            and str(getattr(run, "max_concurrency", "")) == "1")


def pipeline_version(client: Any, pipeline: str, package: Path, *, prefix: str = PIPELINE_PREFIX,
                     upload: bool = False, namespace: str | None = None) -> tuple[str, str, str]:
    """(pipeline id, version id, version name) the schedule of `pipeline` runs: the newest version of the
    uploaded pipeline `<prefix><pipeline>`; the local compiled spec, uploaded as version
    `<pipeline>-<coinline version>-<sha12>`, when that pipeline does not exist or `upload`."""
    name = f"{prefix}{pipeline}"
    if not upload:
        newest = kfp_deploy.newest_version(client, name)
        if newest is not None:
            pipeline_id, version = newest
            return pipeline_id, version.pipeline_version_id, version.display_name
    text = package.read_text()
    kfp_deploy.load_spec(text)  # a readable compiled spec, or a one-line error
    uploaded = kfp_deploy.ensure_version(client, name, str(package),
                                         kfp_deploy.version_name(pipeline, coinline.__version__, text),
                                         description=f"coinline {pipeline} {coinline.__version__} (coinline schedule)",
                                         namespace=namespace)
    return uploaded.pipeline_id, uploaded.version_id, uploaded.version


def create_schedules(client: Any, settings: Settings, *, experiment: str = EXPERIMENT, compiled: Path = COMPILED,
                     sync_cron: str = SYNC_CRON, train_cron: str | None = None, prefix: str = PIPELINE_PREFIX,
                     upload: bool = False, namespace: str | None = None) -> list[dict[str, Any]]:
    """Make the experiment's recurring runs match the planned schedules (see the module doc); returns what
    was done for each: created, updated (replaced: another version, cron or parameters), unchanged."""
    planned = plan_schedules(settings, sync_cron=sync_cron, train_cron=train_cron)
    for s in planned:
        package = compiled / f"{s.pipeline}.yaml"
        if not package.is_file():
            raise ConfigError(f"{package} is missing; run `python -m pipelines.compile`")
    kwargs = {"namespace": namespace} if namespace else {}
    experiment_id = client.create_experiment(name=experiment, **kwargs).experiment_id  # returns the existing one
    existing: dict[str, list[Any]] = {}
    for run in kfp_deploy.recurring_runs(client, experiment_id=experiment_id):
        existing.setdefault(run.display_name, []).append(run)
    done = []
    for s in planned:
        pipeline_id, version_id, version = pipeline_version(client, s.pipeline, compiled / f"{s.pipeline}.yaml",
                                                            prefix=prefix, upload=upload, namespace=namespace)
        runs = existing.get(s.name, [])
        keep = next((r for r in runs if _same(r, s, version_id)), None)
        entry: dict[str, Any] = {"name": s.name, "cron": s.cron, "version": version}
        if keep is not None:
            entry.update(action="unchanged", id=keep.recurring_run_id)
        elif runs:
            keep = kfp_deploy.replace_run(client, runs[0], pipeline_id=pipeline_id, version_id=version_id,
                                          cron=s.cron, params=s.params, max_concurrency=1,
                                          description=f"coinline {s.pipeline} on {s.cron} (pipelines/schedules.py)")
            entry.update(action="updated", id=getattr(keep, "recurring_run_id", None),
                         previous=kfp_deploy.runs_version(runs[0]) or "embedded spec")
        else:
            keep = client.create_recurring_run(
                experiment_id=experiment_id, job_name=s.name, cron_expression=s.cron, max_concurrency=1,
                no_catchup=True, params=s.params, pipeline_id=pipeline_id, version_id=version_id,
                description=f"coinline {s.pipeline} on {s.cron} (pipelines/schedules.py)")
            entry.update(action="created", id=getattr(keep, "recurring_run_id", None))
        extras = [r for r in runs if r is not keep and r is not runs[0]] if entry["action"] == "updated" else \
            [r for r in runs if r is not keep]
        for extra in extras:  # one recurring run per name
            client.delete_recurring_run(extra.recurring_run_id)
        if extras:
            entry["duplicates_deleted"] = len(extras)
        done.append(entry)
    return done
