"""Train-then-sample for image tasks: train a score model on an image data set, sample, and score samples.

``train_score_model`` trains a :class:`~generative.models.NoisePredictionScoreModel` (U-Net by default) by
denoising score matching and returns its checkpoint path; ``sample_and_evaluate`` loads the EMA weights,
draws samples with one of the Song et al. samplers and reports NFE, ``fd-lenet``, KID, wall time and a PNG
grid. The feature classifier for ``fd-lenet``/KID is trained once per data set and cached in the output
folder as safetensors. ``reference_baselines`` gives the same metrics for two trivial "generators"
(Gaussian noise and a Gaussian fitted to the pixels) as a floor to compare a model against.

Nothing here prints; pass ``callback(stage, step, total, metrics)`` for progress.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from .datasets import ImageDataset, default_train_split, load_image_dataset
from .metrics import extract_features, frechet_distance, kid, save_image_grid
from .models import LeNetClassifier, NoiseLevelClassifier, train_classifier, train_noise_classifier
from .samplers import ScoreModel, call_sampler, get_sampler
from .training import (
    DSMConfig,
    ScoreTrainer,
    build_score_model,
    build_sde,
    check_digest,
    file_sha256,
    load_score_model,
)

__all__ = [
    "ScoreSDEConfig",
    "train_score_model",
    "sample_and_evaluate",
    "evaluate_images",
    "reference_baselines",
    "feature_classifier",
    "noise_classifier",
]

Callback = Callable[[str, int, int, Mapping[str, float]], None]


@dataclass(frozen=True)
class ScoreSDEConfig:
    """Everything that defines a trained image score model.

    Defaults: a small U-Net (0.7 M parameters) on ``digits-8x8`` for the CPU: ~0.43 s/step at batch 128
    on one free core, so 1500 steps take ~11 min (measured 28 min on a shared, heavily loaded 2-core
    machine). Set ``torch.set_num_threads(1)`` on small shared machines: extra threads only contend.
    For 28×28 MNIST use e.g. ``ch=64, ch_mult=(1, 2, 2), attn_resolutions=(7,), num_res_blocks=2,
    n_steps=50_000, lr=2e-4, warmup=5000`` (a GPU job); for 32×32 CIFAR-10 the score_sde DDPM++ settings
    ``ch=128, ch_mult=(1, 2, 2, 2), attn_resolutions=(16,), num_res_blocks=4, dropout=0.1``,
    ``ema_rate=0.9999``, ``lr=2e-4``, ``warmup=5000``.
    """

    # network (generative.models.unet.UNet)
    net: str = "unet"  # "unet" (images) or "mlp" (flattened images, for quick experiments)
    ch: int = 32  # base channels (MLP: hidden width)
    ch_mult: tuple[int, ...] = (1, 2)  # channel multiplier per level; 8×8 → 4×4
    num_res_blocks: int = 1  # residual blocks per level
    attn_resolutions: tuple[int, ...] = (4,)  # self-attention at these feature-map sizes
    dropout: float = 0.0  # no dropout: short runs do not over-fit
    embedding: str = "fourier"  # "fourier" (NCSN++) or "positional" (DDPM++) noise-label embedding
    noise_label: str = "log_sigma"  # "log_sigma" = log(std/mean_coef), or "time" = 999 t
    input_scaling: bool = True  # feed x / sqrt(a_t² σ_data² + s_t²) to the network
    # SDE: constructor overrides for VESDE/VPSDE/SubVPSDE, e.g. {"sigma_max": 20.0}
    sde_kwargs: Mapping[str, float] = field(default_factory=dict)
    # training (generative.training.DSMConfig); lr and warm-up shortened for CPU-sized runs
    n_steps: int = 1500  # optimiser steps
    batch_size: int = 128
    lr: float = 1e-3
    warmup: int = 100
    grad_clip: float = 1.0
    ema_rate: float = 0.999
    likelihood_weighting: bool = False
    reduce_mean: bool = False
    checkpoint_every: int = 500  # steps between checkpoints (resume granularity)
    # feature classifier for fd-lenet / KID
    classifier_epochs: int = 20
    device: str = "cpu"

    def dsm(self) -> DSMConfig:
        return DSMConfig(batch_size=self.batch_size, lr=self.lr, warmup=self.warmup, grad_clip=self.grad_clip,
                         ema_rate=self.ema_rate, likelihood_weighting=self.likelihood_weighting,
                         reduce_mean=self.reduce_mean)

    def model_spec(self, shape: tuple[int, int, int]) -> dict[str, Any]:
        C, H, W = shape
        if self.net == "unet":
            kwargs = {"image_size": H, "in_channels": C, "ch": self.ch, "ch_mult": list(self.ch_mult),
                      "num_res_blocks": self.num_res_blocks, "attn_resolutions": list(self.attn_resolutions),
                      "dropout": self.dropout, "embedding": self.embedding}
        elif self.net == "mlp":
            kwargs = {"dim": C * H * W, "hidden": self.ch, "embedding": self.embedding}
        else:
            raise ValueError(f"unknown net {self.net!r}")
        return {"net": self.net, "net_kwargs": kwargs, "noise_label": self.noise_label,
                "input_scaling": self.input_scaling, "shape": [C, H, W]}

    def to_json(self) -> dict[str, Any]:
        """JSON-native dict (tuples as lists), as stored in checkpoint sidecars."""
        d = asdict(self)
        d["sde_kwargs"] = dict(self.sde_kwargs)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> ScoreSDEConfig:
        names = {f.name for f in fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"unknown ScoreSDEConfig fields: {sorted(unknown)}")
        d = dict(d)
        for k in ("ch_mult", "attn_resolutions"):
            if k in d:
                d[k] = tuple(d[k])
        return cls(**d)





def model_key(extra: Mapping[str, Any], seed: int) -> str:
    """Content hash of a training *recipe*: SHA-256 (first 12 hex digits) of everything that determines the
    weights — data set and split, SDE, network spec, training config and seed — except the step count (the
    file name carries it) and where/how often it is checkpointed. Runs with the same recipe and steps reuse
    one cached model; a longer run of the same recipe resumes from the longest shorter one."""
    cfg = _resume_key(dict(extra["config"]))
    blob = json.dumps({**{k: v for k, v in extra.items() if k != "config"}, "config": cfg, "seed": seed},
                      sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def _shorter_run(out_dir: Path, stem: str, n_steps: int) -> Path | None:
    """The longest finished-or-not checkpoint of the same recipe with fewer than ``n_steps`` steps."""
    best, best_steps = None, -1
    for p in out_dir.glob(f"{stem}-s*.safetensors"):
        try:
            k = int(p.stem.rsplit("-s", 1)[1])
        except ValueError:
            continue
        if best_steps < k < n_steps:
            best, best_steps = p, k
    return best


def _resume_key(config_json: Mapping[str, Any]) -> dict[str, Any]:
    # n_steps may grow on resume (train longer); where/how often to checkpoint does not change the model
    return {k: v for k, v in config_json.items() if k not in ("n_steps", "checkpoint_every", "device")}


def train_score_model(
    dataset_name: str,
    sde_name: str,
    config: ScoreSDEConfig = ScoreSDEConfig(),
    seed: int = 0,
    out_dir: str | os.PathLike = "runs/score_models",
    callback: Callback | None = None,
    *,
    resume: bool = True,
    data: ImageDataset | None = None,
) -> Path:
    """Train a score model on ``dataset_name`` (its training split) under SDE ``sde_name`` ("vesde",
    "vpsde", "subvpsde"); returns the checkpoint path ``out_dir/<dataset>-<sde>-<model_key>-s<n_steps>.safetensors``
    (:func:`model_key`): a finished one is returned as it is, without training.

    If that checkpoint exists unfinished (a killed run), or the same recipe was trained for fewer steps, and
    ``resume`` is true, training continues from it to ``config.n_steps`` and ends with the same weights as
    an uninterrupted run. ``data``
    overrides the loaded data set (tests). ``callback("train", step, n_steps, {"loss": ...})``.
    """
    out_dir = Path(out_dir)
    ds = data if data is not None else load_image_dataset(dataset_name, default_train_split(dataset_name))
    sde = build_sde(sde_name, **dict(config.sde_kwargs))
    spec = config.model_spec(ds.shape)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)  # network initialisation
        model = build_score_model(spec, sde)
    trainer = ScoreTrainer(model, sde, config.dsm(), seed=seed, device=config.device)
    extra = {"dataset": dataset_name, "split": ds.split, "sde": {"name": sde_name, "kwargs": dict(config.sde_kwargs)},
             "model": spec, "config": config.to_json()}
    stem = f"{dataset_name}-{sde_name}-{model_key(extra, seed)}"
    path = out_dir / f"{stem}-s{config.n_steps}.safetensors"
    previous_wall = 0.0
    start = path if path.exists() else _shorter_run(out_dir, stem, config.n_steps)
    if resume and start is not None:
        meta = trainer.load(start)
        if _resume_key(meta.get("config", {})) != _resume_key(extra["config"]):
            raise ValueError(f"{path} was trained with a different config; delete it or pass resume=False")
        previous_wall = float(meta.get("train_wall_time_s", 0.0))
        if start == path and trainer.step >= config.n_steps:
            return path  # cache hit: a finished model of this recipe
    cb = None if callback is None else (lambda step, total, m: callback("train", step, total, m))
    t0 = time.perf_counter()
    trainer.train(ds.x, config.n_steps, callback=cb, checkpoint_path=path,
                  checkpoint_every=config.checkpoint_every, extra=extra)
    meta = json.loads(path.with_suffix(".json").read_text())
    meta["train_wall_time_s"] = previous_wall + time.perf_counter() - t0
    path.with_suffix(".json").write_text(json.dumps(meta, indent=2, sort_keys=True))
    return path


# ---------------------------------------------------------------------------------- noise-level classifier
def noise_classifier(dataset_name: str, sigmas: torch.Tensor, out_dir: str | os.PathLike, *, n_steps: int = 3000,
                     seed: int = 0, device: str = "cpu", data: ImageDataset | None = None,
                     callback: Callback | None = None) -> NoiseLevelClassifier:
    """The Denoising-MCMC noise-level classifier for ``dataset_name`` on the grid ``sigmas``, cached by
    content hash (data set, grid, steps, seed) as ``out_dir/noise-classifier-<dataset>-<hash>.safetensors``
    with a JSON sidecar; trained on the training split when missing
    (:func:`generative.models.train_noise_classifier`)."""
    ds = data if data is not None else load_image_dataset(dataset_name, default_train_split(dataset_name))
    recipe = {"dataset": dataset_name, "split": ds.split, "n": len(ds), "sigmas": [float(v) for v in sigmas],
              "n_steps": n_steps, "seed": seed, "net": "NoiseLevelClassifier(width=32)"}
    key = hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:12]
    path = Path(out_dir) / f"noise-classifier-{dataset_name}-{key}.safetensors"
    if path.exists():
        side = path.with_suffix(".json")
        want = json.loads(side.read_text()).get("sha256") if side.exists() else None
        check_digest(path, want, "delete it to train it again")
        model = NoiseLevelClassifier(ds.x.shape[1], len(sigmas))
        model.load_state_dict(load_file(str(path)))
        return model.to(device).eval()
    cb = None if callback is None else (lambda s, n, loss: callback("noise-classifier", s, n, {"loss": loss}))
    t0 = time.perf_counter()
    model = train_noise_classifier(ds.x.to(device), sigmas, n_steps=n_steps, seed=seed, callback=cb)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    save_file({k: v.contiguous().cpu() for k, v in model.state_dict().items()}, str(tmp))
    recipe["sha256"] = file_sha256(tmp)
    os.replace(tmp, path)
    recipe["train_wall_time_s"] = time.perf_counter() - t0
    path.with_suffix(".json").write_text(json.dumps(recipe, indent=2, sort_keys=True))
    return model


# ------------------------------------------------------------------------------------- feature classifier
def feature_classifier(dataset_name: str, out_dir: str | os.PathLike, *, epochs: int = 20, seed: int = 0,
                       device: str = "cpu", data: ImageDataset | None = None,
                       callback: Callback | None = None) -> LeNetClassifier:
    """The LeNet feature network for ``dataset_name``: loaded from ``out_dir/classifier-<dataset>.safetensors``
    if present, else trained on the data set's training split (``epochs``, ``seed``) and saved there with a
    JSON sidecar (test accuracy where a test split exists)."""
    out_dir = Path(out_dir)
    path = out_dir / f"classifier-{dataset_name}.safetensors"
    ds = data if data is not None else load_image_dataset(dataset_name, default_train_split(dataset_name))
    n_classes = int(ds.y.max()) + 1
    if path.exists():
        side = path.with_suffix(".json")
        want = json.loads(side.read_text()).get("sha256") if side.exists() else None
        check_digest(path, want, "delete it to train it again")
        model = LeNetClassifier(ds.x.shape[1], n_classes)
        model.load_state_dict(load_file(str(path)))
        return model.to(device).eval()
    cb = None if callback is None else (lambda s, n, loss: callback("classifier", s, n, {"loss": loss}))
    model = train_classifier(ds.x.to(device), ds.y.to(device), n_epochs=epochs, seed=seed, n_classes=n_classes,
                             callback=cb)
    meta: dict[str, Any] = {"dataset": dataset_name, "split": ds.split, "epochs": epochs, "seed": seed}
    if data is None and dataset_name != "cifar10-jpeg":
        test = load_image_dataset(dataset_name, "test")
        with torch.no_grad():
            pred = torch.cat([model(test.x[i:i + 1000].to(device)).argmax(-1).cpu()
                              for i in range(0, len(test), 1000)])
        meta["test_accuracy"] = float((pred == test.y).float().mean())
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    save_file({k: v.contiguous().cpu() for k, v in model.state_dict().items()}, str(tmp))
    meta["sha256"] = file_sha256(tmp)
    os.replace(tmp, path)
    path.with_suffix(".json").write_text(json.dumps(meta, indent=2, sort_keys=True))
    return model


def _reference_features(classifier, ds: ImageDataset, n_max: int, device) -> torch.Tensor:
    x = ds.x[:n_max]
    return extract_features(classifier.features, x, device=device)


def evaluate_images(images: torch.Tensor, dataset_name: str, out_dir: str | os.PathLike, *,
                    n_reference: int = 10_000, kid_subset_size: int = 1000, classifier_epochs: int = 20,
                    device: str = "cpu", data: ImageDataset | None = None, seed: int = 0) -> dict[str, float]:
    """``fd-lenet`` and KID (on LeNet features) of ``images`` in [-1, 1] against the data set's training
    split (up to ``n_reference`` images)."""
    ds = data if data is not None else load_image_dataset(dataset_name, default_train_split(dataset_name))
    clf = feature_classifier(dataset_name, out_dir, epochs=classifier_epochs, device=device, data=data)
    ref = _reference_features(clf, ds, n_reference, device)
    feats = extract_features(clf.features, images.clamp(-1, 1), device=device)
    k_mean, k_std = kid(feats, ref, subset_size=kid_subset_size, seed=seed)
    return {"fd-lenet": frechet_distance(feats, ref), "kid": k_mean, "kid_std": k_std}


# ---------------------------------------------------------------------------------------------- sampling
def sample_and_evaluate(
    checkpoint: str | os.PathLike,
    sampler_name: str = "pc",
    n_samples: int = 1000,
    seed: int = 0,
    *,
    n_steps: int | None = 100,
    sampler_kwargs: Mapping[str, Any] | None = None,
    out_dir: str | os.PathLike | None = None,
    batch_size: int = 1000,
    device: str = "cpu",
    grid_size: int = 100,
    data: ImageDataset | None = None,
    classifier: Callable[[torch.Tensor], torch.Tensor] | None = None,
    classifier_sigmas: torch.Tensor | None = None,
    feature_dir: str | os.PathLike | None = None,
) -> dict[str, Any]:
    """Sample ``n_samples`` images from a checkpoint's EMA model with the registered sampler
    ``sampler_name`` (:mod:`generative.samplers`; ``n_steps`` in the sampler's own unit) and evaluate them.
    ``classifier``/``classifier_sigmas``: the noise-level classifier for ``dmcmc``. ``feature_dir``: where the
    fd-lenet feature network is cached (default ``out_dir``; pass one folder for runs that are compared).

    Returns ``{"nfe", "fd-lenet", "kid", "kid_std", "sample_wall_time_s", "grid_png", "n_samples", "info", ...}``.
    Small, briefly trained models predict ε poorly at the smallest noise levels (σ ≲ 0.05 on digits), so
    SDE samplers that run to the SDE's eps (1e-3) leave visible residual noise; end them at a larger time
    and take one Tweedie step (``sampler_kwargs={"eps": 0.03, "denoise": "tweedie"}``), or use ``"ode"``
    (e.g. ``{"rtol": 1e-3, "atol": 1e-3}``).

    Randomness: batch b uses ``torch.Generator().manual_seed(seed * 1_000_003 + b)`` (prior draw, then the
    sampler's noise). ``dmcmc`` runs ``ceil(batch / n_rounds)`` persistent chains per batch. The grid of the
    first ``grid_size`` samples is written to ``out_dir`` (default: the checkpoint's folder).
    """
    spec = get_sampler(sampler_name)
    checkpoint = Path(checkpoint)
    out_dir = Path(out_dir) if out_dir is not None else checkpoint.parent
    model, meta = load_score_model(checkpoint, device=device)
    sde = model.sde
    if spec.needs_classifier and classifier is None:
        raise ValueError(f"sampler {sampler_name!r} needs a noise-level classifier")
    score_model = ScoreModel(model, sde, classifier, classifier_sigmas)
    shape = tuple(meta["model"]["shape"])
    kwargs = dict(sampler_kwargs or {})
    kwargs.setdefault("n_steps", n_steps)
    rounds = int(kwargs.get("n_rounds") or 1)
    xs, nfe, infos = [], 0, []
    t0 = time.perf_counter()
    with torch.no_grad():
        for b, start in enumerate(range(0, n_samples, batch_size)):
            n = min(batch_size, n_samples - start)
            g = torch.Generator(device=device).manual_seed(seed * 1_000_003 + b)
            n_init = -(-n // rounds) if spec.family == "dmcmc" else n
            x_init = sde.prior_sample((n_init,) + shape, g, device=device)
            res = call_sampler(spec, score_model, x_init, None, g, **kwargs)
            xs.append(res.x[:n].cpu())
            nfe = max(nfe, res.nfe)
            infos.append({k: v for k, v in res.info.items() if not isinstance(v, torch.Tensor)})
    wall = time.perf_counter() - t0
    x = torch.cat(xs)
    grid = save_image_grid(x[:grid_size], out_dir / f"{checkpoint.stem}-{sampler_name}-seed{seed}.png",
                           nrow=10, scale=4 if shape[-1] <= 16 else 2)
    scores = evaluate_images(x, meta["dataset"], feature_dir or out_dir, device=device, data=data, seed=seed,
                             classifier_epochs=meta.get("config", {}).get("classifier_epochs", 20))
    return {"dataset": meta["dataset"], "sde": meta["sde"]["name"], "sampler": sampler_name, "n_steps": n_steps,
            "nfe": nfe, "n_samples": n_samples, "seed": seed, "sample_wall_time_s": wall, "grid_png": str(grid),
            "checkpoint": str(checkpoint), "train_step": meta["step"], **scores, "info": infos[0] if infos else {},
            "nonfinite_fraction": float((~torch.isfinite(x)).any(dim=(1, 2, 3)).float().mean())}


def reference_baselines(dataset_name: str, out_dir: str | os.PathLike, n_samples: int = 1000, seed: int = 0,
                        *, classifier_epochs: int = 20, device: str = "cpu", data: ImageDataset | None = None,
                        feature_dir: str | os.PathLike | None = None
                        ) -> dict[str, dict[str, float]]:
    """Metrics of two trivial generators, as floors for a trained model: ``"noise"`` (N(0, I) pixels,
    clipped to [-1, 1]) and ``"fitted_gaussian"`` (N(mean, covariance) of the training pixels, clipped)."""
    ds = data if data is not None else load_image_dataset(dataset_name, default_train_split(dataset_name))
    g = torch.Generator().manual_seed(seed)
    shape = (n_samples,) + ds.shape
    noise = torch.randn(shape, generator=g)
    flat = ds.x.reshape(len(ds), -1).double()
    mean = flat.mean(0)
    cov = torch.cov(flat.T) + 1e-6 * torch.eye(flat.shape[1], dtype=torch.float64)
    chol = torch.linalg.cholesky(cov)
    fitted = (mean + torch.randn(n_samples, flat.shape[1], generator=g, dtype=torch.float64) @ chol.T)
    fitted = fitted.float().reshape(shape)
    save_image_grid(fitted[:100].clamp(-1, 1), Path(out_dir) / f"{dataset_name}-fitted-gaussian.png", nrow=10,
                    scale=4 if ds.shape[-1] <= 16 else 2)
    return {name: evaluate_images(x, dataset_name, feature_dir or out_dir, device=device, data=data, seed=seed,
                                  classifier_epochs=classifier_epochs)
            for name, x in (("noise", noise), ("fitted_gaussian", fitted))}
