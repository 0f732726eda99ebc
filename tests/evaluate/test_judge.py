"""The Claude judge with the real anthropic SDK against a loopback fake Messages API:
request body, auth header and schema; 429 then success; timeouts; malformed replies; no
key, no consent; the gate fails closed when the judge is incomplete."""

from __future__ import annotations

import json
import re
import time

import pytest

from medprune.config import EvaluateConfig, GateConfig, JudgeConfig, parse_config
from medprune.errors import ConfigError
from medprune.evaluate.judge import (
    JUDGE_SCHEMA,
    JUDGE_SYSTEM,
    ClaudeJudge,
    JudgeError,
    resolve_api_key,
)
from medprune.gate.decision import decide

from tests.fakes.anthropic_server import VALID_VERDICT, FakeAnthropic, Reply

KEY = "sk-ant-test-0123456789"
DIALOGUE = "[doctor] your blood pressure is fine on lisinopril 20 mg .\n[patient] i feel tired ."
NOTE = "ASSESSMENT AND PLAN\nHypertension: continue lisinopril 20 mg."


@pytest.fixture
def fake():
    server = FakeAnthropic()
    yield server
    server.close()


@pytest.fixture
def api_key(monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)
    monkeypatch.delenv("ANTHROPIC_AUTH_TOKEN", raising=False)
    return KEY


def judge_cfg(fake, **kw) -> JudgeConfig:
    args = {
        "enabled": True,
        "allow_external": True,
        "model": "claude-test-1",
        "base_url": fake.url,
        "timeout_s": 2,
        "backoff_s": 0.01,
        "max_retries": 2,
        **kw,
    }
    return JudgeConfig(**args)


def test_request_body_auth_and_schema(fake, api_key):
    judge = ClaudeJudge.from_config(judge_cfg(fake))
    result = judge.judge_notes([("D1", DIALOGUE, NOTE), ("D2", DIALOGUE, NOTE)])
    assert result.complete and result.n == 2 and result.error is None
    assert result.metrics["judge_overall"] == 4.0 and result.metrics["judge_faithfulness"] == 5.0
    assert result.metrics["judge_harmful_error_rate"] == 0.0
    assert (
        result.usage.requests == 2
        and result.usage.input_tokens == 240
        and result.usage.output_tokens == 90
    )
    req = fake.requests[0]
    assert req.path == "/v1/messages"
    assert req.headers["x-api-key"] == KEY and "authorization" not in req.headers
    assert req.headers["anthropic-version"]
    body = req.body
    assert (
        body["model"] == "claude-test-1"
        and body["max_tokens"] == 1024
        and body["temperature"] == 0.0
    )
    assert body["system"] == JUDGE_SYSTEM
    assert body["messages"] == [
        {
            "role": "user",
            "content": f"<transcript>\n{DIALOGUE}\n</transcript>\n\n<note>\n{NOTE}\n</note>",
        }
    ]
    assert body["output_config"] == {"format": {"type": "json_schema", "schema": JUDGE_SCHEMA}}
    assert result.per_item[0] == {"id": "D1", **VALID_VERDICT}


def test_bearer_token_when_no_api_key(fake, monkeypatch):
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    monkeypatch.setenv("ANTHROPIC_AUTH_TOKEN", "gateway-token-42")
    assert ClaudeJudge.from_config(judge_cfg(fake)).judge_notes([("D1", DIALOGUE, NOTE)]).complete
    headers = fake.requests[0].headers
    assert headers["authorization"] == "Bearer gateway-token-42" and "x-api-key" not in headers


def test_429_then_success_is_retried_with_backoff(fake, api_key):
    fake.queue(Reply(429, headers={"retry-after": "0.05"}), Reply(503))
    waits: list[float] = []
    judge = ClaudeJudge.from_config(
        judge_cfg(fake, max_retries=3), sleep=lambda s: (waits.append(s), time.sleep(s))
    )
    result = judge.judge_notes([("D1", DIALOGUE, NOTE)])
    assert result.complete and result.usage.requests == 3 and result.usage.retries == 2
    assert waits == [0.05, 0.02]  # Retry-After honoured, then backoff_s * 2


def test_outage_marks_the_judge_incomplete(fake, api_key):
    fake.queue(*[Reply(500)] * 5)
    result = ClaudeJudge.from_config(judge_cfg(fake, max_retries=2)).judge_notes(
        [("D1", DIALOGUE, NOTE)]
    )
    assert not result.complete and result.metrics == {}
    assert "item 'D1': judge API unavailable after 3 attempts (last: HTTP 500)" in result.error
    assert result.usage.requests == 3


def test_timeouts_are_bounded_in_time(fake, api_key):
    fake.queue(*[Reply(delay_s=1.5)] * 4)
    t0 = time.monotonic()
    result = ClaudeJudge.from_config(judge_cfg(fake, timeout_s=0.3, max_retries=1)).judge_notes(
        [("D1", DIALOGUE, NOTE)]
    )
    assert not result.complete and "APITimeoutError" in result.error
    assert time.monotonic() - t0 < 3 and result.usage.requests == 2
    fake.queue(*[Reply(delay_s=1.0)] * 4)
    t0 = time.monotonic()
    result = ClaudeJudge.from_config(
        judge_cfg(fake, timeout_s=5, max_retries=5, max_total_seconds=0.5)
    ).judge_notes([("D1", DIALOGUE, NOTE), ("D2", DIALOGUE, NOTE)])
    assert not result.complete and time.monotonic() - t0 < 2.5  # the whole judging's budget holds


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("Sure! The note looks good.", "not JSON"),
        (json.dumps({**VALID_VERDICT, "overall": 7}), "overall must be an integer 1-5, got 7"),
        (
            json.dumps({k: v for k, v in VALID_VERDICT.items() if k != "harmful_errors"}),
            "missing ['harmful_errors']",
        ),
        (json.dumps({**VALID_VERDICT, "omissions": "none"}), "omissions must be a list of strings"),
    ],
)
def test_malformed_reply_marks_the_judge_incomplete(fake, api_key, text, message):
    fake.queue(Reply(text=text))
    result = ClaudeJudge.from_config(judge_cfg(fake)).judge_notes([("D1", DIALOGUE, NOTE)])
    assert (
        not result.complete and message in result.error and "malformed judge reply" in result.error
    )


def test_token_budget_stops_the_judge(fake, api_key):
    result = ClaudeJudge.from_config(judge_cfg(fake, max_total_tokens=150)).judge_notes(
        [("D1", DIALOGUE, NOTE), ("D2", DIALOGUE, NOTE)]
    )
    assert (
        not result.complete
        and result.n == 1
        and "token budget spent (165 >= evaluate.judge.max_total_tokens 150)" in result.error
    )


def test_no_key_no_consent_no_model_fail_before_anything_is_sent(fake, monkeypatch):
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    monkeypatch.delenv("ANTHROPIC_AUTH_TOKEN", raising=False)
    with pytest.raises(
        JudgeError,
        match=r"evaluate\.judge: no API key: set the environment variable ANTHROPIC_API_KEY",
    ):
        resolve_api_key(judge_cfg(fake))
    base = {"model": {"source": "/m"}, "evaluate": {"visit_notes": {"data": "/a.json"}}}
    for judge, message in [
        ({"enabled": True, "model": "claude-x"}, "set evaluate.judge.allow_external: true"),
        ({"enabled": True, "allow_external": True}, "evaluate.judge.model: name the Claude model"),
        ({"enabled": True, "allow_external": True, "model": "c", "api_key": KEY}, "api_key"),
        ({"base_url": "http://judge.example.com"}, "must be an https URL"),
    ]:
        with pytest.raises(ConfigError, match=message):
            parse_config({**base, "evaluate": {**base["evaluate"], "judge": judge}})
    assert fake.requests == []


def test_evaluation_refuses_a_judge_without_key_before_loading_the_model(
    tmp_path, fake, monkeypatch
):
    from medprune.evaluate.runner import evaluate_model

    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    monkeypatch.delenv("ANTHROPIC_AUTH_TOKEN", raising=False)
    notes = tmp_path / "n.jsonl"
    notes.write_text(json.dumps({"id": "v1", "input": DIALOGUE, "reference": NOTE}) + "\n")
    from tests.helpers.tiny import byte_tokenizer

    tok = byte_tokenizer()
    tok.chat_template = "{% for m in messages %}{{ m['content'] }}{% endfor %}"
    model_dir = tmp_path / "tok-only"
    tok.save_pretrained(model_dir)  # a tokenizer and no model: the judge error must come first
    cfg = EvaluateConfig(visit_notes={"data": str(notes)}, judge=judge_cfg(fake))
    with pytest.raises(JudgeError, match="no API key"):
        evaluate_model(model_dir, cfg, tmp_path / "eval", label="baseline", progress=lambda _: None)
    assert fake.requests == []


def test_judged_evaluation_writes_scores_and_never_the_key(tmp_path, fake, api_key):
    from medprune.evaluate.metrics import metric_values
    from medprune.evaluate.runner import NOTES_FILE, evaluate_model, read_predictions
    from medprune.load.model import save_model

    from tests.helpers.tiny import byte_tokenizer, tiny_llama

    tok = byte_tokenizer()
    tok.chat_template = "{% for m in messages %}{{ m['content'] }}{% endfor %}"
    model_dir = save_model(tiny_llama(), tok, tmp_path / "m")
    notes = tmp_path / "n.jsonl"
    notes.write_text(
        "".join(
            json.dumps({"id": f"v{i}", "input": DIALOGUE, "reference": NOTE}) + "\n"
            for i in range(2)
        )
    )
    cfg = EvaluateConfig(
        visit_notes={"data": str(notes), "max_new_tokens": 4, "max_input_tokens": 400},
        judge=judge_cfg(fake),
        latency_seq_len=8,
        latency_repeats=1,
    )
    logs: list[str] = []
    res = evaluate_model(model_dir, cfg, tmp_path / "eval", label="baseline", progress=logs.append)
    assert res["judge"]["complete"] and res["judge"]["usage"]["input_tokens"] == 240
    assert metric_values(res)["judge_overall"] == 4.0
    assert read_predictions(tmp_path / "eval", NOTES_FILE)[0]["judge"]["completeness"] == 4
    written = "".join(p.read_text() for p in (tmp_path / "eval").iterdir()) + "\n".join(logs)
    assert KEY not in written and any("judge claude-test-1" in m for m in logs)


def test_gate_fails_closed_when_the_judge_is_incomplete():
    settings = {"judge": {"enabled": True}}
    done = {
        "complete": True,
        "settings": settings,
        "judge": {"complete": True, "n": 5, "metrics": {"judge_overall": 4.0}},
    }
    out = {
        "complete": True,
        "settings": settings,
        "judge": {"complete": False, "n": 2, "error": "item 'D3': HTTP 529"},
    }
    cfg = GateConfig(max_drop={"judge_overall": 0.5})
    ok = decide(done, done, cfg)
    assert ok.passed
    failed = decide(done, out, cfg)
    assert not failed.passed
    assert any("candidate judge incomplete (item 'D3': HTTP 529)" in r for r in failed.reasons)
    assert any(
        "judge_overall drop (baseline - candidate): not measured" in r for r in failed.reasons
    )


# --- the key from Secret Manager: the real google-cloud-secret-manager client (REST) against
# a loopback fake of its API -----------------------------------------------------------------
SECRET = "projects/clinic-prod/secrets/anthropic-key"


@pytest.fixture
def secret_manager(monkeypatch):
    from tests.fakes.secret_manager_server import (
        start_fake_secret_manager,
        stop_fake_secret_manager,
    )

    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    monkeypatch.delenv("ANTHROPIC_AUTH_TOKEN", raising=False)
    monkeypatch.delenv("MEDPRUNE_SECRET_MANAGER_ENDPOINT", raising=False)
    server = start_fake_secret_manager()
    server.secrets[SECRET] = (
        KEY + "\n"
    ).encode()  # `gcloud secrets create --data-file` keeps the newline
    yield server
    stop_fake_secret_manager(server)


def secret_cfg(fake, secret_manager, version="latest", **kw) -> JudgeConfig:
    return judge_cfg(
        fake,
        api_key_secret=f"{SECRET}/versions/{version}",
        secret_manager_endpoint=secret_manager.endpoint,
        **kw,
    )


def test_key_from_secret_manager_reaches_the_messages_api(fake, secret_manager):
    judge = ClaudeJudge.from_config(secret_cfg(fake, secret_manager))
    assert [(r.method, r.path) for r in secret_manager.requests] == [
        ("GET", f"/v1/{SECRET}/versions/latest:access")
    ]
    assert "authorization" not in secret_manager.requests[0].headers  # anonymous on loopback
    result = judge.judge_notes([("D1", DIALOGUE, NOTE)])
    assert result.complete
    assert fake.requests[0].headers["x-api-key"] == KEY  # decoded, the newline stripped


def test_secret_manager_endpoint_from_the_environment(fake, secret_manager, monkeypatch):
    monkeypatch.setenv("MEDPRUNE_SECRET_MANAGER_ENDPOINT", secret_manager.endpoint)
    cfg = judge_cfg(fake, api_key_secret=f"{SECRET}/versions/1")
    assert resolve_api_key(cfg) == (KEY, None)
    assert secret_manager.requests[0].path == f"/v1/{SECRET}/versions/1:access"
    monkeypatch.setenv("MEDPRUNE_SECRET_MANAGER_ENDPOINT", "http://secrets.example.com")
    with pytest.raises(
        JudgeError, match=r"\$MEDPRUNE_SECRET_MANAGER_ENDPOINT: must be an https URL"
    ):
        resolve_api_key(cfg)
    with pytest.raises(ConfigError, match=r"secret_manager_endpoint.*must be an https URL"):
        parse_config(
            {
                "model": {"source": "/m"},
                "evaluate": {"judge": {"secret_manager_endpoint": "http://secrets.example.com"}},
            }
        )


@pytest.mark.parametrize(
    ("setup", "version", "message"),
    [
        (lambda sm: sm.secrets.clear(), "latest", r"not found \(no such secret or version"),
        (lambda sm: None, "7", r"not found"),
        (
            lambda sm: sm.denied.add(SECRET),
            "latest",
            r"permission denied reading .*: the credentials need roles/secretmanager\.secretAccessor",
        ),
        (
            lambda sm: setattr(sm, "wrong_crc32c", 12345),
            "latest",
            r"does not match its CRC32C checksum",
        ),
    ],
    ids=["missing-secret", "missing-version", "permission-denied", "corrupted"],
)
def test_secret_manager_failures_name_the_secret_and_send_nothing(
    fake, secret_manager, setup, version, message
):
    setup(secret_manager)
    name = f"{SECRET}/versions/{version}"
    with pytest.raises(JudgeError) as err:
        ClaudeJudge.from_config(secret_cfg(fake, secret_manager, version=version))
    text = str(err.value)
    assert text.startswith("evaluate.judge.api_key_secret: ") and name in text
    assert re.search(message, text) and KEY not in text
    assert fake.requests == []


def test_key_from_secret_manager_is_never_logged_or_written(
    tmp_path, fake, secret_manager, caplog, capsys
):
    import logging

    from medprune.evaluate.runner import evaluate_model
    from medprune.load.model import save_model

    from tests.helpers.tiny import byte_tokenizer, tiny_llama

    tok = byte_tokenizer()
    tok.chat_template = "{% for m in messages %}{{ m['content'] }}{% endfor %}"
    model_dir = save_model(tiny_llama(), tok, tmp_path / "m")
    notes = tmp_path / "n.jsonl"
    notes.write_text(json.dumps({"id": "v1", "input": DIALOGUE, "reference": NOTE}) + "\n")
    cfg = EvaluateConfig(
        visit_notes={"data": str(notes), "max_new_tokens": 4, "max_input_tokens": 400},
        judge=secret_cfg(fake, secret_manager),
        latency_seq_len=8,
        latency_repeats=1,
    )
    logs: list[str] = []
    caplog.set_level(logging.DEBUG)
    res = evaluate_model(model_dir, cfg, tmp_path / "eval", label="baseline", progress=logs.append)
    assert res["judge"]["complete"] and fake.requests[0].headers["x-api-key"] == KEY
    written = "".join(p.read_text(errors="replace") for p in tmp_path.rglob("*") if p.is_file())
    out = capsys.readouterr()
    for text in (written, "\n".join(logs), caplog.text, out.out, out.err):
        assert KEY not in text
