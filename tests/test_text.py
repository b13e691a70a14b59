"""The frozen sentence encoder (dlib.text): shapes, masking, caching, and that real weights loaded."""

import pytest
import torch

from dlib.text import TextEncoder


@pytest.fixture(scope="module")
def enc():
    return TextEncoder()


def test_shapes_mask_and_tokens(enc):
    caps = ["a thick seven", "the number after six, slanted right", "a thick seven"]
    context, mask = enc(caps)
    L = max(len(enc.tokens(c)) for c in caps)
    assert context.shape == (3, L, 384) and mask.shape == (3, L) and mask.dtype == torch.bool
    assert mask.sum(1).tolist() == [len(enc.tokens(c)) for c in caps]
    assert enc.tokens("a thick seven") == ["[CLS]", "a", "thick", "seven", "[SEP]"]
    assert (context[~mask] == 0).all()  # padding is zero and masked
    torch.testing.assert_close(context[0], context[2])  # identical captions, identical encodings


def test_cache_does_not_change_encodings(enc):
    """A caption encodes to the same bits alone, in a batch, and from the cache (resume is bit-identical)."""
    enc(["a large nine"])  # now cached
    a, mask = enc(["a small two, slanted left", "a large nine"])
    alone = enc.model.encode(["a large nine"], output_value="token_embeddings")[0].float().cpu()
    assert torch.equal(a[1, : int(mask[1].sum())], alone)


def test_mean_of_tokens_is_the_libraries_sentence_embedding(enc):
    """Parity with sentence-transformers: its sentence vector is the masked mean of our tokens, normalised."""
    caps = ["the number after six", "a pair of trousers", "a handwritten seven"]
    context, mask = enc(caps)
    mean = (context * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)
    ours = torch.nn.functional.normalize(mean, dim=-1)
    theirs = torch.as_tensor(enc.model.encode(caps))
    torch.testing.assert_close(ours, theirs, atol=1e-4, rtol=1e-4)
    # real pretrained weights: a paraphrase is nearer its meaning than an unrelated garment
    assert ours[0] @ ours[2] > ours[0] @ ours[1]


def test_bad_input_raises(enc):
    for bad in ("a seven", [], [3]):
        with pytest.raises(TypeError, match="list of strings"):
            enc(bad)
