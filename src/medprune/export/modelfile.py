"""An Ollama ``Modelfile`` for an exported GGUF: chat template, stop tokens, context length,
system prompt.

Ollama's ``TEMPLATE`` is a Go template, not the Jinja template a Hugging Face tokenizer
carries, and no general translation exists. We therefore *recognise* the model's chat
format by rendering its Jinja template on sentinel messages and comparing the text with the
formats we know (ChatML, as SmolLM2 and Qwen2/3 use; Llama 3; Gemma 2/3 and MedGemma), and
write Ollama's Go template for that format (tested for text only against the loopback fake of
Ollama's create and chat API, which does not execute Go templates: that the template renders
as the Jinja one does in a real Ollama is checked by reading, not by a run). A model whose template is none of these needs ``serve.ollama.template``
(and ``serve.ollama.stop``) in the config; a model with no chat template at all is refused.

    text = render_modelfile(tokenizer, gguf_name="clinical-q8_0.gguf",
                            ollama=cfg.serve.ollama, context_length=8192)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from medprune.config.serve import OllamaConfig
from medprune.errors import ExportError

_S, _U, _A, _U2 = "<<SYSTEM>>", "<<USER>>", "<<ASSISTANT>>", "<<USER2>>"


@dataclass(frozen=True)
class ChatFormat:
    name: str
    template: str  # Ollama Go template
    stop: tuple[str, ...]
    expected: str  # the Jinja template's rendering of the sentinel conversation


CHATML = ChatFormat(
    name="chatml",
    template=(
        "{{- range .Messages }}<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n"
        "{{ end }}<|im_start|>assistant\n"
    ),
    stop=("<|im_start|>", "<|im_end|>"),
    expected=(
        f"<|im_start|>system\n{_S}<|im_end|>\n<|im_start|>user\n{_U}<|im_end|>\n"
        f"<|im_start|>assistant\n{_A}<|im_end|>\n<|im_start|>user\n{_U2}<|im_end|>\n"
        "<|im_start|>assistant\n"
    ),
)

LLAMA3 = ChatFormat(
    name="llama3",
    template=(
        "{{- range .Messages }}<|start_header_id|>{{ .Role }}<|end_header_id|>\n\n"
        "{{ .Content }}<|eot_id|>{{ end }}<|start_header_id|>assistant<|end_header_id|>\n\n"
    ),
    stop=("<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"),
    expected=(
        f"<|start_header_id|>system<|end_header_id|>\n\n{_S}<|eot_id|>"
        f"<|start_header_id|>user<|end_header_id|>\n\n{_U}<|eot_id|>"
        f"<|start_header_id|>assistant<|end_header_id|>\n\n{_A}<|eot_id|>"
        f"<|start_header_id|>user<|end_header_id|>\n\n{_U2}<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n"
    ),
)

# Gemma 2 / 3 (MedGemma): no system role; the system text opens the first user turn,
# followed by a blank line; the assistant's role is "model"; <end_of_turn> ends every turn.
GEMMA = ChatFormat(
    name="gemma",
    template=(
        '{{- $system := "" }}'
        '{{- range .Messages }}{{ if eq .Role "system" }}{{ $system = .Content }}{{ end }}'
        "{{ end }}"
        "{{- $first := true }}"
        "{{- range .Messages }}"
        '{{- if eq .Role "user" }}<start_of_turn>user\n'
        "{{ if $first }}{{ if $system }}{{ $system }}\n\n{{ end }}{{ $first = false }}{{ end }}"
        "{{ .Content }}<end_of_turn>\n"
        '{{ else if eq .Role "assistant" }}<start_of_turn>model\n{{ .Content }}<end_of_turn>\n'
        "{{ end }}"
        "{{- end }}<start_of_turn>model\n"
    ),
    stop=("<end_of_turn>",),
    expected=(
        f"<start_of_turn>user\n{_S}\n\n{_U}<end_of_turn>\n<start_of_turn>model\n{_A}"
        f"<end_of_turn>\n<start_of_turn>user\n{_U2}<end_of_turn>\n<start_of_turn>model\n"
    ),
)

KNOWN_FORMATS = (CHATML, LLAMA3, GEMMA)


def detect_chat_format(tokenizer, model_name: str = "the model") -> ChatFormat:
    """The known chat format the tokenizer's template produces; ExportError otherwise."""
    template = getattr(tokenizer, "chat_template", None)
    if not template:
        raise ExportError(
            f"{model_name} has no chat template (tokenizer_config.json / chat_template.jinja), so "
            "no Ollama Modelfile can be written for it; add a chat template to the tokenizer, or set "
            "serve.ollama.template (an Ollama Go template) and serve.ollama.stop in the config"
        )
    messages = [
        {"role": "system", "content": _S},
        {"role": "user", "content": _U},
        {"role": "assistant", "content": _A},
        {"role": "user", "content": _U2},
    ]
    try:
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    except Exception as exc:  # any template error means "not a format we know"
        raise ExportError(
            f"the chat template of {model_name} failed to render a conversation: {exc}"
        ) from None
    bos = getattr(tokenizer, "bos_token", None) or ""
    # a template may start with the BOS token (Llama 3 writes <|begin_of_text|>); compare both
    candidates = {text, text[len(bos) :] if bos and text.startswith(bos) else text}
    for fmt in KNOWN_FORMATS:
        if any(c.rstrip("\n") == fmt.expected.rstrip("\n") for c in candidates):
            return fmt
    raise ExportError(
        f"the chat template of {model_name} is not one medprune can translate for Ollama "
        f"(known: {', '.join(f.name for f in KNOWN_FORMATS)}); set serve.ollama.template (an "
        "Ollama Go template) and serve.ollama.stop in the config"
    )


def _quoted(text: str) -> str:
    if '"""' in text:
        raise ExportError('Modelfile text cannot contain \'"""\'')
    return f'"""{text}"""'


@dataclass(frozen=True)
class OllamaModel:
    """What an Ollama model is made of: the GGUF file, the Go template, stop sequences,
    parameters and system prompt. :meth:`modelfile` is the ``Modelfile`` text (what ``ollama
    create -f Modelfile`` reads); :meth:`create_request` the same as the fields of Ollama's
    ``POST /api/create`` (what the ``ollama`` CLI sends after parsing the Modelfile)."""

    gguf_name: str
    template: str
    stop: tuple[str, ...]
    num_ctx: int
    temperature: float
    system: str | None
    model_name: str = "the model"

    def modelfile(self) -> str:
        lines = [
            f"# Ollama Modelfile written by medprune for {self.model_name}",
            "# ollama create NAME -f Modelfile   (run in this directory)",
            f"FROM ./{self.gguf_name}",
            f"TEMPLATE {_quoted(self.template)}",
        ]
        lines += [f'PARAMETER stop "{s}"' for s in self.stop]
        lines.append(f"PARAMETER num_ctx {self.num_ctx}")
        lines.append(f"PARAMETER temperature {self.temperature:g}")
        if self.system:
            lines.append(f"SYSTEM {_quoted(self.system)}")
        return "\n".join(lines) + "\n"

    def create_request(self, digest: str) -> dict[str, Any]:
        """Keyword arguments of ``ollama.Client.create`` (``POST /api/create``), the GGUF file
        given by the digest of its uploaded blob."""
        request: dict[str, Any] = {
            "files": {self.gguf_name: digest},
            "template": self.template,
            "parameters": {
                "stop": list(self.stop),
                "num_ctx": self.num_ctx,
                "temperature": self.temperature,
            },
        }
        if self.system:
            request["system"] = self.system
        return request

    def to_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "stop": list(self.stop)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> OllamaModel:
        return cls(**{**data, "stop": tuple(data["stop"])})


def ollama_model(
    tokenizer,
    *,
    gguf_name: str,
    ollama: OllamaConfig,
    context_length: int,
    model_name: str = "the model",
) -> OllamaModel:
    """The Ollama model for ``gguf_name``: the configured template and stop sequences, else
    those of the tokenizer's chat format (:func:`detect_chat_format`)."""
    if ollama.template:
        template, stop = ollama.template, tuple(ollama.stop)
        if not stop:
            raise ExportError(
                "serve.ollama.template is set but serve.ollama.stop is empty; name the stop tokens"
            )
    else:
        fmt = detect_chat_format(tokenizer, model_name)
        template = fmt.template
        stop = tuple(dict.fromkeys([*fmt.stop, *ollama.stop]))
    for text in (template, ollama.system_prompt or ""):
        _quoted(text)  # refused before anything is written
    return OllamaModel(
        gguf_name=gguf_name,
        template=template,
        stop=stop,
        num_ctx=min(ollama.num_ctx or context_length, context_length),
        temperature=ollama.temperature,
        system=ollama.system_prompt,
        model_name=model_name,
    )


def render_modelfile(
    tokenizer,
    *,
    gguf_name: str,
    ollama: OllamaConfig,
    context_length: int,
    model_name: str = "the model",
) -> str:
    """The text of an Ollama Modelfile for ``gguf_name`` (a file beside the Modelfile)."""
    return ollama_model(
        tokenizer,
        gguf_name=gguf_name,
        ollama=ollama,
        context_length=context_length,
        model_name=model_name,
    ).modelfile()
