"""Fixtures for the pipeline tests: kfp.local running components as subprocesses of this interpreter
(`use_venv=False`: the coinline under test is what the components import, as in the image)."""

from __future__ import annotations

from pathlib import Path

import pytest
from kfp import local

REPO = Path(__file__).resolve().parents[2]


def init_local(pipeline_root: Path, *, raise_on_error: bool = True) -> Path:
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(pipeline_root),
               raise_on_error=raise_on_error)
    return pipeline_root


@pytest.fixture
def kfp_local(tmp_path) -> Path:
    """kfp.local initialized with a fresh pipeline root under tmp_path; returns that root."""
    return init_local(tmp_path / "pipeline_root")
