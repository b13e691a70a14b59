"""The networks of the course: denoisers and classifiers.

- ``blocks``: time embedding, GroupNorm sizing, zero init, residual, self- and cross-attention,
  down- and upsampling blocks (notebook 03; cross-attention in notebook 06).
- ``unet``: ``UNetConfig`` and the ``UNet`` image denoiser (notebook 03; labels and text, 06).
- ``small``: ``MLPDenoiser`` for 2D toy data.
- ``autoencoder``: ``Autoencoder`` with a KL-regularised latent, the first stage of latent diffusion (notebook 07).
- ``contrastive``: ``ContrastiveModel``, an image tower trained against a frozen text encoder (notebooks 07, 10).
- ``prior``: ``EmbeddingPrior``, the unCLIP prior: a denoiser of image embeddings given a text embedding (notebook 07).
- ``editing``: ``InpaintingUNet`` (mask and masked image as extra inputs) and ``ControlNet`` (a trainable
  encoder copy steering a frozen U-Net through zero convolutions), both built on a trained U-Net (notebook 08).
- ``classifiers``: ``Classifier`` of clean images (scores, FID features; notebooks 04 and 05) and
  ``NoisyClassifier`` p(y | x_t, t) for classifier guidance (notebook 06).

Image channels and size come from the configuration (``UNetConfig.in_channels``; the classifiers'
``in_channels`` and ``image_size``), never from a hard-coded 1 x 28 x 28.

One contract for every denoiser:
``model(x_t, t, y=None, context=None, context_mask=None) -> output shaped like x_t``, with t of
shape (B,) (0 <= t <= T-1, possibly fractional) and the output eps_hat, x_0_hat or v_hat,
whichever the model was trained to predict. y (B,) are class labels, context (B, L, D) text
tokens with context_mask (B, L) marking real tokens; a conditional model called without its
condition is the unconditional model.
"""

from dlib.nets.autoencoder import Autoencoder, AutoencoderConfig, DiagonalGaussian, fit_scaling_factor
from dlib.nets.blocks import (
    CrossAttention,
    Downsample,
    ResBlock,
    SelfAttention,
    Upsample,
    group_norm,
    norm_groups,
    timestep_embedding,
    zero_init,
)
from dlib.nets.classifiers import Classifier, NoisyClassifier
from dlib.nets.contrastive import ContrastiveModel
from dlib.nets.editing import ControlNet, InpaintingUNet
from dlib.nets.prior import EmbeddingPrior, PriorConfig
from dlib.nets.small import MLPDenoiser
from dlib.nets.unet import AttnStack, UNet, UNetConfig

__all__ = [
    "AttnStack",
    "Autoencoder",
    "AutoencoderConfig",
    "ContrastiveModel",
    "ControlNet",
    "InpaintingUNet",
    "DiagonalGaussian",
    "EmbeddingPrior",
    "fit_scaling_factor",
    "Classifier",
    "CrossAttention",
    "Downsample",
    "MLPDenoiser",
    "NoisyClassifier",
    "PriorConfig",
    "ResBlock",
    "SelfAttention",
    "UNet",
    "UNetConfig",
    "Upsample",
    "group_norm",
    "norm_groups",
    "timestep_embedding",
    "zero_init",
]
