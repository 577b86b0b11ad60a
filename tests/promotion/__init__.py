"""Shared setup for the promotion tests: one template lake per test session holding a random-walk dataset
and two REAL training runs on it (different seeds), copied fresh into each test that needs a lake.

The runs are small (3 coins, one horizon, LightGBM + ensemble) so the template builds in a few seconds.
A PROMOTE path is reached only through a permissive policy file (`permissive_policy`), never by editing
metrics."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from coinline.lake import open_lake
from coinline.lake.store import Lake
from coinline.promotion.policy import Policy, load_policy

_TEMPLATE = "promotion-template"
RUNS_FILE = "runs.json"


def _build(dest: Path) -> None:
    from coinline.lake import tables
    from coinline.training.run import train
    from tests.training.conftest import fast_config, random_walk_dataset

    lake = open_lake(f"file://{dest}")
    tables.ensure_tables(lake)
    dataset = random_walk_dataset(lake, seed=11)
    runs = [train(lake, dataset, fast_config(families=("lightgbm",), horizons=(4,), seed=seed), workers=1).run_id
            for seed in (1, 2)]
    (dest / RUNS_FILE).write_text(json.dumps({"dataset": dataset, "runs": runs}))


def template(tmp_path_factory) -> Path:
    """The session's template lake (built on first use; later callers, in any module, reuse it)."""
    root = tmp_path_factory.getbasetemp() / _TEMPLATE
    if not (root / RUNS_FILE).exists():
        staging = tmp_path_factory.getbasetemp() / f"{_TEMPLATE}.{os.getpid()}"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir()
        _build(staging)
        try:
            staging.rename(root)
        except OSError:  # built concurrently by another worker: keep theirs
            shutil.rmtree(staging, ignore_errors=True)
    return root


def fresh_lake(template_root: Path, dest: Path) -> tuple[Lake, dict]:
    """A private copy of the template lake and its {"dataset", "runs"}."""
    shutil.copytree(template_root, dest)
    info = json.loads((dest / RUNS_FILE).read_text())
    return open_lake(f"file://{dest}"), info


def permissive_policy_data(**overrides) -> dict:
    """The default policy with every threshold opened wide (so only the named overrides can reject)."""
    data = json.loads(json.dumps(load_policy().data))
    data["policy_version"] = "test-permissive-v1"
    data["oos"].update(alpha=1.0, min_log_loss_skill=-1.0, min_samples=1, max_ece=1.0, active_tolerance=1.0)
    data["simulation"].update(max_drawdown=1.0, min_sharpe=-1000.0, max_turnover=1000.0, min_periods=1)
    data["horizons"].update(tolerance=1.0)
    for dotted, value in overrides.items():
        section, key = dotted.split("__")
        data[section][key] = value
    return data


def write_policy(path: Path, data: dict) -> Path:
    path.write_text(json.dumps(data, indent=1))
    return path


def permissive_policy(tmp_path: Path, **overrides) -> tuple[Path, Policy]:
    path = write_policy(tmp_path / "permissive-policy.json", permissive_policy_data(**overrides))
    return path, load_policy(path)
