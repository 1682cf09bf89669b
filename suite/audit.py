"""`suite audit RECORD [--steps N]`: re-run a submitted record's method with its recorded config, seed, task version,
protocol and dataset, for its first N updates (default: up to its first evaluation), and compare the evaluation
curve with the record.

Same machine class (CPU architecture and model, torch version, thread count as recorded): the returns must be
identical, as the suite's runs are bit-reproducible there. Another machine class: each evaluation's mean return
must agree within ``tolerance`` (relative, default 2%; float reduction order differs across CPUs and BLAS builds,
and a control task amplifies it). The same tolerance applies when the method's arithmetic was changed on purpose
since the record was made (its agent's ``NUMERICS`` differs from the record's). The dataset on this machine must
have the recorded checksum. The cheap checks of `suite validate` (digest, scores recomputed from the curve,
provenance) run first; a hand-edited score fails those, a forged curve fails the re-run.

Generative records on analytic tasks are re-run whole and their metrics compared; image and restoration records
are checked cheaply only (their audit would retrain a model) and the report says so.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import SuiteError


@dataclass
class AuditReport:
    path: str
    ok: bool = True
    checked: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def fail(self, msg: str) -> None:
        self.ok = False
        self.problems.append(msg)


def _text(v) -> str:
    if v is None:
        return "none"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (list, tuple)):
        return json.dumps(list(v))
    if isinstance(v, float):
        return repr(v)
    return str(v)


def machine_class(prov: dict) -> tuple:
    return (prov.get("platform", "").split("-")[-1] if prov.get("platform") else None,
            prov.get("cpu"), (prov.get("packages") or {}).get("torch"), prov.get("torch_threads"))


def reevaluate_checkpoint(rec, checkpoint: str | Path) -> list[float]:
    """The evaluation returns of a run's shipped checkpoint (``<run>/checkpoint``, safetensors + JSON, never
    unpickled) under the record's protocol: the method's agent rebuilt with the recorded config, its state
    loaded, the deterministic policy run on the record's evaluation episodes and seed."""
    import gymnasium as gym
    import torch

    from . import methods
    from .checkpoint import load_checkpoint
    from .evaluation import Evaluator

    method = methods.get_method(rec.method)
    config, _ = methods.resolve_config(method, rec.task, {k: _text(v) for k, v in rec.config.items()})
    env = gym.make(rec.task_spec["env_id"])
    obs_dim, act_dim = int(np.prod(env.observation_space.shape)), int(np.prod(env.action_space.shape))
    env.close()
    agent = method.load()(config, obs_dim, act_dim, device="cpu")
    agent.load_state_dict(load_checkpoint(checkpoint)["agent"])
    episodes = int((rec.provenance.get("protocol") or {}).get("eval_episodes") or len(rec.curve[-1].returns))
    ev = Evaluator(rec.task_spec["env_id"], episodes, rec.seed)
    try:
        return ev(agent.act, torch.device("cpu"))
    finally:
        ev.close()


def audit(path: str | Path, steps: int | None = None, tolerance: float = 0.02, skip_dirty: bool = False,
          log=None, checkpoint: str | Path | None = None) -> AuditReport:
    """Audit one record file; see the module docstring."""
    from . import methods, validate
    from .results import provenance
    from .runner import RunOptions, run, run_seeds

    path = Path(path)
    report = AuditReport(str(path))
    raw, rec = validate.read_raw(path)
    cheap = validate.problems(rec, raw)
    if skip_dirty:
        cheap = [p for p in cheap if "dirty git tree" not in p]
    report.checked.append("digest, scores recomputed from the curve, provenance, task spec, dataset checksum")
    for p in cheap:
        report.fail(p)
    if rec.method not in methods.registry:
        report.checked.append(f"not re-run: method {rec.method!r} is not registered here (a record from a custom "
                              "loop; install its plug-in to audit the curve)")
        return report
    method = methods.get_method(rec.method)
    if method.kind != "agent":
        spec_extra = rec.task_spec.get("extra", {})
        if "distribution" not in spec_extra:
            report.checked.append("not re-run: image / restoration records would retrain their model")
            return report
        overrides = {k: _text(v) for k, v in rec.config.items()}
        with tempfile.TemporaryDirectory() as tmp:
            new = run(rec.method, rec.task, RunOptions(seed=rec.seed, out=tmp, overrides=overrides, progress=False))
        report.checked.append("re-ran the sampler with the recorded config and seed")
        for k, v in rec.metrics.items():
            if k.endswith("wall_time_s"):
                continue
            w = new.metrics.get(k)
            if w is None or abs(w - v) > 1e-9 * max(1.0, abs(v)):
                report.fail(f"metric {k}: recorded {v}, re-run {w}")
        return report

    recorded_numerics = int(rec.provenance.get("numerics", 1))  # records before NUMERICS existed: version 1
    current_numerics = int(getattr(method.load(), "NUMERICS", 1))
    same_numerics = recorded_numerics == current_numerics
    if not same_numerics:
        report.checked.append(f"{rec.method}'s arithmetic changed on purpose since the record (NUMERICS "
                              f"{recorded_numerics} -> {current_numerics}, agents.base.OfflineAgent): compared "
                              f"within {tolerance:.0%}, not bit for bit")
    exact = machine_class(rec.provenance) == machine_class(provenance("cpu")) and same_numerics
    if checkpoint is not None:
        if not rec.curve:
            report.fail("a checkpoint was given but the record has no evaluation to compare with")
        else:
            last = rec.curve[-1]
            got = reevaluate_checkpoint(rec, checkpoint)
            mean = float(np.mean(got))
            if (exact and got != last.returns) or abs(mean - last.mean_return) > tolerance * max(1.0, abs(mean)):
                report.fail(f"the checkpoint {checkpoint} evaluates to mean {mean:.6g}, the record's last evaluation "
                            f"(update {last.step}) says {last.mean_return:.6g}")
            report.checked.append(f"re-evaluated the shipped checkpoint against the last evaluation (update "
                                  f"{last.step}, {len(got)} episodes)")
    protocol = rec.provenance.get("protocol") or {}
    every = int(protocol.get("eval_every") or 0)
    if not every:
        report.fail("the record has no protocol (eval_every): it cannot be re-run")
        return report
    n = min(steps or every, rec.steps)
    overrides = {k: _text(v) for k, v in rec.config.items()}
    with tempfile.TemporaryDirectory() as tmp:
        opts = RunOptions(seed=rec.seed, out=tmp, overrides=overrides, steps=int(protocol.get("steps", rec.steps)),
                          eval_every=every, eval_episodes=int(protocol.get("eval_episodes", 10)), progress=False,
                          tensorboard=False, stop_after=n)
        together = rec.provenance.get("seeds_in_process")  # trained as one stacked agent: re-run it so
        if together:
            opts.seeds = tuple(int(s) for s in together)
        if log:
            log(f"audit: re-running {rec.method} on {rec.task} seed {rec.seed} for {n} updates"
                + (f" (with seeds {together} in one process, as recorded)" if together else ""))
        new = run_seeds(rec.method, rec.task, opts)[opts.seeds.index(rec.seed)] if together else run(
            rec.method, rec.task, opts)
    if new.provenance.get("dataset_checksum") != rec.provenance.get("dataset_checksum"):
        report.fail(f"dataset checksum {str(new.provenance.get('dataset_checksum'))[:12]}… on this machine, "
                    f"{str(rec.provenance.get('dataset_checksum'))[:12]}… in the record")
    recorded = {p.step: p for p in rec.curve if p.step <= n}
    rerun = {p.step: p for p in new.curve}
    if not recorded:
        report.fail(f"the record has no evaluation within the first {n} updates")
    for step, p in sorted(recorded.items()):
        q = rerun.get(step)
        if q is None:
            report.fail(f"the re-run has no evaluation at update {step}")
        elif exact and q.returns != p.returns:
            report.fail(f"update {step}: recorded returns differ from the re-run (same machine class, must be "
                        f"identical): mean {p.mean_return:.6g} vs {q.mean_return:.6g}")
        elif not exact and abs(q.mean_return - p.mean_return) > tolerance * max(1.0, abs(q.mean_return)):
            report.fail(f"update {step}: mean return {p.mean_return:.6g} vs re-run {q.mean_return:.6g} "
                        f"(tolerance {tolerance:.0%} across machine classes or NUMERICS versions)")
    report.checked.append(f"re-ran the first {n} updates ({len(recorded)} evaluation(s)) and compared the curve "
                          + ("exactly (same machine class)" if exact else f"within {tolerance:.0%} ("
                             + ("other machine" if same_numerics else "other NUMERICS") + ")"))
    return report


def audit_or_raise(path, **kw) -> AuditReport:
    rep = audit(path, **kw)
    if not rep.ok:
        raise SuiteError(f"{path}: audit failed: " + "; ".join(rep.problems))
    return rep
