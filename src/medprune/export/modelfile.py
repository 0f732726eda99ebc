"""An Ollama ``Modelfile`` for an exported GGUF: chat template, stop tokens, context length,
system prompt.

Ollama's ``TEMPLATE`` is a Go template, not the Jinja template a Hugging Face tokenizer
carries, and no general translation exists. We therefore *recognise* the model's chat
format by rendering its Jinja template on sentinel messages and comparing the text with the
formats we know (ChatML, as SmolLM2 and Qwen2 use; Llama 3), and write Ollama's Go template
for that format. A model whose template is none of these needs ``serve.ollama.template``
(and ``serve.ollama.stop``) in the config; a model with no chat template at all is refused.

    text = render_modelfile(tokenizer, gguf_name="clinical-q8_0.gguf",
                            ollama=cfg.serve.ollama, context_length=8192)
"""

from __future__ import annotations

from dataclasses import dataclass

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

KNOWN_FORMATS = (CHATML, LLAMA3)


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
    except Exception as exc:  # noqa: BLE001 - any template error means "not a format we know"
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


def render_modelfile(
    tokenizer,
    *,
    gguf_name: str,
    ollama: OllamaConfig,
    context_length: int,
    model_name: str = "the model",
) -> str:
    """The text of an Ollama Modelfile for ``gguf_name`` (a file beside the Modelfile)."""
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
    num_ctx = min(ollama.num_ctx or context_length, context_length)
    lines = [
        f"# Ollama Modelfile written by medprune for {model_name}",
        "# ollama create NAME -f Modelfile   (run in this directory)",
        f"FROM ./{gguf_name}",
        f"TEMPLATE {_quoted(template)}",
    ]
    lines += [f'PARAMETER stop "{s}"' for s in stop]
    lines.append(f"PARAMETER num_ctx {num_ctx}")
    lines.append(f"PARAMETER temperature {ollama.temperature:g}")
    if ollama.system_prompt:
        lines.append(f"SYSTEM {_quoted(ollama.system_prompt)}")
    return "\n".join(lines) + "\n"
