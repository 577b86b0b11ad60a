"""maintain_lake: compaction, VACUUM and checkpoints of the lake's Delta tables (`coinline.lake.maintain`).
VACUUM keeps every file that a table version pinned by a dataset still reads; every run is recorded in the
lake under `maintenance/`."""

from kfp import dsl
from kfp.dsl import Artifact, Output

from components.image import COINLINE_IMAGE


@dsl.component(base_image=COINLINE_IMAGE, packages_to_install=[], install_kfp_package=False)
def maintain_lake(
    object_store_url: str,
    record: Output[Artifact],
    retention_hours: int = 6,
    dry_run: bool = False,
    now: str = "",
) -> str:
    """Returns the lake name of the maintenance record (empty on a dry run, which changes nothing);
    `record` holds the record (or the plan) as JSON."""
    import json
    from datetime import UTC, datetime

    from coinline.lake.maintain import maintain
    from coinline.step_env import step_lake
    from coinline.timeframes import parse_iso_utc

    _settings, lake = step_lake(object_store_url)
    result = maintain(lake, now=parse_iso_utc(now) if now else datetime.now(UTC), dry_run=dry_run,
                      retention_hours=retention_hours)
    with open(record.path, "w") as f:
        json.dump(result, f, indent=1, sort_keys=True, default=str)
    return "" if dry_run else result["record"]
