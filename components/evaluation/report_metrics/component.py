"""report_metrics: turn a run's metrics.json into KFP visualizations: scalar Metrics (pooled
out-of-sample skill per horizon and model, the trading simulation) and a Markdown report (the same plus
the per-coin table of `coinline.training.summary.summary_rows`). Reads only its input artifact."""

from kfp import dsl
from kfp.dsl import Artifact, Input, Markdown, Metrics, Output

from components.image import COINLINE_IMAGE


@dsl.component(base_image=COINLINE_IMAGE, packages_to_install=[], install_kfp_package=False)
def report_metrics(
    run_metrics: Input[Artifact],
    metrics: Output[Metrics],
    report: Output[Markdown],
) -> bool:
    """Returns whether any model showed significant out-of-sample skill over the base rate."""
    import json

    from coinline.training.summary import summary_rows

    with open(run_metrics.path) as f:
        m = json.load(f)
    skill = m.get("skill", {})
    sim = m.get("simulation", {})
    by_model = [v for _k, v in sorted(skill.get("by_model", {}).items())]
    for v in by_model:
        name = f"h{v['horizon']}_{v['model']}"
        for key in ("log_loss", "accuracy", "brier"):
            if v["oos"].get(key) is not None:
                metrics.log_metric(f"{name}_oos_{key}", float(v["oos"][key]))
        if v.get("base_rate", {}).get("log_loss") is not None:
            metrics.log_metric(f"{name}_base_log_loss", float(v["base_rate"]["log_loss"]))
    for key in ("total_return", "sharpe", "max_drawdown", "turnover", "hit_rate", "n_trades"):
        if isinstance(sim.get(key), int | float) and not isinstance(sim.get(key), bool):
            metrics.log_metric(f"simulation_{key}", float(sim[key]))

    def table(rows):
        if not rows:
            return "(none)\n"
        cols = list(rows[0])
        lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
        lines += ["| " + " | ".join("" if r[c] is None else str(r[c]) for c in cols) + " |" for r in rows]
        return "\n".join(lines) + "\n"

    def fmt(x):
        return "" if x is None else f"{x:.4f}"

    skill_rows = [{"horizon": v["horizon"], "model": v["model"], "n": v["oos"].get("n"),
                   "oos_logloss": fmt(v["oos"].get("log_loss")), "base_logloss": fmt(v["base_rate"].get("log_loss")),
                   "oos_acc": fmt(v["oos"].get("accuracy")), "p_holm": fmt(v.get("p_value_holm")),
                   "significant": "yes" if v.get("significant") else "no"} for v in by_model]
    sim_rows = [{"measure": k, "value": sim[k]} for k in ("total_return", "sharpe", "max_drawdown", "turnover",
                                                          "n_trades", "within_limits") if k in sim]
    text = (f"# Training run {m.get('run_id')}\n\n"
            f"- dataset: `{m.get('dataset_id')}` (hash `{str(m.get('dataset_hash'))[:16]}`)\n"
            f"- config hash: `{str(m.get('config_hash'))[:16]}`, seed {m.get('seed')}, "
            f"primary horizon {m.get('primary_horizon')} bars\n"
            f"- symbols: {', '.join(m.get('symbols', []))}\n\n"
            f"## Pooled out-of-sample skill vs the base rate (Holm-corrected)\n\n{table(skill_rows)}\n"
            f"## Simulation (ensemble, out-of-sample, after costs)\n\n{table(sim_rows)}\n"
            f"## Per coin\n\n{table(summary_rows(m))}\n"
            f"_{m.get('evidence_note', '')}_\n")
    with open(report.path, "w") as f:
        f.write(text)
    return bool(skill.get("any_significant", False))
