"""What a classifier says about images: class probabilities, predictions, accuracies. Notebooks 04, 06 and 10.

Test accuracy of the shipped classifiers, the accuracy of the noisy classifier p(y | x_t, t) at
each noise level (classifier guidance, notebook 06), and the share of samples a classifier assigns
to the class that was requested (the fidelity of guided samples). Model cards quote these
numbers through ``dlib.evaluate``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from dlib import data
from dlib.forward import q_sample
from dlib.schedules import Schedule

ClassifierFn = Callable[[torch.Tensor], torch.Tensor]  # images (N, C, H, W) -> logits (N, K)

BATCH = 1000  # images per classifier call


@torch.no_grad()
def class_probabilities(classifier: ClassifierFn, images: torch.Tensor) -> torch.Tensor:
    """p(y | x): the softmax of the classifier's logits for each image, (N, K), in batches (for the Inception Score)."""
    return torch.cat([classifier(images[i : i + BATCH]).softmax(1) for i in range(0, len(images), BATCH)])


@torch.no_grad()
def predictions(classifier: ClassifierFn, images: torch.Tensor) -> torch.Tensor:
    """The classifier's class for each image, (N,), in batches."""
    return torch.cat([classifier(images[i : i + BATCH]).argmax(1) for i in range(0, len(images), BATCH)])


def share_as_requested(classifier: ClassifierFn, images: torch.Tensor, labels: torch.Tensor) -> float:
    """The share of images the classifier assigns to their label (test accuracy, or fidelity of guided samples)."""
    return (predictions(classifier, images) == labels.to(images.device)).float().mean().item()


CONFIDENT = 0.9  # an image counts as clearly drawn when the classifier's top probability is at least this


def confident_share(classifier: ClassifierFn, images: torch.Tensor, threshold: float = CONFIDENT) -> float:
    """The share of images whose most probable class has probability >= ``threshold``: how many samples are
    clearly some class (malformed digits fall below it; quote the share of real test images beside it)."""
    return (class_probabilities(classifier, images).max(1).values >= threshold).float().mean().item()


def class_shares(classifier: ClassifierFn, images: torch.Tensor, num_classes: int = 10) -> list[float]:
    """The share of images the classifier assigns to each class, (K,) as a list: mode coverage of samples."""
    return (torch.bincount(predictions(classifier, images).cpu(), minlength=num_classes) / len(images)).tolist()


def test_accuracy(model: ClassifierFn, dataset: str, pad_to_32: bool = False) -> float:
    """Accuracy of a clean-image classifier on the shipped test split of ``dataset``."""
    return share_as_requested(model, *data.load_images(dataset, "test", pad_to_32=pad_to_32))


NOISY_ACCURACY_TS = (0, 100, 250, 500, 750, 999)


@torch.no_grad()
def noisy_test_accuracy(
    model: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    sched: Schedule,
    dataset: str,
    ts: tuple[int, ...] = NOISY_ACCURACY_TS,
    seed: int = 0,
) -> dict[str, float]:
    """Accuracy of p(y | x_t, t) on the test set noised to each t (the same noise for every t): {str(t): accuracy}."""
    x, y = data.load_images(dataset, "test")
    eps = torch.randn(x.shape, generator=torch.Generator().manual_seed(seed))
    accuracy = {}
    for t in ts:
        t_batch = torch.full((len(x),), t)
        x_t = q_sample(x, t_batch, sched, eps)
        logits = torch.cat([model(x_t[i : i + BATCH], t_batch[i : i + BATCH]) for i in range(0, len(x), BATCH)])
        accuracy[str(t)] = round((logits.argmax(1) == y).float().mean().item(), 4)
    return accuracy
