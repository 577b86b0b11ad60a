"""Fan per-coin work out on Ray (local `ray.init()` by default, RAY_ADDRESS for a cluster), or run it
in-process with `workers=1`. Each task gets its own coin's frame as an object-store reference, never the
whole universe, and results do not depend on the number of workers (every random source is seeded from
(run seed, coin, family, fold))."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from typing import Any

log = logging.getLogger("coinline")


def ensure_ray(workers: int | None = None) -> str:
    """Connect to the cluster in RAY_ADDRESS (`ray://head:10001` through Ray Client, or a GCS `host:port` on
    a Ray node), else start a Ray in this process over `workers` CPUs (default: all). A set address that
    does not answer fails here: falling back to a local Ray would hide a broken deployment. Returns the
    address connected to ("" for a local Ray)."""
    import ray

    address = os.environ.get("RAY_ADDRESS", "").strip()
    if ray.is_initialized():
        return address
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    if address:
        log.info("Ray: connecting to the cluster at %s", address)
        ray.init(address=address, ignore_reinit_error=True, log_to_driver=False)
        log.info("Ray: connected to %s (%s CPUs in the cluster)", address, ray.cluster_resources().get("CPU", 0))
    else:
        cpus = workers or os.cpu_count() or 1
        ray.init(num_cpus=cpus, include_dashboard=False, ignore_reinit_error=True, log_to_driver=False)
        log.info("Ray: started in this process over %d CPUs (no RAY_ADDRESS)", cpus)
    return address


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
