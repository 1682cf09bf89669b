"""Behaviour policies for the suite's own datasets: train SAC online on a Gymnasium MuJoCo task, keep a
sequence of policy snapshots, then pick the `expert`, `medium` and `medium-replay` policies from them the
way D4RL did, and ship them under `suite/data/policies/<env_id>/` with a manifest each.

    python -m suite behaviour train Hopper-v5 --steps 100000 --seed 0 --out DIR [--resume]
    python -m suite behaviour select Hopper-v5 --run runs/behaviour/Hopper-v5

- `train` — `train_sac`: the SAC loop, snapshots, tensorboard, checkpoints that resume bit-identically;
- `select` — `select_levels`: screening the snapshots and choosing the levels;
- `layout` — where runs and shipped policies keep their files, and what a manifest holds;
- `envstate` — saving and restoring an environment mid-episode (for the checkpoints).
Rollouts are `suite.evaluation`'s and the replay buffer is `suite.data.buffer.ReplayBuffer`."""

from .layout import CHECKPOINT_NAME, POLICY_ROOT, SNAPSHOT_DIR, snapshot_path
from .select import select_levels
from .train import train_sac

__all__ = ["CHECKPOINT_NAME", "POLICY_ROOT", "SNAPSHOT_DIR", "select_levels", "snapshot_path", "train_sac"]
