"""Notebook 13's new find-the-bug catalogues: every catalogued mistake gets a FAIL that names it, on small cases."""

import copy

import pytest
import torch
from torch import nn

from dlib import exercises as E
from dlib import nets, schedules
from dlib.exercises.catalogues import nb13

G = torch.Generator().manual_seed(0)
SCHED = schedules.linear(1000)


def random_attention(channels, heads):
    layer = nets.SelfAttention(channels, heads=heads)
    with torch.no_grad():
        for p in layer.parameters():
            p.copy_(0.5 * torch.randn(p.shape, generator=G))
    return layer


def ema_cases():
    torch.manual_seed(0)
    ema = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))
    model = copy.deepcopy(ema)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=G))
        model(torch.randn(8, 3, generator=G))
    return [dict(ema=ema, model=model, decay=d) for d in (0.9, 0.999, 0.0)]


confident = torch.eye(4)[torch.randint(0, 4, (12,), generator=G)]
confident[:6] = 0.7 * confident[:6] + 0.3 * torch.softmax(torch.randn(6, 4, generator=G), 1)

CASES = {
    "group_norm": [dict(x=torch.randn(2, c, 3, 3, generator=G)) for c in (48, 1, 64)],
    "attention": [
        dict(x=torch.randn(2, 8, 4, 4, generator=G), layer=random_attention(8, 1)),
        dict(x=torch.randn(2, 8, 3, 5, generator=G), layer=random_attention(8, 2)),
    ],
    "ddim_grid": [dict(T=1000, steps=50), dict(T=1000, steps=7), dict(T=10, steps=3)],
    "inception_score": [
        dict(probs=torch.softmax(2 * torch.randn(20, 5, generator=G), 1), splits=4),
        dict(probs=confident, splits=3),
    ],
    "clip_score": [
        dict(image_embeddings=torch.randn(6, 8, generator=G), text_embeddings=torch.randn(6, 8, generator=G)),
        dict(image_embeddings=3 * torch.randn(4, 3, generator=G), text_embeddings=torch.randn(4, 3, generator=G)),
    ],
    "alpha_bar_prev": [dict(sched=SCHED, t=torch.tensor([0, 1, 500, 999])), dict(sched=SCHED, t=torch.tensor([3, 0]))],
    "ema_roles": ema_cases(),
}
TOLERANCES = {"ddim_grid": dict(atol=0, rtol=0), "alpha_bar_prev": dict(atol=1e-9, rtol=1e-7)}


@pytest.mark.parametrize(
    "item, mistake", [(item, m) for item in CASES for m in getattr(nb13, item)["mistakes"]], ids=str
)
def test_every_nb13_mistake_fails_with_its_name(item, mistake):
    catalogue = getattr(nb13, item)
    with torch.no_grad():
        E.assert_catalogue_recognised(
            catalogue["reference"], CASES[item], catalogue["mistakes"], names=[mistake], **TOLERANCES.get(item, {})
        )


@pytest.mark.parametrize("item", list(CASES))
def test_nb13_references_pass_and_have_hint_levels(item):
    catalogue = getattr(nb13, item)
    assert isinstance(catalogue["hint"], list) and len(catalogue["hint"]) == 3
    with torch.no_grad():
        v = E.judge_function(item, catalogue["reference"], catalogue["reference"], CASES[item])
    assert v.passed


def test_on_copies_leaves_both_modules_alone():
    case = ema_cases()[0]
    before = [v.clone() for m in (case["ema"], case["model"]) for v in m.state_dict().values()]

    def pull_model(ema, model, decay):  # the pitfall: it moves the network, not the average
        with torch.no_grad():
            for e, p in zip(ema.parameters(), model.parameters(), strict=True):
                p.mul_(decay).add_(e, alpha=1 - decay)

    state = nb13.on_copies(pull_model)(**case)
    after = [v for m in (case["ema"], case["model"]) for v in m.state_dict().values()]
    assert all(torch.equal(a, b) for a, b in zip(before, after, strict=True))
    assert all(torch.equal(s, v) for s, v in zip(state, case["ema"].state_dict().values(), strict=True))
