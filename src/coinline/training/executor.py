"""Fan per-coin work out on Ray (local `ray.init()` by default, RAY_ADDRESS for a cluster), or run it
in-process with `workers=1`. Each task gets its own coin's frame as an object-store reference, never the
whole universe, and results do not depend on the number of workers (every random source is seeded from
(run seed, coin, family, fold))."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any


def ensure_ray(workers: int | None = None) -> None:
    import ray

    if ray.is_initialized():
        return
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    address = os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, ignore_reinit_error=True, log_to_driver=False)
    else:
        ray.init(num_cpus=workers or os.cpu_count() or 1, include_dashboard=False, ignore_reinit_error=True,
                 log_to_driver=False)


def map_tasks(fn: Callable[..., Any], items: Sequence[Any], *, shared: tuple = (), workers: int | None = None) -> list[Any]:
    """fn(item, *shared) for every item, in item order. workers=1: sequential, in this process, with BLAS and
    OpenMP pools held to one thread, as in a Ray task (Ray sets OMP_NUM_THREADS=1 for its workers): the
    models are small, and extra threads only burn CPU (measured in bench/training.py)."""
    if workers == 1:
        from threadpoolctl import threadpool_limits

        with threadpool_limits(limits=1):
            return [fn(item, *shared) for item in items]
    import ray

    ensure_ray(workers)
    remote = ray.remote(num_cpus=1, max_retries=0)(fn)
    shared_refs = [ray.put(s) for s in shared]
    refs = [remote.remote(ray.put(item), *shared_refs) for item in items]
    return ray.get(refs)
