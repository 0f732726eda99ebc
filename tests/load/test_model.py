import json
import re

import pytest
import torch

from medprune.errors import ModelLoadError
from medprune.load.model import load_model, save_model
from medprune.load.resolve import resolve_model_source


def test_round_trip(tiny_model_dir, tiny_model):
    model, tok = load_model(tiny_model_dir)
    assert not model.training
    ids = torch.tensor([tok("fever and cough")["input_ids"]])
    assert torch.allclose(model(input_ids=ids).logits, tiny_model(input_ids=ids).logits, atol=1e-5)
    assert list(tiny_model_dir.glob("*.safetensors"))


def test_dtype(tiny_model_dir):
    model, _ = load_model(tiny_model_dir, dtype="bfloat16")
    assert next(model.parameters()).dtype == torch.bfloat16


def test_missing_directory(tmp_path):
    with pytest.raises(ModelLoadError, match="not found"):
        load_model(tmp_path / "nope")


def test_refuses_pickle_weights(tiny_model_dir):
    (tiny_model_dir / "medprune_complete.json").unlink()  # a plain Hugging Face directory
    for f in tiny_model_dir.glob("*.safetensors"):
        f.rename(f.with_suffix(".bin"))
    with pytest.raises(
        ModelLoadError, match=r"only pickle weights found \(model\.bin\).*safetensors only"
    ):
        load_model(tiny_model_dir)


def test_no_config(tmp_path):
    (tmp_path / "model.safetensors").write_bytes(b"")
    with pytest.raises(ModelLoadError, match=re.escape("no config.json")):
        load_model(tmp_path)


def test_corrupt_weights(tiny_model_dir):
    (tiny_model_dir / "medprune_complete.json").unlink()  # a plain Hugging Face directory
    (tiny_model_dir / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(ModelLoadError, match="not a readable safetensors file"):
        load_model(tiny_model_dir)


def test_save_refuses_non_empty_dir(tmp_path, tiny_model):
    out = tmp_path / "out"
    out.mkdir()
    (out / "x").write_text("x")
    with pytest.raises(ModelLoadError, match="not empty"):
        save_model(tiny_model, None, out)


def test_save_writes_extra_files(tmp_path, tiny_model):
    out = save_model(
        tiny_model, None, tmp_path / "out", extra_files={"medprune_config.json": {"a": 1}}
    )
    assert json.loads((out / "medprune_config.json").read_text()) == {"a": 1}
    assert not list(tmp_path.glob(".out.*"))  # no temporary left behind


def test_resolve_rejects_unknown_scheme(tmp_path):
    from medprune.errors import UriError

    with pytest.raises(UriError, match="unsupported scheme"):
        resolve_model_source("s3://bucket/model", tmp_path)


def test_save_works_without_directory_renames(fuse_fs, tiny_model):
    """Vertex AI artifacts are on Cloud Storage FUSE, which refuses directory renames."""
    out = fuse_fs.root / "model"
    out.mkdir()  # kfp creates the artifact folder
    save_model(tiny_model, None, out, extra_files={"medprune_config.json": {"a": 1}})
    assert (out / "medprune_complete.json").is_file() and fuse_fs.refused() == []


def test_half_written_model_is_refused_by_readers(tmp_path, tiny_model):
    out = save_model(tiny_model, None, tmp_path / "m", extra_files={"medprune_config.json": {}})
    (out / "medprune_complete.json").unlink()  # as if the writer was killed before the end
    with pytest.raises(ModelLoadError, match=re.escape("incomplete, no medprune_complete.json")):
        load_model(out)
    # a retried task writes it again over the leftovers
    save_model(tiny_model, None, out, extra_files={"medprune_config.json": {}})
    from medprune.load.model import check_model_dir

    assert check_model_dir(out) == out
