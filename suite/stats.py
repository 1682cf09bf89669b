"""Aggregates over seeds and tasks, after rliable (Agarwal et al., "Deep RL at the Edge of the Statistical
Precipice", NeurIPS 2021): mean, standard deviation, interquartile mean (IQM), percentile-bootstrap 95%
confidence intervals (``scipy.stats.bootstrap``, with an explicit seed so a table is reproducible), and the
aggregate IQM across tasks with a *stratified* bootstrap (runs resampled within each task)."""

from __future__ import annotations

import numpy as np

MIN_SEEDS = 3  # fewer seeds than this: the value is shown, marked, and its CI is not trusted


def iqm(x, axis=None) -> float | np.ndarray:
    """Mean of the middle 50% (scipy's trim_mean with 25% cut each side)."""
    from scipy.stats import trim_mean

    return trim_mean(np.asarray(x, dtype=float), 0.25, axis=axis)


def bootstrap_ci(x, stat: str = "mean", *, n_resamples: int = 2000, level: float = 0.95,
                 seed: int = 0) -> tuple[float, float]:
    """Percentile-bootstrap CI of the mean or IQM of ``x`` (NaNs for fewer than 2 values; a constant sample's CI
    is its value)."""
    from scipy.stats import bootstrap

    x = np.asarray(x, dtype=float)
    if len(x) < 2:
        return (float("nan"), float("nan"))
    if np.all(x == x[0]):
        return (float(x[0]), float(x[0]))
    fn = np.mean if stat == "mean" else iqm
    res = bootstrap((x,), lambda s, axis: fn(s, axis=axis), n_resamples=n_resamples, confidence_level=level,
                    method="percentile", random_state=np.random.default_rng(seed))
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def aggregate_iqm(scores_by_task: dict[str, list[float]], *, n_resamples: int = 2000, level: float = 0.95,
                  seed: int = 0) -> dict[str, float]:
    """IQM over every (task, seed) score pooled, with a stratified bootstrap CI: each task's runs are
    resampled separately (scipy's bootstrap over one sample per task, ``paired=False``)."""
    from scipy.stats import bootstrap

    samples = [np.asarray(v, dtype=float) for v in scores_by_task.values() if len(v)]
    if not samples:
        return {"iqm": float("nan"), "ci_low": float("nan"), "ci_high": float("nan"), "n_runs": 0, "n_tasks": 0}
    pooled = np.concatenate(samples)
    out = {"iqm": float(iqm(pooled)), "n_runs": int(len(pooled)), "n_tasks": len(samples)}
    if all(len(s) < 2 for s in samples) or np.all(pooled == pooled[0]):
        out.update(ci_low=float("nan"), ci_high=float("nan"))
        return out

    varied = [s for s in samples if len(s) > 1]
    fixed = np.concatenate([s for s in samples if len(s) == 1] or [np.empty(0)])  # one seed: nothing to resample

    def stat(*xs, axis=-1):
        parts = list(xs)
        if fixed.size:
            parts.append(np.broadcast_to(fixed, xs[0].shape[:-1] + fixed.shape))
        return iqm(np.concatenate(parts, axis=-1), axis=-1)

    res = bootstrap(tuple(varied), stat, n_resamples=n_resamples, confidence_level=level, method="percentile",
                    paired=False, random_state=np.random.default_rng(seed))
    out.update(ci_low=float(res.confidence_interval.low), ci_high=float(res.confidence_interval.high))
    return out


def summarize(x) -> dict[str, float]:
    """n, mean, std (ddof 1), IQM and the mean's bootstrap 95% CI."""
    x = np.asarray(x, dtype=float)
    lo, hi = bootstrap_ci(x) if len(x) > 1 else (float("nan"), float("nan"))
    return {
        "n": int(len(x)),
        "mean": float(x.mean()) if len(x) else float("nan"),
        "std": float(x.std(ddof=1)) if len(x) > 1 else 0.0,
        "iqm": float(iqm(x)) if len(x) else float("nan"),
        "ci_low": lo,
        "ci_high": hi,
    }
