"""promote_run: the promotion decision for a training run (`coinline.promotion.decide.decide`): every gate
is evaluated on the run's evidence in the lake; only a run that passes them all flips the active pointer.
A REJECT is an outcome, not a failure: the active model set is left as it was. The gates policy (the
packaged default) must be the adopted one or approved (`coinline approve thresholds HASH`), else the step fails."""

from typing import NamedTuple

from kfp import dsl
from kfp.dsl import Artifact, Input, Markdown, Model, Output

from components.image import COINLINE_IMAGE


@dsl.component(base_image=COINLINE_IMAGE, packages_to_install=[], install_kfp_package=False)
def promote_run(
    object_store_url: str,
    run_manifest: Input[Model],
    decision: Output[Artifact],
    summary: Output[Markdown],
    now: str = "",
) -> NamedTuple("Promotion", [("outcome", str), ("decision_id", str)]):
    """`run_manifest`: the training run's manifest (simulate_run's output). `outcome`: PROMOTE or REJECT; `decision` is the decision record (its evidence, gate results and
    reason codes are also kept in the lake under decisions/); `summary` shows the gates in the run page."""
    import json
    import logging
    from collections import namedtuple
    from datetime import UTC, datetime

    from coinline.autopilot import require_promotion_policy
    from coinline.promotion.decide import decide
    from coinline.promotion.markdown import decision_markdown
    from coinline.promotion.policy import load_policy
    from coinline.step_env import artifact_field, step_lake
    from coinline.timeframes import parse_iso_utc

    run_id = artifact_field(run_manifest.path, "run_id")
    _, lake = step_lake(object_store_url)
    when = parse_iso_utc(now) if now else datetime.now(UTC)
    policy = load_policy()
    require_promotion_policy(lake, policy, now=when)   # an unapproved gates policy never takes effect
    record = decide(lake, run_id, now=when, policy=policy)
    outcome, decided = str(record["outcome"]), record["decision"]
    with open(decision.path, "w") as f:
        json.dump(record, f, indent=1, sort_keys=True, default=str)
    with open(summary.path, "w") as f:
        f.write(decision_markdown(decided, activated=bool(record.get("activated"))))
    meta = {"run_id": run_id, "outcome": outcome, "decision_id": decided["decision_id"],
            "reason_codes": ",".join(decided.get("reason_codes") or [])}
    decision.metadata.update(meta)
    summary.metadata.update(meta)
    logging.getLogger("coinline").info("promotion decision for run %s: %s %s", run_id, outcome,
                                       meta["reason_codes"])
    return namedtuple("Promotion", ["outcome", "decision_id"])(outcome, decided["decision_id"])
