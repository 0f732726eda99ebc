"""LangChain chat models for medprune's registered models, local or served by Ollama.

    chat = load_chat_model("registry://clinical-llama@production", registry_root="registry")
    chain = summarization_chain(chat)
    chain.invoke({"note": "67M, chest pain radiating to the left arm, troponin raised ..."})

    chat = ollama_chat_model("clinical-llama", base_url="http://127.0.0.1:11434")

:func:`load_chat_model` runs the model in process: a ``langchain_huggingface.ChatHuggingFace``
over a local ``transformers`` text-generation pipeline, loaded with medprune's safe loader
(safetensors only), with the model's own tokenizer passed explicitly (so nothing is looked
up on a model hub) and ``return_full_text=False`` (the answer, not the prompt). References:
``registry://NAME@ALIAS`` or ``NAME@VERSION`` (the local registry), ``vertex://projects/...``
(the Vertex AI Model Registry: an alias is resolved to its version id on every load, and
each version is downloaded once, so a moved alias loads the new version), or a model
directory.

:func:`ollama_chat_model` returns ``langchain_ollama.ChatOllama`` for a model exported with
``medprune export gguf`` and created in Ollama; it checks first that the Ollama server has
the model and says how to create it when it does not.

Needs the ``serve`` extra: ``pip install -e '.[serve]'``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from medprune.errors import MedpruneError

DEFAULT_OLLAMA_URL = "http://127.0.0.1:11434"

SUMMARY_SYSTEM = (
    "You are a clinical documentation assistant. Summarise the clinical note for a handover: "
    "the presenting problem, key findings, diagnoses, medications and the plan. Use only facts "
    "stated in the note; do not add anything that is not in it."
)


def _require(module: str) -> Any:
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise MedpruneError(
            f"{module} is not installed; install medprune's serving extra: pip install -e '.[serve]'"
        ) from None


def load_chat_model(
    uri: str,
    *,
    registry_root: str | Path | None = None,
    max_new_tokens: int = 256,
    dtype: str = "float32",
    workdir: str | Path | None = None,
) -> Any:
    """A ``ChatHuggingFace`` over a local pipeline for the model ``uri`` names (greedy
    decoding, ``max_new_tokens``). ``registry_root`` defaults to ``$MEDPRUNE_REGISTRY`` or
    ``registry``; ``workdir`` holds ``vertex://`` downloads (default ``.cache/medprune``)."""
    _require("langchain_huggingface")
    from langchain_huggingface import ChatHuggingFace, HuggingFacePipeline
    from transformers import AutoTokenizer, pipeline

    from medprune.load.model import load_model
    from medprune.serve.refs import resolve_model_ref

    root = registry_root or os.environ.get("MEDPRUNE_REGISTRY", "registry")
    model_dir = resolve_model_ref(uri, registry_root=root, workdir=workdir or ".cache/medprune")
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    if not getattr(tokenizer, "chat_template", None):
        raise MedpruneError(
            f"{uri} ({model_dir}) has no chat template, so a chat model cannot format messages for it; "
            "add a chat_template to its tokenizer or use a completion (text) pipeline instead"
        )
    model, _ = load_model(model_dir, dtype=dtype)
    model.eval()
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    generator = pipeline(
        "text-generation",
        model=model,
        tokenizer=tokenizer,
        max_new_tokens=max_new_tokens,
        do_sample=False,
        return_full_text=False,
    )
    llm = HuggingFacePipeline(pipeline=generator, model_id=str(model_dir))
    return ChatHuggingFace(llm=llm, tokenizer=tokenizer, model_id=str(model_dir))


def ollama_chat_model(
    model: str,
    *,
    base_url: str = DEFAULT_OLLAMA_URL,
    temperature: float = 0.0,
    num_ctx: int | None = None,
    num_predict: int | None = None,
    check: bool = True,
) -> Any:
    """``langchain_ollama.ChatOllama`` for ``model`` on the Ollama server at ``base_url``.

    With ``check`` the server is asked first; a missing model raises MedpruneError naming
    it and the ``ollama create`` command for an export."""
    _require("langchain_ollama")
    from langchain_ollama import ChatOllama

    if check:
        import httpx
        import ollama

        try:
            names = [m.model for m in ollama.Client(host=base_url).list().models if m.model]
        except (httpx.HTTPError, ConnectionError, ollama.ResponseError) as exc:
            raise MedpruneError(
                f"cannot reach Ollama at {base_url}: {exc}; start it with `ollama serve`"
            ) from None
        if not any(n == model or n.startswith(f"{model}:") for n in names):
            raise MedpruneError(
                f"Ollama at {base_url} has no model {model!r} (it has: {', '.join(names) or 'none'}); "
                f"export and create it: medprune export gguf NAME@ALIAS -o DIR && cd DIR && "
                f"ollama create {model} -f Modelfile"
            )
    return ChatOllama(
        model=model,
        base_url=base_url,
        temperature=temperature,
        num_ctx=num_ctx,
        num_predict=num_predict,
    )


def summarization_chain(chat_model: Any, *, system_prompt: str = SUMMARY_SYSTEM) -> Any:
    """``{"note": str} -> str``: a prompt with ``system_prompt`` and the note, the chat model,
    and the text of its answer."""
    _require("langchain_core")
    from langchain_core.output_parsers import StrOutputParser
    from langchain_core.prompts import ChatPromptTemplate

    prompt = ChatPromptTemplate.from_messages(
        [
            ("system", system_prompt),
            ("human", "Clinical note:\n{note}\n\nSummary:"),
        ]
    )
    return prompt | chat_model | StrOutputParser()
