"""Measurements of notebook 09's models, recorded in their cards by ``python -m dlib.evaluate NAME``; the notebook
calls the same functions.

classifier       accuracy on held-out recordings: the dataset's test split, or a held-out speaker's recordings
vocoder          per noise schedule (searched 1 and 6 steps, DiffWave's 6 and 50, 25 steps): log-mel distance and
                 spectral convergence to the recordings, the classifier's accuracy on the audio, real-time factor;
                 beside Griffin-Lim and the recordings themselves
label -> speech  a guidance sweep through ``dlib.pipelines.speak``: share of clips the classifier hears as the
                 requested digit, and classifier-feature FID against the 300 held-out recordings, for the generated
                 mels themselves and for their audio through the vocoder and through Griffin-Lim
"""

from __future__ import annotations

import time

import torch

from dlib import audio, checkpoint, data
from dlib.checkpoint import load_pretrained
from dlib.metrics import classifier_extractor, fid_from_features, share_as_requested
from dlib.pipelines import speak
from dlib.samplers.vocoder import FAST_SCHEDULES, linear_betas, search_schedule, vocode

# candidate schedules: every level stays within the shipped vocoder's training range (down to sqrt(alpha_bar) = 0.47)
SEARCH = dict(firsts=(1e-5, 1e-4, 1e-3), lasts=(0.2, 0.35, 0.5, 0.65), singles=(0.3, 0.5, 0.7))
N_SEARCH = 6  # the last clips of the test split score the candidate schedules; measurements use the first ones


def heard(x: torch.Tensor) -> torch.Tensor:
    """What the classifier hears: waveforms (N, L) as mel images (N, 1, 32, L // HOP)."""
    return audio.mel_image(audio.log_mel(x)).unsqueeze(1)


def mel_score(vocoder, x: torch.Tensor, seed: int = 0):
    """``score(betas)``: the mean log-mel distance between the clips ``x`` and the vocoder's rendering of their mels
    with that schedule, the noise drawn from ``seed`` (the same for every schedule)."""
    mel = audio.mel_image(audio.log_mel(x))

    def score(betas) -> float:
        out = vocode(vocoder, mel, betas, generator=torch.Generator().manual_seed(seed)).cpu()
        return audio.log_mel_distance(x, out).mean().item()

    return score


def searched_schedules(vocoder, x_search: torch.Tensor, seed: int = 0, grids: dict = SEARCH) -> dict:
    """WaveGrad's search at small scale: the best geometric 6-step schedule and the best single beta on ``x_search``;
    returns {"1 step (searched)": betas, "6 steps (searched)": betas, "tables": {1: rows, 6: rows}}."""
    score = mel_score(vocoder, x_search, seed)
    six, six_table = search_schedule(score, 6, grids["firsts"], grids["lasts"])
    one, one_table = search_schedule(score, 1, grids["singles"], grids["singles"])
    return {"1 step (searched)": one, "6 steps (searched)": six, "tables": {1: one_table, 6: six_table}}


def schedules(searched: dict) -> dict[str, torch.Tensor]:
    """The schedules the vocoder is measured with, fewest steps first."""
    return {
        "1 step (searched)": searched["1 step (searched)"],
        "6 steps (searched)": searched["6 steps (searched)"],
        "6 steps (DiffWave)": torch.tensor(FAST_SCHEDULES["diffwave-6"], dtype=torch.float64),
        "25 steps (linear to 0.1)": linear_betas(25, 1e-4, 0.1),
        "50 steps (DiffWave)": linear_betas(50),
    }


def audio_scores(classifier, real: torch.Tensor, fake: torch.Tensor, digits: torch.Tensor) -> dict:
    """Log-mel distance and spectral convergence of ``fake`` to ``real`` (means over clips), and the share of ``fake``
    the classifier hears as ``digits``."""
    device = next(classifier.parameters()).device
    return {
        "log_mel_distance": round(audio.log_mel_distance(real, fake).mean().item(), 4),
        "spectral_convergence": round(audio.spectral_convergence(real, fake).mean().item(), 4),
        "classifier_accuracy": round(share_as_requested(classifier, heard(fake).to(device), digits.to(device)), 4),
    }


def vocoder_table(
    vocoder, classifier, x: torch.Tensor, y: torch.Tensor, named: dict, seed: int = 0
) -> tuple[dict, dict]:
    """Each named schedule's ``audio_scores`` and real-time factor (seconds of compute per second of audio) on the
    clips ``x``, beside Griffin-Lim (64 iterations) and the recordings; returns (rows, waveforms)."""
    mel = audio.mel_image(audio.log_mel(x))
    duration = x.numel() / audio.SAMPLE_RATE
    rows, waves = {}, {}
    for name, betas in named.items():
        start = time.perf_counter()
        waves[name] = vocode(vocoder, mel, betas, generator=torch.Generator().manual_seed(seed)).cpu()
        rtf = (time.perf_counter() - start) / duration
        rows[name] = audio_scores(classifier, x, waves[name], y) | {"real_time_factor": round(rtf, 4)}
    start = time.perf_counter()
    waves["Griffin-Lim (64 iterations)"] = audio.griffin_lim(mel, iters=64)
    rtf = (time.perf_counter() - start) / duration
    rows["Griffin-Lim (64 iterations)"] = audio_scores(classifier, x, waves["Griffin-Lim (64 iterations)"], y)
    rows["Griffin-Lim (64 iterations)"]["real_time_factor"] = round(rtf, 4)
    rows["the recordings"] = audio_scores(classifier, x, x, y) | {"real_time_factor": 0.0}
    return rows, waves


def speech_sweep(
    mel_unet, sched, vocoder, classifier, betas, ws, per_digit: int, steps: int, seed: int = 0
) -> tuple[dict, dict]:
    """Label -> speech at each guidance scale w ("cond" convention; 0 = the plain conditional model): ``per_digit``
    clips of each digit, scored three ways, each against the 300 held-out recordings: the generated mel images
    themselves ("mel"), and the audio rendered from them by the vocoder ("vocoder") and by Griffin-Lim
    ("griffin-lim"), re-analysed into mels. Scores: the share the classifier hears as the requested digit and the
    classifier-feature FID. Returns ({w: {way: scores}}, {w: vocoder waveforms})."""
    device = next(classifier.parameters()).device
    extractor = classifier_extractor(classifier)
    x_test, _ = audio.clips("test")
    f_real = extractor(heard(x_test).to(device))
    digits = torch.arange(10).repeat_interleave(per_digit).to(device)
    rows, waves = {}, {}
    for w in ws:
        mels, waves[w] = speak(mel_unet, sched, vocoder, digits, w=w, steps=steps, betas=betas,
                               generator=torch.Generator().manual_seed(seed))  # fmt: skip
        ways = {"mel": mels.cpu(), "vocoder": heard(waves[w]), "griffin-lim": heard(audio.griffin_lim(mels.cpu()))}
        rows[w] = {
            way: {
                "share_as_requested": round(share_as_requested(classifier, m.to(device), digits), 4),
                "classifier_fid": round(fid_from_features(extractor(m.to(device)), f_real), 2),
            }
            for way, m in ways.items()
        }
    return rows, waves


def evaluate_audio_classifier(name: str) -> dict:
    """A spoken-digit classifier's accuracy on held-out recordings (``dataset`` "fsdd-mel" or "fsdd-mel:SPEAKER")."""
    model, _, card = checkpoint.load_any(name)
    _, _, speaker = card["config"]["dataset"].partition(":")
    x, y = audio.mel_images("test", speaker or None)
    out = {"test_accuracy": round(share_as_requested(model, x, y), 4)}
    if speaker:  # and on the familiar voices' test recordings
        x, y = audio.mel_images("test")
        others = torch.tensor([s != speaker for s in data.load_fsdd("test")[2]])
        out["accuracy_other_speakers_test"] = round(share_as_requested(model, x[others], y[others]), 4)
    out["accuracy_settings"] = f"held-out recordings of {speaker!r}" if speaker else "the 300 test recordings"
    return out


def evaluate_vocoder(name: str, classifier_name: str, n: int, seed: int) -> dict:
    vocoder, _, _ = checkpoint.load_any(name)
    classifier, _, _ = checkpoint.load_any(classifier_name)
    x, y = audio.clips("test")
    searched = searched_schedules(vocoder, x[-N_SEARCH:], seed)
    rows, _ = vocoder_table(vocoder, classifier, x[:n], y[:n], schedules(searched), seed)
    return {
        "vocoder": rows,
        "searched_betas": {
            k: [round(b, 6) for b in searched[k].tolist()] for k in ("1 step (searched)", "6 steps (searched)")
        },
        "vocoder_settings": f"the first {n} test clips (0.768 s each), seed {seed}; schedules searched on the last "
        f"{N_SEARCH}; classifier {classifier_name}; {checkpoint.hardware()}",
    }


def evaluate_speech(
    name: str, vocoder_name: str, classifier_name: str, ws, per_digit: int, steps: int, seed: int
) -> dict:
    mel_unet, sched, _ = checkpoint.load_any(name)
    vocoder, _, vcard = load_pretrained(vocoder_name)
    classifier, _, _ = checkpoint.load_any(classifier_name)
    six = torch.tensor(vcard["metrics"]["searched_betas"]["6 steps (searched)"], dtype=torch.float64)
    rows, _ = speech_sweep(mel_unet, sched, vocoder, classifier, six, ws, per_digit, steps, seed)
    return {
        "speech": {str(w): r for w, r in rows.items()},
        "speech_settings": f"{per_digit} clips per digit, DDIM {steps} steps, guidance w in the 'cond' convention, "
        f"{vocoder_name} with its searched 6-step schedule, scored by {classifier_name} against the 300 test recordings",
    }
