"""Behaviour-policy training: checkpoint + resume reproduces an uninterrupted run exactly; evaluation is
reproducible; level selection ships policies with honest manifests."""

from __future__ import annotations

import hashlib
import json

import pytest
import torch
from safetensors.torch import load_file

import suite.behaviour as behaviour
import suite.behaviour.train as behaviour_train
from agents.nets import TanhGaussianPolicy
from agents.sac import SACConfig, load_behaviour_policy
from suite.cli import main
from suite.data.buffer import ReplayBuffer
from suite.evaluation import evaluate_policy

ENV = "Hopper-v5"  # MuJoCo with contacts and terminations: the hard case for an exact resume
SMALL = SACConfig(hidden=(32, 32), batch_size=32)
KW = dict(
    config=SMALL,
    start_steps=60,
    eval_every=100,
    eval_episodes=2,
    snapshot_every=50,
    checkpoint_every=70,
    log_every=50,
    progress=False,
)


class _Interrupt(Exception):
    pass


def _weights(agent) -> dict[str, torch.Tensor]:
    sd = agent.state_dict()
    out = {f"{k}.{n}": t for k in ("actor", "critic", "critic_target") for n, t in sd[k].items()}
    out["log_alpha"] = sd["log_alpha"]
    return out


def _assert_same(a, b):
    wa, wb = _weights(a), _weights(b)
    assert wa.keys() == wb.keys()
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k


def test_resume_after_interruption_is_exact(tmp_path, monkeypatch):
    full = behaviour.train_sac(ENV, 200, 0, tmp_path / "full", **KW)

    calls = {"n": 0}
    original = behaviour_train.save_checkpoint

    def save_then_die(path, state):  # the process is killed right after its second checkpoint (step 140)
        original(path, state)
        calls["n"] += 1
        if calls["n"] == 2:
            raise _Interrupt

    monkeypatch.setattr(behaviour_train, "save_checkpoint", save_then_die)
    with pytest.raises(_Interrupt):
        behaviour.train_sac(ENV, 200, 0, tmp_path / "cut", **KW)
    monkeypatch.setattr(behaviour_train, "save_checkpoint", original)
    from suite.checkpoint import load_checkpoint

    assert load_checkpoint(tmp_path / "cut" / "checkpoint")["step"] == 140
    with pytest.raises(FileExistsError):
        behaviour.train_sac(ENV, 200, 0, tmp_path / "cut", **KW)
    resumed = behaviour.train_sac(ENV, 200, 0, tmp_path / "cut", resume=True, **KW)
    _assert_same(full, resumed)

    # the snapshots of both runs hold identical weights (the header's key order may differ)
    for name in ("step_0000050.safetensors", "step_0000150.safetensors", "step_0000200.safetensors"):
        a = load_file(tmp_path / "full" / "snapshots" / name)
        b = load_file(tmp_path / "cut" / "snapshots" / name)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name
    info = json.loads((tmp_path / "cut" / "run.json").read_text())
    assert info["resumes"][0]["from_step"] == 140 and info["seed"] == 0


def test_finished_run_can_be_extended(tmp_path):
    straight = behaviour.train_sac(ENV, 160, 1, tmp_path / "a", **KW)
    behaviour.train_sac(ENV, 90, 1, tmp_path / "b", **KW)  # final checkpoint at step 90, mid-episode
    extended = behaviour.train_sac(ENV, 160, 1, tmp_path / "b", resume=True, **KW)
    _assert_same(straight, extended)


def test_resume_with_another_thread_count_is_refused(tmp_path):
    """The thread count changes the float reduction order: a run resumed with another one would be two runs."""
    from suite.errors import RunMismatchError

    behaviour.train_sac(ENV, 60, 2, tmp_path / "r", **KW)
    assert json.loads((tmp_path / "r" / "run.json").read_text())["torch_threads"] == torch.get_num_threads()
    before = torch.get_num_threads()
    torch.set_num_threads(before + 1)
    try:
        with pytest.raises(RunMismatchError, match=f"resume with --threads {before}"):
            behaviour.train_sac(ENV, 90, 2, tmp_path / "r", resume=True, **KW)
    finally:
        torch.set_num_threads(before)
    behaviour.train_sac(ENV, 90, 2, tmp_path / "r", resume=True, **KW)  # the same count resumes


def test_evaluate_policy_is_reproducible():
    torch.manual_seed(0)
    policy = TanhGaussianPolicy(11, 3, (16, 16))
    a = evaluate_policy(policy, ENV, episodes=4, seed=5, deterministic=False)
    state = torch.get_rng_state()
    b = evaluate_policy(policy, ENV, episodes=4, seed=5, deterministic=False)
    assert torch.equal(state, torch.get_rng_state())  # the caller's random stream is untouched
    assert a["returns"] == b["returns"] and len(a["returns"]) == 4
    c = evaluate_policy(policy, ENV, episodes=4, seed=5, deterministic=True, num_envs=3)
    d = evaluate_policy(policy, ENV, episodes=4, seed=5, deterministic=True)
    # episode i depends on seed + i only, not on the batching (up to matmul rounding, which varies with
    # the batch size)
    assert c["returns"] == pytest.approx(d["returns"], rel=1e-6)


def test_select_levels_writes_policies_and_manifests(tmp_path):
    run = tmp_path / "run"
    behaviour.train_sac(ENV, 300, 0, run, **{**KW, "snapshot_every": 30})
    dest = tmp_path / "policies"
    out = behaviour.select_levels(
        run,
        ENV,
        dest_root=dest,
        screen_episodes=2,
        final_episodes=3,
        replay_episodes=2,
        deterministic_episodes=2,
        n_candidates=2,
        max_replay=3,
        progress=False,
    )
    root = dest / ENV
    for level in ("expert", "medium"):
        manifest = json.loads((root / f"{level}.json").read_text())
        blob = (root / f"{level}.safetensors").read_bytes()
        assert manifest["sha256"] == hashlib.sha256(blob).hexdigest()
        assert manifest["env_id"] == ENV and manifest["training"]["seed"] == 0
        assert manifest["training"]["steps_reached"] == 300
        assert manifest["evaluation"]["episodes"] == 3 and manifest["evaluation"]["actions"] == "stochastic"
        assert manifest["evaluation"]["d4rl_normalized_score"] is not None
        assert load_behaviour_policy(root / f"{level}.safetensors").action_dim == 3
    expert = json.loads((root / "expert.json").read_text())
    medium = json.loads((root / "medium.json").read_text())
    assert "not D4RL's expert" in expert["note"]
    assert medium["env_steps"] <= expert["env_steps"]
    index = json.loads((root / "replay" / "index.json").read_text())
    assert 1 <= len(index["files"]) <= 3 and index["env_steps"][-1] == medium["env_steps"]
    for name in index["files"]:
        assert (root / "replay" / name).exists() and (root / "replay" / name).with_suffix(".json").exists()
    ref = json.loads((root / "reference.json").read_text())
    assert ref["expert_return"] == pytest.approx(out["expert"]["evaluation"]["return_mean"], abs=1e-2)
    assert ref["episodes"] == 3 and ref["random_return"] < 100


def _filled(capacity: int, n: int) -> ReplayBuffer:
    buf = ReplayBuffer(2, 1, capacity)
    for i in range(n):
        buf.add([i, i], [0.0], float(i), [i, i], False)
    return buf


@pytest.mark.parametrize(
    "capacity, n, new_capacity, legacy, expected",
    [
        (5, 7, 8, False, [2, 3, 4, 5, 6]),  # wrapped ring into a larger one: oldest first
        (5, 5, 8, True, [0, 1, 2, 3, 4]),  # full, from a checkpoint without "capacity"
        (5, 3, 8, True, [0, 1, 2]),  # never wrapped
        (8, 6, 4, False, [2, 3, 4, 5]),  # smaller: keep the newest
    ],
)
def test_replay_buffer_changes_capacity_keeping_chronology(capacity, n, new_capacity, legacy, expected):
    state = _filled(capacity, n).state_dict()
    if legacy:
        del state["capacity"]
    buf = ReplayBuffer(2, 1, new_capacity)
    buf.load_state_dict(state)
    assert buf.arrays["rewards"][: buf.size].tolist() == expected
    buf.add([9, 9], [0.0], 9.0, [9, 9], False)  # the next write never overwrites kept data
    assert sorted(buf.arrays["rewards"][: buf.size].tolist()) == sorted(expected + [9])[-new_capacity:]


def test_cli_keeps_the_flags_of_running_jobs(tmp_path, capsys):
    """The flags long training jobs and the documented resume and select commands use (README, policies README)."""
    out = tmp_path / "run"
    train = ["behaviour", "train", ENV, "--steps", "{}", "--seed", "0", "--out", str(out), "--start-steps", "20",
             "--eval-every", "20000", "--eval-episodes", "10", "--snapshot-every", "15", "--checkpoint-every", "50000",
             "--threads", "1", "--no-progress"]
    assert main([a.format(30) for a in train]) == 0
    assert main([a.format(45) for a in train] + ["--resume"]) == 0
    info = json.loads((out / "run.json").read_text())
    assert info["command"].startswith(f"python -m suite.behaviour train {ENV} --steps 30 --seed 0 --out {out}")
    assert info["resumes"][0]["from_step"] == 30 and info["eval_every"] == 20000
    assert main([a.format(45) for a in train]) == 2  # a checkpoint exists and --resume is missing: one line
    assert "exists" in capsys.readouterr().err
    assert main(["behaviour", "select", ENV, "--run", str(out), "--dest", str(tmp_path / "pol"), "--screen-episodes",
                 "10", "--candidates", "3", "--replay-episodes", "5", "--deterministic-episodes", "5",
                 "--final-episodes", "2", "--max-replay", "2", "--threads", "1"]) == 0
    assert set(json.loads(capsys.readouterr().out)) == {"expert", "medium"}
    assert (tmp_path / "pol" / ENV / "expert.json").exists()
    assert main(["behaviour", "train", "Walker2d-v5", "--steps", "45", "--out", str(out), "--resume"]) == 2
    assert "not Walker2d-v5" in capsys.readouterr().err  # another env's checkpoint: one line, no traceback


def _constant_policy(obs_dim: int, action_dim: int, value: float, hidden=(32, 32)) -> TanhGaussianPolicy:
    """A policy whose actions are tanh(atanh(value)) = value up to a tiny noise (log-std at its minimum)."""
    policy = TanhGaussianPolicy(obs_dim, action_dim, hidden)
    with torch.no_grad():
        for p in policy.parameters():
            p.zero_()
        last = [m for m in policy.trunk if isinstance(m, torch.nn.Linear)][-1]
        last.bias[:action_dim] = float(torch.atanh(torch.tensor(value)))
        last.bias[action_dim:] = -100.0  # clamped to log_std_min
    return policy


def test_continuation_from_a_policy_file_collects_with_it_and_records_it(tmp_path):
    """--init-actor: the warm-up steps use the file's stochastic actions (not uniform ones), the actor starts from
    its weights, and run.json records the file and its sha256 (what the manifest of a continued policy cites)."""
    from agents.sac import save_behaviour_policy
    from suite.checkpoint import load_checkpoint

    path = tmp_path / "start.safetensors"
    save_behaviour_policy(_constant_policy(11, 3, 0.3), path, {"env_id": ENV, "env_steps": "123"})
    agent = behaviour.train_sac(ENV, 60, 0, tmp_path / "c", init_actor=path, **KW)  # 60 = start_steps: no update
    start = _constant_policy(11, 3, 0.3).state_dict()
    assert all(torch.equal(agent.actor.state_dict()[k], start[k]) for k in start)
    actions = load_checkpoint(tmp_path / "c" / "checkpoint")["buffer"]["actions"][:60]
    assert abs(actions - 0.3).max() < 0.02  # uniform warm-up actions would spread over [-1, 1]
    info = json.loads((tmp_path / "c" / "run.json").read_text())
    assert info["init_actor"]["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert info["init_actor"]["env_steps"] == "123" and info["critic_warmup"] == 0

    # --prefill-noise: warm-up episode k adds noise of std noise[k % 2]; Hopper's constant-action episodes end
    # early, so both kinds appear in 60 steps
    behaviour.train_sac(ENV, 60, 0, tmp_path / "n", init_actor=path, prefill_noise=(0.0, 0.5), **KW)
    noisy = load_checkpoint(tmp_path / "n" / "checkpoint")["buffer"]
    off = abs(noisy["actions"][:60] - 0.3).max(axis=1)
    first_end = int(noisy["terminals"][:60].argmax())  # the first episode (noise 0) ends by termination
    assert noisy["terminals"][:60].any() and off[: first_end + 1].max() < 0.02 and off[first_end + 1:].min() > 0.02

    # with a critic warm-up the first SAC update follows fitted critics: the run differs from one without it
    plain = behaviour.train_sac(ENV, 70, 0, tmp_path / "p", init_actor=path, **KW)
    warmed = behaviour.train_sac(ENV, 70, 0, tmp_path / "w", init_actor=path, critic_warmup=40, **KW)
    key = "net.net.0.weight"
    assert not torch.equal(plain.critic.state_dict()[key], warmed.critic.state_dict()[key])
    assert json.loads((tmp_path / "w" / "run.json").read_text())["critic_warmup"] == 40


def test_continuation_refuses_a_policy_of_another_shape_or_environment(tmp_path):
    from agents.sac import save_behaviour_policy
    from suite.errors import RunMismatchError

    wide = tmp_path / "wide.safetensors"
    save_behaviour_policy(_constant_policy(11, 3, 0.3, hidden=(64, 64)), wide, {"env_id": ENV})
    with pytest.raises(RunMismatchError, match="does not fit"):
        behaviour.train_sac(ENV, 60, 0, tmp_path / "w", init_actor=wide, **KW)
    other = tmp_path / "other.safetensors"
    save_behaviour_policy(_constant_policy(11, 3, 0.3), other, {"env_id": "Walker2d-v5"})
    with pytest.raises(RunMismatchError, match="Walker2d-v5"):
        behaviour.train_sac(ENV, 60, 0, tmp_path / "o", init_actor=other, **KW)


def test_critic_warmup_is_policy_evaluation_with_the_actor_frozen():
    """SAC.update_critic moves the critics (and their target) towards the TD target of the current actor and
    leaves the actor, its optimiser and the temperature untouched; with every transition terminal the target is
    the reward, so the critics must fit the rewards."""
    from agents.sac import SAC

    torch.manual_seed(0)
    agent = SAC(SMALL, 4, 2)
    actor_before = {k: v.clone() for k, v in agent.actor.state_dict().items()}
    target_before = {k: v.clone() for k, v in agent.critic_target.state_dict().items()}
    g = torch.Generator().manual_seed(1)
    obs, act = torch.randn(64, 4, generator=g), torch.rand(64, 2, generator=g) * 2 - 1
    batch = {"observations": obs, "actions": act, "next_observations": torch.randn(64, 4, generator=g),
             "rewards": obs[:, 0] + act[:, 1], "terminals": torch.ones(64)}
    for _ in range(1500):
        agent.update_critic(batch)
    assert all(torch.equal(agent.actor.state_dict()[k], v) for k, v in actor_before.items())
    assert agent.log_alpha.item() == 0.0 and not agent.actor_optim.state  # init_alpha 1: log 1 = 0, never stepped
    assert any(not torch.equal(agent.critic_target.state_dict()[k], v) for k, v in target_before.items())
    q = agent.critic(obs, act)  # (2, 64)
    assert (q - batch["rewards"]).abs().max() < 0.1


def test_cli_critic_warmup_needs_an_init_actor(tmp_path, capsys):
    assert main(["behaviour", "train", ENV, "--steps", "10", "--out", str(tmp_path / "r"), "--critic-warmup", "5",
                 "--no-progress"]) == 2
    assert "need --init-actor" in capsys.readouterr().err
    assert main(["behaviour", "train", ENV, "--steps", "10", "--out", str(tmp_path / "r"), "--init-actor",
                 str(tmp_path / "missing.safetensors"), "--no-progress"]) == 2
    assert "no such file" in capsys.readouterr().err


def test_select_takes_medium_and_replay_from_another_run(tmp_path):
    """A continued expert (--init-actor) ships with medium and medium-replay from a short run's snapshots
    (--medium-run), and each manifest names the run it came from: the expert's its starting policy file."""
    short = tmp_path / "short"
    behaviour.train_sac(ENV, 120, 0, short, **{**KW, "snapshot_every": 20})
    start = short / "snapshots" / "step_0000120.safetensors"
    cont = tmp_path / "cont"
    behaviour.train_sac(ENV, 90, 1, cont, init_actor=start, critic_warmup=10, **{**KW, "snapshot_every": 30})
    root = tmp_path / "policies" / ENV
    behaviour.select_levels(cont, ENV, dest_root=tmp_path / "policies", screen_episodes=1, final_episodes=2,
                            replay_episodes=1, deterministic_episodes=1, max_replay=3, progress=False,
                            medium_run=short)
    expert = json.loads((root / "expert.json").read_text())
    medium = json.loads((root / "medium.json").read_text())
    assert expert["training"]["seed"] == 1 and expert["env_steps"] in (30, 60, 90)
    assert expert["training"]["init_actor"]["sha256"] == hashlib.sha256(start.read_bytes()).hexdigest()
    assert expert["training"]["critic_warmup"] == 10
    assert medium["training"]["seed"] == 0 and "init_actor" not in medium["training"]
    assert medium["env_steps"] in (20, 40, 60, 80, 100, 120) and str(short) in medium["note"]
    index = json.loads((root / "replay" / "index.json").read_text())
    assert index["env_steps"][-1] == medium["env_steps"] and index["env_steps"][0] == 20
    for name in index["files"]:
        assert json.loads((root / "replay" / name).with_suffix(".json").read_text())["training"]["seed"] == 0


def test_select_keep_expert_reselects_only_the_lower_levels(tmp_path, capsys):
    """--keep-expert: an expert whose training run is gone keeps its files and reference.json byte for byte,
    and medium / medium-replay come from a new run, aimed at 1/3 of the kept expert's manifest return."""
    first, second = tmp_path / "first", tmp_path / "second"
    behaviour.train_sac(ENV, 120, 0, first, **{**KW, "snapshot_every": 30})
    behaviour.train_sac(ENV, 100, 3, second, **{**KW, "snapshot_every": 20})
    pols = tmp_path / "policies"
    kw = dict(dest_root=pols, screen_episodes=1, final_episodes=2, replay_episodes=1, deterministic_episodes=1,
              max_replay=3, progress=False)
    behaviour.select_levels(first, ENV, **kw)
    root = pols / ENV
    kept = {n: (root / n).read_bytes() for n in ("expert.safetensors", "expert.json", "reference.json")}
    expert_return = json.loads(kept["expert.json"])["evaluation"]["return_mean"]
    (root / "replay" / "stale.safetensors").write_bytes(b"x")  # the old replay folder is replaced, not merged
    behaviour.select_levels(None, ENV, medium_run=second, keep_expert=True, **kw)
    assert {n: (root / n).read_bytes() for n in kept} == kept
    medium = json.loads((root / "medium.json").read_text())
    assert medium["training"]["seed"] == 3 and medium["env_steps"] in (20, 40, 60, 80, 100)
    assert medium["target_return"] == pytest.approx(expert_return / 3, abs=1e-3)
    assert "expert kept" in medium["note"] and str(second) in medium["note"]
    index = json.loads((root / "replay" / "index.json").read_text())
    assert index["env_steps"][-1] == medium["env_steps"] and index["env_steps"][0] == 20
    assert sorted(p.name for p in (root / "replay").glob("*.safetensors")) == index["files"]

    with pytest.raises(ValueError, match="--final-episodes 2"):  # medium's target measured another way
        behaviour.select_levels(None, ENV, medium_run=second, keep_expert=True, **{**kw, "final_episodes": 3})
    with pytest.raises(FileNotFoundError, match="no shipped expert"):
        behaviour.select_levels(None, ENV, medium_run=second, keep_expert=True, **{**kw, "dest_root": tmp_path})
    assert main(["behaviour", "select", ENV, "--keep-expert", "--dest", str(pols)]) != 0
    assert "--keep-expert with --medium-run" in capsys.readouterr().err
