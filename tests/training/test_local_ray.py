"""A Ray that coinline starts in its own process runs its tasks at the driver's priority: Ray's default
(workers at niceness 15) starves training beside any other busy process on the machine (a CI neighbour,
a second job): measured, 282 s instead of 22 s for one small run beside two CPU burners."""

import os
import sys

from coinline.training.executor import map_tasks


def _niceness(_item) -> int:
    return os.nice(0)


def test_local_ray_tasks_run_at_the_drivers_priority(monkeypatch):
    from ray import cloudpickle

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    # by value: a worker another test started from its own working directory cannot import this module
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    try:
        assert map_tasks(_niceness, [0, 1], workers=2) == [os.nice(0)] * 2
    finally:
        cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
