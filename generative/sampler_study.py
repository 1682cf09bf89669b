"""Sampler error against NFE on analytic tasks, where the exact score removes all network error.

Tasks (data p_0; the target of every sampler is the exact marginal p_eps, since the samplers stop at eps):

* ``"gaussian-2d"`` — :func:`generative.analytic.gaussian_2d`. With a Gaussian p_0 the exact score is affine
  in x, so the fixed-step samplers built from affine steps (Euler–Maruyama, reverse diffusion, ancestral)
  output an *exact* Gaussian whose mean and covariance :func:`exact_gaussian_output` propagates without any
  Monte Carlo; the error is the closed-form W2 to p_eps (no noise floor, so weak order 1 of EM shows as a
  log-log slope of -1). The Langevin corrector (its step depends on ‖z‖/‖s‖) and the adaptive ODE are not
  affine: for them W2 is between p_eps and the Gaussian fitted to ``n_samples`` samples (floor ~ n^-1/2).
* ``"gmm-2d"`` (8-mode ring) and ``"gmm-64d"`` — error sqrt(max(MMD², 0)) with MMD² the unbiased
  estimate of :func:`generative.analytic.mmd2_to_mixture` against the exact p_eps (Gaussian kernel, length
  scale ``default_lengthscale``), plus the mean exact NLL of the samples for reference.

Samplers are names in the one registry (:mod:`generative.samplers`), NFE turned into steps by each sampler's
own rule: ``em``, ``reverse-diffusion``, ``ancestral`` (NFE = steps), ``pc`` (reverse diffusion + one Langevin
step, snr 0.16; NFE = 2 × steps; batch-norm step rule in 2-D, see ``langevin_step``), ``karras-heun`` (NFE =
2N - 3 for N levels; it ends at σ = 0, so its target is p_0) and ``ode`` (probability-flow ODE, adaptive;
its NFE is set by rtol = atol in ``ode_tols``, the mean NFE per sample is reported).
All runs start from samples of the exact p_T (not the prior N(0, σ_T² I)), so that the measured
error is the discretisation error alone; no final denoising step.

``python -m generative.sampler_study --out results/`` writes ``sampler_study.json`` (rows and fitted slopes)
and ``sampler_study.png`` (log-log error vs NFE).
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor

from generative.analytic import (
    GaussianMixture,
    gaussian_2d,
    gaussian_w2,
    gmm_64d,
    mmd2_to_mixture,
    ring_gmm_2d,
)
from generative.samplers import ScoreModel, call_sampler, get_sampler
from generative.samplers.score_sde import PREDICTORS, time_grid
from generative.sdes import SDE, SDES, SubVPSDE

__all__ = ["TASKS", "SDES", "make_task", "exact_gaussian_output", "error_vs_nfe", "fit_slopes",
           "plot_error_vs_nfe", "main"]

TASKS = {"gaussian-2d": gaussian_2d, "gmm-2d": ring_gmm_2d, "gmm-64d": gmm_64d}
# registry names (generative.samplers) of the affine predictors, and the predictor step each one is
AFFINE_SAMPLERS = {"em": "euler_maruyama", "reverse-diffusion": "reverse_diffusion", "ancestral": "ancestral"}
DEFAULT_SAMPLERS = ("em", "reverse-diffusion", "ancestral", "pc", "ode", "karras-heun")
DEFAULT_NFES = (8, 16, 32, 64, 128, 256)
DEFAULT_ODE_TOLS = (1e-1, 1e-2, 1e-3, 1e-4, 1e-5)


def make_task(task: str) -> GaussianMixture:
    if task not in TASKS:
        raise KeyError(f"unknown task {task!r}; known: {sorted(TASKS)}")
    return TASKS[task]()


def exact_gaussian_output(predictor: str, sde: SDE, score_fn, mean: Tensor, cov: Tensor,
                          n_steps: int) -> tuple[Tensor, Tensor]:
    """Exact mean and covariance after ``n_steps`` of an affine predictor started from N(mean, cov).

    With an affine score, a predictor step is x' = A x + b + C z. Evaluating the step itself at x = μ and
    μ + e_i (z = 0) and at z = e_j (x = μ) recovers A μ + b, A and C, so the moments propagate exactly:
    μ' = A μ + b, Σ' = A Σ Aᵀ + C Cᵀ (float64, 1 + 2D step evaluations per step).
    """
    step = PREDICTORS[AFFINE_SAMPLERS.get(predictor, predictor)]
    mean, cov = mean.to(torch.float64), cov.to(torch.float64)
    D = mean.numel()
    eye = torch.eye(D, dtype=torch.float64)
    ts = time_grid(sde, n_steps)
    for i in range(n_steps):
        x = torch.cat([mean[None], mean[None] + eye, mean[None].expand(D, D)])
        z = torch.cat([torch.zeros(1 + D, D, dtype=torch.float64), eye])
        t = ts[i].expand(len(x))
        t_next = ts[i + 1].expand(len(x))
        out, _ = step(sde, score_fn, x, t, t_next, z)
        base = out[0]
        A = (out[1:1 + D] - base).T  # column i = A e_i
        C = (out[1 + D:] - base).T
        mean, cov = base, A @ cov @ A.T + C @ C.T
    return mean, 0.5 * (cov + cov.T)


def _run_sampler(name, sde, score_fn, x_init, nfe_or_tol, generator, dim):
    """One registered sampler (the suite's registry) at an NFE budget (or ODE tolerance), no final denoising."""
    spec = get_sampler(name)
    model = ScoreModel(score_fn, sde)
    if spec.adaptive:
        res = call_sampler(spec, model, x_init, None, generator, rtol=nfe_or_tol, atol=nfe_or_tol, denoise="none")
        return res.x, float(res.info["nfe_per_sample"].double().mean())
    opts = {"denoise": "none", "corrector_norm": "batch" if dim <= 4 else "sample", "snr": 0.16}
    res = call_sampler(spec, model, x_init, None, generator, n_steps=spec.steps_for_nfe(int(nfe_or_tol), opts),
                       **opts)
    return res.x, float(res.nfe)


def error_vs_nfe(
    task: str = "gmm-2d",
    samplers: Sequence[str] = DEFAULT_SAMPLERS,
    nfes: Sequence[int] = DEFAULT_NFES,
    n_samples: int = 20_000,
    seed: int = 0,
    *,
    sde: str = "vp",
    ode_tols: Sequence[float] = DEFAULT_ODE_TOLS,
) -> list[dict]:
    """One row per (sampler, NFE or tolerance): {task, sde, sampler, nfe, setting, error, metric, exact, ...}.

    ``nfes`` are the step budgets of the fixed-step samplers; the ODE sampler uses ``ode_tols`` instead.
    ``seed`` seeds one generator per run (the same for every sampler and NFE).
    """
    data = make_task(task)
    forward = SDES[sde]()
    score_fn = data.score_fn(forward)
    target = data.marginal(forward, forward.eps)
    prior = data.marginal(forward, forward.T)
    D = data.dim
    rows = []
    for name in samplers:
        if name == "ancestral" and isinstance(forward, SubVPSDE):
            continue
        settings = list(ode_tols) if name == "ode" else list(nfes)
        for setting in settings:
            row = {"task": task, "sde": sde, "sampler": name, "setting": setting, "n_samples": n_samples,
                   "seed": seed}
            if task == "gaussian-2d" and name in AFFINE_SAMPLERS:
                m, S = exact_gaussian_output(name, forward, score_fn, prior.means[0], prior.covs[0],
                                             int(setting))
                row.update(nfe=float(setting), metric="w2_exact", exact=True,
                           error=float(gaussian_w2(m, S, target.means[0], target.covs[0])))
                rows.append(row)
                continue
            g = torch.Generator().manual_seed(seed)
            x_init = prior.sample(n_samples, g)
            x, nfe = _run_sampler(name, forward, score_fn, x_init, setting, g, D)
            row["nfe"] = nfe
            tgt = data if get_sampler(name).family == "karras" else target  # Karras ends at σ = 0: p_0
            if task == "gaussian-2d":
                row.update(metric="w2_sample_moments", exact=False,
                           error=float(gaussian_w2(x.mean(0), x.T.cov(), tgt.means[0], tgt.covs[0])))
            else:
                mmd2 = float(mmd2_to_mixture(x, tgt))
                row.update(metric="mmd", exact=False, mmd2=mmd2, error=math.sqrt(max(mmd2, 0.0)),
                           nll=float(-tgt.log_prob(x).mean()))
            rows.append(row)
    return rows


def fit_slopes(rows: Sequence[dict]) -> dict[str, float]:
    """Least-squares slope of log(error) against log(NFE) per (task, sde, sampler); rows with error 0 are
    skipped."""
    groups: dict[str, list[tuple[float, float]]] = {}
    for r in rows:
        if r["error"] > 0 and r["nfe"] > 0:
            groups.setdefault(f"{r['task']}/{r['sde']}/{r['sampler']}", []).append(
                (math.log(r["nfe"]), math.log(r["error"])))
    slopes = {}
    for key, pts in groups.items():
        if len(pts) < 2:
            continue
        xs, ys = zip(*pts, strict=False)
        mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
        sxx = sum((x - mx) ** 2 for x in xs)
        sxy = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True))
        slopes[key] = sxy / sxx if sxx > 0 else float("nan")
    return slopes


# --- plotting -----------------------------------------------------------------------------------------------
def plot_error_vs_nfe(rows: Sequence[dict], path_png: str | Path, title: str | None = None) -> Path:
    """Log-log error against NFE (matplotlib), one line per (task, sde, sampler) with its fitted slope in the
    legend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path_png = Path(path_png)
    groups: dict[str, list[tuple[float, float]]] = {}
    for r in rows:
        if r["error"] > 0:
            groups.setdefault(f"{r['task']}/{r['sde']}/{r['sampler']}", []).append((r["nfe"], r["error"]))
    slopes = fit_slopes(rows)
    fig, ax = plt.subplots(figsize=(9, 6))
    for key, g in sorted(groups.items()):
        xs, ys = zip(*sorted(g), strict=True)
        ax.plot(xs, ys, "-o", ms=3, label=f"{key} ({slopes.get(key, float('nan')):+.2f})")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("NFE")
    ax.set_ylabel("error")
    ax.set_title(title or "sampler error vs NFE (exact score)", fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    if groups:
        ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    path_png.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path_png, dpi=100)
    plt.close(fig)
    return path_png


def main(argv: Sequence[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(prog="python -m generative.sampler_study",
                                 description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="results", help="output folder for sampler_study.{json,png}")
    ap.add_argument("--tasks", nargs="+", default=["gaussian-2d", "gmm-2d"], choices=sorted(TASKS))
    ap.add_argument("--sde", default="vp", choices=sorted(SDES))
    ap.add_argument("--samplers", nargs="+", default=list(DEFAULT_SAMPLERS))
    ap.add_argument("--nfes", nargs="+", type=int, default=list(DEFAULT_NFES))
    ap.add_argument("--ode-tols", nargs="+", type=float, default=list(DEFAULT_ODE_TOLS))
    ap.add_argument("--n-samples", type=int, default=20_000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    rows = []
    for task in args.tasks:
        rows += error_vs_nfe(task, args.samplers, args.nfes, args.n_samples, args.seed, sde=args.sde,
                             ode_tols=args.ode_tols)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    result = {"config": vars(args), "slopes": fit_slopes(rows), "rows": rows}
    (out / "sampler_study.json").write_text(json.dumps(result, indent=2, sort_keys=True))
    plot_error_vs_nfe(rows, out / "sampler_study.png")
    for key, slope in result["slopes"].items():
        print(f"{key:45s} slope {slope:+.3f}")
    return result


if __name__ == "__main__":
    main()
