"""Runner: records, determinism, SIGKILL + resume, divergence, CLI errors — with the real BC agent on a real
(small) hopper-random dataset."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from suite import methods
from suite.cli import main
from suite.results import RunRecord, iter_records, load_record
from suite.runner import RunOptions, run

FAST = dict(steps=300, eval_every=150, eval_episodes=2, progress=False, tensorboard=False)


def _returns(rec):
    return [(p.step, p.returns) for p in rec.curve]


def test_record_fields_and_determinism(hopper_random_built, tmp_path):
    a = run("bc", "hopper-random-v0", RunOptions(seed=3, out=tmp_path / "a", **FAST))
    b = run("bc", "hopper-random-v0", RunOptions(seed=3, out=tmp_path / "b", **FAST))
    assert a.status == "ok" and a.task == "hopper-random-v0" and a.steps == 300
    assert [p.step for p in a.curve] == [150, 300]
    assert _returns(a) == _returns(b)  # same seed -> identical evaluation returns
    spec = hopper_random_built
    assert a.final_score == pytest.approx(spec.references.normalize(a.curve[-1].mean_return))
    assert a.best_score == max(p.normalized_score for p in a.curve)
    assert a.config["batch_size"] > 0 and "normalize_observations" in a.config
    prov = a.provenance
    for key in (
        "git_revision",
        "git_dirty",
        "packages",
        "dataset_id",
        "dataset_checksum",
        "device",
        "references_source",
    ):
        assert key in prov
    assert (
        prov["dataset_checksum"]
        == __import__("minari").load_dataset("suite/hopper/random-v0").storage.metadata["suite_checksum"]
    )
    assert a.updates_per_s and a.updates_per_s > 0 and a.wall_time_s > 0
    c = run("bc", "hopper-random-v0", RunOptions(seed=4, out=tmp_path / "c", **FAST))
    assert _returns(c) != _returns(a)  # a different seed gives a different run
    on_disk = [r for _, r in iter_records(tmp_path / "a")]
    assert len(on_disk) == 1 and on_disk[0].final_score == a.final_score


def test_resume_after_stop_matches_uninterrupted(hopper_random_built, tmp_path):
    full = run(
        "bc",
        "hopper-random-v0",
        RunOptions(
            seed=1, out=tmp_path / "full", tensorboard=True, **{k: v for k, v in FAST.items() if k != "tensorboard"}
        ),
    )
    part = run("bc", "hopper-random-v0", RunOptions(seed=1, out=tmp_path / "part", stop_after=150, **FAST))
    assert part.status == "running" and part.steps == 150
    resumed = run("bc", "hopper-random-v0", RunOptions(seed=1, out=tmp_path / "part", resume=True, **FAST))
    assert resumed.status == "ok" and _returns(resumed) == _returns(full)
    assert resumed.final_score == full.final_score and resumed.run_id == part.run_id
    again = run("bc", "hopper-random-v0", RunOptions(seed=1, out=tmp_path / "part", resume=True, **FAST))
    assert again.run_id == resumed.run_id and again.status == "ok"  # finished: nothing to redo


@pytest.mark.slow  # three 3000-update runs, two in subprocesses (~35 s under load)
def test_sigkill_then_resume(hopper_random_built, tmp_path):
    args = [
        sys.executable,
        "-m",
        "suite",
        "run",
        "bc",
        "hopper-random-v0",
        "--seed",
        "2",
        "--steps",
        "3000",
        "--eval-every",
        "250",
        "--eval-episodes",
        "2",
        "--out",
        str(tmp_path / "k"),
        "--no-progress",
    ]
    env = {**os.environ, "SUITE_TEST_THREADS": "1", "OMP_NUM_THREADS": "1"}
    log = open(tmp_path / "killed.log", "wb")  # a file, not a pipe nobody reads (a full pipe would stall the run)
    proc = subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.time() + 300
    killed_at = None
    while time.time() < deadline and proc.poll() is None:
        # Fixed depth (out/method/task/run/record.json): a recursive glob would scan the run folder while
        # the runner renames checkpoint.tmp into place and can fail on the vanished folder.
        recs = list((tmp_path / "k").glob("*/*/*/record.json"))
        if recs:
            try:
                steps = json.loads(recs[0].read_text())["steps"]
            except (json.JSONDecodeError, KeyError):
                steps = 0
            if steps >= 500:
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                killed_at = steps
                break
        time.sleep(0.02)
    log.close()
    if killed_at is None:
        proc.kill()
        tail = (tmp_path / "killed.log").read_text()[-2000:]
        pytest.fail(f"run finished or stalled before it could be killed:\n{tail}")
    rec = load_record(next((tmp_path / "k").rglob("record.json")))
    assert rec.status == "running" and rec.steps < 3000
    assert subprocess.run(args + ["--resume"], env=env, capture_output=True).returncode == 0
    resumed = load_record(next((tmp_path / "k").rglob("record.json")))
    straight = run(
        "bc",
        "hopper-random-v0",
        RunOptions(
            seed=2, steps=3000, eval_every=250, eval_episodes=2, out=tmp_path / "s", progress=False, tensorboard=False
        ),
    )
    assert resumed.status == "ok" and resumed.final_score == straight.final_score
    assert _returns(resumed) == _returns(straight)


# SIGTERM in the slow group: the same path as SIGINT with another exit code, ~30 s of a loaded fast group each
@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), pytest.param(signal.SIGTERM, 143, marks=pytest.mark.slow)])
def test_interrupt_before_the_first_evaluation_keeps_the_work(hopper_random_built, tmp_path, sig, code):
    """SIGINT/SIGTERM mid-run: a checkpoint at the current update and the record are written, the exit code
    is 128 + signal, and --resume finishes with the numbers of an uninterrupted run."""
    out = tmp_path / "i"
    args = [sys.executable, "-m", "suite", "run", "bc", "hopper-random-v0", "--seed", "5", "--steps", "2400",
            "--eval-every", "1200", "--eval-episodes", "2", "--out", str(out), "--no-progress", "--threads", "1"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    log = open(tmp_path / "interrupted.log", "wb")
    proc = subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None and not list(out.glob("*/*/*/tb")):
        time.sleep(0.05)  # tensorboard's folder appears just before the first update
    time.sleep(1.0)  # some hundreds of updates in, far from the first evaluation at 1200
    proc.send_signal(sig)
    rc = proc.wait(timeout=120)
    log.close()
    tail = (tmp_path / "interrupted.log").read_text()[-2000:]
    assert rc == code, tail
    rec = load_record(next(out.glob("*/*/*/record.json")))
    assert rec.status == "running" and 0 < rec.steps < 1200 and not rec.curve, (rec.steps, tail)
    assert sig.name in rec.error and "--resume" in tail
    assert subprocess.run(args + ["--resume"], env=env, capture_output=True).returncode == 0
    resumed = load_record(next(out.glob("*/*/*/record.json")))
    straight = run("bc", "hopper-random-v0", RunOptions(seed=5, steps=2400, eval_every=1200, eval_episodes=2,
                                                      out=tmp_path / "s", progress=False, tensorboard=False))
    assert resumed.status == "ok" and resumed.run_id == rec.run_id
    assert _returns(resumed) == _returns(straight)


@pytest.fixture
def nan_method():
    spec = methods.MethodSpec(
        "nan-test",
        "tests.suite.dummy_agents:NaNAgent",
        "tests.suite.dummy_agents:NaNAgentConfig",
        ("offline-rl",),
        "test agent whose loss turns NaN",
    )
    methods.register(spec)
    yield spec
    methods.registry.unregister("nan-test")


def test_divergence_is_recorded_never_scored(hopper_random_built, tmp_path, nan_method):
    rec = run(
        "nan-test",
        "hopper-random-v0",
        RunOptions(
            seed=0,
            out=tmp_path,
            steps=1000,
            eval_every=100,
            eval_episodes=2,
            log_every=100,
            progress=False,
            tensorboard=False,
        ),
    )
    assert rec.status == "diverged" and rec.steps <= 200
    assert rec.final_score is None and rec.best_score is None
    on_disk = load_record(next(tmp_path.rglob("record.json")))
    assert on_disk.status == "diverged"
    from suite.leaderboard import table_rows

    rows = table_rows([on_disk])
    assert rows[0]["n"] == 0 and rows[0]["excluded"] == 1


def test_cli_user_errors_exit_2(hopper_random_built, tmp_path, capsys):
    assert main(["run", "bc", "hoper-random", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "did you mean 'hopper-random'" in err and "Traceback" not in err
    assert main(["run", "bcc", "hopper-random-v0", "--out", str(tmp_path)]) == 2
    assert "did you mean 'bc'" in capsys.readouterr().err
    assert main(["run", "bc", "hopper-random-v0", "--set", "no_such_key=1", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "unknown config key 'no_such_key'" in err and "batch_size" in err
    assert main(["run", "bc", "hopper-random-v0", "--set", "batch_size=abc", "--out", str(tmp_path)]) == 2
    assert main(["run", "bc", "walker2d-random", "--out", str(tmp_path)]) == 2
    assert "python -m suite data build walker2d-random" in capsys.readouterr().err


def test_cli_subprocess_unknown_task():
    p = subprocess.run([sys.executable, "-m", "suite", "run", "bc", "hoper-random"], capture_output=True, text=True)
    assert p.returncode == 2 and "did you mean 'hopper-random'" in p.stderr and "Traceback" not in p.stderr


def test_cli_run_and_table(hopper_random_built, tmp_path, capsys):
    for seed in (0, 1):
        assert (
            main(
                [
                    "run",
                    "bc",
                    "hopper-random-v0",
                    "--seed",
                    str(seed),
                    "--steps",
                    "100",
                    "--eval-every",
                    "100",
                    "--eval-episodes",
                    "2",
                    "--out",
                    str(tmp_path),
                    "--no-progress",
                ]
            )
            == 0
        )
    capsys.readouterr()
    assert main(["table", "--runs", str(tmp_path), "--no-published"]) == 0
    out = capsys.readouterr().out
    assert "| bc | hopper-random-v0 | final_score |" in out and "| 2† | 0 |" in out  # 2 seeds: marked as fewer than 3
    assert main(["table", "--runs", str(tmp_path), "--no-published", "--seeds-wanted", "5"]) == 0
    assert "| 2/5† | 0 |" in capsys.readouterr().out  # a grid of 5 seeds per cell: 2 of them finished
    assert main(["table", "--runs", str(tmp_path), "--no-published", "--seeds-wanted", "2"]) == 0
    out = capsys.readouterr().out
    assert "| 2† | 0 |" in out and "2/2" not in out  # as many as wanted: no fraction
    assert main(["table", "--runs", str(tmp_path), "--seeds-wanted", "0"]) == 2  # a usage error
    assert "--seeds-wanted must be a positive" in capsys.readouterr().err
    site = tmp_path / "site"  # the site shows the same counts as the table
    assert main(["site", "--runs", str(tmp_path), "--out", str(site), "--seeds-wanted", "5"]) == 0
    assert "<td>2/5†</td>" in (site / "suite.html").read_text()
    assert main(["site", "--runs", str(tmp_path), "--out", str(site)]) == 0  # built inside the runs folder again
    assert "<td>2†</td>" in (site / "suite.html").read_text() and "/5" not in (site / "suite.html").read_text()
    assert main(["ls", "tasks"]) == 0 and "hopper-random-v0" in capsys.readouterr().out


def test_validate_flags_bad_records(hopper_random_built, tmp_path):
    import dataclasses

    from suite.validate import problems

    rec = run(
        "bc",
        "hopper-random-v0",
        RunOptions(seed=0, out=tmp_path, steps=50, eval_every=50, eval_episodes=1, progress=False, tensorboard=False),
    )
    assert [p for p in problems(rec) if "dirty" not in p] == []
    stored = RunRecord.from_dict(json.loads(json.dumps(rec.to_dict())))  # as read back from record.json
    assert [p for p in problems(stored) if "dirty" not in p] == []
    changed = dataclasses.replace(rec, task_spec={**rec.task_spec, "eval_episodes": 99})
    assert any("differs from the recorded one" in p for p in problems(changed))
    assert any(
        "dataset" in p
        for p in problems(dataclasses.replace(rec, provenance={**rec.provenance, "dataset_checksum": "0" * 64}))
    )
    assert any("status" in p for p in problems(dataclasses.replace(rec, status="diverged")))


def test_published_rows_follow_the_measured_datasets():
    from suite.leaderboard import related_published, task_family_name

    assert task_family_name("d4rl/hopper-medium-v2") == "hopper-medium" == task_family_name("hopper-medium-v0")
    assert task_family_name("minari/mujoco/hopper/medium-v0") == "hopper-medium"
    entries = [{"task": "d4rl/hopper-medium-v2"}, {"task": "d4rl/walker2d-medium-v2"},
               {"task": "hopper-medium-replay-v0"}]
    assert related_published(entries, ["hopper-medium-v0"]) == entries[:1]
    assert related_published(entries, []) == entries
