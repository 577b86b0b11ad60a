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


def available_cpus(cgroup_root: str = "/sys/fs/cgroup") -> int:
    """The CPUs this process may use: its CPU affinity, capped by a cgroup CPU quota (a pod's CPU limit:
    cgroup v2 `cpu.max`, or v1 `cpu.cfs_quota_us` / `cpu.cfs_period_us`), rounded up, at least 1. On a big
    node `os.cpu_count()` would start a Ray worker per node CPU (~0.7 GB each) inside a pod limited to a few."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    quota = None
    try:
        with open(f"{cgroup_root}/cpu.max") as f:
            q, period = f.read().split()[:2]
            quota = None if q == "max" else int(q) / int(period)
    except (OSError, ValueError):
        try:
            with open(f"{cgroup_root}/cpu/cpu.cfs_quota_us") as f, open(f"{cgroup_root}/cpu/cpu.cfs_period_us") as g:
                q, period = int(f.read()), int(g.read())
                quota = q / period if q > 0 and period > 0 else None
        except (OSError, ValueError):
            quota = None
    if quota is not None:
        cpus = min(cpus, max(1, -(-int(quota * 1000) // 1000)))
    return max(1, cpus)


def ensure_ray(workers: int | None = None) -> str:
    """Connect to the cluster in RAY_ADDRESS (`ray://head:10001` through Ray Client, or a GCS `host:port` on
    a Ray node), else start a Ray in this process over `workers` CPUs (default: all). A set address that
    does not answer fails here: falling back to a local Ray would hide a broken deployment. Default CPUs:
    `available_cpus()` (a pod's CPU limit, not the node's CPU count). Returns the
    address connected to ("" for a local Ray)."""
    import ray

    address = os.environ.get("RAY_ADDRESS", "").strip()
    if ray.is_initialized():
        return address
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    if address:
        log.info("Ray: connecting to the cluster at %s", address)
        connect(address)
        log.info("Ray: connected to %s (%s CPUs in the cluster)", address, ray.cluster_resources().get("CPU", 0))
    else:
        cpus = workers or available_cpus()
        start_local_ray(cpus)
        log.info("Ray: started in this process over %d CPUs (no RAY_ADDRESS)", cpus)
    return address


RAY_CLIENT_ATTEMPTS = 3


def connect(address: str, attempts: int = RAY_CLIENT_ATTEMPTS, pause_s: float = 2.0) -> None:
    """`ray.init(address=...)`. Through Ray Client (`ray://`), a refused start of this client's server on
    the head is tried again, up to `attempts` times in all, each retry logged: the head forks that server
    from its multithreaded gRPC proxier and the child can die at birth (ray-project/ray#63202, about 7% of
    connections; seen here as `ConnectionAbortedError: Initialization failure from server`). Anything else,
    and the last refusal, is raised as it came: a head that does not answer is a broken deployment."""
    import time

    import ray

    for attempt in range(1, attempts + 1):
        try:
            ray.init(address=address, ignore_reinit_error=True, log_to_driver=False)
            return
        except ConnectionAbortedError as exc:
            if not address.startswith("ray://") or attempt == attempts:
                raise
            first_line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            log.warning("Ray: the head at %s did not start a client server for this driver (%s; attempt %d of %d,"
                        " ray-project/ray#63202); trying again", address, first_line, attempt, attempts)
            time.sleep(pause_s * attempt)


def start_local_ray(num_cpus: int | None) -> None:
    """`ray.init` of a Ray inside this process, its workers at the driver's priority: Ray starts workers at
    niceness 15 by default, and beside any other busy process on the machine (CI neighbours, a second job)
    the training tasks then get a small share of the CPU (measured: one 2-coin run under two CPU burners
    took 282 s at niceness 15, 22 s at 0, 13 s on a quiet box). No auth on a Ray that only this process uses."""
    import ray

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.setdefault("RAY_worker_niceness", "0")
    ray.init(num_cpus=num_cpus, include_dashboard=False, ignore_reinit_error=True, log_to_driver=False)


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
