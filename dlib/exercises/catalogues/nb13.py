"""Notebook 13 (interview preparation): the hints and catalogued mistakes of its new "find the bug" items, the quiz
items, and the map from the study guide's ledger (docs/STUDY_GUIDE_BUGS.md) to where each row is practised.

    group_norm       ledger row 9: a GroupNorm whose group count works for any channel count
    attention        ledger row 10: self-attention that mixes positions (nb03's reference and mistakes)
    ddim_grid        ledger row 13: the time indices a DDIM sampler visits (trailing, from T - 1)
    inception_score  ledger row 27: the Inception Score without log(0)
    clip_score       ledger row 28: the published CLIP score, 100 max(cos, 0)
    alpha_bar_prev   pitfall: the off-by-one in t (alpha_bar_{t-1} at t = 0)
    ema_roles        pitfall: the EMA updated on the wrong weights

The study guide's own buggy code is shown in the notebook and merged there as one more mistake. Items whose fix an
earlier notebook already checks reuse that notebook's catalogue (nb01.q_sample, nb06.cfg_combine, nb08.replace_step).
"""

from __future__ import annotations

import copy
import functools
import math

import torch
import torch.nn.functional as F

from dlib.exercises.catalogues import nb03, nb04
from dlib.metrics import clip_score as _clip_score
from dlib.metrics import inception_score as _inception_score
from dlib.nets.blocks import norm_groups
from dlib.samplers import timesteps

# --- ledger row 9: GroupNorm groups ---


def _group_norm(x: torch.Tensor, groups_of=norm_groups) -> torch.Tensor:
    return F.group_norm(x, groups_of(x.shape[1]))


group_norm = dict(
    reference=_group_norm,
    hint=[
        "Try the guide's norm on 1, 3 and 48 channels. What must the group count do for every channel count?",
        "Pick the largest group count of at most 32 that divides C and leaves at least 4 channels per group "
        "(1 group when none does): dlib.nets.blocks.norm_groups.",
        "return F.group_norm(x, norm_groups(x.shape[1]))",
    ],
    mistakes={
        "one channel per group (instance norm): each channel's own offset is erased": functools.partial(
            _group_norm, groups_of=lambda c: c
        ),
        "gcd(32, C) groups: it divides C, but leaves groups of one or two channels": functools.partial(
            _group_norm, groups_of=lambda c: math.gcd(32, c)
        ),
    },
)

# --- ledger row 10: attention that mixes positions ---

attention = dict(
    reference=nb03.layer_output,
    hint=[
        "Print the shapes of q, k and the attention weights for a 4x4 image: how many positions does each query see?",
        "q, k and v must be (B, heads, N, d) with N = H * W positions: split the qkv channels into (3, heads, d) "
        "first, then move positions before channels; scale by sqrt(d), the head dimension.",
        nb03.self_attention["hint"][-1],
    ],
    mistakes=nb03.self_attention["mistakes"],
)

# --- ledger row 13: the DDIM grid ---


def _grid(T: int, steps: int) -> torch.Tensor:
    return timesteps(T, steps)


ddim_grid = dict(
    reference=_grid,
    hint=[
        "Which noise level does x_T ~ N(0, I) match, and is it the first index your grid visits?",
        "Trailing spacing: start at T - 1 and step down by T / steps, rounding: T - 1, T - 1 - T / steps, ...",
        "return dlib.samplers.timesteps(T, steps) (or (torch.arange(T, 0, -T / steps).round() - 1).long())",
    ],
    mistakes={
        "linspace spacing: both ends, so the last network call is spent at t = 0": lambda T, steps: timesteps(
            T, steps, "linspace"
        ),
        "the trailing grid one index too high (t counted from 1): it starts at T, out of range": lambda T, steps: (
            timesteps(T, steps) + 1
        ),
    },
)

# --- ledger row 27: the Inception Score ---


def _is_variant(probs, splits=10, reverse=False, exp=True):
    p, part = probs.double(), len(probs) // splits
    scores = []
    for s in range(splits):
        p_yx = p[s * part : (s + 1) * part]
        p_y = p_yx.mean(0, keepdim=True).expand_as(p_yx)
        a, b = (p_y, p_yx) if reverse else (p_yx, p_y)
        kl = (torch.xlogy(a, a) - torch.xlogy(a, b)).sum(1).mean()
        scores.append(kl.exp() if exp else kl)
    v = torch.stack(scores)
    return float(v.mean()), float(v.std(correction=0))


inception_score = dict(
    reference=_inception_score,
    hint=[
        "What is 0 * log 0 in floating point, and what should it be in an entropy?",
        "Write p log p - p log p_y with torch.xlogy, which gives 0 where p = 0; exponentiate each split's mean KL.",
        "kl = (xlogy(p_yx, p_yx) - xlogy(p_yx, p_y)).sum(1); score = kl.mean().exp() per split; (mean, std) over splits",
    ],
    mistakes={
        "no exp: the mean KL itself, not exp of it": functools.partial(_is_variant, exp=False),
        "the KL the wrong way round, KL(p(y) || p(y | x))": functools.partial(_is_variant, reverse=True),
    },
)

# --- ledger row 28: the CLIP score ---

clip_score = dict(
    reference=_clip_score,
    hint=[
        "Compare the guide's number with a published CLIP score: what scale, and what happens to a negative cosine?",
        "Normalise both embeddings, take each pair's cosine, clamp it at 0, multiply by 100, average over pairs.",
        "cos = F.cosine_similarity(image_embeddings, text_embeddings, dim=1); return float((100 * cos.clamp(min=0)).mean())",
    ],
    mistakes={
        "100 cos without the clamp at 0: a mismatched pair lowers the score below what the metric allows": (
            lambda image_embeddings, text_embeddings: float(
                100 * F.cosine_similarity(image_embeddings.double(), text_embeddings.double(), dim=1).mean()
            )
        ),
        "a dot product of unnormalised embeddings, not their cosine": lambda image_embeddings, text_embeddings: float(
            (100 * (image_embeddings.double() * text_embeddings.double()).sum(1).clamp(min=0)).mean()
        ),
    },
)

# --- pitfall: the off-by-one in t ---


def _alpha_bar_prev(sched, t):
    return sched.alpha_bar_prev[t]


alpha_bar_prev = dict(
    reference=_alpha_bar_prev,
    hint=[
        "What is alpha_bar_{t-1} at t = 0, the first noise level, and what does alpha_bar[t - 1] give there?",
        "alpha_bar_{t-1} at t = 0 is 1 (no noise before the first step): index sched.alpha_bar_prev, which starts at 1.",
        "return sched.alpha_bar_prev[t]",
    ],
    mistakes={
        "alpha_bar[t]: no shift at all, the current level instead of the previous one": lambda sched, t: (
            sched.alpha_bar[t]
        ),
        "alpha_bar[max(t - 1, 0)]: at t = 0 it gives alpha_bar_0, not 1": lambda sched, t: sched.alpha_bar[
            (t - 1).clamp(min=0)
        ],
    },
)

# --- pitfall: the EMA on the wrong weights ---


def on_copies(update):
    """An in-place EMA update -> a function that runs it on copies of both modules and returns the EMA's state."""

    @functools.wraps(update)
    def run(ema, model, decay):
        ema, model = copy.deepcopy(ema), copy.deepcopy(model)
        update(ema, model, decay)
        return [v.detach().clone() for v in ema.state_dict().values()]

    return run


ema_roles = dict(
    reference=nb04.ema_update["reference"],
    hint=[
        "After the call, which module has changed: the average or the network being trained?",
        "ema_update(ema, model, decay) moves ema's parameters towards model's and leaves model alone.",
        nb04.ema_update["hint"][-1],
    ],
    mistakes=nb04.ema_update["mistakes"],
)

# --- the quizzes: plain data for dlib.quiz.Quiz; every numeric answer is asserted against dlib in the notebook ---


def _num(id, prompt, answer, explanation, abs_tol=0.0, rel_tol=0.0, ref=""):
    return dict(kind="numeric", id=id, prompt=prompt, answer=answer, explanation=explanation, abs_tol=abs_tol, rel_tol=rel_tol, ref=ref)  # fmt: skip


def _mc(id, prompt, options, answer, explanation, ref=""):
    return dict(kind="choice", id=id, prompt=prompt, options=options, answer=answer, explanation=explanation, ref=ref)  # fmt: skip


# fmt: off
NUMBERS = [
    _num("ab-999", "Linear schedule (T = 1000, beta_t from 1e-4 to 0.02): alpha_bar at t = 999, the noisiest level?", 4.036e-5, "The product of 1000 factors 1 - beta_t, about exp(-sum beta_t) = exp(-10.1): x_999 keeps sqrt(4e-5), 0.6%, of the signal's amplitude.", rel_tol=0.05, ref="02_noise_schedules"),
    _num("ab-499", "Same schedule: alpha_bar at t = 499, halfway?", 0.0786, "Already below 0.08: the linear schedule destroys most of the signal in its first half, one motivation for the cosine schedule.", rel_tol=0.05, ref="02_noise_schedules"),
    _num("log-snr-999", "Same schedule: the log-SNR log(alpha_bar / (1 - alpha_bar)) at t = 999?", -10.12, "log(4.04e-5) - log(1 - 4.04e-5) = -10.12: not minus infinity, so the last level still leaks a little signal.", abs_tol=0.05, ref="02_noise_schedules"),
    _num("cosine-last-beta", "Cosine schedule (Nichol & Dhariwal, s = 0.008) as dlib builds it: the last beta, beta_999?", 0.999, "f reaches 0 at the end, so 1 - f(u') / f(u) is 1 there; it is clipped at 0.999 (the study guide clips at 0.9999).", abs_tol=1e-4, ref="02_noise_schedules, Exercise 1"),
    _num("leading-first-t", "A 50-step DDIM grid with leading spacing (0, 20, ..., reversed): the first, noisiest t the network sees?", 980, "49 x 20 = 980: x_T ~ N(0, I) is handed to a network asked about t = 980, whose alpha_bar is not 0. Trailing spacing starts at 999.", ref="05_sampling, Exercise 3"),
    _num("trailing-last-t", "The trailing 50-step grid, dlib.samplers.timesteps(1000, 50): the last t where the network is called, before the final jump to the data?", 19, "999 - 49 x 20 = 19; the step from t = 19 goes straight to alpha_bar = 1.", ref="05_sampling, section 2"),
    _num("sd-numbers", "Stable Diffusion's autoencoder maps a 3 x 512 x 512 image to a 4 x 64 x 64 latent. How many times fewer numbers?", 48, "786,432 / 16,384 = 48: 8x per side is 64x fewer positions, and 4 latent channels against 3 colours make it 48x fewer numbers.", ref="07_latent_diffusion, section 1"),
    _num("multiscale-side", "At scale 0.75 a 28-pixel image has 21 pixels. After one stride-2 convolution (kernel 3, padding 1) and a 2x upsampling, how many pixels per side come back?", 22, "21 -> 11 -> 22 against a 21-pixel skip: the concatenation fails. Pad to a multiple of the total downsampling.", ref="04_training, section 5"),
    _num("clip-score", "Two image-caption pairs have cosine similarities 0.5 and -0.2. Their CLIP score, the mean of 100 max(cos, 0)?", 25.0, "(50 + 0) / 2 = 25; the study guide's plain mean cosine would say 0.15.", abs_tol=1e-6, ref="10_metrics, section 4.5"),
    _num("dsm-variance", "Denoising score matching at the single level sigma = 0.01: the variance per dimension of the target -eps / sigma?", 1e4, "1 / sigma^2 = 10^4: the target is mostly noise, which is why NCSN trains many levels and weights each by sigma^2.", rel_tol=1e-6, ref="11_score_and_flow, section 2"),
    _num("norm-groups-48", "dlib's GroupNorm for 48 channels (the largest count <= 32 dividing C with >= 4 channels per group): how many groups?", 12, "48 / 12 = 4 channels per group; 16 groups would leave 3. GroupNorm(32, 48) raises.", ref="03_unet, sections 3a-3c"),
]

GUIDE = [
    _mc("guide-01-forward-step", "Row 1. The guide's forward step: q(x_t | x_{t-1}) = N(sqrt(1 - beta_t) x_{t-1}, beta_t I). What is wrong with it?", ("Nothing: shrinking by sqrt(1 - beta_t) keeps a unit variance at unit variance", "The mean must be sqrt(beta_t) x_{t-1}", "The variance must be 1 - beta_t"), 0, "Correct as written: (1 - beta_t) + beta_t = 1.", "01_forward_process, section 1"),
    _mc("guide-02-indexing", "Row 2. The guide writes alpha_bar_t = prod_{s=1}^t alpha_s. Which index of sched.alpha_bar holds the paper's alpha_bar_1?", ("1", "0", "T - 1"), 1, "Correct in the paper's 1-indexed convention; the course counts t from 0, so the paper's t is ours + 1 (docs/NOTATION.md, section 2).", "01_forward_process, Exercise 1"),
    _mc("guide-03-reverse-gaussian", "Row 3. The guide models p_theta(x_{t-1} | x_t) as a Gaussian. When is that justified?", ("Always: the reverse of a Gaussian chain is Gaussian", "When beta_t is small: the true reverse step is then close to Gaussian; large steps make it multi-modal", "Only when the data are Gaussian"), 1, "Correct as written, for small steps; the course shows a large step where the Gaussian fails.", "01_forward_process, section 2.1"),
    _mc("guide-04-bound", "Row 4. The guide calls the variational bound L a lower bound. Which statement is right?", ("L is a lower bound on log p(x_0)", "L bounds -log p(x_0) from above; its negative, the ELBO, bounds log p(x_0) from below", "L is a lower bound on -log p(x_0)"), 1, "The guide has the direction of the word wrong, not the formula.", "01_forward_process, section 3"),
    _mc("guide-05-l-simple", "Row 5. L_simple = E ||eps - eps_theta(sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps, t)||^2 with t uniform. What is wrong?", ("Nothing: it is Ho et al.'s unweighted objective", "Each term needs the weight beta_t", "The target must be x_0"), 0, "Correct as written; dropping the bound's weights is the point of L_simple.", "04_training, Exercise 1"),
    _mc("guide-06-linear-T", "Row 6. The guide's linear schedule uses beta_t from 1e-4 to 0.02 whatever T. At T = 100, alpha_bar at the last step is", ("about 4e-5, as at T = 1000", "about 0.36: far too little noise for x_T ~ N(0, I)", "exactly 0"), 1, "The fixed range does not scale with T: 100 steps of at most 0.02 add far less noise than 1000.", "02_noise_schedules, section 5"),
    _mc("guide-07-cosine", "Row 7. The guide's cosine schedule clips the betas below at 1e-4. What does that change?", ("The first steps: the cosine schedule's first betas are about 4e-5, so the clip adds noise there", "Nothing: no beta is below 1e-4", "Only the last step"), 0, "Besides, it computes in float32 and clips above at 0.9999 (Nichol & Dhariwal: 0.999).", "02_noise_schedules, Exercise 1"),
    _mc("guide-08-unet", "Row 8. The guide's UNet builds its up path with ResBlock(2 * model_channels, ...) but has no forward. Run its layer lists in order and", ("it works, but ignores the skips", "it raises a RuntimeError about a weight shape: the block expects a concatenated skip that nothing provides", "it raises an IndexError"), 1, "Dropping the 2 * makes it run with no skips at all: the decoder is then blind to most of the encoder's full-resolution detail.", "03_unet, section 8"),
    _mc("guide-11-embedding", "Row 11. The guide's timestep embedding: cos block first, geometric frequencies, one zero column for an odd dim. What is wrong?", ("Nothing", "The frequencies must be spaced linearly", "The sin block must come first"), 0, "Correct as written; dlib's timestep_embedding has the same layout.", "03_unet, Exercise 1"),
    _mc("guide-12-ddpm-sample", "Row 12. The guide's DDPM sampler adds sqrt(beta_t) z at each step. Is that variance right?", ("Yes: beta_t is one of DDPM's two choices; beta_tilde_t is the other", "No: it must be beta_tilde_t", "No: the noise must be added at t = 0 too"), 0, "Correct as a sketch (its schedule arrays are globals).", "05_sampling, section 1"),
    _mc("guide-14-dpm-solver", "Row 14. The guide's 'dpm_solver_sample' gives -eps_theta to an RK45 solver as dx/dt, for t from 1 to 0. The main error?", ("RK45 is too slow", "eps is not the velocity of the probability-flow ODE (no drift term), and t in [0, 1] goes to a network trained on 0..999", "It should use Euler's method"), 1, "It is neither DPM-Solver nor the probability-flow ODE.", "05_sampling, section 4"),
    _mc("guide-15-class-unet", "Row 15. The guide's ClassConditionedUNet adds the class embedding to the time embedding and passes the sum to UNet.forward. What goes wrong?", ("Nothing: that is how labels enter", "The (B, 128) sum goes where (B,) timesteps belong, and with no null label classifier-free guidance is impossible", "The label must be concatenated to the image"), 1, "It also reads self.model_channels, which it never stored.", "06_conditioning, find the bug"),
    _mc("guide-16-cross-attention", "Row 16. The guide's cross-attention has no mask. A 4-token prompt padded to 8 tokens:", ("the padding tokens receive attention and change the output", "nothing changes: the softmax ignores them", "raises an error"), 0, "Mask the padding keys to -inf before the softmax; the block also lacks a norm before the queries.", "06_conditioning, Exercise 4"),
    _mc("guide-17-cfg-null", "Row 17. The guide's CFG sampler uses a zero embedding as the null condition. When is that right?", ("Always", "Only if the model was trained with that same zero embedding as its dropped condition", "Never"), 1, "The unconditional prediction is whatever the model learned for the null it was trained with; the guide's sampler also calls undefined functions.", "06_conditioning, Exercise 3"),
    _mc("guide-18-dalle2", "Row 18. The guide's DALL-E 2 diagram: which order is right?", ("text -> CLIP text embedding -> prior -> CLIP image embedding -> diffusion decoder", "text -> diffusion decoder -> CLIP image embedding", "text -> prior -> CLIP text embedding -> decoder"), 0, "Correct as a diagram.", "07_latent_diffusion, section 3"),
    _mc("guide-21-controlnet", "Row 21. The guide's ControlNet trains the copy as the main network and feeds it the control image in place of its input. ControlNet instead", ("locks the original, trains the copy, and adds the control through a zero-initialised convolution", "fine-tunes the original network", "replaces the image input with the control"), 0, "At initialisation the output equals the locked original's.", "08_editing, section 5"),
    _mc("guide-22-wavegrad", "Row 22. The guide's WaveGrad adds mel features (one per frame) to the audio (one per sample). The fix?", ("Upsample the mel to the audio rate first (transposed convolutions by the hop length)", "Downsample the audio to frames", "Average the mel over time"), 0, "Its noise_level_mlp and ResidualBlock are undefined too.", "09_audio, section 4"),
    _mc("guide-23-progressive", "Row 23. The guide's progressive training schedule, as a schedule:", ("is fine; the bug is in the multi-scale loss that goes with it (row 24)", "must shrink the resolution over training", "must change the resolution every step"), 0, "Correct as a schedule.", "04_training, section 5"),
    _mc("guide-26-fid", "Row 26. The guide's FID takes scipy's sqrtm of S_1 S_2 and keeps .real. What can go wrong?", ("sqrtm can return complex parts that are dropped silently, and FID is biased at small sample sizes", "Nothing", "The trace terms are wrong"), 0, "The formula is right; dlib takes a symmetric square root instead.", "10_metrics, Exercise 1"),
    _mc("guide-29-dsm", "Row 29. The guide's score matching uses one noise level, sigma = 0.01. The trouble?", ("The target -eps / sigma has variance 10^4, and one small level leaves the low-density regions untrained", "sigma is too large", "Nothing"), 0, "NCSN: many levels, each weighted by sigma^2.", "11_score_and_flow, Exercise 1"),
    _mc("guide-30-flow", "Row 30. Lipman et al. put the data at t = 1; the course at t = 0. A velocity learned in one convention, used in the other, is", ("the same", "the negative", "zero"), 1, "The guide's loss is right if t is (B, 1, ..., 1), but it does not say which end is the data.", "11_score_and_flow, Exercise 3"),
    _mc("guide-31-consistency", "Row 31. The guide's consistency training draws independent noise at the two times. Why is that wrong?", ("The pair must lie on one ODE path, so they share one eps", "It needs more noise", "Independent noise is fine"), 0, "It also lacks a target network (EMA, no gradient) and the boundary condition f(x, sigma_min) = x.", "12_fast_sampling, Exercise 2"),
]
# fmt: on

# --- the ledger (docs/STUDY_GUIDE_BUGS.md), row by row: where notebook 13 practises it ---

LEDGER = {
    1: "quiz guide-01-forward-step", 2: "quiz guide-02-indexing", 3: "quiz guide-03-reverse-gaussian",
    4: "quiz guide-04-bound", 5: "quiz guide-05-l-simple", 6: "quiz guide-06-linear-T", 7: "quiz guide-07-cosine",
    8: "quiz guide-08-unet", 9: "bug group_norm", 10: "bug attention", 11: "quiz guide-11-embedding",
    12: "quiz guide-12-ddpm-sample", 13: "bug ddim_grid", 14: "quiz guide-14-dpm-solver", 15: "quiz guide-15-class-unet",
    16: "quiz guide-16-cross-attention", 17: "quiz guide-17-cfg-null", 18: "quiz guide-18-dalle2", 19: "quiz sd-numbers",
    20: "bug replace_step", 21: "quiz guide-21-controlnet", 22: "quiz guide-22-wavegrad", 23: "quiz guide-23-progressive",
    24: "quiz multiscale-side", 25: "bug broadcasting", 26: "quiz guide-26-fid", 27: "bug inception_score",
    28: "bug clip_score", 29: "quiz dsm-variance", 30: "quiz guide-30-flow", 31: "quiz guide-31-consistency",
}  # fmt: skip
