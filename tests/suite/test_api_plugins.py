"""The library API (suite.make / task.dataset / task.evaluate / suite.record), audited submissions and
method plug-ins installed from examples/ (entry points), end to end."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import suite
from suite.audit import audit
from suite.results import content_digest, iter_records
from suite.runner import RunOptions, run
from suite.validate import problems, read_raw

REPO = Path(__file__).resolve().parents[2]
FAST = {"steps": 120, "eval_every": 60, "eval_episodes": 2, "progress": False}


def _clean(ps: list[str]) -> list[str]:
    # a checkout with uncommitted changes marks every record dirty; that one check is about the tree, not the API
    return [p for p in ps if "dirty git tree" not in p]


def test_custom_loop_record_is_valid(hopper_random_built, tmp_path):
    task = suite.make("hopper-random-v0")
    assert task.id == "hopper-random-v0" and task.kind == "offline-rl"
    _, arrays, ends = task.dataset()
    assert arrays["observations"].shape[0] == 3000 and len(ends) > 0
    # a policy fitted outside agents/: least squares from observations to actions
    X = np.c_[arrays["observations"], np.ones(len(arrays["observations"]))]
    W, *_ = np.linalg.lstsq(X, arrays["actions"], rcond=None)

    def policy(obs):
        return np.clip(np.c_[obs.numpy(), np.ones(len(obs))] @ W, -1, 1)

    ev1 = task.evaluate(policy, seed=0, episodes=2)
    ev2 = task.evaluate(policy, seed=0, episodes=2)
    assert ev1.returns == ev2.returns and len(ev1.returns) == 2  # the protocol's seeded resets
    assert ev1.normalized_score == pytest.approx(task.references.normalize(ev1.mean_return))
    rec = suite.record("lstsq-bc", task, seed=0, config={"solver": "lstsq"}, curve=[(1, ev1), (2, ev2)],
                       out=tmp_path)
    path = next(p for p, _ in iter_records(tmp_path))
    raw, loaded = read_raw(path)
    assert _clean(problems(loaded, raw)) == []
    assert loaded.final_score == rec.final_score == ev2.normalized_score
    rep = audit(path, skip_dirty=True)
    assert rep.ok and "not registered" in rep.checked[-1]


def _forge(path: Path, transform) -> None:
    raw = json.loads(path.read_text())
    transform(raw)
    raw["digest"] = content_digest(raw)
    path.write_text(json.dumps(raw))


def test_audit_passes_a_real_run_and_fails_forgeries(hopper_random_built, tmp_path):
    run("bc", "hopper-random-v0", RunOptions(seed=1, out=tmp_path / "runs", **FAST))
    path = next(p for p, _ in iter_records(tmp_path / "runs"))
    rep = audit(path, skip_dirty=True)
    assert rep.ok, rep.problems
    assert "exactly" in rep.checked[-1]

    edited = tmp_path / "edited.json"
    edited.write_text(path.read_text())
    _forge(edited, lambda r: r.update(final_score=r["final_score"] + 5))  # a hand-edited score
    rep = audit(edited, skip_dirty=True)
    assert not rep.ok and any("final_score" in p for p in rep.problems)

    def better_curve(r):  # a consistent forgery: returns, means, scores and digest all agree
        for p in r["curve"]:
            p["returns"] = [x + 100.0 for x in p["returns"]]
            p["mean_return"] += 100.0
            lo, hi = r["task_spec"]["references"]["min_return"], r["task_spec"]["references"]["max_return"]
            p["normalized_score"] = 100 * (p["mean_return"] - lo) / (hi - lo)
        last = r["curve"][-1]
        r["final_return"], r["final_score"] = last["mean_return"], last["normalized_score"]
        r["best_score"] = max(p["normalized_score"] for p in r["curve"])

    forged = tmp_path / "forged.json"
    forged.write_text(path.read_text())
    _forge(forged, better_curve)
    raw, rec = read_raw(forged)
    assert _clean(problems(rec, raw)) == []  # the cheap checks cannot see it
    rep = audit(forged, skip_dirty=True)
    assert not rep.ok and any("differ from the re-run" in p for p in rep.problems)

    # A record made before BC's arithmetic changed on purpose (NUMERICS 1, BC is 2): compared within the
    # tolerance and said so — the real run still passes, the forged curve still fails (100 is far beyond 2%).
    older = tmp_path / "older.json"
    older.write_text(path.read_text())
    _forge(older, lambda r: r["provenance"].update(numerics=1))
    rep = audit(older, skip_dirty=True)
    assert rep.ok, rep.problems
    assert any("NUMERICS 1 -> 2" in c for c in rep.checked) and "other NUMERICS" in rep.checked[-1]
    _forge(older, better_curve)
    rep = audit(older, skip_dirty=True)
    assert not rep.ok and any("or NUMERICS versions" in p for p in rep.problems)


def _env(extra_path: Path, minari_root) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(extra_path), str(REPO), env.get("PYTHONPATH", "")])
    env["MINARI_DATASETS_PATH"] = str(minari_root)
    return env


@pytest.mark.slow
def test_example_plugin_installs_lists_and_runs(hopper_random_built, minari_root, tmp_path):
    target = tmp_path / "site"
    src = tmp_path / "src"  # a copy: pip builds in the source folder, and the checkout must stay clean
    shutil.copytree(REPO / "examples" / "suite-method-example", src)
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                    "--target", str(target), str(src)], check=True, capture_output=True)
    env = _env(target, minari_root)
    ls = subprocess.run([sys.executable, "-m", "suite", "ls", "methods"], env=env, capture_output=True, text=True)
    assert ls.returncode == 0 and "linear-bc" in ls.stdout and "odice" in ls.stdout, ls.stderr
    out = tmp_path / "runs"
    r = subprocess.run([sys.executable, "-m", "suite", "run", "linear-bc", "hopper-random-v0", "--steps", "100",
                        "--eval-every", "50", "--eval-episodes", "2", "--out", str(out), "--no-progress"],
                       env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    recs = [rec for _, rec in iter_records(out)]
    assert len(recs) == 1 and recs[0].method == "linear-bc" and recs[0].status == "ok"
    assert [p.step for p in recs[0].curve] == [50, 100]


def test_broken_plugin_is_one_line_and_ls_still_works(tmp_path):
    dist = tmp_path / "site" / "broken_plugin-0.1.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-plugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[odice_suite.methods]\nbroken = no_such_module_xyz:method\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path / "site"), str(REPO)]))
    ls = subprocess.run([sys.executable, "-m", "suite", "ls", "methods"], env=env, capture_output=True, text=True)
    assert ls.returncode == 0 and "odice" in ls.stdout
    warn = [line for line in ls.stderr.splitlines() if "broken-plugin" in line]
    assert len(warn) == 1 and "Traceback" not in ls.stderr and "no_such_module_xyz" in warn[0]


def test_new_method_writes_an_installable_skeleton(tmp_path):
    from suite.scaffold import new_method

    # the shipped example is the skeleton `suite new-method linear-bc` writes (folder renamed): they cannot drift
    example = REPO / "examples" / "suite-method-example"
    made = new_method("linear-bc", tmp_path / "gen")
    for rel in ("pyproject.toml", "README.md", "suite_linear_bc/__init__.py"):
        assert (made / rel).read_text() == (example / rel).read_text(), rel
    root = new_method("my-bc", tmp_path)
    text = (root / "pyproject.toml").read_text()
    assert '[project.entry-points."odice_suite.methods"]' in text and 'my-bc = "suite_my_bc:method"' in text
    ns: dict = {}
    exec(compile((root / "suite_my_bc" / "__init__.py").read_text(), "init", "exec"), ns)
    spec = ns["method"]
    assert spec.name == "my-bc" and spec.entry_point == "suite_my_bc:MyBc"
    agent = ns["MyBc"](ns["MyBcConfig"](), 3, 2)
    m = agent.update({"observations": torch.randn(8, 3), "actions": torch.rand(8, 2) * 2 - 1})
    assert m["loss"].dim() == 0 and agent.act(torch.randn(4, 3)).abs().max() <= 1
    with pytest.raises(Exception, match="already registered"):
        new_method("odice", tmp_path)


def test_audit_reevaluates_a_shipped_checkpoint(hopper_random_built, tmp_path):
    a = run("bc", "hopper-random-v0", RunOptions(seed=3, out=tmp_path / "a", **FAST))
    b = run("bc", "hopper-random-v0", RunOptions(seed=4, out=tmp_path / "b", **FAST))
    path_a = next(p for p, _ in iter_records(tmp_path / "a"))
    ck_a = path_a.parent / "checkpoint"
    ck_b = next(p for p, _ in iter_records(tmp_path / "b")).parent / "checkpoint"
    rep = audit(path_a, skip_dirty=True, checkpoint=ck_a)
    assert rep.ok and any("re-evaluated the shipped checkpoint" in c for c in rep.checked), rep.problems
    assert a.curve[-1].returns != b.curve[-1].returns
    rep = audit(path_a, skip_dirty=True, checkpoint=ck_b)  # another run's weights do not give this record
    assert not rep.ok and any("checkpoint" in p for p in rep.problems)
