"""The Modelfile of each chat format (ChatML, Llama 3, Gemma 2/3) and an export created in
Ollama through its HTTP API, against the loopback fake of Ollama's create and chat API
(tests/fakes/ollama_server.py). Verified only against the fake: that Ollama accepts the create
request (blob digest, files, template, parameters, system) and serves chat for the created
name. Not verified here: that a real Ollama loads the GGUF file (llama.cpp does:
test_llama_cpp_run.py) or that its Go template renders as the Jinja template does (the fake
executes no template; the Go text is checked by reading)."""

from __future__ import annotations

import hashlib
import json
import re

import pytest

from medprune.config import ServeConfig
from medprune.errors import ExportError
from medprune.export.bundle import export_for_ollama
from medprune.export.modelfile import GEMMA, detect_chat_format
from medprune.export.ollama_create import create_in_ollama
from medprune.load.model import save_model

from tests.fakes.ollama_server import start_fake_ollama, stop_fake_ollama
from tests.helpers.variants import chat_tokenizer, variant_llama

#: Gemma 3's chat template (google/gemma-3-*-it tokenizer_config.json), text parts.
GEMMA3_TEMPLATE = (
    "{{ bos_token }}\n"
    "{%- if messages[0]['role'] == 'system' -%}\n"
    "    {%- if messages[0]['content'] is string -%}\n"
    "        {%- set first_user_prefix = messages[0]['content'] + '\\n\\n' -%}\n"
    "    {%- else -%}\n"
    "        {%- set first_user_prefix = messages[0]['content'][0]['text'] + '\\n\\n' -%}\n"
    "    {%- endif -%}\n"
    "    {%- set loop_messages = messages[1:] -%}\n"
    "{%- else -%}\n"
    '    {%- set first_user_prefix = "" -%}\n'
    "    {%- set loop_messages = messages -%}\n"
    "{%- endif -%}\n"
    "{%- for message in loop_messages -%}\n"
    "    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}\n"
    '        {{ raise_exception("Conversation roles must alternate user/assistant/user/assistant/...") }}\n'
    "    {%- endif -%}\n"
    "    {%- if (message['role'] == 'assistant') -%}\n"
    '        {%- set role = "model" -%}\n'
    "    {%- else -%}\n"
    "        {%- set role = message['role'] -%}\n"
    "    {%- endif -%}\n"
    "    {{ '<start_of_turn>' + role + '\\n' + (first_user_prefix if loop.first else \"\") }}\n"
    "    {%- if message['content'] is string -%}\n"
    "        {{ message['content'] | trim }}\n"
    "    {%- endif -%}\n"
    "    {{ '<end_of_turn>\\n' }}\n"
    "{%- endfor -%}\n"
    "{%- if add_generation_prompt -%}\n"
    "    {{'<start_of_turn>model\\n'}}\n"
    "{%- endif -%}\n"
)


def _gemma_tokenizer():
    tok = chat_tokenizer()
    tok.bos_token = "<|im_start|>"  # the template opens with the BOS token, as Gemma's <bos>
    tok.chat_template = GEMMA3_TEMPLATE
    return tok


def test_gemma3_template_is_recognised_with_its_stop_token() -> None:
    fmt = detect_chat_format(_gemma_tokenizer(), "medgemma")
    assert fmt is GEMMA
    assert fmt.stop == ("<end_of_turn>",)
    assert "<start_of_turn>model" in fmt.template and "$system" in fmt.template


@pytest.fixture
def fake_ollama():
    fake = start_fake_ollama(replies=["Troponin is elevated."])
    yield fake
    stop_fake_ollama(fake)


@pytest.fixture(scope="module")
def gemma_export(tmp_path_factory):
    root = tmp_path_factory.mktemp("ollama")
    model_dir = save_model(variant_llama(), _gemma_tokenizer(), root / "medgemma-tiny")
    serve = ServeConfig(gguf={"outtypes": ["q8_0"]}, ollama={"system_prompt": "Be brief."})
    out = root / "dist"
    export_for_ollama(model_dir, out, serve=serve, name="medgemma-tiny-1")
    return out


def test_modelfile_has_gemma_template_and_stop(gemma_export) -> None:
    text = (gemma_export / "Modelfile").read_text()
    assert "FROM ./medgemma-tiny-1-q8_0.gguf" in text
    assert f'TEMPLATE """{GEMMA.template}"""' in text
    assert 'PARAMETER stop "<end_of_turn>"' in text and 'SYSTEM """Be brief."""' in text


def test_create_in_ollama_then_chat(gemma_export, fake_ollama) -> None:
    import ollama

    gguf = gemma_export / "medgemma-tiny-1-q8_0.gguf"
    digest = create_in_ollama(gemma_export, "medgemma-tiny-1", host=fake_ollama.base_url)
    assert digest == "sha256:" + hashlib.sha256(gguf.read_bytes()).hexdigest()
    assert fake_ollama.blobs[digest] == gguf.read_bytes()
    made = fake_ollama.created["medgemma-tiny-1"]
    assert made["files"] == {gguf.name: digest}
    assert made["template"] == GEMMA.template and made["system"] == "Be brief."
    assert made["parameters"]["stop"] == ["<end_of_turn>"]
    manifest = json.loads((gemma_export / "export.json").read_text())
    assert made["parameters"]["num_ctx"] == manifest["ollama"]["num_ctx"]

    client = ollama.Client(host=fake_ollama.base_url)
    assert client.show("medgemma-tiny-1").template == GEMMA.template
    reply = client.chat(
        model="medgemma-tiny-1", messages=[{"role": "user", "content": "Chest pain?"}]
    )
    assert reply.message.content == "Troponin is elevated."


def test_create_refuses_an_export_without_its_file(gemma_export, tmp_path, fake_ollama) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "export.json").write_text((gemma_export / "export.json").read_text())
    with pytest.raises(
        ExportError, match=re.escape("medgemma-tiny-1-q8_0.gguf named by export.json")
    ):
        create_in_ollama(broken, "x", host=fake_ollama.base_url)
    assert not [r for r in fake_ollama.requests if r[1] == "/api/create"]


def test_fake_refuses_a_blob_whose_digest_differs(fake_ollama) -> None:
    import httpx

    r = httpx.post(f"{fake_ollama.base_url}/api/blobs/sha256:{'0' * 64}", content=b"GGUF")
    assert r.status_code == 400
    r = httpx.post(
        f"{fake_ollama.base_url}/api/create",
        json={"model": "m", "files": {"m.gguf": f"sha256:{'0' * 64}"}},
    )
    assert r.status_code == 400 and "not found" in r.json()["error"]
