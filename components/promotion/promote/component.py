"""promote_run: the promotion decision for a training run (`coinline.promotion.decide`): every gate is
evaluated on the run's evidence in the lake; only a run that passes them all flips the active pointer.
When this coinline build has no `coinline.promotion.decide`, the step is skipped with a clear message
(nothing is promoted, nothing fails). A REJECT is an outcome, not a failure."""

from typing import NamedTuple

from kfp import dsl
from kfp.dsl import Artifact, Output

from components.image import COINLINE_IMAGE


@dsl.component(base_image=COINLINE_IMAGE, packages_to_install=[], install_kfp_package=False)
def promote_run(
    object_store_url: str,
    run_id: str,
    decision: Output[Artifact],
    now: str = "",
) -> NamedTuple("Promotion", [("outcome", str)]):
    """`outcome`: the decision's outcome (PROMOTE or REJECT), or skipped; `decision` is the decision
    record (its evidence, gate results and reason codes are also kept in the lake)."""
    import importlib
    import json
    import logging
    import os
    from collections import namedtuple
    from datetime import UTC, datetime

    from coinline.lake import open_lake
    from coinline.logs import setup_logging
    from coinline.settings import load_settings
    from coinline.timeframes import parse_iso_utc

    settings = load_settings(dotenv=None, env={**os.environ, "OBJECT_STORE_URL": object_store_url})
    setup_logging(settings.secrets())
    log = logging.getLogger("coinline")
    out = namedtuple("Promotion", ["outcome"])
    try:
        module = importlib.import_module("coinline.promotion.decide")
    except ModuleNotFoundError as exc:
        if exc.name not in ("coinline.promotion", "coinline.promotion.decide"):
            raise  # a dependency of the promotion code is missing: that is a real failure
        module = None
    decide = getattr(module, "decide", None)
    if not callable(decide):
        message = (f"promotion skipped for run {run_id}: this coinline build has no "
                   f"coinline.promotion.decide; the active model set is unchanged")
        log.warning(message)
        with open(decision.path, "w") as f:
            json.dump({"run_id": run_id, "outcome": "skipped", "message": message}, f, indent=1, sort_keys=True)
        return out("skipped")
    lake = open_lake(settings.object_store_url, endpoint_url=settings.object_store_endpoint_url,
                     access_key=settings.object_store_access_key_id,
                     secret_key=settings.object_store_secret_access_key, region=settings.object_store_region)
    record = decide(lake, run_id, now=parse_iso_utc(now) if now else datetime.now(UTC))
    outcome = str(record["outcome"])
    with open(decision.path, "w") as f:
        json.dump(record, f, indent=1, sort_keys=True, default=str)
    decision.metadata.update({"run_id": run_id, "outcome": outcome})
    log.info("promotion decision for run %s: %s", run_id, outcome)
    return out(outcome)
