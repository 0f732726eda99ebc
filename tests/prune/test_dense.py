"""Dense calibration statistics collected once and reused across candidates (prune.dense)."""

import pytest
import torch

from medprune.errors import PruneError
from medprune.prune import DenseCalibration, collect_dense_calibration, prune_model

from tests.helpers.tiny import byte_tokenizer
from tests.helpers.tiny_families import CALIB_TEXTS, small_prune_config, tiny_family

CANDIDATES = [
    {
        "method": "wanda",
        "sparsity": 0.4,
        "allocation": {"kind": "owl", "owl_lambda": 0.1, "owl_threshold": 2.0},
    },
    {
        "method": "sparsegpt",
        "sparsity": 0.5,
        "allocation": {"kind": "owl", "owl_lambda": 0.1, "owl_threshold": 2.0},
    },
    {"method": "depth", "sparsity": 0.25},
    {
        "method": "width",
        "sparsity": 0.3,
        "structured": {"plan_search": False, "channel_multiple": 8},
    },
    {"method": "wanda", "sparsity": 0.5},
]


def _model():
    return tiny_family("llama", seed=4, num_hidden_layers=4)


def _state(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


class _CountLayerCalls:
    """Counts layer computations: calls of each layer's first linear (a pass over the
    layers calls it once per batch; capturing the first layer's inputs does not)."""

    def __init__(self, model):
        self.calls = 0
        self.handles = [
            layer.self_attn.q_proj.register_forward_pre_hook(self._hook)
            for layer in model.model.layers
        ]

    def _hook(self, *_):
        self.calls += 1


@pytest.mark.parametrize(
    "settings", CANDIDATES, ids=lambda s: f"{s['method']}-{s.get('allocation', {}).get('kind', '')}"
)
def test_reused_statistics_give_the_same_model_without_the_dense_pass(settings, tmp_path):
    tok = byte_tokenizer()
    cfg = small_prune_config(**settings)
    dense = collect_dense_calibration(_model(), tok, cfg, CALIB_TEXTS)
    dense = DenseCalibration.load(dense.save(tmp_path / "dense"))  # as another process would

    fresh = prune_model(_model(), tok, cfg, calib_texts=CALIB_TEXTS)
    model = _model()
    counter = _CountLayerCalls(model)
    reused = prune_model(model, None, cfg, dense=dense)

    assert _state(reused.model).keys() == _state(fresh.model).keys()
    for k, v in _state(fresh.model).items():
        assert torch.equal(v, _state(reused.model)[k]), k
    for key in ("layer_sparsity", "block_influence", "removed_layers", "kept"):
        assert reused.report.get(key) == fresh.report.get(key), key
    batches = cfg.calibration.num_samples // cfg.calibration.batch_size
    if settings["method"] in ("wanda", "sparsegpt"):  # only the pruning pass is left
        assert counter.calls == batches * len(model.model.layers)
    else:
        assert counter.calls == 0


def test_statistics_belong_to_one_model_and_one_calibration_setting():
    tok = byte_tokenizer()
    cfg = small_prune_config(method="depth", sparsity=0.25)
    dense = collect_dense_calibration(_model(), tok, cfg, CALIB_TEXTS)
    other = small_prune_config(
        method="depth",
        sparsity=0.25,
        calibration={"num_samples": 4, "seq_len": 64, "batch_size": 4},
    )
    with pytest.raises(PruneError, match="num_samples=4"):
        prune_model(_model(), None, other, dense=dense)
    with pytest.raises(PruneError, match="num_hidden_layers"):
        prune_model(tiny_family("llama", seed=4, num_hidden_layers=3), None, cfg, dense=dense)
    with pytest.raises(PruneError, match="other weights"):
        prune_model(tiny_family("llama", seed=5, num_hidden_layers=4), None, cfg, dense=dense)
    pruned = _model()
    prune_model(pruned, None, small_prune_config(method="magnitude", sparsity=0.5))
    with pytest.raises(PruneError, match="other weights"):
        prune_model(pruned, None, small_prune_config(method="wanda"), dense=dense)


def test_collecting_leaves_the_model_dense_and_load_names_missing_files(tmp_path):
    model = _model()
    before = _state(model)
    dense = collect_dense_calibration(model, byte_tokenizer(), small_prune_config(), CALIB_TEXTS)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    assert len(dense.sq_sums) == len(dense.block_influence) == 4
    assert dense.token_ids.shape == (8, 64)
    with pytest.raises(PruneError, match="not found"):
        DenseCalibration.load(tmp_path / "nowhere")
    with pytest.raises(PruneError, match="calibration texts"):
        collect_dense_calibration(model, byte_tokenizer(), small_prune_config(), [])
