"""Component functions called directly (in-process), for the paths a local DAG run does not take."""

from __future__ import annotations

import json
import logging
import sys

from kfp.dsl import Artifact

from components.promotion.promote.component import promote_run


def test_promotion_is_skipped_with_a_clear_message_when_the_image_has_no_decide(tmp_path, monkeypatch):
    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", list(root.handlers))  # the component sets up logging; undo it after
    monkeypatch.setattr(root, "level", root.level)
    monkeypatch.setitem(sys.modules, "coinline.promotion.decide", None)  # importing it now fails
    decision = Artifact(uri=str(tmp_path / "decision"))
    result = promote_run.python_func(object_store_url=f"file://{tmp_path}/lake", run_id="run-x", decision=decision)
    assert result.outcome == "skipped"
    record = json.loads((tmp_path / "decision").read_text())
    assert record["outcome"] == "skipped" and record["run_id"] == "run-x"
    assert "no coinline.promotion.decide" in record["message"] and "unchanged" in record["message"]
    assert not (tmp_path / "lake").exists(), "a skipped promotion touches nothing"
