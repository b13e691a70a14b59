"""Audio for notebook 09: spoken digits, log-mel spectrograms, Griffin-Lim and spectral distances.

Waveforms are float tensors in [-1, 1] at ``SAMPLE_RATE`` = 8 kHz (the Free Spoken Digit Dataset's
rate), shaped (L,) or (B, L). The log-mel transform, with every parameter named here:

- STFT: a periodic Hann window of ``N_FFT`` = 512 samples (64 ms), hop ``HOP`` = 192 samples (24 ms),
  frame m centred on sample m * HOP (the signal zero-padded by N_FFT / 2 at both ends), so a waveform
  of L samples gives L // HOP frames and frame m belongs to samples [m * HOP, (m + 1) * HOP);
- magnitudes |X| (not power) through ``N_MELS`` = 32 triangular filters, evenly spaced on the HTK mel
  scale mel(f) = 2595 log10(1 + f / 700) from 0 Hz to 4 kHz (Nyquist), each peaking at 1;
- the natural log, floored at ``MEL_FLOOR`` = 1e-5.

``mel_image`` maps a log-mel to [-1, 1] (the floor, i.e. silence, to -1), the form the image U-Net and
the classifier take; a ``CLIP`` of 6,144 samples (0.768 s) gives a 32 x 32 image.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from dlib import data

SAMPLE_RATE = 8000
N_FFT = 512
HOP = 192
N_MELS = 32
MEL_FLOOR = 1e-5
CLIP = 32 * HOP  # 6144 samples: the fixed length of a clip, 32 frames
PEAK = 0.9  # every recording is scaled to this peak amplitude (peak_normalise)
LOG_MEL_RANGE = (math.log(MEL_FLOOR), 5.5)  # log-mels mapped to [-1, 1] by mel_image (FSDD peaks at 4.9)


def check_waveform(x, sample_rate: int = SAMPLE_RATE, *, what: str = "audio", clipped_ok: bool = False) -> torch.Tensor:
    """The waveform as float32 (L,) or (B, L) in [-1, 1], or a clear error for audio this course cannot read.

    int16 samples (a WAV file's) are scaled by 1 / 32768. Refused: another sample rate, more than one
    channel (a WAV file's (L, C) layout; (B, L) is a batch), an empty array, non-finite values, and, unless
    ``clipped_ok``, clipped recordings (more than 1% of the samples at full scale).
    """
    if sample_rate != SAMPLE_RATE:
        raise ValueError(f"{what}: expected {SAMPLE_RATE} Hz audio, got {sample_rate} Hz; resample it first")
    x = torch.as_tensor(np.asarray(x) if not torch.is_tensor(x) else x)
    if x.dtype == torch.int16:
        x = x.float() / 32768
    if not x.is_floating_point():
        raise ValueError(f"{what}: expected float samples in [-1, 1] or int16, got {x.dtype}")
    if x.ndim == 2 and 2 <= x.shape[-1] <= 8 < x.shape[0]:
        raise ValueError(f"{what}: got {x.shape[-1]} channels (shape {tuple(x.shape)}); expected mono: average them")
    if x.ndim == 3 and x.shape[1] != 1:
        raise ValueError(f"{what}: got {x.shape[1]} channels (shape {tuple(x.shape)}); expected mono (B, L)")
    x = x.float().reshape(-1, x.shape[-1]) if x.ndim == 3 else x.float()
    if x.ndim not in (1, 2) or x.numel() == 0:
        raise ValueError(f"{what}: expected a mono waveform (L,) or a batch (B, L) with L > 0, got {tuple(x.shape)}")
    if not torch.isfinite(x).all():
        raise ValueError(f"{what}: contains NaN or infinite samples")
    if x.abs().max() > 1:
        raise ValueError(f"{what}: samples must lie in [-1, 1], max |x| is {float(x.abs().max()):.3g}")
    clipped = (x.abs() >= 0.999).float().mean(-1).max()
    if clipped > 0.01 and not clipped_ok:
        raise ValueError(f"{what}: {100 * float(clipped):.1f}% of the samples are at full scale (clipped audio)")
    return x


def hz_to_mel(f):
    """The HTK mel scale: 2595 log10(1 + f / 700)."""
    return 2595 * np.log10(1 + np.asarray(f, dtype=np.float64) / 700)


def mel_to_hz(m):
    return 700 * (10 ** (np.asarray(m, dtype=np.float64) / 2595) - 1)


def mel_filterbank(n_mels: int = N_MELS, n_fft: int = N_FFT, sample_rate: int = SAMPLE_RATE) -> torch.Tensor:
    """(n_mels, n_fft // 2 + 1) triangular filters: filter k rises from mel point k to k + 1 and falls to k + 2,
    n_mels + 2 points evenly spaced in mel from 0 Hz to the Nyquist frequency."""
    bins = np.linspace(0, sample_rate / 2, n_fft // 2 + 1)
    points = mel_to_hz(np.linspace(0, hz_to_mel(sample_rate / 2), n_mels + 2))
    lo, mid, hi = points[:-2, None], points[1:-1, None], points[2:, None]
    rise, fall = (bins - lo) / (mid - lo), (hi - bins) / (hi - mid)
    return torch.from_numpy(np.clip(np.minimum(rise, fall), 0, None)).float()


def stft(x: torch.Tensor) -> torch.Tensor:
    """Complex STFT (..., N_FFT // 2 + 1, L // HOP): frame m centred on sample m * HOP, zero-padded ends."""
    lead = x.shape[:-1]
    spec = torch.stft(
        x.reshape(-1, x.shape[-1]), N_FFT, HOP, window=torch.hann_window(N_FFT, device=x.device),
        center=True, pad_mode="constant", return_complex=True,
    )  # fmt: skip
    return spec[..., : x.shape[-1] // HOP].reshape(*lead, N_FFT // 2 + 1, -1)


def log_mel(x, sample_rate: int = SAMPLE_RATE) -> torch.Tensor:
    """The log-mel spectrogram (..., N_MELS, L // HOP) of a waveform (L,) or (B, L); see the module's docstring."""
    x = check_waveform(x, sample_rate, clipped_ok=True)
    if x.shape[-1] < HOP:
        raise ValueError(f"audio of {x.shape[-1]} samples is shorter than one hop ({HOP} samples)")
    mel = mel_filterbank().to(x.device) @ stft(x).abs()
    return mel.clamp_min(MEL_FLOOR).log()


def mel_image(logmel: torch.Tensor) -> torch.Tensor:
    """Log-mel -> [-1, 1] (the floor, silence, at -1), the scale the U-Net and the classifier see."""
    lo, hi = LOG_MEL_RANGE
    return ((logmel - lo) / (hi - lo) * 2 - 1).clamp(-1, 1)


def image_to_log_mel(image: torch.Tensor) -> torch.Tensor:
    lo, hi = LOG_MEL_RANGE
    return (image.clamp(-1, 1) + 1) / 2 * (hi - lo) + lo


def check_mel(mel: torch.Tensor, what: str = "mel") -> torch.Tensor:
    """A batch of mel images (B, N_MELS, frames) (or (B, 1, N_MELS, frames)), else a clear error."""
    if mel.ndim == 4 and mel.shape[1] == 1:
        mel = mel[:, 0]
    if mel.ndim != 3 or mel.shape[1] != N_MELS or mel.shape[2] < 1:
        raise ValueError(
            f"{what}: expected shape (B, {N_MELS}, frames) or (B, 1, {N_MELS}, frames), got {tuple(mel.shape)}"
        )
    return mel


def griffin_lim(image: torch.Tensor, iters: int = 64, momentum: float = 0.99, seed: int = 0) -> torch.Tensor:
    """The non-learned baseline: mel image (B, N_MELS, M) -> waveform (B, M * HOP).

    Linear magnitudes from the mel ones by the pseudo-inverse of the filterbank (clamped at 0), then the fast Griffin-Lim phase
    iteration (Perraudin et al. 2013): alternate between the consistent STFT of the current waveform and the
    target magnitude, with momentum. The phase is what a mel spectrogram does not keep.
    """
    mel = image_to_log_mel(check_mel(image)).exp()
    fb = mel_filterbank().to(mel.device)
    mag = (torch.linalg.pinv(fb) @ mel).clamp_min(0)  # (B, F, M): the least-squares inverse of the filters
    mag = torch.cat([mag, torch.zeros_like(mag[..., :1])], -1)  # istft wants the frame at the very end too
    length = image.shape[-1] * HOP
    window = torch.hann_window(N_FFT, device=mel.device)
    gen = torch.Generator().manual_seed(seed)
    angles = torch.exp(2j * math.pi * torch.rand(mag.shape, generator=gen)).to(mel.device)
    previous = torch.zeros_like(angles)
    for _ in range(iters):
        x = torch.istft(mag * angles, N_FFT, HOP, window=window, length=length)
        rebuilt = torch.stft(x, N_FFT, HOP, window=window, pad_mode="constant", return_complex=True)
        angles = rebuilt - momentum / (1 + momentum) * previous
        angles, previous = angles / angles.abs().clamp_min(1e-8), rebuilt
    return torch.istft(mag * angles, N_FFT, HOP, window=window, length=length).clamp(-1, 1)


def log_mel_distance(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """Mean |log-mel(real) - log-mel(fake)| per clip (B,), in nats: how far apart two waveforms sound.

    The mean runs over the frames where ``real`` is not digital silence (every band at the floor): the zeros a clip is
    padded with are not part of the recording, and a faint hiss over them (log of a tiny magnitude against log of the
    floor) would otherwise dominate the distance. A silent ``real`` uses every frame.
    """
    a, b = log_mel(real), log_mel(fake)
    active = (a > math.log(MEL_FLOOR)).any(-2, keepdim=True).to(a)  # (..., 1, frames)
    active = torch.where(active.sum(-1, keepdim=True) > 0, active, torch.ones_like(active))
    return ((a - b).abs() * active).sum((-2, -1)) / (active.sum((-2, -1)) * a.shape[-2])


def spectral_convergence(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """|| |S_real| - |S_fake| ||_F / || |S_real| ||_F per clip (B,) on linear STFT magnitudes (Arik et al. 2019)."""
    a, b = stft(real).abs(), stft(fake).abs()
    return torch.linalg.norm((a - b).flatten(-2), dim=-1) / torch.linalg.norm(a.flatten(-2), dim=-1).clamp_min(1e-8)


def peak_normalise(x: torch.Tensor, peak: float = PEAK) -> torch.Tensor:
    """Scale a recording (L,) so that its largest |sample| is ``peak``: the recordings differ in loudness by a factor of
    ten, and quiet speech is a tiny signal next to the unit-variance noise of diffusion."""
    return x * (peak / x.abs().max().clamp_min(1e-8))


def fit_clip(x: torch.Tensor, length: int = CLIP) -> torch.Tensor:
    """Zero-pad on the right, or cut, the last axis to ``length`` samples (the word starts each clip)."""
    return torch.nn.functional.pad(x, (0, max(0, length - x.shape[-1])))[..., :length]


def clips(split: str = "train", held_out_speaker: str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """FSDD clips (N, CLIP), each peak-normalised and fitted to 0.768 s by ``fit_clip``, and their digits (N,); see
    ``dlib.data.load_fsdd`` for the splits."""
    recordings, digits, _ = data.load_fsdd(split, held_out_speaker)
    return torch.stack([fit_clip(peak_normalise(r)) for r in recordings]), digits


def mel_images(split: str = "train", held_out_speaker: str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The spoken digits as 32 x 32 mel images (N, 1, N_MELS, 32) in [-1, 1], and their digits (N,)."""
    x, digits = clips(split, held_out_speaker)
    return mel_image(log_mel(x)).unsqueeze(1), digits


def segments(split: str = "train", frames: int = 12, stride: int = 6) -> torch.Tensor:
    """The vocoder's training data: every recording, peak-normalised and followed by half a window of silence (a
    clip is padded with silence too), cut into windows of ``frames * HOP`` samples, one every ``stride`` frames:
    (N, frames * HOP)."""
    recordings, _, _ = data.load_fsdd(split)
    size, step = frames * HOP, stride * HOP
    out = []
    for r in recordings:
        r = fit_clip(peak_normalise(r), len(r) + size // 2)  # and the silence after the word that a clip has
        r = fit_clip(r, max(size, math.ceil((len(r) - size) / step) * step + size))
        out.append(r.unfold(0, size, step))
    return torch.cat(out)


def listen(clips: dict[str, torch.Tensor], sample_rate: int = SAMPLE_RATE):
    """An HTML table for a notebook: each clip's name, its log-mel spectrogram (low frequencies at the bottom, one
    colour scale for all) and a player. ``clips`` maps a name to a waveform (L,) in [-1, 1]."""
    import base64
    import html
    import io

    import matplotlib.pyplot as plt
    from IPython.display import HTML, Audio

    rows = []
    for name, wave in clips.items():
        wave = check_waveform(wave.detach().float().cpu().flatten(), sample_rate, what=name, clipped_ok=True)
        fig, ax = plt.subplots(figsize=(3.0, 1.2))
        ax.imshow(
            log_mel(wave), origin="lower", aspect="auto", cmap="magma", vmin=LOG_MEL_RANGE[0], vmax=LOG_MEL_RANGE[1]
        )
        ax.set_axis_off()
        buf = io.BytesIO()
        fig.savefig(buf, format="png", bbox_inches="tight", dpi=72)
        plt.close(fig)
        image = base64.b64encode(buf.getvalue()).decode()
        player = Audio(wave.numpy(), rate=sample_rate, normalize=False)._repr_html_()
        rows.append(
            f"<tr><td>{html.escape(name)}</td><td><img src='data:image/png;base64,{image}'></td><td>{player}</td></tr>"
        )
    return HTML("<table><tr><th>clip</th><th>log-mel (0-4 kHz)</th><th>listen</th></tr>" + "".join(rows) + "</table>")
