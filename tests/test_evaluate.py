import torch

from dlib import data, evaluate, schedules


def test_noisy_test_accuracy_scores_each_noise_level(monkeypatch):
    y = torch.tensor([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 0])
    x = torch.rand(len(y), 1, 28, 28) * 2 - 1
    monkeypatch.setattr(data, "load_images", lambda dataset, split: (x, y))
    seen_t = []

    def classifier(x_t, t):  # right while t < 500, then always answers 0
        seen_t.append(t.unique().tolist())
        assert x_t.shape == x.shape
        right = torch.nn.functional.one_hot(y, 10).float()
        wrong = torch.nn.functional.one_hot(torch.zeros_like(y), 10).float()
        return torch.where((t < 500)[:, None], right, wrong)

    acc = evaluate.noisy_test_accuracy(classifier, schedules.linear(1000), "mnist", ts=(0, 499, 500, 999))
    assert acc == {"0": 1.0, "499": 1.0, "500": 0.25, "999": 0.25}
    assert seen_t == [[0], [499], [500], [999]]
