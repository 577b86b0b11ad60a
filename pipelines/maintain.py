"""coinline-maintain: compaction, VACUUM and checkpoints of the lake's Delta tables, one step (`coinline
maintain`); run it weekly (the Helm chart's maintain CronWorkflow runs the same command). Every sync commits
one small file per series, so without it reads slow down with the number of commits; VACUUM keeps every file
a dataset's pinned table version still reads. Re-running with nothing new changes nothing (it only writes
its record)."""

from kfp import dsl

from components.ops.maintain.component import maintain_lake
from pipelines import steps

NAME = "coinline-maintain"


@dsl.pipeline(name=NAME, description="Compact, vacuum (keeping every pinned dataset version) and checkpoint the lake.")
def maintain_pipeline(
    object_store_url: str,
    retention_hours: int = 6,
    dry_run: bool = False,
    now: str = "",
    k8s_secret_name: str = steps.SECRET_NAME,
    k8s_config_map_name: str = steps.CONFIG_MAP_NAME,
):
    k8s = steps.k8s_names(k8s_secret_name, k8s_config_map_name)
    with steps.exit_handler(NAME, object_store_url=object_store_url, now=now, k8s=k8s, name="maintenance"):
        checked = steps.preflight(k8s, object_store_url=object_store_url, providers=False)
        steps.lake_task(maintain_lake(object_store_url=object_store_url, retention_hours=retention_hours,
                                      dry_run=dry_run, now=now), "maintain", k8s).after(checked)
