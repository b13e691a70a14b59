"""Notebook 08: masks and edge maps (dlib.controls), the editing networks (dlib.nets.editing) and
inpainting / SDEdit at sampling time (dlib.editing)."""

import dataclasses
import hashlib
from itertools import pairwise

import pytest
import torch

from dlib import checkpoint
from dlib import schedules as S
from dlib.config import TrainConfig
from dlib.controls import PRESETS, check_control, check_mask, edge_map, iou, preset_mask, random_masks
from dlib.editing import repaint_levels, replace_known, sample_inpaint, sdedit, seam
from dlib.nets import UNet, UNetConfig
from dlib.nets.editing import ControlNet, InpaintingUNet
from dlib.recipes import RECIPES
from dlib.train import train
from dlib.train.loop import same_process
from dlib.utils import CountCalls

TINY = UNetConfig(base_channels=8, channel_mults=(1, 2), num_res_blocks=1, attention_levels=(1,))
SCHED = S.linear(1000)
SIZE = 8  # tiny U-Nets on 8x8 images: fast on a busy CPU


def random_unet(cfg: UNetConfig = TINY, seed: int = 0) -> UNet:
    """A tiny U-Net whose zero-initialised layers (output conv, residual branches, attention projections) are
    perturbed too, so its output is non-zero and depends on every skip connection."""
    torch.manual_seed(seed)
    net = UNet(cfg)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.1 * torch.randn_like(p))
        torch.nn.init.normal_(net.out[-1].weight, std=0.1)
    return net.eval()


def state_hash(module: torch.nn.Module) -> str:
    """sha256 of a state dict: names and tensor bytes, in the state dict's order."""
    h = hashlib.sha256()
    for k, v in module.state_dict().items():
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def batch(n: int = 4, seed: int = 1, size: int = SIZE):
    """x_t, t and a binary control image for a tiny model."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 1, size, size, generator=g)
    t = torch.randint(0, 1000, (n,), generator=g)
    control = (torch.rand(n, 1, size, size, generator=g) > 0.7).float()
    return x, t, control


def zero_conv_params(cn: ControlNet) -> list[torch.Tensor]:
    return [*cn.zero_skips.parameters(), *cn.zero_mid.parameters()]


# --- ControlNet ---


@torch.no_grad()
def test_controlnet_at_initialisation_is_exactly_the_base():
    """Zero convolutions: with any control and any scale the output is the base's, bit for bit; without control
    it is the base model. Once the zero convolutions are non-zero the control changes the output (scale 0 does not)."""
    base = random_unet()
    cn = ControlNet(TINY).load_base(base).eval()
    copy, base_state = cn.copy.state_dict(), base.state_dict()
    assert copy and all(torch.equal(v, base_state[k]) for k, v in copy.items())  # the copy starts as the encoder
    x, t, control = batch()
    want = base(x, t)
    assert want.abs().max() > 0  # a non-trivial base, else the comparison says nothing
    assert torch.equal(cn(x, t), want)
    for scale in (0.0, 0.5, 1.0, 3.0):
        assert torch.equal(cn(x, t, control=control, scale=scale), want), scale
    for p in zero_conv_params(cn):
        p.normal_(std=0.1)
    torch.nn.init.normal_(cn.hint[-1].weight, std=0.1)
    assert torch.equal(cn(x, t, control=control, scale=0.0), want)
    assert not torch.allclose(cn(x, t, control=control), want)
    assert torch.equal(cn(x, t), want)  # control=None is the base whatever the copy holds


def test_controlnet_training_moves_only_the_trainable_parts():
    """The derivation of notebook 08: at initialisation the zero convolutions' weights are zero, so only they get
    non-zero gradients (the copy and the hint get exactly zero); after one step they are non-zero and the copy's
    gradient is too, after two the hint's first layers'. The frozen base never changes (optimiser over all
    parameters, as in dlib.train.loop: the base has no gradient)."""
    torch.manual_seed(0)
    cn = ControlNet(TINY).load_base(random_unet())
    opt = torch.optim.AdamW(cn.parameters(), lr=1e-2, weight_decay=0.0)
    base0 = state_hash(cn.base)
    snap = {k: v.clone() for k, v in cn.state_dict().items()}
    grads = []
    for step in range(3):
        x, t, control = batch(seed=10 + step)
        eps = torch.randn_like(x)
        loss = ((cn(x, t, control=control) - eps) ** 2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        grads.append({n: (p.grad.abs().max().item() if p.grad is not None else None) for n, p in cn.named_parameters()})
        opt.step()
        if step == 0:
            after_one = {k: v.clone() for k, v in cn.state_dict().items()}
    g0, g1, g2 = grads
    assert all(g0[n] is None for n in g0 if n.startswith("base."))  # frozen: no gradient at all
    assert all(g0[n] > 0 for n in g0 if n.startswith(("zero_skips.", "zero_mid.")))
    assert all(g0[n] == 0 for n in g0 if n.startswith(("copy.", "hint.")))  # exactly zero, not small
    assert max(g1[n] for n in g1 if n.startswith("copy.")) > 0
    assert g1["hint.4.weight"] > 0 and g1["hint.0.weight"] == 0  # hint's last layer still zero during step 2
    assert g2["hint.0.weight"] > 0

    def changed(before, prefix):
        return any(not torch.equal(before[k], v) for k, v in cn.state_dict().items() if k.startswith(prefix))

    assert state_hash(cn.base) == base0
    for prefix in ("zero_skips.", "zero_mid.", "copy.", "hint."):
        assert changed(snap, prefix), prefix
    # after the first step only the zero convolutions had moved (zero gradient, zero weight decay: no update)
    assert all(torch.equal(after_one[k], snap[k]) for k in snap if k.startswith(("copy.", "hint.", "base.")))
    assert not all(torch.equal(after_one[k], snap[k]) for k in snap if k.startswith("zero_"))


def test_only_the_copy_hint_and_zero_convolutions_are_trainable():
    """requires_grad: the base has none; the copy (encoder only), hint and zero convolutions are all trainable."""
    cn = ControlNet(TINY)
    trainable = {n for n, p in cn.named_parameters() if p.requires_grad}
    frozen = {n for n, p in cn.named_parameters() if not p.requires_grad}
    assert frozen == {n for n, _ in cn.named_parameters() if n.startswith("base.")} and frozen
    assert trainable == {n for n, _ in cn.named_parameters() if not n.startswith("base.")}
    for prefix in ("copy.", "hint.", "zero_skips.", "zero_mid."):
        assert any(n.startswith(prefix) for n in trainable), prefix
    assert not any(n.startswith(("copy.up.", "copy.out.")) for n in trainable)  # the copy has no decoder
    assert len(cn.zero_skips) == len(cn.base.skip_channels)


def test_training_the_tiny_recipes(tmp_path):
    """control-tiny through dlib.train: the base stays the shipped mnist-unet bit for bit in the model, the EMA
    and the saved checkpoint, while the trainable parts move. inpaint-tiny trains and its checkpoint loads back."""
    shipped = state_hash(checkpoint.load_pretrained("mnist-unet")[0])
    cfg = dataclasses.replace(RECIPES["control-tiny"], out_dir=str(tmp_path))
    out = train(cfg, progress=False)
    assert out["card"]["step"] == cfg.steps == 4
    assert state_hash(out["model"].base) == shipped
    assert state_hash(out["ema"].base) == shipped
    assert any(p.abs().max() > 0 for p in zero_conv_params(out["model"]))  # training did something
    loaded, _, card = checkpoint.load_ema(tmp_path / "control-tiny")
    assert isinstance(loaded, ControlNet) and state_hash(loaded.base) == shipped
    assert state_hash(loaded) == state_hash(out["ema"])

    cfg = dataclasses.replace(RECIPES["inpaint-tiny"], out_dir=str(tmp_path))
    out = train(cfg, progress=False)
    loaded, sched, card = checkpoint.load_ema(tmp_path / "inpaint-tiny")
    assert isinstance(loaded, InpaintingUNet) and sched is not None and card["step"] == 4
    assert state_hash(loaded) == state_hash(out["ema"])
    x = torch.zeros(2, 1, 28, 28)
    with torch.no_grad():
        eps = loaded(x, torch.tensor([10, 500]), mask=preset_mask("centre"), known=x)
    assert eps.shape == x.shape and torch.isfinite(eps).all()


def test_an_edit_recipe_must_predict_what_its_base_predicts(tmp_path):
    """inpaint-tiny on a base trained for v (a run folder whose card says so): refused before any step, naming the
    field, the base's value and the recipe's; the same recipe on a base that matches is accepted by the check."""
    base_card = checkpoint.read_card("mnist-unet")
    bad = dataclasses.replace(
        RECIPES["inpaint-tiny"], prediction="v" if base_card["config"]["prediction"] != "v" else "eps"
    )
    with pytest.raises(
        ValueError, match=r"builds on mnist-unet, which was trained with prediction '\w+' \(recipe: '\w+'\)"
    ):
        train(dataclasses.replace(bad, out_dir=str(tmp_path)), progress=False)
    assert not (tmp_path / "inpaint-tiny").exists()  # refused before a checkpoint was written
    same_process(RECIPES["inpaint-tiny"], base_card["config"], "mnist-unet")  # the shipped pair matches
    with pytest.raises(ValueError, match="schedule 'linear' \\(recipe: 'cosine'\\)"):
        same_process(dataclasses.replace(RECIPES["inpaint-tiny"], schedule="cosine"), base_card["config"], "mnist-unet")


# --- InpaintingUNet ---


@torch.no_grad()
def test_inpainting_unet_starts_as_its_base():
    """load_base zeroes the mask and masked-image channels: the output is the base U-Net's for any mask and known
    image (up to the rounding of a wider convolution), and without a mask."""
    base = random_unet()
    net = InpaintingUNet(TINY).load_base(base).eval()
    x, t, _ = batch()
    want = base(x, t)
    known = torch.randn_like(x)
    assert torch.all(net.unet.conv_in.weight[:, 1:] == 0)
    torch.testing.assert_close(net(x, t), want)
    for kind in ("centre", "right", "strokes"):
        torch.testing.assert_close(net(x, t, mask=preset_mask(kind, SIZE), known=known), want)
    masks = random_masks(len(x), SIZE, torch.Generator().manual_seed(3))
    torch.testing.assert_close(net(x, t, mask=masks, known=known), want)
    torch.nn.init.normal_(net.unet.conv_in.weight[:, 1:], std=0.1)  # the extra channels are live once non-zero
    assert not torch.allclose(net(x, t, mask=preset_mask("centre", SIZE), known=known), want)


# --- bad input ---


def test_bad_input_is_named():
    x, t, control = batch()
    with pytest.raises(ValueError, match=r"mask must be \(B, 1, H, W\)"):
        check_mask(torch.ones(1, 1, SIZE, SIZE - 2), x)
    with pytest.raises(ValueError, match=r"mask must be \(B, 1, H, W\)"):
        check_mask(torch.ones(3, 1, SIZE, SIZE), x)  # batch neither 1 nor B
    with pytest.raises(ValueError, match=r"mask must be \(B, 1, H, W\)"):
        sample_inpaint(random_unet(), x, torch.ones(1, 2, SIZE, SIZE), SCHED, 2)
    with pytest.raises(ValueError, match="mask must be binary"):
        check_mask(torch.full((1, 1, SIZE, SIZE), 0.5), x)
    for strength in (-0.1, 1.5):
        with pytest.raises(ValueError, match=r"strength must lie in \[0, 1\]"):
            sdedit(random_unet(), x, strength, SCHED, 4)
    cn = ControlNet(TINY)
    for bad in (control[..., :4, :4], control.repeat(1, 3, 1, 1), control[:2], control[0]):
        with pytest.raises(ValueError, match=r"control must be \(B, C, H, W\)"):
            cn(x, t, control=bad)
    with pytest.raises(ValueError, match="needs the known image"):
        InpaintingUNet(TINY)(x, t, mask=preset_mask("centre", SIZE))
    for kw in (dict(edit="inpaint"), dict(base_of="mnist-unet"), dict(edit="outpaint", base_of="mnist-unet")):
        with pytest.raises(ValueError, match="edit must be one of"):
            TrainConfig(**kw)
    other = UNet(dataclasses.replace(TINY, base_channels=16))
    with pytest.raises(ValueError, match="is built for the U-Net"):
        ControlNet(TINY).load_base(other)
    with pytest.raises(ValueError, match="is built for the U-Net"):
        InpaintingUNet(TINY).load_base(other)
    with pytest.raises(ValueError, match="jump <= steps"):
        repaint_levels(3, jump=4)
    for args in ((0,), (3, 0), (3, 1, 0)):
        with pytest.raises(ValueError, match="need steps >= 1"):
            repaint_levels(*args)
    check_control(control, x, 1)  # the right shape passes


# --- RePaint's walk ---


WALKS = [(s, j, r) for s in (1, 2, 5, 6, 7, 10) for j in (1, 2, 3) for r in (1, 2, 4) if j <= s]


@pytest.mark.parametrize(("steps", "jump", "resamples"), WALKS)
def test_repaint_levels_properties(steps, jump, resamples):
    """From steps to 0, moving one level down or jump levels up, never above steps, with the documented number
    of down moves (network calls); resamples=1 is the plain descent."""
    levels = repaint_levels(steps, jump, resamples)
    assert levels[0] == steps and levels[-1] == 0
    moves = [b - a for a, b in pairwise(levels)]
    assert set(moves) <= {-1, jump}
    assert max(levels) == steps and min(levels) == 0
    assert moves.count(-1) == steps + (resamples - 1) * jump * len(range(0, steps - jump + 1, jump))
    if resamples == 1:
        assert levels == list(range(steps, -1, -1))


def test_repaint_levels_worked_example():
    """steps=6, jump=2, resamples=3: each stretch of two levels is denoised three times, by hand."""
    assert repaint_levels(6, 2, 3) == [
        6, 5, 4, 6, 5, 4, 6, 5, 4,
        3, 2, 4, 3, 2, 4, 3, 2,
        1, 0, 2, 1, 0, 2, 1, 0,
    ]  # fmt: skip
    assert repaint_levels(3, 1, 2) == [3, 2, 3, 2, 1, 2, 1, 0, 1, 0]


# --- replacement and inpainting ---


def test_replace_known():
    """At alpha_bar = 1 the known pixels are exact and the rest is x; at alpha_bar = a the known region holds
    sqrt(a) x_known + sqrt(1 - a) noise."""
    g = torch.Generator().manual_seed(0)
    x, x_known, noise = (torch.randn(2, 1, SIZE, SIZE, generator=g) for _ in range(3))
    mask = preset_mask("centre", SIZE)
    keep, gen = (mask == 0).expand_as(x), (mask == 1).expand_as(x)
    out = replace_known(x, x_known, mask, 1.0, noise)
    assert torch.equal(out[keep], x_known[keep]) and torch.equal(out[gen], x[gen])
    for a in (0.0, 0.3, 0.9):
        out = replace_known(x, x_known, mask, a, noise)
        torch.testing.assert_close(out[keep], (a**0.5 * x_known + (1 - a) ** 0.5 * noise)[keep])
        assert torch.equal(out[gen], x[gen])


@pytest.mark.parametrize(("steps", "jump", "resamples"), [(4, 1, 1), (4, 1, 2), (5, 2, 3)])
def test_sample_inpaint_keeps_the_known_pixels_exactly(steps, jump, resamples):
    """Replacement and RePaint: the known region of the result is x_known bit for bit, the rest is generated, and
    there is one network call per down move of repaint_levels."""
    model = CountCalls(random_unet())
    g = torch.Generator().manual_seed(0)
    x_known = torch.rand(3, 1, SIZE, SIZE, generator=g) * 2 - 1
    mask = torch.cat([preset_mask("centre", SIZE), preset_mask("right", SIZE), preset_mask("strokes", SIZE)])
    with torch.no_grad():
        out = sample_inpaint(model, x_known, mask, SCHED, steps, jump=jump, resamples=resamples, generator=g)
    keep = mask == 0
    assert (out - x_known)[keep].abs().max().item() == 0
    assert (out - x_known)[~keep].abs().min() > 0  # generated, not copied
    levels = repaint_levels(steps, jump, resamples)
    assert model.calls == sum(b == a - 1 for a, b in pairwise(levels))


# --- SDEdit ---


@torch.no_grad()
def test_sdedit():
    """strength 0 returns the input unchanged without calling the model; strength s walks round(s * steps) levels,
    one call each; the same seed gives the same edit, another seed another."""
    x = torch.rand(2, 1, SIZE, SIZE, generator=torch.Generator().manual_seed(0)) * 2 - 1
    model = CountCalls(random_unet())
    assert torch.equal(sdedit(model, x, 0.0, SCHED, 5), x) and model.calls == 0
    for strength, steps in ((0.25, 4), (0.5, 4), (1.0, 4), (0.6, 5), (0.3, 10)):
        model.calls = 0
        sdedit(model, x, strength, SCHED, steps, generator=torch.Generator().manual_seed(1))
        assert model.calls == round(strength * steps), (strength, steps)
    a, b, c = (sdedit(model, x, 0.5, SCHED, 4, generator=torch.Generator().manual_seed(s)) for s in (7, 7, 8))
    assert torch.equal(a, b) and not torch.equal(a, c) and not torch.equal(a, x)


# --- seam ---


def test_seam():
    """Zero on a constant image; hand-computed values on 4x4 images; unchanged by adding a constant."""
    i, j = torch.meshgrid(torch.arange(4.0), torch.arange(4.0), indexing="ij")
    centre = torch.zeros(1, 1, 4, 4)
    centre[..., 1:3, 1:3] = 1  # a 2x2 hole: 4 horizontal and 4 vertical known/generated neighbour pairs
    right = torch.zeros(1, 1, 4, 4)
    right[..., 2:] = 1  # two columns: 4 horizontal pairs (columns 1 and 2)
    assert seam(torch.full((2, 1, 4, 4), 0.3), centre).tolist() == [0.0, 0.0]
    # x = 4i + j: horizontal steps 1 (4 pairs), vertical 4 (4 pairs) -> (4 + 16) / 8
    ramp = (4 * i + j)[None, None]
    assert seam(ramp, centre).tolist() == [2.5]
    assert seam(ramp.flip(-1), centre).tolist() == seam(ramp.flip(-2), centre).tolist() == [2.5]  # |differences|
    # x = i j, right half: |2i - i| = i on rows 0..3 -> (0 + 1 + 2 + 3) / 4; per image (B,)
    both = torch.stack([(i * j)[None], ramp[0]])
    assert seam(both, right).tolist() == [1.5, 1.0]
    torch.testing.assert_close(seam(both + 7.0, right), seam(both, right))
    torch.testing.assert_close(seam(ramp - 0.25, centre), seam(ramp, centre))


# --- edge maps and IoU ---


@pytest.mark.parametrize("value", [-1.0, 0.3, 1.0])
def test_a_constant_image_has_no_edges_even_at_the_border(value):
    """Replicate padding: no false edge at the image border (zero padding would draw one)."""
    x = torch.full((2, 1, 7, 9), value)
    assert edge_map(x).sum() == 0
    assert edge_map(x, threshold=0.1).sum() == 0


def test_a_vertical_step_has_edges_on_the_two_columns_beside_it():
    x = -torch.ones(1, 1, 8, 8)
    x[..., 5:] = 1.0
    want = torch.zeros(1, 1, 8, 8)
    want[..., 4:6] = 1.0
    assert torch.equal(edge_map(x), want)
    assert torch.equal(edge_map(x.transpose(-1, -2)), want.transpose(-1, -2))  # a horizontal step: rows
    assert edge_map(x).dtype == x.dtype


def test_iou():
    m = torch.zeros(3, 1, 6, 6)
    m[0, :, 1:3] = 1
    m[1, :, :, 4] = 1
    m[2, :, 0, 0] = 1
    assert iou(m, m).tolist() == [1.0, 1.0, 1.0]
    assert iou(m, 1 - m).tolist() == [0.0, 0.0, 0.0]
    empty = torch.zeros(2, 1, 6, 6)
    assert iou(empty, empty).tolist() == [1.0, 1.0]
    half = m.clone()
    half[0, :, 2] = 0  # 6 of the 12 pixels
    assert iou(m, half)[0].item() == 0.5


# --- masks ---


def test_random_masks():
    """Binary, (n, 1, size, size), repeatable from the generator; p_full=1 gives all ones; with p_full=0 every
    mask has pixels to keep and pixels to generate."""
    n, size = 8, 28
    a = random_masks(n, size, torch.Generator().manual_seed(4))
    assert a.shape == (n, 1, size, size) and a.dtype == torch.float32
    assert torch.all((a == 0) | (a == 1))
    assert torch.equal(a, random_masks(n, size, torch.Generator().manual_seed(4)))
    assert not torch.equal(a, random_masks(n, size, torch.Generator().manual_seed(5)))
    assert torch.all(random_masks(n, size, torch.Generator().manual_seed(4), p_full=1.0) == 1)
    partial = random_masks(32, size, torch.Generator().manual_seed(6), p_full=0.0)
    area = partial.flatten(1).sum(1)
    assert torch.all(area > 0) and torch.all(area < size * size)


@pytest.mark.parametrize("kind", PRESETS)
def test_preset_masks(kind):
    """Each preset is a binary (1, 1, size, size) mask; the centre square has half the side, the halves half the area."""
    m = preset_mask(kind, 28)
    assert m.shape == (1, 1, 28, 28) and torch.all((m == 0) | (m == 1))
    area = int(m.sum())
    want = {"centre": 14 * 14, "bottom": 28 * 28 // 2, "right": 28 * 28 // 2}
    if kind in want:
        assert area == want[kind]
    else:
        assert 0 < area < 28 * 28
        assert torch.equal(m, preset_mask(kind, 28)) and not torch.equal(m, preset_mask(kind, 28, seed=1))
    if kind == "bottom":
        assert m[..., 14:, :].min() == 1 and m[..., :14, :].max() == 0
    if kind == "right":
        assert m[..., :, 14:].min() == 1 and m[..., :, :14].max() == 0


def test_unknown_preset_is_refused():
    with pytest.raises(ValueError, match="mask preset must be one of"):
        preset_mask("left")


def test_notebook_08_catalogues_name_every_mistake():
    """Each catalogued mistake of notebook 08's exercises differs from the reference on the notebook's cases."""
    from dlib.exercises import assert_catalogue_recognised
    from dlib.exercises.catalogues import nb08

    g = torch.Generator().manual_seed(1)
    replace_cases = [
        dict(
            x_prev=torch.randn(2, 1, 6, 6, generator=g),
            x_known=torch.randn(2, 1, 6, 6, generator=g),
            mask=(torch.rand(2, 1, 6, 6, generator=g) > 0.5).float(),
            alpha_bar_t=torch.tensor(0.3, dtype=torch.float64),
            alpha_bar_prev=torch.tensor(0.45, dtype=torch.float64),
            noise=torch.randn(2, 1, 6, 6, generator=g),
        )
    ]
    assert_catalogue_recognised(nb08.replace_step["reference"], replace_cases, nb08.replace_step["mistakes"])
    walk_cases = [
        dict(steps=6, jump=2, resamples=3),
        dict(steps=10, jump=3, resamples=2),
        dict(steps=5, jump=1, resamples=2),
    ]
    assert_catalogue_recognised(nb08.repaint_levels["reference"], walk_cases, nb08.repaint_levels["mistakes"])
