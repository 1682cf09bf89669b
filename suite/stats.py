"""Normalised scores and aggregates over seeds: mean, standard deviation, interquartile mean (IQM), and
percentile-bootstrap confidence intervals with an explicit seed (so a table is reproducible)."""

from __future__ import annotations

import numpy as np


def normalized_score(ret: float, ref_min: float, ref_max: float) -> float:
    return 100.0 * (ret - ref_min) / (ref_max - ref_min)


def iqm(x) -> float:
    """Mean of the middle 50% (scipy's trim_mean with 25% cut each side)."""
    from scipy.stats import trim_mean

    return float(trim_mean(np.asarray(x, dtype=float), 0.25))


def bootstrap_ci(x, stat=np.mean, *, n_boot: int = 2000, level: float = 0.95, seed: int = 0) -> tuple[float, float]:
    x = np.asarray(x, dtype=float)
    if len(x) < 2:
        return (float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(x), size=(n_boot, len(x)))
    stats = np.array([stat(x[i]) for i in idx])
    lo, hi = np.quantile(stats, [(1 - level) / 2, 1 - (1 - level) / 2])
    return float(lo), float(hi)


def summarize(x) -> dict[str, float]:
    x = np.asarray(x, dtype=float)
    return {
        "n": int(len(x)),
        "mean": float(x.mean()) if len(x) else float("nan"),
        "std": float(x.std(ddof=1)) if len(x) > 1 else 0.0,
        "iqm": iqm(x) if len(x) else float("nan"),
    }
