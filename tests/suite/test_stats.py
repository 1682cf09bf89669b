"""Aggregates: IQM, scipy bootstrap CIs (reproducible), the stratified aggregate IQM across tasks."""

import numpy as np
import pytest

from suite.stats import aggregate_iqm, bootstrap_ci, iqm, summarize


def test_iqm_is_the_mean_of_the_middle_half():
    assert iqm([0, 1, 2, 3, 4, 5, 6, 100]) == pytest.approx(np.mean([2, 3, 4, 5]))


def test_bootstrap_ci_covers_the_mean_is_reproducible_and_shrinks_with_n():
    rng = np.random.default_rng(0)
    small, large = rng.normal(50, 10, 5), rng.normal(50, 10, 200)
    lo, hi = bootstrap_ci(small, seed=3)
    assert lo < small.mean() < hi and (lo, hi) == bootstrap_ci(small, seed=3)
    lo2, hi2 = bootstrap_ci(large, seed=3)
    assert hi2 - lo2 < 0.5 * (hi - lo) and lo2 < 50 < hi2
    assert all(np.isnan(bootstrap_ci([1.0])))
    s = summarize(small)
    assert s["n"] == 5 and s["ci_low"] < s["mean"] < s["ci_high"]


def test_stratified_aggregate_resamples_within_tasks():
    tasks = {"a": [10.0, 11.0, 12.0, 13.0], "b": [80.0, 81.0, 82.0, 83.0]}
    agg = aggregate_iqm(tasks, seed=0)
    assert agg["iqm"] == pytest.approx(iqm(tasks["a"] + tasks["b"])) and agg["n_tasks"] == 2
    # stratified: every resample keeps 4 runs of each task, so the IQM (middle 4 of 8 = the top of a and the
    # bottom of b) stays between the two tasks' ranges; an unstratified bootstrap could draw 8 runs of one task
    assert 11.0 <= agg["ci_low"] < agg["iqm"] < agg["ci_high"] <= 82.0
    one = aggregate_iqm({"a": [1.0, 2.0, 3.0], "b": [7.0]})  # a one-seed task is kept, not resampled
    assert one["n_runs"] == 4 and one["ci_low"] <= one["iqm"] <= one["ci_high"]


def test_plots_cover_every_task_and_the_aggregate(tmp_path):
    from pathlib import Path

    from PIL import Image

    from suite.plots import plot_runs

    runs = Path(__file__).resolve().parents[2] / "leaderboards" / "runs"
    made = plot_runs(runs, tmp_path)
    names = sorted(p.name for p in made)
    from suite.results import iter_records

    tasks = {r.task for _, r in iter_records(runs)}  # the committed records grow as the v1 grid lands
    assert {"hopper-medium-v0", "walker2d-medium-v0", "halfcheetah-medium-v0"} <= tasks
    assert names == ["aggregate_iqm.png"] + sorted(f"curve_{t.replace('/', '_')}.png" for t in tasks)
    for p in made:
        with Image.open(p) as im:
            assert im.size[0] >= 400 and len(set(im.convert("L").getdata())) > 10  # drawn, not blank


def test_aggregate_never_pools_dataset_versions_or_families():
    from suite.leaderboard import aggregate_rows, dataset_group

    assert [dataset_group(t) for t in ("hopper-medium-v0", "hopper-medium-v1", "d4rl/hopper-medium-v2",
                                       "minari/mujoco/hopper/medium-v0")] == ["suite v0", "suite v1", "d4rl", "minari"]

    def row(task, scores):
        return {"method": "odice", "task": task, "metric": "final_score", "scores": scores}

    rows = [row("hopper-medium-v0", [10.0, 11.0, 12.0]), row("walker2d-medium-v0", [20.0, 21.0, 22.0]),
            row("hopper-medium-v1", [80.0, 81.0, 82.0]), row("walker2d-medium-v1", [90.0, 91.0, 92.0]),
            row("d4rl/hopper-medium-v2", [50.0, 51.0, 52.0])]
    agg = aggregate_rows(rows)
    assert [(a["group"], a["n_tasks"], a["n_runs"]) for a in agg] == [("suite v0", 2, 6), ("suite v1", 2, 6)]
    v0, v1 = agg
    assert v0["ci_high"] <= 22.0 and v1["ci_low"] >= 80.0  # each from its own version's runs only


def test_separation_needs_non_overlapping_cis_and_enough_seeds():
    from suite.leaderboard import separations

    def row(method, task, lo, hi, n=5):
        return {"method": method, "task": task, "n": n, "mean": (lo + hi) / 2, "ci_low": lo, "ci_high": hi}

    rows = [row("odice", "a", 60, 70), row("iql", "a", 40, 59.9), row("td3bc", "a", 65, 80),
            row("odice", "b", 10, 20), row("iql", "b", 20.1, 30), row("td3bc", "b", 0, 100, n=2),
            row("iql", "c", 1, 2)]
    got = {(e["task"], e["other"]): e["verdict"] for e in separations(rows, "odice")}
    assert got == {("a", "iql"): "higher", ("a", "td3bc"): "overlap", ("b", "iql"): "lower",
                   ("b", "td3bc"): "too few seeds"}
