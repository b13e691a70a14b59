import math

import pytest
import torch

from dlib import nets


def n_params(m):
    return sum(p.numel() for p in m.parameters())


@pytest.mark.parametrize("size,mults", [(28, (1, 2, 2)), (32, (1, 2, 2)), (64, (1, 2, 2, 2))])
def test_unet_shapes(size, mults):
    m = nets.UNet(nets.UNetConfig(base_channels=16, channel_mults=mults, num_res_blocks=1))
    x = torch.randn(2, 1, size, size)
    assert m(x, torch.tensor([0, 999])).shape == x.shape


def test_parameter_counts():
    # the shipped MNIST architecture and the default config
    shipped = nets.UNetConfig(base_channels=32, channel_mults=(1, 2, 2), num_res_blocks=1, attention_levels=(2,))
    assert n_params(nets.UNet(shipped)) == 1_191_233
    assert n_params(nets.UNet()) == 1_742_881


def test_time_embedding_changes_the_output():
    torch.manual_seed(0)
    m = nets.UNet(nets.UNetConfig(base_channels=16, num_res_blocks=1))
    for p in m.parameters():  # leave zero-initialised layers non-zero so the output depends on everything
        torch.nn.init.normal_(p, std=0.05)
    x = torch.randn(1, 1, 28, 28).repeat(2, 1, 1, 1)
    out = m(x, torch.tensor([10, 500]))
    assert (out[0] - out[1]).abs().max() > 1e-4


def test_gradients_reach_every_parameter():
    torch.manual_seed(0)
    cfg = nets.UNetConfig(base_channels=16, num_res_blocks=1, num_classes=10, context_dim=8, attention_levels=(1, 2))
    m = nets.UNet(cfg)
    for p in m.parameters():
        torch.nn.init.normal_(p, std=0.05)
    null = m.null_text(1, 5)  # the second example has the "no prompt" condition, as in training
    context = torch.cat([torch.randn(1, 5, 8), null["context"]])
    mask = torch.cat([torch.ones(1, 5, dtype=torch.bool), null["context_mask"]])
    out = m(
        torch.randn(2, 1, 28, 28), torch.tensor([3, 700]), y=torch.tensor([1, 2]), context=context, context_mask=mask
    )
    out.pow(2).mean().backward()
    missing = [name for name, p in m.named_parameters() if p.grad is None or p.grad.abs().max() == 0]
    assert not missing, missing


def test_timestep_embedding_formula():
    t = torch.tensor([0.0, 1.0, 37.0])
    e = nets.timestep_embedding(t, 8)
    freqs = torch.exp(-math.log(10_000) * torch.arange(4) / 4)
    torch.testing.assert_close(e, torch.cat([torch.cos(t[:, None] * freqs), torch.sin(t[:, None] * freqs)], 1))
    assert nets.timestep_embedding(t, 7).shape == (3, 7)


def test_norm_groups_adapt_to_channels():
    assert [nets.norm_groups(c) for c in (1, 3, 32, 48, 64, 96)] == [1, 1, 8, 12, 16, 24]
    nets.ResBlock(1, 8, 16)(torch.randn(2, 1, 4, 4), torch.randn(2, 16))  # GroupNorm(32, 1) would raise


def test_self_attention_equals_explicit_softmax():
    torch.manual_seed(0)
    attn = nets.SelfAttention(8, heads=2)
    torch.nn.init.normal_(attn.proj_out.weight)
    x = torch.randn(2, 8, 3, 5)
    B, C, H, W = x.shape
    qkv = attn.qkv(attn.norm(x)).reshape(B, 3, 2, 4, H * W)
    q, k, v = (qkv[:, i].transpose(-1, -2) for i in range(3))  # (B, heads, HW, d)
    w = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(4), dim=-1)  # (B, heads, HW, HW)
    h = (w @ v).transpose(-1, -2).reshape(B, C, H, W)
    torch.testing.assert_close(attn(x), x + attn.proj_out(h), rtol=1e-5, atol=1e-5)


def test_self_attention_mixes_positions():
    """The study guide's reshape made each position attend only to itself; ours must mix them."""
    torch.manual_seed(0)
    attn = nets.SelfAttention(4)
    attn.norm = torch.nn.Identity()  # GroupNorm alone mixes positions (shared statistics): test attention itself
    torch.nn.init.normal_(attn.proj_out.weight)
    x = torch.randn(1, 4, 4, 4)
    y = x.clone()
    y[..., 0, 0] += 1.0  # change one position
    diff = (attn(y) - attn(x)).abs().sum(1)[0]  # (H, W)
    assert (diff.flatten()[1:] > 1e-6).all(), "other positions must see the change"


def test_cross_attention_is_permutation_equivariant_over_tokens():
    torch.manual_seed(0)
    ca = nets.CrossAttention(8, context_dim=6, heads=2)
    torch.nn.init.normal_(ca.proj_out.weight)
    x, ctx = torch.randn(2, 8, 4, 4), torch.randn(2, 7, 6)
    perm = torch.randperm(7)
    torch.testing.assert_close(ca(x, ctx), ca(x, ctx[:, perm]), rtol=1e-5, atol=1e-5)
    for L in (1, 3, 20):
        assert ca(x, torch.randn(2, L, 6)).shape == x.shape
    mask = torch.tensor([[True] * 3 + [False] * 4] * 2)
    torch.testing.assert_close(ca(x, ctx, mask), ca(x, ctx[:, :3]), rtol=1e-5, atol=1e-5)
    # the attention weights permute with the tokens (equivariance), and padding gets none
    w = ca.attention_weights(x, ctx)
    assert w.shape == (2, 2, 16, 7)
    torch.testing.assert_close(ca.attention_weights(x, ctx[:, perm]), w[..., perm], rtol=1e-5, atol=1e-6)
    w_masked = ca.attention_weights(x, ctx, mask)
    assert (w_masked[..., 3:] == 0).all()
    torch.testing.assert_close(w_masked.sum(-1), torch.ones(2, 2, 16))


def test_cross_attention_weights_reproduce_the_forward_pass():
    torch.manual_seed(1)
    ca = nets.CrossAttention(8, context_dim=5, heads=2)
    torch.nn.init.normal_(ca.proj_out.weight)
    x, ctx = torch.randn(3, 8, 4, 4), torch.randn(3, 6, 5)
    w = ca.attention_weights(x, ctx)  # (B, heads, HW, L)
    v = ca.to_kv(ctx)[..., 8:].reshape(3, 6, 2, 4).transpose(1, 2)  # (B, heads, L, d)
    out = (w @ v).transpose(1, 2).reshape(3, 16, 8)
    expected = x + ca.proj_out(out).transpose(1, 2).reshape(3, 8, 4, 4)
    torch.testing.assert_close(ca(x, ctx), expected, rtol=1e-5, atol=1e-5)


def test_class_labels_and_null_label():
    torch.manual_seed(0)
    m = nets.UNet(nets.UNetConfig(base_channels=16, num_res_blocks=1, num_classes=10))
    for p in m.parameters():
        torch.nn.init.normal_(p, std=0.05)
    x, t = torch.randn(2, 1, 28, 28), torch.tensor([5, 5])
    assert not torch.allclose(m(x, t, y=torch.tensor([1, 1])), m(x, t, y=torch.tensor([2, 2])))
    torch.testing.assert_close(m(x, t), m(x, t, y=torch.tensor([10, 10])))  # None = the null label


def test_bad_input_raises_clearly():
    m = nets.UNet(nets.UNetConfig(base_channels=8, num_res_blocks=1))
    with pytest.raises(ValueError, match="divisible by 4"):
        m(torch.randn(1, 1, 30, 30), torch.tensor([1]))
    with pytest.raises(ValueError, match=r"t must have shape \(B,\)"):
        m(torch.randn(2, 1, 28, 28), torch.tensor([1]))
    with pytest.raises(ValueError, match="unconditional"):
        m(torch.randn(1, 1, 28, 28), torch.tensor([1]), y=torch.tensor([3]))
    text = nets.UNet(nets.UNetConfig(base_channels=8, num_res_blocks=1, context_dim=4))
    with pytest.raises(ValueError, match="context_mask without context"):
        text(torch.randn(1, 1, 28, 28), torch.tensor([1]), context_mask=torch.ones(1, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match="context_dim=4"):
        text(torch.randn(1, 1, 28, 28), torch.tensor([1]), context=torch.randn(1, 3, 5))
    labelled = nets.UNet(nets.UNetConfig(base_channels=8, num_res_blocks=1, num_classes=10))
    for bad in (11, -1):
        with pytest.raises(ValueError, match=r"labels in 0..9"):
            labelled(torch.randn(1, 1, 28, 28), torch.tensor([1]), y=torch.tensor([bad]))


def test_mlp_and_classifier_shapes():
    assert nets.MLPDenoiser()(torch.randn(5, 2), torch.arange(5)).shape == (5, 2)
    c = nets.Classifier()
    x = torch.randn(3, 1, 28, 28)
    assert c(x).shape == (3, 10) and c.features(x).shape == (3, 128)


def test_null_text_is_the_unconditional_prompt_at_any_length():
    """context=None means the learned null token; padding it to any length (masked) changes nothing,
    so it can share a batch with a prompt in classifier-free guidance."""
    torch.manual_seed(0)
    m = nets.UNet(
        nets.UNetConfig(base_channels=8, channel_mults=(1, 2), num_res_blocks=1, context_dim=6, attention_levels=(1,))
    )
    for p in m.parameters():  # zero-initialised output layers would hide any difference
        torch.nn.init.normal_(p, std=0.2)
    m.eval()
    x, t = torch.randn(3, 1, 28, 28), torch.tensor([5, 500, 900])
    with torch.no_grad():
        plain = m(x, t)
        for L in (1, 4, 9):
            null = m.null_text(3, L)
            assert null["context"].shape == (3, L, 6) and null["context_mask"].sum().item() == 3
            torch.testing.assert_close(m(x, t, **null), plain, atol=1e-5, rtol=1e-5)
        prompt = torch.randn(3, 4, 6)
        assert (m(x, t, context=prompt) - plain).abs().max() > 1e-3  # a prompt does change the output
    assert m.null_context.requires_grad  # learned


@pytest.mark.parametrize("condition", ["none", "class", "text"])
def test_rgb_32_unet_runs_forward_and_backward(condition):
    """Channels and image size come from the config: a 3-channel 32x32 U-Net with attention at the lowest level."""
    torch.manual_seed(0)
    extra = {"class": dict(num_classes=10), "text": dict(context_dim=12)}.get(condition, {})
    cfg = nets.UNetConfig(
        in_channels=3, base_channels=16, channel_mults=(1, 2, 2), num_res_blocks=1, attention_levels=(2,), **extra
    )
    m = nets.UNet(cfg)
    x, t = torch.randn(2, 3, 32, 32), torch.tensor([0, 999])
    cond = {"none": {}, "class": dict(y=torch.tensor([3, 10])), "text": dict(context=torch.randn(2, 5, 12))}[condition]
    out = m(x, t, **cond)
    assert out.shape == (2, 3, 32, 32)
    out.pow(2).mean().backward()
    assert m.conv_in.weight.grad is not None and m.conv_in.weight.grad.shape == (16, 3, 3, 3)
    assert all(p.grad is None or torch.isfinite(p.grad).all() for p in m.parameters())
    with pytest.raises(ValueError, match=r"x_t must be \(B, 3, H, W\).*got \(2, 1, 32, 32\)"):
        m(torch.randn(2, 1, 32, 32), t)


def test_unet_out_channels_differ_from_in_channels():
    m = nets.UNet(nets.UNetConfig(in_channels=3, out_channels=6, base_channels=8, num_res_blocks=1))
    assert m(torch.randn(2, 3, 32, 32), torch.tensor([1, 2])).shape == (2, 6, 32, 32)


def test_classifiers_on_rgb_32_images():
    torch.manual_seed(0)
    x, t = torch.randn(4, 3, 32, 32), torch.tensor([0, 10, 500, 999])
    c = nets.Classifier(in_channels=3, image_size=32, num_classes=7, feature_dim=64)
    assert c(x).shape == (4, 7) and c.features(x).shape == (4, c.feature_dim) == (4, 64)
    noisy = nets.NoisyClassifier(in_channels=3, image_size=32, num_classes=7, width=16)
    logits = noisy(x, t)
    assert logits.shape == (4, 7) and noisy.features(x, t).shape == (4, noisy.feature_dim) == (4, 32)
    logits.logsumexp(1).sum().backward()  # classifier guidance needs d log p(y | x_t) / d x_t through it
    assert noisy.conv_in.weight.grad.shape == (16, 3, 3, 3)
    # the head is the last layer applied to the features
    torch.testing.assert_close(noisy.head[-1](noisy.features(x, t)), logits)
    torch.testing.assert_close(c.head(c.features(x)), c(x))


def test_classifiers_reject_images_they_were_not_built_for():
    c, noisy = nets.Classifier(), nets.NoisyClassifier()
    with pytest.raises(ValueError, match=r"expects images of shape \(B, 1, 28, 28\), got \(2, 3, 28, 28\)"):
        c(torch.randn(2, 3, 28, 28))
    with pytest.raises(ValueError, match=r"expects images of shape \(B, 1, 28, 28\), got \(2, 1, 32, 32\)"):
        c.features(torch.randn(2, 1, 32, 32))  # padded MNIST would silently shift the FID features
    with pytest.raises(ValueError, match=r"expects images of shape \(B, 1, 28, 28\), got \(2, 1, 32, 32\)"):
        noisy(torch.randn(2, 1, 32, 32), torch.tensor([1, 2]))
    with pytest.raises(ValueError, match=r"t must have shape \(B,\) = \(2,\), got \(1,\)"):
        noisy(torch.randn(2, 1, 28, 28), torch.tensor([1]))
    with pytest.raises(ValueError, match="image_size must be a multiple of 4 and >= 16, got 30"):
        nets.Classifier(image_size=30)
    with pytest.raises(ValueError, match="in_channels >= 1 and num_classes >= 2, got 0 and 10"):
        nets.NoisyClassifier(in_channels=0)
    with pytest.raises(TypeError):
        nets.Classifier(10)  # keyword-only: a positional 10 must not silently become a channel count


def test_mlp_denoiser_takes_the_data_dimension():
    m = nets.MLPDenoiser(dim=3, hidden=16, layers=2)
    assert m(torch.randn(5, 3), torch.arange(5), y=None).shape == (5, 3)  # conditioning keywords are ignored
    with pytest.raises(ValueError, match=r"\(B, dim=3\), got \(5, 2\)"):
        m(torch.randn(5, 2), torch.arange(5))
    with pytest.raises(ValueError, match=r"t must have shape \(B,\) = \(5,\)"):
        m(torch.randn(5, 3), torch.arange(4))


def test_package_layout_and_reexports():
    from dlib.nets import blocks, classifiers, small, unet

    assert nets.UNet is unet.UNet and nets.AttnStack is unet.AttnStack and nets.UNetConfig is unet.UNetConfig
    assert nets.ResBlock is blocks.ResBlock and nets.timestep_embedding is blocks.timestep_embedding
    assert nets.MLPDenoiser is small.MLPDenoiser
    assert nets.Classifier is classifiers.Classifier and nets.NoisyClassifier is classifiers.NoisyClassifier
    assert all(hasattr(nets, name) for name in nets.__all__)


SHIPPED = [
    ("mnist-unet", "UNet"),
    ("mnist-classifier", "Classifier"),
    ("fashion-classifier", "Classifier"),
    ("mnist-noisy-classifier", "NoisyClassifier"),
    ("mnist-cond-unet", "UNet"),
    ("fashion-cond-unet", "UNet"),
    ("mnist-text-unet", "UNet"),
]


@pytest.mark.parametrize("name,kind", SHIPPED)
def test_every_shipped_model_still_loads(name, kind):
    """The default constructor arguments rebuild the shipped architectures exactly (strict=True loading)."""
    import dlib

    model, _, _ = dlib.load_pretrained(name)
    assert type(model).__name__ == kind
    x, t = torch.zeros(2, 1, 28, 28), torch.tensor([0, 500])
    with torch.no_grad():
        out = model(x) if kind == "Classifier" else model(x, t)
    assert out.shape == ((2, 10) if "Classifier" in kind else x.shape)
