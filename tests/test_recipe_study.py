"""benchmarks/recipe_study.py: the budget loop, the diffusers peer, the samples and the report, on tiny runs."""

import dataclasses
import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from dlib.config import build_model
from dlib.nets import UNet, UNetConfig
from dlib.recipes import RECIPES

ROOT = Path(__file__).resolve().parent.parent
TINY = dataclasses.replace(RECIPES["mnist-tiny"], limit=512)  # base 8, levels (1, 2), batch 16, warm-up 5


def _load_study():
    spec = importlib.util.spec_from_file_location("recipe_study", ROOT / "benchmarks" / "recipe_study.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["recipe_study"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


rs = _load_study()
needs_diffusers = pytest.mark.skipif(importlib.util.find_spec("diffusers") is None, reason="the peer needs diffusers")


def quiet(*args):
    pass


@pytest.fixture(scope="module")
def tiny_pace():
    """Seconds per step of the tiny run on this machine, now: the budgets below are counted in its steps, so that a
    slow or busy machine (a CI host, two test workers on one core) gets the same number of steps as a fast one."""
    return rs.pace(rs.Entry("tiny", "pace"), steps=2, base=TINY, log=quiet)


def test_budget_loop_stops_at_the_budget_and_resumes(tmp_path, tiny_pace):
    entry, budget = rs.Entry("tiny", "a test run"), max(2.0, 40 * tiny_pace)  # 3 chunks take about 13 steps
    first = rs.run_entry(entry, budget, tmp_path, base=TINY, chunk_s=budget / 5, max_chunks=3, log=quiet)  # "killed"
    assert not first["done"] and first["planned_steps"] == rs.UNBOUNDED  # a constant rate: the budget ends it
    step_1, wall_1 = first["chunks"][-1]["step"], first["chunks"][-1]["wall_s"]
    assert 0 < step_1 and wall_1 < budget

    rec = rs.run_entry(entry, budget, tmp_path, base=TINY, chunk_s=budget / 5, log=quiet)  # a new call carries on
    card = json.loads((tmp_path / "tiny" / "card.json").read_text())
    assert rec["done"] and rec["stopped_by"] == "budget"
    steps, walls = [c["step"] for c in rec["chunks"]], [c["wall_s"] for c in rec["chunks"]]
    assert steps == sorted(steps) and walls == sorted(walls) and steps[2] == step_1  # resumed, not restarted
    assert card["step"] == steps[-1] and card["wall_time_s"] == pytest.approx(walls[-1], abs=1e-3)
    pace = card["wall_time_s"] / card["step"]
    assert budget - 2 * pace <= card["wall_time_s"] <= budget + 3 * pace + 0.5  # spent, not overspent
    assert rec["chunks"][0]["cpu_s"] > 0 and rec["chunks"][0]["call_s"] >= rec["chunks"][0]["wall_s"]

    again = rs.run_entry(entry, budget, tmp_path, base=TINY, log=quiet)  # finished: skipped
    assert again["chunks"] == rec["chunks"] and json.loads((tmp_path / "tiny" / "card.json").read_text()) == card
    with pytest.raises(SystemExit, match="budget"):  # another budget in the same folder is refused
        rs.run_entry(entry, 2 * budget, tmp_path, base=TINY, log=quiet)


def test_a_decaying_rate_is_planned_inside_the_warm_up(tmp_path, tiny_pace):
    entry, budget = rs.Entry("tiny-cos", "cosine decay", {"lr_schedule": "cosine"}), max(1.0, 25 * tiny_pace)
    rec = rs.run_entry(entry, budget, tmp_path, base=TINY, chunk_s=0.3 * budget, log=quiet)
    assert rec["probe_start"][0] >= 1 and rec["chunks"][1]["step"] <= TINY.warmup  # timed within the warm-up
    card = json.loads((tmp_path / "tiny-cos" / "card.json").read_text())
    assert rec["done"] and card["config"]["steps"] == rec["planned_steps"] < rs.UNBOUNDED
    assert card["step"] <= rec["planned_steps"]


def test_the_base_is_the_recipe_shipped_before_the_retrain():
    """Every entry is BASE plus its changes, and runs resume from their folders: BASE must not follow
    RECIPES["mnist-unet"], which the retrain (issue 13) changes. These are its values, frozen."""
    b = rs.BASE
    assert (b.prediction, b.schedule, b.T, b.weighting, b.dataset, b.pad_to_32, b.limit) == (
        "eps", "linear", 1000, "none", "mnist", False, None,
    )  # fmt: skip
    assert (b.steps, b.batch_size, b.lr, b.warmup, b.lr_schedule, b.weight_decay, b.grad_clip) == (
        2200, 128, 1e-3, 200, "constant", 0.0, 1.0,
    )  # fmt: skip
    assert (b.ema_decay, b.ema_warmup, b.amp_cpu, b.seed) == (0.999, "ramp", False, 0)
    assert b.unet == UNetConfig(
        in_channels=1, base_channels=32, channel_mults=(1, 2, 2), num_res_blocks=1, attention_levels=(2,), heads=1,
        dropout=0.0, num_classes=None, context_dim=None, out_channels=None,
    )  # fmt: skip


def test_entries_build_their_configs():
    for e in rs.STUDY:
        cfg = (rs.peer_config if e.peer else rs.train_config)(e, Path("out"), 1000)
        assert cfg.name == e.name and cfg.steps == 1000
    assert rs.train_config(rs.ENTRIES["baseline"], Path("o"), 5).unet == rs.BASE.unet
    assert rs.train_config(rs.ENTRIES["width-16-noattn"], Path("o"), 5).unet.attention_levels == ()
    assert rs.peer_config(rs.ENTRIES["diffusers-peer"], Path("o"), 5).lr == 1e-4
    for rerun, of in (
        ("baseline-seed1", "baseline"),
        ("width-16-min-snr5-v-seed1", "width-16-min-snr5-v"),
        ("diffusers-peer-width-16-lr1e-3-seed1", "diffusers-peer-width-16-lr1e-3"),
    ):
        config = rs.peer_config if rs.ENTRIES[of].peer else rs.train_config
        a, b = (config(rs.ENTRIES[n], Path("o"), 5) for n in (rerun, of))
        assert (a.seed, b.seed) == (1, 0) and dataclasses.replace(a, name=b.name, seed=0) == b  # only the seed differs


@needs_diffusers
@pytest.mark.parametrize("width", [16, 32, 48])
@pytest.mark.parametrize("attention", [(2,), ()])
def test_the_peer_has_dlibs_parameter_count(width, attention):
    cfg = dataclasses.replace(rs.BASE.unet, base_channels=width, attention_levels=attention)
    ours, peer = (sum(p.numel() for p in m.parameters()) for m in (UNet(cfg), rs.peer_unet(cfg)))
    assert abs(peer / ours - 1) < 0.10


def _weights(module):
    return torch.cat([p.detach().flatten() for p in module.parameters()])


@needs_diffusers
def test_the_peer_resumes_exactly_and_scores_from_its_ema(tmp_path):
    entry = rs.Entry("peer", "the peer", {"warmup": 2}, peer=True)
    straight = rs.train_peer(rs.peer_config(entry, tmp_path / "a", 6, TINY))
    rs.train_peer(rs.peer_config(entry, tmp_path / "b", 6, TINY), stop_after=4)
    resumed = rs.train_peer(rs.peer_config(entry, tmp_path / "b", 6, TINY))
    assert resumed["card"]["step"] == 6 and torch.equal(_weights(straight["model"]), _weights(resumed["model"]))
    den, sha = rs.load_ema_denoiser(entry, tmp_path / "b", TINY)
    assert sha == json.loads((tmp_path / "b" / "peer" / "card.json").read_text())["state_sha256"]
    state = load_file(tmp_path / "b" / "peer" / "state.safetensors")
    ema = [state[f"ema.{i}"] for i in range(len(list(den.net.parameters())))]
    assert torch.equal(_weights(den.net), torch.cat([e.flatten() for e in ema]))
    assert not torch.equal(_weights(den.net), _weights(resumed["model"]))  # the EMA, not the raw weights
    with pytest.raises(ValueError, match="different config"):
        rs.train_peer(rs.peer_config(dataclasses.replace(entry, changes={"lr": 1.0}), tmp_path / "b", 6, TINY))


def test_samples_start_from_the_same_noise_for_every_run(tmp_path):
    entry = rs.Entry("tiny", "")
    rs.train(rs.train_config(entry, tmp_path, 3, TINY), progress=False)
    den, _ = rs.load_ema_denoiser(entry, tmp_path, TINY)
    a = rs.draw_samples(den, 6, seed=1, ddpm_steps=3, dpm_steps=3, chunk=4)
    b = rs.draw_samples(den, 6, seed=1, ddpm_steps=3, dpm_steps=3, chunk=4)
    assert a["ddpm"].shape == a["dpm"].shape == (6, 1, 28, 28)
    assert torch.equal(a["ddpm"], b["ddpm"]) and torch.equal(a["dpm"], b["dpm"])
    assert a["ddpm"].abs().max() <= 1


def test_the_clip_check_draws_the_studys_ddpm_samples(tmp_path):
    """benchmarks/recipe_study_clip.py: without clipping, exactly the study's DDPM samples (before the clamp);
    with clip_x0 the samples stay in [-1, 1] at every step."""
    spec = importlib.util.spec_from_file_location("recipe_study_clip", ROOT / "benchmarks" / "recipe_study_clip.py")
    clip = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(clip)
    entry = rs.Entry("tiny", "")
    rs.train(rs.train_config(entry, tmp_path, 3, TINY), progress=False)
    den, _ = rs.load_ema_denoiser(entry, tmp_path, TINY)
    study = rs.draw_samples(den, 6, seed=1, ddpm_steps=3, dpm_steps=3, chunk=4)["ddpm"]
    assert torch.equal(clip.ddpm_samples(den, 6, 1, 3, False, chunk=4).clamp(-1, 1), study)
    assert clip.ddpm_samples(den, 6, 1, 3, True, chunk=4).abs().max() <= 1


def fake_run(out: Path, name: str, fid: float | None, steps: int = 900) -> None:
    run = out / name
    run.mkdir(parents=True)
    rec = {"name": name, "budget_s": 1800.0, "threads": 1, "planned_steps": 950, "done": True}
    rec["chunks"] = [{"step": steps, "wall_s": 1799.0, "call_s": 1850.0, "cpu_s": 1800.0, "loadavg_1m": 1.0}]
    (run / "study.json").write_text(json.dumps(rec))
    (run / "card.json").write_text(json.dumps({"step": steps, "wall_time_s": 1799.0, "hardware": ["CPU X, 1 threads"]}))
    if fid is not None:
        key = {"n": 500, "seed": 0, "ddpm_steps": 100, "dpm_steps": 15, "state_sha256": name}
        score = {"fid": fid, "fid_std": 1.0, "confident": 0.95}
        (run / "score.json").write_text(json.dumps({"key": key, "ddpm": score, "dpm": score | {"fid": fid + 1}}))


def test_the_report_renders_a_table_from_results(tmp_path, capsys):
    fake_run(tmp_path, "baseline", 12.345)
    fake_run(tmp_path, "diffusers-peer", 30.0)
    fake_run(tmp_path, "cosine-decay", None)  # trained, not scored yet
    ref = {"n": 500, "seed": 0, "test": {"fid": 3.0, "fid_std": 0.5, "confident": 0.98}}
    ref["train"] = {"fid": 4.0, "fid_std": 0.5, "confident": 0.97}
    (tmp_path / "reference-n500-seed0.json").write_text(json.dumps(ref))
    result = rs.main(["report", "--out", str(tmp_path), "--results", str(tmp_path / "r.json")])
    table = capsys.readouterr().out
    lines = [line for line in table.splitlines() if line.startswith("|")]
    assert len(lines) == 2 + 3 + 1  # header, rule, three runs in STUDY order, the reference
    assert lines[2].startswith("| `baseline` |") and lines[3].startswith("| `cosine-decay` |")
    assert (
        "12.35 +- 1.00" in lines[2]
        and "13.35 +- 1.00" in lines[2]
        and "95.0%" in lines[2]
        and "| 900 (950) |" in lines[2]
    )
    assert lines[3].endswith("| - | - | - | - |") and "| 0.97 |" in lines[2]  # unscored; CPU per thread 1800/1850
    assert "4.00 +- 0.50" in lines[-1] and "98.0%" in lines[-1]
    saved = json.loads((tmp_path / "r.json").read_text())
    assert saved["table"] == result["table"] and not saved["all_scored"] and saved["budgets_s"] == [1800.0]
    assert all(len(line.split(" | ")) == len(rs.COLUMNS) for line in lines[:1] + lines[2:])  # every row complete


def test_the_cpu_bf16_entry_trains_under_autocast_and_loads_as_a_plain_unet(tmp_path):
    plain, bf16 = rs.Entry("plain", ""), rs.Entry("bf16", "", cpu_bf16=True)
    for e in (plain, bf16):
        rs.train_chunk(e, tmp_path, 3, 3, TINY)
    assert importlib.import_module("dlib.train.loop").build_model is build_model  # restored
    (a, _), (b, _) = (rs.load_ema_denoiser(e, tmp_path, TINY) for e in (plain, bf16))
    assert type(b.net) is UNet and all(p.dtype == torch.float32 for p in b.net.parameters())
    assert not torch.equal(_weights(a.net), _weights(b.net))  # the same run but for bfloat16 arithmetic


def test_each_host_counts_its_seconds_at_its_own_pace(tmp_path):
    entry, calls = rs.Entry("tiny", "a test run"), []

    def host():  # the first call's machine trains 50 times as slowly as the reference one (so that one chunk of
        calls.append(1)  # 0.3 s can never spend the budget, however busy the test machine), the second's twice
        return [50.0, 2.0][len(calls) - 1]

    first = rs.run_entry(entry, 1.0, tmp_path, base=TINY, pace_factor=host, chunk_s=0.3, max_chunks=1, log=quiet)
    w1 = first["chunks"][-1]["wall_s"]
    assert first["budget_ref_s"] == 1.0 and [s["pace_factor"] for s in first["segments"]] == [50.0]
    assert not first["done"] and rs.spent_ref_s(first, w1) == pytest.approx(w1 / 50)
    rec = rs.run_entry(entry, 1.0, tmp_path, base=TINY, pace_factor=host, chunk_s=0.3, log=quiet)  # another host
    assert [s["pace_factor"] for s in rec["segments"]] == [50.0, 2.0] and rec["segments"][1][
        "from_wall_s"
    ] == pytest.approx(w1, abs=1e-3)
    card = json.loads((tmp_path / "tiny" / "card.json").read_text())
    wall, pace = card["wall_time_s"], card["wall_time_s"] / card["step"]
    spent = rs.spent_ref_s(rec, wall)
    assert rec["done"] and spent == pytest.approx(w1 / 50 + (wall - w1) / 2, abs=1e-3)
    assert 1.0 - pace <= spent <= 1.0 + 2 * pace  # the reference budget, spent at each host's own pace
    assert rs.collect_rows([entry], tmp_path)[0]["pace_factor"] == pytest.approx(wall / spent, abs=1e-3)
    rs.run_entry(entry, 1.0, tmp_path, base=TINY, pace_factor=host, log=quiet)  # done: skipped, the host not timed
    assert len(calls) == 2
    with pytest.raises(SystemExit, match="budget"):  # the reference budget is what a folder holds to
        rs.run_entry(entry, 2.0, tmp_path, base=TINY, pace_factor=1.0, log=quiet)


def test_a_record_written_before_segments_counts_at_its_one_pace():
    rec = {"budget_s": 3000.0, "budget_ref_s": 1000.0, "pace_factor": 3.0, "chunks": [{"step": 5, "wall_s": 10.0}]}
    assert rs.spent_ref_s(rec, 2400.0) == pytest.approx(800.0) and rs._effective_pace(rec, 2400.0) == 3.0


def test_the_report_keeps_the_rows_of_earlier_sessions(tmp_path, capsys):
    fake_run(tmp_path / "old", "baseline", 12.0)
    ref = {"n": 500, "seed": 0, "test": {"fid": 3.0, "fid_std": 0.5, "confident": 0.98}}
    ref["train"] = {"fid": 4.0, "fid_std": 0.5, "confident": 0.97}
    (tmp_path / "old" / "reference-n500-seed0.json").write_text(json.dumps(ref))
    results = tmp_path / "r.json"
    rs.main(["report", "--out", str(tmp_path / "old"), "--results", str(results)])
    fake_run(tmp_path / "new", "cosine-decay", 10.0)  # a later session: the baseline's folder is gone
    result = rs.main(["report", "--out", str(tmp_path / "new"), "--results", str(results)])
    assert [r["name"] for r in result["rows"]] == ["baseline", "cosine-decay"]  # STUDY order
    assert result["reference"] == ref and "98.0%" in result["table"].splitlines()[-1]
    fake_run(tmp_path / "new", "baseline", 11.0)  # a rerun here replaces the earlier row
    result = rs.main(["report", "--out", str(tmp_path / "new"), "--results", str(results)])
    assert [r["ddpm"]["fid"] for r in result["rows"]] == [11.0, 10.0]
    capsys.readouterr()
