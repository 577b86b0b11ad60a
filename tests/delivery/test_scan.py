"""The checkov gate (charts/coinline/ci/checkov_gate.py) on small synthetic checkov reports: accepted
findings pass, a new finding fails, a stale baseline entry fails, malformed input is refused; the checked-in
baseline is well-formed; and, where `make scan` has installed checkov into .tools/checkov, the real scan of
the chart passes against that baseline."""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import os
import subprocess
import sys

import pytest
import yaml

from .conftest import CHART, ROOT, TOOLS, find_helm

GATE = CHART / "ci" / "checkov_gate.py"
BASELINE = CHART / "ci" / "checkov-baseline.yaml"
CHECKOV = TOOLS / "checkov" / "bin" / "checkov"


def load_gate():
    spec = importlib.util.spec_from_file_location("checkov_gate", GATE)
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("checkov_gate", module)  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def failed(check_id: str, resource: str, file_path: str = "/default.yaml") -> dict:
    return {"check_id": check_id, "check_name": f"name of {check_id}", "resource": resource, "file_path": file_path}


def report(*findings: dict, resources: int = 10, parsing_errors: int = 0) -> dict:
    """The shape of `checkov --framework kubernetes -o json` for one framework."""
    return {"check_type": "kubernetes",
            "results": {"failed_checks": list(findings), "parsing_errors": ["/x.yaml"] * parsing_errors},
            "summary": {"passed": 40, "failed": len(findings), "skipped": 0, "parsing_errors": parsing_errors,
                        "resource_count": resources, "checkov_version": "3.3.30"}}


BASE = {"accepted": [
    {"check_id": "CKV_K8S_43", "resource": "*.coinline.coinline-*", "reason": "digests are opt-in"},
    {"check_id": "CKV_K8S_8", "resource": "Deployment.coinline.coinline-sync-follow", "reason": "no endpoint"},
]}


def write_inputs(tmp_path, reports, baseline) -> list[str]:
    """--baseline FILE REPORT... for the gate; a str report or baseline is written as is."""
    base = tmp_path / "baseline.yaml"
    base.write_text(baseline if isinstance(baseline, str) else yaml.safe_dump(baseline))
    paths = []
    for i, data in enumerate(reports):
        path = tmp_path / f"report-{i}.json"
        path.write_text(data if isinstance(data, str) else json.dumps(data))
        paths.append(str(path))
    return ["--baseline", str(base), *paths]


@pytest.fixture
def gate_py(tmp_path):
    """Run the gate's main() in this interpreter; returns (exit code, everything it printed)."""
    module = load_gate()

    def run(reports, baseline=BASE) -> tuple[int, str]:
        out = io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            rc = module.main(write_inputs(tmp_path, reports, baseline))
        return rc, out.getvalue()
    return run


def test_findings_that_match_the_baseline_pass(gate_py):
    rc, out = gate_py([report(failed("CKV_K8S_43", "CronJob.coinline.coinline-sync"),
                              failed("CKV_K8S_43", "Job.coinline.coinline-minio-bucket", "/kind.yaml"),
                              failed("CKV_K8S_8", "Deployment.coinline.coinline-sync-follow"))])
    assert rc == 0, out
    assert "ok" in out and "3 finding(s)" in out


def test_a_finding_not_in_the_baseline_fails_and_is_listed(gate_py):
    rc, out = gate_py([report(failed("CKV_K8S_43", "CronJob.coinline.coinline-sync"),
                              failed("CKV_K8S_8", "Deployment.coinline.coinline-sync-follow"),
                              failed("CKV_K8S_20", "Deployment.coinline.coinline-minio", "/kind.yaml"))])
    assert rc == 1
    assert "CKV_K8S_20 Deployment.coinline.coinline-minio" in out and "/kind.yaml" in out
    assert "CKV_K8S_43 CronJob" not in out  # accepted ones are not listed as new


def test_the_check_id_must_match_not_only_the_resource(gate_py):
    rc, out = gate_py([report(failed("CKV_K8S_43", "CronJob.coinline.coinline-run"),
                              failed("CKV_K8S_8", "Deployment.coinline.coinline-sync-follow"),
                              failed("CKV_K8S_9", "Deployment.coinline.coinline-sync-follow"))])
    assert rc == 1 and "CKV_K8S_9 Deployment.coinline.coinline-sync-follow" in out


def test_a_glob_does_not_reach_beyond_its_pattern(gate_py):
    rc, out = gate_py([report(failed("CKV_K8S_43", "CronJob.coinline.coinline-run"),
                              failed("CKV_K8S_43", "Deployment.default.coinline-minio"),  # other namespace
                              failed("CKV_K8S_8", "Deployment.coinline.coinline-sync-follow"))])
    assert rc == 1 and "CKV_K8S_43 Deployment.default.coinline-minio" in out


def test_a_stale_baseline_entry_fails_and_is_listed(gate_py):
    rc, out = gate_py([report(failed("CKV_K8S_43", "CronJob.coinline.coinline-run"))])
    assert rc == 1
    assert "no longer match" in out and "CKV_K8S_8 Deployment.coinline.coinline-sync-follow" in out


def test_findings_are_gathered_across_reports_and_report_lists(gate_py):
    listed = [report(failed("CKV_K8S_43", "CronJob.coinline.coinline-run")),
              {"check_type": "secrets", "results": {"failed_checks": []}, "summary": {"resource_count": 0}}]
    rc, out = gate_py([listed, report(failed("CKV_K8S_8", "Deployment.coinline.coinline-sync-follow"))])
    assert rc == 0, out


def test_an_empty_scan_or_parse_errors_fail(gate_py):
    empty = {"passed": 0, "failed": 0, "skipped": 0, "parsing_errors": 0, "resource_count": 0}  # bare summary
    rc, out = gate_py([empty], baseline={"accepted": []})
    assert rc == 1 and "no resources" in out
    rc, out = gate_py([report(parsing_errors=1)], baseline={"accepted": []})
    assert rc == 1 and "could not parse" in out
    rc, out = gate_py([report()], baseline={"accepted": []})
    assert rc == 0, out


@pytest.mark.parametrize("baseline", [
    {"accepted": [{"check_id": "CKV_K8S_43", "resource": "*"}]},                        # no reason
    {"accepted": [{"check_id": "CKV_K8S_43", "resource": "*", "reason": " "}]},         # blank reason
    {"accepted": [{"check_id": "CKV_K8S_43", "resource": "*", "reason": "r", "file": "x"}]},  # unknown key
    {"accepted": [{"check_id": "X", "resource": "*", "reason": "a"}, {"check_id": "X", "resource": "*", "reason": "b"}]},
    {"ignored": []},
], ids=["no-reason", "blank-reason", "unknown-key", "duplicate", "no-accepted-list"])
def test_a_malformed_baseline_is_refused(gate_py, baseline):
    rc, out = gate_py([report(failed("CKV_K8S_43", "CronJob.coinline.coinline-run"))], baseline=baseline)
    assert rc == 2, out


def test_a_report_that_is_not_checkov_json_is_refused(gate_py):
    rc, out = gate_py(["checkov crashed\n"])
    assert rc == 2 and "not JSON" in out
    rc, out = gate_py([report({"check_id": "CKV_K8S_43"})])  # a failed check without a resource
    assert rc == 2


def test_the_gate_runs_as_a_script(tmp_path):
    args = write_inputs(tmp_path, [report(failed("CKV_K8S_1", "Pod.coinline.x"))], {"accepted": []})
    proc = subprocess.run([sys.executable, str(GATE), *args], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1 and "CKV_K8S_1 Pod.coinline.x" in proc.stdout


# --- the checked-in baseline and the wiring ------------------------------------------------------------

def test_the_checked_in_baseline_is_well_formed_and_namespaced():
    entries = load_gate().load_baseline(yaml.safe_load(BASELINE.read_text()))
    assert entries
    for e in entries:
        assert e.check_id.startswith("CKV_K8S_"), e
        assert ".coinline." in e.resource, f"{e}: renders are namespaced (helm template -n coinline)"
        assert len(e.reason) > 20, e
    assert not [e for e in entries if e.check_id == "CKV_K8S_21"]  # default namespace: fixed, not accepted


def test_make_scan_is_wired_into_ci_after_the_tests():
    makefile = (ROOT / "Makefile").read_text()
    assert "\nscan:" in makefile and "checkov==3.3.30" in makefile and "ci/scan.sh" in makefile
    steps = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert "make scan" in steps and steps.index("make scan") > steps.index("make test")


# --- the real scan (needs `make scan` to have installed checkov once) -------------------------------------

def test_the_chart_passes_the_real_checkov_scan_against_the_baseline(tmp_path):
    if not CHECKOV.exists():
        pytest.skip(f"checkov not installed at {CHECKOV.relative_to(ROOT)} (run `make scan` once to install it)")
    helm = find_helm()
    if helm is None:
        pytest.skip("helm not found")
    out = tmp_path / "scan"
    proc = subprocess.run([str(CHART / "ci" / "scan.sh"), str(out)], capture_output=True, text=True, timeout=600,
                          env={**os.environ, "HELM": str(helm), "CHECKOV_VENV": str(TOOLS / "checkov")}, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rendered = sorted(p.name for p in (out / "rendered").glob("*.yaml"))
    assert {"default.yaml", "kind.yaml", "all-on.yaml"} <= set(rendered), rendered
    assert "checkov-gate: ok" in proc.stdout
