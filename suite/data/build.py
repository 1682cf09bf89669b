"""Rebuild D4RL-style datasets from behaviour policies, deterministically, as Minari datasets.

Recipe (`DatasetSpec`): for each behaviour policy in `spec.policies`, run it on `n_envs` environment slots
stepped in lockstep (`gymnasium.vector`, policy batched over the slots); slot j collects exactly `steps //
n_envs` (+1 for the first `steps % n_envs` slots) transitions, so the total is exactly `steps`. Slots may be
spread over worker processes (`workers`, 2 by default for large builds); each slot has its own action-noise
generator, so the arrays do not depend on the number of workers. Actions are sampled stochastically from the
policy (as D4RL did): uniform for `random`, tanh-Gaussian for the shipped SAC policies, with noise from an
explicit torch generator. Every episode is reset with its own explicit seed derived from (dataset seed, policy
name, env slot, episode number), so the same command gives identical arrays on the same machine.

Across machines the arrays are identical only if the policy's float32 arithmetic is: torch and MKL pick
their kernels by CPU (AVX-512 on this Intel Xeon, AVX2 on the AMD EPYC machines), the kernels round
differently, and one flipped bit in an action changes the rest of its episode. Measured 2026-12-07:
hopper-medium-v1 built unpinned is 34a07493… on Intel Xeon (AVX-512) and 17a8e7de… on AMD EPYC (MuJoCo
4.0.0 and 4.0.1 give identical rollouts; the kernels are the difference). So the collection runs in worker
processes pinned to one numerics class, `PINNED_NUMERICS`: torch's baseline (non-vectorised) kernels and MKL's
COMPATIBLE conditional-numerical-reproducibility mode, which Intel documents as giving the same results on
Intel and AMD processors. The dataset's recipe records it. On a CPU that is not x86-64 (no MKL) the collection
runs natively and the recipe says so; `SUITE_BUILD_NUMERICS=native` does the same anywhere.

- `medium-expert` runs `medium` then `expert` with `steps` each and concatenates them (2x steps, as D4RL's
  2M-transition medium-expert): its arrays equal the medium dataset's followed by the expert dataset's, so
  where the same store holds those two (built by the same recipe, checksums intact) they are read, not
  rolled out again (`_reusable`; the recipe names them under `read_from`).
- `medium-replay` (`replay`) rolls out the sequence of SAC snapshots from the start of training up to the
  medium policy, `steps / len(snapshots)` transitions each, in training order. D4RL stored the replay buffer
  itself (every transition the learner saw, with its exploration noise); ours re-collects from the saved
  snapshots, so it has the same spread of quality but fewer distinct policies and no start-up
  uniform-random phase.

Episodes cut by the step budget at the end are kept and marked truncated.
"""

from __future__ import annotations

import os
import sys
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from ..errors import MissingDatasetError
from ..evaluation import rescale_action
from ..tasks import DatasetSpec
from ..tasks.mujoco import POLICY_DIR
from . import store


def episode_seed(seed: int, policy: str, slot: int, episode: int) -> int:
    ss = np.random.SeedSequence([seed, zlib.crc32(policy.encode()), slot, episode])
    return int(ss.generate_state(1, dtype=np.uint32)[0])


def policy_files(env_id: str, name: str) -> list[Path]:
    """Safetensors files of a shipped behaviour policy ('replay' is the snapshot sequence, in order)."""
    return [f for f, _ in _checked_policy_files(env_id, name)]


def _checked_policy_files(env_id: str, name: str) -> list[tuple[Path, str]]:
    """`policy_files` with each file's sha256, each checked against its manifest; every file is hashed once."""
    root = POLICY_DIR / env_id
    if name.rsplit("/", 1)[-1] == "replay":  # "replay" (v0) or "v1/replay": the snapshot sequence in a folder
        files = sorted((root / name).glob("*.safetensors"))
    else:
        f = root / f"{name}.safetensors"
        files = [f] if f.exists() else []
    if not files:
        raise MissingDatasetError(
            f"behaviour policy {env_id}/{name} is not shipped in {POLICY_DIR}; train it with "
            f"`python -m suite behaviour train {env_id}` and `select` (see README, 'Behaviour policies')"
        )
    return [(f, _check_manifest_digest(f)) for f in files]


def _policy_ref(file: Path | None) -> str | None:
    """How a build record names a policy file: its path under the shipped-policies folder (None: random)."""
    return str(file.relative_to(POLICY_DIR)) if file else None


def _shipped_policies(spec: DatasetSpec) -> list[list[tuple[str, Path | None, str | None]]]:
    """For each policy of `spec`'s recipe, in order: its (label, file, sha256) rollout sources, the ones
    shipped now. 'random' is one source without a file; a 'replay' policy is one source per
    snapshot, labelled `name/<snapshot stem>`. The one place the build and the staleness check read the
    shipped files from, so the two cannot disagree about what a recipe is made of."""
    out = []
    for name in spec.policies:
        if name == "random":
            out.append([("random", None, None)])
            continue
        replay = name.rsplit("/", 1)[-1] == "replay"
        out.append([(f"{name}/{f.stem}" if replay else name, f, sha)
                    for f, sha in _checked_policy_files(spec.env_id, name)])
    return out


def stale_policies(spec: DatasetSpec, meta: dict) -> str | None:
    """Where a recipe dataset in the store was built from other behaviour-policy files than the ones shipped
    now (a level re-selected after the build, e.g. walker2d's v1 medium on 2026-12-07), the first difference
    (e.g. "Hopper-v5/v1/medium.safetensors (sha256 1a2b3c4d…, shipped now: 5e6f7a8b…)"); None where they agree,
    or where the dataset records no policy files (not a recipe build). Callers word the sentence around it.
    Such a dataset passes its own checksum, since its episodes are intact, but it is not the task's data."""
    recipe = meta.get("suite_recipe") or {}
    built = [(p.get("file"), p.get("sha256")) for p in recipe.get("policies") or []]
    if not built:
        return None
    shipped = [(_policy_ref(f), sha) for sources in _shipped_policies(spec) for _, f, sha in sources]
    if built == shipped:
        return None
    for (bf, bs), (sf, ss) in zip(built, shipped, strict=False):
        if (bf, bs) != (sf, ss):
            return (f"{bf} (sha256 {str(bs)[:8]}…, shipped now: {str(ss)[:8]}…)" if bf == sf
                    else f"{bf or 'random'} where {sf or 'random'} is shipped now")
    return f"{len(built)} policy files where {len(shipped)} are shipped now"


def _check_manifest_digest(f: Path) -> str:
    """A policy file must have the sha256 its manifest (``<file>.json``) records; else one error naming it.
    Returns the file's sha256."""
    import json

    from ..errors import CorruptFileError

    got = store.sha256_file(f)
    manifest = f.with_suffix(".json")
    if not manifest.exists():
        return got
    try:
        want = json.loads(manifest.read_text()).get("sha256")
    except ValueError:
        raise CorruptFileError(f"{manifest}: not valid JSON; restore it with `git checkout -- {manifest}`") from None
    if want and got != want:
        raise CorruptFileError(f"{f} does not match the sha256 in {manifest.name}; restore it with "
                               f"`git checkout -- {f}` (or retrain and `select` it)")
    return got


class _Actor:
    """Stochastic actions for a set of env slots: uniform for 'random', tanh-Gaussian SAC policies otherwise.

    Each slot has its own generator (seeded from dataset seed, policy name and slot), so a slot's actions
    depend only on its own observations: the data do not depend on how slots are spread over processes."""

    def __init__(self, file: Path | None, action_space, seed: int, policy_name: str, slots: list[int]):
        self.low, self.high = action_space.low, action_space.high
        self.gens = [torch.Generator().manual_seed(episode_seed(seed, policy_name, j, -1 % 2**31)) for j in slots]
        self.policy = None
        if file is not None:
            from agents.sac import load_behaviour_policy

            self.policy = load_behaviour_policy(file)

    @torch.no_grad()
    def __call__(self, obs: np.ndarray) -> np.ndarray:
        d = self.low.shape[-1]
        if self.policy is None:
            u = torch.stack([torch.rand(d, generator=g, dtype=torch.float64) for g in self.gens]).numpy()
            return (self.low + u * (self.high - self.low)).astype(np.float32)
        dist = self.policy.dist(torch.as_tensor(obs, dtype=torch.float32))
        noise = torch.stack([torch.randn(d, generator=g) for g in self.gens])
        a = torch.tanh(dist.mean + dist.stddev * noise).numpy()
        return rescale_action(a, self.low, self.high).astype(np.float32)


def slot_budgets(steps: int, n_envs: int) -> list[int]:
    return [steps // n_envs + (1 if j < steps % n_envs else 0) for j in range(n_envs)]


def _collect_slots(
    env_id: str, file: Path | None, slots: list[int], budgets: list[int], seed: int, policy_name: str, progress=None
) -> list[list[dict]]:
    """Run the given env slots in lockstep; slot j collects exactly budgets[j] transitions."""
    import gymnasium as gym
    from gymnasium.vector import AutoresetMode

    n = len(slots)
    envs = gym.make_vec(
        env_id, num_envs=n, vectorization_mode="sync", vector_kwargs={"autoreset_mode": AutoresetMode.DISABLED}
    )
    try:
        act = _Actor(file, envs.single_action_space, seed, policy_name, slots)
        od, ad = envs.single_observation_space.shape[0], envs.single_action_space.shape[0]
        cap = max(budgets)
        O = np.zeros((n, cap, od))
        N = np.zeros((n, cap, od))
        A = np.zeros((n, cap, ad), np.float32)
        R = np.zeros((n, cap))
        T = np.zeros((n, cap), bool)
        U = np.zeros((n, cap), bool)
        ep_seeds: list[list[int]] = [[episode_seed(seed, policy_name, j, 0)] for j in slots]
        obs, _ = envs.reset(seed=[s[0] for s in ep_seeds])
        budgets_arr = np.asarray(budgets)
        for t in range(cap):
            a = act(obs)
            nobs, rew, term, trunc, _ = envs.step(a)
            O[:, t], N[:, t], A[:, t], R[:, t], T[:, t], U[:, t] = obs, nobs, a, rew, term, trunc
            done = term | trunc
            if progress is not None:
                progress(int((budgets_arr > t).sum()))
            if done.any() and t + 1 < cap:
                new = []
                for i in range(n):
                    if done[i]:
                        ep_seeds[i].append(episode_seed(seed, policy_name, slots[i], len(ep_seeds[i])))
                    new.append(ep_seeds[i][-1])
                nobs, _ = envs.reset(seed=new, options={"reset_mask": done.copy()})
            obs = nobs
    finally:
        envs.close()
    out = []
    for i in range(n):
        b = budgets[i]
        if b == 0:
            out.append([])
            continue
        U[i, b - 1] |= ~T[i, b - 1]  # the budget cuts the last episode: truncated
        ends = np.flatnonzero(T[i, :b] | U[i, :b])
        eps, start = [], 0
        for k, e in enumerate(ends):
            eps.append(
                {
                    "seed": ep_seeds[i][k],
                    "observations": np.concatenate([O[i, start : e + 1], N[i, e : e + 1]]),
                    "actions": A[i, start : e + 1].copy(),
                    "rewards": R[i, start : e + 1].copy(),
                    "terminations": T[i, start : e + 1].copy(),
                    "truncations": U[i, start : e + 1].copy(),
                }
            )
            start = e + 1
        out.append(eps)
    return out


def _worker(args):
    torch.set_num_threads(1)
    return _collect_slots(*args)


# The environment of the collection workers (read by torch and MKL when the worker imports them): one numerics
# class on every x86-64 CPU, so that a build gives the same arrays on Intel and AMD machines. The policy's
# forward pass is a few small matrices per step: the baseline kernels cost nothing noticeable here.
PINNED_NUMERICS = {"ATEN_CPU_CAPABILITY": "default", "MKL_CBWR": "COMPATIBLE"}


def collection_numerics() -> dict[str, str]:
    """`PINNED_NUMERICS` on x86-64, else {} (native kernels)."""
    import platform

    if os.environ.get("SUITE_BUILD_NUMERICS") == "native":  # this CPU's own kernels (tests; older builds)
        return {}
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return {}
    return dict(PINNED_NUMERICS)


def _exit_with_parent(parent: int, period: float = 1.0) -> None:
    """Pool initializer of the collection workers: a daemon thread ends this worker as soon as the build that
    started it is gone (a SIGKILLed `suite data build` or reproduction worker, a stopped session), instead of
    rolling out the rest of its slots for nobody. Nothing is lost: an unfinished build writes nothing and the
    same command starts it again."""
    from ..parent import when_parent_gone

    when_parent_gone(parent, lambda: os._exit(0), period, name="watch-build")


def collect(
    env_id: str,
    file: Path | None,
    steps: int,
    *,
    seed: int,
    policy_name: str,
    n_envs: int = 8,
    workers: int = 1,
    progress: Callable[[int], None] | None = None,
) -> list[dict]:
    """Roll out one behaviour policy on `n_envs` env slots until exactly `steps` transitions (slot-major
    episode order). `workers` processes share the slots; the result does not depend on `workers`."""
    budgets = slot_budgets(steps, n_envs)
    slots = list(range(n_envs))
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    # always in fresh worker processes (even one): torch and MKL fix their kernels when first loaded, so only a
    # new process can take the pinned numerics (this one has loaded torch already)
    workers = max(1, workers)
    groups = [g for g in (slots[w::workers] for w in range(workers)) if g]
    jobs = [(env_id, file, g, [budgets[j] for j in g], seed, policy_name) for g in groups]
    with store.environment(collection_numerics()), ProcessPoolExecutor(
        len(jobs), mp_context=mp.get_context("spawn"), initializer=_exit_with_parent, initargs=(os.getpid(),)
    ) as pool:
        results = list(pool.map(_worker, jobs))
    per_slot = [None] * n_envs
    for g, res in zip(groups, results, strict=True):
        for j, eps in zip(g, res, strict=True):
            per_slot[j] = eps
    if progress is not None:
        progress(steps)
    return [ep for eps in per_slot for ep in eps]


def _check_canonical(dataset_id: str, got: str, pinned: bool) -> None:
    """Compare a build's checksum `got` with its committed canonical checksum (`store.canonical_checksum`) and
    say so in one line when they differ: the dataset is still written (its checksum goes into every record made
    on it, and tables keep such runs apart as their own [data …] cells), but it is not the suite's dataset of that
    id."""

    want = store.canonical_checksum(dataset_id)
    if want is not None and got != want:
        why = ("the pinned numerics did not give the canonical arrays on this CPU: please report it" if pinned
               else "this build is not pinned")
        print(f"warning: {dataset_id} built with checksum {got[:12]}…, the canonical one is {want[:12]}… ({why}); "
              "runs on it are tabulated apart from runs on the canonical data", file=sys.stderr, flush=True)


def _package_versions() -> dict[str, str]:
    from importlib.metadata import version

    out = {}
    for pkg in ("gymnasium", "mujoco", "minari", "torch", "numpy"):
        try:
            out[pkg] = version(pkg)
        except Exception:
            out[pkg] = "unknown"
    return out


def _reusable(
    spec: DatasetSpec, name: str, file: Path | None, sha: str | None, n: int, n_envs: int
) -> tuple[str, list[dict]] | None:
    """The episodes that rolling out policy `name` for `n` steps would give, read from a local single-policy
    dataset of the same environment built by the same recipe (policy file and its sha256, steps, seed, env
    slots, collection numerics and package versions), after checking them against that dataset's stored
    checksum; None where there is none. The rollout is a function of exactly those, so the arrays are the
    same: this is how `medium-expert` (medium's episodes, then expert's) is built from the `medium` and
    `expert` datasets of the same store without rolling out 2M transitions again."""
    want = {"name": name, "file": _policy_ref(file),
            "sha256": sha, "steps": n}
    numerics = collection_numerics() or "native (not pinned: this CPU's own kernels)"
    prefix = spec.dataset_id.rsplit("/", 1)[0] + "/"
    for other in store.local_dataset_ids():
        if not other.startswith(prefix) or other == spec.dataset_id:
            continue
        try:
            ds = store.load(other)
            meta = store.metadata(ds)
        except Exception:  # a damaged neighbour is not this build's business: roll out instead
            continue
        recipe = meta.get("suite_recipe") or {}
        pols = recipe.get("policies") or []
        if (len(pols) != 1 or {k: pols[0].get(k) for k in want} != want or recipe.get("seed") != spec.seed
                or recipe.get("n_envs") != n_envs or recipe.get("env_id") != spec.env_id
                or recipe.get("numerics") != numerics or recipe.get("versions") != _package_versions()):
            continue
        seeds = [m.get("seed") for m in ds.storage.get_episode_metadata(range(ds.total_episodes))]
        eps = [{"observations": e.observations, "actions": e.actions, "rewards": e.rewards,
                "terminations": e.terminations, "truncations": e.truncations,
                "seed": None if s is None else int(s)} for e, s in zip(ds.iterate_episodes(), seeds, strict=True)]
        if store.checksum_episodes(eps) != meta.get("suite_checksum"):
            print(f"warning: {other} does not match its stored checksum; {spec.dataset_id} rolls out {name} "
                  f"instead of reading it (`python -m suite data verify` names the damage)", file=sys.stderr)
            continue
        return other, eps
    return None


def build(
    spec: DatasetSpec,
    *,
    steps: int | None = None,
    n_envs: int = 8,
    workers: int | None = None,
    references: tuple[float, float] | None = None,
    overwrite: bool = True,
    progress: bool = True,
):
    """Build the dataset of `spec` into Minari storage and return the loaded `MinariDataset`."""

    if spec.source != "recipe":
        raise MissingDatasetError(f"dataset {spec.dataset_id!r} is not built by the suite (source: {spec.source})")
    with store.build_lock(spec.dataset_id):  # concurrent builds of one id are serialised
        store.clean_leftovers()
        return _build_locked(spec, steps, n_envs, workers, references, overwrite, progress)


def _build_locked(spec, steps, n_envs, workers, references, overwrite, progress):
    from tqdm.auto import tqdm

    steps = steps or spec.default_steps
    if store.exists(spec.dataset_id) and not overwrite:
        return store.load(spec.dataset_id)
    plan: list[tuple[str, Path | None, str | None, int]] = []  # (policy label, file, sha256, steps)
    for sources in _shipped_policies(spec):  # a policy's steps are split evenly over its files
        per = [steps // len(sources) + (1 if i < steps % len(sources) else 0) for i in range(len(sources))]
        plan += [(label, f, sha, n) for (label, f, sha), n in zip(sources, per, strict=True)]

    episodes: list[dict] = []
    total = sum(n for *_, n in plan)
    bar = tqdm(total=total, desc=f"build {spec.dataset_id}", unit="step", disable=not progress, smoothing=0.1)
    reused: dict[str, str] = {}  # policy name -> the local dataset its episodes were read from
    try:
        for name, file, sha, n in plan:
            found = _reusable(spec, name, file, sha, n, n_envs)
            if found is not None:
                reused[name], eps = found
                episodes += eps
                bar.update(n)
                continue
            w = workers if workers is not None else (1 if n < 50_000 else min(2, os.cpu_count() or 1))
            episodes += collect(
                spec.env_id, file, n, seed=spec.seed, policy_name=name, n_envs=n_envs, workers=w, progress=bar.update
            )
    finally:
        bar.close()

    recipe = {
        "policies": [
            {
                "name": name,
                "file": _policy_ref(file),
                "sha256": sha,
                "steps": n,
                **({"read_from": reused[name]} if name in reused else {}),
            }
            for name, file, sha, n in plan
        ],
        "seed": spec.seed,
        "n_envs": n_envs,
        "steps": total,
        "env_id": spec.env_id,
        "versions": _package_versions(),
        "builder": "suite.data.build",
        "numerics": collection_numerics() or "native (not pinned: this CPU's own kernels)",
    }
    with store.staged(spec.dataset_id):  # the old dataset stays until the new one is complete
        store.write_dataset(
        spec.dataset_id,
        episodes,
        spec.env_id,
        references=references,
        algorithm_name="suite recipe: " + "+".join(spec.policies),
        author="odice-suite",
        description=__doc__.split("\n\n")[1].replace("\n", " "),
        metadata={"suite_recipe": recipe},
    )
    ds = store.load(spec.dataset_id)
    _check_canonical(spec.dataset_id, store.metadata(ds)["suite_checksum"], isinstance(recipe["numerics"], dict))
    return ds
