"""`suite behaviour train` and `suite behaviour select`: the behaviour policies the suite's datasets are built
from (`suite.behaviour`). The flags are those of the first, argparse, version of these commands: long runs
and their documented resume commands use them."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from ..errors import SuiteError
from . import app

behaviour_app = typer.Typer(
    no_args_is_help=True, help="Train SAC behaviour policies and select the dataset levels from their snapshots."
)
app.add_typer(behaviour_app, name="behaviour")


def _threads(n: int) -> None:
    if n < 1:
        raise SuiteError("--threads must be at least 1")
    import torch

    torch.set_num_threads(n)


@behaviour_app.command("train")
def train(
    env: Annotated[str, typer.Argument(help="Gymnasium environment id, e.g. Hopper-v5")],
    steps: Annotated[int, typer.Option(help="environment steps in all (larger than a finished run's extends it)")],
    out: Annotated[str, typer.Option(help="run directory (run.json, tb/, snapshots/, checkpoint/)")],
    seed: Annotated[int, typer.Option(help="seeds everything")] = 0,
    resume: Annotated[bool, typer.Option("--resume", help="continue from the run's checkpoint, exactly")] = False,
    start_steps: Annotated[int, typer.Option("--start-steps", help="uniform-random steps first")] = 5000,
    eval_every: Annotated[int, typer.Option("--eval-every", help="deterministic evaluation every K steps")] = 10_000,
    eval_episodes: Annotated[int, typer.Option("--eval-episodes", help="episodes per evaluation")] = 10,
    snapshot_every: Annotated[int, typer.Option("--snapshot-every", help="actor snapshot every K steps")] = 10_000,
    checkpoint_every: Annotated[int, typer.Option("--checkpoint-every", help="checkpoint every K steps")] = 20_000,
    threads: Annotated[int, typer.Option(help="torch intra-op threads")] = 1,
    no_progress: Annotated[bool, typer.Option("--no-progress", help="no progress bar")] = False,
    init_actor: Annotated[str | None, typer.Option("--init-actor", help="continue from this behaviour-policy "
                          "file: its actor, its stochastic actions for --start-steps, then --critic-warmup")] = None,
    critic_warmup: Annotated[int, typer.Option("--critic-warmup", help="critic-only updates before the first "
                             "SAC update (with --init-actor)")] = 0,
    init_alpha: Annotated[float, typer.Option("--init-alpha", help="initial entropy temperature")] = 1.0,
    prefill_noise: Annotated[str | None, typer.Option("--prefill-noise", help="with --init-actor: comma-separated "
                             "Gaussian action-noise stds, one per warm-up episode in turn, e.g. 0,0.1,0.3")] = None,
):
    """Train SAC and write snapshots and checkpoints (SIGTERM/SIGINT stop it with a checkpoint written)."""
    from agents.sac import SACConfig

    from ..behaviour import train_sac

    _threads(threads)
    # the command recorded in run.json keeps the spelling of the first runs (python -m suite.behaviour still works)
    cmd = (
        f"python -m suite.behaviour train {env} --steps {steps} --seed {seed} "
        f"--out {out} --start-steps {start_steps} --eval-every {eval_every} "
        f"--eval-episodes {eval_episodes} --snapshot-every {snapshot_every} "
        f"--checkpoint-every {checkpoint_every} --threads {threads}"
    )
    noise: tuple[float, ...] = ()
    if prefill_noise:
        try:
            noise = tuple(float(x) for x in prefill_noise.split(",") if x.strip())
        except ValueError:
            raise SuiteError(f"--prefill-noise {prefill_noise!r}: want comma-separated numbers, e.g. "
                             "0,0.1,0.3") from None
        if any(x < 0 for x in noise):
            raise SuiteError(f"--prefill-noise {prefill_noise!r}: a standard deviation cannot be negative")
    if init_actor is not None:
        cmd += f" --init-actor {init_actor} --critic-warmup {critic_warmup}"
        if noise:
            cmd += f" --prefill-noise {','.join(repr(x) for x in noise)}"
    elif critic_warmup or noise:
        raise SuiteError("--critic-warmup and --prefill-noise need --init-actor (they warm up a given actor)")
    if init_alpha != 1.0:
        cmd += f" --init-alpha {init_alpha}"
    train_sac(
        env,
        steps,
        seed,
        out,
        start_steps=start_steps,
        eval_every=eval_every,
        eval_episodes=eval_episodes,
        snapshot_every=snapshot_every,
        checkpoint_every=checkpoint_every,
        resume=resume,
        progress=not no_progress,
        command=cmd,
        config=SACConfig(init_alpha=init_alpha),
        init_actor=init_actor,
        critic_warmup=critic_warmup,
        prefill_noise=noise,
    )


@behaviour_app.command("select")
def select(
    env: Annotated[str, typer.Argument(help="Gymnasium environment id the run trained")],
    run: Annotated[str | None, typer.Option(help="the training run's directory")] = None,
    dest: Annotated[str | None, typer.Option(help="where to ship the policies (default: suite/data/policies)")] = None,
    screen_episodes: Annotated[int, typer.Option("--screen-episodes", help="episodes per snapshot screen")] = 5,
    final_episodes: Annotated[int, typer.Option("--final-episodes", help="episodes for expert/medium")] = 100,
    replay_episodes: Annotated[int, typer.Option("--replay-episodes", help="episodes per replay policy")] = 20,
    deterministic_episodes: Annotated[int, typer.Option(
        "--deterministic-episodes", help="deterministic-action episodes for expert/medium")] = 20,
    candidates: Annotated[int, typer.Option(help="snapshots compared over --final-episodes per level")] = 2,
    max_replay: Annotated[int, typer.Option("--max-replay", help="most snapshots in medium-replay")] = 5,
    threads: Annotated[int, typer.Option(help="torch intra-op threads")] = 1,
    medium_run: Annotated[str | None, typer.Option("--medium-run", help="take medium and medium-replay from this "
                          "run's snapshots (a short run with fine spacing; for an expert continued with "
                          "--init-actor)")] = None,
    keep_expert: Annotated[bool, typer.Option("--keep-expert", help="keep the expert (and reference.json) "
                           "shipped under --dest/<env>, re-select only medium and medium-replay from "
                           "--medium-run (for an expert whose training run is gone)")] = False,
):
    """Pick expert/medium/medium-replay policies from a run's snapshots and ship them with manifests."""
    from ..behaviour import POLICY_ROOT, select_levels

    if keep_expert == (run is not None) or (keep_expert and medium_run is None):
        raise SuiteError("give --run (select every level), or --keep-expert with --medium-run")
    _threads(threads)
    result = select_levels(
        run,
        env,
        dest_root=POLICY_ROOT if dest is None else dest,
        screen_episodes=screen_episodes,
        final_episodes=final_episodes,
        replay_episodes=replay_episodes,
        deterministic_episodes=deterministic_episodes,
        n_candidates=candidates,
        max_replay=max_replay,
        medium_run=medium_run,
        keep_expert=keep_expert,
    )
    summary = {k: v["evaluation"] for k, v in result.items() if k in ("expert", "medium")}
    typer.echo(json.dumps(summary, indent=2))


@behaviour_app.command("levels")
def levels(
    version: Annotated[str, typer.Option(help="policy version (folder under suite/data/policies/<env>/)")] = "v1",
    write: Annotated[bool, typer.Option("--write", help="rewrite the table in suite/data/policies/README.md")] = False,
):
    """The table of shipped behaviour policies and their levels' D4RL-normalised scores, from the manifests."""
    from ..behaviour.levels import markdown, write_readme

    if write:
        typer.echo(f"wrote {write_readme(version=version)}")
    else:
        typer.echo(markdown(version))
