"""Continuation diagnostic (issue "Behaviour policies at D4RL strength", 2026-12-07): does SAC continue from a
shipped HalfCheetah expert with fresh critics? The expert actor collects `prefill` steps (Gaussian action noise
0 / 0.1 / 0.2 / 0.4 / 0.8 per episode in turn), the critics get `warm` critic-only updates, then `online` SAC
updates run; the deterministic return (2 episodes) is printed along the way.

    python scripts/continuation_diag.py VARIANT PREFILL WARM ONLINE INIT_ALPHA
    python scripts/continuation_diag.py fresh 20000 20000 3000 0.2      # 10029 -> 616 after 100 updates
    python scripts/continuation_diag.py adamwarm 20000 20000 3000 0.2   # 10029 -> 1105 after 100 updates

VARIANT: fresh | adamwarm (the actor's Adam moments accumulated at lr 0 during the critic warm-up). Run from
the repository root, one thread."""
import sys, time, numpy as np, torch
from agents.sac import SAC, SACConfig, load_behaviour_policy
from suite.data.buffer import ReplayBuffer
from suite.evaluation import make_env, evaluate_policy
torch.set_num_threads(1); torch.manual_seed(0)
variant = sys.argv[1]; prefill = int(sys.argv[2]); warm = int(sys.argv[3]); online = int(sys.argv[4]); alpha0=float(sys.argv[5])
env = make_env("HalfCheetah-v5"); rng = np.random.default_rng(0)
agent = SAC(SACConfig(init_alpha=alpha0), 17, 6)
agent.actor.load_state_dict(load_behaviour_policy("suite/data/policies/HalfCheetah-v5/v1/expert.safetensors").state_dict())
buf = ReplayBuffer(17, 6, 1_000_000); obs, _ = env.reset(seed=0); ep = 0; noise = [0, 0.1, 0.2, 0.4, 0.8]
t0=time.time()
def step_env(noisy):
    global obs, ep
    a = agent.sample_action(torch.as_tensor(obs, dtype=torch.float32)[None])[0].numpy()
    if noisy and noise[ep % 5] > 0: a = np.clip(a + rng.normal(0, noise[ep % 5], a.shape), -1, 1).astype(a.dtype)
    o2, r, te, tr, _ = env.step(a.astype(np.float64)); buf.add(obs, a, r, o2, te)
    if te or tr: obs, _ = env.reset(); ep += 1
    else: obs = o2
for _ in range(prefill): step_env(True)
print("prefill", time.time()-t0, flush=True)
if variant == "adamwarm":
    for g in agent.actor_optim.param_groups: g["lr"] = 0.0
for i in range(warm):
    b = buf.sample(rng, 256); mm = agent.update_critic(b)
    if (i + 1) % 10000 == 0: print("warm", i + 1, "q", round(float(mm["q_mean"])), "loss", round(float(mm["critic_loss"]), 1), flush=True)
    if variant == "adamwarm":
        for p in agent._critic_params: p.requires_grad_(False)
        loss, _ = agent.actor_loss(b["observations"], agent.alpha)
        agent.actor_optim.zero_grad(); loss.backward(); agent.actor_optim.step()
        for p in agent._critic_params: p.requires_grad_(True)
if variant == "adamwarm":
    for g in agent.actor_optim.param_groups: g["lr"] = 3e-4
print("warm", time.time()-t0, flush=True)
def ev(tag): print(tag, round(evaluate_policy(agent.actor, "HalfCheetah-v5", 2, 10_000, deterministic=True)["mean"]), flush=True)
ev("after warm-up")
for i in range(1, online + 1):
    step_env(False); m = agent.update(buf.sample(rng, 256))
    if i in (100, 300, 1000, 3000) or i % 5000 == 0:
        ev(f"online {i} entropy {float(m['entropy']):.1f} alpha {float(m['alpha']):.3f} q {float(m['q_mean']):.0f}")
