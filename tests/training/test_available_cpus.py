"""A local Ray is sized by the CPUs the process may use (a pod's CPU limit), not the node's CPU count."""

import os

from coinline.training.executor import available_cpus


def _affinity() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def test_cgroup_v2_quota_caps_the_cpus(tmp_path):
    (tmp_path / "cpu.max").write_text("150000 100000\n")       # a 1.5-CPU limit -> 2 workers at most
    assert available_cpus(str(tmp_path)) == min(_affinity(), 2)
    (tmp_path / "cpu.max").write_text("50000 100000\n")        # half a CPU -> still one worker
    assert available_cpus(str(tmp_path)) == 1


def test_no_quota_means_the_affinity(tmp_path):
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert available_cpus(str(tmp_path)) == _affinity()
    assert available_cpus(str(tmp_path / "absent")) == _affinity()


def test_cgroup_v1_quota(tmp_path):
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("100000\n")
    (tmp_path / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert available_cpus(str(tmp_path)) == 1
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("-1\n")
    assert available_cpus(str(tmp_path)) == _affinity()
