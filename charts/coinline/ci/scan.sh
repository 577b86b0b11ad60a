#!/usr/bin/env bash
# Policy scan of the chart: render it for every values file (defaults, values-*.yaml, ci/*-values.yaml)
# and the plain manifests/minio into OUT/rendered, run checkov over them, and gate the findings against
# charts/coinline/ci/checkov-baseline.yaml (checkov_gate.py: fails on new findings and on stale entries).
# Usage: charts/coinline/ci/scan.sh [OUT]   (`make scan` installs checkov and helm first)
# Env: HELM (default helm), CHECKOV_VENV (default .tools/checkov), KUBECTL (default: kubectl on PATH, else
# .tools/kubectl/kubectl), NAMESPACE (default coinline: installs are namespaced, so are the renders).
set -euo pipefail
cd "$(dirname "$0")/../../.."
out=${1:-out/scan}
chart=charts/coinline
helm=${HELM:-helm}
venv=${CHECKOV_VENV:-.tools/checkov}
ns=${NAMESPACE:-coinline}
kubectl=${KUBECTL:-$(command -v kubectl || echo .tools/kubectl/kubectl)}
start=$SECONDS

rm -rf "$out" && mkdir -p "$out/rendered"
"$helm" template coinline "$chart" -n "$ns" > "$out/rendered/default.yaml"
for values in "$chart"/values-*.yaml "$chart"/ci/*-values.yaml; do
  [ -e "$values" ] || continue
  name=$(basename "$values" .yaml); name=${name#values-}; name=${name%-values}
  "$helm" template coinline "$chart" -n "$ns" -f "$values" > "$out/rendered/$name.yaml"
done

if [ -f manifests/minio/kustomization.yaml ]; then
  # an overlay that only sets the namespace, as `kubectl apply -k manifests/minio -n NS` would
  overlay="$out/minio-overlay"
  mkdir -p "$overlay"
  printf 'apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nnamespace: %s\nresources:\n  - %s\n' \
    "$ns" "$(realpath -m --relative-to="$overlay" manifests/minio)" > "$overlay/kustomization.yaml"
  if [ -x "$kubectl" ] || command -v "$kubectl" >/dev/null 2>&1; then
    "$kubectl" kustomize "$overlay" > "$out/rendered/manifests-minio.yaml"
  else  # plain files, namespaced
    "$venv/bin/python" - "$ns" > "$out/rendered/manifests-minio.yaml" <<'PY'
import sys, pathlib, yaml
ns, root = sys.argv[1], pathlib.Path("manifests/minio")
docs = []
for name in yaml.safe_load((root / "kustomization.yaml").read_text())["resources"]:
    for d in yaml.safe_load_all((root / name).read_text()):
        if d:
            d["metadata"].setdefault("namespace", ns)
            docs.append(d)
print(yaml.safe_dump_all(docs, sort_keys=False), end="")
PY
  fi
fi

# --soft-fail: the gate, not checkov's exit status, decides; checkov crashing still stops us (set -e)
"$venv/bin/checkov" --framework kubernetes -d "$out/rendered" -o json --skip-download --quiet --soft-fail \
  > "$out/checkov.json"
echo "scan: $(ls "$out/rendered" | tr '\n' ' ')-> $out/checkov.json ($((SECONDS - start))s)"
"$venv/bin/python" "$chart/ci/checkov_gate.py" --baseline "$chart/ci/checkov-baseline.yaml" "$out/checkov.json"
