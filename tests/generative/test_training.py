import json

import pytest
import torch

from generative.models import NoisePredictionScoreModel, UNet
from generative.training import (
    EMA,
    DSMConfig,
    ScoreTrainer,
    build_score_model,
    build_sde,
    dsm_loss,
    load_score_model,
    sidecar_path,
)


def _toy_data(n=512, seed=0):
    g = torch.Generator().manual_seed(seed)
    centers = torch.tensor([[1.0, 1.0], [-1.0, -1.0]])
    return centers[torch.randint(0, 2, (n,), generator=g)] + 0.1 * torch.randn(n, 2, generator=g)


def _mlp_model(sde, seed=0):
    torch.manual_seed(seed)
    return build_score_model({"net": "mlp", "net_kwargs": {"dim": 2, "hidden": 64, "n_layers": 2}}, sde)


def _tiny_unet_spec():
    return {"net": "unet", "net_kwargs": {"image_size": 8, "ch": 8, "ch_mult": [1, 2], "num_res_blocks": 1,
                                          "attn_resolutions": [4], "dropout": 0.1}}


def test_dsm_loss_is_eps_mse_and_likelihood_weighting():
    sde = build_sde("vpsde")
    torch.manual_seed(0)
    net = UNet(image_size=8, ch=8, ch_mult=(1,), num_res_blocks=1, attn_resolutions=(), dropout=0.0)
    model = NoisePredictionScoreModel(net,
                                      sde)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    x0 = torch.rand(6, 1, 8, 8) * 2 - 1
    loss = dsm_loss(model, sde, x0, torch.Generator().manual_seed(3))
    # same draws, computed directly: t first, then z
    g = torch.Generator().manual_seed(3)
    t = torch.rand(6, generator=g) * (sde.T - sde.eps) + sde.eps
    z = torch.randn(x0.shape, generator=g)
    xt = sde.mean_coef(t).reshape(-1, 1, 1, 1) * x0 + sde.std(t).reshape(-1, 1, 1, 1) * z
    eps_hat = model.noise_prediction(xt, t)
    torch.testing.assert_close(loss, (eps_hat - z).square().sum((1, 2, 3)).mean(), rtol=1e-5, atol=1e-5)
    lw = dsm_loss(model, sde, x0, torch.Generator().manual_seed(3), likelihood_weighting=True, reduce_mean=True)
    g2_over_s2 = sde.diffusion(t) ** 2 / sde.std(t) ** 2
    expected = ((eps_hat - z).square().mean((1, 2, 3)) * g2_over_s2).mean()
    torch.testing.assert_close(lw, expected, rtol=1e-4, atol=1e-4)


def test_dsm_loss_decreases_on_toy_set():
    sde = build_sde("vpsde")
    trainer = ScoreTrainer(_mlp_model(sde), sde, DSMConfig(batch_size=128, lr=2e-3, warmup=20), seed=0)
    data = _toy_data()

    def eval_loss():
        g = torch.Generator().manual_seed(123)
        with torch.no_grad():
            return sum(float(dsm_loss(trainer.model, sde, data, g)) for _ in range(5)) / 5

    before = eval_loss()
    losses = []
    trainer.train(data, 300, callback=lambda step, total, m: losses.append(m["loss"]), log_every=10)
    after = eval_loss()
    assert len(losses) == 30 and trainer.step == 300
    assert after < 0.6 * before, (before, after)


def test_ema_matches_direct_computation():
    torch.manual_seed(0)
    lin = torch.nn.Linear(3, 2)
    ema = EMA(lin, rate=0.9, ramp=True)
    shadow = {k: p.detach().clone() for k, p in lin.named_parameters()}
    for n in range(1, 30):
        with torch.no_grad():
            for p in lin.parameters():
                p.add_(torch.randn_like(p))
        ema.update(lin)
        d = min(0.9, (1 + n) / (10 + n))
        for k, p in lin.named_parameters():
            shadow[k] = d * shadow[k] + (1 - d) * p.detach()
    for k in shadow:
        torch.testing.assert_close(ema.shadow[k], shadow[k])
    plain = EMA(lin, rate=0.5, ramp=False)
    before = {k: v.clone() for k, v in plain.shadow.items()}
    with torch.no_grad():
        lin.weight.add_(1.0)
    plain.update(lin)
    torch.testing.assert_close(plain.shadow["weight"], 0.5 * before["weight"] + 0.5 * lin.weight.detach())
    target = torch.nn.Linear(3, 2)
    ema.copy_to(target)
    torch.testing.assert_close(target.weight, ema.shadow["weight"])


def test_checkpoint_round_trip_gives_identical_outputs(tmp_path):
    sde = build_sde("vesde", sigma_max=20.0)
    torch.manual_seed(0)
    spec = _tiny_unet_spec()
    trainer = ScoreTrainer(build_score_model(spec, sde), sde, DSMConfig(batch_size=8, warmup=2), seed=1)
    data = torch.rand(32, 1, 8, 8) * 2 - 1
    trainer.train(data, 3)
    path = trainer.save(tmp_path / "ck.safetensors",
                        {"model": spec, "sde": {"name": "vesde", "kwargs": {"sigma_max": 20.0}}})
    meta = json.loads(sidecar_path(path).read_text())
    assert meta["step"] == 3 and meta["training"]["batch_size"] == 8 and meta["seed"] == 1
    x, t = torch.randn(4, 1, 8, 8), torch.rand(4)
    for ema in (True, False):
        loaded, _ = load_score_model(path, ema=ema)
        reference = trainer.ema_model() if ema else trainer.model.eval()
        with torch.no_grad():
            assert torch.equal(loaded(x, t), reference(x, t))
    assert loaded.sde.sigma_max == 20.0


def test_resume_gives_identical_weights(tmp_path):
    sde = build_sde("vpsde")
    spec = _tiny_unet_spec()  # dropout 0.1: resumed dropout masks must match too
    data = torch.rand(64, 1, 8, 8) * 2 - 1
    cfg = DSMConfig(batch_size=8, warmup=3)

    def fresh():
        torch.manual_seed(0)
        return ScoreTrainer(build_score_model(spec, sde), sde, cfg, seed=7)

    full = fresh()
    full.train(data, 6)

    first = fresh()
    first.train(data, 3, checkpoint_path=tmp_path / "ck.safetensors")
    second = fresh()
    second.load(tmp_path / "ck.safetensors")
    assert second.step == 3
    second.train(data, 6)

    for (k, a), (_, b) in zip(full.model.state_dict().items(), second.model.state_dict().items(), strict=True):
        assert torch.equal(a, b), k
    for k in full.ema.shadow:
        assert torch.equal(full.ema.shadow[k], second.ema.shadow[k]), k
    # and training did something
    assert not torch.equal(full.model.state_dict()["net.conv_out.weight"],
                           fresh().model.state_dict()["net.conv_out.weight"])


def test_load_score_model_needs_specs(tmp_path):
    sde = build_sde("vpsde")
    trainer = ScoreTrainer(_mlp_model(sde), sde, DSMConfig(batch_size=4), seed=0)
    path = trainer.save(tmp_path / "bare.safetensors")
    with pytest.raises(ValueError, match="model"):
        load_score_model(path)
