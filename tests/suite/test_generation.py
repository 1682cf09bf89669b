"""Sampling-only generative runs through the suite on the analytic mixture (exact score, no network)."""

import pytest
import torch

from suite.cli import main
from suite.generation import SamplerConfig, analytic_metrics, sample
from suite.results import iter_records
from suite.runner import RunOptions, run


def test_em_error_falls_with_nfe_and_records(tmp_path):
    vals = {}
    for nfe in (2, 20):
        rec = run("em", "gmm-2d", RunOptions(seed=0, out=tmp_path, overrides={"nfe": str(nfe), "n_samples": "1500"}))
        assert rec.status == "ok" and rec.metrics["nfe"] == nfe and rec.metrics["sample_wall_time_s"] > 0
        vals[nfe] = rec.metrics["w2_moments"]
    assert vals[20] < 0.5 * vals[2]
    assert len(iter_records(tmp_path)) == 2


def test_samples_depend_only_on_their_seed():
    from generative import analytic as A
    from generative.sdes import VPSDE

    mix = A.ring_gmm_2d()
    sde = VPSDE()
    cfg = SamplerConfig(nfe=10)
    seeds = torch.arange(6) + 17
    whole = sample("em", cfg, mix.score_fn(sde), sde, (6, 2), seeds).x
    alone = torch.cat([sample("em", cfg, mix.score_fn(sde), sde, (1, 2), seeds[i : i + 1]).x for i in range(6)])
    torch.testing.assert_close(whole, alone, rtol=0, atol=0)


def test_exact_samples_have_near_zero_error():
    from generative import analytic as A

    mix = A.ring_gmm_2d()
    x = mix.sample(3000, torch.Generator().manual_seed(0))
    m = analytic_metrics(x, mix)
    assert abs(m["mmd2"]) < 2e-3 and m["w2_moments"] < 0.1 and m["nll"] == pytest.approx(m["nll_data"], abs=0.1)


def test_cli_generation_errors(tmp_path, capsys):
    assert main(["run", "pc", "hopper-random-v0", "--out", str(tmp_path)]) == 2
    assert "generation tasks" in capsys.readouterr().err
    assert main(["run", "em", "gmm-2d", "--sde", "vpp", "--out", str(tmp_path)]) == 2
    assert "unknown sde 'vpp'" in capsys.readouterr().err


def test_dmcmc_run_records_nfe_parts_and_device(tmp_path):
    rec = run("dmcmc", "gmm-2d", RunOptions(seed=0, out=tmp_path, overrides={
        "nfe": "20", "integrator": "em", "skp": "4", "n_samples": "400", "n_rounds": "2"}))
    assert rec.status == "ok"
    m = rec.metrics
    assert m["nfe"] == 20 and m["integrator_nfe"] == 15 and m["classifier_calls_per_sample"] == 4
    assert m["burn_in_nfe_per_chain"] > 0 and m["chains"] == 200
    assert rec.provenance["device"] == "cpu" and rec.config["integrator"] == "em"
    (path, loaded), = iter_records(tmp_path)
    assert loaded.metrics == rec.metrics and path.name == "record.json"


def test_exact_dmcmc_beats_its_prior_draw_and_karras_alone_at_low_nfe(tmp_path):
    opts = {"nfe": "10", "n_samples": "1000"}
    dl = run("dmcmc", "gmm-2d", RunOptions(seed=1, out=tmp_path, overrides={**opts, "integrator": "karras-heun"}))
    alone = run("karras-heun", "gmm-2d", RunOptions(seed=1, out=tmp_path, overrides=opts))
    # at ~10 NFE the chain has already found the modes; 3 Karras levels from sigma_max have not
    assert dl.metrics["mmd2"] < 0.5 * alone.metrics["mmd2"], (dl.metrics, alone.metrics)


def test_cli_generation_options_are_checked(tmp_path, capsys):
    for args, msg in [
        (["run", "em", "gmm-2d", "--nfe", "0"], "nfe must be positive"),
        (["run", "dmcmc", "gmm-2d", "--integrator", "rk9"], "unknown integrator 'rk9'"),
        (["run", "dmcmc", "gmm-2d", "--sde", "vp"], "VE grid"),
        (["run", "dmcmc", "gmm-2d", "--nfe", "5"], "no evaluations for the integrator"),
        (["run", "ode", "gmm-2d", "--set", "rtol=-1"], "rtol must be positive"),
        (["run", "em", "gmm-2d", "--device", "tpu"], "device 'tpu'"),
        (["run", "karras-huen", "gmm-2d"], "karras-heun"),
    ]:
        assert main([*args, "--out", str(tmp_path)]) == 2, args
        assert msg in capsys.readouterr().err, args
    assert not list(tmp_path.rglob("record.json"))  # refused at the door: nothing half-run


def test_long_generative_job_prints_its_cost(tmp_path, capsys):
    assert main(["run", "em", "gmm-2d", "--nfe", "6000", "--set", "n_samples=2", "--out", str(tmp_path)]) == 0
    err = capsys.readouterr().err
    assert "6000 score evaluations per sample x 2 samples" in err


def test_dmcmc_study_writes_rows_as_they_land_and_resumes(tmp_path):
    import json

    from suite.study_dmcmc import run_study

    out = tmp_path / "study"
    res = run_study(out, tasks=["gmm-2d"], nfes=[10], integrators=["em"], seeds=[0], log=lambda _: None)
    rows = res["rows"]
    assert [(r["variant"], r["nfe"]) for r in rows] == [("dmcmc", 10.0), ("alone", 10.0)]
    assert (out / "dmcmc_study.png").stat().st_size > 0
    assert json.loads((out / "dmcmc_study.json").read_text())["summary"][0]["n_seeds"] == 1
    again = run_study(out, tasks=["gmm-2d"], nfes=[10], integrators=["em"], seeds=[0], resume=True,
                      log=lambda _: None)
    assert again["rows"] == rows  # nothing rerun
