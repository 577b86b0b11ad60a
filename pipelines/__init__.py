"""Kubeflow Pipelines DAGs over the components in `components/`, compiled to `pipelines/compiled/`.

    backfill            plan -> per coin group [backfill, retry gaps, Kraken sync] -> validate, parity
                        -> per interval [materialize]
    sync                plan -> per coin group [sync, retry gaps, Kraken sync] -> validate, parity;
                        validate -> forecast (champion + shadows, newest closed candle)
    train_and_promote   plan -> per interval [materialize -> train -> report -> promote]
    full                backfill's ingest -> validate -> per interval [materialize -> train -> report -> promote]
    maintain            compaction, VACUUM (keeping every pinned dataset version), checkpoints of the lake

Every pipeline starts with `preflight` (every other step runs after it: the Secret and ConfigMap exist, the
lake, the providers and the Ray cluster answer; otherwise the run fails at once, naming what is missing) and
runs inside an ExitHandler whose `notify_status` step records the final state. Schedules
(`pipelines/schedules.py`) are made through the KFP API, not compiled into the specs.
"""

from pipelines.backfill import backfill_pipeline
from pipelines.full import full_pipeline
from pipelines.maintain import maintain_pipeline
from pipelines.sync import sync_pipeline
from pipelines.train_and_promote import train_and_promote_pipeline

PIPELINES = {
    "backfill": backfill_pipeline,
    "sync": sync_pipeline,
    "train_and_promote": train_and_promote_pipeline,
    "full": full_pipeline,
    "maintain": maintain_pipeline,
}

__all__ = ["PIPELINES", "backfill_pipeline", "full_pipeline", "maintain_pipeline", "sync_pipeline",
           "train_and_promote_pipeline"]
