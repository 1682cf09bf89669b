"""Checkpoints: tensors and NumPy arrays in safetensors, everything else (optimizer hyper-parameters, RNG
states, counters, the evaluation curve) in a JSON skeleton beside it (``state.json``); written into a
temporary directory and renamed into place, so a run killed while saving keeps its previous checkpoint.

Nothing here can execute code on load: no pickle. JSON cannot hold tuples, dicts with non-string keys, NumPy
arrays or scalars, so those are tagged (``{"__tuple__": [...]}``, ``{"__items__": [[k, v], ...]}``,
``"__ndarray__:<key>"`` pointing into the safetensors file, ``{"__np__": dtype, "v": value}``); anything
else is refused when saving. A file that fails to parse or to match its tensors is one
:class:`~suite.errors.CorruptFileError` naming the file. Checkpoints of older versions (``state.pt``, a
pickle) are refused with a message, never unpickled."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .errors import CorruptFileError

_TENSOR = "__tensor__:"
_NDARRAY = "__ndarray__:"


def _split(obj: Any, prefix: str, tensors: dict[str, torch.Tensor]) -> Any:
    key = prefix or "root"
    if isinstance(obj, torch.Tensor):
        tensors[key] = obj.detach().contiguous().cpu().clone() if obj.is_cuda else obj.detach().contiguous()
        return _TENSOR + key
    if isinstance(obj, np.ndarray):
        tensors[key] = torch.from_numpy(np.ascontiguousarray(obj).copy())
        return _NDARRAY + key
    if isinstance(obj, np.generic):
        return {"__np__": obj.dtype.str, "v": obj.item()}
    if isinstance(obj, dict):
        if all(isinstance(k, str) for k in obj):
            return {k: _split(v, f"{prefix}.{k}" if prefix else str(k), tensors) for k, v in obj.items()}
        return {"__items__": [[_split(k, f"{prefix}.k{i}", tensors), _split(v, f"{prefix}.{i}", tensors)]
                              for i, (k, v) in enumerate(obj.items())]}
    if isinstance(obj, (list, tuple)):
        items = [_split(v, f"{prefix}.{i}" if prefix else str(i), tensors) for i, v in enumerate(obj)]
        return items if isinstance(obj, list) else {"__tuple__": items}
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"checkpoint state holds a {type(obj).__name__} at {key!r}; only tensors, arrays, numbers, "
                    "strings, lists, tuples and dicts are stored (no pickle)")


def _join(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, str) and obj.startswith(_TENSOR):
        return tensors[obj[len(_TENSOR):]]
    if isinstance(obj, str) and obj.startswith(_NDARRAY):
        return tensors[obj[len(_NDARRAY):]].numpy()
    if isinstance(obj, dict):
        if "__tuple__" in obj and len(obj) == 1:
            return tuple(_join(v, tensors) for v in obj["__tuple__"])
        if "__items__" in obj and len(obj) == 1:
            return {_join(k, tensors): _join(v, tensors) for k, v in obj["__items__"]}
        if "__np__" in obj and set(obj) == {"__np__", "v"}:
            return np.dtype(obj["__np__"]).type(obj["v"])
        return {k: _join(v, tensors) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_join(v, tensors) for v in obj]
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
    (tmp / "state.json").write_text(json.dumps({"tensors_sha256": _sha256(tmp / "tensors.safetensors"),
                                                "state": skeleton}))
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


def _sha256(path: Path) -> str | None:
    from .data.store import sha256_file

    return sha256_file(path) if path.exists() else None


def _state_dir(directory: Path) -> Path:
    if not (directory / "state.json").exists():
        old = directory.with_name(directory.name + ".old")  # killed between the two renames
        if (old / "state.json").exists():
            return old
    return directory


def load_checkpoint(directory: str | Path, device: str | torch.device = "cpu") -> dict[str, Any]:
    directory = _state_dir(Path(directory))
    state = directory / "state.json"
    if not state.exists() and (directory / "state.pt").exists():
        raise CorruptFileError(f"{directory / 'state.pt'} is a pickle checkpoint from an older version of the "
                               "suite; it is not loaded (unpickling can run code). Start the run again without "
                               "--resume")
    try:
        doc = json.loads(state.read_text())
    except (OSError, ValueError) as e:
        raise CorruptFileError(f"checkpoint {state} is damaged ({type(e).__name__}: {e}); start the run again "
                               "without --resume") from None
    if not isinstance(doc, dict) or "state" not in doc:
        raise CorruptFileError(f"checkpoint {state} is not a suite checkpoint; start the run again without --resume")
    if doc.get("tensors_sha256") != _sha256(directory / "tensors.safetensors"):
        raise CorruptFileError(f"checkpoint {directory / 'tensors.safetensors'} does not match the sha256 in "
                               f"{state.name}; start the run again without --resume")
    try:
        tensors = load_file(str(directory / "tensors.safetensors"), device=str(device))
    except (SafetensorError, OSError, ValueError) as e:
        raise CorruptFileError(f"checkpoint {directory / 'tensors.safetensors'} cannot be read ({e}); start "
                               "the run again without --resume") from None
    try:
        return _join(doc["state"], tensors)
    except (ValueError, KeyError, TypeError) as e:
        raise CorruptFileError(f"checkpoint {state} is damaged ({type(e).__name__}: {e}); start the run again "
                               "without --resume") from None


def has_checkpoint(directory: str | Path) -> bool:
    directory = Path(directory)
    old = directory.with_name(directory.name + ".old")
    return any((d / name).exists() for d in (directory, old) for name in ("state.json", "state.pt"))
