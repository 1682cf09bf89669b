"""Continuation diagnostic (issue "Behaviour policies at D4RL strength", 2026-12-07): does SAC continue from a
shipped HalfCheetah expert with fresh critics? The expert actor collects `prefill` steps (Gaussian action noise
0 / 0.1 / 0.2 / 0.4 / 0.8 per episode in turn), the critics get `warm` critic-only updates, then `online` SAC
updates run; the deterministic return (2 episodes) is printed along the way.

    python scripts/continuation_diag.py VARIANT PREFILL WARM ONLINE INIT_ALPHA
    python scripts/continuation_diag.py fresh 20000 20000 3000 0.2      # 10029 -> 616 after 100 updates
    python scripts/continuation_diag.py adamwarm 20000 20000 3000 0.2   # 10029 -> 1105 after 100 updates

VARIANT: fresh | adamwarm (the actor's Adam moments accumulated at lr 0 during the critic warm-up). Run from
the repository root, one thread."""

import sys
import time

import numpy as np
import torch

from agents.sac import SAC, SACConfig, load_behaviour_policy
from suite.data.buffer import ReplayBuffer
from suite.evaluation import evaluate_policy, make_env

ENV = "HalfCheetah-v5"
EXPERT = "suite/data/policies/HalfCheetah-v5/v1/expert.safetensors"
NOISE = [0, 0.1, 0.2, 0.4, 0.8]


def main(variant: str, prefill: int, warm: int, online: int, alpha0: float) -> None:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    env, rng = make_env(ENV), np.random.default_rng(0)
    agent = SAC(SACConfig(init_alpha=alpha0), 17, 6)
    agent.actor.load_state_dict(load_behaviour_policy(EXPERT).state_dict())
    buf = ReplayBuffer(17, 6, 1_000_000)
    state = {"obs": env.reset(seed=0)[0], "episode": 0}
    t0 = time.time()

    def step_env(noisy: bool) -> None:
        obs = state["obs"]
        a = agent.sample_action(torch.as_tensor(obs, dtype=torch.float32)[None])[0].numpy()
        std = NOISE[state["episode"] % len(NOISE)]
        if noisy and std > 0:
            a = np.clip(a + rng.normal(0, std, a.shape), -1, 1).astype(a.dtype)
        nxt, r, term, trunc, _ = env.step(a.astype(np.float64))
        buf.add(obs, a, r, nxt, term)
        if term or trunc:
            state["obs"], state["episode"] = env.reset()[0], state["episode"] + 1
        else:
            state["obs"] = nxt

    def evaluate(tag: str) -> None:
        ret = evaluate_policy(agent.actor, ENV, 2, 10_000, deterministic=True)["mean"]
        print(tag, round(ret), flush=True)

    for _ in range(prefill):
        step_env(True)
    print("prefill", round(time.time() - t0), "s", flush=True)
    if variant == "adamwarm":  # the actor's Adam moments accumulate, its weights stay (lr 0)
        for g in agent.actor_optim.param_groups:
            g["lr"] = 0.0
    for i in range(1, warm + 1):
        batch = buf.sample(rng, 256)
        m = agent.update_critic(batch)
        if variant == "adamwarm":
            for p in agent._critic_params:
                p.requires_grad_(False)
            loss, _ = agent.actor_loss(batch["observations"], agent.alpha)
            agent.actor_optim.zero_grad()
            loss.backward()
            agent.actor_optim.step()
            for p in agent._critic_params:
                p.requires_grad_(True)
        if i % 10_000 == 0:
            print("warm", i, "q", round(float(m["q_mean"])), "loss", round(float(m["critic_loss"]), 1), flush=True)
    for g in agent.actor_optim.param_groups:
        g["lr"] = agent.config.actor_lr
    evaluate("after warm-up")
    for i in range(1, online + 1):
        step_env(False)
        m = agent.update(buf.sample(rng, 256))
        if i in (100, 300, 1000, 3000) or i % 5000 == 0:
            evaluate(f"online {i} entropy {float(m['entropy']):.1f} alpha {float(m['alpha']):.3f}")


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5]))
