"""Method registry: method name -> lazy entry point of its agent (or sampler run function), its config
dataclass, and the task kinds it supports. Plus config resolution: dataclass defaults (the paper's) <-
per-task config file (``agents/configs/<method>/<task id>.json``, see `task_config_file`) <- ``--set key=value``
overrides."""

from __future__ import annotations

import dataclasses
import json
import re
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import ConfigError
from .registry import Registry, load_entry_point

CONFIG_ROOT = Path(__file__).resolve().parent.parent / "agents" / "configs"


@dataclass(frozen=True)
class MethodSpec:
    name: str
    entry_point: str  # "module:Class" of the agent, or "module:function" running a generative method
    config: str  # "module:ConfigDataclass"
    task_kinds: tuple[str, ...]
    description: str
    kind: str = "agent"  # "agent" (trained by suite.runner) or "generative" (suite.generation)

    def load(self):
        return load_entry_point(self.entry_point)

    def config_class(self) -> type:
        return load_entry_point(self.config)


registry: Registry[MethodSpec] = Registry("method")


def register(spec: MethodSpec) -> MethodSpec:
    return registry.register(spec.name, spec)


def get_method(name: str) -> MethodSpec:
    return registry.get(name)


_RL = ("offline-rl",)
_RL_IL = ("offline-rl", "offline-il")
for _spec in [
    MethodSpec("bc", "agents.bc:BC", "agents.bc:BCConfig", _RL_IL, "behaviour cloning (CORL settings)"),
    MethodSpec(
        "odice",
        "agents.odice:ODICE",
        "agents.odice:ODICEConfig",
        _RL_IL,
        "O-DICE: orthogonal-gradient DICE (Mao et al., ICLR 2024)",
    ),
    MethodSpec("td3bc", "agents.td3bc:TD3BC", "agents.td3bc:TD3BCConfig", _RL, "TD3+BC (Fujimoto & Gu, 2021)"),
    MethodSpec("iql", "agents.iql:IQL", "agents.iql:IQLConfig", _RL, "implicit Q-learning (Kostrikov et al., 2022)"),
    MethodSpec("cql", "agents.cql:CQL", "agents.cql:CQLConfig", _RL, "conservative Q-learning (Kumar et al., 2020)"),
]:
    register(_spec)


def _register_samplers() -> None:
    """Every sampler in generative's one registry is a suite method (adding a sampler adds a method)."""
    from generative.samplers import REGISTRY

    for spec in REGISTRY.values():
        if "restoration" in spec.task_kinds:  # conditional samplers: suite.restoration trains their model
            register(MethodSpec(spec.name, "suite.restoration:run_restoration",
                                "suite.restoration:RestorationConfig", spec.task_kinds, spec.description,
                                kind="generative"))
            continue
        register(MethodSpec(spec.name, "suite.generation:run_generative", "suite.generation:SamplerConfig",
                            spec.task_kinds, spec.description, kind="generative"))


_register_samplers()


register(MethodSpec("score-sde", "suite.generation_images:run_score_sde",
                    "suite.generation_images:ScoreSDERunConfig",
                    ("generation",), "score-based SDE: train a score model (DSM), then sample (Song et al. 2021)",
                    kind="generative"))


def _parse_value(text: str, tp: Any, key: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is typing.Union or str(origin) == "<class 'types.UnionType'>":
        if text.lower() in ("none", "null"):
            return None
        non_none = [a for a in args if a is not type(None)]
        return _parse_value(text, non_none[0], key)
    try:
        if tp is bool:
            low = text.lower()
            if low in ("1", "true", "yes", "on"):
                return True
            if low in ("0", "false", "no", "off"):
                return False
            raise ValueError(text)
        if tp is int:
            return int(float(text)) if "e" in text.lower() else int(text)
        if tp is float:
            return float(text)
        if tp is str:
            return text
        if origin in (tuple, list):
            items = json.loads(text) if text.startswith("[") else [s for s in text.split(",") if s]
            inner = args[0] if args else str
            return tuple(_parse_value(str(i), inner, key) for i in items)
    except ValueError:
        raise ConfigError(f"--set {key}={text}: expected a value of type {getattr(tp, '__name__', tp)}") from None
    return json.loads(text)


def task_config_file(method: str, task_id: str) -> Path:
    """The per-task config file: the full task id, namespace included, without its version, so a D4RL task
    and a suite task of the same name have files of their own (`hopper-medium-v1` ->
    ``<method>/hopper-medium.json``, `d4rl/hopper-medium-v2` -> ``<method>/d4rl/hopper-medium.json``). Every
    version of a task shares its file: a new version changes the data, not the method's settings."""
    return CONFIG_ROOT / method / f"{re.sub(r'-v[0-9]+$', '', task_id)}.json"


def resolve_config(method: MethodSpec, task_id: str, overrides: dict[str, str] | None = None):
    """(config object, explicitly-set keys) for `method` on `task_id` with string `overrides`."""
    cls = method.config_class()
    hints = typing.get_type_hints(cls)
    valid = {f.name for f in dataclasses.fields(cls)}
    values: dict[str, Any] = {}
    path = task_config_file(method.name, task_id)
    if path.exists():
        file_values = {k: v for k, v in json.loads(path.read_text()).items() if not k.startswith("_")}
        bad = sorted(set(file_values) - valid)
        if bad:
            raise ConfigError(f"{path} sets unknown key(s) {bad}; valid keys: {sorted(valid)}")
        values.update({k: tuple(v) if isinstance(v, list) else v for k, v in file_values.items()})
    for key, text in (overrides or {}).items():
        if key not in valid:
            raise ConfigError(
                f"unknown config key {key!r} for method {method.name!r}; valid keys: {', '.join(sorted(valid))}"
            )
        values[key] = _parse_value(text, hints[key], key)
    try:
        config = cls(**values)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"invalid config for {method.name}: {e}") from e
    check_ranges(method.name, config)
    return config, set(values)


# Fields whose meaning is a count or a rate: they must be positive (_NON_NEGATIVE: zero means "off", e.g. CQL's
# BC warm-up, 0 on MuJoCo). Every number must be finite.
_NON_NEGATIVE = ("bc_steps",)
_POSITIVE = ("batch_size", "max_steps", "eval_every", "eval_episodes", "n_critics", "cql_n_actions",
             "policy_freq", "target_update_period", "lr", "nfe", "n_steps", "n_samples", "skp", "n_rounds",
             "rtol", "atol", "eta", "train_steps", "sample_steps", "classifier_steps", "corrector_steps", "ch", "batch",
             "n_test")


def check_ranges(name: str, config) -> None:
    """One ConfigError for the first out-of-range value: non-finite numbers anywhere, and counts, step sizes
    and learning rates (names in _POSITIVE, or ending in ``_lr``) that are not positive."""
    import math

    for f in dataclasses.fields(config):
        v = getattr(config, f.name)
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            continue
        if isinstance(v, float) and not math.isfinite(v):
            raise ConfigError(f"{name}: {f.name} must be a finite number, got {v}")
        if (f.name in _POSITIVE or f.name.endswith("_lr")) and v <= 0:
            raise ConfigError(f"{name}: {f.name} must be positive, got {v}")
        if f.name in _NON_NEGATIVE and v < 0:
            raise ConfigError(f"{name}: {f.name} must be >= 0, got {v}")


def parse_overrides(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set expects key=value, got {item!r}")
        out[key.strip()] = value.strip()
    return out


# ------------------------------------------------------------------------------------------------ plug-ins
PLUGIN_GROUP = "odice_suite.methods"
PLUGIN_ERRORS: list[str] = []  # one line per plug-in that failed to load (shown by `suite ls`)


def load_plugins() -> None:
    """Register the methods of installed packages: each entry point of the group ``odice_suite.methods``
    names a `MethodSpec`, a list of them, or a function returning either. A broken plug-in is skipped with
    one line naming its package (in PLUGIN_ERRORS); the built-in methods and the other plug-ins still load."""
    from importlib.metadata import entry_points

    for ep in entry_points(group=PLUGIN_GROUP):
        package = getattr(getattr(ep, "dist", None), "name", None) or ep.value.split(":")[0]
        try:
            obj = ep.load()
            if callable(obj) and not isinstance(obj, MethodSpec):
                obj = obj()
            specs = [obj] if isinstance(obj, MethodSpec) else list(obj)
            for spec in specs:
                if not isinstance(spec, MethodSpec):
                    raise TypeError(f"{spec!r} is not a suite.methods.MethodSpec")
                register(spec)
        except Exception as e:  # any failure of third-party code: one line, never a broken registry
            PLUGIN_ERRORS.append(f"method plug-in {ep.name!r} from package {package!r} was not loaded: "
                                 f"{type(e).__name__}: {e}")


load_plugins()
