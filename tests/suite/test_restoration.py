"""Restoration tasks and runs through the suite: versioned ids, deterministic test images, one command from
task id to record (a tiny model on 8x8 digits, cached by content hash), the human summary, bad input."""

from __future__ import annotations

import pytest
import torch

from suite.cli import main
from suite.results import iter_records
from suite.runner import RunOptions, run
from suite.tasks import get_task
from suite.tasks.restoration import restoration_spec

TINY = {"train_steps": "150", "n_test": "40", "ch": "8"}


def test_restoration_tasks_are_registered_typed_and_versioned():
    t = get_task("mnist-denoise50-v0")
    rs = restoration_spec(t)
    assert t.kind == "restoration" and t.version == 0
    assert (rs.dataset, rs.degradation, dict(rs.params)) == ("mnist", "noise", {"sigma": 50.0})
    for tid in ("mnist-inpaint-v0", "mnist-jpeg10-v0", "mnist-sr4-v0", "mnist-low-light-v0",
                "mnist-motion-blur-v0", "mnist-blur-v0", "mnist-denoise25-v0", "digits-8x8-denoise50-v0",
                "cifar10-jpeg-denoise50-v0"):
        assert restoration_spec(get_task(tid)).build_degradation() is not None
    with pytest.raises(Exception, match="mnist-denoise50"):
        get_task("mnist-denoise-50-v0")


def test_test_images_are_deterministic():
    from suite.restoration import test_images

    rs = restoration_spec(get_task("digits-8x8-denoise50-v0"))
    i1, c1, m1 = test_images(rs, 20)
    i2, c2, m2 = test_images(rs, 20)
    assert torch.equal(i1, i2) and torch.equal(m1, m2) and not torch.equal(m1, c1)


def test_mrs_run_records_and_reuses_the_cached_model(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SUITE_CACHE", str(tmp_path / "cache"))
    rec = run("mrs", "digits-8x8-denoise50-v0", RunOptions(seed=0, out=tmp_path, progress=False,
                                                            overrides={**TINY, "nfe": "4"}))
    assert rec.status == "ok" and rec.metrics["nfe"] == 4 and rec.metrics["n_test"] == 40
    assert {"psnr", "psnr_degraded", "sample_wall_time_s"} <= set(rec.metrics)
    models = list((tmp_path / "cache" / "mr_models").glob("*[0-9a-f].safetensors"))
    assert len(models) == 1
    mtime = models[0].stat().st_mtime_ns
    # the same model serves another sampler (and a rerun gives the same numbers)
    again = run("mrs", "digits-8x8-denoise50-v0", RunOptions(seed=0, out=tmp_path, progress=False,
                                                              overrides={**TINY, "nfe": "4"}))
    assert again.metrics["psnr"] == rec.metrics["psnr"]
    post = run("ir-posterior", "digits-8x8-denoise50-v0", RunOptions(seed=0, out=tmp_path, progress=False,
                                                                      overrides={**TINY, "nfe": "4"}))
    assert post.status == "ok" and post.metrics["nfe"] == 4
    assert models[0].stat().st_mtime_ns == mtime and len(iter_records(tmp_path)) == 3
    # one command, one human line
    code = main(["run", "mrs", "digits-8x8-denoise50-v0", "--nfe", "4", "--out", str(tmp_path), "--no-progress",
                 *[a for k, v in TINY.items() for a in ("--set", f"{k}={v}")]])
    out = capsys.readouterr().out
    assert code in (0, None) and "psnr =" in out and "higher is better" in out and "NFE 4" in out


def test_restoration_methods_refuse_other_tasks_and_bad_options(tmp_path, capsys):
    code = main(["run", "mrs", "gmm-2d", "--out", str(tmp_path)])
    assert code not in (0, None) and "restoration" in capsys.readouterr().err
    code = main(["run", "mrs", "digits-8x8-denoise50-v0", "--out", str(tmp_path), "--set", "solver=rk4",
                 "--set", "train_steps=5", "--set", "n_test=4", "--no-progress"])
    assert code not in (0, None) and "solver" in capsys.readouterr().err


@pytest.mark.slow  # ~18 s under load: trains a tiny model and runs every variant
def test_mrs_study_writes_rows_resumes_and_summarises(tmp_path, monkeypatch):
    from suite.study_mrs import run_study

    monkeypatch.setenv("SUITE_CACHE", str(tmp_path / "cache"))
    kw = dict(tasks=("digits-8x8-denoise50-v0",), nfes=(3,), baseline_nfes=(3, 100), n_test=24, train_steps=150,
              variants=("mrs-sde-1", "posterior", "posterior-official"), log=lambda *_: None)
    res = run_study(tmp_path / "study", **kw)
    got = {(r["variant"], r["nfe"]) for r in res["rows"]}
    assert got == {("mrs-sde-1", 3), ("posterior", 3), ("posterior", 100), ("posterior-official", 3),
                   ("posterior-official", 100)}
    assert all(r["status"] == "ok" and "psnr" in r for r in res["rows"])
    sp = res["summary"]["speedup"]["digits-8x8-denoise50-v0"]
    assert set(sp) == {"posterior", "posterior-official"} and sp["posterior"]["target_psnr"] > 0
    assert (tmp_path / "study" / "mrs_study.png").exists()
    again = run_study(tmp_path / "study", resume=True, **kw)  # nothing left to run: the same rows
    assert again["rows"] == res["rows"]
