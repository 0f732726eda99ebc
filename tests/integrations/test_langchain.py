"""LangChain chat models: local ChatHuggingFace over a registered model (tiny and SmolLM2),
and ChatOllama against a loopback fake of Ollama's API."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

SERVE_EXTRA = "needs the 'serve' extra: pip install -e '.[serve]'"
pytest.importorskip("langchain_huggingface", reason=SERVE_EXTRA)
pytest.importorskip("langchain_ollama", reason=SERVE_EXTRA)

from langchain_core.messages import AIMessage, HumanMessage, SystemMessage  # noqa: E402

from medprune.errors import MedpruneError  # noqa: E402
from medprune.integrations.langchain import (  # noqa: E402
    load_chat_model,
    ollama_chat_model,
    summarization_chain,
)
from medprune.load.model import save_model  # noqa: E402
from medprune.register.local import LocalRegistry  # noqa: E402

from tests.fakes.ollama_server import start_fake_ollama, stop_fake_ollama  # noqa: E402
from tests.helpers.variants import bpe_tokenizer, build_variant, variant_llama  # noqa: E402

NOTE = (
    "67-year-old man with chest pain radiating to the left arm for two hours. Troponin raised, "
    "ECG with anterior ST elevation. Taken for PCI; started aspirin and ticagrelor."
)


@pytest.fixture(scope="module")
def registry(tmp_path_factory) -> LocalRegistry:
    root = tmp_path_factory.mktemp("lc")
    reg = LocalRegistry(root / "registry")
    reg.register(
        "clinical-tiny", save_model(*build_variant("width"), root / "m"), {}, aliases=["production"]
    )
    reg.register(
        "no-template",
        save_model(variant_llama(), bpe_tokenizer(), root / "plain"),
        {},
        aliases=["production"],
    )
    return reg


def test_chat_model_from_registry_answers_without_the_prompt(registry) -> None:
    chat = load_chat_model(
        "registry://clinical-tiny@production", registry_root=registry.root, max_new_tokens=4
    )
    assert (
        chat.llm.pipeline.tokenizer is chat.tokenizer
    )  # passed explicitly, not looked up on a hub
    messages = [SystemMessage("Summarise."), HumanMessage(NOTE)]
    # the prompt ChatHuggingFace builds is the model's own chat template
    assert chat._to_chat_prompt(messages) == chat.tokenizer.apply_chat_template(
        [{"role": "system", "content": "Summarise."}, {"role": "user", "content": NOTE}],
        tokenize=False,
        add_generation_prompt=True,
    )
    reply = chat.invoke(messages)
    assert isinstance(reply, AIMessage) and isinstance(reply.content, str)
    # return_full_text=False: only generated tokens (at most 4 of them), not the note
    assert NOTE[:20] not in reply.content
    assert len(reply.content) <= 8  # 4 tokens of at most 2 bytes (one character each)
    # greedy: the same question gets the same answer
    assert chat.invoke(messages).content == reply.content


def test_summarization_chain_runs_offline(registry) -> None:
    chat = load_chat_model(
        "clinical-tiny@production", registry_root=registry.root, max_new_tokens=3
    )
    out = summarization_chain(chat).invoke({"note": NOTE})
    assert isinstance(out, str)


def test_bad_references_name_the_problem(registry) -> None:
    with pytest.raises(MedpruneError, match="has no chat template"):
        load_chat_model("registry://no-template@production", registry_root=registry.root)
    with pytest.raises(MedpruneError, match="has no alias 'staging'"):
        load_chat_model("registry://clinical-tiny@staging", registry_root=registry.root)
    with pytest.raises(MedpruneError, match="'missing' is not in the registry"):
        load_chat_model("registry://missing@production", registry_root=registry.root)


def test_vertex_alias_that_moves_loads_the_new_version(vertex_env, tmp_path) -> None:
    """Issue 25, item 3: `vertex://...@production` downloads were cached by URI, so after
    the alias moved the old model kept serving. An alias names one version at a time and
    moving it takes it off the old one (Vertex's mergeVersionAliases, as the fake does), so
    the version is resolved on every load and the download cached by version id."""
    from google.cloud import aiplatform

    from medprune.errors import ModelLoadError
    from medprune.io.gcs import upload_dir
    from medprune.vertex.client import aiplatform_init_for

    bucket = f"gs://{vertex_env.bucket}"
    dense = save_model(*build_variant("dense"), tmp_path / "v1")
    width = save_model(*build_variant("width"), tmp_path / "v2")
    upload_dir(dense, f"{bucket}/models/clinical/v1")
    upload_dir(width, f"{bucket}/models/clinical/v2")
    fake = vertex_env.vertex
    name = fake.add_model(
        "clinical-tiny",
        vertex_env.project,
        vertex_env.location,
        aliases=["production"],
        artifact_uri=f"{bucket}/models/clinical/v1",
    )
    uri = f"vertex://{name}@production"
    work = tmp_path / "cache"
    first = load_chat_model(uri, workdir=work, max_new_tokens=2)
    assert first.llm.pipeline.model.config.hidden_size == 64  # the dense variant
    # version 2 is registered and `production` moves to it
    model_id = name.rsplit("/", 1)[1]
    fake.models[model_id].versions.append(
        {
            **fake.models[model_id].versions[0],
            "versionId": "2",
            "versionAliases": [],
            "artifactUri": f"{bucket}/models/clinical/v2",
        }
    )
    aiplatform_init_for(vertex_env.project, vertex_env.location)
    aiplatform.models.ModelRegistry(name).add_version_aliases(["production"], version="2")
    second = load_chat_model(uri, workdir=work, max_new_tokens=2)
    assert second.llm.pipeline.model.config.hidden_size == 48  # the width-pruned variant
    records = sorted((work / "sources").glob("*.source.json"))
    assert {json.loads(r.read_text())["source"] for r in records} == {
        f"vertex://{name}@1",
        f"vertex://{name}@2",
    }
    # a download whose record names another version is refused, not loaded
    v2_record = next(r for r in records if json.loads(r.read_text())["source"].endswith("@2"))
    v2_record.write_text(json.dumps({"source": f"vertex://{name}@1", "fingerprint": "x"}))
    with pytest.raises(ModelLoadError, match=r"resolves to .*@2, but the download"):
        load_chat_model(uri, workdir=work, max_new_tokens=2)


@pytest.fixture
def fake_ollama():
    fake = start_fake_ollama(
        models=["clinical-tiny:latest"], replies=["Chest pain with STEMI; PCI done."]
    )
    try:
        yield fake
    finally:
        stop_fake_ollama(fake)


def test_ollama_chat_model_sends_the_chat_request(fake_ollama) -> None:
    chat = ollama_chat_model(
        "clinical-tiny", base_url=fake_ollama.base_url, num_ctx=2048, num_predict=64
    )
    out = summarization_chain(chat, system_prompt="Summarise for handover.").invoke({"note": NOTE})
    assert out == "Chest pain with STEMI; PCI done."
    (req,) = fake_ollama.chats()
    assert req["model"] == "clinical-tiny"
    assert req["messages"][0] == {"role": "system", "content": "Summarise for handover."}
    assert req["messages"][1]["role"] == "user" and NOTE in req["messages"][1]["content"]
    assert req["options"]["temperature"] == 0.0
    assert req["options"]["num_ctx"] == 2048 and req["options"]["num_predict"] == 64
    assert req.get("stream", True) is True


def test_missing_ollama_model_is_a_clear_error(fake_ollama) -> None:
    with pytest.raises(
        MedpruneError, match=r"has no model 'clinical-big'.*ollama create clinical-big -f Modelfile"
    ):
        ollama_chat_model("clinical-big", base_url=fake_ollama.base_url)
    assert not fake_ollama.chats()


def test_unreachable_ollama_is_a_clear_error() -> None:
    import socket

    with socket.socket() as s:  # a loopback port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(MedpruneError, match=r"cannot reach Ollama at http://127.0.0.1:\d+"):
        ollama_chat_model("clinical-tiny", base_url=f"http://127.0.0.1:{port}")


@pytest.mark.slow
def test_smollm2_summarises_a_note_in_a_few_tokens(default_model_dir: Path) -> None:
    # converted once per session into a temporary cache (tests/helpers/real_data.py)
    chat = load_chat_model(str(default_model_dir), max_new_tokens=12)
    out = summarization_chain(chat).invoke({"note": NOTE})
    assert out.strip() and NOTE[:30] not in out
    assert "<|im_start|>" not in out and "<|im_end|>" not in out
