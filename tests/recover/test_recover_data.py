import json
import re

import pytest
import torch

from medprune.errors import DataError
from medprune.recover.data import (
    IGNORE_INDEX,
    TrainExamples,
    batch_indices,
    load_examples,
    split_eval,
)

from tests.helpers.recover import write_instruction_jsonl, write_text_jsonl
from tests.helpers.tiny import byte_tokenizer


def test_text_is_packed_into_full_blocks(tmp_path):
    tok = byte_tokenizer()
    ex = load_examples(tok, str(write_text_jsonl(tmp_path / "t.jsonl")), seq_len=32)
    assert ex.fmt == "text"
    assert ex.input_ids.shape[1] == 32 and len(ex) > 10
    assert torch.equal(ex.input_ids, ex.labels)
    # EOS separates documents inside the stream
    assert int((ex.input_ids == tok.eos_token_id).sum()) >= 10


def test_instruction_loss_only_on_response(tmp_path):
    tok = byte_tokenizer()
    ex = load_examples(tok, str(write_instruction_jsonl(tmp_path / "i.jsonl")), seq_len=128)
    assert ex.fmt == "instruction" and len(ex) == 12
    row_ids, row_labels = ex.input_ids[0].tolist(), ex.labels[0].tolist()
    prompt_len = 1 + len(tok("Q0: what is the next step? ", add_special_tokens=False)["input_ids"])
    assert all(x == IGNORE_INDEX for x in row_labels[:prompt_len])
    n_resp = sum(1 for x in row_labels if x != IGNORE_INDEX)
    response = tok.decode(
        [t for t, lab in zip(row_ids, row_labels, strict=True) if lab != IGNORE_INDEX],
        skip_special_tokens=True,
    )
    assert (
        response.startswith("Patient presents")
        and n_resp == int(ex.attention_mask[0].sum()) - prompt_len
    )


def test_empty_file_names_the_file(tmp_path):
    p = tmp_path / "empty.jsonl"
    p.write_text("\n")
    with pytest.raises(DataError, match=r"empty.jsonl.*empty"):
        load_examples(byte_tokenizer(), str(p), seq_len=32)


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        (['{"text": "ok text here"}', "{not json"], r"bad.jsonl:2: invalid JSON"),
        (['{"text": "ok text here"}', '{"txt": "x"}'], r"bad.jsonl:2: missing field 'text'"),
        (['{"text": "ok"}', '{"text": 5}'], r"bad.jsonl:2: field 'text' must be a string"),
        (
            ['{"prompt": "p", "response": "r"}', '{"prompt": "p", "response": ""}'],
            r"bad.jsonl:2: field 'response' is empty",
        ),
        (['{"question": "q"}'], r"bad.jsonl:1: cannot tell the data format"),
    ],
)
def test_malformed_lines_name_file_and_line(tmp_path, lines, message):
    p = tmp_path / "bad.jsonl"
    p.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=message):
        load_examples(byte_tokenizer(), str(p), seq_len=64)


def test_too_little_text_for_one_block(tmp_path):
    p = tmp_path / "short.jsonl"
    p.write_text(json.dumps({"text": "tiny"}) + "\n")
    with pytest.raises(DataError, match=r"short.jsonl.*fewer than one block of recover.seq_len=64"):
        load_examples(byte_tokenizer(), str(p), seq_len=64)


def test_batch_order_depends_only_on_sample_counter():
    a = torch.cat([batch_indices(10, 4, seed=3, start=s) for s in range(0, 20, 4)])
    b = torch.cat([batch_indices(10, 2, seed=3, start=s) for s in range(0, 20, 2)])
    assert torch.equal(a, b)
    # each epoch is a permutation of all examples
    assert sorted(a[:10].tolist()) == list(range(10)) and sorted(a[10:].tolist()) == list(range(10))
    assert not torch.equal(a[:10], a[10:])


def test_split_eval_is_disjoint_and_seeded():
    ids = torch.arange(20 * 8).reshape(20, 8)  # every row distinct
    ex = TrainExamples(ids, ids.clone(), torch.ones_like(ids), "mem", "text")
    train, ev = split_eval(ex, 0.25, seed=1)
    _train2, ev2 = split_eval(ex, 0.25, seed=1)
    assert len(train) + len(ev) == len(ex) and torch.equal(ev.input_ids, ev2.input_ids)
    rows = {tuple(r) for r in train.input_ids.tolist()}
    assert len(ev) == 5 and not any(tuple(r) in rows for r in ev.input_ids.tolist())
    assert not torch.equal(split_eval(ex, 0.25, seed=2)[1].input_ids, ev.input_ids)


@pytest.fixture
def gcs_emulator(monkeypatch):
    from gcp_storage_emulator.server import create_server

    server = create_server("127.0.0.1", 0, in_memory=True, default_bucket="clinical")
    server.start()
    host, port = server._api._httpd.server_address  # port 0: the OS picked a free one
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", f"http://{host}:{port}")
    yield
    server.stop()


def test_gs_data_is_downloaded_when_no_fuse_mount(gcs_emulator, tmp_path):
    from google.cloud import storage

    text = "".join(
        json.dumps({"text": f"note {i}: chest pain and dyspnea, troponin raised"}) + "\n"
        for i in range(8)
    )
    storage.Client().bucket("clinical").blob("data/recovery.jsonl").upload_from_string(text)
    ex = load_examples(byte_tokenizer(), "gs://clinical/data/recovery.jsonl", seq_len=32)
    assert (
        ex.fmt == "text"
        and len(ex) == (8 * len(json.loads(text.splitlines()[0])["text"]) + 8) // 32
    )
    with pytest.raises(
        DataError, match=re.escape("gs://clinical/data/missing.jsonl: data file not found")
    ):
        load_examples(byte_tokenizer(), "gs://clinical/data/missing.jsonl", seq_len=32)
