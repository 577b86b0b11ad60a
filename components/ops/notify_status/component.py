"""notify_status: the pipelines' exit handler. Runs whether the DAG succeeded or failed, logs the final
state (an ERROR line on failure, for alerting on pod logs) and records it in the lake under
`reports/pipelines/`, where the dashboard and operators find failed runs to triage."""

from kfp import dsl
from kfp.dsl import PipelineTaskFinalStatus

from components.image import COINLINE_IMAGE


@dsl.component(base_image=COINLINE_IMAGE, packages_to_install=[], install_kfp_package=False)
def notify_status(
    object_store_url: str,
    pipeline: str,
    now: str,
    status: PipelineTaskFinalStatus,
) -> str:
    """Returns the final state (SUCCEEDED, FAILED, ...). `now` is the run's requested clock (may be
    empty). The record is `reports/pipelines/<pipeline>/<UTC time>-<job>.json`."""
    import logging
    import re
    from datetime import UTC, datetime

    from coinline.step_env import settings_lake, step_settings

    settings = step_settings({"OBJECT_STORE_URL": object_store_url})
    log = logging.getLogger("coinline")
    record = {"pipeline": pipeline, "state": status.state, "job": status.pipeline_job_resource_name,
              "task": status.pipeline_task_name,
              "error_code": status.error_code, "error_message": status.error_message, "now": now}
    if status.state == "SUCCEEDED":
        log.info("pipeline %s (%s) succeeded", pipeline, status.pipeline_job_resource_name)
    else:
        log.error("pipeline %s (%s) ended %s: %s", pipeline, status.pipeline_job_resource_name, status.state,
                  status.error_message)
    lake = settings_lake(settings)
    job = re.sub(r"[^A-Za-z0-9_.-]+", "-", status.pipeline_job_resource_name or "job").strip("-")[-80:]
    lake.write_json(f"reports/pipelines/{pipeline}/{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{job}.json", record)
    return status.state
