"""Checkpoints: tensors in safetensors, everything else (optimizer hyper-parameters, RNG states, counters,
the evaluation curve) in a small pickle beside it; written into a temporary directory and renamed into
place, so a run killed while saving keeps its previous checkpoint."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

_TENSOR = "__tensor__:"


def _split(obj: Any, prefix: str, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, torch.Tensor):
        key = prefix or "root"
        tensors[key] = obj.detach().contiguous().cpu().clone() if obj.is_cuda else obj.detach().contiguous()
        return _TENSOR + key
    if isinstance(obj, dict):
        return {k: _split(v, f"{prefix}.{k}" if prefix else str(k), tensors) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        items = [_split(v, f"{prefix}.{i}" if prefix else str(i), tensors) for i, v in enumerate(obj)]
        return items if isinstance(obj, list) else tuple(items)
    return obj


def _join(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, str) and obj.startswith(_TENSOR):
        return tensors[obj[len(_TENSOR) :]]
    if isinstance(obj, dict):
        return {k: _join(v, tensors) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_join(v, tensors) for v in obj]
    if isinstance(obj, tuple):
        return tuple(_join(v, tensors) for v in obj)
    return obj


def save_checkpoint(directory: str | Path, state: dict[str, Any]) -> Path:
    directory = Path(directory)
    tmp = directory.with_name(directory.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    tensors: dict[str, torch.Tensor] = {}
    skeleton = _split(state, "", tensors)
    # safetensors refuses tensors that share memory; clone views so each is stored on its own
    seen: set[int] = set()
    for k, t in tensors.items():
        if (
            t.data_ptr() in seen
            or not t.is_contiguous()
            or t.storage_offset() != 0
            or t.numel() != t.untyped_storage().nbytes() // max(t.element_size(), 1)
        ):
            tensors[k] = t.clone()
        seen.add(tensors[k].data_ptr())
    save_file(tensors, str(tmp / "tensors.safetensors"))
    torch.save(skeleton, tmp / "state.pt")
    for f in tmp.iterdir():
        with open(f, "rb") as fh:
            os.fsync(fh.fileno())
    old = directory.with_name(directory.name + ".old")
    if directory.exists():
        if old.exists():
            shutil.rmtree(old)
        os.replace(directory, old)
    os.replace(tmp, directory)
    if old.exists():
        shutil.rmtree(old)
    return directory


def load_checkpoint(directory: str | Path, device: str | torch.device = "cpu") -> dict[str, Any]:
    directory = Path(directory)
    if not (directory / "state.pt").exists():
        old = directory.with_name(directory.name + ".old")  # killed between the two renames
        if (old / "state.pt").exists():
            directory = old
    tensors = load_file(str(directory / "tensors.safetensors"), device=str(device))
    skeleton = torch.load(directory / "state.pt", weights_only=False)
    return _join(skeleton, tensors)


def has_checkpoint(directory: str | Path) -> bool:
    directory = Path(directory)
    return (directory / "state.pt").exists() or (directory.with_name(directory.name + ".old") / "state.pt").exists()
