"""validate_lake: the quality gate over the lake (`coinline.quality.lake_checks.validate_lake`): the raw
suite over every new ingest batch, the canonical suite over every stored series. Results are stored in
the lake (`quality/`) and returned as an artifact; any failed suite fails the task."""

from kfp import dsl
from kfp.dsl import Artifact, Metrics, Output

from components.image import COINLINE_IMAGE


@dsl.component(base_image=COINLINE_IMAGE, packages_to_install=[], install_kfp_package=False)
def validate_lake(
    object_store_url: str,
    results: Output[Artifact],
    summary: Output[Metrics],
    gap_tolerance: int = 0,
) -> bool:
    import json

    from coinline.quality.lake_checks import validate_lake as validate
    from coinline.step_env import step_lake

    settings, lake = step_lake(object_store_url, COINLINE_GAP_TOLERANCE=gap_tolerance)
    checked = validate(lake, gap_tolerance=settings.gap_tolerance)
    with open(results.path, "w") as f:
        json.dump({"results": [r.to_dict() for r in checked]}, f, indent=1, sort_keys=True, default=str)
    summary.log_metric("suites", len(checked))
    summary.log_metric("suites_failed", sum(not r.success for r in checked))
    summary.log_metric("rows_checked", sum(r.row_count for r in checked))
    failed = [r for r in checked if not r.success]
    if failed:
        raise RuntimeError(f"{len(failed)} quality suite(s) failed: {failed[0].summary()}")
    return True
