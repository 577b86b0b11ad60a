"""Upload coinline's compiled pipelines to Kubeflow Pipelines as versions made for this release, and move the
recurring runs of those pipelines to them.

Run by the chart's post-install/post-upgrade Job (kubeflow.enabled) with the coinline image, which carries
kfp, coinline (`coinline.kfp_deploy` does the work) and the compiled pipelines (pipelines/compiled/*.yaml,
built for the default images ghcr.io/coinline/coinline{,-trainer}:<version>). The spec (a JSON file, the one
argument) is rendered from the chart's values. For each compiled pipeline:

1. retarget: every step runs the chart's images (`images.runtime` = image.repository:tag@digest,
   `images.trainer` = trainerImage, the model-fitting steps), and the pipeline parameters in `parameters`
   get the release's values as defaults: k8s_secret_name and k8s_config_map_name (the Secret and ConfigMap
   of this release, which the preflight step checks), ray_address (the chart's RayCluster when ray.enabled);
2. upload: pipeline `<prefix><stem>` (created on first upload) gets version
   `<stem>-<chart version>-<sha256 of the retargeted spec, 12 hex>`; an unchanged spec uploads nothing;
3. move (`moveRecurringRuns`): every recurring run of that pipeline on another version (or, as older
   `coinline schedule` made them, with the spec embedded) is replaced by one on the new version: same name,
   experiment, trigger and parameters, never catching up; of several runs with one name one is kept.

Recurring runs are never created here (`coinline schedule` makes them; the chart's Argo CronWorkflows own
the cluster's own recurring work).
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from coinline import kfp_deploy


def compiled_files(compiled_dir: Path) -> list[Path]:
    files = sorted(p for p in compiled_dir.glob("*.y*ml") if p.suffix in (".yaml", ".yml"))
    if not files:
        raise SystemExit(f"kfp-upload: no compiled pipelines in {compiled_dir}")
    return files


def retargeted(path: Path, spec: dict) -> tuple[list[dict], str]:
    try:
        docs = kfp_deploy.retarget(kfp_deploy.load_spec(path.read_text()), spec.get("images") or {},
                                   spec.get("parameters") or {})
    except kfp_deploy.DeployError as exc:
        raise SystemExit(f"kfp-upload: {path.name}: {exc}") from None
    return docs, kfp_deploy.dump_spec(docs)


def describe(stem: str, spec: dict) -> str:
    release, images = spec.get("release") or {}, spec.get("images") or {}
    return (f"coinline {stem} for Helm release {release.get('name', '?')} in {release.get('namespace', '?')} "
            f"(chart {release.get('chartVersion', '?')}): images {images.get('runtime', 'default')}, "
            f"{images.get('trainer', 'default')}")[:1000]


def upload_pipelines(client: Any, compiled_dir: Path, prefix: str, spec: dict | None = None) -> dict[str, tuple[str, str]]:
    """Every compiled pipeline, retargeted and uploaded as needed, its recurring runs moved; returns
    stem -> (pipeline_id, version_id)."""
    spec = spec or {}
    chart_version = str((spec.get("release") or {}).get("chartVersion") or "0")
    out = {}
    with tempfile.TemporaryDirectory(prefix="kfp-upload-") as tmp:
        for path in compiled_files(compiled_dir):
            docs, text = retargeted(path, spec)
            target = Path(tmp) / f"{path.stem}.yaml"
            target.write_text(text)
            name = f"{prefix}{path.stem}"
            version = kfp_deploy.version_name(path.stem, chart_version, text)
            up = kfp_deploy.ensure_version(client, name, str(target), version, description=describe(path.stem, spec))
            print(f"kfp-upload: {name}: {'uploaded' if up.created else 'already present:'} version {version}")
            if spec.get("moveRecurringRuns", True):
                for moved in kfp_deploy.move_recurring_runs(
                        client, pipeline_id=up.pipeline_id, version_id=up.version_id,
                        pipeline_name=kfp_deploy.spec_name(docs), inputs=kfp_deploy.spec_inputs(docs),
                        namespace=spec.get("namespace") or None):
                    print(f"kfp-upload: {name}: recurring run {moved['name']}: {moved['action']}")
            out[path.stem] = (up.pipeline_id, up.version_id)
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
    upload_pipelines(client, Path(spec["compiledDir"]), spec.get("pipelinePrefix") or "", spec)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
