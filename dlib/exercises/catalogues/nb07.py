"""Notebook 07 (latent diffusion and text-to-image): the hints and catalogued mistakes of its exercises.

    posterior   Exercise 1 (core): the reparameterised latent sample and the KL term of the autoencoder
    info_nce    Exercise 2 (core): the symmetric InfoNCE loss of the contrastive model
    unclip      Exercise 3 (build): the whole two-stage unCLIP sampling, prior then decoder

Each is a dict for ``check_function(..., **nb07.name)`` (see the package docstring). Exercise 4 is a
derivation, confirmed by a cell of the notebook, with no checker.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from dlib.losses import info_nce as _info_nce
from dlib.nets import DiagonalGaussian
from dlib.pipelines import decode_latents, sample_guided

# --- Exercise 1: reparameterisation and KL ---


def _posterior(mean, logvar, eps):
    q = DiagonalGaussian(mean, logvar)
    return q.mean + q.std * eps, q.kl()


def _kl_terms(mean, logvar, var=None, minus_one=True, reduce="sum"):
    var = logvar.exp() if var is None else var
    terms = 0.5 * (mean**2 + var - (1.0 if minus_one else 0.0) - logvar)
    return terms.flatten(1).sum(1) if reduce == "sum" else terms.flatten(1).mean(1)


posterior = dict(
    reference=_posterior,
    hint=[
        "The encoder gives the mean and the log-variance of a Gaussian per latent element. A sample must be a "
        "differentiable function of them and of noise eps drawn outside. The KL of N(m, s^2) to N(0, 1) has a closed "
        "form per element; the loss wants one number per example.",
        "std = exp(logvar / 2), not exp(logvar). Per element, KL = (m^2 + s^2 - 1 - log s^2) / 2, which is 0 exactly "
        "when m = 0 and s = 1. Sum it over all latent elements of an example (channels and positions).",
        "z = mean + exp(0.5 * logvar) * eps; kl = 0.5 * (mean**2 + logvar.exp() - 1 - logvar).flatten(1).sum(1)",
    ],
    mistakes={
        "std = exp(logvar): the log-variance used as a log standard deviation": lambda mean, logvar, eps: (
            mean + logvar.exp() * eps,
            _kl_terms(mean, logvar),
        ),
        "the sample ignores eps (z = mean): nothing random reaches the decoder": lambda mean, logvar, eps: (
            mean,
            _kl_terms(mean, logvar),
        ),
        "the KL without the -1: it is not zero at the prior N(0, I)": lambda mean, logvar, eps: (
            _posterior(mean, logvar, eps)[0],
            _kl_terms(mean, logvar, minus_one=False),
        ),
        "the KL's variance term is the standard deviation exp(logvar / 2), not the variance": (
            lambda mean, logvar, eps: (
                _posterior(mean, logvar, eps)[0],
                _kl_terms(mean, logvar, var=(0.5 * logvar).exp()),
            )
        ),
        "the KL averaged over latent elements instead of summed: its weight then depends on the latent size": (
            lambda mean, logvar, eps: (_posterior(mean, logvar, eps)[0], _kl_terms(mean, logvar, reduce="mean"))
        ),
    },
)


# --- Exercise 2: InfoNCE ---


def _logits(image_emb, text_emb, logit_scale):
    return logit_scale.exp() * image_emb @ text_emb.T


def _reference_info_nce(image_emb, text_emb, logit_scale):
    return _info_nce(_logits(image_emb, text_emb, logit_scale))


def _labels(x):
    return torch.arange(len(x))


info_nce = dict(
    reference=_reference_info_nce,
    hint=[
        "Row i of the similarity matrix compares image i with every caption in the batch; its own caption is the "
        "right answer, the others are negatives. The same holds for column i, from the caption's side. The "
        "temperature multiplies the cosines before any softmax.",
        "logits = exp(logit_scale) * image_emb @ text_emb.T (the embeddings are unit length already). The loss is "
        "the cross-entropy of the rows against labels 0..B-1, and of the columns (logits.T) against the same "
        "labels, averaged.",
        "logits = logit_scale.exp() * image_emb @ text_emb.T; labels = arange(B); "
        "0.5 * (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels))",
    ],
    mistakes={
        "one direction only (images -> captions): the captions' side is never trained": lambda image_emb, text_emb, logit_scale: (
            F.cross_entropy(_logits(image_emb, text_emb, logit_scale), _labels(image_emb))
        ),
        "no temperature: the raw cosines as logits, so the softmax is nearly flat": lambda image_emb, text_emb, logit_scale: (
            _info_nce(image_emb @ text_emb.T)
        ),
        "the temperature divides the cosines (exp(-logit_scale)) instead of scaling them up": (
            lambda image_emb, text_emb, logit_scale: _info_nce(_logits(image_emb, text_emb, -logit_scale))
        ),
        "the two directions summed, not averaged": lambda image_emb, text_emb, logit_scale: (
            2 * _reference_info_nce(image_emb, text_emb, logit_scale)
        ),
    },
)


# --- Exercise 3: two-stage unCLIP sampling ---


def _unclip(prompts, pipe, w_prior, w, steps, seed, *, normalise=True, skip_prior=False, unscaled=False,
            prior_as_eps=False, fresh_noise=False):  # fmt: skip
    """The unCLIP pipeline written out, with switches for the catalogued mistakes."""
    g = torch.Generator().manual_seed(seed)
    text = pipe.text_embeddings(prompts)
    one = torch.ones(len(prompts), 1, dtype=torch.bool)
    e = sample_guided(
        pipe.prior, pipe.prior_sched, (text.shape[-1],), {"context": text[:, None], "context_mask": one},
        w=w_prior, steps=steps, prediction="eps" if prior_as_eps else pipe.prior_prediction, generator=g,
    )  # fmt: skip
    e = text if skip_prior else (F.normalize(e, dim=-1) if normalise else e)
    g = torch.Generator().manual_seed(seed) if fresh_noise else g
    z = sample_guided(
        pipe.decoder, pipe.decoder_sched, pipe.ae.cfg.latent_shape(pipe.image_size),
        {"context": e[:, None], "context_mask": one}, w=w, steps=steps, prediction=pipe.decoder_prediction, generator=g,
    )  # fmt: skip
    return pipe.ae.decode(z).clamp(-1, 1) if unscaled else decode_latents(pipe.ae, z)


def _reference_unclip(prompts, pipe, w_prior, w, steps, seed):
    return pipe(prompts, w_prior=w_prior, w=w, steps=steps, generator=torch.Generator().manual_seed(seed))


def _variant(**switch):
    return lambda prompts, pipe, w_prior, w, steps, seed: _unclip(prompts, pipe, w_prior, w, steps, seed, **switch)


unclip = dict(
    reference=_reference_unclip,
    hint=[
        "Two diffusion models in a row. The prior turns the prompts' text embeddings into image embeddings (vectors "
        "of the contrastive model's space); the decoder turns those into latents, and the autoencoder into images. "
        "One generator draws all the noise, the prior's first.",
        "Each stage is one call of dlib.pipelines.sample_guided with its own network, schedule, shape, prediction and "
        "scale; the condition is a one-token context (B, 1, D) with an all-True mask. The prior's sample lives at the "
        "scale it was trained on: make it unit length before the decoder sees it. decode_latents undoes the latent "
        "scale factor.",
        "g = Generator().manual_seed(seed); t = pipe.text_embeddings(prompts); e = sample_guided(pipe.prior, "
        "pipe.prior_sched, (D,), {context: t[:, None], context_mask: ones}, w=w_prior, steps=steps, "
        "prediction=pipe.prior_prediction, generator=g); e = F.normalize(e, dim=-1); z = sample_guided(pipe.decoder, "
        "pipe.decoder_sched, latent shape, {context: e[:, None], ...}, w=w, ...); return decode_latents(pipe.ae, z)",
    ],
    mistakes={
        "the prior's sample not made unit length: the decoder sees an embedding ~11x too long": _variant(
            normalise=False
        ),
        "the prior skipped: the decoder conditioned on the text embedding": _variant(skip_prior=True),
        "the latents decoded without dividing by the scale factor": _variant(unscaled=True),
        "the prior's output read as a noise prediction (it predicts x_0)": _variant(prior_as_eps=True),
        "a fresh generator for the decoder: both stages start from correlated noise": _variant(fresh_noise=True),
    },
)
