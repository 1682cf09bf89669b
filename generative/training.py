"""Denoising score matching (continuous time) for score models, with EMA, checkpoints and exact resume.

Loss (official ``losses.get_sde_loss_fn``): t ~ U(eps, T), z ~ N(0, I), x_t = a_t x_0 + s_t z,
``λ(t)·‖s_θ(x_t, t) + z / s_t‖²`` summed over dimensions (``reduce_mean=False``, as the official default)
and averaged over the batch. Default weighting λ(t) = s_t², i.e. ‖s_t·s_θ + z‖², which for a
noise-predicting model (score = -ε̂/s_t) is exactly the ε-prediction MSE ‖ε̂ - z‖². With
``likelihood_weighting=True``, λ(t) = g(t)² (Song et al. 2021b, maximum-likelihood training).

Optimiser as the score_sde defaults: Adam(lr 2e-4, β1 0.9, eps 1e-8, no weight decay), linear learning-rate
warm-up over 5000 steps, gradient clipping at norm 1; EMA of the parameters (rate 0.999 here, 0.9999 in
the CIFAR-10 configs) with the official ``min(rate, (1 + n) / (10 + n))`` ramp. Deviation: warm-up uses
``(step + 1) / warmup`` (the official first step has learning rate 0).

All randomness (batch indices, t, z, and dropout through a per-step seed) comes from one
``torch.Generator`` owned by the trainer, seeded explicitly, and saved in checkpoints, so that a run resumed
from a checkpoint ends with the same weights as an uninterrupted one.

Checkpoints: ``<name>.safetensors`` (model weights ``model/*``, EMA weights ``ema/*``, Adam state ``optim/*``,
generator state and step) plus a JSON sidecar ``<name>.json`` with the training config, seed, step and
whatever the caller adds (network and SDE specs, data set) so that the model can be rebuilt.
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from . import sdes as _sdes
from .models import NoisePredictionScoreModel, build_net
from .sdes import SDE, batch_broadcast

__all__ = [
    "DSMConfig",
    "dsm_loss",
    "EMA",
    "ScoreTrainer",
    "SDES",
    "build_sde",
    "build_score_model",
    "load_score_model",
    "sidecar_path",
]

SDES = _sdes.SDES
build_sde = _sdes.build_sde  # one SDE name table (generative.sdes); "vesde"-style names are aliases


@dataclass(frozen=True)
class DSMConfig:
    """Training hyper-parameters; defaults are the score_sde defaults except ``ema_rate``."""

    batch_size: int = 128  # images per step
    lr: float = 2e-4  # Adam learning rate after warm-up
    beta1: float = 0.9  # Adam β1 (β2 = 0.999)
    adam_eps: float = 1e-8  # Adam ε
    weight_decay: float = 0.0  # Adam weight decay
    warmup: int = 5000  # linear learning-rate warm-up steps (0 = none)
    grad_clip: float = 1.0  # max gradient norm (<= 0 = no clipping)
    ema_rate: float = 0.999  # EMA decay of the parameters
    ema_ramp: bool = True  # official min(rate, (1 + n) / (10 + n)) ramp of the EMA decay
    likelihood_weighting: bool = False  # λ(t) = g(t)² instead of s_t²
    reduce_mean: bool = False  # average (True) or sum (False, official) the loss over dimensions
    t_min: float | None = None  # smallest training time; None = the SDE's eps


def dsm_loss(
    score_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    sde: SDE,
    x0: torch.Tensor,
    generator: torch.Generator | None,
    *,
    likelihood_weighting: bool = False,
    reduce_mean: bool = False,
    t_min: float | None = None,
) -> torch.Tensor:
    """Continuous-time denoising score-matching loss (scalar, mean over the batch); see the module doc."""
    t_min = sde.eps if t_min is None else t_min
    B = x0.shape[0]
    t = torch.rand(B, generator=generator, device=x0.device, dtype=x0.dtype) * (sde.T - t_min) + t_min
    z = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
    mean, std = sde.marginal(x0, t)
    score = score_fn(mean + std * z, t)
    if likelihood_weighting:
        residual = (score + z / std).square() * batch_broadcast(sde.diffusion(t) ** 2, x0)
    else:
        residual = (score * std + z).square()
    residual = residual.reshape(B, -1)
    losses = residual.mean(-1) if reduce_mean else residual.sum(-1)
    return losses.mean()


class EMA:
    """Exponential moving average of a module's parameters (buffers are not averaged).

    ``update``: n ← n + 1; d = min(rate, (1 + n) / (10 + n)) if ``ramp`` else rate;
    shadow ← d·shadow + (1 - d)·param.
    """

    def __init__(self, module: nn.Module, rate: float = 0.999, ramp: bool = True):
        self.rate, self.ramp, self.num_updates = rate, ramp, 0
        self.shadow = {k: p.detach().clone() for k, p in module.named_parameters()}

    def decay(self) -> float:
        return min(self.rate, (1 + self.num_updates) / (10 + self.num_updates)) if self.ramp else self.rate

    @torch.no_grad()
    def update(self, module: nn.Module) -> None:
        self.num_updates += 1
        d = self.decay()
        for k, p in module.named_parameters():
            self.shadow[k].lerp_(p.detach(), 1.0 - d)

    @torch.no_grad()
    def copy_to(self, module: nn.Module) -> None:
        for k, p in module.named_parameters():
            p.copy_(self.shadow[k])


def file_sha256(path: str | os.PathLike) -> str:
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class CorruptModelError(ValueError):
    """A model file whose bytes do not match the digest in its sidecar, or that cannot be read."""


def check_digest(path: str | os.PathLike, want: str | None, repair: str) -> None:
    """Raise CorruptModelError naming ``path`` if its sha256 is not ``want`` (no check when ``want`` is None)."""
    if want is not None and file_sha256(path) != want:
        raise CorruptModelError(f"{path} does not match the sha256 recorded beside it; {repair}")


def sidecar_path(checkpoint: str | os.PathLike) -> Path:
    """The JSON sidecar of a ``.safetensors`` checkpoint."""
    return Path(checkpoint).with_suffix(".json")


class ScoreTrainer:
    """Trains ``model`` (a score function module, e.g. :class:`NoisePredictionScoreModel`) by DSM.

    ``train(data, n_steps)`` runs until ``self.step == n_steps`` (so a resumed trainer continues where the
    checkpoint stopped), drawing batches uniformly with replacement from ``data`` (N, ...).
    """

    def __init__(self, model: nn.Module, sde: SDE, config: DSMConfig = DSMConfig(), seed: int = 0,
                 device: str | torch.device | None = None):
        self.device = torch.device(device) if device is not None else next(model.parameters()).device
        self.model = model.to(self.device)
        self.sde, self.config, self.seed = sde, config, seed
        self.generator = torch.Generator(device=self.device).manual_seed(seed)
        self.optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, betas=(config.beta1, 0.999),
                                          eps=config.adam_eps, weight_decay=config.weight_decay)
        self.ema = EMA(model, config.ema_rate, config.ema_ramp)
        self.step = 0

    # ------------------------------------------------------------------------------------------ training
    def train_step(self, x0: torch.Tensor) -> torch.Tensor:
        """One optimiser step on the batch ``x0``; returns the (detached) loss without synchronising."""
        cfg = self.config
        return self.optimise(lambda: dsm_loss(self.model, self.sde, x0, self.generator,
                                              likelihood_weighting=cfg.likelihood_weighting,
                                              reduce_mean=cfg.reduce_mean, t_min=cfg.t_min))

    def optimise(self, compute_loss) -> torch.Tensor:
        """One optimiser step on ``compute_loss()`` (learning-rate warm-up, dropout seeded from our generator,
        gradient clipping, EMA); returns the detached loss. Subclasses with another loss call this."""
        cfg = self.config
        if cfg.warmup > 0:
            for group in self.optimizer.param_groups:
                group["lr"] = cfg.lr * min((self.step + 1) / cfg.warmup, 1.0)
        # Dropout draws from the global RNG: seed it from our generator so that resumes are exact.
        dropout_seed = int(torch.randint(0, 2**62, (1,), generator=self.generator, device=self.device))
        self.model.train()
        with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []):
            torch.manual_seed(dropout_seed)
            loss = compute_loss()
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
        if cfg.grad_clip > 0:
            nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
        self.optimizer.step()
        self.ema.update(self.model)
        self.step += 1
        return loss.detach()

    def sample_batch(self, data: torch.Tensor) -> torch.Tensor:
        idx = torch.randint(0, data.shape[0], (self.config.batch_size,), generator=self.generator,
                            device=self.device)
        return data[idx]

    def train(
        self,
        data: torch.Tensor,
        n_steps: int,
        *,
        callback: Callable[[int, int, dict[str, float]], None] | None = None,
        log_every: int = 1,
        checkpoint_path: str | os.PathLike | None = None,
        checkpoint_every: int | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        """Train until step ``n_steps``. ``callback(step, n_steps, {"loss": ...})`` every ``log_every``
        steps (this synchronises with the device; without a callback nothing does). With ``checkpoint_path``
        a checkpoint is written every ``checkpoint_every`` steps and at the end."""
        data = data.to(self.device)
        self.model.train()
        while self.step < n_steps:
            loss = self.train_step(self.sample_batch(data))
            if callback is not None and (self.step % log_every == 0 or self.step == n_steps):
                callback(self.step, n_steps, {"loss": float(loss)})
            if checkpoint_path is not None and checkpoint_every and self.step % checkpoint_every == 0:
                self.save(checkpoint_path, extra)
        if checkpoint_path is not None:
            self.save(checkpoint_path, extra)
        self.model.eval()

    def ema_model(self) -> nn.Module:
        """A copy of the model carrying the EMA weights, in eval mode."""
        m = copy.deepcopy(self.model)
        self.ema.copy_to(m)
        return m.eval()

    # ------------------------------------------------------------------------------------ checkpointing
    def state_tensors(self) -> dict[str, torch.Tensor]:
        out = {f"model/{k}": v.detach() for k, v in self.model.state_dict().items()}
        out.update({f"ema/{k}": v for k, v in self.ema.shadow.items()})
        names = {id(p): k for k, p in self.model.named_parameters()}
        for group in self.optimizer.param_groups:
            for p in group["params"]:
                for key, value in self.optimizer.state.get(p, {}).items():
                    out[f"optim/{names[id(p)]}/{key}"] = torch.as_tensor(value).detach()
        out["trainer/step"] = torch.tensor(self.step, dtype=torch.int64)
        out["trainer/ema_num_updates"] = torch.tensor(self.ema.num_updates, dtype=torch.int64)
        out["trainer/generator_state"] = self.generator.get_state()
        return {k: v.contiguous().cpu() for k, v in out.items()}

    def load_state_tensors(self, tensors: Mapping[str, torch.Tensor]) -> None:
        model_sd = {k[len("model/"):]: v for k, v in tensors.items() if k.startswith("model/")}
        self.model.load_state_dict(model_sd)
        for k in self.ema.shadow:
            self.ema.shadow[k] = tensors[f"ema/{k}"].to(self.device).clone()
        params = dict(self.model.named_parameters())
        self.optimizer.state.clear()
        for k, v in tensors.items():
            if k.startswith("optim/"):
                name, key = k[len("optim/"):].rsplit("/", 1)
                p = params[name]
                v = v.clone() if key == "step" else v.to(self.device).clone()
                self.optimizer.state[p][key] = v
        self.step = int(tensors["trainer/step"])
        self.ema.num_updates = int(tensors["trainer/ema_num_updates"])
        self.generator.set_state(tensors["trainer/generator_state"])

    def save(self, path: str | os.PathLike, extra: Mapping[str, Any] | None = None) -> Path:
        """Write ``path`` (safetensors) and its JSON sidecar atomically; returns ``path``."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        meta = {"step": self.step, "seed": self.seed, "training": asdict(self.config), **(extra or {})}
        tmp = path.with_name(path.name + ".tmp")
        save_file(self.state_tensors(), str(tmp), metadata={"format": "pt", "sidecar": sidecar_path(path).name})
        meta["sha256"] = file_sha256(tmp)  # checked on load: a damaged or swapped file is named, never used
        os.replace(tmp, path)
        side = sidecar_path(path)
        tmp_side = side.with_name(side.name + ".tmp")
        tmp_side.write_text(json.dumps(meta, indent=2, sort_keys=True))
        os.replace(tmp_side, side)
        return path

    def load(self, path: str | os.PathLike) -> dict[str, Any]:
        """Restore everything from a checkpoint (for resuming); returns the sidecar's contents."""
        self.load_state_tensors(load_file(str(path), device="cpu"))
        return json.loads(sidecar_path(path).read_text())


def build_score_model(model_spec: Mapping[str, Any], sde: SDE) -> NoisePredictionScoreModel:
    """Build an untrained model from a JSON spec
    ``{"net": "unet", "net_kwargs": {...}, "noise_label": "log_sigma", "input_scaling": true}``."""
    spec = dict(model_spec)
    net = build_net(spec["net"], **dict(spec.get("net_kwargs", {})))
    return NoisePredictionScoreModel(net, sde, noise_label=spec.get("noise_label", "log_sigma"),
                                     input_scaling=spec.get("input_scaling", True))


def load_score_model(checkpoint: str | os.PathLike, *, ema: bool = True, device: str | torch.device = "cpu"
                     ) -> tuple[NoisePredictionScoreModel, dict[str, Any]]:
    """Rebuild a trained score model from a checkpoint whose sidecar holds ``"model"`` (see
    :func:`build_score_model`) and ``"sde": {"name": ..., "kwargs": {...}}``; EMA weights by default.
    Returns (model in eval mode, sidecar dict)."""
    meta = json.loads(sidecar_path(checkpoint).read_text())
    if "model" not in meta or "sde" not in meta:
        raise ValueError(f"{sidecar_path(checkpoint)} lacks the 'model'/'sde' specs needed to rebuild the model")
    sde = build_sde(meta["sde"]["name"], **meta["sde"].get("kwargs", {}))
    model = build_score_model(meta["model"], sde)
    check_digest(checkpoint, meta.get("sha256"), "delete it (and its .json) to train it again")
    try:
        tensors = load_file(str(checkpoint), device="cpu")
    except Exception as e:  # safetensors raises its own error types for truncated headers
        raise CorruptModelError(f"{checkpoint} cannot be read ({e}); delete it to train it again") from None
    model.load_state_dict({k[len("model/"):]: v for k, v in tensors.items() if k.startswith("model/")})
    if ema:
        with torch.no_grad():
            for k, p in model.named_parameters():
                p.copy_(tensors[f"ema/{k}"])
    return model.to(device).eval(), meta
