"""Generative runs on image tasks: the score model (and, for DMCMC, the noise-level classifier) trained here
and cached by content hash (`image_models`), sampling and scoring with a registered sampler (`run_images`,
called by `suite.generation.run_generative`), and ``score-sde``, Song et al.'s train-then-sample method
(`run_score_sde`). Records are written as for every generative run (`suite.generation`)."""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path

from .errors import ConfigError, SuiteError
from .generation import (
    IMAGE_VE_SIGMA_MAX,
    SamplerConfig,
    _announce,
    _info_metrics,
    _record,
    _sampler,
    _sde_key,
    cache_dir,
    n_steps_for,
    sampler_options,
)
from .results import RunRecord, new_run_dir


# --------------------------------------------------------------------------- image tasks: trained models
def image_models(dataset: str, cfg: SamplerConfig, out: str | Path, sde_key: str, progress: bool, device: str,
                 need_classifier: bool):
    """(checkpoint path, classifier or None, grid or None): the cached score model of ``dataset`` under
    ``sde_key`` and, if asked, the noise-level classifier on the VE grid, each trained on first use."""
    from tqdm.auto import tqdm

    from generative import pipeline as P
    from generative.samplers.dmcmc import ve_grid
    from generative.sdes import VESDE

    sde_kwargs = {}
    if sde_key == "ve":
        sde_kwargs = {"sigma_max": cfg.sigma_max or IMAGE_VE_SIGMA_MAX.get(dataset, 50.0)}
    train_cfg = P.ScoreSDEConfig(n_steps=cfg.train_steps, lr=cfg.lr, ch=cfg.ch, sde_kwargs=sde_kwargs,
                                 device=device, **_image_net(dataset))
    models = cache_dir(out) / "models"
    bar = tqdm(total=cfg.train_steps, desc=f"{dataset} {sde_key} score model", unit="step", disable=not progress)

    def callback(stage, step, total, m):
        if bar.total != total:
            bar.reset(total=total)
            bar.set_description(f"{dataset} {stage}")
        bar.update(step - bar.n)

    try:
        ckpt = P.train_score_model(dataset, sde_key + "sde", train_cfg, cfg.model_seed, models, callback)
        clf = grid = None
        if need_classifier:
            grid = ve_grid(VESDE(**sde_kwargs))
            net = P.noise_classifier(dataset, grid, models, n_steps=cfg.classifier_steps, seed=cfg.model_seed,
                                     device=device, callback=callback)
            clf = net.log_probs
    except (FileNotFoundError, ValueError) as e:
        raise SuiteError(str(e)) from e
    finally:
        bar.close()
    return ckpt, clf, grid


def _image_metrics(res: dict, n: int) -> dict[str, float]:
    """The record metrics of `sample_and_evaluate`'s result; any non-finite sample makes fd_lenet NaN, so the
    run is marked diverged, never tabulated."""
    bad = float(res["nonfinite_fraction"])
    return {"fd_lenet": float(res["fd-lenet"]) if bad == 0 else float("nan"), "kid": float(res["kid"]),
            "kid_std": float(res["kid_std"]), "nfe": float(res["nfe"]),
            "sample_wall_time_s": float(res["sample_wall_time_s"]), "n_samples": float(n),
            "nonfinite_fraction": bad}


def _image_net(dataset: str) -> dict:
    if dataset == "digits-8x8":
        return {}
    return {"ch_mult": (1, 2, 2), "attn_resolutions": ()}  # 28/32 px -> 14/16 -> 7/8, no attention (CPU)


def run_images(method, sampler, spec, cfg, seed, out, progress, device) -> RunRecord:
    from generative import pipeline as P

    dataset = spec.extra["dataset"]
    sde_key = _sde_key(cfg, sampler)
    if sampler.family == "dmcmc" and cfg.eta is None:
        cfg = dataclasses.replace(cfg, eta=spec.extra.get("dmcmc_eta", 0.05))
    if cfg.corrector_norm is None:
        cfg = dataclasses.replace(cfg, corrector_norm="sample")
    t0 = time.perf_counter()
    ckpt, clf, grid = image_models(dataset, cfg, out, sde_key, progress, device, sampler.needs_classifier)
    train_wall = time.perf_counter() - t0
    opts = sampler_options(cfg, sampler, image=True)
    steps = n_steps_for(cfg, sampler, opts)
    n = cfg.n_samples or spec.extra["n_samples"]
    _announce(sampler, cfg, n, steps, progress)
    if sampler.family == "dmcmc":
        opts["integrator_steps"] = steps or sampler.default_steps
    run_dir = new_run_dir(out, method, spec.id, seed)
    res = P.sample_and_evaluate(ckpt, method, n, seed, n_steps=steps, sampler_kwargs=opts, out_dir=run_dir,
                                device=device, classifier=clf, classifier_sigmas=grid,
                                batch_size=min(cfg.batch_size, 1000), feature_dir=cache_dir(out) / "features")
    metrics = {**_image_metrics(res, n), "model_wall_time_s": train_wall, **_info_metrics(res["info"])}
    return _record(method, spec, cfg, seed, out, device, metrics, time.perf_counter() - t0,
                   {"checkpoint": str(ckpt), "sample_grid_png": res["grid_png"], "dataset": dataset},
                   run_dir=run_dir)


# --------------------------------------------------------------------------- train-then-sample (images)
@dataclass(frozen=True)
class ScoreSDERunConfig:
    """`score-sde` on an image task: train a small score model here (DSM, EMA), then sample and score it.
    Training fields map onto `generative.pipeline.ScoreSDEConfig` (its docstring has MNIST/CIFAR settings)."""

    sde: str = "vp"  # vp | subvp | ve
    sampler: str = "pc"  # any registered sampler but dmcmc (see `suite ls methods`)
    nfe: int | None = None  # sugar for sample_steps, by the sampler's own NFE rule
    sample_steps: int = 100  # fixed-step samplers' grid
    sample_eps: float | None = 0.03  # end time for SDE samplers (small CPU models are poor below it)
    denoise: str = "tweedie"  # final step for SDE samplers: tweedie | mean | none
    rtol: float = 1e-3  # probability-flow ODE tolerances
    atol: float = 1e-3
    n_samples: int | None = None  # default: the task's
    train_steps: int = 1500
    batch_size: int = 128
    lr: float = 1e-3
    ch: int = 32
    ema_rate: float = 0.999
    baselines: bool = True  # also score N(0, I) noise and a Gaussian fitted to the data (floors)


def run_score_sde(method: str, spec, cfg: ScoreSDERunConfig, seed: int, out: str | Path, progress: bool = True,
                  device: str = "cpu"):
    from generative import pipeline as P
    from generative import sdes

    if "dataset" not in spec.extra:
        raise SuiteError(f"score-sde trains on image tasks (digits-8x8, mnist, cifar10, …), not {spec.id}")
    try:
        sde_key = sdes.sde_name(cfg.sde)
    except ValueError:
        raise ConfigError(f"unknown sde {cfg.sde!r}; choose vp, subvp or ve") from None
    sampler = _sampler(cfg.sampler)
    if sampler.needs_classifier:
        raise ConfigError(f"use `suite run {cfg.sampler} {spec.id}` for {cfg.sampler} (it needs a classifier)")
    dataset = spec.extra["dataset"]
    run_dir = new_run_dir(out, method, spec.id, seed)
    train_cfg = P.ScoreSDEConfig(n_steps=cfg.train_steps, batch_size=cfg.batch_size, lr=cfg.lr, ch=cfg.ch,
                                 ema_rate=cfg.ema_rate, device=device)
    from tqdm.auto import tqdm

    bar = tqdm(total=cfg.train_steps, desc=f"score-sde {spec.id} train", unit="step", disable=not progress)

    def callback(stage, step, total, m):
        bar.update(step - bar.n)
        if "loss" in m:
            bar.set_postfix(loss=f"{float(m['loss']):.4f}", refresh=False)

    t0 = time.perf_counter()
    try:  # cached by content hash: a rerun with the same recipe reuses the model
        ckpt = P.train_score_model(dataset, sde_key + "sde", train_cfg, seed, cache_dir(out) / "models", callback)
    except (FileNotFoundError, ValueError) as e:
        raise SuiteError(str(e)) from e
    finally:
        bar.close()
    train_wall = time.perf_counter() - t0
    steps = cfg.sample_steps
    opts = {"denoise": cfg.denoise} if not sampler.adaptive else {"rtol": cfg.rtol, "atol": cfg.atol}
    if cfg.nfe:
        steps = sampler.steps_for_nfe(cfg.nfe, opts) if not sampler.adaptive else steps
    if not sampler.adaptive and sampler.family == "score-sde" and cfg.sample_eps is not None:
        opts["eps"] = cfg.sample_eps
    n = cfg.n_samples or spec.extra["n_samples"]
    res = P.sample_and_evaluate(ckpt, cfg.sampler, n, seed, n_steps=steps, sampler_kwargs=opts, out_dir=run_dir,
                                device=device, feature_dir=cache_dir(out) / "features")
    metrics = {**_image_metrics(res, n), "train_wall_time_s": train_wall}
    if cfg.baselines:
        for name, vals in P.reference_baselines(dataset, run_dir, n, seed,
                                                feature_dir=cache_dir(out) / "features").items():
            metrics[f"{name}_fd_lenet"] = float(vals["fd-lenet"])
            metrics[f"{name}_kid"] = float(vals["kid"])
    return _record(method, spec, cfg, seed, out, device, metrics, time.perf_counter() - t0,
                   {"checkpoint": str(ckpt), "sample_grid_png": res["grid_png"], "dataset": dataset},
                   steps=cfg.train_steps, run_dir=run_dir)
