"""Training of conditional mean-reverting diffusion models for image restoration (IR-SDE, Luo et al., ICML 2023,
arXiv:2301.11699), cached by content hash, with checkpoints and exact resume.

A model learns to restore clean images x0 from degraded ones ``mu = degradation(x0)`` under
:class:`~generative.sdes.MRSDE`: x_t = mu + alpha_t (x0 - mu) + sigma_t eps. The degraded image of every
training image is computed once per run, ``degradation.apply(x0, seed=config.seed, indices=dataset index)``
(deterministic, so a resumed run sees the same pairs).

Loss: plain mean squared error between the network's output and the target its ``param`` names
(:mod:`generative.models.conditional`: eps, x0, or v = lam alpha eps - sigma_hat (x0 - mu)), averaged over
pixels and batch, with t ~ Uniform(0, T) *continuous* and eps ~ N(0, I). Deviations from IR-SDE: it trains
with a maximum-likelihood loss that matches the reverse-SDE mean of x_{t-1} at integer t; we do not, because
plain matching learns the true noise (the conditional mean E[eps | x_t, mu]), which is what the MRS sampler
(Li et al., ICLR 2025, arXiv:2502.07856) assumes, and MRS evaluates the network at non-integer times.
Optimiser as :class:`~generative.training.ScoreTrainer` (Adam, linear warm-up, gradient clipping, EMA with
the ramp), with IR-SDE-sized nets and long schedules replaced by CPU-sized defaults.

Files: ``<out_dir>/<key>.safetensors`` with a JSON sidecar (:func:`~generative.training.sidecar_path`), where
``key`` (:func:`mr_model_key`) is a readable prefix plus a content hash of the config (everything except
``checkpoint_every`` and ``device``): the same config finds the cached file and does not train again, any
other config gets another file. The file holds the raw weights ``model/*``, the EMA weights ``ema/*``, the
Adam state and the trainer's generator; the sidecar the full config, the SDE's config, the network spec,
steps, final loss, sha256 of the file and the torch version. A run in progress writes
``<key>.ckpt.safetensors`` every ``checkpoint_every`` steps, and on SIGINT/SIGTERM or an exception after a
finished step; the next call resumes from it and ends with the same weights as an uninterrupted run.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file
from tqdm.auto import tqdm

from .datasets import DATASETS, default_train_split, load_image_dataset
from .degradations import Degradation, ParamValue
from .models.conditional import PARAMS, ConditionalUNet, MRModel, build_conditional_unet
from .sdes import MRSDE, batch_broadcast
from .training import CorruptModelError, DSMConfig, ScoreTrainer, check_digest, sidecar_path

__all__ = [
    "MRTrainConfig",
    "MRTrainer",
    "mr_coefficients",
    "mr_training_example",
    "mr_loss",
    "mr_model_key",
    "degraded_training_data",
    "train_mr_model",
    "load_mr_model",
]

Callback = Callable[[int, int, Mapping[str, float]], None]
FORMAT = "mr-model-v1"
_NOT_IN_KEY = ("checkpoint_every", "device")  # where and how often to checkpoint does not change the weights
_LOSS_WINDOW = 100  # final_loss is the mean of the last this-many step losses


@dataclass(frozen=True)
class MRTrainConfig:
    """Everything that defines a trained restoration model.

    Defaults: MNIST denoising (noise sigma 50 in 0..255 units) with a 0.16 M-parameter network for one CPU
    thread: measured 2.8 steps/s at batch 64 on a shared 2-core machine with the other core busy, so the 1500
    steps take ~9 min, after which the one-step estimate x0_hat at t = T/2 has 25.5 dB PSNR on MNIST test
    images (the degraded input: 14.1 dB). IR-SDE's own models are GPU jobs (a ConditionalUNet with 64 base
    channels and 4 levels on 128-256 px crops) that do not fit a CPU.
    ``degradation_params`` may be a dict or a tuple of pairs; it is resolved (defaults filled in, ints given
    for float parameters made floats, sorted) on construction, so equal specs hash alike.
    """

    # data
    dataset: str = "mnist"  # "mnist", "digits-8x8", "cifar10-jpeg" (its test split is its only split), "cifar10"
    n_train: int | None = None  # train on the first n_train images of the training split (None = all)
    degradation: str = "noise"  # a kind of generative.degradations.DEGRADATIONS
    degradation_params: Mapping[str, ParamValue] | tuple[tuple[str, ParamValue], ...] = (("sigma", 50.0),)
    # what the network predicts: "noise" (eps), "data" (x0) or "velocity" (v); see generative.models.conditional
    param: str = "noise"
    # SDE (generative.sdes.MRSDE)
    lam: float = 100.0 / 255.0  # stationary std; IR-SDE's 50/255 on [0, 1] is 100/255 on [-1, 1]
    T: int = 100  # time horizon (IR-SDE's number of steps)
    sde_eps: float = 0.005  # alpha_T
    # network (generative.models.conditional.ConditionalUNet)
    ch: int = 16  # base channels
    ch_mult: tuple[int, ...] = (1, 2)  # 28x28 -> 14x14 (the U-Net's middle attends at 14x14)
    num_res_blocks: int = 1
    attn_resolutions: tuple[int, ...] = ()  # no attention outside the middle block
    dropout: float = 0.0  # short runs do not over-fit
    embedding: str = "positional"  # "positional" on raw t (as IR-SDE) or "fourier" on t / T
    fourier_scale: float = 16.0  # only for embedding="fourier"
    # optimisation (generative.training.ScoreTrainer)
    n_steps: int = 1500
    batch_size: int = 64
    lr: float = 1e-3  # Adam learning rate after warm-up
    warmup: int = 100  # linear learning-rate warm-up steps (0 = none)
    grad_clip: float = 1.0  # max gradient norm (<= 0 = no clipping)
    ema_rate: float = 0.999  # EMA decay (with the (1 + n) / (10 + n) ramp)
    seed: int = 0  # network initialisation, the degradation of the training set, batches, t, eps, dropout
    # bookkeeping (not part of the cache key)
    checkpoint_every: int = 500  # steps between resume checkpoints (0 = only on interruption)
    device: str = "cpu"

    def __post_init__(self) -> None:
        if self.dataset not in DATASETS:
            raise ValueError(f"MRTrainConfig: unknown dataset {self.dataset!r}; known: {', '.join(DATASETS)}")
        if self.param not in PARAMS:
            raise ValueError(f"MRTrainConfig: param must be one of {PARAMS}, got {self.param!r}")
        if self.n_train is not None and not (isinstance(self.n_train, int) and self.n_train >= 1):
            raise ValueError(f"MRTrainConfig: n_train must be a positive int or None, got {self.n_train!r}")
        for name in ("n_steps", "batch_size"):
            if not (isinstance(getattr(self, name), int) and getattr(self, name) >= 1):
                raise ValueError(f"MRTrainConfig: {name} must be a positive int, got {getattr(self, name)!r}")
        params = self.degradation_params
        params = dict(params) if isinstance(params, Mapping) else dict(tuple(p) for p in params)
        object.__setattr__(self, "degradation_params", Degradation(self.degradation, tuple(params.items())).params)
        object.__setattr__(self, "ch_mult", tuple(int(m) for m in self.ch_mult))
        object.__setattr__(self, "attn_resolutions", tuple(int(r) for r in self.attn_resolutions))
        self.sde()  # validates lam, T, sde_eps

    def degradation_spec(self) -> Degradation:
        return Degradation(self.degradation, self.degradation_params)

    def sde(self) -> MRSDE:
        return MRSDE(lam=self.lam, T=self.T, eps=self.sde_eps)

    def net_spec(self, shape: tuple[int, int, int]) -> dict[str, Any]:
        """JSON keyword arguments of :class:`ConditionalUNet` for images of ``shape`` (C, H, W)."""
        C, H, W = shape
        if H != W:
            raise ValueError(f"MRTrainConfig: square images expected, got {H}x{W}")
        return {"image_size": H, "channels": C, "T": float(self.T), "ch": self.ch, "ch_mult": list(self.ch_mult),
                "num_res_blocks": self.num_res_blocks, "attn_resolutions": list(self.attn_resolutions),
                "dropout": self.dropout, "embedding": self.embedding, "fourier_scale": self.fourier_scale}

    def dsm(self) -> DSMConfig:
        """The optimiser settings in :class:`ScoreTrainer`'s terms."""
        return DSMConfig(batch_size=self.batch_size, lr=self.lr, warmup=self.warmup, grad_clip=self.grad_clip,
                         ema_rate=self.ema_rate)

    def to_json(self) -> dict[str, Any]:
        """JSON-native dict (tuples as lists, degradation parameters as a dict), as stored in sidecars."""
        d = asdict(self)
        d["degradation_params"] = dict(self.degradation_params)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> MRTrainConfig:
        unknown = set(d) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"unknown MRTrainConfig fields: {sorted(unknown)}")
        return cls(**dict(d))


def mr_model_key(config: MRTrainConfig) -> str:
    """``mr-<dataset>-<degradation name>-<param>-<hash>``: SHA-256 (12 hex digits) of the config's JSON without
    ``checkpoint_every`` and ``device``. Same config, same key; any change that can change the weights (steps
    included), another key."""
    blob = {k: v for k, v in config.to_json().items() if k not in _NOT_IN_KEY}
    digest = hashlib.sha256(json.dumps(blob, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:12]
    return f"mr-{config.dataset}-{config.degradation_spec().name}-{config.param}-{digest}"


# ------------------------------------------------------------------------------------------------- loss
def mr_coefficients(sde: MRSDE, t: torch.Tensor, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """alpha_t and sigma_t (the marginal std) for t (B,), broadcast to ``like`` and on its device and dtype
    (MRSDE's tables are CPU float64, so t goes through the CPU)."""
    t64 = t.detach().to("cpu", torch.float64)
    alpha = sde.alpha(t64).to(device=like.device, dtype=like.dtype)
    sigma = sde.std(t64).to(device=like.device, dtype=like.dtype)
    return batch_broadcast(alpha, like), batch_broadcast(sigma, like)


def mr_training_example(
    sde: MRSDE, x0: torch.Tensor, mu: torch.Tensor, param: str, t: torch.Tensor, eps: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """(x_t, target) for clean ``x0``, degraded ``mu``, times ``t`` (B,) and noise ``eps``:
    x_t = mu + alpha_t (x0 - mu) + sigma_t eps and the target ``param`` names (eps, x0 or
    v = lam alpha_t eps - (sigma_t / lam) (x0 - mu))."""
    alpha, sigma = mr_coefficients(sde, t, x0)
    x_t = mu + alpha * (x0 - mu) + sigma * eps
    if param == "noise":
        return x_t, eps
    if param == "data":
        return x_t, x0
    if param == "velocity":
        return x_t, sde.lam * alpha * eps - (sigma / sde.lam) * (x0 - mu)
    raise ValueError(f"param must be one of {PARAMS}, got {param!r}")


def mr_loss(
    predict: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor],
    sde: MRSDE,
    x0: torch.Tensor,
    mu: torch.Tensor,
    param: str,
    generator: torch.Generator | None,
) -> torch.Tensor:
    """Mean squared error of ``predict(x_t, mu, t)`` against the ``param`` target, t ~ U(0, T) continuous and
    eps ~ N(0, I) drawn from ``generator`` (t first, then eps); a scalar averaged over pixels and batch."""
    B = x0.shape[0]
    t = torch.rand(B, generator=generator, device=x0.device, dtype=x0.dtype) * sde.T
    eps = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
    x_t, target = mr_training_example(sde, x0, mu, param, t, eps)
    return (predict(x_t, mu, t) - target).square().mean()


# ---------------------------------------------------------------------------------------------- trainer
class MRTrainer(ScoreTrainer):
    """:class:`ScoreTrainer` (optimiser, EMA, generator, checkpoint format) with the :func:`mr_loss` step on
    pairs (x0, mu) drawn with one index per row, and the last step losses kept in the checkpoint (so that a
    resumed run reports the same final loss)."""

    def __init__(self, model: MRModel, config: MRTrainConfig, device: str | torch.device | None = None):
        super().__init__(model, model.sde, config.dsm(), seed=config.seed, device=device)
        self.param = model.param
        self.recent_losses: deque[torch.Tensor] = deque(maxlen=_LOSS_WINDOW)

    def sample_pair(self, x0: torch.Tensor, mu: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        idx = torch.randint(0, x0.shape[0], (self.config.batch_size,), generator=self.generator, device=self.device)
        return x0[idx], mu[idx]

    def train_step(self, x0: torch.Tensor, mu: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        """One optimiser step on the batch (x0, mu); returns the detached loss without synchronising."""
        loss = self.optimise(lambda: mr_loss(self.model.predict, self.sde, x0, mu, self.param, self.generator))
        self.recent_losses.append(loss)
        return loss

    def train(self, *args: Any, **kwargs: Any) -> None:
        raise NotImplementedError("MRTrainer trains on (x0, mu) pairs: use train_mr_model, or sample_pair and "
                                  "train_step")

    def state_tensors(self) -> dict[str, torch.Tensor]:
        out = super().state_tensors()
        if self.recent_losses:
            out["trainer/recent_losses"] = torch.stack(list(self.recent_losses)).float().cpu()
        return out

    def load_state_tensors(self, tensors: Mapping[str, torch.Tensor]) -> None:
        super().load_state_tensors(tensors)
        self.recent_losses.clear()
        if "trainer/recent_losses" in tensors:
            self.recent_losses.extend(v.to(self.device) for v in tensors["trainer/recent_losses"])

    def final_loss(self) -> float:
        return float(torch.stack(list(self.recent_losses)).mean()) if self.recent_losses else math.nan


# ------------------------------------------------------------------------------------------------- data
def degraded_training_data(config: MRTrainConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """(x0, mu): the first ``n_train`` images of the data set's training split and their degraded copies,
    ``mu[i] = degradation.apply(x0[i], seed=config.seed, indices=[i])`` (i = index in the split)."""
    ds = load_image_dataset(config.dataset, default_train_split(config.dataset))
    x0 = ds.x if config.n_train is None else ds.x[:config.n_train]
    if config.n_train is not None and x0.shape[0] < config.n_train:
        raise ValueError(f"n_train={config.n_train} but {config.dataset} has {ds.x.shape[0]} training images")
    mu = config.degradation_spec().apply(x0, config.seed, torch.arange(x0.shape[0]))
    return x0, mu


# ---------------------------------------------------------------------------------------------- signals
@contextlib.contextmanager
def _deferred_signals() -> Iterator[list[int]]:
    """Within the block, SIGINT/SIGTERM are recorded (in the yielded list) instead of acting, so that training
    stops after a finished step; a second signal raises KeyboardInterrupt at once. Handlers are restored on
    exit. Only in the main thread, and never for a signal that is ignored."""
    pending: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield pending
        return

    def handler(signum, frame):
        if pending:
            raise KeyboardInterrupt
        pending.append(signum)

    old = {}
    for s in (signal.SIGINT, signal.SIGTERM):
        if signal.getsignal(s) is not signal.SIG_IGN:
            old[s] = signal.signal(s, handler)
    try:
        yield pending
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def _redeliver(signum: int) -> None:
    """Act on a deferred signal with the handler restored (SIGINT: KeyboardInterrupt; SIGTERM: the default
    termination); if that handler returns, raise KeyboardInterrupt anyway so that training stops."""
    signal.raise_signal(signum)
    raise KeyboardInterrupt


# --------------------------------------------------------------------------------------------- training
def _read_sidecar(path: Path) -> dict[str, Any]:
    side = sidecar_path(path)
    try:
        return json.loads(side.read_text())
    except FileNotFoundError:
        raise CorruptModelError(f"{path} has no sidecar {side}; delete it to train it again") from None
    except json.JSONDecodeError as e:
        raise CorruptModelError(f"{side} is not valid JSON ({e}); delete {path} and it to train again") from None


def _check_same_config(path: Path, meta: Mapping[str, Any], config: MRTrainConfig) -> None:
    want = {k: v for k, v in config.to_json().items() if k not in _NOT_IN_KEY}
    have = {k: v for k, v in dict(meta.get("config", {})).items() if k not in _NOT_IN_KEY}
    if have != want:
        raise ValueError(f"{path} was written for a different config than its name says; delete it")


def _remove(path: Path) -> None:
    for p in (path, sidecar_path(path)):
        with contextlib.suppress(FileNotFoundError):
            p.unlink()


def train_mr_model(
    config: MRTrainConfig = MRTrainConfig(),
    out_dir: str | os.PathLike = "runs/mr_models",
    progress: bool = True,
    resume: bool = True,
    *,
    callback: Callback | None = None,
    progress_interval: float = 2.0,
) -> Path:
    """Train a restoration model for ``config`` and return ``<out_dir>/<key>.safetensors`` (:func:`mr_model_key`).

    A finished file of the same key is returned as it is (digest checked, no training). Otherwise, with
    ``resume``, training continues from ``<key>.ckpt.safetensors`` if a previous run left one (``resume=False``
    starts over). SIGINT/SIGTERM stop training after the current step, write that checkpoint and then act as
    usual (KeyboardInterrupt / termination). ``progress``: a tqdm bar (steps/s, loss) refreshed at most every
    ``progress_interval`` seconds. ``callback(step, n_steps, {"loss": ...})`` after every step (it
    synchronises with the device; tests use it).
    """
    out_dir = Path(out_dir)
    key = mr_model_key(config)
    path = out_dir / f"{key}.safetensors"
    partial = out_dir / f"{key}.ckpt.safetensors"
    repair = "delete it (and its .json) to train it again"
    if path.exists():
        meta = _read_sidecar(path)
        if "sha256" not in meta:
            raise CorruptModelError(f"{sidecar_path(path)} records no sha256 for {path}; {repair}")
        check_digest(path, meta["sha256"], repair)
        _check_same_config(path, meta, config)
        return path

    device = torch.device(config.device)
    x0, mu = degraded_training_data(config)
    sde = config.sde()
    spec = config.net_spec(tuple(x0.shape[1:]))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)  # network initialisation
        model = MRModel(build_conditional_unet(spec), sde, config.param)
    trainer = MRTrainer(model, config, device=device)
    extra: dict[str, Any] = {
        "format": FORMAT, "key": key, "config": config.to_json(), "sde": sde.config(), "net": spec,
        "param": config.param, "dataset": config.dataset, "split": default_train_split(config.dataset),
        "n_train_images": int(x0.shape[0]), "shape": list(x0.shape[1:]),
        "degradation": {"kind": config.degradation, "params": dict(config.degradation_params),
                        "name": config.degradation_spec().name, "seed": config.seed},
        "n_steps": config.n_steps, "torch_version": torch.__version__,
    }
    previous_wall = 0.0
    if resume and partial.exists():
        meta = _read_sidecar(partial)
        check_digest(partial, meta.get("sha256"), "delete it to start this training over")
        _check_same_config(partial, meta, config)
        trainer.load(partial)
        previous_wall = float(meta.get("train_wall_time_s", 0.0))

    x0, mu = x0.to(device), mu.to(device)
    start_step = saved_step = trainer.step
    consistent = True  # the trainer's state is that after a finished step (safe to checkpoint)
    t0 = time.perf_counter()

    def save_partial() -> None:
        nonlocal saved_step
        wall = previous_wall + time.perf_counter() - t0
        trainer.save(partial, {**extra, "train_wall_time_s": wall, "finished": False})
        saved_step = trainer.step

    bar = tqdm(total=config.n_steps, initial=start_step, desc=key, unit="step", disable=not progress,
               mininterval=progress_interval, dynamic_ncols=True)
    last_postfix = -math.inf
    with bar, _deferred_signals() as pending:
        try:
            while trainer.step < config.n_steps and not pending:
                consistent = False
                loss = trainer.train_step(*trainer.sample_pair(x0, mu))
                consistent = True
                bar.update(1)
                now = time.perf_counter()
                if progress and now - last_postfix >= progress_interval:
                    bar.set_postfix(loss=f"{float(loss):.4g}", refresh=False)  # one sync per interval
                    last_postfix = now
                if callback is not None:
                    callback(trainer.step, config.n_steps, {"loss": float(loss)})
                if config.checkpoint_every and trainer.step % config.checkpoint_every == 0 \
                        and trainer.step < config.n_steps:
                    save_partial()
        except BaseException:
            if consistent and trainer.step > saved_step:
                save_partial()
            raise
        if pending:
            if trainer.step > saved_step:
                save_partial()
    if pending:
        _redeliver(pending[0])

    wall = previous_wall + time.perf_counter() - t0
    steps_now = trainer.step - start_step
    trainer.save(path, {**extra, "finished": True, "final_loss": trainer.final_loss(),
                        "final_loss_window": min(_LOSS_WINDOW, trainer.step), "train_wall_time_s": wall,
                        "steps_per_s": steps_now / max(time.perf_counter() - t0, 1e-9)})
    _remove(partial)
    return path


def load_mr_model(path: str | os.PathLike, ema: bool = True, device: str | torch.device = "cpu") -> MRModel:
    """The :class:`MRModel` saved by :func:`train_mr_model` (EMA weights by default), in eval mode, with the
    sidecar as ``model.meta``. The file's sha256 must match the sidecar's (else :class:`CorruptModelError`
    naming the file); tensors are read with safetensors, never unpickled."""
    path = Path(path)
    meta = _read_sidecar(path)
    repair = "delete it (and its .json) to train it again"
    if meta.get("format") != FORMAT or "sha256" not in meta:
        raise CorruptModelError(f"{path}: its sidecar is not a {FORMAT} sidecar with a sha256; {repair}")
    check_digest(path, meta["sha256"], repair)
    try:
        tensors = load_file(str(path), device="cpu")
    except Exception as e:  # safetensors raises its own error types for truncated headers
        raise CorruptModelError(f"{path} cannot be read ({e}); {repair}") from None
    sde_cfg = meta["sde"]
    sde = MRSDE(lam=sde_cfg["lam"], T=int(sde_cfg["T"]), eps=sde_cfg["eps"])
    net: ConditionalUNet = build_conditional_unet(meta["net"])
    model = MRModel(net, sde, meta["param"])
    model.load_state_dict({k[len("model/"):]: v for k, v in tensors.items() if k.startswith("model/")})
    if ema:
        with torch.no_grad():
            for k, p in model.named_parameters():
                p.copy_(tensors[f"ema/{k}"])
    model.meta = meta
    return model.to(device).eval()
