"""One coin's share of a training run: every base family on every walk-forward fold and horizon, the
out-of-fold predictions they produce, the stacked ensemble over them, and the coin's metric package.

Out-of-fold, concretely: for fold k the base models are fitted on the fold's training rows (calibrated on
its calibration slice) and predict ONLY fold k's test rows, which lie after an embargo of at least the
longest horizon. Concatenating the test-row predictions of all folds gives one out-of-sample prediction per
test row. The meta-learner for fold k is then fitted on the out-of-fold predictions of folds < k only
(`walk_forward_stack`), so no prediction ever uses a label it is scored against. Which combiner fold k
serves (base rate, mean, one member or the stack) is chosen across coins: `stack_selection` gives this
coin's per-row selection losses, `models.stacking.pooled_choice` pools them over the run's coins, and
`finish_coin(..., pooled=...)` serves the pooled choice (the stack itself is fitted on this coin's rows).
Every other horizon gets the same treatment without the stack and without regime gating (its candidates:
base rate, mean, each tree member), because an unconditional mean of trees that overfit overlapping
long-horizon labels served worse than the base rate there.

Pure function of its inputs (frame, config, tuned parameters, seeds): a Ray task runs it unchanged.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from coinline.evaluation.baselines import baseline_probabilities, chance_test, skill_scores
from coinline.evaluation.metrics import classification_metrics
from coinline.evaluation.risk import RiskModelError, loghar_fit
from coinline.features.frame import CoinFrame, valid_rows
from coinline.models.base import derive_seed
from coinline.models.sequence import make_sequence_model
from coinline.models.stacking import stack_selection, walk_forward_stack
from coinline.models.trees import make_tree_model
from coinline.training.config import TrainConfig
from coinline.training.folds import Fold, folds_for, folds_to_dict

TREES = ("xgboost", "lightgbm", "random_forest")
SEQUENCES = ("lstm", "transformer")


@dataclass
class CoinResult:
    symbol: str
    folds: dict[str, Any]
    test_ends: list[int] = field(default_factory=list)                 # last test row time (ms) per fold
    # predictions[h][family] = p over the coin's OOS rows (row order = `oos_rows[h]`)
    oos_rows: dict[int, np.ndarray] = field(default_factory=dict)
    oos_fold: dict[int, np.ndarray] = field(default_factory=dict)
    predictions: dict[int, dict[str, np.ndarray]] = field(default_factory=dict)
    extras: dict[int, dict[str, dict[str, np.ndarray]]] = field(default_factory=dict)
    ensemble: dict[str, np.ndarray] = field(default_factory=dict)      # primary horizon: p, confidence
    stacking_weights: list[dict[str, Any]] = field(default_factory=list)
    metrics: dict[str, Any] = field(default_factory=dict)
    base_rate: dict[int, np.ndarray] = field(default_factory=dict)       # base-rate P(up) on OOS rows
    in_sample: dict[str, Any] = field(default_factory=dict)
    model_hashes: dict[str, str] = field(default_factory=dict)          # "fold/h/family" -> sha256
    final_models: dict[str, bytes] = field(default_factory=dict)        # last fold's models, "h/family"
    final_meta: bytes = b""                                             # last fold's stacking meta-learner
    # every horizon other than the primary: the served combiner (base rate, mean or one member, chosen per
    # fold pooled over the coins): its OOS {"p", "confidence"} (row order `oos_rows[h]`), each fold's record
    # (as `stacking_weights`) and the last fold's meta-learner (what serving loads)
    horizon_ensemble: dict[int, dict[str, np.ndarray]] = field(default_factory=dict)
    horizon_weights: dict[int, dict[Any, dict[str, Any]]] = field(default_factory=dict)
    horizon_meta: dict[int, bytes] = field(default_factory=dict)
    # what serving needs beside the models, per horizon, fitted on the last fold's train + calib rows:
    # {"base_rate", "momentum" ({"-1", "0", "1"} -> P(up)), "risk_scale" (mean |ret| / (vol sqrt h)), "rows",
    #  "risk_head" (LogHARModel.to_dict(), or None with "risk_head_error")}
    serving: dict[int, dict[str, Any]] = field(default_factory=dict)

    def served_p(self, h: int, primary_horizon: int) -> np.ndarray | None:
        """OOS P(up) of the combiner served at horizon h (row order `oos_rows[h]`): the stacked ensemble at
        the primary horizon, the chosen combiner elsewhere; None before the ensemble step (or without it)."""
        if h == primary_horizon:
            return self.ensemble.get("p")
        return self.horizon_ensemble.get(h, {}).get("p")


def coin_folds(frame: CoinFrame, cfg: TrainConfig) -> list[Fold]:
    return folds_for(frame.times, cfg)


def _families_for(h: int, cfg: TrainConfig) -> tuple[str, ...]:
    """Trees on every horizon; sequence nets on the primary horizon (their cost dominates on CPU)."""
    return tuple(fam for fam in cfg.families if fam in TREES or h == cfg.primary_horizon)


def _model(family: str, cfg: TrainConfig, tuned: dict[str, dict]):
    if family in TREES:
        return make_tree_model(family, tuned.get(family))
    return make_sequence_model(family, cfg.sequence)


def train_coin(frame: CoinFrame, cfg: TrainConfig, tuned: dict[str, dict], regime_post: np.ndarray) -> CoinResult:
    """The whole coin alone: specialists, then the stacked ensemble (combiner chosen on this coin's inner
    validation only) and the metric package. A training run pools the choice across coins instead
    (`training.run.finish_coins`).
    `regime_post`: (rows, 4) out-of-sample regime posteriors aligned with frame rows (NaN where none)."""
    return finish_coin(frame, cfg, train_specialists(frame, cfg, tuned), regime_post)


def finish_coin(frame: CoinFrame, cfg: TrainConfig, result: CoinResult, regime_post: np.ndarray,
                pooled: dict[int, dict[int, dict[str, Any]]] | None = None) -> CoinResult:
    """Stack the specialists' out-of-fold predictions (gated by the regime posteriors) and compute the coin's
    metric package. Needs the global regime model's posteriors, so it runs after both are trained.
    Every horizon gets its combiner (`_stack`; regime gating and the stack at the primary horizon only).
    `pooled`: per horizon this coin's entry of `pooled_choice` ({h: {fold: {"choice", "n", "coins",
    "selection", "tests"}}}), the combiner each fold serves; None (or a horizon absent): the coin's own choice."""
    for h in cfg.horizons:
        _stack(frame, cfg, result, regime_post, h, (pooled or {}).get(h))
    result.metrics, result.base_rate = coin_metrics(frame, cfg, result)
    return result


def train_specialists(frame: CoinFrame, cfg: TrainConfig, tuned: dict[str, dict]) -> CoinResult:
    """Every base family on every walk-forward fold and horizon: out-of-fold predictions, in-sample
    reference scores, fold model hashes and the last fold's models. No ensemble yet."""
    folds = coin_folds(frame, cfg)
    result = CoinResult(frame.symbol, folds_to_dict(folds), [int(f.test_end) for f in folds])
    for h in cfg.horizons:
        usable = set(valid_rows(frame, h).tolist())
        targets = frame.targets[h]
        fams = _families_for(h, cfg)
        rows, fold_ids = [], []
        final_rows = None
        preds: dict[str, list[np.ndarray]] = {fam: [] for fam in fams}
        extras: dict[str, dict[str, list[np.ndarray]]] = {fam: {} for fam in fams}
        ins: dict[str, list[float]] = {fam: [] for fam in fams}
        for fold in folds:
            tr = np.array([i for i in fold.train_idx if i in usable], dtype=np.int64)
            ca = np.array([i for i in fold.calib_idx if i in usable], dtype=np.int64)
            te = np.array([i for i in fold.test_idx if i in usable], dtype=np.int64)
            if len(te) == 0 or len(tr) == 0 or len(ca) == 0:
                continue
            rows.append(te)
            fold_ids.append(np.full(len(te), fold.index))
            for fam in fams:
                model = _model(fam, cfg, tuned)
                model.fit(frame.F, targets, train_idx=tr, calib_idx=ca,
                          seed=derive_seed(cfg.seed, frame.symbol, fam, fold.index, h))
                preds[fam].append(model.predict_proba(frame.F, te))
                for name, values in model.predict_extra(frame.F, te).items():
                    extras[fam].setdefault(name, []).append(values)
                blob = model.to_bytes()
                result.model_hashes[f"{fold.index}/{h}/{fam}"] = hashlib.sha256(blob).hexdigest()
                if fold is folds[-1]:
                    result.final_models[f"{h}/{fam}"] = blob
                    final_rows = np.union1d(tr, ca)
                tr_tail = tr[-cfg.in_sample_rows:]
                p_in = model.predict_proba(frame.F, tr_tail)
                ins[fam].append(float(classification_metrics(targets["dir"][tr_tail].astype(int), p_in)["log_loss"]))
        if not rows:
            continue
        if final_rows is not None:
            result.serving[h] = serving_stats(frame, h, final_rows)
        result.oos_rows[h] = np.concatenate(rows)
        result.oos_fold[h] = np.concatenate(fold_ids)
        result.predictions[h] = {fam: np.concatenate(v) for fam, v in preds.items()}
        result.extras[h] = {fam: {k: np.concatenate(v) for k, v in ex.items()} for fam, ex in extras.items()}
        result.in_sample[str(h)] = {fam: {"log_loss_mean_over_folds": float(np.mean(v)), "evidence": False}
                                    for fam, v in ins.items() if v}
    return result


def serving_stats(frame: CoinFrame, h: int, rows: np.ndarray) -> dict[str, Any]:
    """Climatology, the momentum baseline's table, the risk scale and the served risk head on `rows` (the
    deployable models' own fitting window): the baselines a live forecast is judged against and the risk
    it serves, fixed before any outcome."""
    targets = frame.targets[h]
    y = targets["dir"][rows].astype(int)
    mom = frame.column("ret_short")[rows] if "ret_short" in frame.feature_names else np.zeros(len(rows))
    table = baseline_probabilities(y, np.array([-1.0, 0.0, 1.0]), 3, momentum_train_ret=mom)["momentum"]
    return {"base_rate": float(np.mean(y)), "momentum": {"-1": float(table[0]), "0": float(table[1]),
                                                         "1": float(table[2])},
            "risk_scale": float(np.mean(targets["risk"][rows])), "rows": int(len(rows)),
            **risk_head(frame, h, rows)}


def risk_head(frame: CoinFrame, h: int, rows: np.ndarray) -> dict[str, Any]:
    """{"risk_head": the log-HAR variance model (`evaluation.risk.loghar_fit`, as a dict) fitted on `rows`},
    the head `forecasting.predict` serves; {"risk_head": None, "risk_head_error": why} when it cannot be
    fitted (no `ret_1` column, too few rows), and serving then keeps the trailing-volatility construction."""
    if "ret_1" not in frame.feature_names:
        return {"risk_head": None, "risk_head_error": f"{frame.symbol}: the frame has no ret_1 column"}
    try:
        return {"risk_head": loghar_fit(frame.column("ret_1"), rows, h).to_dict()}
    except RiskModelError as exc:
        return {"risk_head": None, "risk_head_error": f"{frame.symbol}: {exc}"}


def _stack_inputs(frame: CoinFrame, cfg: TrainConfig, result: CoinResult, regime_post: np.ndarray, h: int
                  ) -> tuple[tuple, dict[str, Any]] | None:
    """(positional, keyword) arguments of `walk_forward_stack` / `stack_selection` for this coin at horizon
    h; None when the coin has no predictions there. Regime posteriors and the warm-up (fold 0's combiner
    learned on its calibration slice) at the primary horizon only: elsewhere no stack is a candidate, so
    nothing gates, and a warm-up would favour the members (their calibration maps were fitted on those very
    labels; with overlapping h-bar labels that few rows hold few independent outcomes, so the optimism is
    large), so a fold without realized earlier-fold rows serves the base rate (`stacking_params`)."""
    if h not in result.predictions:
        return None
    primary = h == cfg.primary_horizon
    fams = tuple(sorted(result.predictions[h]))
    rows = result.oos_rows[h]
    base = np.column_stack([result.predictions[h][f] for f in fams])
    post = np.nan_to_num(regime_post[rows], nan=0.25) if primary else None
    targets = frame.targets[h]["dir"]
    y = targets[rows].astype(int)
    # a label is known once the bar h ahead has closed: the meta-learner of fold k may only learn from
    # earlier-fold rows whose labels were known before fold k's first row (embargo at fold boundaries)
    step = int(np.median(np.diff(frame.times))) if len(frame.times) > 1 else 0
    delay = (h + 1) * step
    row_time = frame.times[rows]
    # no warm-up on the calibration slice, at any horizon: the members' calibration maps were fitted on
    # those very labels, so members look better there than they are (measured on random walks: fold 0 chose
    # member:lightgbm at h=4, 0.7115 out of sample against the base rate's 0.6937); fold 0 serves the base rate
    warmup = None
    labelled = valid_rows(frame, h)   # the base-rate candidate: every label realized before the fold
    climatology = (frame.times[labelled] + delay, targets[labelled].astype(float))
    seed = derive_seed(cfg.seed, frame.symbol, "stack", *(() if primary else (h,)))
    args = (result.oos_fold[h], base, post, y, fams, seed)
    kwargs = {"row_time": row_time, "label_time": row_time + delay, "warmup": warmup,
              "climatology": climatology,
              "params": stacking_params(cfg, h)}
    return args, kwargs


def stacking_params(cfg: TrainConfig, h: int | None = None) -> dict[str, Any]:
    """The meta-learner's parameters in a run at horizon h (default: the primary): L2 strength
    cfg.stacking_c; a more complex combiner must win by max(cfg.ensemble_tolerance, 2 standard errors), the
    errors from blocks of max(24, 2h) bars (overlapping h-bar labels make neighbouring rows dependent; at the
    primary horizon this is the block of the run's pooled skill test). Off the primary horizon the stack is
    no candidate (`stack: False`). At every horizon a fold without enough realized meta rows (fold 0) serves
    the base rate, not the mean (`fallback: "base_rate"`): with no evidence the rule's simplest candidate."""
    h = cfg.primary_horizon if h is None else h
    return {"C": cfg.stacking_c, "select_margin": cfg.ensemble_tolerance, "select_block": max(24, 2 * h),
            "fallback": "base_rate", **({} if h == cfg.primary_horizon else {"stack": False})}


def stacking_record(frame: CoinFrame, cfg: TrainConfig, result: CoinResult,
                    regime_post: np.ndarray, h: int | None = None) -> dict[int, dict[str, Any]]:
    """Pass 1 of the pooled combiner choice at horizon h (default: the primary): this coin's per-fold
    selection losses of every candidate (`models.stacking.stack_selection`); {} when the coin has no
    predictions at h."""
    inputs = _stack_inputs(frame, cfg, result, regime_post, cfg.primary_horizon if h is None else h)
    return {} if inputs is None else stack_selection(*inputs[0], **inputs[1])


def _stack(frame: CoinFrame, cfg: TrainConfig, result: CoinResult, regime_post: np.ndarray, h: int,
           pooled: dict[int, dict[str, Any]] | None = None) -> None:
    """The combiner of every fold at horizon h (walk-forward, the pooled choice when given) and its OOS
    predictions, kept in `ensemble` / `stacking_weights` / `final_meta` at the primary horizon and in
    `horizon_ensemble` / `horizon_weights` / `horizon_meta` elsewhere."""
    inputs = _stack_inputs(frame, cfg, result, regime_post, h)
    if inputs is None:
        return
    metas: list = []
    choices = None if pooled is None else {k: v["choice"] for k, v in pooled.items()}
    p, conf, weights = walk_forward_stack(*inputs[0], **inputs[1], models=metas, choices=choices)
    for k, v in (pooled or {}).items():
        if k in weights:
            weights[k]["pooled"] = {"n": v["n"], "coins": v["coins"], "selection": v["selection"],
                                    "tests": v["tests"]}
    blob = metas[-1].to_bytes() if metas else b""
    if h == cfg.primary_horizon:
        result.ensemble, result.stacking_weights, result.final_meta = {"p": p, "confidence": conf}, weights, blob
    else:
        result.horizon_ensemble[h] = {"p": p, "confidence": conf}
        result.horizon_weights[h] = weights
        result.horizon_meta[h] = blob


def coin_metrics(frame: CoinFrame, cfg: TrainConfig, result: CoinResult) -> tuple[dict[str, Any], dict]:
    """Per horizon x model (+ "ensemble", the served combiner, at every horizon that has one): OOS metrics,
    baselines, skill, chance test."""
    out: dict[str, Any] = {}
    base_rate: dict[int, np.ndarray] = {}
    for h, fam_preds in result.predictions.items():
        rows = result.oos_rows[h]
        y = frame.targets[h]["dir"][rows].astype(int)
        first_test = rows.min()
        train_rows = valid_rows(frame, h)
        train_rows = train_rows[train_rows < first_test - h]
        mom = frame.F[:, frame.feature_names.index("ret_short")] if "ret_short" in frame.feature_names else None
        base = baseline_probabilities(frame.targets[h]["dir"][train_rows].astype(int),
                                      mom[rows] if mom is not None else np.zeros(len(rows)),
                                      len(rows), momentum_train_ret=mom[train_rows] if mom is not None else None)
        base_rate[h] = base["base_rate"]
        base_metrics = {name: classification_metrics(y, p) for name, p in base.items()}
        models = dict(fam_preds)
        served = result.served_p(h, cfg.primary_horizon)
        if served is not None:
            models["ensemble"] = served
        per_model = {}
        for name, p in models.items():
            m = classification_metrics(y, p)
            per_model[name] = {
                "oos": m,
                "skill": skill_scores(m, base_metrics),
                "chance_vs_base_rate": chance_test(y, p, base["base_rate"], n_boot=300,
                                                   seed=derive_seed(cfg.seed, frame.symbol, name, h, "chance")),
            }
        out[str(h)] = {"n_oos": int(len(rows)), "baselines": base_metrics, "models": per_model}
    return out, base_rate
