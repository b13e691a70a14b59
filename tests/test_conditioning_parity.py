"""Parity with diffusers for conditioning: the CFG combination (both conventions) and cross-attention."""

import pytest
import torch

from dlib import guidance, nets

diffusers = pytest.importorskip("diffusers")


@pytest.mark.parametrize("scale", [0.0, 1.0, 2.5, 7.5])
def test_cfg_combine_matches_diffusers_guider(scale, gen):
    from diffusers.guiders import ClassifierFreeGuidance

    eps_c, eps_u = torch.randn(2, 4, 8, 8, generator=gen), torch.randn(2, 4, 8, 8, generator=gen)
    for original, convention in ((False, "uncond"), (True, "cond")):
        guider = ClassifierFreeGuidance(guidance_scale=scale, use_original_formulation=original)
        theirs = guider.forward(pred_cond=eps_c, pred_uncond=eps_u).pred
        torch.testing.assert_close(guidance.cfg_combine(eps_u, eps_c, scale, convention), theirs)


@pytest.mark.parametrize("heads", [1, 2])
def test_cross_attention_matches_diffusers_attention(heads, gen):
    """The same weights in diffusers' Attention (group norm on the image, residual connection) give the same output."""
    from diffusers.models.attention_processor import Attention

    C, D = 32, 12
    ours = nets.CrossAttention(C, context_dim=D, heads=heads)
    for p in ours.parameters():
        torch.nn.init.normal_(p, std=0.2, generator=gen)
    theirs = Attention(
        query_dim=C,
        cross_attention_dim=D,
        heads=heads,
        dim_head=C // heads,
        norm_num_groups=ours.norm.num_groups,
        residual_connection=True,
        out_bias=True,
    )
    with torch.no_grad():
        theirs.group_norm.weight.copy_(ours.norm.weight)
        theirs.group_norm.bias.copy_(ours.norm.bias)
        theirs.to_q.weight.copy_(ours.to_q.weight)
        theirs.to_k.weight.copy_(ours.to_kv.weight[:C])
        theirs.to_v.weight.copy_(ours.to_kv.weight[C:])
        theirs.to_out[0].weight.copy_(ours.proj_out.weight)
        theirs.to_out[0].bias.copy_(ours.proj_out.bias)
    x, context = torch.randn(2, C, 5, 5, generator=gen), torch.randn(2, 7, D, generator=gen)
    with torch.no_grad():
        torch.testing.assert_close(ours(x, context), theirs(x, encoder_hidden_states=context), rtol=1e-4, atol=1e-5)
