import pytest
import torch

from medprune.errors import PruneError
from medprune.prune.select import lowest_k, nm_mask, per_row_mask, unstructured_mask


def test_unstructured_mask_zeroes_exactly_the_lowest():
    scores = torch.tensor([[4.0, 1.0, 3.0, 2.0], [8.0, 5.0, 7.0, 6.0]])
    keep = unstructured_mask(scores, 0.5)
    assert keep.tolist() == [[False, False, False, False], [True, True, True, True]]


@pytest.mark.parametrize("sparsity", [0.0, 0.1, 0.333, 0.5, 0.9])
def test_unstructured_mask_exact_count(sparsity):
    scores = torch.randn(37, 53, generator=torch.Generator().manual_seed(1))
    keep = unstructured_mask(scores, sparsity)
    assert int((~keep).sum()) == round(sparsity * scores.numel())


def test_ties_are_deterministic():
    scores = torch.ones(4, 4)
    assert torch.equal(unstructured_mask(scores, 0.5), unstructured_mask(scores, 0.5))
    assert int((~unstructured_mask(scores, 0.5)).sum()) == 8


def test_per_row_mask_same_count_in_each_row():
    scores = torch.randn(8, 10, generator=torch.Generator().manual_seed(0))
    keep = per_row_mask(scores, 0.3)
    assert ((~keep).sum(dim=1) == 3).all()
    # the pruned entries are the row minima
    for r in range(8):
        assert scores[r][~keep[r]].max() <= scores[r][keep[r]].min()


def test_nm_mask_2_4_keeps_two_largest_per_group():
    scores = torch.tensor([[1.0, 4.0, 3.0, 2.0, 9.0, 8.0, 0.0, 7.0]])
    keep = nm_mask(scores, 2, 4)
    assert keep.tolist() == [[False, True, True, False, True, True, False, False]]


def test_nm_mask_pattern_holds_everywhere():
    scores = torch.randn(16, 32, generator=torch.Generator().manual_seed(2))
    keep = nm_mask(scores, 4, 8)
    assert (keep.reshape(16, 4, 8).sum(-1) == 4).all()


@pytest.mark.parametrize(("n", "m"), [(4, 4), (0, 4), (5, 4)])
def test_nm_mask_rejects_impossible(n, m):
    with pytest.raises(PruneError, match="N:M"):
        nm_mask(torch.ones(2, 8), n, m)


def test_nm_mask_needs_divisible_columns():
    with pytest.raises(PruneError, match="divisible by 4"):
        nm_mask(torch.ones(2, 6), 2, 4)


@pytest.mark.parametrize("bad", [-0.1, 1.0, 1.5])
def test_sparsity_out_of_range(bad):
    with pytest.raises(PruneError, match="sparsity"):
        unstructured_mask(torch.ones(2, 2), bad)


@pytest.mark.parametrize("dim", [None, 1])
@pytest.mark.parametrize("levels", [None, 3])
def test_lowest_k_equals_the_first_k_of_a_stable_sort(dim, levels):
    """The selection is the stable argsort's first k exactly, ties included (``levels``
    rounds the scores to a few values, so most entries tie)."""
    gen = torch.Generator().manual_seed(3)
    scores = torch.rand(23, 41, generator=gen)
    if levels:
        scores = (scores * levels).round()
    for k in (0, 1, 7, 20, 41):
        if dim is None:
            flat = scores.reshape(-1)
            kk = k * 13
            expected = torch.zeros(flat.numel(), dtype=torch.bool)
            expected[torch.argsort(flat, stable=True)[:kk]] = True
            assert torch.equal(lowest_k(flat, kk), expected)
        else:
            expected = torch.zeros_like(scores, dtype=torch.bool)
            expected.scatter_(1, torch.argsort(scores, dim=1, stable=True)[:, :k], True)
            assert torch.equal(lowest_k(scores, k, dim=1), expected)


def test_lowest_k_rejects_a_count_beyond_the_size():
    with pytest.raises(ValueError, match="k=5"):
        lowest_k(torch.zeros(4), 5)
