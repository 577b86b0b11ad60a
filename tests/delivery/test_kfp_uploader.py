"""charts/coinline/files/kfp_upload.py against an in-memory stand-in for kfp.Client: first run uploads
and schedules, a rerun changes nothing, a new pipeline file becomes a new version and re-points the run."""

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
        self.experiments: dict[str, str] = {}
        self.runs: dict[str, NS] = {}                          # run id -> run
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

    def get_experiment(self, experiment_id=None, experiment_name=None, namespace=None):
        if experiment_name not in self.experiments:
            raise ValueError(f"No experiment is found with name {experiment_name}.")
        return NS(experiment_id=self.experiments[experiment_name])

    def create_experiment(self, name, description=None, namespace=None):
        self.calls.append(f"create_experiment {name}")
        self.experiments[name] = next(self.ids)
        return NS(experiment_id=self.experiments[name])

    def list_recurring_runs(self, page_token="", page_size=10, experiment_id=None, **_):
        items = [r for r in self.runs.values() if r.experiment_id == experiment_id]
        i = int(page_token or 0)
        return NS(recurring_runs=items[i:i + 1], next_page_token=str(i + 1) if i + 1 < len(items) else "")

    def delete_recurring_run(self, recurring_run_id):
        self.calls.append(f"delete_run {self.runs.pop(recurring_run_id).display_name}")

    def create_recurring_run(self, experiment_id, job_name, cron_expression=None, max_concurrency=1,
                             no_catchup=None, params=None, pipeline_id=None, version_id=None, enabled=True,
                             service_account=None, **_):
        self.calls.append(f"create_run {job_name}")
        rid = next(self.ids)
        self.runs[rid] = NS(
            recurring_run_id=rid, display_name=job_name, experiment_id=experiment_id,
            pipeline_version_reference=NS(pipeline_id=pipeline_id, pipeline_version_id=version_id),
            trigger=NS(cron_schedule=NS(cron=cron_expression)), runtime_config=NS(parameters=params or None),
            max_concurrency=str(max_concurrency), no_catchup=no_catchup, service_account=service_account)


SPEC = {"experiment": "coinline", "pipelinePrefix": "coinline-",
        "recurringRuns": [{"name": "daily", "pipeline": "full", "cron": "0 30 1 * * *", "params": {"interval": "1h"}}]}


@pytest.fixture
def compiled(tmp_path):
    d = tmp_path / "compiled"
    d.mkdir()
    (d / "full.yaml").write_text("pipelineInfo: {name: full}\n")
    (d / "sync.yaml").write_text("pipelineInfo: {name: sync}\n")
    (d / "README.md").write_text("not a pipeline")
    return d


def sync_all(uploader, client, compiled, spec=SPEC):
    uploaded = uploader.upload_pipelines(client, compiled, spec["pipelinePrefix"])
    uploader.sync_recurring_runs(client, spec, uploaded)
    return uploaded


def test_first_run_uploads_every_pipeline_and_creates_the_recurring_run(compiled):
    up, kfp = load_uploader(), FakeKfp()
    uploaded = sync_all(up, kfp, compiled)
    assert sorted(uploaded) == ["full", "sync"]
    assert sorted(kfp.pipelines) == ["coinline-full", "coinline-sync"]
    (run,) = kfp.runs.values()
    assert run.display_name == "daily" and run.trigger.cron_schedule.cron == "0 30 1 * * *"
    assert run.pipeline_version_reference.pipeline_version_id == uploaded["full"][1]
    assert run.runtime_config.parameters == {"interval": "1h"} and run.no_catchup is True
    version_names = [v.display_name for v in kfp.versions[uploaded["full"][0]]]
    assert up.content_version(compiled / "full.yaml") in version_names


def test_a_rerun_with_nothing_changed_changes_nothing(compiled):
    up, kfp = load_uploader(), FakeKfp()
    sync_all(up, kfp, compiled)
    before = len(kfp.calls)
    sync_all(up, kfp, compiled)
    assert kfp.calls[before:] == []


def test_a_changed_pipeline_becomes_a_new_version_and_the_run_follows_it(compiled):
    up, kfp = load_uploader(), FakeKfp()
    sync_all(up, kfp, compiled)
    (compiled / "full.yaml").write_text("pipelineInfo: {name: full, v: 2}\n")
    before = len(kfp.calls)
    uploaded = sync_all(up, kfp, compiled)
    assert kfp.calls[before:] == [f"upload_version {up.content_version(compiled / 'full.yaml')}",
                                  "delete_run daily", "create_run daily"]
    (run,) = kfp.runs.values()
    assert run.pipeline_version_reference.pipeline_version_id == uploaded["full"][1]


def test_a_changed_schedule_replaces_the_run(compiled):
    up, kfp = load_uploader(), FakeKfp()
    sync_all(up, kfp, compiled)
    spec = json.loads(json.dumps(SPEC))
    spec["recurringRuns"][0]["cron"] = "0 0 2 * * *"
    sync_all(up, kfp, compiled, spec)
    (run,) = kfp.runs.values()
    assert run.trigger.cron_schedule.cron == "0 0 2 * * *"


def test_missing_pipelines_fail_loudly(compiled, tmp_path):
    up, kfp = load_uploader(), FakeKfp()
    with pytest.raises(SystemExit, match="no compiled pipelines"):
        up.upload_pipelines(kfp, tmp_path / "nowhere", "coinline-")
    spec = {**SPEC, "recurringRuns": [{"name": "x", "pipeline": "absent", "cron": "0 0 * * * *"}]}
    with pytest.raises(SystemExit, match="no compiled pipeline 'absent'"):
        sync_all(up, kfp, compiled, spec)
