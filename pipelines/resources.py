"""CPU and memory requests and limits of every pipeline step, and the accelerator option of the step that fits
the neural models.

Every step gets both requests and limits (a step without them is BestEffort: the first pod evicted under
memory pressure, and free to starve its node). `size(task)` applies the row of its component (by component
name); a component without a row fails compilation, so a new step cannot ship unsized.

Basis of the sizes: peak memory measured on the development box with the replay market and `bench/training.py`'s
reduced training configuration (1,500 bars per coin, two folds, no tuning, two sequence epochs):
- `python -m bench.training --parts 3` (COINLINE_BENCH_SCALE=0.4: 12 coins, `train(workers=2)`): peak RSS of the
  driver and every Ray process 2.68 GB (PSS 1.89 GB): driver 0.70 GB, Ray's own processes 0.60 GB, each Ray
  worker about 0.70 GB (the trainer image's imports alone: 0.45 GB per Python). A step that runs Ray in its
  pod (prepare's Tune trials, the specialists' and the ensemble's per-coin fan-out) therefore needs about
  1.3 GB plus 0.7 GB per CPU at that configuration: 4.1 GB at the 4-CPU limit;
- each training step alone, in one process (`workers=1`, VmHWM reset before the step, earlier steps' memory
  still held): 0.65-0.94 GB at 4 and at 12 coins (prepare 0.69, specialists 0.94, global 0.90, ensemble 0.90,
  evaluate 0.90, simulate 0.92 GB at 12 coins);
- the runtime image's steps import 135-195 MB (lake, Great Expectations, forecasting) plus the KFP executor's
  82 MB; ingest streams provider pages (`bench/backfill_rss.py`'s goal: a 5,000,000-row backfill under 1 GB).
The default configuration (30 coins, 6,000 bars, tuning, four epochs) holds about 4x the rows per coin of the
measured one, so requests sit above the measured peaks: a Ray step of 2 requested CPUs measured 2.7 GB and
requests 4G (the specialists, the heaviest per-coin work, 6G), an in-process training step measured under
1 GB and requests 2G; limits are twice the requests (a Ray at the 4-CPU limit measured 4.1 GB). These are
estimates from the reduced configuration, not measurements of a default run. A Ray inside a step's pod must be
bounded by the pod's CPU limit (not the node's CPU count), or its workers outgrow the memory limit. To size
for other nodes, edit SIZES and recompile (`python -m pipelines.compile`).
"""

from __future__ import annotations

from dataclasses import dataclass

from kfp import dsl, kubernetes
from kfp.dsl import pipeline_channel


@dataclass(frozen=True)
class Size:
    cpu_request: str
    cpu_limit: str
    memory_request: str
    memory_limit: str


LIGHT = Size("100m", "1", "512M", "1G")          # parameters in, a record or a report out
INGEST = Size("250m", "1", "1G", "2G")           # provider pages streamed into the lake (bench: < 1 GB)
LAKE_WIDE = Size("500m", "2", "2G", "4G")        # reads every series of an interval (quality gate, dataset)
RAY_STEP = Size("2", "4", "4G", "8G")            # a Ray over the pod's CPUs: one training Python per CPU
IN_PROCESS_TRAINING = Size("1", "2", "2G", "4G")  # the prepared frames of every coin, in one process

SIZES: dict[str, Size] = {
    # ops, reports, promotion
    "preflight": LIGHT,
    "plan-run": LIGHT,
    "notify-status": LIGHT,
    "report-metrics": LIGHT,
    "report-html": LIGHT,
    "promote-run": LIGHT,
    "refresh-universe": LIGHT,
    # ingest, per coin group
    "backfill-history": INGEST,
    "sync-candles": INGEST,
    "retry-gaps": INGEST,
    # the whole lake (of one interval)
    "validate-lake": LAKE_WIDE,
    "check-parity": LAKE_WIDE,
    "materialize-dataset": LAKE_WIDE,
    "maintain-lake": Size("500m", "2", "1G", "4G"),   # as the chart's weekly `coinline maintain`
    "forecast-cycle": LAKE_WIDE,                       # the champion and every shadow, over every coin
    # training, one step each (coinline.training.stages)
    "prepare-training": RAY_STEP,                      # features for every coin + Tune trials on Ray
    "train-specialists": Size("2", "4", "6G", "12G"),  # five families x folds x horizons per coin, on Ray
    "train-global-models": IN_PROCESS_TRAINING,
    "build-ensemble": RAY_STEP,                        # per-coin stacking and metric packages, on Ray
    "evaluate-run": IN_PROCESS_TRAINING,
    "simulate-run": IN_PROCESS_TRAINING,
}

# The steps an accelerator helps: the per-coin specialists fit the LSTM and Transformer families (torch). Every
# other step, including prediction, runs on CPU.
ACCELERATED = ("train-specialists",)


def component_name(task: dsl.PipelineTask) -> str:
    return task.component_spec.name


def size(task: dsl.PipelineTask) -> dsl.PipelineTask:
    """Set the requests and limits of the task's component (SIZES); fails for a component without a row."""
    name = component_name(task)
    if name not in SIZES:
        raise KeyError(f"pipeline step {name!r} has no requests/limits: add it to pipelines/resources.py SIZES")
    s = SIZES[name]
    return (task.set_cpu_request(s.cpu_request).set_cpu_limit(s.cpu_limit)
            .set_memory_request(s.memory_request).set_memory_limit(s.memory_limit))


def accelerate(task: dsl.PipelineTask, *, accelerator_type, accelerator_count, node_selector,
               tolerations) -> dsl.PipelineTask:
    """The accelerator option (pipeline parameters, so one uploaded pipeline serves CPU and GPU runs):
    `accelerator_type` is the extended resource to request (e.g. nvidia.com/gpu; empty: none, the step runs on
    CPU), `accelerator_count` how many, `node_selector` ({label: value}) and `tolerations` (Kubernetes
    toleration objects) place the pod on the accelerator nodes."""
    name = component_name(task)
    if name not in ACCELERATED:
        raise ValueError(f"{name} gains nothing from an accelerator (only {', '.join(ACCELERATED)} does)")
    task.set_accelerator_type(accelerator_type).set_accelerator_limit(accelerator_count)
    # kfp 2.17 references the channels in the accelerator fields but does not track them as the task's inputs,
    # so a task inside a ParallelFor or an ExitHandler would name parameters its enclosing DAGs never pass
    # ("parent input argument ... not found"); kfp.kubernetes registers its own channels the same way.
    task.register_pipeline_channels([c for c in (accelerator_type, accelerator_count)
                                     if isinstance(c, pipeline_channel.PipelineChannel)])
    kubernetes.add_node_selector_json(task, node_selector)
    kubernetes.add_toleration_json(task, tolerations)
    return task
