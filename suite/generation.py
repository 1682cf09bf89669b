"""Generative methods: sampling-only runs on analytic tasks (exact error of the sampler, no network) and
train-then-sample runs on image tasks. Each produces a `RunRecord` with NFE, metric values and the sampling
wall time; the headline metric of a task is named in its spec (`extra["metric"]`).

Sample i depends only on its seed ``seed * 1_000_003 + i`` (one generator per sample), whatever the batch.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from .errors import SuiteError
from .results import RunRecord, provenance, save_record

SAMPLERS = ("em", "reverse-diffusion", "ancestral", "langevin", "pc", "ode")


@dataclass(frozen=True)
class SamplerConfig:
    sde: str = "vp"  # vp | subvp | ve
    nfe: int | None = None  # score evaluations per sample; sets the number of steps (default: 1000 steps)
    n_steps: int | None = None  # grid steps (overrides nfe)
    snr: float = 0.16  # Langevin corrector signal-to-noise ratio (CIFAR-10 setting)
    corrector_steps: int = 1
    # Langevin step-size norms: "sample" (sample i independent of the batch) or "batch" (the official rule).
    # None: the task's default — "batch" on 2-D data, where per-sample ‖s‖ near a mode is ~0 and the step
    # 1/‖s‖² blows up; "sample" elsewhere.
    corrector_norm: str | None = None
    predictor: str = "reverse_diffusion"  # for pc: euler_maruyama | reverse_diffusion | ancestral
    rtol: float = 1e-5  # probability-flow ODE tolerances (official: 1e-5)
    atol: float = 1e-5
    n_samples: int | None = None  # default: the task's
    batch_size: int = 1024
    denoise: str = "mean"  # mean | tweedie | none (final step), for SDE samplers


def _sde(name: str):
    from generative import sdes

    table = {"vp": sdes.VPSDE, "subvp": sdes.SubVPSDE, "sub-vp": sdes.SubVPSDE, "ve": sdes.VESDE}
    if name not in table:
        raise SuiteError(f"unknown sde {name!r}; choose vp, subvp or ve")
    return table[name]()


def sample(method: str, cfg: SamplerConfig, score_fn, sde, shape: tuple[int, ...], seeds: torch.Tensor):
    from generative.samplers import score_sde as S

    steps_per_eval = {
        "em": 1,
        "reverse-diffusion": 1,
        "ancestral": 1,
        "langevin": cfg.corrector_steps,
        "pc": 1 + cfg.corrector_steps,
    }
    kwargs = {"generator": [int(s) for s in seeds], "dtype": torch.float64}
    if method == "ode":
        return S.ode_sample(score_fn, sde, shape, rtol=cfg.rtol, atol=cfg.atol, **kwargs)
    n_steps = cfg.n_steps or (max(1, cfg.nfe // steps_per_eval[method]) if cfg.nfe else sde.N)
    corrector = S.Corrector(snr=cfg.snr, n_steps=cfg.corrector_steps, norm=cfg.corrector_norm)
    common = dict(denoise=cfg.denoise, **kwargs)
    if method == "em":
        return S.euler_maruyama(score_fn, sde, shape, n_steps, **common)
    if method == "reverse-diffusion":
        return S.reverse_diffusion(score_fn, sde, shape, n_steps, **common)
    if method == "ancestral":
        return S.ancestral(score_fn, sde, shape, n_steps, **common)
    if method == "langevin":
        return S.annealed_langevin(score_fn, sde, shape, n_steps, corrector=corrector, **common)
    if method == "pc":
        return S.pc_sample(score_fn, sde, shape, n_steps, predictor=cfg.predictor, corrector=corrector, **common)
    raise SuiteError(f"unknown sampler {method!r}; choose from {', '.join(SAMPLERS)}")


def analytic_metrics(x: torch.Tensor, mixture) -> dict[str, float]:
    from generative import analytic as A

    x = x.reshape(x.shape[0], -1).double()
    mean, cov = x.mean(0), torch.cov(x.T)
    return {
        "mmd2": float(A.mmd2_to_mixture(x, mixture)),
        "w2_moments": float(A.gaussian_w2(mean, cov, mixture.mean(), mixture.cov())),
        "nll": float(-mixture.log_prob(x).mean()),
        "nll_data": float(-mixture.log_prob(mixture.sample(len(x), torch.Generator().manual_seed(12345))).mean()),
    }


def run_generative(method: str, spec, cfg, seed: int, out: str | Path, progress: bool = True) -> RunRecord:
    from generative import analytic as A

    if "distribution" not in spec.extra:
        raise SuiteError(
            f"sampler {method!r} runs on analytic tasks (gmm-2d, gmm-64d); for image tasks use `score-sde`"
        )
    mixture = getattr(A, spec.extra["distribution"])()
    if cfg.corrector_norm is None:
        cfg = dataclasses.replace(cfg, corrector_norm=spec.extra.get("corrector_norm", "sample"))
    sde = _sde(cfg.sde)
    score_fn = mixture.score_fn(sde)
    n = cfg.n_samples or spec.extra["n_samples"]
    seeds = torch.arange(n, dtype=torch.long) + seed * 1_000_003
    t0 = time.perf_counter()
    xs, nfe = [], 0
    for i in range(0, n, cfg.batch_size):
        res = sample(
            method, cfg, score_fn, sde, (min(cfg.batch_size, n - i), mixture.dim), seeds[i : i + cfg.batch_size]
        )
        xs.append(res.x)
        nfe = max(nfe, res.nfe)
    wall = time.perf_counter() - t0
    x = torch.cat(xs)
    # the samplers stop at eps: their target is the exact marginal p_eps (differs from p_0 by O(eps))
    metrics = analytic_metrics(x, mixture.marginal(sde, sde.eps))
    metrics.update({"nfe": float(nfe), "sample_wall_time_s": wall, "n_samples": float(n)})
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S-%f")
    run_dir = Path(out) / method / spec.id / f"seed{seed}-{stamp}"
    status = "ok" if all(map(lambda v: v == v and abs(v) != float("inf"), metrics.values())) else "diverged"
    rec = RunRecord(
        method=method,
        task=spec.id,
        seed=seed,
        config=dataclasses.asdict(cfg),
        task_spec=spec.to_dict(),
        status=status,
        steps=0,
        metrics=metrics if status == "ok" else {},
        wall_time_s=wall,
        run_id=run_dir.name,
        provenance=provenance("cpu", {"command": " ".join(sys.argv)}),
    )
    save_record(rec, run_dir / "record.json")
    return rec


# --------------------------------------------------------------------------- train-then-sample (images)
@dataclass(frozen=True)
class ScoreSDERunConfig:
    """`score-sde` on an image task: train a small score model here (DSM, EMA), then sample and score it.
    Training fields map onto `generative.pipeline.ScoreSDEConfig` (its docstring has MNIST/CIFAR settings)."""

    sde: str = "vp"  # vp | subvp | ve
    sampler: str = "pc"  # pc | reverse_diffusion | euler_maruyama | ancestral | ode
    nfe: int | None = None  # sugar for sample_steps (pc: 2 evaluations per step)
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


def run_score_sde(method: str, spec, cfg: ScoreSDERunConfig, seed: int, out: str | Path, progress: bool = True):
    from generative import pipeline as P

    if "dataset" not in spec.extra:
        raise SuiteError(f"score-sde trains on image tasks (digits-8x8, mnist, cifar10, …), not {spec.id}")
    sde_name = {"vp": "vpsde", "subvp": "subvpsde", "sub-vp": "subvpsde", "ve": "vesde"}.get(cfg.sde)
    if sde_name is None:
        raise SuiteError(f"unknown sde {cfg.sde!r}; choose vp, subvp or ve")
    if cfg.sampler not in P.SAMPLERS:
        raise SuiteError(f"unknown sampler {cfg.sampler!r}; choose from {', '.join(sorted(P.SAMPLERS))}")
    dataset = spec.extra["dataset"]
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S-%f")
    root = Path(out) / method / spec.id
    run_dir = root / f"seed{seed}-{stamp}"
    train_cfg = P.ScoreSDEConfig(n_steps=cfg.train_steps, batch_size=cfg.batch_size, lr=cfg.lr, ch=cfg.ch,
                                 ema_rate=cfg.ema_rate)
    from tqdm.auto import tqdm

    bar = tqdm(total=cfg.train_steps, desc=f"score-sde {spec.id} train", unit="step", disable=not progress)

    def callback(stage, step, total, m):
        bar.update(step - bar.n)
        if "loss" in m:
            bar.set_postfix(loss=f"{float(m['loss']):.4f}", refresh=False)

    t0 = time.perf_counter()
    try:  # models live beside the runs, keyed by dataset/SDE/seed: a rerun with the same config reuses one
        ckpt = P.train_score_model(dataset, sde_name, train_cfg, seed, root / "models", callback)
    except (FileNotFoundError, ValueError) as e:
        raise SuiteError(str(e)) from e
    finally:
        bar.close()
    train_wall = time.perf_counter() - t0
    steps = cfg.sample_steps
    if cfg.nfe:
        steps = max(1, cfg.nfe // 2) if cfg.sampler == "pc" else cfg.nfe
    kwargs = {"rtol": cfg.rtol, "atol": cfg.atol} if cfg.sampler == "ode" else {"denoise": cfg.denoise}
    if cfg.sampler != "ode" and cfg.sample_eps is not None:
        kwargs["eps"] = cfg.sample_eps
    n = cfg.n_samples or spec.extra["n_samples"]
    res = P.sample_and_evaluate(ckpt, cfg.sampler, n, seed, n_steps=steps, sampler_kwargs=kwargs, out_dir=run_dir)
    metrics = {"fd_lenet": float(res["fd-lenet"]), "kid": float(res["kid"]), "kid_std": float(res["kid_std"]),
               "nfe": float(res["nfe"]), "sample_wall_time_s": float(res["sample_wall_time_s"]),
               "train_wall_time_s": train_wall, "n_samples": float(n),
               "nonfinite_fraction": float(res["nonfinite_fraction"])}
    if cfg.baselines:
        for name, vals in P.reference_baselines(dataset, run_dir, n, seed).items():
            metrics[f"{name}_fd_lenet"] = float(vals["fd-lenet"])
            metrics[f"{name}_kid"] = float(vals["kid"])
    status = "ok" if metrics["nonfinite_fraction"] == 0 else "diverged"
    rec = RunRecord(method=method, task=spec.id, seed=seed, config=dataclasses.asdict(cfg), task_spec=spec.to_dict(),
                    status=status, steps=cfg.train_steps, metrics=metrics, wall_time_s=time.perf_counter() - t0,
                    run_id=run_dir.name,
                    provenance=provenance("cpu", {"command": " ".join(sys.argv), "checkpoint": str(ckpt),
                                                  "sample_grid_png": res["grid_png"], "dataset": dataset}))
    save_record(rec, run_dir / "record.json")
    return rec
