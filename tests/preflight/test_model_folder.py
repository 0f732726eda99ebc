"""Broken model folders, each with one defect, built here from a real tiny model: the
preflight names the file, tensor or field without loading weights, and loading refuses the
ones whose defect only the weights show."""

import json
import math

import pytest
import torch
from safetensors.torch import load_file, save_file

from medprune.errors import ModelLoadError
from medprune.load.model import load_model
from medprune.preflight.model import inspect_model_folder

from tests.helpers.tiny import byte_tokenizer, save_tiny_model, tiny_llama


@pytest.fixture
def tiny_model_dir(tiny_model_dir):
    """A plain Hugging Face folder (as a user brings it): without the completion marker that
    medprune's own saves carry, whose size check would notice the edits first."""
    (tiny_model_dir / "medprune_complete.json").unlink()
    return tiny_model_dir


def _rewrite(model_dir, change):
    path = model_dir / "model.safetensors"
    tensors = load_file(path)
    change(tensors)
    save_file(tensors, path, metadata={"format": "pt"})


def test_good_folder(tiny_model_dir):
    folder = inspect_model_folder(tiny_model_dir)
    assert folder.model_type == "llama" and folder.n_tensors == 21 and folder.embedding_rows == 260
    assert "match config.json" in folder.describe()


def test_missing_layer_tensors(tiny_model_dir):
    _rewrite(
        tiny_model_dir, lambda t: [t.pop(k) for k in list(t) if k.startswith("model.layers.1.")]
    )
    with pytest.raises(
        ModelLoadError,
        match=r"9 tensor\(s\) the config needs are missing.*'model\.layers\.1\.input_layernorm\.weight'.* and 6 more",
    ):
        inspect_model_folder(tiny_model_dir)
    with pytest.raises(ModelLoadError, match="missing from the weights"):
        load_model(tiny_model_dir)


def test_tensors_for_a_layer_the_config_lacks(tiny_model_dir):
    _rewrite(
        tiny_model_dir,
        lambda t: t.update({"model.layers.2.mlp.down_proj.weight": torch.zeros(64, 128)}),
    )
    with pytest.raises(
        ModelLoadError,
        match=r"1 tensor\(s\) in the weights are not in the model.*'model\.layers\.2\.mlp\.down_proj\.weight'",
    ):
        inspect_model_folder(tiny_model_dir)
    with pytest.raises(ModelLoadError, match="not in the model the config describes"):
        load_model(tiny_model_dir)


def test_mis_shaped_tensor(tiny_model_dir):
    _rewrite(
        tiny_model_dir,
        lambda t: t.update({"model.layers.0.mlp.up_proj.weight": torch.zeros(96, 64)}),
    )
    with pytest.raises(
        ModelLoadError,
        match=r"'model\.layers\.0\.mlp\.up_proj\.weight' is \[96, 64\], config needs \[128, 64\]",
    ):
        inspect_model_folder(tiny_model_dir)
    with pytest.raises(ModelLoadError, match="wrong shape"):
        load_model(tiny_model_dir)


def test_truncated_safetensors(tiny_model_dir):
    path = tiny_model_dir / "model.safetensors"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(
        ModelLoadError,
        match=r"model\.safetensors: not a readable safetensors file.*truncated or corrupt",
    ):
        inspect_model_folder(tiny_model_dir)


def test_invalid_config_json(tiny_model_dir):
    (tiny_model_dir / "config.json").write_text('{"model_type": "llama",')
    with pytest.raises(ModelLoadError, match=r"config\.json: not valid JSON \(line 1"):
        inspect_model_folder(tiny_model_dir)


def test_missing_shard(tmp_path):
    model_dir = tmp_path / "sharded"
    tiny_llama().save_pretrained(model_dir, max_shard_size="100KB")
    byte_tokenizer().save_pretrained(model_dir)
    shards = sorted(model_dir.glob("model-*.safetensors"))
    assert len(shards) >= 2
    inspect_model_folder(model_dir)  # complete: fine
    shards[-1].unlink()
    with pytest.raises(
        ModelLoadError, match=rf"1 of {len(shards)} shard\(s\) missing.*{shards[-1].name}"
    ):
        inspect_model_folder(model_dir)


def test_shard_lacking_a_tensor_its_index_names(tmp_path):
    model_dir = tmp_path / "sharded"
    tiny_llama().save_pretrained(model_dir, max_shard_size="100KB")
    byte_tokenizer().save_pretrained(model_dir)
    index = json.loads((model_dir / "model.safetensors.index.json").read_text())
    name, shard = next(iter(index["weight_map"].items()))
    tensors = load_file(model_dir / shard)
    tensors.pop(name)
    save_file(tensors, model_dir / shard, metadata={"format": "pt"})
    with pytest.raises(ModelLoadError, match="not in the shard it names"):
        inspect_model_folder(model_dir)


def test_remote_code_needed(tiny_model_dir):
    cfg = json.loads((tiny_model_dir / "config.json").read_text())
    cfg.update(
        model_type="clinical_llama",
        auto_map={"AutoModelForCausalLM": "modeling_clinical.ClinicalForCausalLM"},
    )
    (tiny_model_dir / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(
        ModelLoadError,
        match=r"'clinical_llama' is not built into transformers; it needs the model's own code.*trust_remote_code",
    ):
        inspect_model_folder(tiny_model_dir)


def test_bert_is_not_a_causal_lm(tmp_path):
    from transformers import BertConfig, BertForMaskedLM

    model_dir = tmp_path / "bert"
    BertForMaskedLM(
        BertConfig(
            vocab_size=260,
            hidden_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=64,
        )
    ).save_pretrained(model_dir)
    byte_tokenizer().save_pretrained(model_dir)
    with pytest.raises(
        ModelLoadError, match=r"architectures \['BertForMaskedLM'\] is not a causal language model"
    ):
        inspect_model_folder(model_dir)
    cfg = json.loads((model_dir / "config.json").read_text())
    cfg.pop("architectures")
    (model_dir / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ModelLoadError, match=r"model type .bert. is not supported for pruning"):
        inspect_model_folder(model_dir)
    # the load stage checks too (a gs:// or vertex:// source reaches it unchecked)
    from medprune.config import parse_config
    from medprune.load.stage import stage_load

    cfg = parse_config({"model": {"source": str(model_dir)}, "evaluate": {"mcq": "/x.jsonl"}})
    with pytest.raises(ModelLoadError, match=r"model type .bert. is not supported"):
        stage_load(cfg, tmp_path / "out", progress=lambda _: None)
    assert not (tmp_path / "out").exists()


def test_no_tokenizer_files(tiny_model_dir):
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        (tiny_model_dir / name).unlink(missing_ok=True)
    with pytest.raises(ModelLoadError, match=r"no tokenizer files \(one of tokenizer\.json"):
        inspect_model_folder(tiny_model_dir)
    with pytest.raises(ModelLoadError, match="no tokenizer files"):
        load_model(tiny_model_dir)


def test_tokenizer_larger_than_the_embedding(tmp_path):
    model_dir = save_tiny_model(
        tmp_path / "small-vocab", vocab_size=200, bos_token_id=0, eos_token_id=1, pad_token_id=2
    )
    with pytest.raises(
        ModelLoadError, match=r"token ids up to 259 but the model's embedding has only 200 rows"
    ):
        inspect_model_folder(model_dir)
    with pytest.raises(ModelLoadError, match=r"token ids up to 259 but .* only 200 rows"):
        load_model(model_dir)  # a remote source is checked when the load stage has it


def test_non_finite_weights_refused_at_load(tiny_model_dir):
    def poison(t):
        t["model.layers.0.self_attn.q_proj.weight"][0, :3] = math.nan
        t["model.layers.1.mlp.down_proj.weight"][1, 1] = math.inf

    _rewrite(tiny_model_dir, poison)
    inspect_model_folder(tiny_model_dir)  # headers are fine: only the values are bad
    with pytest.raises(
        ModelLoadError,
        match=r"2 tensor\(s\) hold NaN or infinite values: 'model\.layers\.0\.self_attn\.q_proj\.weight' \(3 values\)",
    ):
        load_model(tiny_model_dir)


@pytest.mark.parametrize(
    ("prune", "match"),
    [
        (
            {"method": "depth", "structured": {"layers_to_remove": [0, 5]}},
            r"layers_to_remove has indices \[5\]; the model has layers 0\.\.1",
        ),
        (
            {"method": "width", "structured": {"num_attention_heads": 3}},
            r"num_attention_heads=3.*not possible",
        ),
        ({"method": "magnitude", "pattern": "2:3"}, r"needs in_features divisible by M=3"),
    ],
)
def test_prune_settings_the_model_cannot_take(tmp_path, tiny_model_dir, prune, match):
    from medprune.config import load_config
    from medprune.preflight import preflight_run

    from tests.helpers.fixture_data import write_run_config

    cfg = write_run_config(tmp_path, tiny_model_dir, prune=prune)
    [error] = preflight_run(load_config(cfg)).errors
    assert error.startswith("prune: ")
    assert __import__("re").search(match, error), error
