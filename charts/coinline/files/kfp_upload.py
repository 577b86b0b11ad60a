"""Upload coinline's compiled pipelines to Kubeflow Pipelines as new pipeline versions.

Run by the chart's post-install/post-upgrade Job (kubeflow.enabled) with the coinline image, which carries
kfp and the compiled pipelines (pipelines/compiled/*.yaml). Idempotent: pipeline `<prefix><stem>` is
created on first upload (KFP gives it a first version named after the pipeline); each file content is
uploaded once as version `<stem>-<sha256[:12]>` (an unchanged file uploads nothing).

Recurring runs are not made here: on the cluster the chart's Argo CronWorkflows own recurring work, and
KFP recurring runs belong to `coinline schedule` alone. The spec (a JSON file, the one argument) is
rendered from the chart's `kubeflow` values.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Any


def content_version(path: Path) -> str:
    return f"{path.stem}-{hashlib.sha256(path.read_bytes()).hexdigest()[:12]}"


def _versions(client: Any, pipeline_id: str) -> dict[str, str]:
    out, token = {}, ""
    while True:
        resp = client.list_pipeline_versions(pipeline_id, page_token=token, page_size=100)
        for v in resp.pipeline_versions or []:
            out[v.display_name] = v.pipeline_version_id
        token = resp.next_page_token or ""
        if not token:
            return out


def upload_pipelines(client: Any, compiled_dir: Path, prefix: str) -> dict[str, tuple[str, str]]:
    """Every compiled pipeline, uploaded as needed; returns stem -> (pipeline_id, version_id)."""
    files = sorted(p for p in compiled_dir.glob("*.y*ml") if p.suffix in (".yaml", ".yml"))
    if not files:
        raise SystemExit(f"kfp-upload: no compiled pipelines in {compiled_dir}")
    out = {}
    for path in files:
        name, version = f"{prefix}{path.stem}", content_version(path)
        pipeline_id = client.get_pipeline_id(name)
        if pipeline_id is None:
            pipeline = client.upload_pipeline(str(path), pipeline_name=name, description=f"coinline {path.stem}")
            pipeline_id = pipeline.pipeline_id
        versions = _versions(client, pipeline_id)
        if version not in versions:
            made = client.upload_pipeline_version(str(path), pipeline_version_name=version, pipeline_id=pipeline_id)
            versions[version] = made.pipeline_version_id
            print(f"kfp-upload: {name}: uploaded version {version}")
        else:
            print(f"kfp-upload: {name}: version {version} already present")
        out[path.stem] = (pipeline_id, versions[version])
    return out


def make_client(spec: dict) -> Any:
    import kfp

    kwargs: dict[str, Any] = {"host": spec["host"]}
    if spec.get("namespace"):
        kwargs["namespace"] = spec["namespace"]
    if spec.get("multiUser"):
        from kfp.client import ServiceAccountTokenVolumeCredentials

        kwargs["credentials"] = ServiceAccountTokenVolumeCredentials(path=None)
    return kfp.Client(**kwargs)


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        raise SystemExit("usage: kfp_upload.py SPEC.json")
    spec = json.loads(Path(argv[0]).read_text())
    client = make_client(spec)
    upload_pipelines(client, Path(spec["compiledDir"]), spec.get("pipelinePrefix") or "")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
