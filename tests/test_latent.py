"""Notebook 07's first stage: the KL autoencoder and the contrastive image-text model, their losses and runs."""

import dataclasses
import math

import pytest
import torch
from torch.distributions import Normal, kl_divergence

from dlib.checkpoint import _rebuild
from dlib.config import config_from_dict, config_to_dict
from dlib.losses import AutoencoderLoss, ContrastiveLoss, Shard
from dlib.nets import Autoencoder, AutoencoderConfig, ContrastiveModel, DiagonalGaussian, fit_scaling_factor
from dlib.recipes import RECIPES
from dlib.train import train

G = torch.Generator().manual_seed(0)


def test_kl_of_the_diagonal_gaussian_matches_torch_distributions():
    mean, logvar = torch.randn(3, 4, 7, 7, generator=G), torch.randn(3, 4, 7, 7, generator=G)
    q = DiagonalGaussian(mean, logvar)
    expected = kl_divergence(Normal(mean, (0.5 * logvar).exp()), Normal(0.0, 1.0)).flatten(1).sum(1)
    torch.testing.assert_close(q.kl(), expected)
    assert torch.equal(DiagonalGaussian(torch.zeros(2, 3), torch.zeros(2, 3)).kl(), torch.zeros(2))


def test_reparameterised_sample_has_the_posterior_moments_and_carries_gradients():
    mean = torch.full((20000, 1), 0.5, requires_grad=True)
    q = DiagonalGaussian(mean, torch.full((20000, 1), math.log(0.25)))
    z = q.sample(torch.Generator().manual_seed(1))
    assert abs(z.mean().item() - 0.5) < 0.01 and abs(z.std().item() - 0.5) < 0.01
    z.sum().backward()
    assert torch.equal(mean.grad, torch.ones_like(mean))  # dz/dmean = 1: the reparameterisation


@pytest.mark.parametrize("downsamplings,size", [(2, 28), (3, 32), (1, 28)])
def test_autoencoder_shapes(downsamplings, size):
    cfg = AutoencoderConfig(in_channels=1, latent_channels=3, width=8, downsamplings=downsamplings)
    ae = Autoencoder(cfg)
    x = torch.randn(2, 1, size, size, generator=G)
    x_rec, q = ae(x, lambda m: torch.zeros_like(m))
    assert x_rec.shape == x.shape and q.mean.shape == (2, *cfg.latent_shape(size))
    torch.testing.assert_close(x_rec, ae.decode(q.mean))  # zero noise decodes the mean
    torch.testing.assert_close(ae(x)[0], x_rec)  # no eps_of: the mean as well


def test_autoencoder_rejects_what_it_cannot_take():
    ae = Autoencoder(AutoencoderConfig(width=8))
    with pytest.raises(ValueError, match=r"shape \(B, 1, H, W\) with H and W divisible by 4"):
        ae.encode(torch.randn(2, 1, 21, 21))  # the study guide's 0.75 scale of a 28-pixel image
    with pytest.raises(ValueError, match=r"shape \(B, 1, H, W\)"):
        ae.encode(torch.randn(2, 3, 28, 28))
    with pytest.raises(ValueError, match=r"latents must have shape \(B, 4, h, w\)"):
        ae.decode(torch.randn(2, 3, 7, 7))
    with pytest.raises(ValueError, match="not divisible"):
        AutoencoderConfig().latent_shape(30)


def test_scaling_factor_gives_unit_variance_latents():
    ae = Autoencoder(AutoencoderConfig(width=8))
    x = torch.randn(64, 1, 28, 28, generator=G)
    factor = fit_scaling_factor(ae, x, batch_size=16)
    assert ae.scaling_factor.item() == pytest.approx(factor)
    assert (ae.encode(x).mean * factor).std().item() == pytest.approx(1.0, rel=1e-4)


def test_autoencoder_loss_is_reconstruction_plus_weighted_kl():
    ae = Autoencoder(AutoencoderConfig(width=8))
    x = torch.randn(4, 1, 28, 28, generator=G)
    for recon in ("l1", "mse"):
        loss = AutoencoderLoss(kl_weight=0.5, recon=recon)
        parts = loss.parts(ae, x, torch.Generator().manual_seed(3))
        total = loss(ae, x, torch.Generator().manual_seed(3))
        torch.testing.assert_close(total, (parts["recon"] + 0.5 * parts["kl"]).mean())
        z = ae.encode(x)
        eps = torch.randn(z.mean.shape, generator=torch.Generator().manual_seed(3))
        err = ae.decode(z.mean + z.std * eps) - x
        err = err.abs() if recon == "l1" else err**2
        torch.testing.assert_close(parts["recon"], err.flatten(1).mean(1))
        torch.testing.assert_close(parts["kl"], z.kl() / 784)
    with pytest.raises(ValueError, match="recon 'l1' or 'mse'"):
        AutoencoderLoss(recon="bce")


def test_two_shards_draw_the_rows_of_the_one_process_noise():
    ae = Autoencoder(AutoencoderConfig(width=8))
    x = torch.randn(4, 1, 28, 28, generator=G)
    whole = AutoencoderLoss(shard=Shard()).parts(ae, x, torch.Generator().manual_seed(5))["recon"]
    halves = [
        AutoencoderLoss(shard=Shard(r, 2)).parts(ae, x[2 * r : 2 * r + 2], torch.Generator().manual_seed(5))
        for r in (0, 1)
    ]
    torch.testing.assert_close(torch.cat([h["recon"] for h in halves]), whole)


def test_contrastive_model_gives_scaled_cosines_and_checks_its_inputs():
    model = ContrastiveModel(width=8, embed_dim=16)
    x, s = torch.randn(3, 1, 28, 28, generator=G), torch.randn(5, 384, generator=G)
    logits = model(x, s)
    assert logits.shape == (3, 5)
    cos = model.image_embedding(x) @ model.text_embedding(s).T
    torch.testing.assert_close(logits, cos / 0.07)
    assert torch.allclose(model.image_embedding(x).norm(dim=1), torch.ones(3))
    with pytest.raises(ValueError, match=r"expects images \(B, 1, 28, 28\)"):
        model.image_embedding(torch.randn(3, 1, 32, 32))
    with pytest.raises(ValueError, match=r"pooled sentence vectors \(B, 384\)"):
        model.text_embedding(torch.randn(3, 7, 384))


class FixedLogits(torch.nn.Module):
    def __init__(self, logits):
        super().__init__()
        self.logits = logits

    def forward(self, x, sentences):
        return self.logits


def test_contrastive_loss_counts_repeated_captions_as_positives():
    loss = ContrastiveLoss(max_shift=0)
    x, s = torch.zeros(3, 1, 4, 4), torch.zeros(3, 384)
    logits = torch.tensor([[5.0, 6.0, -5.0], [6.0, 5.0, -5.0], [-5.0, -5.0, 5.0]])
    # images 0 and 1 carry the same caption: matching each to the other's copy of it is not a mistake
    same = loss(FixedLogits(logits), x, sentences=s, caption_id=torch.tensor([0, 0, 1]))
    distinct = loss(FixedLogits(logits), x, sentences=s, caption_id=torch.tensor([0, 1, 2]))
    assert same < distinct
    uniform = loss(FixedLogits(torch.zeros(3, 3)), x, sentences=s, caption_id=torch.tensor([0, 1, 2]))
    torch.testing.assert_close(uniform, torch.tensor(math.log(3)))  # chance level
    with pytest.raises(TypeError, match="needs sentences"):
        loss(FixedLogits(logits), x)


@pytest.mark.parametrize("name", ["ae-tiny", "clip-tiny"])
def test_tiny_runs_learn_resume_exactly_and_rebuild_from_their_card(name, tmp_path):
    cfg = dataclasses.replace(RECIPES[name], steps=6, ckpt_every=3, log_every=3, out_dir=str(tmp_path / "a"))
    whole = train(cfg, progress=False)
    split = dataclasses.replace(cfg, out_dir=str(tmp_path / "b"))
    train(split, stop_after=3, progress=False)
    resumed = train(split, progress=False)
    for (key, a), b in zip(whole["model"].state_dict().items(), resumed["model"].state_dict().values(), strict=True):
        assert torch.equal(a, b), key
    log = whole["card"]["loss_log"]
    assert log[-1][1] < log[0][1]
    model, sched = _rebuild(whole["card"], whole["ema"].state_dict(), name)
    assert sched is None and type(model) is type(whole["model"])
    assert config_from_dict(config_to_dict(cfg)) == cfg


def test_latent_diffusion_trains_on_scaled_posterior_draws_and_resumes_exactly(tmp_path, monkeypatch):
    from dlib import checkpoint
    from dlib.nets import UNetConfig
    from dlib.train.latents import LatentData

    torch.manual_seed(0)
    ae = Autoencoder(AutoencoderConfig(width=8))
    ae.scaling_factor.fill_(2.0)
    monkeypatch.setattr(checkpoint, "load_pretrained", lambda name, device="cpu": (ae, None, {}))
    unet = UNetConfig(in_channels=4, base_channels=16, channel_mults=(1,), num_res_blocks=1, attention_levels=(0,))
    cfg = dataclasses.replace(
        RECIPES["mnist-tiny"], latent_of="some-ae", unet=unet, steps=4, ckpt_every=2, out_dir=str(tmp_path / "a")
    )
    whole = train(cfg, progress=False)
    assert whole["card"]["image_shape"] == [4, 7, 7]
    split = dataclasses.replace(cfg, out_dir=str(tmp_path / "b"))
    train(split, stop_after=2, progress=False)
    resumed = train(split, progress=False)
    for (key, a), b in zip(whole["model"].state_dict().items(), resumed["model"].state_dict().values(), strict=True):
        assert torch.equal(a, b), key
    # the draws: scaling_factor * (mean + std * eps), the rows of one process's share under a shard
    images = torch.randn(6, 1, 28, 28, generator=G)
    data = LatentData(ae, images, batch_size=4)
    q = ae.encode(images)
    idx = torch.tensor([5, 0, 2, 2])
    z = data.sample(idx, torch.Generator().manual_seed(1), Shard())
    eps = torch.randn((4, 4, 7, 7), generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(z, 2.0 * (q.mean[idx] + q.std[idx] * eps), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(data.sample(idx, torch.Generator().manual_seed(1), Shard(1, 2)), z[2:])
    with pytest.raises(ValueError, match="latents of some-ae have 4 channels but unet.in_channels is 1"):
        train(dataclasses.replace(cfg, unet=UNetConfig(), out_dir=str(tmp_path / "c")), progress=False)
    with pytest.raises(ValueError, match="latent_of needs kind 'diffusion' on images"):
        dataclasses.replace(cfg, kind="classifier")
