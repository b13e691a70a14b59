"""Notebook 07's second stage: the unCLIP prior and decoder, their conditions and data, and the text-to-image pipelines."""

import copy
import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F

from dlib import checkpoint
from dlib.batches import build_condition, load_training_data
from dlib.captions import AttributeScale, captions
from dlib.checkpoint import _rebuild
from dlib.conditioning import EmbeddingCondition
from dlib.config import (
    TrainConfig,
    build_model,
    config_from_dict,
    config_to_dict,
)
from dlib.losses import Shard
from dlib.nets import Autoencoder, AutoencoderConfig, EmbeddingPrior, PriorConfig, UNet, fit_scaling_factor
from dlib.pipelines import LatentPipeline, UnCLIPPipeline, decode_latents, sample_guided
from dlib.recipes import RECIPES
from dlib.schedules import get_schedule
from dlib.text import TextEncoder
from dlib.train import train

G = torch.Generator().manual_seed(0)
PROMPTS = ["a thick seven", "the number two"]


@pytest.fixture(scope="module")
def clip():
    return checkpoint.load_pretrained("mnist-clip")[0]


@pytest.fixture(scope="module")
def ae():
    return checkpoint.load_pretrained("mnist-ae")[0]


@pytest.fixture(scope="module")
def encoder():
    return TextEncoder()


@pytest.fixture(scope="module")
def images():
    x, y = load_training_data(dataclasses.replace(RECIPES["prior-tiny"], limit=64))
    return x, y


def _untrained(name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model(RECIPES[name]).eval()


# --- the prior network --------------------------------------------------------------------------------------


def test_prior_config_scales_unit_embeddings_to_unit_variance_and_checks_itself():
    assert PriorConfig(dim=128).data_scale == pytest.approx(math.sqrt(128))
    assert PriorConfig(dim=9).data_scale == 3.0
    for bad in (dict(dim=0), dict(width=0), dict(depth=0)):
        with pytest.raises(ValueError, match="positive dim, width and depth"):
            PriorConfig(**bad)


def test_prior_maps_embeddings_to_embeddings_and_without_context_is_the_null_prior():
    torch.manual_seed(0)
    prior = EmbeddingPrior(PriorConfig(dim=12, width=16, depth=2))
    with torch.no_grad():
        prior.null_context.normal_()  # a learned null that differs from a zero context
    x, t = torch.randn(5, 12, generator=G), torch.tensor([0.0, 10.5, 200.0, 999.0, 3.0])
    text = torch.randn(5, 1, 12, generator=G)
    out = prior(x, t, context=text, context_mask=torch.ones(5, 1, dtype=torch.bool))
    assert out.shape == (5, 12) and torch.isfinite(out).all()
    null = prior(x, t, **prior.null_text(5))
    torch.testing.assert_close(prior(x, t), null, rtol=0, atol=0)
    assert not torch.allclose(out, null)  # the text embedding is read
    assert not torch.allclose(null, prior(x, t, context=torch.zeros(5, 1, 12)))  # the null token is read


@pytest.mark.parametrize("length", [1, 3])
def test_prior_null_text_is_the_null_token_then_masked_padding(length):
    prior = EmbeddingPrior(PriorConfig(dim=6, width=8, depth=1))
    with torch.no_grad():
        prior.null_context.copy_(torch.arange(1.0, 7.0).view(1, 1, 6))
    null = prior.null_text(4, length)
    assert null["context"].shape == (4, length, 6) and null["context_mask"].shape == (4, length)
    assert null["context_mask"].dtype == torch.bool
    assert torch.equal(null["context"][:, 0], torch.arange(1.0, 7.0).expand(4, 6))
    assert torch.equal(null["context"][:, 1:], torch.zeros(4, length - 1, 6))
    expected_mask = torch.tensor([True] + [False] * (length - 1)).expand(4, length)
    assert torch.equal(null["context_mask"], expected_mask)
    assert prior.null_text(2)["context"].shape == (2, 1, 6)  # default: a one-token context
    null["context"].sum().backward()  # the null token is a learned parameter
    assert torch.equal(prior.null_context.grad, torch.full((1, 1, 6), 4.0))


def test_prior_residual_branches_start_at_zero():
    torch.manual_seed(0)
    prior = EmbeddingPrior(PriorConfig(dim=8, width=16, depth=3))
    assert len(prior.blocks) == 3
    h, emb = torch.randn(4, 16, generator=G), torch.randn(4, 16, generator=G)
    for block in prior.blocks:
        last = block.mlp[-1]
        assert torch.equal(last.weight, torch.zeros_like(last.weight))
        assert torch.equal(last.bias, torch.zeros_like(last.bias))
        assert torch.equal(block(h, emb), h)  # each block is the identity at initialisation
    first = prior.blocks[0].mlp[0]
    assert first.weight.abs().sum() > 0  # only the branch's output layer is zeroed
    out = prior(torch.randn(4, 8, generator=G), torch.zeros(4))
    assert out.abs().sum() > 0  # the output head is not zeroed: x_0-prediction starts from something


def test_prior_rejects_what_it_cannot_take():
    prior = EmbeddingPrior(PriorConfig(dim=8, width=16, depth=1))
    x, t = torch.randn(3, 8), torch.zeros(3)
    with pytest.raises(ValueError, match=r"x_t of shape \(B, 8\), got \(3, 9\)"):
        prior(torch.randn(3, 9), t)
    with pytest.raises(ValueError, match=r"x_t of shape \(B, 8\), got \(3, 1, 8\)"):
        prior(torch.randn(3, 1, 8), t)
    with pytest.raises(ValueError, match=r"context of shape \(3, L, 8\), got \(3, 8\)"):
        prior(x, t, context=torch.randn(3, 8))
    with pytest.raises(ValueError, match=r"context of shape \(3, L, 8\), got \(2, 1, 8\)"):
        prior(x, t, context=torch.randn(2, 1, 8))
    with pytest.raises(ValueError, match=r"context of shape \(3, L, 8\), got \(3, 1, 7\)"):
        prior(x, t, context=torch.randn(3, 1, 7))
    with pytest.raises(ValueError, match="not on labels y"):
        prior(x, t, y=torch.zeros(3, dtype=torch.long))


# --- conditions and data --------------------------------------------------------------------------------------


@pytest.mark.parametrize("p", [0.0, 0.5, 1.0])
def test_image_condition_is_each_images_embedding_or_the_null_token(p, clip, images):
    x_all, y_all = images
    decoder = UNet(RECIPES["unclip-decoder-tiny"].unet)
    with torch.no_grad():
        decoder.null_context.normal_()
    x, y = x_all[:16], y_all[:16]
    cond = EmbeddingCondition(clip, "image", p, "mnist", x_all, torch.device("cpu"))
    out = cond(decoder, x, y, torch.Generator().manual_seed(3))
    assert out["context"].shape == (16, 1, 128) and out["context_mask"].shape == (16, 1)
    assert out["context_mask"].all()  # one token, real either way (the null token is unmasked)
    drop = torch.rand(16, generator=torch.Generator().manual_seed(3)) < p  # the only draw: the dropout
    with torch.no_grad():
        e = clip.image_embedding(x)
    torch.testing.assert_close(out["context"][~drop, 0], e[~drop], rtol=0, atol=0)
    assert torch.equal(out["context"][drop], decoder.null_context.detach().expand(int(drop.sum()), 1, 128))
    is_null = (out["context"][:, 0] == decoder.null_context.detach()[0]).all(-1)
    assert int(is_null.sum()) == {0.0: 0, 1.0: 16}.get(p, int(drop.sum()))
    assert p != 0.5 or 0 < int(is_null.sum()) < 16


@pytest.mark.parametrize("p", [0.0, 0.5])
def test_text_condition_is_a_drawn_captions_unit_embedding(p, clip, encoder, images):
    x_all, y_all = images
    prior = EmbeddingPrior(PriorConfig(width=16, depth=1))
    with torch.no_grad():
        prior.null_context.normal_()
    x, y = x_all[:12], y_all[:12]
    cond = EmbeddingCondition(clip, "text", p, "mnist", x_all, torch.device("cpu"))
    out = cond(prior, x, y, torch.Generator().manual_seed(4))
    # the same draws by hand: captions first, then the dropout, from the one generator
    gen = torch.Generator().manual_seed(4)
    texts = captions(y, x, "mnist", AttributeScale.fit(x_all), gen)
    drop = torch.rand(12, generator=gen) < p
    with torch.no_grad():
        e = clip.text_embedding(encoder.sentences(texts))
    assert out["context"].shape == (12, 1, 128)
    kept = out["context"][~drop, 0]
    torch.testing.assert_close(kept, e[~drop], rtol=0, atol=0)
    torch.testing.assert_close(kept.norm(dim=-1), torch.ones(len(kept)))
    assert torch.equal(out["context"][drop], prior.null_context.detach().expand(int(drop.sum()), 1, 128))
    is_null = (out["context"][:, 0] == prior.null_context.detach()[0]).all(-1)
    assert torch.equal(is_null, drop) and (not is_null.any() if p == 0.0 else 0 < int(is_null.sum()) < 12)
    different = cond(prior, x, y, torch.Generator().manual_seed(5))["context"]
    assert not torch.equal(different, out["context"])  # the captions are drawn, not fixed


def test_embedding_condition_rejects_an_unknown_source(clip, images):
    with pytest.raises(ValueError, match="source must be 'image' or 'text', got 'caption'"):
        EmbeddingCondition(clip, "caption", 0.1, "mnist", images[0], torch.device("cpu"))


def test_build_condition_picks_the_embedding_source_and_needs_the_clip_model(clip, images):
    x_all = images[0]
    prior_cond = build_condition(RECIPES["prior-tiny"], x_all, torch.device("cpu"), clip=clip)
    decoder_cond = build_condition(RECIPES["unclip-decoder-tiny"], x_all, torch.device("cpu"), clip=clip)
    assert isinstance(prior_cond, EmbeddingCondition) and prior_cond.source == "text"
    assert isinstance(decoder_cond, EmbeddingCondition) and decoder_cond.source == "image"
    assert prior_cond.p_uncond == RECIPES["prior-tiny"].p_uncond
    with pytest.raises(ValueError, match="needs the contrastive model passed as clip"):
        build_condition(RECIPES["prior-tiny"], x_all, torch.device("cpu"))


def test_embedding_data_are_the_scaled_image_embeddings(clip, images):
    from dlib.train.latents import EmbeddingData

    x = images[0][:10]
    data = EmbeddingData(clip, x, scale=3.0, batch_size=4)  # batches of 4, 4, 2
    assert data.shape == (128,)
    idx = torch.tensor([9, 0, 4, 4])
    rows = data.sample(idx, torch.Generator().manual_seed(0), Shard())
    with torch.no_grad():
        expected = 3.0 * clip.image_embedding(x[idx])
    torch.testing.assert_close(rows, expected, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(rows.norm(dim=1), torch.full((4,), 3.0))
    assert torch.equal(data.sample(idx, torch.Generator().manual_seed(0), Shard(1, 2)), rows[2:])
    gen = torch.Generator().manual_seed(0)
    data.sample(idx, gen, Shard())
    assert torch.equal(gen.get_state(), torch.Generator().manual_seed(0).get_state())  # nothing is drawn


# --- configuration and training -------------------------------------------------------------------------------


def test_train_config_ties_embed_of_to_the_prior_and_the_decoder():
    with pytest.raises(ValueError, match="kind 'prior' needs embed_of"):
        TrainConfig(kind="prior")
    with pytest.raises(ValueError, match="embed_of needs kind 'diffusion' or 'prior'.*'classifier'"):
        TrainConfig(kind="classifier", embed_of="mnist-clip")
    with pytest.raises(ValueError, match="embed_of needs kind"):
        dataclasses.replace(RECIPES["prior-tiny"], kind="contrastive")
    TrainConfig(kind="prior", embed_of="mnist-clip")
    TrainConfig(kind="diffusion", embed_of="mnist-clip")
    for name in ("prior-tiny", "unclip-decoder-tiny", "latent-tiny", "fashion-unclip-prior"):
        cfg = RECIPES[name]
        assert config_from_dict(config_to_dict(cfg)) == cfg  # PriorConfig survives the card
    assert isinstance(build_model(RECIPES["prior-tiny"]), EmbeddingPrior)


@pytest.mark.parametrize("name", ["prior-tiny", "unclip-decoder-tiny"])
def test_unclip_stages_train_resume_exactly_and_rebuild_from_their_card(name, tmp_path):
    cfg = dataclasses.replace(RECIPES[name], steps=6, ckpt_every=3, log_every=3, out_dir=str(tmp_path / "a"))
    whole = train(cfg, progress=False)
    log = whole["card"]["loss_log"]
    assert [s for s, _ in log] == [3, 6] and all(math.isfinite(v) for _, v in log)
    split = dataclasses.replace(cfg, out_dir=str(tmp_path / "b"))
    train(split, stop_after=3, progress=False)
    resumed = train(split, progress=False)
    assert resumed["card"]["step"] == 6
    for key in ("ema", "model"):
        a, b = whole[key].state_dict(), resumed[key].state_dict()
        assert a.keys() == b.keys()
        for k in a:
            assert torch.equal(a[k], b[k]), (key, k)
    init = train(dataclasses.replace(cfg, out_dir=str(tmp_path / "c")), stop_after=0, progress=False)["ema"]
    assert any(not torch.equal(p, q) for p, q in zip(init.parameters(), whole["ema"].parameters(), strict=True))
    model, sched = _rebuild(whole["card"], whole["ema"].state_dict(), name)
    assert type(model) is type(whole["model"]) and sched is not None
    if name == "prior-tiny":
        assert isinstance(model, EmbeddingPrior) and "image_shape" not in whole["card"]
    else:
        assert whole["card"]["image_shape"] == [4, 7, 7]


def test_a_dimension_that_does_not_fit_the_contrastive_model_is_refused(tmp_path):
    prior = dataclasses.replace(
        RECIPES["prior-tiny"], prior=PriorConfig(dim=64, width=32, depth=1), out_dir=str(tmp_path)
    )
    with pytest.raises(ValueError, match=r"mnist-clip embeds into embed_dim = 128 dimensions, but prior\.dim is 64"):
        train(prior, progress=False)
    dec = RECIPES["unclip-decoder-tiny"]
    dec = dataclasses.replace(dec, unet=dataclasses.replace(dec.unet, context_dim=384), out_dir=str(tmp_path))
    with pytest.raises(
        ValueError, match=r"mnist-clip embeds into embed_dim = 128 dimensions, but unet\.context_dim is 384"
    ):
        train(dec, progress=False)
    assert not any(tmp_path.iterdir())  # refused before anything was written


# --- pipelines ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def latent_pipe(ae, encoder):
    return LatentPipeline(_untrained("latent-tiny"), get_schedule("linear", 1000), ae, encoder)


@pytest.fixture(scope="module")
def unclip_pipe(ae, clip, encoder):
    prior_cfg, dec_cfg = RECIPES["prior-tiny"], RECIPES["unclip-decoder-tiny"]
    return UnCLIPPipeline(
        _untrained("prior-tiny"), get_schedule(prior_cfg.schedule, prior_cfg.T), _untrained("unclip-decoder-tiny"),
        get_schedule(dec_cfg.schedule, dec_cfg.T), clip, ae, encoder, 28, prior_cfg.prediction, dec_cfg.prediction,
    )  # fmt: skip


@pytest.mark.parametrize("sampler", ["ddpm", "ddim", "dpm_solver"])
@pytest.mark.parametrize("kind", ["latent", "unclip"])
def test_pipelines_make_reproducible_images_in_range(kind, sampler, latent_pipe, unclip_pipe):
    pipe = latent_pipe if kind == "latent" else unclip_pipe
    x = pipe(PROMPTS, steps=4, sampler=sampler, generator=torch.Generator().manual_seed(0))
    assert x.shape == (2, 1, 28, 28) and torch.isfinite(x).all()
    assert x.min() >= -1 and x.max() <= 1
    again = pipe(PROMPTS, steps=4, sampler=sampler, generator=torch.Generator().manual_seed(0))
    assert torch.equal(x, again)
    other = pipe(PROMPTS, steps=4, sampler=sampler, generator=torch.Generator().manual_seed(1))
    assert not torch.equal(x, other)


def _randomised(net: torch.nn.Module) -> torch.nn.Module:
    """A copy with every weight perturbed: an untrained U-Net's zeroed output layer would hide its condition."""
    net = copy.deepcopy(net)
    gen = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.2 * torch.randn(p.shape, generator=gen))
    return net


@pytest.mark.parametrize("kind", ["latent", "unclip"])
def test_pipelines_follow_the_prompt_and_the_guidance_scale(kind, latent_pipe, unclip_pipe):
    if kind == "latent":
        pipe = dataclasses.replace(latent_pipe, unet=_randomised(latent_pipe.unet))
    else:
        pipe = dataclasses.replace(
            unclip_pipe, prior=_randomised(unclip_pipe.prior), decoder=_randomised(unclip_pipe.decoder)
        )

    def run(prompts, w=3.0):
        return pipe(prompts, w=w, steps=3, generator=torch.Generator().manual_seed(0))

    x = run(["a seven", "a seven"])
    assert not torch.allclose(run(["a seven", "a one"])[1], x[1], atol=1e-3)
    assert not torch.allclose(run(["a seven", "a seven"], w=0.0), x, atol=1e-3)


def test_unclip_stages_give_unit_embeddings_and_decode_them(unclip_pipe, clip, encoder):
    text = unclip_pipe.text_embeddings(PROMPTS)
    with torch.no_grad():
        torch.testing.assert_close(text, clip.text_embedding(encoder.sentences(PROMPTS)), rtol=0, atol=0)
    e = unclip_pipe.image_embeddings(PROMPTS, steps=3, generator=torch.Generator().manual_seed(0))
    assert e.shape == (2, 128)
    torch.testing.assert_close(e.norm(dim=-1), torch.ones(2))
    pipe = dataclasses.replace(unclip_pipe, decoder=_randomised(unclip_pipe.decoder))
    x = pipe.decode(e, steps=3, generator=torch.Generator().manual_seed(0))
    assert x.shape == (2, 1, 28, 28) and x.min() >= -1 and x.max() <= 1
    # the decoder normalises what it is given: a rescaled embedding is the same condition, another one is not
    torch.testing.assert_close(pipe.decode(5 * e, steps=3, generator=torch.Generator().manual_seed(0)), x)
    other = pipe.decode(e.flip(0), steps=3, generator=torch.Generator().manual_seed(0))
    assert not torch.allclose(other, x, atol=1e-3)


class ConstantX0(EmbeddingPrior):
    """A prior that always predicts the same x_0: any sampler must land on it, read as x_0."""

    def forward(self, x_t, t, y=None, context=None, context_mask=None):
        target = torch.zeros(self.cfg.dim)
        target[0], target[1] = 6.0, -8.0
        return target.expand(len(x_t), -1) + 0 * x_t


@pytest.mark.parametrize("sampler", ["ddim", "dpm_solver"])
def test_the_prior_is_read_as_an_x0_model(sampler, unclip_pipe):
    pipe = dataclasses.replace(unclip_pipe, prior=ConstantX0(PriorConfig(width=8, depth=1)))
    e = pipe.image_embeddings(PROMPTS, w=2.0, steps=10, sampler=sampler, generator=torch.Generator().manual_seed(0))
    expected = torch.zeros(2, 128)
    expected[:, 0], expected[:, 1] = 0.6, -0.8
    torch.testing.assert_close(e, expected, rtol=0, atol=1e-3)


def test_sample_guided_draws_one_sample_per_condition(unclip_pipe):
    cond = {"context": torch.randn(3, 1, 128, generator=G), "context_mask": torch.ones(3, 1, dtype=torch.bool)}
    x = sample_guided(unclip_pipe.prior, unclip_pipe.prior_sched, (128,), cond, w=1.0, steps=2, prediction="x_0")
    assert x.shape == (3, 128) and torch.isfinite(x).all()
    with pytest.raises(ValueError, match="unknown sampler 'euler_maruyama'"):
        sample_guided(
            unclip_pipe.prior, unclip_pipe.prior_sched, (128,), cond, w=1.0, steps=2, sampler="euler_maruyama"
        )


@pytest.mark.parametrize("kind", ["latent", "unclip"])
def test_pipelines_reject_bad_prompts_and_samplers(kind, latent_pipe, unclip_pipe):
    pipe = latent_pipe if kind == "latent" else unclip_pipe
    for bad in ([], ["a seven", 7], "a seven"):
        with pytest.raises(TypeError, match="non-empty list of strings"):
            pipe(bad, steps=2)
    with pytest.raises(ValueError, match="unknown sampler 'plms'"):
        pipe(PROMPTS, steps=2, sampler="plms")


def test_decoders_reject_latents_and_embeddings_of_the_wrong_shape(ae, unclip_pipe):
    z = torch.randn(2, 4, 7, 7, generator=G)
    x = decode_latents(ae, z)
    assert x.shape == (2, 1, 28, 28) and x.min() >= -1 and x.max() <= 1
    with torch.no_grad():
        torch.testing.assert_close(x, ae.decode(z / ae.scaling_factor).clamp(-1, 1))
    with pytest.raises(ValueError, match=r"latents must have shape \(N, 4, h, w\), got \(2, 3, 7, 7\)"):
        decode_latents(ae, torch.randn(2, 3, 7, 7))
    with pytest.raises(ValueError, match=r"latents must have shape \(N, 4, h, w\), got \(4, 7, 7\)"):
        decode_latents(ae, torch.randn(4, 7, 7))
    with pytest.raises(ValueError, match=r"image embeddings must have shape \(N, 128\), got \(2, 64\)"):
        unclip_pipe.decode(torch.randn(2, 64), steps=2)
    with pytest.raises(ValueError, match=r"image embeddings must have shape \(N, 128\), got \(2, 1, 128\)"):
        unclip_pipe.decode(torch.randn(2, 1, 128), steps=2)


def test_pipelines_load_only_models_of_their_kind():
    for name in ("mnist-unet", "mnist-text-unet", "mnist-classifier", "mnist-ae"):
        with pytest.raises(ValueError, match="is not a text-conditional latent U-Net"):
            LatentPipeline.load(name)
    for prior, decoder in (
        ("mnist-unet", "mnist-text-unet"),
        ("mnist-clip", "mnist-ae"),
        ("mnist-classifier", "mnist-unet"),
    ):
        with pytest.raises(ValueError, match="expected a prior and a latent decoder conditioned on embeddings"):
            UnCLIPPipeline.load(prior, decoder)


def _fake_shipped(monkeypatch, fakes: dict):
    """load_pretrained that serves untrained networks of the given recipes under made-up names."""
    real = checkpoint.load_pretrained

    def load(name, device="cpu"):
        if name not in fakes:
            return real(name, device)
        cfg = fakes[name]
        card = {"config": config_to_dict(cfg)}
        return _untrained_of(cfg), get_schedule(cfg.schedule, cfg.T), card

    monkeypatch.setattr(checkpoint, "load_pretrained", load)


def _untrained_of(cfg: TrainConfig) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model(cfg).eval()


def test_unclip_pipeline_loads_its_parts_from_the_cards(monkeypatch):
    prior, dec = RECIPES["prior-tiny"], RECIPES["unclip-decoder-tiny"]
    fakes = {"my-prior": prior, "my-decoder": dec, "other-decoder": dataclasses.replace(dec, embed_of="x")}
    _fake_shipped(monkeypatch, fakes | {"my-latent-unet": RECIPES["latent-tiny"]})
    pipe = UnCLIPPipeline.load("my-prior", "my-decoder")
    assert isinstance(pipe.prior, EmbeddingPrior) and isinstance(pipe.decoder, UNet)
    assert pipe.prior_prediction == "x_0" and pipe.decoder_prediction == "eps" and pipe.image_size == 28
    assert pipe.clip.embed_dim == 128 and float(pipe.ae.scaling_factor) != 1.0  # the shipped mnist-clip and mnist-ae
    assert pipe(["a seven"], steps=2, generator=torch.Generator().manual_seed(0)).shape == (1, 1, 28, 28)
    with pytest.raises(ValueError, match="different embeddings: mnist-clip vs x"):
        UnCLIPPipeline.load("my-prior", "other-decoder")
    with pytest.raises(ValueError, match="expected a prior and a latent decoder"):
        UnCLIPPipeline.load("my-decoder", "my-prior")  # the wrong way round
    for decoder in ("mnist-text-unet", "my-latent-unet"):  # decoders not conditioned on embeddings
        with pytest.raises(ValueError, match="expected a prior and a latent decoder"):
            UnCLIPPipeline.load("my-prior", decoder)


def test_latent_pipeline_loads_a_text_latent_unet_with_its_autoencoder(monkeypatch):
    _fake_shipped(monkeypatch, {"my-latent-unet": RECIPES["latent-tiny"]})
    pipe = LatentPipeline.load("my-latent-unet")
    assert float(pipe.ae.scaling_factor) != 1.0 and pipe.image_size == 28 and pipe.prediction == "eps"
    assert pipe(["a seven"], steps=2, generator=torch.Generator().manual_seed(0)).shape == (1, 1, 28, 28)


def test_latent_pipeline_refuses_an_unclip_decoder(monkeypatch):
    _fake_shipped(monkeypatch, {"my-decoder": RECIPES["unclip-decoder-tiny"]})
    with pytest.raises(ValueError):
        LatentPipeline.load("my-decoder")


# --- export: the autoencoder's scaling factor -----------------------------------------------------------------


def test_fitted_scaling_factor_gives_unit_variance_posterior_means():
    torch.manual_seed(0)
    ae = Autoencoder(AutoencoderConfig(width=8))
    x = torch.rand(40, 1, 28, 28, generator=G) * 2 - 1
    with torch.no_grad():
        before = ae.encode(x).mean
    assert abs(before.std().item() - 1.0) > 1e-2  # an untrained encoder's means are not unit variance already
    factor = fit_scaling_factor(ae, x, batch_size=16)  # batches of 16, 16, 8
    assert float(ae.scaling_factor) == pytest.approx(factor, rel=1e-6)
    with torch.no_grad():
        after = ae.encode(x).mean
    assert torch.equal(after, before)  # the factor scales what diffusion sees, not the encoder
    assert (after * factor).std().item() == pytest.approx(1.0, abs=1e-4)
    assert "scaling_factor" in ae.state_dict()  # exported with the weights


def test_export_of_an_autoencoder_writes_the_fitted_factor_to_its_card(tmp_path, monkeypatch):
    from dlib.train.__main__ import main

    exported = {}

    def fake_export(model, card, name, root=None):  # nothing is written into data/models
        exported.update(model=model, card=card, name=name)
        return tmp_path / f"{name}.safetensors"

    monkeypatch.setattr(checkpoint, "export_model", fake_export)
    main(["--recipe", "ae-tiny", "--out-dir", str(tmp_path), "--steps", "2", "--quiet", "--export"])
    card, model = exported["card"], exported["model"]
    assert exported["name"] == "ae-tiny" and card["scaling_factor"] != 1.0
    assert card["scaling_factor"] == pytest.approx(float(model.scaling_factor), rel=1e-6)
    assert card["scaling_factor"] == pytest.approx(float(model.state_dict()["scaling_factor"]), rel=1e-6)


def test_info_nce_is_the_mean_of_both_cross_entropies_and_checks_its_logits():
    from dlib.losses import info_nce

    g = torch.Generator().manual_seed(0)
    logits = torch.randn(5, 5, generator=g)
    labels = torch.arange(5)
    expected = 0.5 * (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels))
    assert torch.allclose(info_nce(logits), expected)
    # repeated captions (ids 0, 0, 1, 2, 2) are all positives: the target spreads over them
    ids = torch.tensor([0, 0, 1, 2, 2])
    same = (ids[:, None] == ids[None, :]).float()
    target = same / same.sum(1, keepdim=True)
    assert torch.allclose(
        info_nce(logits, ids), 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))
    )
    assert not torch.allclose(info_nce(logits, ids), expected)
    with pytest.raises(ValueError, match="square"):
        info_nce(torch.randn(4, 5))


def test_first_stages_can_be_run_folders_and_an_autoencoder_run_fits_its_scale(tmp_path):
    # what notebook 07 does at the gpu budget: retrain the first stages, then train on their run folders
    from dlib import data
    from dlib.checkpoint import load_ema

    ae_cfg = dataclasses.replace(RECIPES["ae-tiny"], out_dir=str(tmp_path))
    ae = train(ae_cfg, progress=False)["ema"]
    x = data.load_images("mnist", "train", limit=ae_cfg.limit)[0]
    with torch.no_grad():
        means = ae.encode(x).mean
    assert float(ae.scaling_factor) != 1.0
    assert (means * ae.scaling_factor).std().item() == pytest.approx(1.0, rel=1e-4)  # fitted on the run's data
    assert float(load_ema(tmp_path / "ae-tiny")[0].scaling_factor) == float(ae.scaling_factor)  # and saved
    latent = dataclasses.replace(RECIPES["latent-tiny"], latent_of=str(tmp_path / "ae-tiny"), out_dir=str(tmp_path))
    assert math.isfinite(train(latent, progress=False)["card"]["loss_log"][-1][1])
    clip_cfg = dataclasses.replace(RECIPES["clip-tiny"], out_dir=str(tmp_path))
    train(clip_cfg, progress=False)
    prior = dataclasses.replace(RECIPES["prior-tiny"], embed_of=str(tmp_path / "clip-tiny"), out_dir=str(tmp_path))
    assert math.isfinite(train(prior, progress=False)["card"]["loss_log"][-1][1])
