"""charts/coinline/files/kfp_upload.py against an in-memory stand-in for kfp.Client: the first run uploads
every compiled pipeline, a rerun changes nothing, a changed file becomes a new version, and no recurring run
is ever touched (KFP recurring runs belong to `coinline schedule`; the chart's CronWorkflows own the
cluster's recurring work)."""

from __future__ import annotations

import importlib.util
import itertools
import json
from types import SimpleNamespace as NS

import pytest

from .conftest import CHART


def load_uploader():
    spec = importlib.util.spec_from_file_location("kfp_upload", CHART / "files" / "kfp_upload.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class FakeKfp:
    """The slice of kfp.Client (2.17) the uploader uses, with pages of one item to exercise paging."""

    def __init__(self):
        self.ids = (f"id-{i}" for i in itertools.count())
        self.pipelines: dict[str, str] = {}                   # name -> id
        self.versions: dict[str, list] = {}                   # pipeline id -> versions
        self.calls: list[str] = []

    def get_pipeline_id(self, name):
        return self.pipelines.get(name)

    def upload_pipeline(self, path, pipeline_name=None, description=None, namespace=None):
        self.calls.append(f"upload_pipeline {pipeline_name}")
        pid = self.pipelines[pipeline_name] = next(self.ids)
        self.versions[pid] = [NS(display_name=pipeline_name, pipeline_version_id=next(self.ids))]
        return NS(pipeline_id=pid)

    def upload_pipeline_version(self, path, pipeline_version_name, pipeline_id=None, **_):
        self.calls.append(f"upload_version {pipeline_version_name}")
        version = NS(display_name=pipeline_version_name, pipeline_version_id=next(self.ids))
        self.versions[pipeline_id].append(version)
        return version

    def list_pipeline_versions(self, pipeline_id, page_token="", page_size=10, **_):
        i = int(page_token or 0)
        items = self.versions[pipeline_id]
        return NS(pipeline_versions=items[i:i + 1], next_page_token=str(i + 1) if i + 1 < len(items) else "")

    def __getattr__(self, name):
        # experiments and recurring runs are `coinline schedule`'s business, not the uploader's
        if "recurring" in name or "experiment" in name or name.startswith("run_"):
            def forbidden(*args, **kwargs):
                self.calls.append(f"FORBIDDEN {name}")
                raise AssertionError(f"the uploader called {name}")
            return forbidden
        raise AttributeError(name)


PREFIX = "coinline-"


@pytest.fixture
def compiled(tmp_path):
    d = tmp_path / "compiled"
    d.mkdir()
    (d / "full.yaml").write_text("pipelineInfo: {name: full}\n")
    (d / "sync.yaml").write_text("pipelineInfo: {name: sync}\n")
    (d / "README.md").write_text("not a pipeline")
    return d


def upload(uploader, client, compiled):
    return uploader.upload_pipelines(client, compiled, PREFIX)


def test_first_run_uploads_every_pipeline_as_a_content_version(compiled):
    up, kfp = load_uploader(), FakeKfp()
    uploaded = upload(up, kfp, compiled)
    assert sorted(uploaded) == ["full", "sync"]
    assert sorted(kfp.pipelines) == ["coinline-full", "coinline-sync"]
    for stem, (pipeline_id, version_id) in uploaded.items():
        versions = {v.display_name: v.pipeline_version_id for v in kfp.versions[pipeline_id]}
        assert versions[up.content_version(compiled / f"{stem}.yaml")] == version_id
    assert not [c for c in kfp.calls if c.startswith("FORBIDDEN")]


def test_a_rerun_with_nothing_changed_changes_nothing(compiled):
    up, kfp = load_uploader(), FakeKfp()
    first = upload(up, kfp, compiled)
    before = len(kfp.calls)
    assert upload(up, kfp, compiled) == first
    assert kfp.calls[before:] == []


def test_a_changed_pipeline_becomes_a_new_version(compiled):
    up, kfp = load_uploader(), FakeKfp()
    first = upload(up, kfp, compiled)
    (compiled / "full.yaml").write_text("pipelineInfo: {name: full, v: 2}\n")
    before = len(kfp.calls)
    second = upload(up, kfp, compiled)
    assert kfp.calls[before:] == [f"upload_version {up.content_version(compiled / 'full.yaml')}"]
    assert second["full"][0] == first["full"][0] and second["full"][1] != first["full"][1]
    assert second["sync"] == first["sync"]


def test_missing_pipelines_fail_loudly(tmp_path):
    up, kfp = load_uploader(), FakeKfp()
    with pytest.raises(SystemExit, match="no compiled pipelines"):
        up.upload_pipelines(kfp, tmp_path / "nowhere", PREFIX)


def test_main_uploads_and_creates_no_recurring_runs(compiled, tmp_path, monkeypatch):
    up, kfp = load_uploader(), FakeKfp()
    spec = tmp_path / "spec.json"
    # a stale spec that still carries recurring runs: they are ignored, never created
    spec.write_text(json.dumps({"host": "http://kfp:8888", "compiledDir": str(compiled), "pipelinePrefix": PREFIX,
                                "recurringRuns": [{"name": "daily", "pipeline": "full", "cron": "0 30 1 * * *"}]}))
    monkeypatch.setattr(up, "make_client", lambda s: kfp)
    assert up.main([str(spec)]) == 0
    assert sorted(kfp.pipelines) == ["coinline-full", "coinline-sync"]
    assert not [c for c in kfp.calls if "run" in c or "experiment" in c]
    assert not [name for name in dir(up) if "recurring" in name]
