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
    assert main(["run", "pc", "hopper-random", "--out", str(tmp_path)]) == 2
    assert "generation tasks" in capsys.readouterr().err
    assert main(["run", "em", "gmm-2d", "--sde", "vpp", "--out", str(tmp_path)]) == 2
    assert "unknown sde 'vpp'" in capsys.readouterr().err
