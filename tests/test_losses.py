import pytest
import torch

from dlib.forward import eps_from_x0, l_simple, v_from_x0_eps
from dlib.losses import (
    ClassifierLoss,
    DiffusionLoss,
    NoisyClassifierLoss,
    Shard,
    min_snr_weight,
    random_shift,
)
from dlib.schedules import get_schedule

SCHED = get_schedule("linear", 1000)


def consistent_model(x_0_hat: torch.Tensor, prediction: str):
    """A fake network that, at every (x_t, t), predicts the same x_0_hat, written in ``prediction``'s terms."""

    def model(x_t, t):
        a = SCHED.at(SCHED.alpha_bar, t, x_t.ndim)
        eps_hat = eps_from_x0(x_t, x_0_hat, a)
        return {"eps": eps_hat, "x_0": x_0_hat, "v": v_from_x0_eps(x_0_hat, eps_hat, a)}[prediction]

    return model


def test_min_snr_weights_turn_every_target_into_the_capped_x0_loss():
    """Hang et al. 2023: each weighted MSE equals min(SNR, gamma) ||x_0 - x_0_hat||^2 for one x_0_hat."""
    g = torch.Generator().manual_seed(0)
    x_0, x_0_hat = torch.randn(6, 1, 4, 4, generator=g), torch.randn(6, 1, 4, 4, generator=g)
    t, eps = torch.tensor([0, 10, 100, 300, 600, 999]), torch.randn(6, 1, 4, 4, generator=g)
    snr = SCHED.snr[t]
    expected = snr.clamp(max=5.0) * ((x_0 - x_0_hat) ** 2).flatten(1).mean(1)
    for prediction in ("eps", "x_0", "v"):
        loss = DiffusionLoss(SCHED, prediction, "min_snr", 5.0)
        got = loss.per_example(consistent_model(x_0_hat, prediction), x_0, t, eps)
        torch.testing.assert_close(got, expected, rtol=2e-3, atol=1e-6, msg=prediction)


def test_min_snr_weight_values_and_zero_snr():
    snr = torch.tensor([0.0, 1.0, 5.0, 20.0])
    torch.testing.assert_close(min_snr_weight(snr, "eps", 5.0), torch.tensor([1.0, 1.0, 1.0, 0.25]))
    torch.testing.assert_close(min_snr_weight(snr, "v", 5.0), torch.tensor([0.0, 0.5, 5 / 6, 5 / 21]))
    torch.testing.assert_close(min_snr_weight(snr, "x_0", 5.0), torch.tensor([0.0, 1.0, 5.0, 5.0]))
    with pytest.raises(ValueError, match="prediction must be one of"):
        min_snr_weight(snr, "flow", 5.0)


def test_unweighted_loss_is_l_simple_with_the_same_draws():
    model = consistent_model(torch.zeros(4, 1, 8, 8), "eps")
    x_0 = torch.randn(4, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    loss = DiffusionLoss(SCHED, "eps")(model, x_0, torch.Generator().manual_seed(2))
    g = torch.Generator().manual_seed(2)
    t, eps = torch.randint(0, 1000, (4,), generator=g), torch.randn(x_0.shape, generator=g)
    torch.testing.assert_close(loss, l_simple(model, x_0, SCHED, t=t, eps=eps).mean())
    assert loss.ndim == 0


def test_multiscale_averages_over_resized_batches():
    shapes = []

    def model(x_t, t):
        shapes.append(tuple(x_t.shape))
        return torch.zeros_like(x_t)

    x_0 = torch.randn(2, 1, 16, 16)
    loss = DiffusionLoss(SCHED, "x_0", scales=(0.5, 1.0))(model, x_0, torch.Generator().manual_seed(0))
    assert shapes == [(2, 1, 8, 8), (2, 1, 16, 16)] and torch.isfinite(loss)


def test_shards_together_draw_the_single_process_batch():
    x_local = torch.zeros(3, 2, 5)
    for draw in ("randint", "rand", "randn"):
        args = (7,) if draw == "randint" else ()
        whole = getattr(Shard(), draw)(*args, torch.zeros(6, 2, 5), torch.Generator().manual_seed(0))
        parts = [getattr(Shard(r, 2), draw)(*args, x_local, torch.Generator().manual_seed(0)) for r in (0, 1)]
        assert torch.equal(torch.cat(parts), whole), draw
    with pytest.raises(ValueError, match="does not split evenly"):
        Shard(0, 4).rows(torch.zeros(6))
    with pytest.raises(ValueError, match="0 <= rank < world"):
        Shard(2, 2)


def test_sharded_losses_average_to_the_single_process_loss():
    model = consistent_model(torch.zeros(8, 1, 4, 4), "v")
    x_0 = torch.randn(8, 1, 4, 4, generator=torch.Generator().manual_seed(3))
    whole = DiffusionLoss(SCHED, "v", "min_snr")(model, x_0, torch.Generator().manual_seed(4))
    parts = [
        DiffusionLoss(SCHED, "v", "min_snr", shard=Shard(r, 2))(
            consistent_model(torch.zeros(4, 1, 4, 4), "v"), Shard(r, 2).rows(x_0), torch.Generator().manual_seed(4)
        )
        for r in (0, 1)
    ]
    torch.testing.assert_close((parts[0] + parts[1]) / 2, whole)


def test_classifier_losses_need_labels_and_score_chance_at_zero_logits():
    x, y = torch.randn(4, 1, 8, 8), torch.tensor([0, 1, 2, 3])
    logits = lambda *args: torch.zeros(4, 10)  # noqa: E731
    for loss in (ClassifierLoss(), NoisyClassifierLoss(SCHED)):
        value = loss(logits, x, torch.Generator().manual_seed(0), y=y)
        torch.testing.assert_close(value, torch.log(torch.tensor(10.0)))
        with pytest.raises(TypeError, match="needs the batch's labels"):
            loss(logits, x, torch.Generator().manual_seed(0))


def test_random_shift_rolls_the_whole_batch_by_at_most_two_pixels():
    x = torch.arange(2 * 64.0).reshape(2, 1, 8, 8)
    shifted = random_shift(x, torch.Generator().manual_seed(0))
    found = [(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3) if torch.equal(x.roll((dy, dx), (-2, -1)), shifted)]
    assert len(found) == 1


def test_bad_settings_are_named():
    with pytest.raises(ValueError, match="prediction must be one of"):
        DiffusionLoss(SCHED, "score")
    with pytest.raises(ValueError, match="weighting must be one of"):
        DiffusionLoss(SCHED, "eps", "p2")


def test_flow_matching_loss_is_smallest_at_the_exact_velocity():
    """For Gaussian data the exact flow model E[eps - x_0 | x_t] (dlib.gaussian) minimises the loss; a scaled copy does worse."""
    from dlib.denoiser import Flow
    from dlib.gaussian import gaussian_denoiser
    from dlib.losses import FlowMatchingLoss

    exact = gaussian_denoiser(Flow(), "flow", 0.5, 0.25).net
    x_0 = 0.5 + 0.5 * torch.randn(50_000, 1, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    loss = FlowMatchingLoss()
    values = {
        c: loss(lambda x, t, c=c: c * exact(x, t), x_0, torch.Generator().manual_seed(1)).item()
        for c in (0.9, 1.0, 1.1)
    }
    assert values[1.0] < values[0.9] and values[1.0] < values[1.1], values
