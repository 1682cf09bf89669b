"""Check a built suite dataset against the manifests of the behaviour policies it was built from.

A recipe dataset stores its episodes policy by policy, in the order of `suite_recipe["policies"]`, and each
policy contributed exactly its recorded number of steps; so every episode can be attributed to its policy.
For each policy, the mean return of its *complete* episodes (ended by a termination or by the environment's
time limit; the at most `n_envs` episodes cut by the step budget are left out, they are short by
construction) is compared with the return measured when the policy was shipped (manifest `evaluation`, or
`reference.json` for the uniform random policy):

    z = (mean_data − mean_manifest) / sqrt(std_manifest² / n_manifest + std_data² / n_data)

|z| ≤ 4 is "ok": both are averages of independent episodes of the same stochastic policy, so a larger
difference means the dataset is not what the manifest says (wrong policy file, deterministic instead of
stochastic actions, a changed environment).

Known bias: the step budget is more likely to cut a long episode than a short one, so leaving the cut ones
out favours short episodes. Where return grows with episode length (Hopper, Walker2d) and a policy has only a
few episodes per slot, the dataset mean comes out low: walker2d-medium-replay at 100k steps (about 7
episodes per slot for its 25k-step snapshot) gives z = −3.8. At 1M steps the effect is small."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass

import numpy as np

from ..errors import CorruptFileError, SuiteError
from . import store
from .build import POLICY_DIR

Z_LIMIT = 4.0


@dataclass(frozen=True)
class PolicyCheck:
    policy: str  # recipe name: random, medium, expert, replay/step_0005000
    steps: int
    episodes: int  # complete episodes used
    return_mean: float
    return_std: float
    manifest_mean: float | None
    manifest_std: float | None
    manifest_episodes: int | None
    normalized: float | None  # dataset mean return on the dataset's reference scale (0 = random, 100 = ref max)
    z: float | None

    @property
    def ok(self) -> bool:
        return self.z is not None and abs(self.z) <= Z_LIMIT

    def to_dict(self) -> dict:
        return {**asdict(self), "ok": self.ok}


def _manifest(env_id: str, entry: dict) -> tuple[float, float, int] | None:
    """(mean, std, episodes) of the return measured for a recipe policy when it was shipped."""
    root = POLICY_DIR / env_id
    if entry["file"] is None:  # uniform random policy: measured in reference.json
        path = root / "reference.json"
        if not path.exists():
            return None
        ref = json.loads(path.read_text())
        return float(ref["random_return"]), float(ref["random_return_std"]), int(ref["episodes"])
    path = POLICY_DIR / entry["file"]
    path = path.with_suffix(".json")
    if not path.exists():
        return None
    ev = json.loads(path.read_text())["evaluation"]
    return float(ev["return_mean"]), float(ev["return_std"]), int(ev["episodes"])


def level_band(dataset_id: str, checks: list[PolicyCheck]) -> tuple[str, float, bool, str] | None:
    """(level, D4RL-normalised score, in band, band) of a built v1+ dataset: the mean of its policies' dataset
    returns with equal weight (each policy contributes the same number of steps), judged against D4RL's band for
    the level (`suite.behaviour.levels.band`; medium-replay and medium-expert against the shipped medium and
    expert manifests). None for datasets without D4RL reference returns or a level name."""
    from ..behaviour.levels import LEVEL_ORDER, band, level_scores
    from ..tasks.references import d4rl_normalized_score

    parts = dataset_id.split("/")
    env, rest = (parts[1], parts[2]) if len(parts) == 3 else (None, "")
    level, _, version = rest.rpartition("-")
    if env is None or level not in LEVEL_ORDER or not checks:
        return None
    scores = [d4rl_normalized_score(env, c.return_mean) for c in checks]
    if any(s is None for s in scores):
        return None
    score = sum(scores) / len(scores)
    ref = {}
    if version != "v0":
        from ..tasks.mujoco import ENVS

        try:
            ref = level_scores(ENVS[env][0], version)
        except (SuiteError, KeyError):
            ref = {}
    ok, text = band(level, score, ref.get("medium"), ref.get("expert"))
    return level, score, ok, text


def check_dataset(dataset_id: str) -> list[PolicyCheck]:
    """One `PolicyCheck` per behaviour policy of a suite-built dataset (see the module docstring)."""
    ds = store.load(dataset_id)
    meta = ds.storage.metadata
    recipe = meta.get("suite_recipe")
    if recipe is None:
        raise SuiteError(f"{dataset_id} was not built by the suite (no recipe in its metadata): nothing to check")
    max_steps = ds.env_spec.max_episode_steps if ds.env_spec is not None else None
    rmin, rmax = meta.get("ref_min_score"), meta.get("ref_max_score")
    returns, lengths, complete = [], [], []
    for ep in ds.iterate_episodes():
        n = len(ep.rewards)
        returns.append(float(np.sum(ep.rewards, dtype=np.float64)))
        lengths.append(n)
        complete.append(bool(ep.terminations[-1]) or (max_steps is not None and n == max_steps))
    out, start = [], 0
    cum = np.cumsum(lengths)
    for entry in recipe["policies"]:
        end_steps = (cum[start - 1] if start else 0) + entry["steps"]
        stop = int(np.searchsorted(cum, end_steps, side="left")) + 1
        if stop > len(lengths) or cum[stop - 1] != end_steps:
            raise CorruptFileError(f"{dataset_id}: episodes do not add up to the recipe's {entry['steps']} steps of "
                             f"{entry['name']}; the dataset is corrupt or not built by this version of the suite")
        sel = [returns[i] for i in range(start, stop) if complete[i]]
        start = stop
        mean = float(np.mean(sel)) if sel else float("nan")
        std = float(np.std(sel, ddof=1)) if len(sel) > 1 else 0.0
        man = _manifest(recipe["env_id"], entry)
        z = None
        if man is not None and sel:
            denom = math.sqrt(man[1] ** 2 / man[2] + std**2 / len(sel))
            z = (mean - man[0]) / denom if denom > 0 else (0.0 if mean == man[0] else math.inf)
        norm = 100 * (mean - rmin) / (rmax - rmin) if rmin is not None and rmax is not None and rmax != rmin else None
        out.append(PolicyCheck(entry["name"], int(entry["steps"]), len(sel), mean, std,
                               *(man if man is not None else (None, None, None)), norm, z))
    return out
