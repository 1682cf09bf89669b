"""Generative methods: every sampler registered in :mod:`generative.samplers` is a suite method, run on
analytic tasks (the exact score — and, for DMCMC, the exact noise-level classifier — so the sampler's own
error is measured with no network error) and on image tasks (a VE/VP score model and, for DMCMC, a
noise-level classifier trained here, cached by content hash under ``$SUITE_CACHE`` (default
``<out>/cache``) and reused between runs; `suite.generation_images`). ``score-sde`` is the train-then-sample
method of Song et al. (`suite.generation_images.run_score_sde`).

Each run produces a `RunRecord` with NFE, metric values and the sampling wall time, written by
``suite.results.write_run_record`` like every agent run, with the real device in its provenance; the
headline metric of a task is named in its spec (`extra["metric"]`).

Sample i of an analytic run depends only on its seed ``seed * 1_000_003 + i`` (one generator per sample),
whatever the batch; for ``dmcmc`` the seed is that of chain c, which produces samples c, c + C, … (C chains).
"""

from __future__ import annotations

import dataclasses
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from .errors import ConfigError, SuiteError
from .results import RunRecord, new_run_dir, provenance, write_run_record

# dataset -> VE σmax for the image models DMCMC and the Karras samplers use (Song & Ermon's rule: about the
# largest distance between training images), and the Langevin step η of the DMCMC chain
IMAGE_VE_SIGMA_MAX = {"digits-8x8": 20.0, "mnist": 50.0, "cifar10": 50.0, "cifar10-jpeg": 50.0}
NFE_WARN = 5000  # score evaluations per sample above which a run prints its estimated cost


@dataclass(frozen=True)
class SamplerConfig:
    """Options of every registered sampler; each sampler takes the ones it knows (see its docstring)."""

    sde: str | None = None  # vp | subvp | ve; default: ve for dmcmc, vp otherwise
    nfe: int | None = None  # score evaluations per sample; sets the step count by the sampler's own rule
    n_steps: int | None = None  # the sampler's steps in its own unit (overrides nfe)
    denoise: str | None = None  # none | mean | tweedie; default: the sampler's
    eps: float | None = None  # end time (default: the SDE's)
    snr: float = 0.16  # Langevin corrector signal-to-noise ratio (CIFAR-10 setting)
    corrector_steps: int = 1
    # Langevin step-size norms: "sample" (sample i independent of the batch) or "batch" (the official rule).
    # None: the task's default — "batch" on 2-D data, where per-sample ‖s‖ near a mode is ~0.
    corrector_norm: str | None = None
    predictor: str = "reverse_diffusion"  # for pc: euler_maruyama | reverse_diffusion | ancestral
    rtol: float = 1e-5  # probability-flow ODE tolerances (official: 1e-5)
    atol: float = 1e-5
    # Karras et al. 2022
    rho: float = 7.0
    s_churn: float = 80.0
    s_tmin: float = 0.05
    s_tmax: float = 1.0
    s_noise: float = 1.007
    # Denoising MCMC (Kim & Ye)
    integrator: str = "karras-heun"  # em | reverse-diffusion | pc | ode | karras-heun | karras-stochastic
    skp: int = 5  # chain steps per output sample
    eta: float | None = None  # Langevin step; default: the task's (extra["dmcmc_eta"]) or 0.05
    gibbs: str = "argmax"  # argmax | sample
    n_rounds: int = 4  # outputs per persistent chain (chains = n_samples / n_rounds)
    burn_in_levels: int = 20
    burn_in_noise: float = 0.5
    burn_in_steps: int = 10
    # sample counts
    n_samples: int | None = None  # default: the task's
    batch_size: int = 1024
    # image tasks: the score model and classifier trained here (cached by content hash)
    train_steps: int = 2000
    lr: float = 1e-3
    ch: int = 32
    sigma_max: float | None = None  # VE σmax of the image model; default: IMAGE_VE_SIGMA_MAX
    classifier_steps: int = 3000
    model_seed: int = 0  # the trained models' seed (the run seed only drives sampling)
    sample_eps: float | None = 0.03  # image tasks: end time of SDE samplers (small CPU models are poor below it)


def _sampler(name: str):
    from generative.samplers import get_sampler

    try:
        return get_sampler(name)
    except KeyError as e:
        raise SuiteError(str(e)) from None


def _sde_key(cfg: SamplerConfig, spec) -> str:
    """The canonical SDE name of a run: ``--sde``, default ve for dmcmc (it needs the VE grid) and vp otherwise."""
    from generative import sdes

    name = cfg.sde or ("ve" if spec.family == "dmcmc" else "vp")
    try:
        key = sdes.sde_name(name)
    except ValueError:
        raise ConfigError(f"unknown sde {name!r}; choose vp, subvp or ve") from None
    if spec.family == "dmcmc" and key != "ve":
        raise ConfigError("dmcmc runs on the VE grid; use --sde ve")
    return key


def _sde(cfg: SamplerConfig, spec):
    from generative import sdes

    return sdes.build_sde(_sde_key(cfg, spec))


def _check(cfg: SamplerConfig, spec) -> None:
    for key in ("nfe", "n_steps", "n_samples", "skp", "n_rounds", "batch_size", "corrector_steps"):
        v = getattr(cfg, key)
        if v is not None and v < 1:
            raise ConfigError(f"{key} must be at least 1, got {v}")
    for key in ("rtol", "atol", "eta", "lr", "rho", "s_noise"):
        v = getattr(cfg, key)
        if v is not None and not (math.isfinite(v) and v > 0):
            raise ConfigError(f"{key} must be a finite positive number, got {v}")
    if cfg.denoise not in (None, "none", "mean", "tweedie"):
        raise ConfigError(f"denoise must be none, mean or tweedie, got {cfg.denoise!r}")
    if spec.family == "dmcmc":
        from generative.samplers.dmcmc import INTEGRATORS

        if cfg.integrator not in INTEGRATORS:
            raise ConfigError(f"unknown integrator {cfg.integrator!r}; choose from {', '.join(INTEGRATORS)}")


def sampler_options(cfg: SamplerConfig, spec, *, image: bool = False) -> dict:
    """The keyword options for ``spec`` from the run config (each sampler takes its own)."""
    opts = {
        "denoise": cfg.denoise, "eps": cfg.eps, "snr": cfg.snr, "corrector_steps": cfg.corrector_steps,
        "corrector_norm": cfg.corrector_norm, "pc_predictor": cfg.predictor, "rtol": cfg.rtol, "atol": cfg.atol,
        "rho": cfg.rho, "s_churn": cfg.s_churn, "s_tmin": cfg.s_tmin, "s_tmax": cfg.s_tmax, "s_noise": cfg.s_noise,
        "integrator": cfg.integrator, "skp": cfg.skp, "eta": cfg.eta, "gibbs": cfg.gibbs, "n_rounds": cfg.n_rounds,
        "burn_in_levels": cfg.burn_in_levels, "burn_in_noise": cfg.burn_in_noise,
        "burn_in_steps": cfg.burn_in_steps,
    }
    if image and cfg.sample_eps is not None and cfg.eps is None and spec.name != "ode":
        opts["eps"] = cfg.sample_eps
    if spec.family == "dmcmc":
        integ = _sampler(cfg.integrator)
        inner = {k: v for k, v in opts.items() if k in integ.options() and v is not None and k != "eps"}
        inner["denoise"] = "none"
        if image and cfg.sample_eps is not None and cfg.integrator != "ode":
            inner["eps"] = cfg.sample_eps
        opts["integrator_options"] = inner
    return opts


def n_steps_for(cfg: SamplerConfig, spec, opts: dict) -> int | None:
    """The sampler's step count: ``n_steps``, else from ``nfe`` by the sampler's own rule, else its default."""
    if cfg.n_steps is not None:
        return cfg.n_steps
    if cfg.nfe is not None and not spec.adaptive:
        try:
            return spec.steps_for_nfe(cfg.nfe, opts)
        except ValueError as e:
            raise ConfigError(str(e)) from None
    return None


def sample(method: str, cfg: SamplerConfig, score_fn, sde, shape: tuple[int, ...], seeds: torch.Tensor,
           classifier=None, classifier_sigmas=None):
    """Draw ``len(seeds)`` samples with sampler ``method``: sample i from ``seeds[i]`` alone (prior draw and
    every noise draw from its own generator)."""
    from generative.samplers import ScoreModel, call_sampler
    from generative.sdes import generators_from_seeds

    spec = _sampler(method)
    opts = sampler_options(cfg, spec)
    steps = n_steps_for(cfg, spec, opts)
    gens = generators_from_seeds(seeds)
    model = ScoreModel(score_fn, sde, classifier, classifier_sigmas)
    x0 = sde.prior_sample(shape, gens, dtype=torch.float64)
    steps_key = "integrator_steps" if spec.family == "dmcmc" else "n_steps"
    return call_sampler(spec, model, x0, None, gens, **{steps_key: steps}, **opts)


def analytic_metrics(x: torch.Tensor, mixture) -> dict[str, float]:
    """Exact-target metrics: unbiased MMD² (fixed kernel), W2 of the fitted moments, the per-component weight
    error and the per-mode fitted-Gaussian W2 (``generative.analytic``), exact NLL (with the data's own)."""
    from generative import analytic as A

    x = x.reshape(x.shape[0], -1).double()
    mean, cov = x.mean(0), torch.cov(x.T)
    out = {
        "mmd2": float(A.mmd2_to_mixture(x, mixture)),
        "w2_moments": float(A.gaussian_w2(mean, cov, mixture.mean(), mixture.cov())),
        "weight_error": A.weight_error(x, mixture),
        "mode_w2": A.mode_w2(x, mixture),
        "nll": float(-mixture.log_prob(x).mean()),
        "nll_data": float(-mixture.log_prob(mixture.sample(len(x), torch.Generator().manual_seed(12345))).mean()),
    }
    return {k: v for k, v in out.items() if v is not None}  # mode_w2 needs enough samples per mode


def _advance(bar, n: int, nfe: int, done: int) -> None:
    """Count ``done`` more samples at ``nfe`` calls each (the total follows the sampler's measured NFE)."""
    if bar.total != n * nfe:
        bar.total = n * nfe
    bar.update(min(done * nfe, bar.total - bar.n))


def _planned_nfe(spec, cfg: SamplerConfig, opts: dict) -> int | None:
    try:
        return cfg.nfe or spec.nfe(n_steps_for(cfg, spec, opts) or spec.default_steps,
                                   {"skp": cfg.skp, "integrator": cfg.integrator})
    except (KeyError, ValueError, TypeError):
        return None


def _finite(metrics: dict) -> bool:
    return all(v == v and abs(v) != float("inf") for v in metrics.values())


def _announce(spec, cfg: SamplerConfig, n: int, steps: int | None, progress: bool) -> None:
    if spec.adaptive:
        return
    try:
        nfe = cfg.nfe or spec.nfe(steps or spec.default_steps, {"skp": cfg.skp, "integrator": cfg.integrator})
    except (KeyError, ValueError):
        return
    if nfe > NFE_WARN or (progress and nfe * n > 5e7):
        print(f"{spec.name}: {nfe} score evaluations per sample x {n} samples = {nfe * n:.3g} in all",
              file=sys.stderr)


def cache_dir(out: str | Path) -> Path:
    return Path(os.environ.get("SUITE_CACHE") or (Path(out) / "cache"))


def run_generative(method: str, spec, cfg: SamplerConfig, seed: int, out: str | Path, progress: bool = True,
                   device: str = "cpu") -> RunRecord:
    sampler = _sampler(method)
    _check(cfg, sampler)
    if "distribution" in spec.extra:
        return _run_analytic(method, sampler, spec, cfg, seed, out, progress, device)
    if "dataset" in spec.extra:
        from .generation_images import run_images

        return run_images(method, sampler, spec, cfg, seed, out, progress, device)
    raise SuiteError(f"{method} runs on analytic or image generation tasks, not {spec.id}")


def _run_analytic(method, sampler, spec, cfg, seed, out, progress, device) -> RunRecord:
    from generative import analytic as A
    from generative.samplers.dmcmc import ve_grid

    mixture = getattr(A, spec.extra["distribution"])()
    if cfg.corrector_norm is None:
        cfg = dataclasses.replace(cfg, corrector_norm=spec.extra.get("corrector_norm", "sample"))
    if sampler.family == "dmcmc" and cfg.eta is None:
        cfg = dataclasses.replace(cfg, eta=spec.extra.get("dmcmc_eta", 0.05))
    sde = _sde(cfg, sampler)
    score_fn = mixture.score_fn(sde)
    classifier = grid = None
    if sampler.needs_classifier:
        grid = ve_grid(sde)
        classifier = lambda x: mixture.noise_level_log_probs(x, grid)  # noqa: E731  exact: Bayes' rule
    n = cfg.n_samples or spec.extra["n_samples"]
    opts = sampler_options(cfg, sampler)
    _announce(sampler, cfg, n, n_steps_for(cfg, sampler, opts), progress)
    from tqdm.auto import tqdm

    t0 = time.perf_counter()
    xs, nfe, info = [], 0, {}
    # NFE done / total over the batches (samples x score evaluations; the adaptive ODE's total is unknown)
    per = None if sampler.adaptive else _planned_nfe(sampler, cfg, opts)
    bar = tqdm(total=n * per if per else None, disable=not progress, unit="nfe", mininterval=1.0,
               desc=f"{method} {spec.id}: NFE (samples x calls)")
    if sampler.family == "dmcmc":  # C chains, chain c seeded seed * 1_000_003 + c, n_rounds outputs each
        chains = -(-n // cfg.n_rounds)
        for c0 in range(0, chains, cfg.batch_size):
            seeds = torch.arange(c0, min(chains, c0 + cfg.batch_size)) + seed * 1_000_003
            res = sample(method, cfg, score_fn, sde, (len(seeds), mixture.dim), seeds, classifier, grid)
            xs.append(res.x.reshape(cfg.n_rounds, len(seeds), -1))
            nfe, info = max(nfe, res.nfe), res.info
            _advance(bar, n, res.nfe, len(seeds) * cfg.n_rounds)
        x = torch.cat(xs, 1).reshape(-1, mixture.dim)[:n]
    else:
        seeds = torch.arange(n, dtype=torch.long) + seed * 1_000_003
        for i in range(0, n, cfg.batch_size):
            res = sample(method, cfg, score_fn, sde, (min(cfg.batch_size, n - i), mixture.dim),
                         seeds[i: i + cfg.batch_size])
            xs.append(res.x)
            nfe, info = max(nfe, res.nfe), res.info
            _advance(bar, n, res.nfe, len(res.x))
        x = torch.cat(xs)
    bar.close()
    wall = time.perf_counter() - t0
    # the score-SDE samplers stop at eps: their target is the exact marginal p_eps (differs from p_0 by
    # O(eps)); Karras and DMCMC end at σ = 0 (a final Euler / Tweedie step), target p_0
    # (a final Tweedie step also estimates x_0: p_0 is its target too)
    end = 0.0 if sampler.family in ("karras", "dmcmc") or cfg.denoise == "tweedie" else sde.eps
    metrics = analytic_metrics(x, mixture.marginal(sde, end) if end else mixture)
    metrics.update({"nfe": float(nfe), "sample_wall_time_s": wall, "n_samples": float(n)})
    metrics.update(_info_metrics(info))
    return _record(method, spec, cfg, seed, out, device, metrics, wall, {"sde": type(sde).__name__})


def _info_metrics(info: dict) -> dict[str, float]:
    keep = ("integrator_nfe", "classifier_calls_per_sample", "burn_in_nfe_per_chain",
            "burn_in_classifier_calls_per_chain", "chosen_sigma_mean", "chosen_sigma_median", "chains")
    return {k: float(info[k]) for k in keep if k in info}


def _record(method, spec, cfg, seed, out, device, metrics, wall, extra, steps=0, run_dir=None) -> RunRecord:
    run_dir = run_dir or new_run_dir(out, method, spec.id, seed)
    status = "ok" if _finite(metrics) else "diverged"
    rec = RunRecord(
        method=method, task=spec.id, seed=seed, config=dataclasses.asdict(cfg), task_spec=spec.to_dict(),
        status=status, steps=steps, metrics=metrics if status == "ok" else {}, wall_time_s=wall,
        run_id=run_dir.name, provenance=provenance(device, {"command": " ".join(sys.argv), **extra}),
        error=None if status == "ok" else "non-finite metrics: " + ", ".join(
            k for k, v in metrics.items() if not (v == v and abs(v) != float("inf"))),
    )
    write_run_record(rec, run_dir)
    return rec
