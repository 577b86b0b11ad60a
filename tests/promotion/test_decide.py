"""Promotion end to end on REAL random-walk runs: REJECT with an OOS reason under the default policy,
PROMOTE only through a permissive policy file, comparison with the active set, audit failures from
tampered artifacts, the decision record, rollback, and the `promote` / `models` verbs."""

import hashlib
import io
import json
import re
from datetime import UTC, datetime

import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from coinline import cli
from coinline.errors import CoinlineError
from coinline.promotion import gates as g
from coinline.promotion import load_policy, promote, read_active, rollback
from coinline.promotion.registry import ACTIVE, RegistryConflict, history
from tests.promotion import fresh_lake, permissive_policy, template

NOW = datetime(2025, 6, 1, tzinfo=UTC)


@pytest.fixture
def setup(tmp_path_factory, tmp_path):
    lake, info = fresh_lake(template(tmp_path_factory), tmp_path / "lake")
    return lake, info["runs"]


def test_random_walk_is_rejected_for_lack_of_oos_skill_and_nothing_is_activated(setup):
    lake, (run, _) = setup
    out = promote(lake, run, load_policy(), now=NOW)
    d = out["decision"]
    assert d["decision"] == "REJECT" and not out["activated"]
    assert g.OOS_SKILL_BELOW_BASELINE in d["reason_codes"] and d["reason_codes"] == sorted(d["reason_codes"])
    assert lake.read_bytes(ACTIVE) is None and history(lake) == []
    stored = lake.read_json(f"decisions/{d['decision_id']}.json")
    assert stored == d
    manifest = lake.read_json(f"runs/{run}/manifest.json")
    assert (d["run_id"], d["dataset_hash"], d["config_hash"]) == (run, manifest["dataset_hash"], manifest["config_hash"])
    assert d["policy"]["version"] == "default-v2" and d["policy"]["sha256"] == load_policy().sha256
    assert d["active_before"] is None
    assert [x["gate"] for x in d["gates"]] == list(g.GATES)
    assert all(x["figures"] and x["thresholds"] for x in d["gates"])
    oos = d["gates"][0]
    assert oos["thresholds"]["alpha"] == 0.05 and oos["figures"]["p_value_holm"] > 0.05
    again = promote(lake, run, load_policy(), now=datetime(2025, 7, 1, tzinfo=UTC))["decision"]
    assert again == d  # same inputs: same id, the stored record is reused
    assert lake.list("decisions") == [f"decisions/{d['decision_id']}.json"]


def test_a_permissive_policy_promotes_and_the_next_run_is_compared_with_the_active_set(setup, tmp_path):
    lake, runs = setup
    _, pol = permissive_policy(tmp_path, oos__active_tolerance=0.0)
    first = promote(lake, runs[0], pol, now=NOW)
    assert first["decision"]["decision"] == "PROMOTE" and first["decision"]["reason_codes"] == []
    active, _ = read_active(lake)
    assert active["run_id"] == runs[0] and active["decision_id"] == first["decision"]["decision_id"]
    assert active["model_set"]["manifest_content_hash"] == lake.read_json(f"runs/{runs[0]}/manifest.json")["content_hash"]
    assert active["model_set"]["models"] and active["evidence"]["oos"]["p_value_holm"] is not None
    assert [h["run_id"] for h in history(lake)] == [runs[0]]
    # the second run is compared with the active set: with no tolerance, WORSE_THAN_ACTIVE exactly when its
    # out-of-sample skill is below the active set's (both often serve the base rate on a random walk: a tie)
    second = promote(lake, runs[1], pol, now=NOW)["decision"]

    def find(obj, key):
        if isinstance(obj, dict):
            if key in obj:
                return obj[key]
            return next((v for v in (find(x, key) for x in obj.values()) if v is not None), None)
        if isinstance(obj, list):
            return next((v for v in (find(x, key) for x in obj) if v is not None), None)
        return None

    mine, theirs = find(second, "candidate_log_loss_skill"), find(second, "active_log_loss_skill")
    assert theirs is not None and find(second, "active_run_id") == runs[0]
    assert (g.WORSE_THAN_ACTIVE in second["reason_codes"]) == (mine is None or mine < theirs)
    assert second["active_before"]["run_id"] == runs[0]
    now_active = read_active(lake)[0]
    if second["decision"] == "PROMOTE":
        assert now_active["run_id"] == runs[1]
    else:
        assert now_active == active
    # already active
    assert promote(lake, now_active["run_id"], pol, now=NOW)["decision"]["reason_codes"] == [g.ALREADY_ACTIVE]


def test_promote_then_rollback_restores_the_previous_set(setup, tmp_path):
    lake, runs = setup
    _, pol = permissive_policy(tmp_path)
    promote(lake, runs[0], pol, now=NOW)
    second = promote(lake, runs[1], pol, now=NOW)
    assert second["activated"] and second["activation"]["previous"]["run_id"] == runs[0]
    out = rollback(lake, now=NOW, reason="test")
    assert out["activation"]["run_id"] == runs[0] and read_active(lake)[0]["run_id"] == runs[0]
    assert [h["kind"] for h in history(lake)] == ["promote", "promote", "rollback"]
    # a target whose artifacts no longer verify is refused
    promote(lake, runs[1], pol, now=NOW)
    lake.delete(f"runs/{runs[0]}/models/regime.bin")
    with pytest.raises(CoinlineError, match="missing models/regime.bin"):
        rollback(lake, now=NOW)
    assert read_active(lake)[0]["run_id"] == runs[1]


def _rehash(lake, run, name, data):
    """Rewrite an artifact AND its manifest entry consistently (a well-formed run with other evidence)."""
    lake.write_bytes(f"runs/{run}/{name}", data)
    manifest = lake.read_json(f"runs/{run}/manifest.json")
    manifest["artifacts"][name] = hashlib.sha256(data).hexdigest()
    manifest["content_hash"] = hashlib.sha256(
        (json.dumps(manifest["artifacts"], indent=1, sort_keys=True) + "\n").encode()).hexdigest()
    lake.write_json(f"runs/{run}/manifest.json", manifest)


def test_in_sample_only_evidence_is_rejected_even_under_a_permissive_policy(setup, tmp_path):
    lake, (run, _) = setup
    metrics = lake.read_json(f"runs/{run}/metrics.json")
    in_sample_only = {k: v for k, v in metrics.items() if k not in ("skill", "per_coin", "checks")}
    _rehash(lake, run, "metrics.json", (json.dumps(in_sample_only, indent=1, sort_keys=True) + "\n").encode())
    _, pol = permissive_policy(tmp_path)
    d = promote(lake, run, pol, now=NOW)["decision"]
    assert d["decision"] == "REJECT" and d["reason_codes"] == [g.IN_SAMPLE_ONLY_EVIDENCE]
    assert lake.read_bytes(ACTIVE) is None


def _tamper_parquet(lake, run):
    name = f"runs/{run}/predictions/oof.parquet"
    table = pq.read_table(io.BytesIO(lake.read_bytes(name)))
    table = table.set_column(table.schema.get_field_index("p_up"), "p_up", pc.multiply(table["p_up"], 0.5))
    buf = io.BytesIO()
    pq.write_table(table, buf)
    lake.write_bytes(name, buf.getvalue())


@pytest.mark.parametrize(("tamper", "expected"), [
    (lambda lake, run: lake.delete(f"runs/{run}/models/regime.bin"), [g.AUDIT_ARTIFACT_MISSING]),
    (lambda lake, run: lake.write_bytes(f"runs/{run}/models/regime.bin", b"other model"), [g.AUDIT_HASH_MISMATCH]),
    (_tamper_parquet, [g.AUDIT_HASH_MISMATCH]),
    # metrics edited after training: the hash fails AND the untrusted metrics are not used as evidence
    (lambda lake, run: lake.write_bytes(f"runs/{run}/metrics.json", lake.read_bytes(f"runs/{run}/metrics.json")
                                        .replace(b'"significant": false', b'"significant": true')),
     [g.AUDIT_HASH_MISMATCH, g.OOS_EVIDENCE_MISSING]),
    (lambda lake, run: lake.delete(f"runs/{run}/manifest.json"),
     [g.AUDIT_ARTIFACT_MISSING, g.AUDIT_MANIFEST_MISSING, g.OOS_EVIDENCE_MISSING, g.RISK_EVIDENCE_MISSING,
      g.SIM_EVIDENCE_MISSING]),
])
def test_audit_rejects_missing_or_altered_lineage(setup, tmp_path, tamper, expected):
    lake, (run, _) = setup
    _, pol = permissive_policy(tmp_path)
    tamper(lake, run)
    d = promote(lake, run, pol, now=NOW)["decision"]
    assert d["decision"] == "REJECT" and d["reason_codes"] == expected
    assert lake.read_bytes(ACTIVE) is None


def test_a_changed_dataset_fails_the_audit(setup, tmp_path):
    lake, (run, _) = setup
    dataset = lake.read_json(f"runs/{run}/manifest.json")["dataset_id"]
    name = f"datasets/{dataset}/data.parquet"
    table = pq.read_table(io.BytesIO(lake.read_bytes(name)))
    buf = io.BytesIO()
    pq.write_table(table.slice(1), buf)
    lake.write_bytes(name, buf.getvalue())
    _, pol = permissive_policy(tmp_path)
    assert promote(lake, run, pol, now=NOW)["decision"]["reason_codes"] == [g.AUDIT_DATASET_HASH_MISMATCH]


def test_an_unknown_run_is_an_error_not_a_decision(setup):
    lake, _ = setup
    with pytest.raises(CoinlineError, match="unknown run"):
        promote(lake, "run-doesnotexist", load_policy(), now=NOW)
    assert lake.list("decisions") == []


def test_a_pointer_moved_by_a_rival_between_read_and_swap_is_a_conflict(setup, tmp_path):
    lake, runs = setup
    _, pol = permissive_policy(tmp_path)
    promote(lake, runs[0], pol, now=NOW)

    def rival_activates_first(step):
        if step == "before_cas":
            _, cur = read_active(lake)
            lake.compare_and_swap(ACTIVE, cur, {**json.loads(cur), "sequence": 99, "activation_id": "act-rival"})

    with pytest.raises(RegistryConflict):
        promote(lake, runs[1], pol, now=NOW, on_step=rival_activates_first)
    assert read_active(lake)[0]["activation_id"] == "act-rival"


def test_cli_promote_and_models_verbs(setup, tmp_path, monkeypatch, capsys):
    lake, runs = setup
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("OBJECT_STORE_URL", lake.root)
    assert cli.main(["--now", "2025-06-01T00:00:00Z", "promote", runs[0], "--json"]) == 1
    out = json.loads(capsys.readouterr().out)
    assert out["decision"]["decision"] == "REJECT" and g.OOS_SKILL_BELOW_BASELINE in out["decision"]["reason_codes"]
    path, _ = permissive_policy(tmp_path)
    # the default policy was adopted by the first promote: another one takes effect only once approved
    assert cli.main(["promote", runs[0], "--policy", str(path), "--json"]) == 2
    err = capsys.readouterr().err
    assert "unapproved policy change refused" in err and "coinline approve thresholds" in err
    assert read_active(lake)[0] is None
    new_hash = re.search(r"coinline approve thresholds ([0-9a-f]{64})", err).group(1)
    assert cli.main(["approve", "thresholds", new_hash, "--approver", "ops", "--reason", "test gates"]) == 0
    capsys.readouterr()
    for run in runs:
        assert cli.main(["promote", run, "--policy", str(path), "--json"]) == 0
        assert json.loads(capsys.readouterr().out)["activated"]
    # promoting the active run again changes nothing and is not an error
    assert cli.main(["promote", runs[1], "--policy", str(path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["outcome"] == "ALREADY_ACTIVE"
    assert cli.main(["models", "active", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["active"]["run_id"] == runs[1] and [x["run_id"] for x in shown["lineage"]] == [runs[1], runs[0]]
    assert cli.main(["models", "rollback", "--reason", "drill", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["activation"]["run_id"] == runs[0]
    assert cli.main(["models", "active"]) == 0
    assert runs[0] in capsys.readouterr().out
