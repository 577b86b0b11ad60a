"""Fixtures for the pipeline tests: kfp.local running components as subprocesses of this interpreter
(`use_venv=False`: the coinline under test is what the components import, as in the image)."""

from __future__ import annotations

import builtins
import logging
from pathlib import Path

import pytest
from kfp import local

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _restore_print_and_logging():
    """kfp.local swaps `builtins.print` for an indenting one while it runs a task and, on some failure
    paths, leaves it swapped; later tests in this process would see indented output. Put both back."""
    original_print, root = builtins.print, logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    builtins.print = original_print
    root.handlers[:] = handlers
    root.setLevel(level)


def init_local(pipeline_root: Path, *, raise_on_error: bool = True) -> Path:
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(pipeline_root),
               raise_on_error=raise_on_error)
    return pipeline_root


@pytest.fixture
def kfp_local(tmp_path) -> Path:
    """kfp.local initialized with a fresh pipeline root under tmp_path; returns that root."""
    return init_local(tmp_path / "pipeline_root")
