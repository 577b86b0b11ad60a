"""Regenerate manifests/kubeflow/env/upstream.json from the pinned Kubeflow Pipelines manifests.

upstream.json records what the kustomizations in manifests/kubeflow create that coinline relies on: the
Services of the KFP API, the UI and the artifact store (name and port), the Secret holding the artifact
store's S3 keys, and the namespace Argo's workflow controller watches. The kind e2e
(tests/e2e/test_kind.py) takes its port-forward targets from it, and tests/e2e/test_e2e_plan.py fails
while its `ref` differs from the `?ref=` of the kustomizations, so a KFP bump cannot silently break the
e2e: bump the ref in both kustomizations, then run this (needs network, and `kubectl` or `kustomize`):

    python manifests/kubeflow/refresh_upstream.py            # rewrite upstream.json
    python manifests/kubeflow/refresh_upstream.py --check    # exit 1 when upstream.json is stale

It renders both kustomizations (`kubectl kustomize DIR`, or `kustomize build DIR` when kubectl is missing)
and reads the facts from the rendered objects; it fails, naming what it could not find, when the
manifests no longer look the way it expects (review such a release by hand).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import yaml

KUBEFLOW = Path(__file__).resolve().parent
UPSTREAM = KUBEFLOW / "env" / "upstream.json"
STEPS = ("cluster-scoped", "env")
API_SERVER, UI = "ml-pipeline", "ml-pipeline-ui"
S3_PORT = 9000                      # the artifact store's S3 API, whichever server answers it
ABOUT = ("What the pinned Kubeflow Pipelines manifests (env/ and cluster-scoped/ at this ref) create that coinline "
         "relies on. Refresh it whenever the ?ref= of either kustomization changes: python "
         "manifests/kubeflow/refresh_upstream.py (needs network and kubectl or kustomize); "
         "tests/e2e/test_e2e_plan.py fails while the refs differ.")


class UpstreamChanged(Exception):
    """The rendered manifests lack something upstream.json records."""


def kustomization_ref(step: str, root: Path = KUBEFLOW) -> str:
    """The `?ref=` of the one remote resource of manifests/kubeflow/<step>/kustomization.yaml."""
    doc = yaml.safe_load((root / step / "kustomization.yaml").read_text())
    refs = {parse_qs(urlsplit(f"https://{r}").query).get("ref", [""])[0] for r in doc["resources"]}
    if len(refs) != 1 or "" in refs:
        raise UpstreamChanged(f"{step}/kustomization.yaml: expected one ?ref= over its resources, got {sorted(refs)}")
    return refs.pop()


def _port(service: dict, wanted: int | None = None) -> dict:
    ports = service["spec"]["ports"]
    if wanted is None:
        named = [p for p in ports if p.get("name") == "http"]
        return named[0] if named else ports[0]
    found = [p for p in ports if p["port"] == wanted]
    if not found:
        raise UpstreamChanged(f"Service {service['metadata']['name']} has no port {wanted}")
    return found[0]


def facts(docs: list[dict], ref: str) -> dict:
    """upstream.json's content from the rendered objects of both kustomizations."""
    docs = [d for d in docs if isinstance(d, dict) and d.get("kind")]
    services = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Service"}
    missing = [name for name in (API_SERVER, UI) if name not in services]
    if missing:
        raise UpstreamChanged(f"no Service {', '.join(missing)} (Services: {sorted(services)})")
    namespace = services[API_SERVER]["metadata"].get("namespace", "")
    stores = sorted(name for name, s in services.items() if any(p["port"] == S3_PORT for p in s["spec"]["ports"]))
    if len(stores) != 1:
        raise UpstreamChanged(f"expected one Service on the S3 port {S3_PORT} (the artifact store), got {stores}")
    store = _port(services[stores[0]], S3_PORT)
    secrets = sorted(d["metadata"]["name"] for d in docs if d["kind"] == "Secret"
                     and {"accesskey", "secretkey"} <= {*d.get("data", {}), *d.get("stringData", {})})
    if len(secrets) != 1:
        raise UpstreamChanged(f"expected one Secret with keys accesskey/secretkey (the artifact store's), got {secrets}")
    controllers = [d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == "workflow-controller"]
    if len(controllers) != 1:
        raise UpstreamChanged("expected one Deployment workflow-controller (Argo Workflows)")
    controller = controllers[0]
    args = [a for c in controller["spec"]["template"]["spec"]["containers"] for a in [*c.get("command", []),
                                                                                        *c.get("args", [])]]
    watches = ""                    # cluster-wide: every namespace
    if "--namespaced" in args:
        watches = controller["metadata"].get("namespace", namespace)
        for i, arg in enumerate(args):
            if arg == "--managed-namespace" and i + 1 < len(args):
                watches = args[i + 1]
            elif arg.startswith("--managed-namespace="):
                watches = arg.split("=", 1)[1]
    return {
        "about": ABOUT,
        "ref": ref,
        "namespace": namespace,
        "services": {
            "api_server": {"name": API_SERVER, "port": _port(services[API_SERVER])["port"]},
            "artifact_store": {"name": stores[0], "port": store["port"],
                               "targetPort": store.get("targetPort", store["port"])},
            "ui": {"name": UI, "port": _port(services[UI])["port"]},
        },
        "artifact_store_secret": {"name": secrets[0], "keys": ["accesskey", "secretkey"]},
        "workflow_controller": {"deployment": "workflow-controller", "watches": watches},
    }


def dump(data: dict) -> str:
    return json.dumps(data, indent=2) + "\n"


def render(step: str) -> list[dict]:
    kubectl, kustomize = shutil.which("kubectl"), shutil.which("kustomize")
    if kubectl:
        cmd = [kubectl, "kustomize", str(KUBEFLOW / step)]
    elif kustomize:
        cmd = [kustomize, "build", str(KUBEFLOW / step)]
    else:
        raise SystemExit("refresh_upstream: needs kubectl or kustomize on PATH")
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    if out.returncode != 0:
        raise SystemExit(f"refresh_upstream: {' '.join(cmd)} failed:\n{out.stderr[-3000:]}")
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare with upstream.json, write nothing")
    args = parser.parse_args(argv)
    refs = {step: kustomization_ref(step) for step in STEPS}
    if len(set(refs.values())) != 1:
        raise SystemExit(f"refresh_upstream: the kustomizations pin different refs: {refs}")
    try:
        text = dump(facts([d for step in STEPS for d in render(step)], refs["env"]))
    except UpstreamChanged as exc:
        raise SystemExit(f"refresh_upstream: the manifests at {refs['env']} changed shape: {exc}") from exc
    if args.check:
        stale = UPSTREAM.read_text() != text
        print(f"{UPSTREAM}: {'stale' if stale else 'up to date'}")
        return 1 if stale else 0
    UPSTREAM.write_text(text)
    print(f"wrote {UPSTREAM}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
