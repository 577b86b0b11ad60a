"""report_html: a training run's self-contained HTML oversight report (`coinline.report.build.build_report`:
coverage, gaps and corrections, validation, out-of-sample skill, calibration, simulation, live forecasts, drift,
promotion decisions, lineage) written as a KFP HTML artifact, so the run page shows it as a visualization. Reads
the lake; writes nothing there."""

from kfp import dsl
from kfp.dsl import HTML, Output

from components.image import COINLINE_IMAGE


@dsl.component(base_image=COINLINE_IMAGE, packages_to_install=[], install_kfp_package=False)
def report_html(
    object_store_url: str,
    run_id: str,
    report: Output[HTML],
    now: str = "",
) -> int:
    """Returns the size of the HTML document in bytes; fails when the run has no metrics.json."""
    import logging

    from coinline.report.build import build_report
    from coinline.step_env import step_lake
    from coinline.timeframes import parse_iso_utc

    _, lake = step_lake(object_store_url)
    html = build_report(lake, run_id, generated_at=parse_iso_utc(now) if now else None)
    with open(report.path, "w", encoding="utf-8") as f:
        f.write(html)
    size = len(html.encode())
    report.metadata.update({"run_id": run_id, "bytes": size})
    logging.getLogger("coinline").info("oversight report of run %s: %d bytes", run_id, size)
    return size
