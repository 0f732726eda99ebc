"""Recovery on text the dense teacher writes itself: prompts, sampling, the cache, the mix
with the domain text and each source's share of the steps, and bad settings."""

from __future__ import annotations

import json

import pytest
import torch

from medprune.config import TeacherDataConfig, parse_config
from medprune.errors import ConfigError, DataError
from medprune.load.model import load_model, save_model
from medprune.prune.apply import sparsity_report
from medprune.recover.data import TrainExamples, mix_examples, origin_shares
from medprune.recover.stage import stage_recover, teacher_cache_dir
from medprune.recover.teacher_data import (
    BOS,
    DEFAULT_OPENINGS,
    OPENING,
    REWRITE,
    generate_sequences,
    teacher_corpus,
    teacher_prompts,
)

from tests.helpers.recover import pruned_tiny, write_text_jsonl
from tests.helpers.tiny import byte_tokenizer, save_tiny_model, tiny_llama


def _domain(n: int = 10, seq_len: int = 32, offset: int = 0) -> TrainExamples:
    ids = (torch.arange(n * seq_len).reshape(n, seq_len) + offset) % 250
    return TrainExamples(ids, ids.clone(), torch.ones_like(ids), "domain.jsonl", "text")


def test_prompts_split_between_rewrites_and_openings() -> None:
    tok = byte_tokenizer()
    td = TeacherDataConfig(sequences=20, rewrite_share=0.25, prompt_tokens=5)
    domain = _domain()
    prompts = teacher_prompts(tok, td, domain, ["Alpha beta", "Gamma"], seed=0)
    kinds = [p.kind for p in prompts]
    assert len(prompts) == 20 and kinds.count(REWRITE) == 5
    rows = {tuple(int(t) for t in r[:5]) for r in domain.input_ids}
    assert all(p.ids in rows for p in prompts if p.kind == REWRITE)
    # Openings cycle: each of the two texts and the bare BOS token before any repeats.
    rest = prompts[5:]
    assert {p.kind for p in rest} == {OPENING, BOS}
    assert {p.ids for p in rest[:3]} == {
        tuple(tok("Alpha beta")["input_ids"]),
        tuple(tok("Gamma")["input_ids"]),
        (tok.bos_token_id,),
    }
    # Without domain text every prompt is an opening.
    assert all(p.kind != REWRITE for p in teacher_prompts(tok, td, None, ["A"], seed=0))


def test_generation_continues_each_prompt_to_the_length_and_stops_at_eos() -> None:
    tok = byte_tokenizer()
    teacher = tiny_llama(seed=3)
    td = TeacherDataConfig(sequences=9, rewrite_share=0.0)
    prompts = teacher_prompts(tok, td, None, ["Chest pain", "The kidney is"], seed=0)
    ids, mask = generate_sequences(
        teacher,
        prompts,
        24,
        temperature=1.0,
        top_p=1.0,
        batch_size=4,
        pad_id=tok.pad_token_id,
        eos_id=tok.eos_token_id,
        seed=7,
    )
    assert ids.shape == mask.shape == (9, 24)
    for i, p in enumerate(prompts):
        assert ids[i, : len(p.ids)].tolist() == list(p.ids)  # the prompt comes first, unpadded
        n = int(mask[i].sum())
        assert n > len(p.ids)  # and something was written after it
        assert (ids[i, n:] == tok.pad_token_id).all()
        written = ids[i, len(p.ids) : n].tolist()
        assert tok.eos_token_id not in written[:-1]  # nothing after an EOS
    again, _ = generate_sequences(
        teacher,
        prompts,
        24,
        temperature=1.0,
        top_p=1.0,
        batch_size=4,
        pad_id=tok.pad_token_id,
        eos_id=tok.eos_token_id,
        seed=7,
    )
    assert torch.equal(ids, again)  # same prompts and seed, same text


def test_left_padded_batches_write_what_each_prompt_alone_would_get_greedily() -> None:
    """Padding stays out of the teacher's view: a prompt batched with longer ones gets the
    same greedy continuation as on its own."""
    from medprune.recover.teacher_data import TeacherPrompt

    tok = byte_tokenizer()
    teacher = tiny_llama(seed=5)
    prompts = [
        TeacherPrompt(tuple(tok("Chest pain radiating")["input_ids"]), OPENING),
        TeacherPrompt(tuple(tok("Hi")["input_ids"]), OPENING),
    ]
    kw = dict(temperature=1e-4, top_p=1.0, pad_id=tok.pad_token_id, eos_id=None, seed=0)
    together, _ = generate_sequences(teacher, prompts, 20, batch_size=2, **kw)
    alone, _ = generate_sequences(teacher, prompts[1:], 20, batch_size=1, **kw)
    assert together[1].tolist() == alone[0].tolist()


def test_corpus_is_cached_by_teacher_and_settings(tmp_path) -> None:
    tok = byte_tokenizer()
    teacher = tiny_llama(seed=3)
    td = TeacherDataConfig(sequences=6, rewrite_share=0.5, prompt_tokens=4, batch_size=3)
    common = dict(
        seq_len=16,
        domain=_domain(),
        domain_sha256="d" * 64,
        cache_dir=tmp_path,
        seed=0,
        progress=lambda _: None,
    )
    first = teacher_corpus(teacher, tok, td, teacher_fingerprint="t1", **common)
    assert first.generated and first.kinds[REWRITE] == 3 and sum(first.kinds.values()) == 6
    assert len(first.examples) == 6 and first.path.is_file()
    labels, mask = first.examples.labels, first.examples.attention_mask
    assert (labels[mask == 0] == -100).all() and (labels[mask == 1] >= 0).all()
    again = teacher_corpus(teacher, tok, td, teacher_fingerprint="t1", **common)
    assert not again.generated and torch.equal(again.examples.input_ids, first.examples.input_ids)
    other_teacher = teacher_corpus(teacher, tok, td, teacher_fingerprint="t2", **common)
    hotter = teacher_corpus(
        teacher, tok, td.model_copy(update={"temperature": 1.3}), teacher_fingerprint="t1", **common
    )
    assert other_teacher.generated and hotter.generated
    assert len({first.key, other_teacher.key, hotter.key}) == 3
    # A damaged cache file is written again, not trusted.
    first.path.write_bytes(b"not safetensors")
    assert teacher_corpus(teacher, tok, td, teacher_fingerprint="t1", **common).generated


def test_mix_draws_each_part_with_its_share_and_the_steps_follow() -> None:
    domain, teacher = _domain(n=40), _domain(n=100, offset=7)
    mixed = mix_examples(
        {"domain": domain, "teacher": teacher}, {"domain": 0.25, "teacher": 0.75}, 0
    )
    assert mixed.origins == ("domain", "teacher")
    counts = torch.bincount(mixed.origin).tolist()
    assert counts == [33, 100]  # every teacher sequence, a quarter of the total from the domain
    shares = origin_shares(mixed, len(mixed), seed=0)  # one full epoch: exactly the mix
    assert shares == pytest.approx({"domain": 33 / 133, "teacher": 100 / 133})
    long = origin_shares(mixed, 10_000, seed=0)
    assert long["teacher"] == pytest.approx(0.75, abs=0.01)
    assert origin_shares(domain, 50, seed=0) == {"domain.jsonl": 1.0}
    with pytest.raises(ValueError, match="sum to 1"):
        mix_examples({"domain": domain, "teacher": teacher}, {"domain": 0.5, "teacher": 0.6}, 0)
    with pytest.raises(DataError, match="different lengths"):
        mix_examples(
            {"domain": domain, "teacher": _domain(seq_len=16)},
            {"domain": 0.5, "teacher": 0.5},
            0,
        )


def _cfg(tmp_path, **teacher_data):
    return parse_config(
        {
            "output_dir": str(tmp_path / "runs"),
            "model": {"source": str(tmp_path / "dense")},
            "evaluate": {"perplexity": str(tmp_path / "t.jsonl")},
            "recover": {
                "data": str(tmp_path / "t.jsonl"),
                "steps": 4,
                "lr": 1e-3,
                "batch_size": 2,
                "seq_len": 32,
                "teacher_data": {"sequences": 12, "batch_size": 6, **teacher_data},
            },
        }
    )


def test_stage_recover_distils_over_teacher_text_and_reports_the_shares(tmp_path) -> None:
    save_tiny_model(tmp_path / "dense", seed=1)
    save_model(pruned_tiny(), byte_tokenizer(), tmp_path / "pruned")
    write_text_jsonl(tmp_path / "t.jsonl", n=40)
    cfg = _cfg(tmp_path, mix=0.5, rewrite_share=0.5, prompt_tokens=8)
    messages: list[str] = []
    report = stage_recover(
        cfg,
        tmp_path / "pruned",
        tmp_path / "out",
        teacher_dir=tmp_path / "dense",
        progress=messages.append,
    )
    assert report["distill"] is True and report["steps"] == 4
    assert report["teacher_data"]["sequences"] == 12 and report["teacher_data"]["generated"]
    assert report["teacher_data"]["kinds"]["rewrite"] == 6
    shares = report["data_shares"]
    assert set(shares) == {"domain", "teacher"} and sum(shares.values()) == pytest.approx(1.0)
    assert shares["teacher"] > 0
    assert any("teacher" in m and "of sequences" in m for m in messages)
    assert report["sparsity_after"] == pytest.approx(0.5)  # the masks held
    assert sparsity_report(load_model(tmp_path / "out")[0])["sparsity"] == pytest.approx(0.5)
    cache = teacher_cache_dir(cfg)
    assert cache == tmp_path / "runs" / "teacher-data" and len(list(cache.iterdir())) == 1
    # A second run (another candidate of a search) reads the teacher's text from the cache.
    again = stage_recover(
        cfg,
        tmp_path / "pruned",
        tmp_path / "out2",
        teacher_dir=tmp_path / "dense",
        progress=lambda _: None,
    )
    assert again["teacher_data"]["generated"] is False
    assert again["teacher_data"]["key"] == report["teacher_data"]["key"]


def test_stage_recover_on_teacher_text_alone(tmp_path) -> None:
    save_tiny_model(tmp_path / "dense", seed=1)
    save_model(pruned_tiny(), byte_tokenizer(), tmp_path / "pruned")
    write_text_jsonl(tmp_path / "t.jsonl")
    cfg = _cfg(tmp_path, mix=1.0, rewrite_share=0.0)
    data = json.loads(cfg.to_json())
    data["recover"]["data"] = None
    cfg = parse_config(data)
    report = stage_recover(
        cfg,
        tmp_path / "pruned",
        tmp_path / "out",
        teacher_dir=tmp_path / "dense",
        progress=lambda _: None,
    )
    assert report["train_sequences"] == 12
    assert report["data_shares"] == {"teacher-text:" + report["teacher_data"]["key"]: 1.0}


@pytest.mark.parametrize(
    ("recover", "message"),
    [
        ({"teacher_data": {"mix": 0}}, "recover.teacher_data.mix"),
        ({"teacher_data": {"mix": 1.5}}, "recover.teacher_data.mix"),
        (
            {"teacher_data": {"prompt_tokens": 64}},
            "teacher_data.prompt_tokens \\(64\\) leaves no room",
        ),
        ({"teacher_data": {}, "distill": {"enabled": False}}, "needs recover.distill.enabled"),
        ({"data": None, "teacher_data": {"mix": 0.5}}, "teacher_data without recover.data"),
        ({"teacher_data": {"temperature": 0}}, "recover.teacher_data.temperature"),
    ],
)
def test_bad_teacher_settings_name_the_field(recover, message) -> None:
    base = {"data": "r.jsonl", "seq_len": 64, **recover}
    with pytest.raises(ConfigError, match=message):
        parse_config({"model": {"source": "m"}, "evaluate": {"perplexity": "p"}, "recover": base})


def test_openings_file_is_read_and_checked(tmp_path) -> None:
    tok = byte_tokenizer()
    path = tmp_path / "open.jsonl"
    path.write_text(json.dumps({"text": "Hello"}) + "\n" + json.dumps({"text": " "}) + "\n")
    td = TeacherDataConfig(sequences=2, rewrite_share=0.0, openings=str(path))
    with pytest.raises(DataError, match=r"open\.jsonl:2: field 'text' is empty"):
        teacher_corpus(
            tiny_llama(),
            tok,
            td,
            seq_len=16,
            domain=None,
            domain_sha256=None,
            teacher_fingerprint="t",
            cache_dir=tmp_path,
            seed=0,
            progress=lambda _: None,
        )
    assert len(DEFAULT_OPENINGS) >= 40
