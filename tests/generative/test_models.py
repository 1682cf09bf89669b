import pytest
import torch

from generative.models import LeNetClassifier, MLPScoreNet, NoisePredictionScoreModel, UNet, build_net
from generative.sdes import VESDE, VPSDE


def _randomise_output_layer(net):
    # zero-initialised layers (output, residual branches, attention projections) make ε̂ = 0 and the
    # residual branches inert at init; give them weights so that conditioning shows
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in net.parameters():
            if torch.all(p == 0):
                p.copy_(torch.randn(p.shape, generator=g) * 0.1)


@pytest.mark.parametrize(
    "size,channels,ch_mult,attn",
    [(8, 1, (1, 2), (4,)), (28, 1, (1, 2, 2), (7,)), (32, 3, (1, 2, 2, 2), ()), (28, 1, (1, 2, 2, 2), ())],
)
def test_unet_shapes(size, channels, ch_mult, attn):
    torch.manual_seed(0)
    net = UNet(image_size=size, in_channels=channels, ch=8, ch_mult=ch_mult, num_res_blocks=1,
               attn_resolutions=attn)
    x = torch.randn(2, channels, size, size)
    out = net(x, torch.rand(2))
    assert out.shape == x.shape
    assert torch.all(out == 0)  # zero-initialised output convolution


@pytest.mark.parametrize("embedding", ["fourier", "positional"])
def test_unet_time_conditioning_and_per_sample_independence(embedding):
    torch.manual_seed(0)
    net = UNet(image_size=8, ch=16, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=(4,), embedding=embedding,
               dropout=0.0).eval()
    _randomise_output_layer(net)
    x = torch.randn(1, 1, 8, 8).expand(3, -1, -1, -1)
    labels = torch.tensor([-2.0, 0.5, 3.0]) if embedding == "fourier" else torch.tensor([10.0, 500.0, 990.0])
    with torch.no_grad():
        out = net(x, labels)
        # different labels on the same image give different outputs
        assert (out[0] - out[1]).abs().max() > 1e-4 and (out[1] - out[2]).abs().max() > 1e-4
        # each sample depends only on its own input and label (GroupNorm, no batch statistics)
        for i in range(3):
            torch.testing.assert_close(net(x[i:i + 1], labels[i:i + 1]), out[i:i + 1], atol=1e-5, rtol=1e-5)
        # a scalar label broadcasts over the batch
        torch.testing.assert_close(net(x, labels[1]), net(x, labels[1].expand(3)))


def test_mlp_shapes_and_conditioning():
    torch.manual_seed(0)
    net = MLPScoreNet(dim=5, hidden=32, n_layers=3)
    _randomise_output_layer(net)
    x = torch.randn(4, 5)
    a, b = net(x, torch.zeros(4)), net(x, torch.ones(4))
    assert a.shape == (4, 5)
    assert (a - b).abs().max() > 1e-4
    img = torch.randn(4, 1, 2, 2)  # flattened images: 4 elements per sample
    net4 = MLPScoreNet(dim=4, hidden=16)
    assert net4(img, torch.rand(4)).shape == img.shape


@pytest.mark.parametrize("sde", [VPSDE(), VESDE()])
@pytest.mark.parametrize("noise_label", ["log_sigma", "time"])
def test_noise_prediction_score_model(sde, noise_label):
    torch.manual_seed(0)
    seen = {}

    class Probe(torch.nn.Module):
        def forward(self, x, label):
            seen["x"], seen["label"] = x, label
            return torch.ones_like(x) * 0.5

    model = NoisePredictionScoreModel(Probe(), sde, noise_label=noise_label, input_scaling=True)
    x = torch.randn(3, 1, 4, 4)
    t = torch.tensor([0.01, 0.5, 1.0])
    m, s = sde.mean_coef(t), sde.std(t)
    score = model(x, t)
    # score = -ε̂ / std(t)
    torch.testing.assert_close(score, -0.5 / s.reshape(-1, 1, 1, 1) * torch.ones_like(x))
    torch.testing.assert_close(model.noise_prediction(x, t), 0.5 * torch.ones_like(x))
    expected_label = torch.log(s / m) if noise_label == "log_sigma" else 999 * t
    torch.testing.assert_close(seen["label"], expected_label)
    torch.testing.assert_close(seen["x"], x / torch.sqrt(m**2 * 0.25 + s**2).reshape(-1, 1, 1, 1))


def test_build_net_and_classifier():
    net = build_net("unet", image_size=8, ch=8, ch_mult=[1, 2], num_res_blocks=1, attn_resolutions=[4])
    assert isinstance(net, UNet)
    with pytest.raises(ValueError, match="unknown network"):
        build_net("transformer")
    clf = LeNetClassifier(in_channels=3, n_classes=10)
    for size in (8, 28, 32):
        x = torch.randn(2, 3, size, size)
        assert clf(x).shape == (2, 10)
        assert clf.features(x).shape == (2, clf.feature_dim)
