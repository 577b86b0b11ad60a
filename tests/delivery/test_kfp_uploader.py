"""charts/coinline/files/kfp_upload.py against an in-memory stand-in for kfp.Client, with the committed
compiled pipelines: every spec is uploaded retargeted to the chart's images (digests included) and the
release's parameter defaults, as a version named by the chart version; a rerun changes nothing; a changed
image is a new version; the recurring runs of the uploaded pipelines (never others) move to the new
version under the same name, trigger and parameters, without catch-up, one per name, and none is created."""

from __future__ import annotations

import importlib.util
import itertools
import json
import shutil
from types import SimpleNamespace as NS

import pytest
import yaml

from coinline import kfp_deploy
from components.image import COINLINE_IMAGE, TRAINER_IMAGE
from pipelines.compile import COMPILED

from .conftest import CHART

DIGEST = "sha256:" + "ab" * 32
SPEC = {
    "pipelinePrefix": "coinline-",
    "release": {"name": "prod", "namespace": "ml", "chartVersion": "1.2.3"},
    "images": {"runtime": f"registry.example/coinline:1.2.3@{DIGEST}", "trainer": "registry.example/trainer:cu126"},
    "parameters": {"k8s_secret_name": "prod-keys", "k8s_config_map_name": "prod-coinline-config",
                   "ray_address": "ray://prod-coinline-ray-head-svc.ml.svc:10001"},
    "moveRecurringRuns": True,
}


def load_uploader():
    spec = importlib.util.spec_from_file_location("kfp_upload", CHART / "files" / "kfp_upload.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def cron_run(rid, name, experiment, *, pipeline_id=None, version_id=None, spec=None, params=None, cron="0 5 * * * *",
             no_catchup=True):
    ref = NS(pipeline_id=pipeline_id, pipeline_version_id=version_id) if version_id else None
    return NS(recurring_run_id=rid, display_name=name, description=f"{name} run", experiment_id=experiment,
              pipeline_version_reference=ref, pipeline_version_id=None, pipeline_spec=spec,
              runtime_config=NS(parameters=dict(params or {}), pipeline_root=None), service_account="",
              max_concurrency="1", mode="ENABLE", no_catchup=no_catchup,
              trigger=NS(cron_schedule=NS(cron=cron, start_time=None, end_time=None), periodic_schedule=None))


class FakeKfp:
    """The slice of kfp.Client (2.17) the uploader uses, with pages of one item to exercise paging. Uploaded
    files are kept by version id, so a test can read what the cluster would run."""

    def __init__(self):
        self.ids = (f"id-{i}" for i in itertools.count())
        self.pipelines: dict[str, str] = {}                   # name -> id
        self.versions: dict[str, list] = {}                   # pipeline id -> versions
        self.files: dict[str, str] = {}                       # version id -> uploaded text
        self.runs: list = []
        self.calls: list[str] = []

    def get_pipeline_id(self, name):
        return self.pipelines.get(name)

    def upload_pipeline(self, path, pipeline_name=None, description=None, namespace=None):
        self.calls.append(f"upload_pipeline {pipeline_name}")
        pid = self.pipelines[pipeline_name] = next(self.ids)
        vid = next(self.ids)
        self.versions[pid] = [NS(display_name=pipeline_name, pipeline_version_id=vid, created_at="0")]
        self.files[vid] = open(path).read()
        return NS(pipeline_id=pid)

    def upload_pipeline_version(self, path, pipeline_version_name, pipeline_id=None, pipeline_name=None,
                                description=None):
        self.calls.append(f"upload_version {pipeline_version_name}")
        version = NS(display_name=pipeline_version_name, pipeline_version_id=next(self.ids),
                     created_at=f"{len(self.calls):06d}")
        self.versions[pipeline_id].append(version)
        self.files[version.pipeline_version_id] = open(path).read()
        return version

    def list_pipeline_versions(self, pipeline_id, page_token="", page_size=10, **_):
        i = int(page_token or 0)
        items = self.versions[pipeline_id]
        return NS(pipeline_versions=items[i:i + 1], next_page_token=str(i + 1) if i + 1 < len(items) else "")

    def list_recurring_runs(self, page_token="", page_size=10, sort_by="", experiment_id=None, namespace=None,
                            filter=None):
        i = int(page_token or 0)
        items = [r for r in self.runs if experiment_id in (None, r.experiment_id)]
        return NS(recurring_runs=items[i:i + 1] or None, next_page_token=str(i + 1) if i + 1 < len(items) else "")

    def create_recurring_run(self, experiment_id, job_name, description=None, start_time=None, end_time=None,
                             interval_second=None, cron_expression=None, max_concurrency=1, no_catchup=None,
                             params=None, pipeline_package_path=None, pipeline_id=None, version_id=None,
                             enabled=True, pipeline_root=None, enable_caching=None, cache_key=None,
                             service_account=None):
        assert cron_expression and pipeline_id and version_id and pipeline_package_path is None
        self.calls.append(f"create_run {job_name}")
        run = cron_run(next(self.ids), job_name, experiment_id, pipeline_id=pipeline_id, version_id=version_id,
                       params=params, cron=cron_expression, no_catchup=no_catchup)
        run.max_concurrency, run.mode = str(max_concurrency), "ENABLE" if enabled else "DISABLE"
        self.runs.append(run)
        return run

    def delete_recurring_run(self, recurring_run_id):
        self.calls.append(f"delete_run {recurring_run_id}")
        before = len(self.runs)
        self.runs = [r for r in self.runs if r.recurring_run_id != recurring_run_id]
        assert len(self.runs) == before - 1

    def version_id(self, name, version):
        return next(v.pipeline_version_id for v in self.versions[self.pipelines[name]] if v.display_name == version)


@pytest.fixture
def compiled(tmp_path):
    d = tmp_path / "compiled"
    d.mkdir()
    for stem in ("full", "sync"):
        shutil.copy(COMPILED / f"{stem}.yaml", d / f"{stem}.yaml")
    (d / "README.md").write_text("not a pipeline")
    return d


def upload(uploader, client, compiled, spec=SPEC):
    return uploader.upload_pipelines(client, compiled, spec["pipelinePrefix"], spec)


def uploaded_docs(kfp, version_id) -> list[dict]:
    return list(yaml.safe_load_all(kfp.files[version_id]))


def test_every_pipeline_is_uploaded_with_the_charts_images_and_the_releases_defaults(compiled):
    up, kfp = load_uploader(), FakeKfp()
    uploaded = upload(up, kfp, compiled)
    assert sorted(uploaded) == ["full", "sync"] and sorted(kfp.pipelines) == ["coinline-full", "coinline-sync"]
    for stem, (pipeline_id, version_id) in uploaded.items():
        [version] = [v for v in kfp.versions[pipeline_id] if v.pipeline_version_id == version_id]
        assert version.display_name == kfp_deploy.version_name(stem, "1.2.3", kfp.files[version_id])
        assert version.display_name.startswith(f"{stem}-1.2.3-")
        spec, platform = uploaded_docs(kfp, version_id)
        images = set(kfp_deploy.executor_images([spec]).values())
        assert images <= set(SPEC["images"].values()) and SPEC["images"]["runtime"] in images
        assert COINLINE_IMAGE not in kfp.files[version_id] and TRAINER_IMAGE not in kfp.files[version_id]
        params = spec["root"]["inputDefinitions"]["parameters"]
        assert params["k8s_secret_name"]["defaultValue"] == "prod-keys"
        assert params["k8s_config_map_name"]["defaultValue"] == "prod-coinline-config"
        assert platform == list(yaml.safe_load_all((COMPILED / f"{stem}.yaml").read_text()))[1]
    full, _ = uploaded_docs(kfp, uploaded["full"][1])
    assert full["root"]["inputDefinitions"]["parameters"]["ray_address"]["defaultValue"] == SPEC["parameters"][
        "ray_address"]
    trainer = [ex for ex in full["deploymentSpec"]["executors"].values() if ex["container"]["image"] ==
               SPEC["images"]["trainer"]]
    assert len(trainer) == 4  # prepare, specialists, global models, ensemble
    sync, _ = uploaded_docs(kfp, uploaded["sync"][1])
    assert "ray_address" not in sync["root"]["inputDefinitions"]["parameters"]  # only where a pipeline has it
    assert not [c for c in kfp.calls if "run" in c]


def test_a_rerun_with_nothing_changed_changes_nothing(compiled):
    up, kfp = load_uploader(), FakeKfp()
    first = upload(up, kfp, compiled)
    before = len(kfp.calls)
    assert upload(up, kfp, compiled) == first
    assert kfp.calls[before:] == []


def test_another_image_digest_is_a_new_version_under_the_same_chart_version(compiled):
    up, kfp = load_uploader(), FakeKfp()
    first = upload(up, kfp, compiled)
    changed = {**SPEC, "images": {**SPEC["images"], "runtime": f"registry.example/coinline:1.2.3@sha256:{'cd' * 32}"}}
    before = len(kfp.calls)
    second = upload(up, kfp, compiled, changed)
    assert [c.split()[0] for c in kfp.calls[before:]] == ["upload_version", "upload_version"]
    for stem in ("full", "sync"):
        assert second[stem][0] == first[stem][0] and second[stem][1] != first[stem][1]
        assert f"@sha256:{'cd' * 32}" in kfp.files[second[stem][1]]


def test_a_spec_whose_steps_run_a_foreign_image_is_refused(compiled):
    up, kfp = load_uploader(), FakeKfp()
    (compiled / "sync.yaml").write_text((compiled / "sync.yaml").read_text().replace(COINLINE_IMAGE, "busybox:1"))
    with pytest.raises(SystemExit, match=r"sync\.yaml: executor exec-\S+ runs busybox:1"):
        upload(up, kfp, compiled)


def test_missing_pipelines_fail_loudly(tmp_path):
    up, kfp = load_uploader(), FakeKfp()
    with pytest.raises(SystemExit, match="no compiled pipelines"):
        upload(up, kfp, tmp_path / "nowhere")


def test_recurring_runs_move_to_the_new_version_once_without_catch_up(compiled):
    up, kfp = load_uploader(), FakeKfp()
    first = upload(up, kfp, compiled)
    sync_id, old_version = first["sync"]
    params = {"object_store_url": "s3://lake/x", "symbols": "BTC", "dropped_param": 1}
    kfp.runs = [
        cron_run("r-sync", "coinline-sync-hourly", "exp-1", pipeline_id=sync_id, version_id=old_version, params=params),
        # an older `coinline schedule` run, with the spec embedded instead of a version
        cron_run("r-train", "coinline-train-and-promote", "exp-1", cron="0 0 4 * * 1",
                 spec={"pipelineInfo": {"name": "coinline-full"}}, params={"object_store_url": "s3://lake/x"}),
        # a user's own recurring run of another pipeline: never touched
        cron_run("r-other", "someone-elses", "exp-1", pipeline_id="other", version_id="other-v"),
    ]
    changed = {**SPEC, "images": {**SPEC["images"], "runtime": "registry.example/coinline:1.2.4"}}
    second = upload(up, kfp, compiled, changed)
    by_name = {r.display_name: r for r in kfp.runs}
    assert len(kfp.runs) == 3 and sorted(by_name) == ["coinline-sync-hourly", "coinline-train-and-promote",
                                                      "someone-elses"]
    moved = by_name["coinline-sync-hourly"]
    assert moved.recurring_run_id != "r-sync" and moved.pipeline_version_reference.pipeline_version_id == second["sync"][1]
    assert moved.no_catchup is True and moved.trigger.cron_schedule.cron == "0 5 * * * *"
    assert moved.experiment_id == "exp-1" and moved.max_concurrency == "1"
    assert moved.runtime_config.parameters == {"object_store_url": "s3://lake/x", "symbols": "BTC"}  # inputs only
    train = by_name["coinline-train-and-promote"]
    assert train.pipeline_version_reference.pipeline_version_id == second["full"][1]
    assert train.trigger.cron_schedule.cron == "0 0 4 * * 1"
    assert by_name["someone-elses"].recurring_run_id == "r-other"
    before = len(kfp.calls)
    upload(up, kfp, compiled, changed)
    assert kfp.calls[before:] == []  # moved runs stay put


def test_duplicates_of_one_name_are_reduced_to_one_on_the_new_version(compiled):
    up, kfp = load_uploader(), FakeKfp()
    first = upload(up, kfp, compiled)
    sync_id, old_version = first["sync"]
    kfp.runs = [cron_run(f"r-{i}", "coinline-sync-hourly", "exp-1", pipeline_id=sync_id, version_id=old_version)
                for i in range(3)]
    second = upload(up, kfp, compiled, {**SPEC, "parameters": {**SPEC["parameters"], "k8s_secret_name": "other"}})
    [run] = kfp.runs
    assert run.pipeline_version_reference.pipeline_version_id == second["sync"][1]
    assert sum(c.startswith("create_run") for c in kfp.calls) == 1


def test_moving_recurring_runs_can_be_turned_off(compiled):
    up, kfp = load_uploader(), FakeKfp()
    first = upload(up, kfp, compiled)
    kfp.runs = [cron_run("r-sync", "coinline-sync-hourly", "exp-1", pipeline_id=first["sync"][0],
                         version_id=first["sync"][1])]
    upload(up, kfp, compiled, {**SPEC, "moveRecurringRuns": False, "images": {"runtime": "registry.example/c:2"}})
    assert [r.recurring_run_id for r in kfp.runs] == ["r-sync"]
    assert not [c for c in kfp.calls if "run" in c]


def test_main_reads_the_spec_and_uploads(compiled, tmp_path, monkeypatch):
    up, kfp = load_uploader(), FakeKfp()
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"host": "http://kfp:8888", "compiledDir": str(compiled), **SPEC}))
    monkeypatch.setattr(up, "make_client", lambda s: kfp)
    assert up.main([str(spec)]) == 0
    assert sorted(kfp.pipelines) == ["coinline-full", "coinline-sync"]
    assert not [c for c in kfp.calls if c.startswith("create_run")]


def test_the_uploader_swaps_the_repositories_the_components_are_compiled_with():
    from components import image

    assert kfp_deploy.ROLES == {"runtime": image.COINLINE_IMAGE_REPOSITORY, "trainer": image.TRAINER_IMAGE_REPOSITORY}
    assert kfp_deploy.repository_of(image.COINLINE_IMAGE) == image.COINLINE_IMAGE_REPOSITORY
    assert kfp_deploy.repository_of(f"registry:5000/a/b:1@{DIGEST}") == "registry:5000/a/b"
    assert kfp_deploy.repository_of("registry:5000/a/b") == "registry:5000/a/b"
