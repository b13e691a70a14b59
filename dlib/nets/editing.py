"""The networks of notebook 08 (editing and control), both built around a trained ``UNet``.

- ``InpaintingUNet``: Stable Diffusion's inpainting model in miniature. The U-Net sees three
  inputs stacked as channels: x_t, the mask (1 = generate) and the masked image (known pixels,
  zeros where the mask is 1). ``load_base`` copies a trained U-Net into it with the extra input
  channels' weights zeroed, so training starts from the base model exactly.
- ``ControlNet`` (Zhang et al. 2023): the frozen base U-Net, a trainable copy of its encoder
  (time and label embeddings, conv_in, down path, middle) fed the control image through a small
  hint network, and zero-initialised 1x1 convolutions that add the copy's features to the base's
  skip connections and middle. At initialisation the output equals the base's exactly.

Both keep the network contract ``model(x_t, t, y=None, ..., **edit)`` -> the base's output (eps, v or x_0 as the
card's ``prediction`` says: an edit model must predict what its base predicts, which training checks) and are
the base model when called without their extra inputs.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from dlib.controls import check_control, check_mask
from dlib.nets.blocks import zero_init
from dlib.nets.unet import UNet, UNetConfig


def _same_config(base: UNet, cfg: UNetConfig, what: str) -> None:
    if base.cfg != cfg:
        raise ValueError(f"{what} is built for the U-Net {cfg}, but the base model has {base.cfg}")


class InpaintingUNet(nn.Module):
    """``InpaintingUNet(cfg)(x_t, t, y=None, ..., mask=None, known=None)``: ``cfg`` describes the image
    (in_channels C); the U-Net inside takes 2C + 1 channels [x_t, mask, known * (1 - mask)]. Without
    a mask everything is generated (mask = 1): the model is then an unconditional generator."""

    def __init__(self, cfg: UNetConfig):
        super().__init__()
        self.cfg = cfg
        c = cfg.in_channels
        self.unet = UNet(dataclasses.replace(cfg, in_channels=2 * c + 1, out_channels=cfg.out_channels or c))

    def forward(self, x_t, t, y=None, context=None, context_mask=None, mask=None, known=None) -> torch.Tensor:
        if mask is None:
            mask = torch.ones_like(x_t[:, :1])
        mask = check_mask(mask, x_t).expand(len(x_t), -1, -1, -1)
        if known is None:
            if not torch.all(mask == 1):
                raise ValueError("a mask with known pixels (zeros) needs the known image: pass known=(B, C, H, W)")
            known = torch.zeros_like(x_t)
        if known.shape[-3:] != x_t.shape[-3:]:
            raise ValueError(f"known must be shaped like x_t {tuple(x_t.shape)}, got {tuple(known.shape)}")
        inputs = torch.cat([x_t, mask, known.expand_as(x_t) * (1 - mask)], dim=1)
        return self.unet(inputs, t, y, context, context_mask)

    @torch.no_grad()
    def load_base(self, base: UNet) -> InpaintingUNet:
        """Copy a trained U-Net of the same configuration; the mask and masked-image input channels start at zero."""
        _same_config(base, self.cfg, "this InpaintingUNet")
        state = dict(base.state_dict())
        w = state["conv_in.weight"]  # (ch, C, 3, 3)
        state["conv_in.weight"] = torch.cat([w, w.new_zeros(w.shape[0], w.shape[1] + 1, *w.shape[2:])], dim=1)
        self.unet.load_state_dict(state)
        return self


class ControlNet(nn.Module):
    """``ControlNet(cfg, control_channels=1)(x_t, t, y=None, ..., control=None, scale=1.0)``.

    ``base`` is frozen (requires_grad False; the training loop's optimiser skips it); ``copy`` holds
    the encoder half of a U-Net (its up path and output layer are removed); ``hint`` maps the control
    image to conv_in's channels, its last layer zeroed; ``zero_skips`` and ``zero_mid`` are the zero
    convolutions. ``scale`` multiplies every residual: 0 gives the base model, 1 the trained control.
    """

    def __init__(self, cfg: UNetConfig, control_channels: int = 1):
        super().__init__()
        self.cfg, self.control_channels = cfg, control_channels
        self.base = UNet(cfg).requires_grad_(False)
        self.copy = UNet(cfg)
        del self.copy.up, self.copy.out  # only embed, conv_in and encode are used
        c0 = cfg.base_channels * cfg.channel_mults[0]
        self.hint = nn.Sequential(
            nn.Conv2d(control_channels, 16, 3, padding=1),
            nn.SiLU(),
            nn.Conv2d(16, 16, 3, padding=1),
            nn.SiLU(),
            zero_init(nn.Conv2d(16, c0, 3, padding=1)),
        )
        self.zero_skips = nn.ModuleList(zero_init(nn.Conv2d(c, c, 1)) for c in self.base.skip_channels)
        c_mid = cfg.base_channels * cfg.channel_mults[-1]
        self.zero_mid = zero_init(nn.Conv2d(c_mid, c_mid, 1))

    def forward(
        self, x_t, t, y=None, context=None, context_mask=None, control=None, scale: float = 1.0
    ) -> torch.Tensor:
        if control is None:
            return self.base(x_t, t, y, context, context_mask)
        return self.base(x_t, t, y, context, context_mask, residuals=self.residuals(x_t, t, control, y, scale))

    def residuals(self, x_t, t, control, y=None, scale: float = 1.0) -> tuple[list[torch.Tensor], torch.Tensor]:
        """What the copy adds to the base: one tensor per skip connection and one for the middle."""
        check_control(control, x_t, self.control_channels)
        if self.cfg.context_dim:
            raise NotImplementedError("this ControlNet steers unconditional and class-conditional U-Nets")
        emb = self.copy.embed(t, y)
        cond = dict(context=None, context_mask=None)
        h, skips = self.copy.encode(self.copy.conv_in(x_t) + self.hint(control), emb, cond)
        return [scale * z(s) for z, s in zip(self.zero_skips, skips, strict=True)], scale * self.zero_mid(h)

    @torch.no_grad()
    def load_base(self, base: UNet) -> ControlNet:
        """The frozen base and the trainable copy both start as the trained U-Net."""
        _same_config(base, self.cfg, "this ControlNet")
        self.base.load_state_dict(base.state_dict())
        self.copy.load_state_dict(
            {k: v for k, v in base.state_dict().items() if not k.startswith(("up.", "out."))}, strict=True
        )
        return self
