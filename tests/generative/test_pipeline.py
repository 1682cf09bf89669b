import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from generative.datasets import ImageDataset, load_image_dataset
from generative.pipeline import (
    ScoreSDEConfig,
    reference_baselines,
    sample_and_evaluate,
    train_score_model,
)

TINY = ScoreSDEConfig(ch=8, n_steps=4, batch_size=16, warmup=2, checkpoint_every=2, classifier_epochs=1)


@pytest.fixture(scope="module")
def small_digits():
    d = load_image_dataset("digits-8x8", "train")
    return ImageDataset("digits-8x8", "train", d.x[:300], d.y[:300])


def test_config_json_round_trip_and_spec():
    cfg = ScoreSDEConfig(sde_kwargs={"sigma_max": 20.0})
    again = ScoreSDEConfig.from_json(json.loads(json.dumps(cfg.to_json())))
    assert again == cfg
    spec = cfg.model_spec((1, 8, 8))
    assert spec["net"] == "unet" and spec["net_kwargs"]["image_size"] == 8 and spec["shape"] == [1, 8, 8]
    with pytest.raises(ValueError, match="unknown ScoreSDEConfig fields"):
        ScoreSDEConfig.from_json({"chanels": 3})


def test_train_sample_evaluate_end_to_end(tmp_path, small_digits):
    events = []
    ck = train_score_model("digits-8x8", "vpsde", TINY, seed=0, out_dir=tmp_path, data=small_digits,
                           callback=lambda *e: events.append(e))
    assert ck.exists() and ck.with_suffix(".json").exists()
    meta = json.loads(ck.with_suffix(".json").read_text())
    assert meta["step"] == 4 and meta["dataset"] == "digits-8x8" and meta["sde"]["name"] == "vpsde"
    assert meta["config"] == TINY.to_json() and meta["train_wall_time_s"] > 0
    assert [e[:3] for e in events] == [("train", s, 4) for s in range(1, 5)]

    r = sample_and_evaluate(ck, "pc", n_samples=40, seed=0, n_steps=3, batch_size=25, data=small_digits)
    assert r["nfe"] == 6  # 3 steps × (predictor + corrector)
    assert r["n_samples"] == 40 and r["nonfinite_fraction"] == 0.0 and r["sample_wall_time_s"] > 0
    for key in ("fd-lenet", "kid", "kid_std"):
        assert isinstance(r[key], float) and r[key] == r[key]
    assert Image.open(r["grid_png"]).size == (4 * (10 * 9 + 1), 4 * (4 * 9 + 1))
    clf = tmp_path / "classifier-digits-8x8.safetensors"
    assert clf.exists()
    # the cached classifier is reused: same samples → same numbers; different seed → different samples
    before = load_file(str(clf))
    again = sample_and_evaluate(ck, "pc", n_samples=40, seed=0, n_steps=3, batch_size=25, data=small_digits)
    assert again["fd-lenet"] == r["fd-lenet"]
    assert all(torch.equal(before[k], v) for k, v in load_file(str(clf)).items())
    other = sample_and_evaluate(ck, "euler_maruyama", n_samples=40, seed=1, n_steps=3, data=small_digits)
    assert other["nfe"] == 3 and other["fd-lenet"] != r["fd-lenet"]
    with pytest.raises(ValueError, match="unknown sampler"):
        sample_and_evaluate(ck, "heun", n_samples=4, data=small_digits)


def test_pipeline_resume_equals_uninterrupted(tmp_path, small_digits):
    full = train_score_model("digits-8x8", "vesde", TINY, seed=3, out_dir=tmp_path / "a", data=small_digits)
    half = replace(TINY, n_steps=2)
    train_score_model("digits-8x8", "vesde", half, seed=3, out_dir=tmp_path / "b", data=small_digits)
    resumed = train_score_model("digits-8x8", "vesde", TINY, seed=3, out_dir=tmp_path / "b", data=small_digits)
    a, b = load_file(str(full)), load_file(str(resumed))
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    with pytest.raises(ValueError, match="different config"):
        train_score_model("digits-8x8", "vesde", replace(TINY, lr=1e-4), seed=3, out_dir=tmp_path / "b",
                          data=small_digits)


def test_reference_baselines(tmp_path, small_digits):
    cfg_out = tmp_path
    res = reference_baselines("digits-8x8", cfg_out, n_samples=100, data=small_digits)
    assert set(res) == {"noise", "fitted_gaussian"}
    assert res["noise"]["fd-lenet"] > res["fitted_gaussian"]["fd-lenet"] > 0
    assert Path(cfg_out / "digits-8x8-fitted-gaussian.png").exists()
