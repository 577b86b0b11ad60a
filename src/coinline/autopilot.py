"""`coinline run --follow`: continuous ingestion, and retraining + promotion on triggers, autonomously.

Each cycle (at time `now` from the injected clock):
  1. ingest: sync the historical provider (newly closed candles, re-reading `COINLINE_RECONCILE_LOOKBACK`
     candles to catch revisions); a series with no history yet is backfilled.
  2. with ENABLE_AUTONOMOUS_RETRAINING: materialize the latest dataset; find the reference run (the
     active one from the promotion registry when it can say, else the latest autopilot run); evaluate
     the triggers:
       schedule  the retraining cron (`RetrainPolicy.cron`) fired since the last retraining (or there
                 has been none);
       drift     feature / prediction / label drift of the rows that closed after the reference run's
                 data against the run's out-of-sample rows, or degradation of the rolling hit rate / Brier
                 score against the run's OOS figures (`coinline.promotion.drift`);
       manual    pending manual requests (`coinline.promotion.triggers.request_manual`).
     Every trigger is recorded (`triggers/<id>.json`) with its evidence.
  3. a storm of triggers starts at most one retraining: under the single-flight lock (`locks/retrain.json`)
     the first trigger materializes, trains, and calls `coinline.promotion.decide.promote(lake, run_id,
     ...)` when that exists ("promotion unavailable" is recorded otherwise); the others are coalesced into
     it. A trigger finding the lock held by another process is coalesced into that retraining. Drift
     triggers within `cooldown_hours` of the last retraining are coalesced into it too (a rejected
     candidate leaves the active run, and its drift, in place: without a cooldown every cycle would retrain).
  4. the cycle report (ingestion, schedule, drift report, triggers, retraining outcome) is written to
     `autopilot/cycles/<time>.json`; then sleep until the next candle closes (plus a grace).
  Lake maintenance (`coinline.lake.maintain`: compaction, VACUUM keeping every pinned dataset version,
  checkpoints) runs in the cycle, after forecasting, once `maintain_every` (follow: MAINTAIN_EVERY, daily)
  has passed since the last one (`last_maintenance_at` in the state; a first follower starts the clock).

Policy changes (universe version, thresholds policy, historical provider) are checked once at start:
an unapproved change raises ConfigError (`coinline.promotion.approvals`).
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from coinline.app import App
from coinline.errors import CoinlineError, ConfigError
from coinline.promotion import approvals
from coinline.promotion.drift import DriftReport, DriftThresholds, drift_report, rolling_scores
from coinline.promotion.drift_ledger import ledger_evidence
from coinline.promotion.triggers import (
    SingleFlight,
    Trigger,
    check_cron,
    list_triggers,
    record_trigger,
    run_single_flight,
    schedule_status,
    update_trigger,
)

log = logging.getLogger("coinline")

STATE = "autopilot/state.json"
CYCLES_DIR = "autopilot/cycles"
MAINTAIN_EVERY = timedelta(hours=24)   # follow's lake maintenance: compaction keeps a day of small files
TREE_FAMILIES = ("xgboost", "lightgbm", "random_forest")
MONITORABLE = (*TREE_FAMILIES, "lstm", "transformer")
_LAZY: Any = object()


@dataclass(frozen=True)
class RetrainPolicy:
    """The thresholds policy of autonomous retraining (hashed; a change needs approval)."""

    cron: str = "0 4 * * 1"              # weekly, Monday 04:00 UTC
    window_bars: int = 336               # current window: at most the last 2 weeks (1h) after the run's data
    cooldown_hours: float = 24.0         # drift triggers this soon after a retraining are coalesced into it
    monitor_family: str = "xgboost"      # the model whose predictions are monitored (falls back to a tree)
    lock_ttl_hours: float = 12.0         # single-flight lock expiry (a crashed holder is taken over after it)
    drift: DriftThresholds = field(default_factory=DriftThresholds)

    def __post_init__(self) -> None:
        check_cron(self.cron, "retrain policy cron")
        if self.monitor_family not in MONITORABLE:
            raise ConfigError(f"retrain policy monitor_family={self.monitor_family!r}; one of {', '.join(MONITORABLE)}")
        if self.window_bars < 1 or self.cooldown_hours < 0 or self.lock_ttl_hours <= 0:
            raise ConfigError("retrain policy: window_bars >= 1, cooldown_hours >= 0 and lock_ttl_hours > 0")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def value_hash(self) -> str:
        return approvals.value_hash(self.to_dict())


def load_retrain_policy(path: str | Path | None = None, overrides: Mapping[str, Any] | None = None) -> RetrainPolicy:
    """RetrainPolicy from a JSON file of overrides (`drift` nested), or the defaults."""
    data: dict[str, Any] = {}
    if path:
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ConfigError(f"retrain policy {path}: cannot read JSON ({exc})") from None
    data.update(overrides or {})
    known = {f.name for f in dataclasses.fields(RetrainPolicy)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"retrain policy {path or '(overrides)'}: unknown setting(s) {unknown}; known: {sorted(known)}")
    try:
        if "drift" in data:
            data["drift"] = DriftThresholds.from_dict(data["drift"])
        return RetrainPolicy(**data)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"retrain policy {path or '(overrides)'}: {exc}") from None


# -- governance -------------------------------------------------------------------------------------
def load_promotion_policy(path: str | Path | None = None) -> Any:
    """The promotion gates policy (`coinline.promotion.policy.load_policy`), None when that is unavailable."""
    try:
        mod = importlib.import_module("coinline.promotion.policy")
    except ImportError:
        return None
    return mod.load_policy(path)


def policy_values(app: App, policy: RetrainPolicy, promotion_policy: Any = None) -> dict[str, Any]:
    """The governed values of this process: universe version, thresholds (retraining policy and the
    promotion gates policy hash), historical provider."""
    s = app.settings
    return {
        "universe": {"version": s.training_universe_version},
        "thresholds": {"retrain": policy.to_dict(),
                       "promotion_policy": None if promotion_policy is None else {
                           "version": getattr(promotion_policy, "version", None),
                           "sha256": getattr(promotion_policy, "sha256", None)}},
        "provider": {"provider": s.hist_provider.upper(), "exchange": s.hist_exchange, "offline": s.offline,
                     "base_url": None if s.offline else s.hist_base_url},
    }


def require_policy_approvals(app: App, policy: RetrainPolicy, *, now: datetime,
                             promotion_policy: Any = None) -> dict[str, Any]:
    """Adopt the governed values, refusing (ConfigError) any unapproved change."""
    from coinline.universe.refresh import approval_path

    adopted = {}
    for kind, value in policy_values(app, policy, promotion_policy).items():
        external = None
        if kind == "universe":
            path = approval_path(Path(app.settings.universe_dir), value["version"])
            external = str(path) if path.is_file() else None
        adopted[kind] = approvals.require_approved(app.lake, kind, approvals.value_hash(value), value=value, at=now,
                                                   external_approval=external)
    return adopted


def require_promotion_policy(lake, promotion_policy: Any, *, now: datetime) -> dict[str, Any]:
    """Refuse (ConfigError) a promotion gates policy that differs from the adopted one without an approval.

    The promotion policy is part of the governed `thresholds` value (with the retraining policy, see
    `policy_values`). A step that only promotes (`coinline promote`, the pipelines' promote component) has no
    retraining policy of its own, so it keeps the adopted retraining half and swaps in its promotion policy:
    the same policy as adopted passes, another one needs `coinline approve thresholds HASH`. Before anything
    was adopted, the default retraining policy with this promotion policy becomes the baseline (as the
    first `run`/`retrain` would adopt it)."""
    current = approvals.active(lake, "thresholds")
    value = dict((current or {}).get("value") or {"retrain": RetrainPolicy().to_dict()})
    value["promotion_policy"] = None if promotion_policy is None else {
        "version": getattr(promotion_policy, "version", None), "sha256": getattr(promotion_policy, "sha256", None)}
    return approvals.require_approved(lake, "thresholds", approvals.value_hash(value), value=value, at=now)


# -- reference run ---------------------------------------------------------------------------------
def _run_id_of(value: Any) -> str | None:
    if isinstance(value, str) and value:
        return value
    if isinstance(value, Mapping):
        rid = value.get("run_id")
        return rid if isinstance(rid, str) and rid else None
    rid = getattr(value, "run_id", None)
    return rid if isinstance(rid, str) and rid else None


def active_run_from_registry(lake) -> str | None:
    """The active run id from the promotion registry (`coinline.promotion.registry.read_active`); None when
    nothing is active or the registry is unavailable (never raises)."""
    try:
        registry = importlib.import_module("coinline.promotion.registry")
        value = registry.read_active(lake)
    except Exception:  # noqa: BLE001 - absent or unreadable: fall back to the latest run
        return None
    if isinstance(value, tuple):  # (record, raw bytes)
        value = value[0]
    return _run_id_of(value)


def reference_run(lake) -> tuple[str | None, str]:
    """(run_id, "active" | "latest" | "none"): the active run, else the latest autopilot run."""
    rid = active_run_from_registry(lake)
    if rid and lake.read_json(f"runs/{rid}/metrics.json") is not None:
        return rid, "active"
    state = lake.read_json(STATE) or {}
    rid = state.get("last_run_id")
    if rid and lake.read_json(f"runs/{rid}/metrics.json") is not None:
        return rid, "latest"
    return None, "none"


# -- promotion --------------------------------------------------------------------------------------
def resolve_promote() -> tuple[Callable[..., Any] | None, str | None]:
    """`coinline.promotion.decide.promote` if present, else (None, why)."""
    try:
        mod = importlib.import_module("coinline.promotion.decide")
    except ModuleNotFoundError as exc:
        if exc.name in ("coinline.promotion.decide", "coinline.promotion"):
            return None, "coinline.promotion.decide is not installed"
        raise
    except ImportError as exc:
        return None, f"coinline.promotion.decide cannot be imported ({exc})"
    fn = getattr(mod, "promote", None)
    return (fn, None) if callable(fn) else (None, "coinline.promotion.decide has no promote()")


def _jsonable(value: Any) -> Any:
    if hasattr(value, "to_dict") and callable(value.to_dict):
        value = value.to_dict()
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = dataclasses.asdict(value)
    try:
        return json.loads(json.dumps(value, default=str))
    except (TypeError, ValueError):
        return str(value)


def call_promote(promote: Callable[..., Any], lake, run_id: str, *, now: datetime, trigger: Trigger,
                 dataset_id: str, policy: Any = None) -> Any:
    """Call promote(lake, run_id, ...) passing only the keyword arguments its signature names
    (`policy` is the promotion gates policy, e.g. `promote(lake, run_id, policy, *, now)`)."""
    offered = {"now": now, "at": now, "trigger_id": trigger.trigger_id, "trigger": trigger.trigger_id,
               "evidence": trigger.evidence, "dataset_id": dataset_id, "reason": f"{trigger.kind} trigger"}
    if policy is not None:
        offered["policy"] = policy
    try:
        params = inspect.signature(promote).parameters
    except (TypeError, ValueError):
        params = {}
    kwargs = {k: v for k, v in offered.items() if k in params
              and params[k].kind in (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)}
    return promote(lake, run_id, **kwargs)


# -- drift against the reference run ------------------------------------------------------------------
def _train_config_of(lake, run_id: str):
    from coinline.training.config import FeatureConfig, TrainConfig

    conf = (lake.read_json(f"runs/{run_id}/config.json") or {}).get("config") or {}
    kw: dict[str, Any] = {}
    if "horizons" in conf:
        kw["horizons"] = tuple(int(h) for h in conf["horizons"])
    if "primary_horizon" in conf:
        kw["primary_horizon"] = int(conf["primary_horizon"])
    if "features" in conf:
        kw["features"] = FeatureConfig(**conf["features"])
    return TrainConfig(**kw)


def _frames(lake, dataset_id: str, cfg, symbols: list[str], quote: str, interval: str, since_ms: int | None = None):
    """Feature frames of a dataset's `quote` candles of `symbols` (from `since_ms` on, when given)."""
    import pandas as pd

    from coinline.datasets.materialize import load_dataset
    from coinline.features.frame import build_coin_frames

    table, _ = load_dataset(lake, dataset_id, verify=False)
    df = table.to_pandas()
    keep = (df["quote"] == quote) & (df["symbol"].isin(symbols))
    if since_ms is not None:
        keep &= pd.to_datetime(df["open_time"], utc=True) >= pd.Timestamp(since_ms, unit="ms", tz="UTC")
    df = df[keep]
    if df.empty:
        return {}
    return build_coin_frames(df, cfg, quote=quote, interval=interval)


def _load_model(family: str, blob: bytes):
    if family in TREE_FAMILIES:
        from coinline.models.trees import from_bytes

        return from_bytes(blob)
    from coinline.models.sequence import SequenceModel

    return SequenceModel.from_bytes(blob)


@dataclass
class _Reference:
    run_id: str
    metrics: dict[str, Any]
    cfg: Any
    horizon: int
    family: str | None
    frames: dict[str, Any]
    rows: dict[str, np.ndarray]        # per symbol: frame rows of the OOS predictions
    p: dict[str, np.ndarray]
    y: dict[str, np.ndarray]
    oos: dict[str, Any]                # pooled OOS hit_rate / brier of the monitored family


def _reference(lake, run_id: str, policy: RetrainPolicy, quote: str, interval: str) -> _Reference:
    import pyarrow.parquet as pq

    metrics = lake.read_json(f"runs/{run_id}/metrics.json")
    if metrics is None:
        raise CoinlineError(f"run {run_id} has no metrics.json in the lake")
    cfg = _train_config_of(lake, run_id)
    h = int(metrics.get("primary_horizon", cfg.primary_horizon))
    symbols = list(metrics["symbols"])
    per_coin = metrics.get("per_coin", {})
    present = [f for f in (policy.monitor_family, *TREE_FAMILIES)
               if any(f in per_coin.get(s, {}).get(str(h), {}).get("models", {}) for s in symbols)]
    family = present[0] if present else None
    frames = _frames(lake, metrics["dataset_id"], cfg, symbols, quote, interval)
    rows, p, y = {}, {}, {}
    hits = briers = n_total = 0.0
    if family is not None:
        oof = pq.read_table(lake.path(f"runs/{run_id}/predictions/oof.parquet"), filesystem=lake.fs).to_pandas()
        oof = oof[(oof["horizon"] == h) & (oof["family"] == family)]
        for sym, frame in frames.items():
            part = oof[oof["symbol"] == sym].sort_values("open_time_ms")
            t = part["open_time_ms"].to_numpy(np.int64)
            idx = np.searchsorted(frame.times, t)
            ok = (idx < len(frame.times)) & (frame.times[np.minimum(idx, len(frame.times) - 1)] == t)
            rows[sym], p[sym], y[sym] = idx[ok], part["p_up"].to_numpy(float)[ok], part["y"].to_numpy(float)[ok]
            oos = per_coin.get(sym, {}).get(str(h), {}).get("models", {}).get(family, {}).get("oos", {})
            if oos.get("n"):
                n_total += oos["n"]
                hits += oos["n"] * (oos.get("accuracy") or 0.0)
                briers += oos["n"] * (oos.get("brier") or 0.0)
    oos_pooled = ({"hit_rate": hits / n_total, "brier": briers / n_total, "count": int(n_total), "family": family}
                  if n_total else {"hit_rate": None, "brier": None, "count": 0, "family": family})
    return _Reference(run_id, metrics, cfg, h, family, frames, rows, p, y, oos_pooled)


def compute_drift(lake, run_id: str, dataset_id: str, policy: RetrainPolicy, *, quote: str = "USD",
                  interval: str = "1h", cache: dict[str, Any] | None = None,
                  now: datetime | None = None) -> DriftReport:
    """Drift of `dataset_id`'s rows that closed after run `run_id`'s data (the last `window_bars` of them)
    against the run's out-of-sample rows: features, the monitored model's P(up), realized labels, and the
    rolling hit rate / Brier vs the run's OOS figures. Forward predictions stored with the run are scored
    where their labels are now known (evidence only)."""
    from coinline.evaluation.checks import score_forward

    cache = cache if cache is not None else {}
    key = (run_id, quote, interval, policy.monitor_family)
    if cache.get("key") != key:
        cache.clear()
        cache.update(key=key, ref=_reference(lake, run_id, policy, quote, interval))
    ref: _Reference = cache["ref"]
    if not ref.frames:
        raise CoinlineError(f"run {run_id}: no reference rows for {quote} {interval}")
    # only the tail is needed: every feature window is at most `features.long` rows
    from coinline.timeframes import interval_ms

    warmup = (2 * int(ref.cfg.features.long) + max(ref.cfg.horizons) + 24) * interval_ms(interval)
    since = min(int(f.times[-1]) for f in ref.frames.values()) - warmup
    cur_frames = _frames(lake, dataset_id, ref.cfg, list(ref.frames), quote, interval, since_ms=since)
    F_ref, F_cur, p_ref, p_cur, y_ref, y_cur, per_symbol, forward = [], [], [], [], [], [], {}, []
    names = None
    for sym, rf in ref.frames.items():
        cf = cur_frames.get(sym)
        if cf is None:
            continue
        if names is None:
            names = rf.feature_names
        if rf.feature_names != names or cf.feature_names != names:
            raise CoinlineError(f"run {run_id}: feature columns of {sym} differ between reference and current data")
        after = np.flatnonzero(cf.times > rf.times[-1])[-policy.window_bars:]
        ref_rows = ref.rows.get(sym, np.arange(len(rf.times)))
        F_ref.append(rf.F[ref_rows])
        F_cur.append(cf.F[after])
        labels = cf.targets[ref.horizon]["dir"][after]
        y_cur.append(labels)
        entry = {"ref_rows": int(len(ref_rows)), "cur_rows": int(len(after)),
                 "ref_end_ms": int(rf.times[-1]), "cur_end_ms": int(cf.times[-1]) if len(cf.times) else None}
        if ref.family is not None and sym in ref.p:
            p_ref.append(ref.p[sym])
            y_ref.append(ref.y[sym])
            blob = lake.read_bytes(f"runs/{run_id}/models/{sym}/{ref.horizon}_h_{ref.family}.bin")
            if blob is not None and len(after):
                pc = np.asarray(_load_model(ref.family, blob).predict_proba(cf.F, after), dtype=float)
            else:
                pc = np.full(len(after), np.nan)
            p_cur.append(pc)
            entry["scores"] = rolling_scores(pc, labels)
        pending = (ref.metrics.get("checks", {}).get(sym, {}) or {}).get("forward") or []
        if pending:
            realized = {ref.horizon: {int(t): float(v) for t, v in zip(cf.times, cf.targets[ref.horizon]["dir"],
                                                                          strict=True) if np.isfinite(v)}}
            forward += [{**e, "symbol": sym} for e in score_forward(pending, realized)]
        per_symbol[sym] = entry
    width = len(names or ())

    def cat(parts):
        return np.concatenate(parts) if parts else np.zeros(0)

    def cat2(parts):
        return np.vstack(parts) if parts else np.zeros((0, width))

    have_p = bool(p_ref)
    pc_all, yc_all = cat(p_cur), cat(y_cur)
    try:  # the active set's own forecasts, when the ledger holds enough of them (else: the re-predicted figures)
        evidence = ledger_evidence(lake, run_id, thresholds=policy.drift, horizon=ref.horizon,
                                   window=policy.window_bars, now=now)
    except Exception as exc:  # noqa: BLE001 - drift stays defined without the ledger
        log.warning("autopilot: forecasts ledger unavailable for drift: %s", exc)
        evidence = None
    return drift_report(
        cat2(F_ref), cat2(F_cur), cat(p_ref) if have_p else None, pc_all if have_p else None,
        cat(y_ref) if have_p else None, yc_all, policy.drift, feature_names=list(names or ()),
        scores_ref=ref.oos if have_p else None,
        scores_cur=rolling_scores(pc_all, yc_all) if have_p else None,
        context={"run_id": run_id, "run_dataset_id": ref.metrics.get("dataset_id"), "dataset_id": dataset_id,
                 "horizon": ref.horizon, "monitored_family": ref.family, "per_symbol": per_symbol,
                 "forward_scored": forward, "forward_summary": rolling_scores(
                     [e["p"] for e in forward], [e["y"] for e in forward])},
        ledger=evidence,
    )


# -- the loop ---------------------------------------------------------------------------------------
TRIGGER_KINDS = ("schedule", "manual", "drift")


def _iso(t: datetime) -> str:
    return t.astimezone(UTC).isoformat()


class Autopilot:
    """One follower's collaborators and state; `cycle(now)` runs one cycle (see the module docstring)."""

    def __init__(self, app: App, *, policy: RetrainPolicy | None = None, train_config=None,
                 symbols: list[str] | None = None, clock: Callable[[], datetime] = lambda: datetime.now(UTC),
                 train_fn: Callable[..., Any] | None = None, promote: Any = _LAZY,
                 reference: Callable[[Any], tuple[str | None, str]] = reference_run, name: str = "autopilot",
                 promotion_policy: Any = _LAZY, maintain_every: timedelta | None = None):
        from coinline.training.config import load_train_config

        self.app, self.lake, self.clock, self.name = app, app.lake, clock, name
        self.settings = s = app.settings
        self.policy = policy or RetrainPolicy()
        self.cfg = train_config or load_train_config(s.train_config)
        self.symbols = [x.upper() for x in (symbols or s.symbols)] or None
        self.pairs = app.pairs(self.symbols)
        self.interval = s.intervals[0]
        self.train_fn = train_fn
        self.promote = promote
        self.promotion_policy = load_promotion_policy() if promotion_policy is _LAZY else promotion_policy
        self.reference = reference
        self.flight = SingleFlight(self.lake, ttl=timedelta(hours=self.policy.lock_ttl_hours), clock=clock)
        self._hist = None
        self._materialized: tuple[tuple[int, ...], str] | None = None
        self._drift_cache: dict[str, Any] = {}
        self.maintain_every = maintain_every

    # -- steps
    def ingest(self, now: datetime) -> dict[str, Any]:
        from coinline.ingest.backfill import backfill
        from coinline.ingest.sync import sync

        if self._hist is None:
            self._hist = self.app.hist_source()
        lookback = self.settings.reconcile_lookback
        outcomes = sync(self._hist, self.lake, self.pairs, now=now, progress=False, lookback=lookback)
        missing = [(o.symbol, o.quote, o.interval) for o in outcomes if o.status == "needs-backfill"]
        if missing:
            outcomes = [o for o in outcomes if o.status != "needs-backfill"]
            outcomes += backfill(self._hist, self.lake, missing, now=now, progress=False, lookback=lookback)
        return {"inserted": sum(o.inserted for o in outcomes), "revised": sum(o.revised for o in outcomes),
                "backfilled": [f"{s}-{q}:{i}" for s, q, i in missing],
                "series": [o.to_dict() for o in outcomes]}

    def forecast(self, now: datetime) -> dict[str, Any]:
        """The champion and the shadows forecast the newest closed candle into the ledger (a failure is
        reported in the cycle, never stops ingestion)."""
        from coinline.forecasting.service import forecast_cycle

        try:
            out = forecast_cycle(self.lake, cfg=self.cfg, quote="USD", interval=self.interval, source=self._hist_name(),
                                 symbols=self.symbols or self.app.universe.symbols(), now=now)
        except CoinlineError as exc:
            log.warning("autopilot: forecasting failed: %s", exc)
            return {"error": str(exc)}
        out.pop("batches", None)
        return out

    def maintain(self, now: datetime) -> dict[str, Any] | None:
        """Lake maintenance when `maintain_every` has passed since the last (None: not due, or disabled). A
        failure, or another maintainer holding the lease, is reported and never stops the cycle."""
        from coinline.lake.maintain import maintain, summary_rows

        if self.maintain_every is None:
            return None
        last = self.state().get("last_maintenance_at")
        if last is None or now - datetime.fromisoformat(last) < self.maintain_every:
            if last is None:  # the first follower starts the clock: a fresh lake has nothing to compact
                self.lake.write_json(STATE, {**self.state(), "last_maintenance_at": _iso(now)})
            return None
        try:
            record = maintain(self.lake, now=now, clock=self.clock)
        except CoinlineError as exc:
            log.warning("autopilot: lake maintenance failed: %s", exc)
            return {"error": str(exc)}
        self.lake.write_json(STATE, {**self.state(), "last_maintenance_at": _iso(now)})
        return {"record": record["record"], "changed": record["changed"], "tables": summary_rows(record)}

    def materialize(self, now: datetime) -> str:
        """The dataset of the lake as it is now; re-materialized only when the raw / corrections / known-gaps
        tables have a new version since this follower last materialized (same inputs, same dataset)."""
        from coinline.datasets.materialize import DatasetSpec, materialize
        from coinline.lake import tables

        s = self.settings
        raw_version = tuple(tables.open_table(self.lake, t).version() for t in (tables.RAW, tables.CORRECTIONS, tables.GAPS))
        if self._materialized is not None and self._materialized[0] == raw_version:
            return self._materialized[1]
        spec = DatasetSpec(s.training_universe_version, self.interval, self._hist_name(), tuple(s.quotes))
        dataset_id = materialize(self.lake, self.app.universe, spec, gap_tolerance=s.gap_tolerance, now=now).dataset_id
        self._materialized = (raw_version, dataset_id)
        return dataset_id

    def _hist_name(self) -> str:
        if self._hist is None:
            self._hist = self.app.hist_source()
        return self._hist.name

    def state(self) -> dict[str, Any]:
        return self.lake.read_json(STATE) or {}

    def _triggers(self, now: datetime, dataset_id: str, report: dict[str, Any], check: tuple[str, ...],
                  scheduled_externally: bool) -> list[Trigger]:
        state = self.state()
        last = datetime.fromisoformat(state["last_retrain_at"]) if state.get("last_retrain_at") else None
        run_id, basis = self.reference(self.lake)
        report["reference_run"] = {"run_id": run_id, "basis": basis}
        fired: list[Trigger] = []
        if "schedule" in check:
            sched = schedule_status(self.policy.cron, last, now)
            if scheduled_externally:  # a cluster scheduler (Argo CronWorkflow, cron) owns the schedule
                sched = {**sched, "due": True, "by": "external scheduler"}
            report["schedule"] = sched
            if sched["due"]:
                fired.append(record_trigger(self.lake, "schedule", {"schedule": sched, "reference_run": run_id,
                                                                    "dataset_id": dataset_id}, now=now))
        if "manual" in check:
            fired += [Trigger(r["trigger_id"], r["kind"], r["created_at"], r.get("evidence", {}))
                      for r in list_triggers(self.lake, status="pending", kind="manual")]
        if "drift" in check and run_id is not None:
            try:
                drift = compute_drift(self.lake, run_id, dataset_id, self.policy, interval=self.interval, now=now,
                                      cache=self._drift_cache)
            except Exception as exc:  # noqa: BLE001 - recorded; the loop carries on
                log.warning("autopilot: drift against %s failed: %s", run_id, exc)
                report["drift_error"] = f"{type(exc).__name__}: {exc}"
                drift = None
            if drift is not None:
                report["drift"] = {"triggered": drift.triggered, "reasons": list(drift.reasons),
                                   "notes": list(drift.notes), "n_cur": drift.n_cur,
                                   "drifted_features": drift.drifted_features}
                if drift.triggered:
                    fired.append(record_trigger(self.lake, "drift", {"reference_run": run_id, "reference_basis": basis,
                                                                     "dataset_id": dataset_id,
                                                                     "drift": drift.to_dict()}, now=now))
        return fired

    def _cooldown(self, fired: list[Trigger], now: datetime) -> list[Trigger]:
        """Coalesce drift triggers into a retraining that started less than `cooldown_hours` ago."""
        state = self.state()
        last = state.get("last_retrain_at")
        if not last or self.policy.cooldown_hours <= 0:
            return fired
        since = now - datetime.fromisoformat(last)
        if since >= timedelta(hours=self.policy.cooldown_hours):
            return fired
        keep = []
        for t in fired:
            if t.kind == "drift":
                update_trigger(self.lake, t.trigger_id, now=now, status="coalesced",
                               coalesced_into=state.get("last_trigger_id"),
                               reason=f"cooldown: the last retraining ({state.get('last_run_id')}) started at {last}, "
                                      f"less than {self.policy.cooldown_hours}h ago")
            else:
                keep.append(t)
        return keep

    def _retrain(self, lead: Trigger, now: datetime) -> dict[str, Any]:
        """Under the lock: materialize -> train -> promote; returns the outcome recorded on the trigger."""
        if self.train_fn is None:
            from coinline.training.run import train as train_fn
        else:
            train_fn = self.train_fn
        s = self.settings
        dataset_id = self.materialize(now)
        run = train_fn(self.lake, dataset_id, self.cfg, symbols=self.symbols, quote="USD", interval=self.interval,
                       workers=s.train_workers or None)
        outcome: dict[str, Any] = {"run_id": run.run_id, "dataset_id": dataset_id,
                                   "manifest": f"runs/{run.run_id}/manifest.json", "trained_at": _iso(self.clock())}
        promote = self.promote
        why = None
        try:
            if promote is _LAZY:
                promote, why = resolve_promote()
            if promote is None:
                outcome["promotion"] = {"status": "unavailable", "reason": why or "no promote() configured"}
            else:
                result = _jsonable(call_promote(promote, self.lake, run.run_id, now=now, trigger=lead,
                                                dataset_id=dataset_id, policy=self.promotion_policy))
                decision = result.get("decision") if isinstance(result, dict) else None
                outcome["promotion"] = {"status": "called", "result": result,
                                        "decision": decision.get("decision") if isinstance(decision, dict) else None,
                                        "activated": result.get("activated") if isinstance(result, dict) else None}
        except Exception as exc:  # noqa: BLE001 - the run exists; the failed promotion is recorded
            log.warning("autopilot: promotion of %s failed: %s", run.run_id, exc)
            outcome["promotion"] = {"status": "error", "error": f"{type(exc).__name__}: {exc}"}
        self.lake.write_json(STATE, {**self.state(), "last_retrain_at": _iso(now), "last_run_id": run.run_id,
                                     "last_trigger_id": lead.trigger_id, "last_dataset_id": dataset_id,
                                     "last_promotion": outcome["promotion"]})
        return outcome

    def cycle(self, now: datetime | None = None, *, index: int = 0, check: tuple[str, ...] = TRIGGER_KINDS,
              scheduled_externally: bool = False) -> dict[str, Any]:
        """`check`: the trigger kinds evaluated this cycle; `scheduled_externally`: the schedule trigger is due
        because an outside scheduler started this cycle (not by the policy's own cron)."""
        now = (now or self.clock()).astimezone(UTC)
        self.app.now = now
        if self.app.replay is not None:  # the offline venue's market moves with our clock
            self.app.replay.market.set_now(now)
        report: dict[str, Any] = {"cycle": index, "follower": self.name, "now": _iso(now)}
        report["ingest"] = self.ingest(now)
        report["forecast"] = self.forecast(now)
        maintenance = self.maintain(now)
        if maintenance is not None:
            report["maintenance"] = maintenance
        if not self.settings.enable_autonomous_retraining:
            report["retraining"] = "disabled (ENABLE_AUTONOMOUS_RETRAINING=false)"
            return self._write(report, now)
        try:
            dataset_id = self.materialize(now)
        except CoinlineError as exc:
            report["materialize_error"] = str(exc)
            return self._write(report, now)
        report["dataset_id"] = dataset_id
        fired = self._triggers(now, dataset_id, report, check, scheduled_externally)
        report["triggers"] = [t.trigger_id for t in fired]
        fired = self._cooldown(fired, now)
        if fired:
            result = run_single_flight(self.lake, fired, lambda lead: self._retrain(lead, now), flight=self.flight,
                                       clock=self.clock)
            report["retrain"] = {"started": result.started, "leader": result.leader,
                                 "coalesced": list(result.coalesced), "outcome": result.outcome, "error": result.error}
            if result.error:
                log.warning("autopilot: retraining for %s failed: %s", result.leader, result.error)
        return self._write(report, now)

    def _write(self, report: dict[str, Any], now: datetime) -> dict[str, Any]:
        self.lake.write_json(f"{CYCLES_DIR}/{now:%Y%m%dT%H%M%S}Z-{self.name}.json", report)
        return report


def retrain_once(app: App, trigger: str, *, now: datetime,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC), policy: RetrainPolicy | None = None,
                 promotion_policy: Any = _LAZY, train_fn: Callable[..., Any] | None = None,
                 promote: Any = _LAZY, reference: Callable[[Any], tuple[str | None, str]] = reference_run
                 ) -> dict[str, Any]:
    """One cycle started by a cluster scheduler (`coinline retrain --trigger ...`): ingest newly closed
    candles, materialize, then `schedule` retrains and promotes now; `drift` retrains only when drift
    against the active (or latest) run fires. The single-flight lock and the cooldown apply as in
    `follow`, and the cycle is recorded like a follower's."""
    if trigger not in ("schedule", "drift"):
        raise ConfigError(f"--trigger {trigger!r}: expected schedule or drift")
    pilot = Autopilot(app, policy=policy, train_fn=train_fn, promote=promote, promotion_policy=promotion_policy,
                      clock=clock, reference=reference, name=f"retrain-{trigger}")
    require_policy_approvals(app, pilot.policy, now=now, promotion_policy=pilot.promotion_policy)
    return pilot.cycle(now, check=(trigger,), scheduled_externally=trigger == "schedule")


def follow(app: App, *, clock: Callable[[], datetime] = lambda: datetime.now(UTC),
           sleep: Callable[[float], None] = time.sleep, max_cycles: int | None = None,
           policy: RetrainPolicy | None = None, train_config=None, symbols: list[str] | None = None,
           train_fn: Callable[..., Any] | None = None, promote: Any = _LAZY,
           reference: Callable[[Any], tuple[str | None, str]] = reference_run, grace_s: float = 5.0,
           promotion_policy: Any = _LAZY, maintain_every: timedelta | None = MAINTAIN_EVERY,
           on_cycle: Callable[[dict[str, Any]], None] | None = None) -> list[dict[str, Any]]:
    """Run cycles until `max_cycles` (None: forever); returns the cycle reports. Refuses to start when
    ENABLE_CONTINUOUS_INGESTION is false or a governed policy changed without approval. `maintain_every`:
    lake maintenance cadence (None: never; a cluster's maintain CronWorkflow may own it instead)."""
    from coinline.ingest.backfill import next_close

    if not app.settings.enable_continuous_ingestion:
        raise ConfigError("ENABLE_CONTINUOUS_INGESTION=false: refusing to follow")
    pilot = Autopilot(app, policy=policy, train_config=train_config, symbols=symbols, clock=clock,
                      train_fn=train_fn, promote=promote, reference=reference, promotion_policy=promotion_policy,
                      maintain_every=maintain_every)
    require_policy_approvals(app, pilot.policy, now=clock(), promotion_policy=pilot.promotion_policy)
    reports: list[dict[str, Any]] = []
    while max_cycles is None or len(reports) < max_cycles:
        now = clock()
        try:
            report = pilot.cycle(now, index=len(reports) + 1)
        except ConfigError:
            raise
        except Exception as exc:  # noqa: BLE001 - an autonomous loop logs, records and carries on
            log.exception("autopilot: cycle %d failed", len(reports) + 1)
            report = pilot._write({"cycle": len(reports) + 1, "follower": pilot.name, "now": _iso(now),
                                   "error": f"{type(exc).__name__}: {exc}"}, now)
        reports.append(report)
        if on_cycle:
            on_cycle(report)
        if max_cycles is not None and len(reports) >= max_cycles:
            break
        now = clock()
        wake = next_close(now, pilot.interval)
        sleep(max(0.0, (wake - now).total_seconds()) + grace_s)
    return reports


def summary_line(report: Mapping[str, Any]) -> str:
    """One line per cycle for the console."""
    parts = [f"cycle {report.get('cycle')} {report.get('now')}: +{report.get('ingest', {}).get('inserted', 0)} candles"]
    fc = report.get("forecast") or {}
    if fc.get("sets"):
        parts.append("forecasts " + ", ".join(f"{s['model_set']} ({s['role']}) +{s['inserted']}" for s in fc["sets"]))
    elif fc.get("error"):
        parts.append(f"forecast error: {fc['error'][:200]}")
    if "dataset_id" in report:
        parts.append(f"dataset {report['dataset_id']}")
    maintenance = report.get("maintenance") or {}
    if maintenance:
        parts.append(f"lake maintenance failed: {maintenance['error'][:200]}" if "error" in maintenance
                     else f"lake maintained ({maintenance['record']})")
    if report.get("triggers"):
        parts.append(f"triggers {', '.join(report['triggers'])}")
    retrain = report.get("retrain")
    if retrain:
        if retrain.get("started") and retrain.get("outcome"):
            o = retrain["outcome"]
            promo = o.get("promotion", {})
            parts.append(f"retrained {o['run_id']} (promotion: {promo.get('decision') or promo.get('status')})")
        elif retrain.get("error"):
            parts.append(f"retraining failed: {retrain['error'][:200]}")
        else:
            parts.append(f"coalesced into {retrain.get('leader')}")
    for key in ("error", "materialize_error", "drift_error", "retraining"):
        if key in report:
            parts.append(f"{key}: {str(report[key])[:200]}")
    return "; ".join(parts)


__all__ = ["Autopilot", "RetrainPolicy", "active_run_from_registry", "call_promote", "compute_drift", "follow",
           "load_promotion_policy", "load_retrain_policy", "policy_values", "reference_run", "require_policy_approvals",
           "require_promotion_policy", "resolve_promote",
           "summary_line"]
