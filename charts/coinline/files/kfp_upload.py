"""Upload coinline's compiled pipelines to Kubeflow Pipelines and keep its recurring runs in step.

Run by the chart's post-install/post-upgrade Job (kubeflow.enabled) with the coinline image, which carries
kfp and the compiled pipelines (pipelines/compiled/*.yaml). Idempotent:
- pipeline `<prefix><stem>` is created on first upload (KFP gives it a first version named after the
  pipeline); each file content is uploaded once as version `<stem>-<sha256[:12]>`, which recurring runs
  reference (an unchanged file uploads nothing);
- each recurring run in the spec is created in the experiment, or replaced when its version, schedule,
  parameters or concurrency differ from the spec.
The spec (a JSON file, the one argument) is rendered from the chart's `kubeflow` values.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Any


def content_version(path: Path) -> str:
    return f"{path.stem}-{hashlib.sha256(path.read_bytes()).hexdigest()[:12]}"


def _versions(client: Any, pipeline_id: str) -> dict[str, str]:
    out, token = {}, ""
    while True:
        resp = client.list_pipeline_versions(pipeline_id, page_token=token, page_size=100)
        for v in resp.pipeline_versions or []:
            out[v.display_name] = v.pipeline_version_id
        token = resp.next_page_token or ""
        if not token:
            return out


def upload_pipelines(client: Any, compiled_dir: Path, prefix: str) -> dict[str, tuple[str, str]]:
    """Every compiled pipeline, uploaded as needed; returns stem -> (pipeline_id, version_id)."""
    files = sorted(p for p in compiled_dir.glob("*.y*ml") if p.suffix in (".yaml", ".yml"))
    if not files:
        raise SystemExit(f"kfp-upload: no compiled pipelines in {compiled_dir}")
    out = {}
    for path in files:
        name, version = f"{prefix}{path.stem}", content_version(path)
        pipeline_id = client.get_pipeline_id(name)
        if pipeline_id is None:
            pipeline = client.upload_pipeline(str(path), pipeline_name=name, description=f"coinline {path.stem}")
            pipeline_id = pipeline.pipeline_id
        versions = _versions(client, pipeline_id)
        if version not in versions:
            made = client.upload_pipeline_version(str(path), pipeline_version_name=version, pipeline_id=pipeline_id)
            versions[version] = made.pipeline_version_id
            print(f"kfp-upload: {name}: uploaded version {version}")
        else:
            print(f"kfp-upload: {name}: version {version} already present")
        out[path.stem] = (pipeline_id, versions[version])
    return out


def _experiment_id(client: Any, name: str, namespace: str | None) -> str:
    try:
        return client.get_experiment(experiment_name=name, namespace=namespace).experiment_id
    except ValueError:  # kfp raises ValueError when no experiment has the name
        return client.create_experiment(name, namespace=namespace).experiment_id


def _recurring_runs(client: Any, experiment_id: str) -> dict[str, Any]:
    out, token = {}, ""
    while True:
        resp = client.list_recurring_runs(page_token=token, page_size=100, experiment_id=experiment_id)
        for r in resp.recurring_runs or []:
            out[r.display_name] = r
        token = resp.next_page_token or ""
        if not token:
            return out


def _unchanged(existing: Any, run: dict, version_id: str) -> bool:
    """Same version, schedule, parameters and concurrency as the spec asks for."""
    ref = getattr(existing, "pipeline_version_reference", None)
    cron = getattr(getattr(getattr(existing, "trigger", None), "cron_schedule", None), "cron", None)
    params = getattr(getattr(existing, "runtime_config", None), "parameters", None) or {}
    return (getattr(ref, "pipeline_version_id", None) == version_id and cron == run["cron"]
            and params == (run.get("params") or {})
            and str(getattr(existing, "max_concurrency", None)) == str(int(run.get("maxConcurrency", 1)))
            and bool(getattr(existing, "no_catchup", None)) == bool(run.get("noCatchup", True)))


def sync_recurring_runs(client: Any, spec: dict, uploaded: dict[str, tuple[str, str]]) -> None:
    runs = spec.get("recurringRuns") or []
    if not runs:
        return
    namespace = spec.get("namespace") or None
    experiment_id = _experiment_id(client, spec.get("experiment") or "coinline", namespace)
    existing = _recurring_runs(client, experiment_id)
    for run in runs:
        if run["pipeline"] not in uploaded:
            raise SystemExit(f"kfp-upload: recurring run {run['name']}: no compiled pipeline {run['pipeline']!r}")
        pipeline_id, version_id = uploaded[run["pipeline"]]
        old = existing.get(run["name"])
        if old is not None and _unchanged(old, run, version_id):
            print(f"kfp-upload: recurring run {run['name']} unchanged")
            continue
        if old is not None:
            client.delete_recurring_run(old.recurring_run_id)
        client.create_recurring_run(
            experiment_id, run["name"], cron_expression=run["cron"],
            max_concurrency=int(run.get("maxConcurrency", 1)), no_catchup=bool(run.get("noCatchup", True)),
            params=run.get("params") or {}, pipeline_id=pipeline_id, version_id=version_id, enabled=True,
            service_account=spec.get("runServiceAccount") or None,
        )
        print(f"kfp-upload: recurring run {run['name']} {'replaced' if old else 'created'} ({run['cron']})")


def make_client(spec: dict) -> Any:
    import kfp

    kwargs: dict[str, Any] = {"host": spec["host"]}
    if spec.get("namespace"):
        kwargs["namespace"] = spec["namespace"]
    if spec.get("multiUser"):
        from kfp.client import ServiceAccountTokenVolumeCredentials

        kwargs["credentials"] = ServiceAccountTokenVolumeCredentials(path=None)
    return kfp.Client(**kwargs)


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        raise SystemExit("usage: kfp_upload.py SPEC.json")
    spec = json.loads(Path(argv[0]).read_text())
    client = make_client(spec)
    uploaded = upload_pipelines(client, Path(spec["compiledDir"]), spec.get("pipelinePrefix") or "")
    sync_recurring_runs(client, spec, uploaded)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
