import torch

from dlib import data, evaluate, evaluate_guidance, guidance, schedules


def _small_unet(**kw):
    from dlib.nets import UNet, UNetConfig

    torch.manual_seed(0)
    m = UNet(UNetConfig(base_channels=8, channel_mults=(1, 2), num_res_blocks=1, attention_levels=(1,), **kw))
    for p in m.parameters():  # zero-initialised output layers would make every condition look alike
        torch.nn.init.normal_(p, std=0.1)
    return m.eval()


def test_guided_samples_at_w0_are_the_conditional_models_samples():
    """w = 0 in the 'cond' convention is no guidance: the same samples as the conditional model."""
    from dlib.samplers import sample_ddpm

    sched = schedules.linear(1000)
    for cond_kw, cond in (
        ({"num_classes": 10}, {"y": torch.tensor([3, 7, 10])}),
        ({"context_dim": 5}, {"context": torch.randn(3, 4, 5), "context_mask": torch.ones(3, 4, dtype=torch.bool)}),
    ):
        model = _small_unet(**cond_kw)
        x = guidance.guided_samples(model, sched, 0.0, 5, torch.Generator().manual_seed(1), (1, 28, 28), **cond)
        gen = torch.Generator().manual_seed(1)  # x_T, then the sampler's noise, from one generator
        x_T = torch.randn((3, 1, 28, 28), generator=gen)
        plain = sample_ddpm(model, x_T, sched, 5, spacing="linspace", generator=gen, **cond).clamp(-1, 1)
        torch.testing.assert_close(x, plain, atol=1e-4, rtol=1e-4)
        strong = guidance.guided_samples(model, sched, 4.0, 5, torch.Generator().manual_seed(1), (1, 28, 28), **cond)
        assert (strong - x).abs().max() > 1e-3  # guidance changes the samples


def test_guided_sampling_makes_one_doubled_call_per_step():
    """CFG costs one network call per step, on the conditional and unconditional halves together."""
    from dlib.utils import CountCalls

    model = CountCalls(_small_unet(num_classes=10))
    guidance.guided_samples(
        model, schedules.linear(1000), 3.0, 7, torch.Generator().manual_seed(0), (1, 28, 28), y=torch.arange(5)
    )
    assert (model.calls, model.examples) == (7, 7 * 2 * 5)
    assert model.cfg.num_classes == 10  # attributes pass through the wrapper


def test_guidance_sweep_and_prompt_scores_report_every_setting(monkeypatch):
    """The card-writing functions on a tiny model: one entry per w (or prompt), shares in [0, 1]."""
    sched = schedules.linear(1000)
    models = {
        "cond": (
            _small_unet(num_classes=10),
            sched,
            {"config": {"dataset": "mnist", "prediction": "eps"}, "image_shape": [1, 28, 28]},
        ),
        "text": (
            _small_unet(context_dim=384),
            sched,
            {"config": {"dataset": "mnist", "prediction": "eps"}, "image_shape": [1, 28, 28]},
        ),
        "clf": (lambda x: torch.nn.functional.one_hot(torch.full((len(x),), 3), 10).float(), None, {}),
    }
    monkeypatch.setattr(evaluate_guidance.checkpoint, "load_any", lambda name: models[name])
    monkeypatch.setattr(evaluate_guidance, "classifier_fid", lambda clf, a, b: 1.0)
    monkeypatch.setattr(data, "load_images", lambda dataset, split: (torch.zeros(8, 1, 28, 28), torch.zeros(8)))
    out = evaluate_guidance.guidance_sweep("cond", "clf", [0.0, 2.0], n_per_class=1, steps=2, seed=0)["guidance_sweep"]
    assert out["w"] == [0.0, 2.0] and out["share_as_requested"] == [0.1, 0.1]  # always answers 3: one class in ten
    scores = evaluate_guidance.text_prompt_scores("text", "clf", 3.0, n_per_prompt=1, steps=2, seed=0)["text_prompts"]
    from dlib.captions import HELD_OUT

    assert len(scores["held_out"]["per_prompt"]) == len(HELD_OUT["mnist"])
    expected = sum(d == 3 for _, d in HELD_OUT["mnist"]) / len(HELD_OUT["mnist"])
    assert abs(scores["held_out"]["share_as_requested"] - expected) < 1e-4
    assert scores["training_wording"]["share_as_requested"] == 0.1


def test_a_run_in_progress_is_measured_beside_its_checkpoints(tmp_path):
    """`python -m dlib.evaluate RUN_DIR`: the run's EMA at its last checkpoint, scored as a shipped model is
    (FID and its floor, the confident share beside the test images', class shares), kept in the run folder."""
    import dataclasses
    import json

    from dlib.recipes import RECIPES
    from dlib.train import train

    train(dataclasses.replace(RECIPES["mnist-tiny"], out_dir=str(tmp_path), steps=2), progress=False)
    run = tmp_path / "mnist-tiny"
    manifest = (data.data_dir() / "MANIFEST.sha256").read_bytes()
    evaluate.main([str(run), "--n", "200", "--steps", "3", "--batch", "200"])
    done = json.loads((run / "evaluations.json").read_text())
    assert [e["step"] for e in done] == [2] and done[0]["command"].startswith("python -m dlib.evaluate ")
    m = done[0]
    assert abs(sum(m["class_shares"]) - 1) < 1e-3 and len(m["class_shares"]) == 10
    assert 0 <= m["confident_share"] <= 1 and m["confident_share_test"] > 0.9  # real digits are clear digits
    assert m["fid_classifier"] > m["fid_floor_train_vs_test"]  # two steps of training: far from the data
    assert m["fid_classifier_bootstrap_sd"] > 0 and m["fid_floor_sd"] > 0
    assert (run / "evaluated-0000002.png").exists()
    evaluate.main([str(run), "--n", "200", "--steps", "2", "--batch", "200"])  # another sampler, the same real draws
    again = json.loads((run / "evaluations.json").read_text())[1]
    assert (
        again["fid_floor_train_vs_test"] == m["fid_floor_train_vs_test"]
        and again["fid_classifier"] != m["fid_classifier"]
    )
    assert (data.data_dir() / "MANIFEST.sha256").read_bytes() == manifest  # data/models untouched


def test_a_text_run_in_progress_is_scored_on_class_prompts_with_its_own_weights(tmp_path):
    """`python -m dlib.evaluate RUN_DIR --class-prompts` samples the run's EMA (generate reads run folders as
    load_any does), not the shipped model of the same recipe, and keeps the scores beside the run."""
    import dataclasses
    import json

    from dlib.generate import generate
    from dlib.recipes import RECIPES
    from dlib.train import train

    train(dataclasses.replace(RECIPES["mnist-text-tiny"], out_dir=str(tmp_path), steps=2), progress=False)
    run = tmp_path / "mnist-text-tiny"
    evaluate.main([str(run), "--class-prompts", "--n-per-prompt", "2", "--steps", "2"])
    done = json.loads((run / "evaluations.json").read_text())
    assert [e["step"] for e in done] == [2] and len(done[0]["per_class"]) == 10 and done[0]["class_prompts_fid"] > 0
    ours = generate(str(run), 4, steps=2, seed=0, batch=4).images
    shipped = generate("mnist-text-unet", 4, steps=2, seed=0, batch=4).images
    assert ours.shape == shipped.shape and not torch.allclose(ours, shipped)


def test_editing_measures_read_every_network_as_its_own_card_says(monkeypatch):
    """evaluate_editing hands the samplers Denoisers built from each card (the edit model's, and its base's for
    replacement and for the ControlNet's frozen copy), never a bare network that a sampler would read as eps."""
    from dlib.denoiser import Denoiser

    sched = schedules.linear(1000)
    unet = {"base_channels": 8, "channel_mults": [1, 2], "attention_levels": [1]}
    cards = {
        "base": {"config": {"prediction": "v", "dataset": "mnist", "unet": unet}},
        "inpaint": {
            "config": {"prediction": "v", "edit": "inpaint", "base_of": "base", "dataset": "mnist", "unet": unet}
        },
        "control": {
            "config": {"prediction": "x_0", "edit": "control", "base_of": "base", "dataset": "mnist", "unet": unet}
        },
    }
    control = torch.nn.Module()
    control.base = torch.nn.Identity()
    nets = {"base": torch.nn.Identity(), "inpaint": torch.nn.Identity(), "control": control}
    seen = []

    def sampler(model, x, *args, **kw):
        seen.append((model.net, model.prediction) if isinstance(model, Denoiser) else (model, "a bare network"))
        return x.clamp(-1, 1)

    clf = (lambda x: torch.zeros(len(x), 10), None, {})
    monkeypatch.setattr(
        evaluate.checkpoint, "load_any", lambda name: clf if name == "clf" else (nets[name], sched, cards[name])
    )
    monkeypatch.setattr(data, "load_images", lambda dataset, split, limit: (torch.zeros(2, 1, 28, 28), torch.zeros(2)))
    monkeypatch.setattr(evaluate, "sample_ddpm", sampler)
    monkeypatch.setattr(evaluate, "sample_inpaint", sampler)
    evaluate.evaluate_editing("inpaint", "clf", 2, 3, 0)
    assert set(seen) == {(nets["inpaint"], "v"), (nets["base"], "v")}
    seen.clear()
    evaluate.evaluate_editing("control", "clf", 2, 3, 0)
    assert seen == [(control, "x_0"), (control.base, "v")]


def test_a_classifier_card_gets_its_accuracy_on_the_test_and_the_training_images(monkeypatch):
    """The training images' accuracy is the ceiling of "share as requested" for a conditional model judged by this
    classifier (a model that samples the training data perfectly scores it), so the card records it beside the test's."""
    x = torch.zeros(4, 1, 28, 28)
    labels = {"train": torch.tensor([4, 4, 4, 1]), "test": torch.tensor([4, 1, 1, 1])}
    monkeypatch.setattr(
        evaluate.checkpoint,
        "read_any_card",
        lambda name: {"config": {"dataset": "mnist", "kind": "classifier", "pad_to_32": False}},
    )
    monkeypatch.setattr(
        evaluate.checkpoint, "load_any", lambda name: (lambda im: torch.eye(10)[[4] * len(im)], None, None)
    )
    monkeypatch.setattr(data, "load_images", lambda dataset, split, pad_to_32=False: (x, labels[split]))
    written = {}
    monkeypatch.setattr(evaluate.checkpoint, "update_card", lambda name, updates: written.update(updates))
    evaluate.main(["my-classifier"])
    m = written["metrics"]
    assert (m["test_accuracy"], m["train_accuracy"]) == (0.25, 0.75)
