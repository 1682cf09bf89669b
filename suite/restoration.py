"""Restoration runs: every sampler of the ``mrs`` family (``mrs``, ``ir-sde``, ``ir-posterior``) is a suite
method on the restoration tasks (``suite.tasks.restoration``).

A run trains (or reuses, by content hash under ``$SUITE_CACHE/mr_models``, default ``<out>/cache``) a small
conditional U-Net for the task's degradation (``generative.mr_training``), degrades the task's test images
with the task's seed, restores each one from x_T = mu + lam z (image i's noise from seed
``seed * 1_000_003 + i``, whatever the batch), and scores PSNR and SSIM (scikit-image) against the clean
images, beside the degraded input's own PSNR / SSIM. The record holds NFE (network calls per image), the
sampling wall time and a PNG grid of degraded / restored / clean images.

    python -m suite run mrs mnist-denoise50-v0 --nfe 10
    python -m suite run ir-posterior mnist-denoise50-v0 --nfe 100

LPIPS needs AlexNet weights that cannot be downloaded here; ``lpips_weights`` (a local ``lpips`` package with
its weights) adds it when a user has them; without them the record simply has no LPIPS.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from .errors import ConfigError, SuiteError
from .generation import _record, cache_dir
from .results import RunRecord, new_run_dir

SEED_STRIDE = 1_000_003


@dataclass(frozen=True)
class RestorationConfig:
    """Options of a restoration run (the sampler takes the ones it knows)."""

    nfe: int | None = None  # network calls per image; default: the sampler's (mrs 20, ir-sde / ir-posterior 100)
    # MRS (official test.yml defaults: SDE, data form, order 2, uniform log-SNR)
    solver: str = "sde"  # ode | sde
    form: str = "data"  # data | noise: what the MRS step integrates
    order: int = 2  # 1 | 2 (multistep)
    time_schedule: str = "logsnr"  # uniform-t | logsnr | karras
    logsnr_min: float = -5.0
    rho: float = 7.0  # karras schedule
    lower_order_final: bool = False
    denoise_last: bool = False
    clip: bool = True  # clamp the restored image to [-1, 1] (the official clips to [0, 1])
    official_unit_step: bool = False  # ir-posterior: the official baseline's one-index steps (to compare)
    # the conditional model trained here (cached by content hash)
    param: str = "noise"  # what the network predicts: noise | data | velocity
    train_steps: int = 2000  # ~12 min for MNIST at 1 thread (2.8 steps/s beside a busy core)
    ch: int = 16
    lr: float = 1e-3
    batch: int = 64  # training batch
    model_seed: int = 0  # the model's seed (the run seed only drives sampling)
    # evaluation
    n_test: int | None = None  # test images restored (default: the task's)
    batch_size: int = 250  # images restored at once


def _check(cfg: RestorationConfig) -> None:
    """Every option checked before any training (one clear line, nothing lost)."""
    from generative.samplers.mrs import FORMS, PARAMS, SOLVERS, TIME_SCHEDULES

    for name, value, allowed in (("solver", cfg.solver, SOLVERS), ("form", cfg.form, FORMS),
                                 ("time_schedule", cfg.time_schedule, TIME_SCHEDULES), ("param", cfg.param, PARAMS),
                                 ("order", cfg.order, (1, 2))):
        if value not in allowed:
            raise ConfigError(f"{name}={value!r} is not one of {', '.join(map(str, allowed))}")
    # counts (nfe, train_steps, ch, batch, batch_size, n_test) are checked positive by methods.check_ranges


def _model_config(rs, cfg: RestorationConfig):
    from generative.mr_training import MRTrainConfig

    n_train = 9000 if rs.dataset == "cifar10-jpeg" else None  # its only split: train 0-8999, test 9000-9999
    return MRTrainConfig(dataset=rs.dataset, n_train=n_train, degradation=rs.degradation,
                         degradation_params=rs.params, param=cfg.param, lam=rs.lam, ch=cfg.ch,
                         n_steps=cfg.train_steps, batch_size=cfg.batch, lr=cfg.lr, seed=cfg.model_seed)


def test_images(rs, n: int | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(dataset indices, clean, degraded) of a task's test images (deterministic)."""
    from generative.datasets import load_image_dataset

    ds = load_image_dataset(rs.dataset, "test")
    n = min(n or rs.n_test, len(ds))
    start = 9000 if rs.dataset == "cifar10-jpeg" else 0
    idx = torch.arange(start, start + n) if start + n <= len(ds) else torch.arange(len(ds) - n, len(ds))
    clean = ds.x[idx]
    return idx, clean, rs.build_degradation().apply(clean, rs.seed, idx)


def quality(restored: torch.Tensor, clean: torch.Tensor) -> dict[str, float]:
    """Mean PSNR (dB) and, for images of at least 11 px, mean SSIM, on [-1, 1] images (data range 2)."""
    from generative.metrics import SSIM_KERNEL, psnr, ssim

    out = {"psnr": float(psnr(restored, clean).clamp(max=100.0).mean())}
    if min(clean.shape[-2:]) >= SSIM_KERNEL:
        out["ssim"] = float(ssim(restored, clean).mean())
    return out


def run_restoration(method: str, spec, cfg: RestorationConfig, seed: int, out: str | Path, progress: bool = True,
                    device: str = "cpu") -> RunRecord:
    from tqdm.auto import tqdm

    from generative.metrics import save_image_grid
    from generative.mr_training import load_mr_model, train_mr_model
    from generative.samplers import call_sampler, get_sampler
    from generative.samplers.mrs import MRPredictor
    from generative.sdes import generators_from_seeds

    from .tasks.restoration import restoration_spec

    if spec.kind != "restoration":
        raise SuiteError(f"method {method!r} restores images; {spec.id!r} is a {spec.kind} task")
    sampler = get_sampler(method)
    _check(cfg)
    rs = restoration_spec(spec)
    t0 = time.perf_counter()
    path = train_mr_model(_model_config(rs, cfg), cache_dir(out) / "mr_models", progress=progress)
    model = load_mr_model(path, device=device)
    train_wall = time.perf_counter() - t0

    idx, clean, mu = test_images(rs, cfg.n_test)
    steps = sampler.steps_for_nfe(cfg.nfe, {}) if cfg.nfe else sampler.default_steps
    predictor = MRPredictor(model.predict, model.sde, model.param)
    opts = {k: getattr(cfg, k) for k in ("solver", "form", "order", "time_schedule", "logsnr_min", "rho",
                                         "lower_order_final", "denoise_last", "clip", "official_unit_step")}
    n = len(idx)
    bar = tqdm(total=n * sampler.nfe(steps, {}), disable=not progress, unit="nfe", mininterval=2.0,
               desc=f"{method} {spec.id}: NFE (images x calls)")
    restored, nfe = [], 0
    t1 = time.perf_counter()
    with torch.no_grad():
        for i in range(0, n, cfg.batch_size):
            sl = slice(i, i + cfg.batch_size)
            gens = generators_from_seeds((idx[sl] + seed * SEED_STRIDE).tolist())
            m = mu[sl].to(device)
            x_T = model.sde.prior_sample(m, gens)
            res = call_sampler(sampler, predictor, x_T, None, gens, m, n_steps=steps, **opts)
            restored.append(res.x.cpu())
            nfe = max(nfe, res.nfe)
            bar.update(len(m) * res.nfe)
    bar.close()
    wall = time.perf_counter() - t1
    x = torch.cat(restored)
    bad = float((~torch.isfinite(x)).flatten(1).any(1).float().mean())
    metrics = {**quality(x, clean), "nfe": float(nfe), "n_test": float(n), "sample_wall_time_s": wall,
               "model_wall_time_s": train_wall, "nonfinite_fraction": bad}
    metrics.update({f"{k}_degraded": v for k, v in quality(mu, clean).items()})
    if bad:
        metrics["psnr"] = math.nan  # marked diverged, never tabulated
    run_dir = new_run_dir(out, method, spec.id, seed)
    grid = run_dir / f"{spec.id}-{method}-nfe{nfe}-seed{seed}.png"
    k = min(8, n)
    save_image_grid(torch.cat([mu[:k], x[:k].clamp(-1, 1), clean[:k]]), grid, nrow=k)
    return _record(method, spec, dataclasses.replace(cfg, nfe=nfe), seed, out, device, metrics,
                   time.perf_counter() - t0, {"checkpoint": str(path), "sample_grid_png": str(grid),
                                              "dataset": rs.dataset, "rows": "degraded / restored / clean"},
                   run_dir=run_dir)
