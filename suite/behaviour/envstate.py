"""Save and restore a Gymnasium environment mid-episode, so a resumed behaviour-policy run continues the very
episode it stopped in: the simulator state (MuJoCo's full integration state, including the solver warm start,
or a classic-control `state`), every wrapper's time-limit counter and the environment's random generator."""

from __future__ import annotations

import copy
from typing import Any

import gymnasium as gym
import numpy as np


def _wrappers(env: gym.Env):
    w = env
    while True:
        yield w
        if not hasattr(w, "env"):
            return
        w = w.env


def env_state(env: gym.Env) -> dict[str, Any]:
    """Everything needed to continue an episode exactly (JSON + arrays: a `suite.checkpoint` can hold it)."""
    u = env.unwrapped
    state: dict[str, Any] = {"np_random": copy.deepcopy(u.np_random.bit_generator.state)}
    state["elapsed_steps"] = [getattr(w, "_elapsed_steps", None) for w in _wrappers(env)]
    if hasattr(u, "model") and hasattr(u, "data"):
        import mujoco

        spec = mujoco.mjtState.mjSTATE_INTEGRATION
        buf = np.empty(mujoco.mj_stateSize(u.model, spec))
        mujoco.mj_getState(u.model, u.data, buf, spec)
        state["mujoco"] = buf
    elif hasattr(u, "state"):
        state["state"] = copy.deepcopy(u.state)
    else:
        raise TypeError(f"don't know how to checkpoint the state of {type(u).__name__}")
    return state


def set_env_state(env: gym.Env, state: dict[str, Any]) -> None:
    """Put `env` back where `env_state` found it."""
    u = env.unwrapped
    u.np_random.bit_generator.state = state["np_random"]
    for w, elapsed in zip(_wrappers(env), state["elapsed_steps"], strict=True):
        if elapsed is not None:
            w._elapsed_steps = elapsed
    if "mujoco" in state:
        import mujoco

        mujoco.mj_setState(u.model, u.data, state["mujoco"], mujoco.mjtState.mjSTATE_INTEGRATION)
        mujoco.mj_forward(u.model, u.data)
    else:
        u.state = copy.deepcopy(state["state"])
