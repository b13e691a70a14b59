import pytest
import torch

from dlib import captions, data


def bar(width, top=4, bottom=23, shear=0.0):
    """A vertical bar of the given width on a 28x28 canvas in [-1, 1], optionally sheared."""
    img = -torch.ones(1, 1, 28, 28)
    for y in range(top, bottom + 1):
        x0 = round(12 + shear * (y - 14))
        img[0, 0, y, x0 : x0 + width] = 1.0
    return img


def test_measure_reads_size_thickness_and_slant():
    thin, thick = captions.measure(bar(2)), captions.measure(bar(5))
    assert thin["size"].item() == 20 and thick["size"].item() == 20
    assert 1.5 < thin["thickness"].item() < 2.5 and 4 < thick["thickness"].item() < 6
    right, left = captions.measure(bar(2, shear=0.3)), captions.measure(bar(2, shear=-0.3))
    assert (
        right["slant"].item() < -0.2 and left["slant"].item() > 0.2
    )  # y grows downwards: a bar leaning right has dx/dy < 0
    assert abs(thin["slant"].item()) < 1e-9 and thin["darkness"].item() == pytest.approx(0.0)
    with pytest.raises(ValueError, match=r"\(N, 1, H, W\)"):
        captions.measure(torch.zeros(28, 28))


def test_captions_name_the_class_use_measured_words_and_never_the_held_out_paraphrases():
    x, y = data.load_images("mnist", "train", limit=3000)
    scale = captions.AttributeScale.fit(x)
    gen = torch.Generator().manual_seed(0)
    caps = captions.captions(y, x, "mnist", scale, gen)
    again = captions.captions(y, x, "mnist", scale, torch.Generator().manual_seed(0))
    assert caps == again and len(caps) == len(y)
    for c, label in zip(caps, y.tolist(), strict=True):
        assert captions.DIGITS[label] in c or str(label) in c, c
    assert any("thick" in c for c in caps) and any("slanted" in c for c in caps) and any("small" in c for c in caps)
    held_out = {c for c, _ in captions.HELD_OUT["mnist"]}
    assert not held_out & set(caps)
    # a "thick" caption goes with a thicker-than-usual image
    m = captions.measure(x)
    thick = torch.tensor(["thick" in c for c in caps])
    assert m["thickness"][thick].min() > scale.high["thickness"]


def test_fashion_captions_and_bad_dataset():
    x, y = data.load_images("fashion-mnist", "train", limit=500)
    scale = captions.AttributeScale.fit(x)
    caps = captions.captions(y, x, "fashion-mnist", scale, torch.Generator().manual_seed(1))
    assert all(captions.GARMENTS[label] in c for c, label in zip(caps, y.tolist(), strict=True))
    with pytest.raises(ValueError, match="no captions for dataset"):
        captions.captions(y, x, "cifar10", scale, torch.Generator())
