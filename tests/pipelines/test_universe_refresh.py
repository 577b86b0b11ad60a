"""The universe refresh component, run alone with kfp.local against the offline replay venue: it writes a
proposal (file and artifacts) and never activates it."""

from __future__ import annotations

import json

from components.universe.refresh.component import refresh_universe


def test_refresh_universe_proposes_and_never_activates(kfp_local, tmp_path, monkeypatch):
    udir = tmp_path / "universe"
    monkeypatch.setenv("COINLINE_UNIVERSE_DIR", str(udir))  # the ConfigMap's variable, read by the pod
    task = refresh_universe(object_store_url=f"file://{tmp_path}/lake", venue="replay", replay_history_days=5,
                            now="2026-01-15T00:00:00Z")
    version = task.outputs["Output"]
    assert version == "UNIVERSE_V2_TOP30_NON_STABLE"
    doc = json.loads(open(task.outputs["proposal"].path).read())
    assert doc["version"] == version and doc["status"] == "proposed" and len(doc["coins"]) == 30
    assert json.loads((udir / "proposals" / f"{version}.json").read_text()) == doc
    assert not (udir / f"{version}.json").exists() and not (udir / "approvals").exists()
    summary = open(task.outputs["summary"].path).read()
    assert f"Universe proposal {version} (not active)" in summary and "| rank | symbol |" in summary
