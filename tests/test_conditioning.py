import torch

from dlib.conditioning import drop_context, drop_labels
from dlib.nets import UNet, UNetConfig


def test_drop_labels_replaces_the_given_share():
    y = torch.arange(20_000) % 10
    gen = torch.Generator().manual_seed(0)
    dropped = drop_labels(y, 0.1, 10, gen)
    share = (dropped == 10).float().mean().item()
    assert abs(share - 0.1) < 0.01 and torch.equal(dropped[dropped != 10], y[dropped != 10])
    assert torch.equal(drop_labels(y, 0.0, 10, gen), y) and (drop_labels(y, 1.0, 10, gen) == 10).all()


def test_drop_context_uses_the_null_prompt():
    m = UNet(UNetConfig(base_channels=8, channel_mults=(1, 2), num_res_blocks=1, context_dim=6, attention_levels=(1,)))
    context, mask = torch.randn(1000, 3, 6), torch.ones(1000, 3, dtype=torch.bool)
    out = drop_context(m, context, mask, 0.1, torch.Generator().manual_seed(0))
    dropped = ~out["context_mask"][:, 1]
    assert abs(dropped.float().mean().item() - 0.1) < 0.03
    assert torch.equal(out["context"][~dropped], context[~dropped])
    assert torch.equal(out["context"][dropped], m.null_text(int(dropped.sum()), 3)["context"])
    assert torch.equal(out["context_mask"][dropped].sum(1), torch.ones(int(dropped.sum()), dtype=torch.long))
