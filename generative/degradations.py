"""Image degradations for restoration tasks (mean-reverting diffusion, IR-SDE: Luo et al., ICML 2023,
arXiv:2301.11699): the map clean image -> degraded image ``mu`` that a conditional model learns to invert.

Images are float tensors (N, C, H, W) in [-1, 1] (C = 1 for MNIST/digits, 3 for CIFAR), on the CPU. Every
degradation is a function ``fn(x, seed, indices=None, **params) -> Tensor`` in :data:`DEGRADATIONS`; it never
modifies ``x`` in place and returns a tensor of the same shape and dtype. Randomness is per image: image ``i``
of a batch uses a ``torch.Generator`` seeded from ``(seed, indices[i])`` (:func:`image_seeds`), so a row's
degradation depends only on the seed and its index, never on the rest of the batch (``indices`` defaults to
``arange(N)``; pass the data-set indices of a mini-batch to get the same result as degrading the whole set).

Kinds (registry keys) and their parameters, with defaults:

* ``noise`` (``sigma=25``): additive Gaussian noise, ``sigma`` in 0..255 units (15, 25, 50 are standard);
  std ``sigma/255`` on the [0, 1] scale, i.e. ``2*sigma/255`` on [-1, 1]. Not clamped (as in IR-SDE).
* ``blur`` (``sigma=1.5``, ``kernel_size=None``): Gaussian blur, reflect padding, same size.
* ``motion-blur`` (``length=None``): linear motion blur, random angle per image, reflect padding.
* ``inpaint`` (``area=0.25``, ``strokes=0``, ``fill=-1.0``): one random box plus optional thick strokes set to
  ``fill`` (black); :func:`inpaint_mask` gives the mask.
* ``low-light`` (``gamma=2.0``, ``scale=0.3``, ``sigma=5``): ``x01 -> x01**gamma * scale + noise``, clamped.
* ``jpeg`` (``quality=10``): Pillow JPEG round trip through uint8; deterministic.
* ``downsample`` (``factor=4``): Pillow bicubic down-sampling by ``factor`` then bicubic up-sampling back to
  full size, so ``mu`` has the clean image's shape (IR-SDE conditions on the up-sampled low-resolution image).

:class:`Degradation` is the frozen, serialisable spec (kind + fully resolved params) with ``apply`` and a
task ``name`` (``denoise25``, ``jpeg10``, ``sr4``, ``blur``, ...); :func:`get_degradation` builds one and
rejects unknown kinds (naming the closest) and invalid parameters; :func:`degrade` is the one-call form.
Pillow (a matplotlib dependency) is imported only by ``jpeg`` and ``downsample``.
"""

from __future__ import annotations

import difflib
import inspect
import io
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from generative.sdes import generators_from_seeds

__all__ = [
    "Degradation",
    "DegradationFn",
    "DEGRADATIONS",
    "get_degradation",
    "degrade",
    "image_seeds",
    "add_gaussian_noise",
    "gaussian_blur",
    "gaussian_kernel",
    "motion_blur",
    "motion_blur_kernel",
    "inpaint",
    "inpaint_mask",
    "low_light",
    "jpeg_compress",
    "downsample",
    "bicubic_resize",
]

Indices = Tensor | Sequence[int] | None
ParamValue = float | int | None
DegradationFn = Callable[..., Tensor]


# ---------------------------------------------------------------------------------------------- helpers
def image_seeds(seed: int, indices: Indices, n: int) -> list[int]:
    """One 64-bit seed per image, hashed from ``(seed, indices[i])`` with numpy's ``SeedSequence`` (no two
    (seed, index) pairs collide the way ``seed * K + index`` would). ``indices`` defaults to ``arange(n)``."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    if indices is None:
        idx = list(range(n))
    else:
        idx = indices.tolist() if isinstance(indices, Tensor) else [int(i) for i in indices]
        if len(idx) != n:
            raise ValueError(f"indices has {len(idx)} entries for a batch of {n} images")
        if any(i < 0 for i in idx):
            raise ValueError("indices must be non-negative")
    return [int(np.random.SeedSequence([int(seed), int(i)]).generate_state(1, dtype=np.uint64)[0]) for i in idx]


def _generators(x: Tensor, seed: int, indices: Indices) -> list[torch.Generator]:
    return generators_from_seeds(image_seeds(seed, indices, x.shape[0]))


def _randn_per_image(x: Tensor, seed: int, indices: Indices) -> Tensor:
    """Standard normal noise shaped like ``x`` (float32), row i drawn from image i's generator."""
    gens = _generators(x, seed, indices)
    if not gens:
        return torch.zeros(x.shape, dtype=torch.float32)
    return torch.stack([torch.randn(x.shape[1:], generator=g) for g in gens])


def _check_images(x: Tensor, kind: str) -> None:
    if not isinstance(x, Tensor) or x.dim() != 4 or not x.is_floating_point():
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f"{kind}: expected a float tensor (N, C, H, W), got {shape}")


def _odd_at_least_3(n: int) -> int:
    return max(3, n | 1)


def _auto_size(x: Tensor) -> int:
    """Kernel size / blur length scaled to the image: odd, about min(H, W)/4, at least 3 (28 -> 7, 32 -> 9,
    8 -> 3)."""
    return _odd_at_least_3(min(x.shape[-2:]) // 4)


def _conv_per_image(x: Tensor, kernels: Tensor, kind: str) -> Tensor:
    """Correlate image i with ``kernels[i]`` (k, k) (all channels alike), reflect padding, same size. One
    ``conv2d`` per image, so a row's result is bitwise independent of the batch it came in."""
    k = kernels.shape[-1]
    pad = k // 2
    if pad >= min(x.shape[-2:]):
        raise ValueError(f"{kind}: kernel size {k} is too large for {tuple(x.shape[-2:])} images "
                         f"(reflect padding needs k // 2 < min(H, W))")
    c = x.shape[1]
    out = torch.empty_like(x)
    for i in range(x.shape[0]):
        xi = F.pad(x[i:i + 1], (pad, pad, pad, pad), mode="reflect")
        w = kernels[i].to(x.dtype).expand(c, 1, k, k)
        out[i:i + 1] = F.conv2d(xi, w, groups=c)
    return out


def _is_number(v) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool) and math.isfinite(v)


def _is_int(v) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise ValueError(message)


# --------------------------------------------------------------------------------------------- noise
def _check_noise(sigma) -> None:
    _require(_is_number(sigma) and 0 <= sigma <= 255, f"noise: sigma must be a number in [0, 255] (0..255 "
             f"units, e.g. 25 or 50), got {sigma!r}")


def add_gaussian_noise(x: Tensor, seed: int, indices: Indices = None, *, sigma: float = 25.0) -> Tensor:
    """``x + (2 * sigma / 255) * z``, z ~ N(0, I) per image: IR-SDE's ``noisy = clean + sigma/255 * z`` on the
    [0, 1] scale, written on [-1, 1]. The result is **not clamped** (IR-SDE does not clamp its noisy inputs), so
    it leaves [-1, 1]. ``sigma`` is in 0..255 units."""
    _check_images(x, "noise")
    _check_noise(sigma)
    noise = _randn_per_image(x, seed, indices)
    return x + (2.0 * float(sigma) / 255.0) * noise.to(x.dtype)


# ---------------------------------------------------------------------------------------------- blur
def _check_blur(sigma, kernel_size) -> None:
    _require(_is_number(sigma) and sigma > 0, f"blur: sigma must be a number > 0 (pixels), got {sigma!r}")
    _require(kernel_size is None or (_is_int(kernel_size) and kernel_size >= 1 and kernel_size % 2 == 1),
             f"blur: kernel_size must be an odd int >= 1 or None (scaled to the image), got {kernel_size!r}")


def gaussian_kernel(kernel_size: int, sigma: float) -> Tensor:
    """Normalised (sums to 1) 2-D Gaussian kernel (k, k), float64, centred on the middle pixel."""
    _check_blur(sigma, kernel_size)
    r = torch.arange(kernel_size, dtype=torch.float64) - (kernel_size - 1) / 2
    g = torch.exp(-r ** 2 / (2.0 * float(sigma) ** 2))
    g = torch.outer(g, g)
    return g / g.sum()


def gaussian_blur(x: Tensor, seed: int = 0, indices: Indices = None, *, sigma: float = 1.5,
                  kernel_size: int | None = None) -> Tensor:
    """Gaussian blur with std ``sigma`` pixels, reflect padding, same size. ``kernel_size=None``: the odd size
    about min(H, W)/4 (28x28 -> 7, 32x32 -> 9, 8x8 -> 3), capped at ``2*ceil(3*sigma) + 1``. Deterministic; the
    seed and indices are accepted for a uniform interface and unused."""
    _check_images(x, "blur")
    _check_blur(sigma, kernel_size)
    image_seeds(seed, indices, x.shape[0])  # validates the arguments like every other kind
    if kernel_size is None:
        kernel_size = min(_auto_size(x), 2 * math.ceil(3 * float(sigma)) + 1)
    k = gaussian_kernel(kernel_size, sigma)
    return _conv_per_image(x, k.expand(x.shape[0], kernel_size, kernel_size), "blur")


# --------------------------------------------------------------------------------------- motion blur
def _check_motion_blur(length) -> None:
    _require(length is None or (_is_int(length) and length >= 1),
             f"motion-blur: length must be an int >= 1 (pixels) or None (scaled to the image), got {length!r}")


def motion_blur_kernel(length: int, angle: float) -> Tensor:
    """Linear motion-blur kernel (k, k), float64, summing to 1: the segment of ``length`` pixels through the
    centre at ``angle`` radians (0 = horizontal, counter-clockwise on screen), rasterised with weight
    ``max(0, 1 - distance to the segment)`` per pixel centre (an anti-aliased one-pixel-wide line).
    ``k = length`` rounded up to odd; ``length=1`` is the identity. Point-symmetric, so correlation equals
    convolution."""
    _require(_is_int(length) and length >= 1, f"motion-blur: length must be an int >= 1, got {length!r}")
    k = int(length) | 1
    c = (k - 1) / 2
    half = (length - 1) / 2
    d = torch.tensor([math.cos(angle), -math.sin(angle)], dtype=torch.float64)  # (col, row): rows go down
    rows, cols = torch.meshgrid(torch.arange(k, dtype=torch.float64) - c, torch.arange(k, dtype=torch.float64) - c,
                                indexing="ij")
    t = (cols * d[0] + rows * d[1]).clamp(-half, half)
    dist = torch.sqrt((cols - t * d[0]) ** 2 + (rows - t * d[1]) ** 2)
    w = (1.0 - dist).clamp_min(0.0)
    return w / w.sum()


def motion_blur(x: Tensor, seed: int, indices: Indices = None, *, length: int | None = None) -> Tensor:
    """Linear motion blur over ``length`` pixels (None: odd, about min(H, W)/4: 28 -> 7, 32 -> 9, 8 -> 3) at an
    angle drawn uniformly in [0, pi) per image from its generator; one ``conv2d`` per image, reflect padding,
    same size."""
    _check_images(x, "motion-blur")
    _check_motion_blur(length)
    if length is None:
        length = _auto_size(x)
    angles = [math.pi * float(torch.rand((), generator=g, dtype=torch.float64)) for g in _generators(x, seed, indices)]
    kernels = torch.stack([motion_blur_kernel(length, a) for a in angles]) if angles else \
        torch.zeros(0, length | 1, length | 1, dtype=torch.float64)
    return _conv_per_image(x, kernels, "motion-blur")


# ------------------------------------------------------------------------------------------- inpaint
def _check_inpaint(area, strokes, fill) -> None:
    _require(_is_number(area) and 0 <= area <= 1, f"inpaint: area must be a number in [0, 1] (fraction of the "
             f"image covered by the box), got {area!r}")
    _require(_is_int(strokes) and strokes >= 0, f"inpaint: strokes must be an int >= 0, got {strokes!r}")
    _require(_is_number(fill) and -1 <= fill <= 1, f"inpaint: fill must be a number in [-1, 1], got {fill!r}")
    _require(area > 0 or strokes > 0, "inpaint: area = 0 and strokes = 0 mask nothing")


def _one_mask(h: int, w: int, g: torch.Generator, area: float, strokes: int) -> Tensor:
    mask = torch.zeros(h, w, dtype=torch.bool)
    u = torch.rand(3 + 4 * strokes, generator=g, dtype=torch.float64).tolist()
    if area > 0:
        target = area * h * w
        aspect = math.exp((2 * u[0] - 1) * math.log(2.0))  # box height / width in [1/2, 2], log-uniform
        bh = min(h, max(1, round(math.sqrt(target * aspect))))
        bw = min(w, max(1, round(target / bh)))
        top, left = int(u[1] * (h - bh + 1)), int(u[2] * (w - bw + 1))
        mask[top:top + bh, left:left + bw] = True
    if strokes:
        width = max(1.0, round(min(h, w) / 10))
        rows, cols = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64),
                                    indexing="ij")
        for s in range(strokes):
            r0, c0, r1, c1 = (v * n - 0.5 for v, n in zip(u[3 + 4 * s:7 + 4 * s], (h, w, h, w), strict=True))
            dr, dc = r1 - r0, c1 - c0
            t = (((rows - r0) * dr + (cols - c0) * dc) / max(dr * dr + dc * dc, 1e-12)).clamp(0.0, 1.0)
            dist = torch.sqrt((rows - r0 - t * dr) ** 2 + (cols - c0 - t * dc) ** 2)
            mask |= dist <= width / 2
    return mask


def inpaint_mask(shape: Sequence[int], seed: int, indices: Indices = None, *, area: float = 0.25,
                 strokes: int = 0) -> Tensor:
    """Boolean mask (N, 1, H, W), True = missing pixel, for images of ``shape`` (N, C, H, W) (or (N, H, W)).

    Per image, from its generator: one axis-aligned box with height/width ratio log-uniform in [1/2, 2] and
    ``h * w`` within ``h/2`` pixels of ``area * H * W`` (for the default 0.25 on 28x28 or 32x32 images: 23-27 %
    of the pixels; boxes are clipped to the image only when ``area`` > 0.5), at a uniform position; then
    ``strokes`` thick segments (width ``max(1, round(min(H, W)/10))``, end points uniform in the image). The box
    is drawn first, so adding strokes never moves it."""
    _check_inpaint(area, strokes, -1.0)
    n, (h, w) = int(shape[0]), (int(shape[-2]), int(shape[-1]))
    gens = generators_from_seeds(image_seeds(seed, indices, n))
    if n == 0:
        return torch.zeros(0, 1, h, w, dtype=torch.bool)
    return torch.stack([_one_mask(h, w, g, float(area), int(strokes)) for g in gens])[:, None]


def inpaint(x: Tensor, seed: int, indices: Indices = None, *, area: float = 0.25, strokes: int = 0,
            fill: float = -1.0) -> Tensor:
    """Pixels under :func:`inpaint_mask` (all channels) set to ``fill``; the default -1 is black, IR-SDE's 0 on
    the [0, 1] scale. Other pixels are returned unchanged."""
    _check_images(x, "inpaint")
    _check_inpaint(area, strokes, fill)
    mask = inpaint_mask(x.shape, seed, indices, area=area, strokes=strokes)
    return x.masked_fill(mask, float(fill))


# ----------------------------------------------------------------------------------------- low light
def _check_low_light(gamma, scale, sigma) -> None:
    _require(_is_number(gamma) and gamma > 0, f"low-light: gamma must be a number > 0, got {gamma!r}")
    _require(_is_number(scale) and 0 < scale <= 1, f"low-light: scale must be a number in (0, 1], got {scale!r}")
    _require(_is_number(sigma) and 0 <= sigma <= 255, f"low-light: sigma must be a number in [0, 255] (0..255 "
             f"units), got {sigma!r}")


def low_light(x: Tensor, seed: int, indices: Indices = None, *, gamma: float = 2.0, scale: float = 0.3,
              sigma: float = 5.0) -> Tensor:
    """Under-exposure on the [0, 1] scale: ``x01 ** gamma * scale + sigma/255 * z`` (z ~ N(0, I) per image, the
    sensor noise of a dark shot; ``sigma`` in 0..255 units), clamped to [0, 1] like a stored image, returned on
    [-1, 1]. The defaults darken a mid-grey 0.5 to 0.075."""
    _check_images(x, "low-light")
    _check_low_light(gamma, scale, sigma)
    noise = _randn_per_image(x, seed, indices)
    x01 = ((x + 1) / 2).clamp(0.0, 1.0)
    y01 = x01 ** float(gamma) * float(scale) + (float(sigma) / 255.0) * noise.to(x.dtype)
    return y01.clamp(0.0, 1.0) * 2 - 1


# ---------------------------------------------------------------------------------------------- jpeg
def _check_jpeg(quality) -> None:
    _require(_is_int(quality) and 1 <= quality <= 100, f"jpeg: quality must be an int in 1..100, got {quality!r}")


def _to_uint8(x: Tensor) -> np.ndarray:
    """(C, H, W) in [-1, 1] -> (H, W) or (H, W, 3) uint8, rounded."""
    a = ((x.detach().double().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).numpy()
    return a[0] if a.shape[0] == 1 else np.ascontiguousarray(a.transpose(1, 2, 0))


def jpeg_compress(x: Tensor, seed: int = 0, indices: Indices = None, *, quality: int = 10) -> Tensor:
    """JPEG round trip per image with Pillow: round to uint8, ``Image.save(format="JPEG", quality=quality)`` into
    memory, decode, back to [-1, 1] (so the output is on the uint8 grid). Grey ("L") for C = 1, "RGB" for C = 3
    with Pillow's default 4:2:0 chroma subsampling. Deterministic for a given Pillow/libjpeg build (bytes may
    differ across builds); the seed and indices are accepted for a uniform interface and unused."""
    from PIL import Image

    _check_images(x, "jpeg")
    _check_jpeg(quality)
    image_seeds(seed, indices, x.shape[0])
    _require(x.shape[1] in (1, 3), f"jpeg: needs 1 or 3 channels, got {x.shape[1]}")
    out = torch.empty_like(x)
    for i in range(x.shape[0]):
        buf = io.BytesIO()
        Image.fromarray(_to_uint8(x[i])).save(buf, format="JPEG", quality=int(quality))
        buf.seek(0)
        with Image.open(buf) as im:
            a = np.asarray(im.convert("L" if x.shape[1] == 1 else "RGB"))
        a = a[None] if a.ndim == 2 else a.transpose(2, 0, 1)
        out[i] = torch.from_numpy(a.astype(np.float32)).to(x.dtype) / 127.5 - 1
    return out


# ---------------------------------------------------------------------------------------- downsample
def _check_downsample(factor) -> None:
    _require(_is_int(factor) and factor >= 1, f"downsample: factor must be an int >= 1, got {factor!r}")


def bicubic_resize(x: Tensor, size: tuple[int, int]) -> Tensor:
    """Resize (N, C, H, W) to ``size`` = (h, w) with Pillow's bicubic filter (``Image.BICUBIC``, a = -0.5,
    antialiased when shrinking like MATLAB's ``imresize``) on float32 ("F" mode) planes: no uint8 rounding, no
    clamping."""
    from PIL import Image

    h, w = int(size[0]), int(size[1])
    out = torch.empty(x.shape[0], x.shape[1], h, w, dtype=x.dtype)
    planes = x.detach().to(torch.float32).numpy()
    for i in range(x.shape[0]):
        for c in range(x.shape[1]):
            im = Image.fromarray(np.ascontiguousarray(planes[i, c]))
            out[i, c] = torch.from_numpy(np.array(im.resize((w, h), resample=Image.BICUBIC), dtype=np.float32))
    return out


def downsample(x: Tensor, seed: int = 0, indices: Indices = None, *, factor: int = 4) -> Tensor:
    """Super-resolution input: bicubic down-sampling to (H // factor, W // factor), clamped to [-1, 1] (a
    low-resolution image), then bicubic up-sampling back to (H, W), clamped again. The result has the clean
    image's shape because the conditional model takes ``mu`` at full size (IR-SDE's SR conditions on the
    up-sampled LR image). 28x28 MNIST with factor 4 goes through 7x7; 8x8 digits through 2x2 (allowed, though
    little is left). Deterministic; the seed and indices are accepted for a uniform interface and unused."""
    _check_images(x, "downsample")
    _check_downsample(factor)
    image_seeds(seed, indices, x.shape[0])
    h, w = x.shape[-2:]
    _require(h // factor >= 1 and w // factor >= 1,
             f"downsample: factor {factor} is too large for {h}x{w} images")
    low = bicubic_resize(x, (h // factor, w // factor)).clamp(-1, 1)
    return bicubic_resize(low, (h, w)).clamp(-1, 1)


# ---------------------------------------------------------------------------------------------- registry
DEGRADATIONS: dict[str, DegradationFn] = {
    "noise": add_gaussian_noise,
    "blur": gaussian_blur,
    "motion-blur": motion_blur,
    "inpaint": inpaint,
    "low-light": low_light,
    "jpeg": jpeg_compress,
    "downsample": downsample,
}

_CHECKS: dict[str, Callable[..., None]] = {
    "noise": _check_noise,
    "blur": _check_blur,
    "motion-blur": _check_motion_blur,
    "inpaint": _check_inpaint,
    "low-light": _check_low_light,
    "jpeg": _check_jpeg,
    "downsample": _check_downsample,
}

# Task names: the kind's prefix and the parameter that goes into the name (denoise25, jpeg10, sr4).
_NAMED_PARAM = {"noise": ("denoise", "sigma"), "jpeg": ("jpeg", "quality"), "downsample": ("sr", "factor")}


def _defaults(kind: str) -> dict[str, ParamValue]:
    params = inspect.signature(DEGRADATIONS[kind]).parameters.values()
    return {p.name: p.default for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY}


def _check_kind(kind: str) -> None:
    if kind in DEGRADATIONS:
        return
    close = difflib.get_close_matches(str(kind), list(DEGRADATIONS), n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    raise ValueError(f"unknown degradation {kind!r}{hint} (known: {', '.join(sorted(DEGRADATIONS))})")


def _resolve(kind: str, params: dict[str, ParamValue]) -> tuple[tuple[str, ParamValue], ...]:
    _check_kind(kind)
    defaults = _defaults(kind)
    for key in params:
        if key not in defaults:
            close = difflib.get_close_matches(key, list(defaults), n=1, cutoff=0.5)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ValueError(f"{kind}: unknown parameter {key!r}{hint} (valid: {', '.join(sorted(defaults))})")
    resolved = {**defaults, **{k: _plain(v, defaults[k]) for k, v in params.items()}}
    _CHECKS[kind](**resolved)
    return tuple(sorted(resolved.items()))


def _plain(v, default: ParamValue):
    """numpy scalars as Python numbers, and an int given for a float parameter as a float (so specs compare,
    hash and serialise alike)."""
    if isinstance(v, (np.integer, np.floating)):
        v = v.item()
    if isinstance(default, float) and _is_int(v):
        v = float(v)
    return v


def _format(v: ParamValue) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


@dataclass(frozen=True)
class Degradation:
    """A degradation spec: ``kind`` (a key of :data:`DEGRADATIONS`) and its parameters, resolved on
    construction to every parameter of the kind (defaults filled in) sorted by name, and validated.

    ``name`` is the task name: ``denoise<sigma>``, ``jpeg<quality>``, ``sr<factor>``, else the kind, with
    ``-<param><value>`` appended for each other parameter that differs from its default (``blur-sigma2``)."""

    kind: str
    params: tuple[tuple[str, ParamValue], ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "params", _resolve(self.kind, dict(self.params)))

    @property
    def params_dict(self) -> dict[str, ParamValue]:
        return dict(self.params)

    @property
    def name(self) -> str:
        prefix, named = _NAMED_PARAM.get(self.kind, (self.kind, None))
        p = self.params_dict
        name = prefix + (_format(p[named]) if named else "")
        defaults = _defaults(self.kind)
        for key, value in self.params:
            if key != named and value != defaults[key]:
                name += f"-{key}{_format(value)}"
        return name

    def apply(self, x: Tensor, seed: int, indices: Indices = None) -> Tensor:
        """The degraded copy of ``x`` (N, C, H, W); row i depends only on ``(seed, indices[i])`` and row i."""
        return DEGRADATIONS[self.kind](x, seed, indices, **self.params_dict)


def get_degradation(kind: str, **params: ParamValue) -> Degradation:
    """A validated :class:`Degradation` (e.g. ``get_degradation("noise", sigma=50).name == "denoise50"``);
    ValueError naming the closest kinds for an unknown kind, and for unknown or invalid parameters."""
    return Degradation(kind, tuple(params.items()))


def degrade(x: Tensor, kind: str, seed: int, indices: Indices = None, **params: ParamValue) -> Tensor:
    """``get_degradation(kind, **params).apply(x, seed, indices)``."""
    return get_degradation(kind, **params).apply(x, seed, indices)
