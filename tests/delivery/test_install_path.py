"""The documented install path schedules work where it runs: the chart's default namespace guidance, its
release notes and the READMEs' `helm install` lines agree with the namespace standalone Kubeflow Pipelines'
Argo controller watches (manifests/kubeflow/env/upstream.json); the notes list what was scheduled, where,
and how to see it, and warn loudly when CronWorkflows land where no controller looks; `helm test` checks the
lake with the release's own settings; image.tag follows the chart's appVersion."""

from __future__ import annotations

import json
import re
import shlex
import shutil

import pytest
import yaml

from .conftest import CHART, ROOT

UPSTREAM = json.loads((ROOT / "manifests" / "kubeflow" / "env" / "upstream.json").read_text())
WATCHED = UPSTREAM["workflow_controller"]["watches"]          # kubeflow, for standalone KFP
VALUES = yaml.safe_load((CHART / "values.yaml").read_text())
INSTALL_DOCS = [CHART / "README.md", ROOT / "manifests" / "README.md", ROOT / "README.md"]
WARNING = "NOTHING BELOW WILL EVER RUN"


@pytest.fixture(scope="module")
def notes(helm_run, tmp_path_factory):
    """notes(values, namespace) -> the rendered NOTES.txt. `helm template` never renders NOTES.txt, and
    `helm install --dry-run` wants a cluster: a copy of the chart carries NOTES.txt inside a ConfigMap
    template, whose data is read back."""
    chart = tmp_path_factory.mktemp("notes") / "coinline"
    shutil.copytree(CHART, chart)
    body = (chart / "templates" / "NOTES.txt").read_text()
    (chart / "templates" / "zz-notes.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: notes\ndata:\n  notes: |\n"
        + "".join(f"    {line}\n" for line in body.splitlines()))
    values_dir = tmp_path_factory.mktemp("notes-values")

    def render(values: dict | None = None, namespace: str = WATCHED, release: str = "coinline") -> str:
        vfile = values_dir / f"v{len(list(values_dir.iterdir()))}.yaml"
        vfile.write_text(yaml.safe_dump(values or {}))
        out = helm_run("template", release, str(chart), "-n", namespace, "-f", str(vfile),
                       "--show-only", "templates/zz-notes.yaml").stdout
        return yaml.safe_load(out)["data"]["notes"]

    return render


def test_the_default_namespace_is_where_standalone_kfp_runs_argo():
    assert WATCHED == UPSTREAM["namespace"] == "kubeflow"
    assert VALUES["scheduler"] == "argo" and VALUES["argo"]["watchedNamespace"] == WATCHED


def test_notes_list_every_cronworkflow_where_it_is_and_how_to_see_it(render, notes):
    text = notes()
    cronworkflows = render(namespace=WATCHED, release="coinline").of("CronWorkflow")
    assert len(cronworkflows) == 6
    listed = set(re.findall(r"^- CronWorkflow (\S+):", text, re.M))
    assert listed == {c["metadata"]["name"] for c in cronworkflows}
    assert {c["metadata"]["namespace"] for c in cronworkflows} == {WATCHED}
    assert f"Scheduled: CronWorkflows in namespace {WATCHED}" in text
    assert f"kubectl -n {WATCHED} get cronworkflows -l app.kubernetes.io/instance=coinline" in text
    assert f"argo -n {WATCHED} cron list" in text
    assert f"argo -n {WATCHED} submit --from cronwf/coinline-run" in text
    assert f"helm test coinline -n {WATCHED}" in text
    for c in cronworkflows:  # each line says its schedule, and whether it is suspended
        line = next(ln for ln in text.splitlines() if ln.startswith(f"- CronWorkflow {c['metadata']['name']}:"))
        assert f'"{c["spec"]["schedules"][0]}"' in line
        assert ("SUSPENDED" in line) is c["spec"]["suspend"], line
    assert WARNING not in text


def test_notes_warn_loudly_when_cronworkflows_land_where_argo_does_not_look(notes):
    text = notes(namespace="coinline")
    assert WARNING in text and f'watches only "{WATCHED}"' in text
    assert text.index(WARNING) < text.index("Scheduled:"), "the warning comes first"
    assert f"-n {WATCHED}" in text.split("Scheduled:")[0], "it says how to install where the controller watches"
    # a controller that watches the release namespace, or every namespace; or no Argo at all
    assert WARNING not in notes({"argo": {"watchedNamespace": "coinline"}}, namespace="coinline")
    assert WARNING not in notes({"argo": {"watchedNamespace": ""}}, namespace="coinline")
    assert WARNING not in notes({"scheduler": "cronjob"}, namespace="coinline")
    off = {"schedules": {k: {"enabled": False} for k in VALUES["schedules"]}}
    quiet = notes(off, namespace="coinline")
    assert WARNING not in quiet and "nothing: every schedule is disabled" in quiet


def test_notes_list_cronjobs_and_the_kubectl_commands_for_them(render, notes):
    text = notes({"scheduler": "cronjob"}, namespace="lake")
    cronjobs = render({"scheduler": "cronjob"}, namespace="lake", release="coinline").of("CronJob")
    assert set(re.findall(r"^- CronJob (\S+):", text, re.M)) == {c["metadata"]["name"] for c in cronjobs}
    assert "Scheduled: CronJobs in namespace lake" in text
    assert "kubectl -n lake get cronjobs -l app.kubernetes.io/instance=coinline" in text
    assert "kubectl -n lake create job --from=cronjob/coinline-run" in text
    assert "cronworkflows" not in text


def _helm_installs(text: str) -> list[list[str]]:
    """Every `helm install ...` command in a document, in fenced code blocks (one a line, `\\` continued) and
    in inline code (which may wrap), as argument lists."""
    found = []
    fenced = re.findall(r"^```[^\n]*\n(.*?)^```", text, re.M | re.S)
    for block in fenced:
        for line in block.replace("\\\n", " ").splitlines():
            found += re.findall(r"helm install [^#\n]*", line)
    prose = re.sub(r"^```[^\n]*\n.*?^```", "", text, flags=re.M | re.S)
    for span in re.findall(r"`([^`]*)`", prose):
        found += re.findall(r"helm install .*", " ".join(span.split()))
    return [shlex.split(command.strip()) for command in found]


def _scheduler_of(args: list[str]) -> str:
    scheduler = VALUES["scheduler"]
    for i, arg in enumerate(args):
        if arg == "-f" and (ROOT / args[i + 1]).is_file():
            scheduler = (yaml.safe_load((ROOT / args[i + 1]).read_text()) or {}).get("scheduler", scheduler)
        if arg == "--set" and args[i + 1].startswith("scheduler="):
            scheduler = args[i + 1].split("=", 1)[1]
    return scheduler


def _namespace_of(args: list[str]) -> str | None:
    for i, arg in enumerate(args):
        if arg in ("-n", "--namespace"):
            return args[i + 1]
        if arg.startswith("--namespace="):
            return arg.split("=", 1)[1]
    return None


def test_the_readmes_install_commands_put_cronworkflows_where_argo_watches():
    """Followed literally, every documented `helm install` that schedules with Argo (the default) goes into the
    namespace standalone KFP's controller watches; a CronJob install may go anywhere."""
    checked = 0
    for doc in INSTALL_DOCS:
        for args in _helm_installs(doc.read_text()):
            namespace = _namespace_of(args)
            assert namespace, f"{doc.relative_to(ROOT)}: `{' '.join(args)}` names no namespace"
            if _scheduler_of(args) == "argo":
                assert namespace == WATCHED, f"{doc.relative_to(ROOT)}: `{' '.join(args)}` schedules nothing"
                checked += 1
    assert checked >= 3, checked  # the chart README's quick start and Secrets, manifests/README.md


def test_the_coinline_namespace_manifest_says_it_is_not_for_the_default_install():
    text = (ROOT / "manifests" / "namespace.yaml").read_text()
    head = text.split("apiVersion:")[0]
    assert "NOT for the default install" in head and "scheduler: cronjob" in head and WATCHED in head


# --- helm test -------------------------------------------------------------------------------------------

def test_helm_test_pod_checks_the_lake_with_the_releases_settings(render):
    r = render({"secret": {"existingSecret": "coinline-secrets"}}, namespace=WATCHED, release="coinline")
    pod = r.one("Pod", "-test-lake")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    assert pod["metadata"]["namespace"] == WATCHED
    spec = pod["spec"]
    assert spec["restartPolicy"] == "Never" and spec["activeDeadlineSeconds"] == VALUES["helmTest"]["activeDeadlineSeconds"]
    (deployment, preflight), (smoke,) = spec["initContainers"], spec["containers"]
    assert deployment["args"] == ["preflight", "--secret-name", "coinline-secrets", "--config-map-name",
                                  "coinline-config", "--json"]
    assert preflight["args"] == ["doctor", "--json"] and smoke["args"] == ["status", "--json"]
    # the preflight sees the release's Secret and ConfigMap as optional volumes: a missing one is named in one
    # line by `coinline preflight`, not a pod stuck in CreateContainerConfigError
    mounts = {m["name"]: m["mountPath"] for m in deployment["volumeMounts"]}
    assert mounts["preflight-secret"] == "/etc/coinline/preflight/secret"
    assert mounts["preflight-config"] == "/etc/coinline/preflight/config"
    vols = {v["name"]: v for v in spec["volumes"]}
    assert vols["preflight-secret"]["secret"] == {"secretName": "coinline-secrets", "optional": True}
    assert vols["preflight-config"]["configMap"] == {"name": "coinline-config", "optional": True}
    scheduled = r.one("CronWorkflow", "-sync")["spec"]["workflowSpec"]["templates"]
    sync = next(t["container"] for t in scheduled if t.get("container", {}).get("args") == ["sync"])
    for c in (deployment, preflight, smoke):  # what a scheduled run gets: image, ConfigMap, Secret keys, hardening
        assert c["image"] == sync["image"] and c["envFrom"] == sync["envFrom"]
        assert c["env"] == sync["env"] and c["securityContext"] == sync["securityContext"]
        assert c["resources"] == VALUES["helmTest"]["resources"]
    assert spec["serviceAccountName"] == r.one("ServiceAccount")["metadata"]["name"]
    app_policy = r.one("NetworkPolicy", "-app")["spec"]["podSelector"]["matchExpressions"]
    component = pod["metadata"]["labels"]["app.kubernetes.io/component"]
    assert any(e["key"] == "app.kubernetes.io/component" and component in e["values"] for e in app_policy), \
        "the app NetworkPolicy (egress to the object store) must select the test pod"
    assert not render({"helmTest": {"enabled": False}}).of("Pod")


def test_the_cli_accepts_what_the_helm_test_runs(render):
    from coinline.cli import build_parser

    spec = render().one("Pod", "-test-lake")["spec"]
    for c in (*spec["initContainers"], *spec["containers"]):
        parsed = build_parser().parse_args(c["args"])  # argparse exits 2 on an unknown verb or option
        assert callable(parsed.func) and parsed.json is True, c["args"]


# --- Chart.yaml and the image tag ----------------------------------------------------------------------

def test_chart_metadata_and_image_tag_following_app_version(render):
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    for key in ("home", "icon"):
        assert re.fullmatch(r"https://\S+", chart[key]), key
    assert chart["sources"] and all(re.fullmatch(r"https://\S+", s) for s in chart["sources"])
    assert chart["maintainers"] and all(m.get("name") for m in chart["maintainers"])
    assert chart["icon"].endswith("/charts/coinline/icon.svg") and (CHART / "icon.svg").is_file()
    assert VALUES["image"]["tag"] == ""
    images = {c["image"] for d in render() for t in d.get("spec", {}).get("workflowSpec", {}).get("templates", [])
              if (c := t.get("container"))}
    assert images == {f"{VALUES['image']['repository']}:{chart['appVersion']}"}
    assert render({"image": {"tag": "1.2.3"}}).one("Pod")["spec"]["containers"][0]["image"].endswith(":1.2.3")
