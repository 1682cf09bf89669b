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
