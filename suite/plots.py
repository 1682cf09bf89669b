"""Plots from run records (matplotlib): learning curves per task (mean over seeds with a bootstrap 95% CI band)
and the aggregate IQM per method with its stratified-bootstrap CI. The sampler studies draw their own
quality-against-NFE plots (``suite/study_*.py``); sample grids are PNGs written by the runs.

    python -m suite plot --runs leaderboards/runs --out site/plots
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .leaderboard import aggregate_rows, data_label, latest_per_seed, table_rows, trusted
from .results import iter_records
from .stats import bootstrap_ci


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_panels(fig, axes, png: str | Path) -> Path:
    """Finish a grid of study panels (legend in the first, tight layout) and write it as PNG (the DMCMC and MRS
    studies' figures)."""
    axes[0][0].legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    _plt().close(fig)
    return Path(png)


def learning_curves(records, out: str | Path) -> list[Path]:
    """One PNG per task: normalised score against updates, one line per method (mean over its seeds) with
    a percentile-bootstrap 95% CI band where at least two seeds evaluated at that update."""
    plt = _plt()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    by_task: dict[str, dict[str, list]] = {}
    for (method, task, data), seeds in latest_per_seed(records).items():
        runs = [r for r in seeds.values() if r.status == "ok" and trusted(r) and r.curve
                and r.curve[0].normalized_score is not None]
        if runs:
            by_task.setdefault(task, {})[method + data_label(data)] = runs
    made = []
    for task, methods in sorted(by_task.items()):
        fig, ax = plt.subplots(figsize=(6, 4))
        for method, runs in sorted(methods.items()):
            steps = sorted({p.step for r in runs for p in r.curve})
            mean, lo, hi = [], [], []
            for s in steps:
                vals = [p.normalized_score for r in runs for p in r.curve if p.step == s]
                mean.append(float(np.mean(vals)))
                a, b = bootstrap_ci(vals) if len(vals) > 1 else (np.nan, np.nan)
                lo.append(a)
                hi.append(b)
            line, = ax.plot(steps, mean, label=f"{method} (n={len(runs)})")
            ax.fill_between(steps, lo, hi, color=line.get_color(), alpha=0.2, linewidth=0)
        ax.set_xlabel("updates")
        ax.set_ylabel("normalised score")
        ax.set_title(task, fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        fig.tight_layout()
        p = out / f"curve_{task.replace('/', '_')}.png"
        fig.savefig(p, dpi=100)
        plt.close(fig)
        made.append(p)
    return made


def aggregate_plot(records, out: str | Path) -> Path | None:
    """IQM over tasks per method with the stratified-bootstrap 95% CI (methods with scores on >= 2 tasks)."""
    plt = _plt()
    agg = aggregate_rows(table_rows(records))
    if not agg:
        return None
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(6, 0.5 + 0.45 * len(agg)))
    ys = np.arange(len(agg))
    iqms = [a["iqm"] for a in agg]
    err = np.array([[a["iqm"] - a["ci_low"], a["ci_high"] - a["iqm"]] if a["ci_low"] == a["ci_low"] else [0, 0]
                    for a in agg]).T
    ax.errorbar(iqms, ys, xerr=err, fmt="o", capsize=4)
    ax.set_yticks(ys, [f"{a['method']}, {a['group']} ({a['n_runs']} runs, {a['n_tasks']} tasks)" for a in agg],
                  fontsize=8)
    ax.set_xlabel("IQM of normalised scores (95% CI, stratified bootstrap)")
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    p = out / "aggregate_iqm.png"
    fig.savefig(p, dpi=100)
    plt.close(fig)
    return p


def plot_runs(runs_dir: str | Path, out: str | Path) -> list[Path]:
    records = [r for _, r in iter_records(runs_dir)]
    made = learning_curves(records, out)
    agg = aggregate_plot(records, out)
    return made + ([agg] if agg else [])
