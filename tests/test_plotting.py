"""dlib.plotting.image_grid: where each image lands, the padding between them, and bad input."""

import pytest
import torch

from dlib.plotting import image_grid


@pytest.mark.parametrize("B,C,nrow,pad", [(1, 1, 8, 1), (5, 1, 3, 1), (8, 3, 4, 2), (7, 1, 8, 0), (6, 1, 2, 1)])
def test_image_grid_places_every_image(B, C, nrow, pad):
    H, W = 4, 5
    x = torch.rand(B, C, H, W) * 2 - 1
    grid = image_grid(x, nrow=nrow, pad=pad)
    ncol = min(nrow, B)
    nrows = -(-B // ncol)
    shape = (nrows * (H + pad) - pad, ncol * (W + pad) - pad)
    assert tuple(grid.shape) == (shape if C == 1 else (*shape, C))
    grid = grid.reshape(*shape, C)
    covered = torch.zeros(shape, dtype=torch.bool)
    for i in range(B):
        r, c = divmod(i, ncol)
        y0, x0 = r * (H + pad), c * (W + pad)
        tile = grid[y0 : y0 + H, x0 : x0 + W]
        torch.testing.assert_close(tile, ((x[i] + 1) / 2).permute(1, 2, 0))
        covered[y0 : y0 + H, x0 : x0 + W] = True
    assert torch.all(grid[~covered] == 1.0), "the gaps and empty cells are white"


def test_image_grid_clamps_to_unit_range():
    grid = image_grid(torch.tensor([-3.0, 0.0, 3.0]).reshape(1, 1, 1, 3))
    torch.testing.assert_close(grid, torch.tensor([[0.0, 0.5, 1.0]]))


def test_image_grid_rejects_a_single_image():
    with pytest.raises(ValueError, match=r"expects \(B, C, H, W\)"):
        image_grid(torch.zeros(1, 28, 28))
