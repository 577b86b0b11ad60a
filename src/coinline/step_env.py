"""What every pipeline step (a Kubeflow component) does before it calls the library: settings from its
typed parameters laid over the pod's environment (parameters win; the environment supplies only secrets
and endpoints), logging that redacts those secrets, and the lake."""

from __future__ import annotations

import os
from collections.abc import Mapping

from coinline.app import settings_lake
from coinline.lake.store import Lake
from coinline.logs import setup_logging
from coinline.settings import Settings, load_settings


def step_settings(params: Mapping[str, object]) -> Settings:
    """Settings for a step: `params` maps setting variables (e.g. OBJECT_STORE_URL) to parameter values;
    None leaves the environment's value (or the default). Configures logging."""
    env = {**os.environ, **{k: str(v) for k, v in params.items() if v is not None}}
    settings = load_settings(dotenv=None, env=env)
    setup_logging(settings.secrets())
    return settings


__all__ = ["artifact_field", "settings_lake", "step_lake", "step_settings", "use_ray"]


def step_lake(object_store_url: str, **params: object) -> tuple[Settings, Lake]:
    """Settings and lake of a step whose only setting parameter besides `params` is the lake's URL."""
    settings = step_settings({"OBJECT_STORE_URL": object_store_url, **params})
    return settings, settings_lake(settings)


def use_ray(address: str) -> str:
    """Point this step's Ray fan-out (`coinline.training.executor`) at the cluster `address` (the pipelines'
    `ray_address` parameter: the Helm chart's KubeRay cluster, `ray://<head-svc>:10001`, when it is enabled).
    Blank leaves the pod's environment alone: RAY_ADDRESS if it sets one, else a Ray inside the pod. Returns
    the address the step will use ("" for in-pod)."""
    if address.strip():
        os.environ["RAY_ADDRESS"] = address.strip()
    return os.environ.get("RAY_ADDRESS", "")


def artifact_field(path: str, field: str) -> str:
    """`field` (e.g. run_id, dataset_id) of the JSON document an upstream step wrote as its output artifact:
    steps pass artifacts, not bare ids, so the pipeline's lineage graph shows what each step consumed."""
    import json

    from coinline.errors import CoinlineError

    try:
        with open(path, encoding="utf-8") as f:
            value = json.load(f).get(field)
    except (OSError, ValueError, AttributeError) as exc:
        raise CoinlineError(f"input artifact {path}: cannot read {field!r} ({exc})") from None
    if not isinstance(value, str) or not value:
        raise CoinlineError(f"input artifact {path} names no {field!r}")
    return value
