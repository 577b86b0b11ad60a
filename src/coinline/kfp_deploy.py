"""Putting compiled pipelines on a Kubeflow Pipelines cluster: specs retargeted to the deployment's images and
names, uploaded as named versions, and recurring runs kept on the current version.

Used by `python -m pipelines.compile --image` (the images only), by the Helm chart's uploader Job
(charts/coinline/files/kfp_upload.py: images, digests, the release's Secret/ConfigMap names and Ray address
as parameter defaults) and by `coinline schedule` (pipelines/schedules.py). kfp and PyYAML are imported
lazily; a client is passed in (tests pass a fake), and only these kfp.Client (2.17) methods are used:
get_pipeline_id, upload_pipeline, upload_pipeline_version, list_pipeline_versions, list_recurring_runs,
create_recurring_run, delete_recurring_run. KFP's v2beta1 API has no update of a recurring run: one is moved
to another pipeline version by creating its replacement (same name, trigger, parameters, experiment,
no catch-up) and then deleting it.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("coinline")

# The repositories the committed specs name (components/image.py builds its references from these): a
# retarget swaps every executor image of one of them for the deployment's reference of the same role.
RUNTIME_REPOSITORY = "ghcr.io/coinline/coinline"
TRAINER_REPOSITORY = "ghcr.io/coinline/coinline-trainer"
ROLES = {"runtime": RUNTIME_REPOSITORY, "trainer": TRAINER_REPOSITORY}


class DeployError(Exception):
    """A spec or a cluster state the deployment refuses to act on (one line)."""


def repository_of(ref: str) -> str:
    """`registry/name` of an image reference `registry[:port]/name[:tag][@digest]`."""
    name = ref.split("@", 1)[0]
    slash = name.rfind("/")
    colon = name.rfind(":")
    return name[:colon] if colon > slash else name


def load_spec(text: str) -> list[dict]:
    import yaml

    docs = [d for d in yaml.safe_load_all(text) if d is not None]
    if not docs or "deploymentSpec" not in docs[0] or "root" not in docs[0]:
        raise DeployError("not a compiled KFP pipeline spec (no deploymentSpec/root)")
    return docs


def dump_spec(docs: list[dict]) -> str:
    import yaml

    return yaml.safe_dump_all(docs, sort_keys=False, width=1_000_000)


def executor_images(docs: list[dict]) -> dict[str, str]:
    return {name: ex["container"]["image"] for name, ex in docs[0]["deploymentSpec"]["executors"].items()
            if "container" in ex}


def retarget(docs: list[dict], images: Mapping[str, str] | None = None,
             defaults: Mapping[str, Any] | None = None) -> list[dict]:
    """The spec with every executor image swapped by role (`images`: {"runtime": ref, "trainer": ref}; a
    role left out or blank keeps its image) and pipeline parameter defaults set (`defaults`: {name: value},
    only parameters the pipeline has). An executor image of neither repository fails: the result would not
    run the deployment's images. Changes `docs` in place and returns it."""
    for role in images or {}:
        if role not in ROLES:
            raise DeployError(f"unknown image role {role!r} (known: {', '.join(ROLES)})")
    swap = {ROLES[role]: ref for role, ref in (images or {}).items() if ref}
    for name, ex in docs[0]["deploymentSpec"]["executors"].items():
        container = ex.get("container")
        if not container:
            continue
        repository = repository_of(container["image"])
        if repository not in ROLES.values():
            raise DeployError(f"executor {name} runs {container['image']}, an image of neither {RUNTIME_REPOSITORY} "
                              f"nor {TRAINER_REPOSITORY}: this spec was not compiled by coinline")
        if repository in swap:
            container["image"] = swap[repository]
    params = docs[0]["root"].get("inputDefinitions", {}).get("parameters", {})
    for key, value in (defaults or {}).items():
        if key in params:
            params[key]["defaultValue"] = value
    return docs


def version_name(stem: str, release_version: str, text: str) -> str:
    """`<stem>-<release version>-<sha256 of the spec, 12 hex>`: named by the chart (or coinline) version that
    uploads it, and content-addressed, so a changed spec (another image, digest or default) under the same
    version is a new pipeline version and an unchanged one is never uploaded twice."""
    version = re.sub(r"[^0-9A-Za-z._-]", "_", release_version)
    return f"{stem}-{version}-{hashlib.sha256(text.encode()).hexdigest()[:12]}"


def spec_inputs(docs: list[dict]) -> set[str]:
    return set(docs[0]["root"].get("inputDefinitions", {}).get("parameters", {}))


def spec_name(docs: list[dict]) -> str:
    return docs[0].get("pipelineInfo", {}).get("name", "")


# --- pipelines and versions ---------------------------------------------------------------------------------

def _pages(fetch, field: str) -> Iterable[Any]:
    token = ""
    while True:
        page = fetch(token)
        yield from getattr(page, field, None) or []
        token = getattr(page, "next_page_token", None) or ""
        if not token:
            return


def versions_of(client: Any, pipeline_id: str) -> list[Any]:
    return list(_pages(lambda t: client.list_pipeline_versions(pipeline_id, page_token=t, page_size=100),
                       "pipeline_versions"))


@dataclass(frozen=True)
class Uploaded:
    pipeline_id: str
    version_id: str
    version: str
    created: bool       # False: that version was already there


def ensure_version(client: Any, pipeline: str, path: str, version: str, *, description: str = "",
                   namespace: str | None = None) -> Uploaded:
    """Pipeline `pipeline` with version `version` from the spec at `path`, uploading what is missing."""
    pipeline_id = client.get_pipeline_id(pipeline)
    if pipeline_id is None:
        kwargs = {"namespace": namespace} if namespace else {}
        pipeline_id = client.upload_pipeline(path, pipeline_name=pipeline, description=description or pipeline,
                                             **kwargs).pipeline_id
    existing = {v.display_name: v.pipeline_version_id for v in versions_of(client, pipeline_id)}
    if version in existing:
        return Uploaded(pipeline_id, existing[version], version, False)
    made = client.upload_pipeline_version(path, pipeline_version_name=version, pipeline_id=pipeline_id,
                                          description=description or None)
    return Uploaded(pipeline_id, made.pipeline_version_id, version, True)


def newest_version(client: Any, pipeline: str) -> tuple[str, Any] | None:
    """(pipeline id, its most recently created version), or None when there is no such pipeline."""
    pipeline_id = client.get_pipeline_id(pipeline)
    if pipeline_id is None:
        return None
    versions = versions_of(client, pipeline_id)
    if not versions:
        return None
    return pipeline_id, max(versions, key=lambda v: (str(getattr(v, "created_at", "") or ""), v.display_name))


# --- recurring runs ----------------------------------------------------------------------------------------

def recurring_runs(client: Any, *, experiment_id: str | None = None, namespace: str | None = None) -> list[Any]:
    kwargs: dict[str, Any] = {}
    if experiment_id:
        kwargs["experiment_id"] = experiment_id
    elif namespace:
        kwargs["namespace"] = namespace
    return list(_pages(lambda t: client.list_recurring_runs(page_token=t, page_size=100, **kwargs),
                       "recurring_runs"))


def _ref(run: Any) -> tuple[str | None, str | None]:
    ref = getattr(run, "pipeline_version_reference", None)
    if ref is None:
        return None, getattr(run, "pipeline_version_id", None)
    return getattr(ref, "pipeline_id", None), getattr(ref, "pipeline_version_id", None)


def runs_version(run: Any) -> str | None:
    return _ref(run)[1]


def embedded_pipeline_name(run: Any) -> str:
    spec = getattr(run, "pipeline_spec", None)
    if isinstance(spec, Mapping):
        return str((spec.get("pipelineInfo") or spec.get("pipeline_info") or {}).get("name", ""))
    return ""


def _trigger(run: Any) -> dict[str, Any]:
    trigger = getattr(run, "trigger", None)
    cron = getattr(trigger, "cron_schedule", None) if trigger else None
    periodic = getattr(trigger, "periodic_schedule", None) if trigger else None
    if cron is not None and getattr(cron, "cron", None):
        return {"cron_expression": cron.cron, "start_time": getattr(cron, "start_time", None),
                "end_time": getattr(cron, "end_time", None)}
    if periodic is not None and getattr(periodic, "interval_second", None):
        return {"interval_second": int(periodic.interval_second), "start_time": getattr(periodic, "start_time", None),
                "end_time": getattr(periodic, "end_time", None)}
    raise DeployError(f"recurring run {run.display_name!r} has neither a cron nor a periodic trigger")


def _params(run: Any) -> dict[str, Any]:
    config = getattr(run, "runtime_config", None)
    return dict(getattr(config, "parameters", None) or {})


def replace_run(client: Any, run: Any, *, pipeline_id: str, version_id: str, inputs: set[str] | None = None,
                cron: str | None = None, params: Mapping[str, Any] | None = None,
                max_concurrency: int | None = None, description: str | None = None) -> Any:
    """Create `run`'s replacement on the given pipeline version (same name, experiment, trigger, parameters,
    service account and enabled state unless overridden; parameters the new version does not take are
    dropped; never catching up), then delete `run`. Created first: a failure leaves the old run in place."""
    trigger = _trigger(run)
    if cron:
        trigger = {"cron_expression": cron}
    values = dict(_params(run) if params is None else params)
    if inputs is not None:
        dropped = sorted(set(values) - inputs)
        if dropped:
            log.warning("recurring run %s: parameters %s are not inputs of the new version; dropped",
                        run.display_name, ", ".join(dropped))
        values = {k: v for k, v in values.items() if k in inputs}
    config = getattr(run, "runtime_config", None)
    made = client.create_recurring_run(
        experiment_id=run.experiment_id, job_name=run.display_name,
        description=run.description if description is None else description,
        max_concurrency=int(max_concurrency or getattr(run, "max_concurrency", None) or 1), no_catchup=True,
        params=values, pipeline_id=pipeline_id, version_id=version_id,
        enabled=str(getattr(run, "mode", "ENABLE") or "ENABLE").upper() != "DISABLE",
        pipeline_root=getattr(config, "pipeline_root", None) or None,
        service_account=getattr(run, "service_account", None) or None, **trigger)
    client.delete_recurring_run(run.recurring_run_id)
    return made


def move_recurring_runs(client: Any, *, pipeline_id: str, version_id: str, pipeline_name: str, inputs: set[str],
                        namespace: str | None = None) -> list[dict[str, str]]:
    """Every recurring run of this pipeline (a version of `pipeline_id`, or an embedded spec named
    `pipeline_name`, as older `coinline schedule` made them) moved to `version_id`; of several runs with one
    name (in one experiment) one is kept. Returns what was done to each."""
    done: list[dict[str, str]] = []
    ours = [r for r in recurring_runs(client, namespace=namespace)
            if _ref(r)[0] == pipeline_id or (_ref(r)[1] is None and pipeline_name
                                             and embedded_pipeline_name(r) == pipeline_name)]
    by_name: dict[tuple[str, str], list[Any]] = {}
    for run in ours:
        by_name.setdefault((run.experiment_id, run.display_name), []).append(run)
    for (_, name), runs in sorted(by_name.items()):
        current = [r for r in runs if runs_version(r) == version_id]
        keep = current[0] if current else None
        for extra in runs:
            if extra is keep:
                continue
            if keep is None:
                keep = replace_run(client, extra, pipeline_id=pipeline_id, version_id=version_id, inputs=inputs)
                done.append({"name": name, "action": "moved", "from": runs_version(extra) or "embedded spec"})
            else:
                client.delete_recurring_run(extra.recurring_run_id)
                done.append({"name": name, "action": "duplicate deleted", "id": extra.recurring_run_id})
        if current and len(runs) == 1:
            done.append({"name": name, "action": "current"})
    return done
