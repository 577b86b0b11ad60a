"""check_parity: historical provider vs Kraken, per series (`coinline.ingest.parity.parity`): the overlap
of both sources and how far their closes diverge. Flagged series are reported (artifact and metrics),
never silently dropped; parity does not block datasets, as in `coinline run`."""

from kfp import dsl
from kfp.dsl import Artifact, Metrics, Output

from components.image import COINLINE_IMAGE


@dsl.component(base_image=COINLINE_IMAGE, packages_to_install=[], install_kfp_package=False)
def check_parity(
    object_store_url: str,
    report: Output[Artifact],
    summary: Output[Metrics],
    reference_source: str = "coinapi",
    venue_source: str = "kraken",
    tolerance_bps: float = 50.0,
) -> int:
    """Returns the number of flagged series."""
    import json

    from coinline.ingest.parity import parity
    from coinline.step_env import step_lake

    settings, lake = step_lake(object_store_url, COINLINE_PARITY_TOLERANCE_BPS=tolerance_bps)
    rows = [p.to_dict() for p in parity(lake, reference_source=reference_source, venue_source=venue_source,
                                        tolerance_bps=settings.parity_tolerance_bps)]
    with open(report.path, "w") as f:
        json.dump({"reference_source": reference_source, "venue_source": venue_source,
                   "tolerance_bps": settings.parity_tolerance_bps, "series": rows}, f, indent=1, sort_keys=True,
                  default=str)
    flagged = sum(1 for r in rows if r["flagged"])
    summary.log_metric("series_compared", len(rows))
    summary.log_metric("series_flagged", flagged)
    return flagged
