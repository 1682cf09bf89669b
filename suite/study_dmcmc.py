"""`python -m suite study dmcmc`: the Denoising-MCMC claim in our setting — at equal NFE, does DLG followed by
an integrator beat the same integrator alone?

For every task, NFE budget and integrator it runs (a) ``dmcmc --integrator X --nfe N`` and (b) ``X`` alone
from the prior with the same NFE (its steps from its own NFE rule, plus the same final Tweedie step), with
the same seeds. Analytic tasks use the exact score and the exact noise-level classifier (no network
error; metrics: per-component weight error, per-mode fitted-Gaussian W2, unbiased MMD², each mean ± std over
seeds); image tasks use the trained VE model and classifier (cached) and report fd-lenet and KID.

The adaptive ODE is left out: its NFE is set by a tolerance, not a budget. Writes ``dmcmc_study.json`` (one
row per run, plus the summary) and ``dmcmc_study.png`` (quality against NFE, one panel per task and metric)
into ``--out``; rows are appended as they finish, and a rerun with ``--resume`` skips rows already there.
"""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path

from .results import write_json_atomic

DEFAULT_TASKS = ("gmm-64d", "digits-8x8")
DEFAULT_NFES = (10, 20, 50)
DEFAULT_INTEGRATORS = ("em", "pc", "karras-heun", "karras-stochastic")
ANALYTIC_METRICS = ("weight_error", "mode_w2", "mmd2")
IMAGE_METRICS = ("fd_lenet", "kid")


def _run(method: str, task: str, overrides: dict, seed: int, out: Path):
    from .runner import RunOptions, run

    return run(method, task, RunOptions(seed=seed, out=out, overrides={k: str(v) for k, v in overrides.items()},
                                        progress=False))


def run_study(out: str | Path = "results/dmcmc", tasks=DEFAULT_TASKS, nfes=DEFAULT_NFES,
              integrators=DEFAULT_INTEGRATORS, seeds=(0, 1), image_seeds=(0,), skp: int = 5,
              resume: bool = False, log=print) -> dict:
    from .tasks import get_task

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "dmcmc_study.json"
    rows = json.loads(path.read_text())["rows"] if resume and path.exists() else []
    done = {(r["task"], r["nfe_budget"], r["integrator"], r["variant"], r["seed"]) for r in rows}
    for task in tasks:
        spec = get_task(task)
        image = "dataset" in spec.extra
        for nfe in nfes:
            for integ in integrators:
                for seed in image_seeds if image else seeds:
                    for variant in ("dmcmc", "alone"):
                        key = (spec.id, nfe, integ, variant, seed)
                        if key in done:
                            continue
                        common = {"sde": "ve", "nfe": nfe, "denoise": "tweedie"}
                        if variant == "dmcmc":
                            method, ov = "dmcmc", {**common, "integrator": integ, "skp": skp}
                            ov.pop("denoise")
                        else:
                            method, ov = integ, dict(common)
                            if integ.startswith("karras"):
                                ov.pop("denoise")  # Karras ends with its own Euler step to σ = 0
                        t0 = time.perf_counter()
                        rec = _run(method, spec.id, ov, seed, out / "runs")
                        row = {"task": spec.id, "nfe_budget": nfe, "integrator": integ, "variant": variant,
                               "seed": seed, "status": rec.status, "wall_s": time.perf_counter() - t0,
                               **{k: rec.metrics.get(k) for k in
                                  ("nfe", *ANALYTIC_METRICS, *IMAGE_METRICS, "integrator_nfe",
                                   "classifier_calls_per_sample", "burn_in_nfe_per_chain",
                                   "chosen_sigma_median") if k in rec.metrics}}
                        rows.append(row)
                        log(json.dumps(row))
                        _write(path, rows)
    result = _write(path, rows)
    plot(result, out / "dmcmc_study.png")
    return result


def summarise(rows: list[dict]) -> list[dict]:
    """Mean ± std over seeds per (task, NFE budget, integrator, variant)."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        if r["status"] == "ok":
            groups.setdefault((r["task"], r["nfe_budget"], r["integrator"], r["variant"]), []).append(r)
    out = []
    for (task, nfe, integ, variant), rs in sorted(groups.items()):
        s = {"task": task, "nfe_budget": nfe, "integrator": integ, "variant": variant, "n_seeds": len(rs),
             "nfe": rs[0].get("nfe")}
        for m in (*ANALYTIC_METRICS, *IMAGE_METRICS):
            vals = [r[m] for r in rs if r.get(m) is not None]
            if vals:
                s[m] = statistics.fmean(vals)
                s[m + "_std"] = statistics.stdev(vals) if len(vals) > 1 else 0.0
        out.append(s)
    return out


def _write(path: Path, rows: list[dict]) -> dict:
    result = {"rows": rows, "summary": summarise(rows)}
    write_json_atomic(path, result, indent=2, allow_nan=True)
    return result


def plot(result: dict, png: str | Path) -> Path:
    from .plots import _plt, save_panels

    plt = _plt()

    summary = result["summary"]
    panels = []
    for task in sorted({s["task"] for s in summary}):
        metrics = [m for m in (*ANALYTIC_METRICS, *IMAGE_METRICS) if any(m in s for s in summary if s["task"] == task)]
        panels += [(task, m) for m in metrics]
    fig, axes = plt.subplots(1, max(1, len(panels)), figsize=(4.2 * max(1, len(panels)), 3.6), squeeze=False)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, (task, metric) in zip(axes[0], panels, strict=False):
        integs = sorted({s["integrator"] for s in summary if s["task"] == task})
        for i, integ in enumerate(integs):
            for variant, style in (("dmcmc", "-o"), ("alone", "--s")):
                pts = sorted((s["nfe"], s[metric], s.get(metric + "_std", 0.0)) for s in summary
                             if s["task"] == task and s["integrator"] == integ and s["variant"] == variant
                             and metric in s)
                if pts:
                    xs, ys, es = zip(*pts, strict=True)
                    ax.errorbar(xs, ys, yerr=es, fmt=style, color=colours[i % len(colours)], ms=4, capsize=2,
                                label=f"{'DLG+' if variant == 'dmcmc' else ''}{integ}")
        ax.set_xscale("log")
        ax.set_yscale("log" if metric != "mmd2" else "symlog", **({} if metric != "mmd2" else {"linthresh": 1e-4}))
        ax.set_xlabel("NFE per sample")
        ax.set_title(f"{task}: {metric}", fontsize=9)
    return save_panels(fig, axes, png)
