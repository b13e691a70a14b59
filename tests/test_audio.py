"""Notebook 09's audio stack: the log-mel transform (``dlib.audio``), the Free Spoken Digit Dataset
(``dlib.data.load_fsdd``), Griffin-Lim and the spectral distances, the diffusion vocoder's network
(``dlib.nets.vocoder``), its continuous-level training loss (``dlib.wavegrad``), its sampler and schedule search
(``dlib.samplers.vocoder``) and the seconds-scale "vocoder-tiny" recipe (training, exact resume, reloading).

Ground truth is independent of the code under test: a log-mel spectrogram written here with numpy and scipy only
(scipy's periodic Hann window, explicit framing, ``np.fft.rfft``, an HTK filterbank built with ``np.interp``) on a
synthetic chirp and pure tones; the HTK mel scale's anchor mel(1000 Hz) ~ 1000; the raw ``fsdd.npz`` arrays read
with ``np.load`` for the dataset's splits and windows; closed forms for one ancestral step, for the loss with a model
that knows eps and for E|eps| = sqrt(2 / pi); and diffusers' ``DDPMScheduler`` for the multi-step sampler. No trained
network is used: the sampler tests run stand-in networks, and the training tests a 4-step run.
"""

import collections
import dataclasses
import math
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import scipy.signal
import torch

from dlib import audio, checkpoint, data, evaluate_audio
from dlib.audio import CLIP, HOP, LOG_MEL_RANGE, MEL_FLOOR, N_FFT, N_MELS, SAMPLE_RATE
from dlib.batches import build_condition, load_training_data
from dlib.config import TrainConfig, config_from_dict, config_to_dict
from dlib.nets import UNet, UNetConfig
from dlib.nets.vocoder import Vocoder, VocoderConfig
from dlib.pipelines import speak
from dlib.recipes import RECIPES
from dlib.samplers.vocoder import (
    FAST_SCHEDULES,
    check_betas,
    geometric_betas,
    linear_betas,
    search_schedule,
    vocode,
)
from dlib.schedules import get_schedule
from dlib.train import train
from dlib.wavegrad import VocoderLoss, level_grid, sample_levels

ROOT = Path(__file__).resolve().parent.parent
FSDD_NPZ = ROOT / "data" / "fsdd" / "fsdd.npz"


def g(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# --- an independent log-mel, numpy and scipy only ---


def ref_mel(f):
    return 2595 * np.log10(1 + np.asarray(f, dtype=np.float64) / 700)


def ref_hz(m):
    return 700 * (10 ** (np.asarray(m, dtype=np.float64) / 2595) - 1)


def ref_filterbank(n_fft: int = N_FFT) -> tuple[np.ndarray, np.ndarray]:
    """HTK triangles with peak 1 on N_MELS + 2 points evenly spaced in mel from 0 to 4 kHz; also the centres (Hz)."""
    points = ref_hz(np.linspace(0.0, ref_mel(SAMPLE_RATE / 2), N_MELS + 2))
    bins = np.arange(n_fft // 2 + 1) * SAMPLE_RATE / n_fft
    rows = [np.interp(bins, points[k : k + 3], [0.0, 1.0, 0.0], left=0.0, right=0.0) for k in range(N_MELS)]
    return np.stack(rows), points[1:-1]


def ref_magnitudes(x: np.ndarray) -> np.ndarray:
    """|STFT| (N_FFT // 2 + 1, L // HOP): periodic Hann, frame m centred on sample m * HOP, zero-padded ends."""
    window = scipy.signal.get_window("hann", N_FFT)  # periodic ("fftbins=True") by default
    padded = np.pad(np.asarray(x, dtype=np.float64), N_FFT // 2)
    frames = np.stack([padded[m * HOP : m * HOP + N_FFT] * window for m in range(len(x) // HOP)], axis=1)
    return np.abs(np.fft.rfft(frames, axis=0))


def ref_log_mel(x: np.ndarray) -> np.ndarray:
    return np.log(np.maximum(ref_filterbank()[0] @ ref_magnitudes(x), MEL_FLOOR))


def chirp(amplitude: float = 0.5, seconds: float = 0.5) -> np.ndarray:
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    return amplitude * scipy.signal.chirp(t, f0=100, t1=seconds, f1=3500, method="linear")


def tone(f: float, n: int = 2400, amplitude: float = 0.5) -> np.ndarray:
    return amplitude * np.sin(2 * np.pi * f * np.arange(n) / SAMPLE_RATE)


# --- constants, the mel scale and the filterbank ---


def test_constants_fit_together():
    assert CLIP == 32 * HOP == 6144 and CLIP / SAMPLE_RATE == pytest.approx(0.768)
    assert LOG_MEL_RANGE[0] == pytest.approx(math.log(MEL_FLOOR)) and LOG_MEL_RANGE[1] > 0
    assert N_FFT / SAMPLE_RATE == pytest.approx(0.064) and HOP / SAMPLE_RATE == pytest.approx(0.024)


def test_htk_mel_scale_round_trips_and_has_its_anchor():
    m = np.linspace(0, 3000, 31)
    np.testing.assert_allclose(audio.hz_to_mel(audio.mel_to_hz(m)), m, rtol=1e-12, atol=1e-9)
    f = np.array([0.0, 50.0, 700.0, 4000.0])
    np.testing.assert_allclose(audio.mel_to_hz(audio.hz_to_mel(f)), f, rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(audio.hz_to_mel(f), ref_mel(f), rtol=1e-12)
    assert abs(float(audio.hz_to_mel(1000)) - 1000) < 0.5  # the HTK scale's defining property
    assert float(audio.hz_to_mel(0)) == 0.0 and np.all(np.diff(audio.hz_to_mel(np.linspace(0, 4000, 50))) > 0)


def test_mel_filterbank_is_the_htk_triangles():
    fb = audio.mel_filterbank()
    assert fb.shape == (N_MELS, N_FFT // 2 + 1) and fb.dtype == torch.float32
    assert (fb >= 0).all() and (fb <= 1 + 1e-6).all()
    expected, centres = ref_filterbank()
    np.testing.assert_allclose(fb.numpy(), expected, atol=1e-6)
    for row in fb.numpy():
        support = np.flatnonzero(row)
        assert np.all(np.diff(support) == 1), "a triangle's support is one run of bins"
        peak = support[np.argmax(row[support])]
        assert np.all(np.diff(row[support[0] : peak + 1]) >= 0) and np.all(np.diff(row[peak : support[-1] + 1]) <= 0)
        assert row.max() > 0.8  # the bin grid (15.6 Hz) need not hit the centre
    assert np.all(np.diff(fb.argmax(1).numpy()) >= 0) and np.all(np.diff(centres) > 0)
    fine = audio.mel_filterbank(n_fft=1 << 15)  # bins 0.24 Hz apart: every triangle reaches ~1 at its centre
    assert torch.allclose(fine.max(1).values, torch.ones(N_MELS), atol=0.01)
    np.testing.assert_allclose(fine.numpy(), ref_filterbank(1 << 15)[0], atol=1e-6)


# --- the log-mel transform ---


def test_log_mel_matches_an_independent_numpy_reference_on_a_chirp():
    x = chirp()
    ours = audio.log_mel(torch.tensor(x, dtype=torch.float32)).double().numpy()
    ref = ref_log_mel(x)
    assert ours.shape == ref.shape == (N_MELS, len(x) // HOP)
    # float32 STFT: magnitudes agree to ~1e-7 of the peak, so logs agree wherever the band holds any energy
    np.testing.assert_allclose(np.exp(ours), np.exp(ref), rtol=0, atol=1e-5 * np.exp(ref).max())
    loud = ref > ref.max() - 8
    assert loud.mean() > 0.25
    np.testing.assert_allclose(ours[loud], ref[loud], rtol=0, atol=1e-4)


def test_log_mel_batches_like_single_clips():
    x = torch.tensor(np.stack([chirp(), chirp()[::-1].copy(), tone(440, 4000)]), dtype=torch.float32)
    batch = audio.log_mel(x)
    assert batch.shape == (3, N_MELS, 4000 // HOP)
    for row, clip in zip(batch, x, strict=True):
        torch.testing.assert_close(row, audio.log_mel(clip), rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(audio.log_mel(x[:, None]), batch)  # (B, 1, L) is a batch of mono clips


def test_the_chirps_loudest_band_rises_over_time():
    peaks = audio.log_mel(torch.tensor(chirp(), dtype=torch.float32)).argmax(0).numpy()
    assert np.all(np.diff(peaks) >= 0), peaks
    assert peaks[0] <= 3 and peaks[-1] >= N_MELS - 4  # 100 Hz at the start, ~3.4 kHz at the last frame


@pytest.mark.parametrize("f", [300.0, 700.0, 1000.0, 2000.0, 3000.0, 3700.0])
def test_a_pure_tone_peaks_in_the_band_centred_nearest_it(f):
    centres = ref_filterbank()[1]
    lm = audio.log_mel(torch.tensor(tone(f), dtype=torch.float32))
    assert lm[:, 3:-3].argmax(0).unique().tolist() == [int(np.abs(centres - f).argmin())]  # frames away from the ends


def test_log_mel_scales_magnitudes_not_power():
    """Scaling a waveform by a adds log(a) (not 2 log(a), as power would) wherever no band is at the floor."""
    hiss = 0.01 * np.random.default_rng(0).standard_normal(4000)  # so that no band is at the floor
    x = torch.tensor(chirp(0.4) + hiss, dtype=torch.float32)
    base, louder = audio.log_mel(x), audio.log_mel(2 * x)
    assert base.min() > math.log(MEL_FLOOR) + 3
    torch.testing.assert_close(louder - base, torch.full_like(base, math.log(2)), rtol=0, atol=1e-3)
    assert audio.log_mel_distance(x, 2 * x).item() == pytest.approx(math.log(2), abs=1e-4)


@pytest.mark.parametrize("length", [HOP, HOP + 7, 2 * HOP - 1, 2 * HOP, 5000])
def test_log_mel_frame_count_and_locality(length):
    """L // HOP frames; frame m sees only samples within N_FFT / 2 of m * HOP (an impulse elsewhere: silence)."""
    n = length // 2
    x = torch.zeros(length)
    x[n] = 0.5
    lm = audio.log_mel(x)
    assert lm.shape == (N_MELS, length // HOP)
    for m in range(length // HOP):
        hears = abs(m * HOP - n) < N_FFT // 2
        assert bool((lm[:, m] > math.log(MEL_FLOOR) + 1).any()) == hears, m


def test_silence_is_the_floor_and_minus_one_as_an_image():
    lm = audio.log_mel(torch.zeros(2, 10 * HOP))
    torch.testing.assert_close(lm, torch.full((2, N_MELS, 10), math.log(MEL_FLOOR)))
    torch.testing.assert_close(audio.mel_image(lm), torch.full((2, N_MELS, 10), -1.0), rtol=0, atol=1e-6)


def test_log_mel_refuses_audio_shorter_than_a_hop():
    with pytest.raises(ValueError, match=f"shorter than one hop \\({HOP} samples\\)"):
        audio.log_mel(torch.zeros(HOP - 1))


# --- check_waveform ---


def _square(n: int = 4000) -> np.ndarray:
    return np.where(np.sin(2 * np.pi * 100 * np.arange(n) / SAMPLE_RATE) >= 0, 1.0, -1.0).astype(np.float32)


@pytest.mark.parametrize(
    ("x", "kwargs", "match"),
    [
        (np.zeros(1000, np.float32), {"sample_rate": 16000}, "expected 8000 Hz audio, got 16000 Hz"),
        (np.zeros((1000, 2), np.float32), {}, r"2 channels \(shape \(1000, 2\)\); expected mono"),
        (torch.zeros(3, 2, 1000), {}, r"2 channels \(shape \(3, 2, 1000\)\); expected mono \(B, L\)"),
        (np.zeros(0, np.float32), {}, r"L > 0, got \(0,\)"),
        (torch.zeros(2, 3, 4, 5), {}, r"mono waveform \(L,\) or a batch \(B, L\)"),
        (np.array([0.1, np.nan, 0.2], np.float32), {}, "NaN or infinite"),
        (np.array([0.1, np.inf, 0.2], np.float32), {}, "NaN or infinite"),
        (np.array([0.1, -1.5, 0.2], np.float32), {}, r"\[-1, 1\], max \|x\| is 1.5"),
        (_square(), {}, r"100.0% of the samples are at full scale \(clipped audio\)"),
        (np.zeros(100, np.int32), {}, "float samples in \\[-1, 1\\] or int16, got torch.int32"),
    ],
)
def test_check_waveform_refuses_audio_it_cannot_read(x, kwargs, match):
    with pytest.raises(ValueError, match=match):
        audio.check_waveform(x, **kwargs)


def test_check_waveform_names_the_input():
    with pytest.raises(ValueError, match="^reference: contains NaN"):
        audio.check_waveform(torch.tensor([float("nan")]), what="reference")


def test_check_waveform_refuses_an_empty_batch_with_a_value_error():
    """A batch of zero clips (0, L) is as empty as (0,); it should be refused clearly, like an empty clip."""
    with pytest.raises(ValueError, match="L > 0|empty"):
        audio.check_waveform(torch.zeros(0, 100))


def test_check_waveform_scales_int16_and_returns_float32():
    pcm = np.array([0, 16384, -16384, -32768, 32767, 1], dtype=np.int16)
    x = audio.check_waveform(np.concatenate([pcm, np.zeros(600, np.int16)]))
    assert x.dtype == torch.float32
    torch.testing.assert_close(x[:6], torch.tensor([0.0, 0.5, -0.5, -1.0, 32767 / 32768, 1 / 32768]), rtol=0, atol=0)
    y = audio.check_waveform(np.linspace(-1, 1, 500))  # float64 in, float32 out
    assert y.dtype == torch.float32 and y.shape == (500,)
    assert audio.check_waveform(torch.zeros(4, 1, 300)).shape == (4, 300)  # (B, 1, L) -> (B, L)
    assert audio.check_waveform(np.zeros((3, 1000), np.float32)).shape == (3, 1000)  # (B, L) with B <= 8 is a batch


def test_check_waveform_counts_clipping_against_its_one_percent_threshold():
    square = _square()
    torch.testing.assert_close(audio.check_waveform(square, clipped_ok=True), torch.from_numpy(square))
    x = np.zeros(1000, np.float32)
    x[:10] = 1.0  # exactly 1%: allowed
    audio.check_waveform(x)
    x[10] = -1.0  # 1.1%: refused
    with pytest.raises(ValueError, match="1.1% of the samples"):
        audio.check_waveform(x)
    assert audio.log_mel(torch.from_numpy(square)).shape == (N_MELS, len(square) // HOP)  # log_mel reads clipped audio


# --- mel images ---


def test_mel_image_and_its_inverse_on_the_range():
    lo, hi = LOG_MEL_RANGE
    lm = torch.linspace(lo, hi, 101, dtype=torch.float64)
    image = audio.mel_image(lm)
    assert image[0].item() == pytest.approx(-1.0) and image[-1].item() == pytest.approx(1.0)
    torch.testing.assert_close(image, (lm - lo) / (hi - lo) * 2 - 1)
    torch.testing.assert_close(audio.image_to_log_mel(image), lm)
    outside = torch.tensor([lo - 3, hi + 2], dtype=torch.float64)
    torch.testing.assert_close(audio.mel_image(outside), torch.tensor([-1.0, 1.0], dtype=torch.float64))
    torch.testing.assert_close(
        audio.image_to_log_mel(torch.tensor([-5.0, 5.0], dtype=torch.float64)),
        torch.tensor([lo, hi], dtype=torch.float64),
    )


def test_check_mel_accepts_both_layouts_and_names_the_expected_shape():
    mel = torch.zeros(2, N_MELS, 5)
    assert audio.check_mel(mel) is mel
    assert audio.check_mel(mel[:, None]).shape == (2, N_MELS, 5)
    for bad in (torch.zeros(2, 40, 5), torch.zeros(N_MELS, 5), torch.zeros(2, N_MELS, 0), torch.zeros(2, 3, N_MELS, 5)):
        with pytest.raises(
            ValueError, match=rf"my mel: expected shape \(B, {N_MELS}, frames\) or \(B, 1, {N_MELS}, frames\)"
        ):
            audio.check_mel(bad, "my mel")


# --- Griffin-Lim and the distances ---


@pytest.fixture(scope="module")
def fsdd_clips():
    """Two real test recordings fitted to a CLIP, and their mel images."""
    waves, _, _ = data.load_fsdd("test")
    x = torch.stack([audio.fit_clip(waves[i]) for i in (0, 57)])
    return x, audio.mel_image(audio.log_mel(x))


def test_griffin_lim_beats_random_phase_on_real_speech(fsdd_clips):
    x, image = fsdd_clips
    random_phase = audio.griffin_lim(image, iters=0)  # the pseudo-inverse magnitudes with the initial random phase
    rebuilt = audio.griffin_lim(image, iters=32)
    assert random_phase.shape == rebuilt.shape == (2, 32 * HOP) and rebuilt.abs().max() <= 1
    d_random, d_gl = audio.log_mel_distance(x, random_phase), audio.log_mel_distance(x, rebuilt)
    assert (d_gl < 0.75 * d_random).all(), (d_gl, d_random)
    assert (audio.spectral_convergence(x, rebuilt) < audio.spectral_convergence(x, random_phase)).all()
    noise = 0.1 * (2 * torch.rand(x.shape, generator=g(0)) - 1)
    assert (d_gl < 0.25 * audio.log_mel_distance(x, noise)).all()


def test_griffin_lim_is_seeded_and_accepts_the_image_layout(fsdd_clips):
    _, image = fsdd_clips
    a = audio.griffin_lim(image[:1], iters=2, seed=3)
    torch.testing.assert_close(audio.griffin_lim(image[:1, None], iters=2, seed=3), a, rtol=0, atol=0)
    assert not torch.allclose(audio.griffin_lim(image[:1], iters=2, seed=4), a)
    with pytest.raises(ValueError, match=r"expected shape \(B, 32, frames\)"):
        audio.griffin_lim(torch.zeros(1, 40, 8))


def test_distances_of_identical_and_silent_audio(fsdd_clips):
    x, _ = fsdd_clips
    assert torch.equal(audio.log_mel_distance(x, x), torch.zeros(2))
    assert torch.equal(audio.spectral_convergence(x, x), torch.zeros(2))
    torch.testing.assert_close(audio.spectral_convergence(x, torch.zeros_like(x)), torch.ones(2))


def test_spectral_convergence_matches_the_numpy_stft():
    a, b = chirp(0.5), 0.3 * chirp(0.5)[::-1] + 0.2 * tone(500, 4000)
    A, B = ref_magnitudes(a), ref_magnitudes(b)
    expected = np.linalg.norm(A - B) / np.linalg.norm(A)
    ours = audio.spectral_convergence(
        torch.tensor(a[None], dtype=torch.float32), torch.tensor(b[None], dtype=torch.float32)
    )
    assert ours.shape == (1,) and ours.item() == pytest.approx(expected, rel=1e-5)


# --- clips, segments and mel images of FSDD ---


@pytest.fixture(scope="module")
def raw():
    """The packed dataset read with numpy alone: each recording's speaker name, digit, index and int16 samples."""
    with np.load(FSDD_NPZ) as z:
        z = {k: z[k] for k in z.files}
    names = [str(s) for s in z["speakers"]]
    waves = [z["audio"][z["offsets"][i] : z["offsets"][i + 1]] for i in range(len(z["digit"]))]
    return SimpleNamespace(
        speaker=[names[i] for i in z["speaker"]], digit=z["digit"], index=z["index"], waves=waves, speakers=names
    )


def _key(speaker: str, digit: int, samples: np.ndarray) -> tuple:
    return speaker, int(digit), len(samples), tuple(int(v) for v in samples[:16])


def _keys(split, held_out_speaker=None) -> list[tuple]:
    waves, digits, speakers = data.load_fsdd(split, held_out_speaker)
    return [
        _key(s, d, np.round(w.numpy() * 32768).astype(np.int64))
        for w, d, s in zip(waves, digits, speakers, strict=True)
    ]


def test_fit_clip_pads_and_cuts():
    x = torch.arange(1.0, 6.0)
    assert torch.equal(audio.fit_clip(x, 8), torch.tensor([1.0, 2, 3, 4, 5, 0, 0, 0]))
    assert torch.equal(audio.fit_clip(x, 3), x[:3])
    assert audio.fit_clip(torch.ones(2, 7000)).shape == (2, CLIP)


def test_clips_are_the_recordings_fitted_to_a_clip(raw):
    x, digits = audio.clips("test")
    assert x.shape == (300, CLIP) and x.dtype == torch.float32 and digits.shape == (300,)
    test = [i for i in range(len(raw.waves)) if raw.index[i] < 5]
    for row, i in [(0, test[0]), (123, test[123]), (299, test[299])]:
        w = raw.waves[i].astype(np.float32) / 32768
        w = w * (audio.PEAK / np.abs(w).max())  # peak-normalised
        expected = np.zeros(CLIP, np.float32)
        expected[: min(len(w), CLIP)] = w[:CLIP]
        np.testing.assert_allclose(x[row].numpy(), expected, rtol=1e-6, atol=1e-7)
        assert abs(np.abs(x[row].numpy()).max() - audio.PEAK) < 1e-6 or len(w) > CLIP
        assert digits[row].item() == raw.digit[i]


@pytest.mark.parametrize(("frames", "stride"), [(4, 2), (3, 3), (12, 6)])
def test_segments_are_windows_of_the_recordings(raw, frames, stride):
    """Windows of frames * HOP samples every stride * HOP over each peak-normalised recording followed by half a
    window of silence, the last one reaching the end (zero-padded), none beyond."""
    size, step = frames * HOP, stride * HOP
    expected = []
    for i in (i for i in range(len(raw.waves)) if raw.index[i] < 5):
        w = raw.waves[i].astype(np.float32) / 32768
        w = w * (audio.PEAK / np.abs(w).max())
        length = len(w) + size // 2  # the recording and the silence after it
        count = 1 if length <= size else 1 + -(-(length - size) // step)
        padded = np.zeros(size + (count - 1) * step, np.float32)
        padded[: len(w)] = w
        assert (count - 1) * step < length or count == 1  # the last window starts inside the padded recording
        expected += [padded[j * step : j * step + size] for j in range(count)]
    seg = audio.segments("test", frames=frames, stride=stride)
    assert seg.shape == (len(expected), size) and seg.shape[1] % HOP == 0
    np.testing.assert_allclose(seg.numpy(), np.stack(expected), rtol=1e-6, atol=1e-7)


def test_mel_images_of_the_test_split(raw):
    images, digits = audio.mel_images("test")
    assert images.shape == (300, 1, N_MELS, 32) and images.dtype == torch.float32
    assert images.min() >= -1 and images.max() <= 1 and images.max() > 0.5
    assert torch.bincount(digits, minlength=10).tolist() == [30] * 10
    # frames wholly past a recording's end (plus the window's half-width) are silence: exactly the image's -1
    test = [i for i in range(len(raw.waves)) if raw.index[i] < 5]
    checked = 0
    for row, i in enumerate(test):
        first_silent = -(-(len(raw.waves[i]) + N_FFT // 2) // HOP)
        if first_silent < 32:
            torch.testing.assert_close(
                images[row, 0, :, first_silent:],
                torch.full_like(images[row, 0, :, first_silent:], -1.0),
                rtol=0,
                atol=1e-6,
            )
            checked += 1
    assert checked > 100


def test_log_mel_range_holds_the_loudest_test_recording():
    """The image's upper end (5.5 nats) sits above every FSDD test clip, so no loud band is clamped."""
    x, _ = audio.clips("test")
    assert LOG_MEL_RANGE[1] - 1.5 < audio.log_mel(x).max().item() < LOG_MEL_RANGE[1]


# --- load_fsdd ---


def test_fsdd_convention_split_is_disjoint_balanced_and_complete(raw):
    train_keys, test_keys = _keys("train"), _keys("test")
    assert len(train_keys) == 2700 and len(test_keys) == 300
    everything = collections.Counter(_key(s, d, w) for s, d, w in zip(raw.speaker, raw.digit, raw.waves, strict=True))
    assert len(everything) == 3000  # the keys identify the recordings
    assert collections.Counter(train_keys) + collections.Counter(test_keys) == everything
    assert not set(train_keys) & set(test_keys)
    expected_test = {_key(raw.speaker[i], raw.digit[i], raw.waves[i]) for i in range(3000) if raw.index[i] < 5}
    assert set(test_keys) == expected_test  # recordings 0-4 of each speaker and digit
    for keys, per_digit, per_pair in ((train_keys, 270, 45), (test_keys, 30, 5)):
        assert set(collections.Counter(k[1] for k in keys).values()) == {per_digit}
        assert set(collections.Counter(k[0] for k in keys).values()) == {per_digit * 10 // 6}
        assert set(collections.Counter(k[:2] for k in keys).values()) == {per_pair}
        assert len({k[0] for k in keys}) == 6 and len({k[1] for k in keys}) == 10


def test_fsdd_waveforms_are_the_int16_samples_scaled(raw):
    waves, digits, speakers = data.load_fsdd("test")
    assert digits.dtype == torch.int64 and all(isinstance(s, str) for s in speakers)
    assert all(w.dtype == torch.float32 and w.ndim == 1 for w in waves)
    assert min(w.min().item() for w in waves) >= -1 and max(w.max().item() for w in waves) < 1
    lengths = [len(w) for w in waves]
    assert min(lengths) > 1000 and max(lengths) < 20000  # 0.1 s to 2.5 s at 8 kHz
    first = next(i for i in range(3000) if raw.index[i] < 5)
    np.testing.assert_array_equal(waves[0].numpy(), raw.waves[first].astype(np.float32) / 32768)


def test_fsdd_held_out_speaker_split(raw):
    assert "theo" in raw.speakers
    test_keys, train_keys = _keys("test", "theo"), _keys("train", "theo")
    assert len(test_keys) == 500 and len(train_keys) == 2500
    assert {k[0] for k in test_keys} == {"theo"} and "theo" not in {k[0] for k in train_keys}
    assert set(collections.Counter(k[1] for k in test_keys).values()) == {50}
    assert not set(test_keys) & set(train_keys) and len(set(test_keys) | set(train_keys)) == 3000


def test_fsdd_refuses_unknown_splits_and_speakers():
    with pytest.raises(ValueError, match=r"unknown split 'valid'; expected one of \['test', 'train'\]"):
        data.load_fsdd("valid")
    with pytest.raises(ValueError, match="unknown speaker 'alice'; FSDD's speakers are .*theo"):
        data.load_fsdd("test", held_out_speaker="alice")


@pytest.fixture
def fresh_data_caches():
    data._verify.cache_clear()
    data._fsdd.cache_clear()
    yield
    data._verify.cache_clear()
    data._fsdd.cache_clear()


def test_a_corrupt_or_missing_fsdd_file_is_detected(tmp_path, monkeypatch, fresh_data_caches):
    (tmp_path / "fsdd").mkdir()
    shutil.copy(ROOT / "data" / data.MANIFEST, tmp_path / data.MANIFEST)
    copy = tmp_path / data.FSDD
    shutil.copy(FSDD_NPZ, copy)
    blob = bytearray(copy.read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    copy.write_bytes(bytes(blob))
    monkeypatch.setenv("DLIB_DATA", str(tmp_path))
    with pytest.raises(data.DataError, match="corrupt data file .*fsdd.npz: sha256"):
        data.load_fsdd("test")
    copy.unlink()
    data._verify.cache_clear()
    with pytest.raises(data.DataError, match="missing data file"):
        data.load_fsdd("test")


# --- the vocoder network ---

SMALL = VocoderConfig(channels=4, layers=2, cycle=2, embed_dim=16)


def test_vocoder_shapes_and_zero_output_at_initialisation():
    torch.manual_seed(0)
    net = Vocoder(SMALL)
    assert net.cfg.hop == HOP
    mel, x_t, level = torch.randn(2, N_MELS, 3), torch.randn(2, 1, 3 * HOP), torch.tensor([0.3, 0.9])
    assert net.upsampler(mel).shape == (2, N_MELS, 3 * HOP)
    with torch.no_grad():
        assert torch.equal(net(x_t, level, mel), torch.zeros(2, 1, 3 * HOP))  # the zero-initialised head
        torch.nn.init.normal_(net.head.weight)
        out = net(x_t, level, mel)
        assert out.shape == (2, 1, 3 * HOP) and out.abs().max() > 0
        assert not torch.allclose(net(x_t, level.flip(0), mel), out)  # the level is an input


@pytest.mark.parametrize(
    ("x_t", "level", "mel", "match"),
    [
        ((2, 1, 576), (2,), (2, 40, 3), r"mel must have shape \(B, 32, frames\), got \(2, 40, 3\)"),
        (
            (2, 1, 500),
            (2,),
            (2, 32, 3),
            r"x_t must have shape \(B, 1, frames \* 192\) = \(B, 1, 576\) for 3 mel frames, got \(2, 1, 500\)",
        ),
        ((2, 576), (2,), (2, 32, 3), r"x_t must have shape .*got \(2, 576\)"),
        ((2, 1, 576), (2, 1), (2, 32, 3), r"level \(sqrt\(alpha_bar\)\) must have shape \(2,\), got \(2, 1\)"),
        ((2, 1, 576), (), (2, 32, 3), r"level .* must have shape \(2,\), got \(\)"),
    ],
)
def test_vocoder_refuses_wrong_shapes(x_t, level, mel, match):
    net = Vocoder(SMALL)
    with pytest.raises(ValueError, match=f"^Vocoder: {match}"):
        net(torch.zeros(x_t), torch.ones(level), torch.zeros(mel))


def test_vocoder_refuses_an_odd_upsampling_factor():
    """The hop as a product of factors: (3, 64) is a hop of 192 too, but the transposed convolution (kernel 2s,
    stride s, padding s // 2) gives F * s + 1 samples for an odd s, so the config is refused."""
    with pytest.raises(ValueError, match="upsample must be even factors"):
        dataclasses.replace(SMALL, upsample=(3, 64))
    with pytest.raises(ValueError, match="upsample"):
        VocoderConfig(upsample=())


# --- WaveGrad's continuous noise levels and loss ---


def _grid(T: int = 10) -> torch.Tensor:
    betas = get_schedule("linear", T).betas.double()
    return torch.cat([torch.ones(1, dtype=torch.float64), torch.cumprod(1 - betas, 0).sqrt()])


def test_level_grid_is_one_then_the_schedules_signal_scales():
    sched = get_schedule("linear", 10)
    grid = level_grid(sched)
    assert grid.shape == (11,) and grid.dtype == torch.float64 and grid[0] == 1
    torch.testing.assert_close(grid, _grid(10), rtol=1e-12, atol=0)
    assert (grid.diff() < 0).all()


def test_sample_levels_is_the_stratified_formula():
    grid = _grid(10)
    u_step = torch.tensor([0.0, 0.05, 0.15, 0.5, 0.95, 0.999999, 1.0])
    u_level = torch.tensor([0.0, 0.5, 0.25, 0.9, 0.1, 0.999, 0.5])
    levels = sample_levels(grid, u_step, u_level)
    assert levels.dtype == torch.float32 and levels.shape == (7,)
    expected = []
    for a, b in zip(u_step.tolist(), u_level.tolist(), strict=True):
        s = min(int(math.floor(float(np.float32(a)) * 10)), 9) + 1  # u = 1 (never drawn) stays in the last stratum
        expected.append(grid[s].item() + (grid[s - 1].item() - grid[s].item()) * float(np.float32(b)))
    torch.testing.assert_close(levels, torch.tensor(expected, dtype=torch.float32), rtol=1e-6, atol=0)


def test_sample_levels_covers_every_stratum_evenly():
    T, n = 10, 20000
    grid = _grid(T)
    u_step, u_level = torch.rand(n, generator=g(1)), torch.rand(n, generator=g(2))
    levels = sample_levels(grid, u_step, u_level).double()
    assert levels.min() >= grid[-1].float().item() and levels.max() <= 1
    assert levels.min() < grid[-1] + 0.01 * (grid[-2] - grid[-1]) and levels.max() > 1 - 0.01 * (1 - grid[1])
    s = (u_step * T).long() + 1
    lo, hi = grid[s].float().double(), grid[s - 1].float().double()
    assert ((levels >= lo - 1e-7) & (levels <= hi + 1e-7)).all()  # each level in its stratum [l_s, l_{s-1}]
    counts = torch.bincount(s - 1, minlength=T).double()
    assert ((counts - n / T).abs() < 5 * math.sqrt(n / T)).all()


class _Recorder(torch.nn.Module):
    """A stand-in for the vocoder: eps_hat = a fixed function of (x_t, level, mel); keeps what it saw."""

    def __init__(self, fn):
        super().__init__()
        self.fn, self.seen = fn, []

    def forward(self, x_t, level, mel):
        self.seen.append((x_t.clone(), level.clone(), mel))
        return self.fn(x_t, level, mel)


def test_vocoder_loss_is_the_hand_computation_with_the_same_draws():
    sched = get_schedule("linear", 50)
    x_0 = 0.3 * torch.randn(4, 1, 96, generator=g(0))
    mel = torch.randn(4, N_MELS, 2)
    model = _Recorder(lambda x, l, m: 0.5 * x + l[:, None, None] - 0.1 * m.mean((1, 2))[:, None, None])
    loss = VocoderLoss(sched)(model, x_0, g(7), mel=mel)
    gen = g(7)
    u_step, u_level, eps = (
        torch.rand(4, generator=gen),
        torch.rand(4, generator=gen),
        torch.randn(4, 1, 96, generator=gen),
    )
    grid = _grid(50)
    s = (u_step.double() * 50).floor().long() + 1
    level = (grid[s] + (grid[s - 1] - grid[s]) * u_level.double()).float()
    l = level[:, None, None]
    x_t = l * x_0 + (1 - l**2).sqrt() * eps
    expected = (0.5 * x_t + l - 0.1 * mel.mean((1, 2))[:, None, None] - eps).abs().mean()
    seen_x, seen_level, seen_mel = model.seen[0]
    torch.testing.assert_close(seen_level, level, rtol=1e-6, atol=0)
    torch.testing.assert_close(seen_x, x_t, rtol=1e-5, atol=1e-6)
    assert seen_mel is mel
    torch.testing.assert_close(loss, expected, rtol=1e-5, atol=1e-6)
    # a (B, L) batch is the same as (B, 1, L); the same generator seed gives the same loss
    torch.testing.assert_close(VocoderLoss(sched)(model, x_0[:, 0], g(7), mel=mel), loss)
    assert VocoderLoss(sched)(model, x_0, g(8), mel=mel) != loss


def test_vocoder_loss_vanishes_for_the_true_eps_and_is_e_abs_eps_for_zero():
    sched = get_schedule("linear", 1000)
    x_0 = 0.5 * torch.rand(256, 1, 200, generator=g(3)) - 0.25

    def oracle(x_t, level, mel):  # knows x_0, so inverts x_t = l x_0 + sqrt(1 - l^2) eps
        l = level.double()[:, None, None]
        return ((x_t.double() - l * x_0.double()) / (1 - l**2).sqrt()).float()

    mel = torch.zeros(256, N_MELS, 1)
    assert VocoderLoss(sched)(oracle, x_0, g(4), mel=mel).item() < 1e-3
    zero = VocoderLoss(sched)(lambda x_t, level, mel: torch.zeros_like(x_t), x_0, g(4), mel=mel)
    assert zero.item() == pytest.approx(math.sqrt(2 / math.pi), abs=0.01)  # E|eps| for eps ~ N(0, 1), 51,200 draws


# --- the sampler: betas, one step, parity with diffusers, the schedule search ---


@pytest.mark.parametrize("betas", [[0.0, 0.1], [0.1, 1.0], [-0.1, 0.2], [], [0.1, float("nan")]])
def test_check_betas_refuses_values_outside_zero_one(betas):
    with pytest.raises(ValueError, match=r"betas must be a non-empty sequence in \(0, 1\)"):
        check_betas(betas)


def test_check_betas_returns_float64():
    b = check_betas([[1e-4, 0.5]])
    assert b.dtype == torch.float64 and b.shape == (2,) and b.tolist() == [1e-4, 0.5]


def test_linear_and_geometric_betas():
    lin = linear_betas(50)
    assert lin.dtype == torch.float64 and lin.shape == (50,)
    assert lin[0].item() == pytest.approx(1e-4, rel=1e-12) and lin[-1].item() == pytest.approx(0.05, rel=1e-12)
    torch.testing.assert_close(lin.diff(), torch.full((49,), (0.05 - 1e-4) / 49, dtype=torch.float64))
    geo = geometric_betas(6, 1e-4, 0.5)
    assert geo.dtype == torch.float64
    np.testing.assert_allclose(geo.numpy(), np.geomspace(1e-4, 0.5, 6), rtol=1e-6)
    ratios = (geo[1:] / geo[:-1]).numpy()
    np.testing.assert_allclose(ratios, np.full(5, (0.5 / 1e-4) ** (1 / 5)), rtol=1e-6)
    assert geometric_betas(1, 0.2, 0.2).tolist() == pytest.approx([0.2], rel=1e-6)


def test_diffwave_fast_schedule():
    betas = check_betas(FAST_SCHEDULES["diffwave-6"])
    assert betas.tolist() == [1e-4, 1e-3, 1e-2, 5e-2, 2e-1, 5e-1]  # Kong et al. 2021, sec. 5
    assert torch.prod(1 - betas).item() == pytest.approx(0.376, abs=0.001)  # ends at alpha_bar ~ 0.4, not pure noise


class FakeVocoder(torch.nn.Module):
    """What ``vocode`` needs of a network: ``cfg.hop``, a parameter (its device) and eps_hat(x, level, mel)."""

    def __init__(self, fn, hop: int = 4):
        super().__init__()
        self.cfg = SimpleNamespace(hop=hop)
        self.dummy = torch.nn.Parameter(torch.zeros(1))
        self.fn, self.levels = fn, []

    def forward(self, x, level, mel):
        assert x.shape == (len(mel), 1, mel.shape[-1] * self.cfg.hop) and level.shape == (len(mel),)
        self.levels.append(level.clone())
        return self.fn(x, level)


def test_one_vocode_step_is_the_closed_form_x0():
    net = FakeVocoder(lambda x, level: torch.full_like(x, 0.3))
    mel = torch.zeros(3, N_MELS, 2)
    out = vocode(net, mel, [0.3], generator=g(5))
    x_N = torch.randn(3, 1, 8, generator=g(5))
    expected = ((x_N.double() - math.sqrt(0.3) * 0.3) / math.sqrt(0.7)).clamp(-1, 1)[:, 0].float()
    assert out.shape == (3, 8)
    torch.testing.assert_close(out, expected, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(net.levels[0], torch.full((3,), math.sqrt(0.7)))


def test_vocode_visits_the_levels_from_noisiest_to_cleanest():
    betas = [0.1, 0.2, 0.3]
    net = FakeVocoder(lambda x, level: torch.zeros_like(x))
    seen = []
    vocode(net, torch.zeros(1, 1, N_MELS, 1), betas, generator=g(0), callback=lambda n, x: seen.append((n, x.shape)))
    alpha_bar = np.cumprod(1 - np.array(betas))
    torch.testing.assert_close(torch.stack(net.levels)[:, 0], torch.tensor(np.sqrt(alpha_bar[::-1]).copy()).float())
    assert seen == [(2, (1, 1, 4)), (1, (1, 1, 4)), (0, (1, 1, 4))]


def test_vocode_refuses_bad_mels_and_betas():
    net = FakeVocoder(lambda x, level: torch.zeros_like(x))
    with pytest.raises(ValueError, match=r"expected shape \(B, 32, frames\)"):
        vocode(net, torch.zeros(1, 40, 2), [0.1])
    with pytest.raises(ValueError, match="betas must be a non-empty sequence"):
        vocode(net, torch.zeros(1, N_MELS, 2), [])


def _gaussian_eps(x, level, s2: float = 0.09):
    """The exact eps of data N(0, s2) at signal scale `level`, plus a smooth nonlinear term."""
    ab = (level.double() ** 2)[:, None, None]
    x = x.double()
    return ((1 - ab).sqrt() * x / (s2 * ab + 1 - ab) + 0.1 * torch.sin(3 * x + ab)).float()


def test_vocode_matches_diffusers_ddpm_over_the_same_betas_and_noise():
    diffusers = pytest.importorskip("diffusers")
    betas = [1e-3, 5e-3, 2e-2, 5e-2, 0.1, 0.2, 0.3, 0.5]
    mel = torch.zeros(2, N_MELS, 3)
    trajectory = []
    ours = vocode(FakeVocoder(_gaussian_eps), mel, betas, generator=g(11), callback=lambda n, x: trajectory.append(x))

    ref = diffusers.DDPMScheduler(
        num_train_timesteps=len(betas),
        trained_betas=betas,
        variance_type="fixed_small",
        clip_sample=False,
        prediction_type="epsilon",
    )
    assert ref.timesteps.tolist() == list(range(len(betas)))[::-1]
    gen = g(11)  # the same stream: x_N first, then one draw per step but the last, as diffusers' step draws it
    x = torch.randn(2, 1, 12, generator=gen)
    theirs = []
    for t in ref.timesteps:
        level = ref.alphas_cumprod[t].sqrt().expand(2)
        x = ref.step(_gaussian_eps(x, level), t, x, generator=gen).prev_sample
        theirs.append(x)
    for a, b in zip(trajectory, theirs, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(ours, theirs[-1][:, 0].clamp(-1, 1), rtol=1e-4, atol=1e-4)
    assert ours.abs().max() < 1  # the stand-in's data are N(0, 0.09): the clamp did not decide the comparison


def _target_score(target: np.ndarray):
    calls = []

    def score(betas):
        calls.append(betas)
        return float(np.abs(np.log(betas.numpy()) - np.log(target)).sum())

    return score, calls


def test_search_schedule_returns_the_argmin_and_the_table():
    target = np.geomspace(1e-3, 0.3, 6)
    score, calls = _target_score(target)
    firsts, lasts = [1e-4, 1e-3, 1e-2, 0.1], [0.05, 0.3, 0.5]
    best, table = search_schedule(score, 6, firsts, lasts)
    pairs = [(f, l) for f in firsts for l in lasts if f <= l]
    assert [(f, l) for f, l, _ in table] == pairs and len(calls) == len(pairs) == 11
    assert all(f <= l for f, l, _ in table)
    tried = list(calls)
    for (f, l, s), betas in zip(table, tried, strict=True):
        assert s == pytest.approx(score(geometric_betas(6, f, l))) and betas.shape == (6,)
    np.testing.assert_allclose(best.numpy(), target, rtol=1e-6)
    assert min(table, key=lambda row: row[2])[:2] == (1e-3, 0.3)


def test_search_schedule_with_one_step_tries_only_single_betas():
    score, calls = _target_score(np.array([0.2]))
    best, table = search_schedule(score, 1, [0.05, 0.2, 0.5], [0.2, 0.5])
    assert [(f, l) for f, l, _ in table] == [(0.2, 0.2), (0.5, 0.5)]
    assert best.tolist() == pytest.approx([0.2], rel=1e-6) and all(c.shape == (1,) for c in calls)


def test_search_schedule_refuses_an_empty_grid():
    score, _ = _target_score(np.ones(3))
    with pytest.raises(ValueError, match=r"no \(first, last\) pair with first <= last in \[0.5\] x \[0.1\]"):
        search_schedule(score, 3, [0.5], [0.1])
    with pytest.raises(ValueError, match="no \\(first, last\\) pair"):
        search_schedule(score, 3, [], [0.1])


# --- the tiny vocoder recipe: batches, training, exact resume, reloading ---


def tiny(out_dir) -> TrainConfig:
    return dataclasses.replace(RECIPES["vocoder-tiny"], out_dir=str(out_dir))


def test_vocoder_batches_are_waveform_windows_with_their_own_mels():
    cfg = tiny("unused")
    x, y = load_training_data(cfg)
    assert x.shape == (64, 12 * HOP) and torch.equal(y, torch.zeros(64, dtype=torch.long))
    torch.testing.assert_close(x, audio.segments("train")[:64], rtol=0, atol=0)
    cond = build_condition(cfg, x, torch.device("cpu"))(None, x[:3], y[:3], g(0))
    assert set(cond) == {"mel"} and cond["mel"].shape == (3, N_MELS, 12)
    torch.testing.assert_close(cond["mel"], audio.mel_image(audio.log_mel(x[:3])))


def test_fsdd_mel_training_data_are_the_mel_images():
    cfg = TrainConfig(kind="classifier", dataset="fsdd-mel", limit=10)
    x, y = load_training_data(cfg)
    waves, digits, _ = data.load_fsdd("train")
    clips = torch.stack([audio.fit_clip(audio.peak_normalise(w)) for w in waves[:10]])
    assert x.shape == (10, 1, N_MELS, 32) and torch.equal(y, digits[:10])
    torch.testing.assert_close(x[:, 0], audio.mel_image(audio.log_mel(clips)))


def test_vocoder_config_round_trips():
    cfg = tiny("somewhere")
    back = config_from_dict(config_to_dict(cfg))
    assert back == cfg and isinstance(back.vocoder, VocoderConfig)
    assert back.vocoder.upsample == (16, 12) and isinstance(back.vocoder.upsample, tuple)
    d = config_to_dict(cfg)
    del d["vocoder"]  # a card written before the field existed takes the default
    assert config_from_dict(d).vocoder == VocoderConfig()


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    return train(tiny(tmp_path_factory.mktemp("straight")), progress=False)


def test_vocoder_tiny_trains(straight):
    card = straight["card"]
    assert card["step"] == 4 and card["config"]["kind"] == "vocoder"
    assert [s for s, _ in card["loss_log"]] == [2, 4]
    assert all(math.isfinite(v) and 0 < v < 2 for _, v in card["loss_log"])
    assert isinstance(straight["model"], Vocoder) and straight["model"].cfg == RECIPES["vocoder-tiny"].vocoder
    assert any(p.abs().sum() > 0 for p in straight["model"].head.parameters())  # the zero head has moved


def test_vocoder_tiny_resumes_exactly(tmp_path, straight):
    cfg = tiny(tmp_path)
    assert train(cfg, stop_after=2, progress=False)["card"]["step"] == 2
    resumed = train(cfg, progress=False)
    assert resumed["card"]["step"] == 4
    for key in ("model", "ema"):
        a, b = straight[key].state_dict(), resumed[key].state_dict()
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), key


def test_load_ema_rebuilds_the_vocoder(straight):
    run_dir = Path(straight["card"]["config"]["out_dir"]) / "vocoder-tiny"
    model, _, card = checkpoint.load_ema(run_dir)
    assert isinstance(model, Vocoder) and not model.training and card["step"] == 4
    assert model.cfg == RECIPES["vocoder-tiny"].vocoder and isinstance(model.cfg.upsample, tuple)
    ema = straight["ema"].state_dict()
    assert all(torch.equal(v, ema[k]) for k, v in model.state_dict().items())
    mel = audio.mel_image(audio.log_mel(audio.segments("test")[:1]))[:, :, :2]
    wave = vocode(model, mel, FAST_SCHEDULES["diffwave-6"], generator=g(0))
    assert wave.shape == (1, 2 * HOP) and wave.abs().max() <= 1


# --- notebook 09's measurements and the label -> speech pipeline (dlib.evaluate_audio, dlib.pipelines.speak) ---


def _untrained_pair():
    torch.manual_seed(0)
    unet = UNet(
        UNetConfig(base_channels=8, channel_mults=(1, 2), num_res_blocks=1, attention_levels=(), num_classes=10)
    )
    return unet.eval(), Vocoder(SMALL).eval()


def test_speak_gives_mels_and_waveforms_of_a_clip_deterministically():
    unet, vocoder = _untrained_pair()
    digits = torch.tensor([0, 3, 9])

    def run():
        sched = get_schedule("linear", 1000)
        return speak(
            unet, sched, vocoder, digits, w=2.0, steps=3, betas=[1e-3, 0.1], generator=torch.Generator().manual_seed(1)
        )

    mels, waves = run()
    assert mels.shape == (3, 1, N_MELS, CLIP // HOP) and waves.shape == (3, CLIP)
    assert mels.min() >= -1 and mels.max() <= 1 and waves.abs().max() <= 1
    assert torch.equal(waves, run()[1])


class _Oracle(torch.nn.Module):
    """A 'classifier' that hears a clip as the digit stored in its loudest mel band (a known answer for the scores)."""

    def __init__(self):
        super().__init__()
        self.dummy = torch.nn.Parameter(torch.zeros(()))

    def forward(self, images):
        return torch.nn.functional.one_hot(images[:, 0].mean(-1).argmax(-1) % 10, 10).float() + self.dummy

    def features(self, images):  # for FID: each band's mean level
        return images[:, 0].mean(-1) + self.dummy


def test_audio_scores_of_the_recordings_themselves():
    x, _ = audio.clips("test")
    x = x[:4]
    y = _Oracle()(evaluate_audio.heard(x)).argmax(1)
    scores = evaluate_audio.audio_scores(_Oracle(), x, x, y)
    assert scores == {"log_mel_distance": 0.0, "spectral_convergence": 0.0, "classifier_accuracy": 1.0}
    silent = evaluate_audio.audio_scores(_Oracle(), x, torch.zeros_like(x), y)
    assert silent["spectral_convergence"] == 1.0 and silent["log_mel_distance"] > 3


def test_vocoder_table_has_every_schedule_griffin_lim_and_the_recordings():
    _, vocoder = _untrained_pair()
    x, y = audio.clips("test")
    named = {"one": torch.tensor([0.5], dtype=torch.float64), "two": torch.tensor([1e-3, 0.3], dtype=torch.float64)}
    rows, waves = evaluate_audio.vocoder_table(vocoder, _Oracle(), x[:2], y[:2], named, seed=0)
    assert list(rows) == ["one", "two", "Griffin-Lim (64 iterations)", "the recordings"]
    assert rows["the recordings"]["log_mel_distance"] == 0 and rows["one"]["real_time_factor"] > 0
    for name in ("one", "two"):  # the table's waveforms are the sampler's, with the given seed
        again = vocode(
            vocoder, audio.mel_image(audio.log_mel(x[:2])), named[name], generator=torch.Generator().manual_seed(0)
        )
        assert torch.equal(waves[name], again)
    assert rows["Griffin-Lim (64 iterations)"]["log_mel_distance"] < rows["one"]["log_mel_distance"]


def test_searched_schedules_pick_the_lowest_score_of_their_tables():
    _, vocoder = _untrained_pair()
    x, _ = audio.clips("test")
    grids = dict(firsts=(1e-4, 1e-2), lasts=(0.5,), singles=(0.3, 0.9))
    found = evaluate_audio.searched_schedules(vocoder, x[:2], 0, grids)
    for steps, key in ((1, "1 step (searched)"), (6, "6 steps (searched)")):
        first, last, _ = min(found["tables"][steps], key=lambda r: r[2])
        torch.testing.assert_close(found[key], geometric_betas(steps, first, last))
    score = evaluate_audio.mel_score(vocoder, x[:2], 0)
    assert score(found["6 steps (searched)"]) == min(r[2] for r in found["tables"][6])  # the same noise every time


def test_the_shipped_classifier_evaluates_on_the_test_recordings():
    if "fsdd-classifier" not in checkpoint.shipped_models():
        pytest.skip("fsdd-classifier is not shipped")
    out = evaluate_audio.evaluate_audio_classifier("fsdd-classifier")
    assert out["test_accuracy"] > 0.95 and out["accuracy_settings"] == "the 300 test recordings"


def test_log_mel_distance_ignores_the_digital_silence_a_clip_is_padded_with():
    x = torch.zeros(1, CLIP)
    t = torch.arange(CLIP // 2) / SAMPLE_RATE
    x[0, : CLIP // 2] = 0.5 * torch.sin(2 * math.pi * 440 * t)  # a tone, then digital silence
    hiss = torch.zeros_like(x)
    hiss[0, CLIP // 2 + 2 * N_FFT :] = 0.003 * torch.randn(
        CLIP - CLIP // 2 - 2 * N_FFT, generator=torch.Generator().manual_seed(0)
    )
    assert audio.log_mel_distance(x, x + hiss).item() < 1e-6  # only frames where x is digital silence changed
    frames = audio.log_mel(x + hiss)[0]
    assert (frames[:, -3:] > math.log(MEL_FLOOR) + 3).all()  # and there the hiss is far above the floor
    inside = x.clone()
    inside[0, : CLIP // 2] += 0.003 * torch.randn(CLIP // 2, generator=torch.Generator().manual_seed(1))
    assert audio.log_mel_distance(x, inside).item() > 0.01  # the same hiss within the recording counts
    silent = torch.zeros(1, CLIP)
    assert audio.log_mel_distance(silent, hiss).item() > 1  # a silent reference is measured over every frame


def test_speech_sweep_scores_the_mels_and_both_renderings_at_every_scale():
    unet, vocoder = _untrained_pair()
    rows, waves = evaluate_audio.speech_sweep(unet, get_schedule("linear", 1000), vocoder, _Oracle(), [1e-3, 0.1],
                                              [0.0, 2.0], per_digit=1, steps=2, seed=0)  # fmt: skip
    assert list(rows) == [0.0, 2.0] and all(set(r) == {"mel", "vocoder", "griffin-lim"} for r in rows.values())
    assert waves[0.0].shape == (10, CLIP) and waves[0.0].abs().max() <= 1
    for r in rows.values():
        for scores in r.values():
            assert 0 <= scores["share_as_requested"] <= 1 and math.isfinite(scores["classifier_fid"])
