import torch

from medprune.prune.select import per_row_mask
from medprune.prune.wanda import wanda_scores


def test_wanda_scores_are_magnitude_times_input_norm():
    w = torch.tensor([[1.0, -2.0, 3.0], [-4.0, 5.0, -6.0]])
    norm = torch.tensor([3.0, 1.0, 0.5])
    expected = torch.tensor([[3.0, 2.0, 1.5], [12.0, 5.0, 3.0]])
    assert torch.equal(wanda_scores(w, norm), expected)


def test_wanda_keeps_small_weights_on_loud_inputs():
    # Column 0 has tiny weights but a huge input; Wanda keeps it where magnitude would not.
    w = torch.tensor([[0.1, 1.0, 1.0, 2.0], [0.1, 2.0, 1.0, 1.0]])
    norm = torch.tensor([100.0, 1.0, 1.0, 1.0])
    keep = per_row_mask(wanda_scores(w, norm), 0.5)
    assert keep[:, 0].all()
    assert (keep.sum(1) == 2).all()
