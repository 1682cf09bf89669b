"""K seeds in one process (`suite run METHOD TASK --seeds 0-4`): --seeds parsing, K = 1 is the single-seed
run bit for bit, each seed of a K-seed run follows its own single run and writes its own record, resume and
divergence per seed — with the real agents on a small hopper-random dataset."""

from __future__ import annotations

import pytest
import torch

from suite.checkpoint import load_checkpoint, save_checkpoint
from suite.errors import SuiteError
from suite.results import iter_records
from suite.runner import RunOptions, run, run_seeds
from suite.seeds import parse_seeds

FAST = dict(steps=40, eval_every=20, eval_episodes=2, progress=False, tensorboard=False)
SMALL = {"batch_size": "32", "hidden": "[32, 32]"}


def _returns(rec):
    return [(p.step, p.returns) for p in rec.curve]


@pytest.mark.parametrize("text, seeds", [("0-4", (0, 1, 2, 3, 4)), ("0,3,7", (0, 3, 7)), ("5", (5,)),
                                         (" 2-3, 9 ", (2, 3, 9)), ("7-7", (7,))])
def test_seeds_parse(text, seeds):
    assert parse_seeds(text) == seeds


@pytest.mark.parametrize("text, words", [("a-b", "'a-b' is not a seed"), ("0,1,1", "seed(s) 1 given more than once"),
                                         ("0-3,2", "seed(s) 2 given"), ("", "expected seeds like 0-4"),
                                         ("1,,2", "expected seeds like"), ("4-2", "range '4-2' is empty"),
                                         ("-1", "'-1' is not a seed")])
def test_seeds_parse_errors_are_one_line(text, words):
    with pytest.raises(SuiteError) as e:
        parse_seeds(text)
    assert words in str(e.value) and "\n" not in str(e.value)


def test_one_seed_through_seeds_is_the_single_run(hopper_random_built, tmp_path):
    single = run("iql", "hopper-random-v0", RunOptions(seed=3, out=tmp_path / "a", overrides=SMALL, **FAST))
    (k1,) = run_seeds("iql", "hopper-random-v0", RunOptions(seeds=(3,), out=tmp_path / "b", overrides=SMALL,
                                                              **FAST))
    assert single.status == k1.status == "ok"
    assert _returns(k1) == _returns(single) and k1.metrics == single.metrics  # bit-identical
    assert "seeds_in_process" not in k1.provenance


@pytest.mark.parametrize("method, overrides", [("td3bc", SMALL), ("odice", {"batch_size": "32",
                         "value_hidden": "[32, 32]", "policy_hidden": "[32, 32]"})])
def test_each_seed_of_a_k_seed_run_is_its_own_run(hopper_random_built, tmp_path, method, overrides):
    recs = run_seeds(method, "hopper-random-v0", RunOptions(seeds=(0, 4), out=tmp_path / "k",
                                                            overrides=overrides, **FAST))
    assert [r.seed for r in recs] == [0, 4] and all(r.status == "ok" for r in recs)
    assert all(r.provenance["seeds_in_process"] == [0, 4] for r in recs)
    on_disk = sorted((r.seed, r.run_id) for _, r in iter_records(tmp_path / "k"))
    assert on_disk == [(0, recs[0].run_id), (4, recs[1].run_id)]  # one record per seed, its own folder
    for rec in recs:
        assert (tmp_path / "k" / method / "hopper-random-v0" / rec.run_id / "checkpoint").exists()
        single = run(method, "hopper-random-v0", RunOptions(seed=rec.seed, out=tmp_path / f"s{rec.seed}",
                                                            overrides=overrides, **FAST))
        for (step, got), (step1, want) in zip(_returns(rec), _returns(single), strict=True):
            assert step == step1 and got == pytest.approx(want, rel=1e-3)  # same policy up to float rounding
        assert rec.metrics == pytest.approx(single.metrics, rel=1e-3, abs=1e-4)
    assert _returns(recs[0]) != _returns(recs[1])


def test_resume_and_divergence_per_seed(hopper_random_built, tmp_path):
    """A 3-seed run stopped at update 20; seed 1's checkpoint is broken (a NaN weight) before --resume:
    seed 1 ends `diverged` in its own record, seeds 0 and 2 finish with the numbers of an uninterrupted run."""
    opts = dict(out=tmp_path / "r", overrides=SMALL, log_every=10, **FAST)
    straight = run_seeds("bc", "hopper-random-v0", RunOptions(seeds=(0, 2), **{**opts, "out": tmp_path / "u"}))
    part = run_seeds("bc", "hopper-random-v0", RunOptions(seeds=(0, 1, 2), stop_after=20, **opts))
    assert [r.status for r in part] == ["running"] * 3 and all(r.steps == 20 for r in part)
    ck_dir = tmp_path / "r" / "bc" / "hopper-random-v0" / part[1].run_id / "checkpoint"
    ck = load_checkpoint(ck_dir)
    w = ck["agent"]["policy"]["net.0.weight"]
    ck["agent"]["policy"]["net.0.weight"] = torch.full_like(w, float("nan"))
    save_checkpoint(ck_dir, ck)
    resumed = run_seeds("bc", "hopper-random-v0", RunOptions(seeds=(0, 1, 2), resume=True, **opts))
    assert [r.run_id for r in resumed] == [r.run_id for r in part]
    assert [r.status for r in resumed] == ["ok", "diverged", "ok"]
    assert resumed[1].final_score is None and resumed[1].steps <= 30 and "non-finite" in resumed[1].error
    for got, want in zip([resumed[0], resumed[2]], straight, strict=True):
        assert _returns(got) == pytest.approx(_returns(want)) and got.steps == 40
    again = run_seeds("bc", "hopper-random-v0", RunOptions(seeds=(0, 1, 2), resume=True, **opts))
    assert [r.status for r in again] == ["ok", "diverged", "ok"]  # finished: nothing to redo


@pytest.mark.parametrize("args, words", [(["--seeds", "a-b"], "'a-b' is not a seed"),
                                         (["--seeds", "1,1"], "given more than once"),
                                         (["--seeds", ""], "expected seeds like 0-4"),
                                         (["--seed", "1", "--seeds", "0-2"], "not both")])
def test_cli_seeds_errors_are_one_line(tmp_path, capsys, args, words):
    from suite.cli import main

    assert main(["run", "bc", "hopper-random-v0", "--out", str(tmp_path), *args]) == 2
    err = capsys.readouterr().err
    assert words in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_cli_runs_k_seeds_one_record_each(hopper_random_built, tmp_path, capsys):
    from suite.cli import main

    args = ["run", "bc", "hopper-random-v0", "--seeds", "0,3", "--steps", "20", "--eval-every", "20",
            "--eval-episodes", "1", "--set", "batch_size=16", "--out", str(tmp_path), "--no-progress"]
    assert main(args) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert [ln.split(":")[1].strip() for ln in lines] == [f"bc on hopper-random-v0 seed {s}" for s in (0, 3)]
    assert sorted(r.seed for _, r in iter_records(tmp_path)) == [0, 3]


def test_audit_reruns_a_k_seed_record_with_its_seeds(hopper_random_built, tmp_path):
    """Seeds trained together round differently from single runs, so the audit re-runs the record's seeds
    together and then finds the curve identical (same machine class)."""
    from suite.audit import audit

    recs = run_seeds("bc", "hopper-random-v0", RunOptions(seeds=(1, 2), out=tmp_path, overrides=SMALL, **FAST))
    path = tmp_path / "bc" / "hopper-random-v0" / recs[1].run_id / "record.json"
    said: list[str] = []
    report = audit(path, steps=20, skip_dirty=True, log=said.append)
    assert report.ok, report.problems
    assert any("with seeds [1, 2] in one process" in line for line in said)  # re-run as it was trained
    assert any("exactly" in c for c in report.checked)
