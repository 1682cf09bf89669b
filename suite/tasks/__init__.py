"""Versioned task registry: frozen, JSON-serialisable `TaskSpec`s with Gymnasium-style ids.

Ids are ``[namespace/]name-vN``. An id without a version resolves to the newest registered version
(``hopper-random`` -> ``hopper-random-v0``). A change to a task's data, protocol or normalisation makes a new
version; old versions stay registered, so old run records keep their meaning.

Kinds: ``offline-rl``, ``offline-il`` (offline imitation: rewards removed), ``generation`` (unconditional
sampling) and ``restoration`` (conditional generation).
"""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass, field
from typing import Any

from ..errors import UnknownIdError
from ..registry import Registry

TASK_KINDS = ("offline-rl", "offline-il", "generation", "restoration")
_ID_RE = re.compile(r"^(?:(?P<ns>[A-Za-z0-9_.\-/]+)/)?(?P<name>[A-Za-z0-9_.\-]+?)(?:-v(?P<version>\d+))?$")


def parse_id(task_id: str) -> tuple[str | None, str, int | None]:
    """Split ``ns/name-vN`` into (namespace, name, version); version None when absent."""
    m = _ID_RE.match(task_id)
    if not m:
        raise UnknownIdError(f"malformed task id {task_id!r}; expected [namespace/]name-vN")
    version = m.group("version")
    return m.group("ns"), m.group("name"), int(version) if version is not None else None


@dataclass(frozen=True)
class References:
    """Returns that map to normalised scores 0 and 100, and where they come from."""

    min_return: float
    max_return: float
    source: str

    def normalize(self, ret: float) -> float:
        return 100.0 * (ret - self.min_return) / (self.max_return - self.min_return)

    @property
    def bounds(self) -> tuple[float, float]:
        """(min_return, max_return), as Minari's ref_min_score / ref_max_score."""
        return (self.min_return, self.max_return)


@dataclass(frozen=True)
class DatasetSpec:
    """Where an offline dataset comes from.

    source: ``recipe`` (the suite builds it from `policies` on `env_id`), ``d4rl`` (imported from a D4RL hdf5
    file), ``minari-remote`` (downloaded through Minari when online)."""

    dataset_id: str
    env_id: str
    source: str = "recipe"
    policies: tuple[str, ...] = ("random",)  # "random" or policy names under suite/data/policies/
    default_steps: int = 1_000_000
    seed: int = 0
    n_trajectories: int | None = None  # keep only the first N episodes (imitation tasks)
    remove_rewards: bool = False


@dataclass(frozen=True)
class TaskSpec:
    id: str
    kind: str
    description: str
    dataset: DatasetSpec | None = None
    env_id: str | None = None  # evaluation environment (Gymnasium id)
    references: References | None = None
    eval_episodes: int = 10
    eval_every: int = 5000
    train_steps: int = 1_000_000
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        if self.kind not in TASK_KINDS:
            raise ValueError(f"task kind {self.kind!r} not in {TASK_KINDS}")
        parse_id(self.id)

    @property
    def version(self) -> int:
        v = parse_id(self.id)[2]
        assert v is not None
        return v

    @property
    def unversioned(self) -> str:
        return self.id.rsplit("-v", 1)[0]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TaskSpec:
        d = dict(d)
        if d.get("dataset") is not None:
            ds = dict(d["dataset"])
            ds["policies"] = tuple(ds.get("policies", ()))
            d["dataset"] = DatasetSpec(**ds)
        if d.get("references") is not None:
            d["references"] = References(**d["references"])
        return cls(**d)


class TaskRegistry(Registry[TaskSpec]):
    def __init__(self):
        super().__init__("task")

    def register_task(self, spec: TaskSpec) -> TaskSpec:
        if parse_id(spec.id)[2] is None:
            raise ValueError(f"task id {spec.id!r} needs a version suffix -vN")
        return self.register(spec.id, spec)

    def resolve(self, task_id: str) -> str:
        """Full versioned id for `task_id` (newest version when none is given)."""
        ns, name, version = parse_id(task_id)
        if version is not None:
            if task_id in self._entries:
                return task_id
        else:
            prefix = (f"{ns}/" if ns else "") + name
            versions = [parse_id(i)[2] for i in self._entries if i.rsplit("-v", 1)[0] == prefix]
            if versions:
                return f"{prefix}-v{max(versions)}"
        unversioned = sorted({i.rsplit("-v", 1)[0] for i in self._entries})
        raise self.unknown(task_id, unversioned + self.ids())

    def get(self, task_id: str) -> TaskSpec:
        return self._entries[self.resolve(task_id)]


registry = TaskRegistry()


def register(spec: TaskSpec) -> TaskSpec:
    return registry.register_task(spec)


def get_task(task_id: str) -> TaskSpec:
    return registry.get(task_id)


def list_tasks(kind: str | None = None) -> list[TaskSpec]:
    return [s for _, s in registry.items() if kind is None or s.kind == kind]


from . import external as _external  # noqa: E402,F401
from . import generation as _generation  # noqa: E402,F401
from . import mujoco as _mujoco  # noqa: E402,F401  (registers the built-in tasks)
from . import restoration as _restoration  # noqa: E402,F401
