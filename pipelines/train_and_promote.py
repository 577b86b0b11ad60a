"""coinline-train-and-promote: the retraining cycle (scheduled by `pipelines/schedules.py`). Per interval:
materialize the current dataset (content-addressed: unchanged data gives the same dataset id), train,
report the metric package, and decide promotion through the gates."""

from kfp import dsl

from pipelines import steps

NAME = "coinline-train-and-promote"


@dsl.pipeline(name=NAME, description="Materialize, train, report and decide promotion, per interval.")
def train_and_promote_pipeline(
    object_store_url: str,
    quotes: str = steps.QUOTES,
    intervals: list = steps.INTERVALS,
    universe_version: str = steps.UNIVERSE,
    gap_tolerance: int = steps.DEFAULTS.gap_tolerance,
    train_quote: str = "USD",
    train_symbols: str = "",
    train_config_json: str = "",
    train_workers: int = steps.DEFAULTS.train_workers,
    promote: bool = True,
    now: str = "",
    k8s_secret_name: str = steps.SECRET_NAME,
    k8s_config_map_name: str = steps.CONFIG_MAP_NAME,
    ray_address: str = "",
    trainer_accelerator_type: str = "",
    trainer_accelerator_count: int = 1,
    trainer_node_selector: dict = {},  # noqa: B006 (a pipeline parameter's default, never mutated)
    trainer_tolerations: list = [],  # noqa: B006
):
    k8s = steps.k8s_names(k8s_secret_name, k8s_config_map_name)
    with steps.exit_handler(NAME, object_store_url=object_store_url, now=now, k8s=k8s, name="retraining"):
        checked = steps.preflight(k8s, object_store_url=object_store_url, providers=False, ray_address=ray_address)
        with dsl.ParallelFor(intervals) as interval:
            dataset = steps.materialize(interval, k8s=k8s, object_store_url=object_store_url, quotes=quotes,
                                        universe_version=universe_version, gap_tolerance=gap_tolerance,
                                        now=now).after(checked)
            steps.train_report_promote(dataset, interval, k8s=k8s, object_store_url=object_store_url,
                                       train_quote=train_quote, train_symbols=train_symbols,
                                       train_config_json=train_config_json, train_workers=train_workers,
                                       promote=promote, now=now, ray_address=ray_address,
                                       accelerator=steps.accelerator(trainer_accelerator_type,
                                                                     trainer_accelerator_count,
                                                                     trainer_node_selector, trainer_tolerations))
