import pytest
import torch

from medprune.errors import PruneError
from medprune.prune.select import per_row_mask, unstructured_mask
from medprune.prune.sparsegpt import sparsegpt_prune
from medprune.prune.wanda import wanda_scores


def _problem(rows=24, cols=64, tokens=512, seed=0):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(rows, cols, generator=g)
    x = torch.randn(tokens, cols, generator=g) * torch.linspace(0.2, 3.0, cols)  # uneven features
    x[:, :8] += torch.randn(tokens, 1, generator=g) * 2  # correlated features
    return w, x


def _err(w, w2, x):
    return float(((w - w2) @ x.T).pow(2).sum())


@pytest.mark.parametrize("sparsity", [0.3, 0.5])
def test_exact_sparsity_and_lower_error_than_masks(sparsity):
    w, x = _problem()
    new = sparsegpt_prune(w, x.T @ x, sparsity=sparsity)  # one block: columns differ in scale
    assert int((new == 0).sum()) == round(sparsity * w.numel())
    mag = w * unstructured_mask(w.abs(), sparsity)
    wanda = w * per_row_mask(wanda_scores(w, x.pow(2).sum(0).sqrt()), sparsity)
    assert _err(w, new, x) < _err(w, wanda, x) < _err(w, mag, x)


@pytest.mark.parametrize(("n", "m"), [(2, 4), (4, 8)])
def test_nm_pattern_in_every_group(n, m):
    w, x = _problem()
    new = sparsegpt_prune(w, x.T @ x, sparsity=0.0, nm=(n, m), blocksize=16)
    groups = (new != 0).reshape(w.shape[0], -1, m).sum(-1)
    assert (groups <= n).all()
    assert (groups == n).all()  # random weights: nothing else is zero


def test_row_segments_get_their_own_exact_sparsity():
    w, x = _problem(rows=30)
    new = sparsegpt_prune(w, x.T @ x, sparsity=0.5, blocksize=16, row_segments=[20, 6, 4])
    for a, b in [(0, 20), (20, 26), (26, 30)]:
        assert int((new[a:b] == 0).sum()) == round(0.5 * (b - a) * w.shape[1])


def test_dead_inputs_are_zeroed():
    w, x = _problem()
    x[:, 5] = 0
    new = sparsegpt_prune(w, x.T @ x, sparsity=0.25, blocksize=16)
    assert (new[:, 5] == 0).all()


def test_blocksize_must_fit_nm():
    w, x = _problem()
    with pytest.raises(PruneError, match="blocksize"):
        sparsegpt_prune(w, x.T @ x, sparsity=0.0, nm=(2, 4), blocksize=6)
