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


__all__ = ["settings_lake", "step_lake", "step_settings"]


def step_lake(object_store_url: str, **params: object) -> tuple[Settings, Lake]:
    """Settings and lake of a step whose only setting parameter besides `params` is the lake's URL."""
    settings = step_settings({"OBJECT_STORE_URL": object_store_url, **params})
    return settings, settings_lake(settings)
