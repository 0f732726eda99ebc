import pytest
import torch

from medprune.prune.allocation import outlier_ratio, owl_sparsities


def test_owl_mean_is_target_and_outlier_rich_layers_keep_more():
    s = owl_sparsities([0.01, 0.05, 0.03], target=0.6, lam=0.1)
    assert sum(s) / 3 == pytest.approx(0.6)
    assert s[1] < s[2] < s[0]
    assert s[0] - s[1] == pytest.approx(0.2)


def test_owl_equal_ratios_give_uniform():
    assert owl_sparsities([0.02, 0.02], 0.5, 0.08) == [0.5, 0.5]


def test_outlier_ratio_counts_scores_above_threshold_times_mean():
    scores = [torch.tensor([1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 11.0])]  # mean 2
    assert outlier_ratio(scores, 5.0) == pytest.approx(0.1)
    assert outlier_ratio(scores, 6.0) == 0.0
