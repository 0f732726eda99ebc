"""Where the prunable parts of each supported decoder architecture are.

Llama, Mistral, Qwen2 and Gemma use separate ``q/k/v_proj`` and ``gate/up_proj``; Phi-3
fuses them into ``qkv_proj`` (rows: queries, keys, values) and ``gate_up_proj`` (rows: gate,
up). :class:`LayerParts` hides the difference so that width pruning can slice either.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from medprune.errors import PruneError

#: Pruning methods, in the order ``medprune support`` lists them.
ALL_METHODS = ("magnitude", "wanda", "sparsegpt", "width", "depth")


@dataclass(frozen=True)
class Family:
    """A decoder family the engine can prune: its ``config.model_type``, the methods it
    takes, and what differs from plain Llama."""

    model_type: str
    name: str
    methods: tuple[str, ...] = ALL_METHODS
    notes: str = ""


_FAMILIES = (
    Family(
        "llama", "Llama 2/3.x, SmolLM2", notes="llama3 rope scaling; width: hidden channels allowed"
    ),
    Family("mistral", "Mistral", notes="width: hidden channels allowed"),
    Family("qwen2", "Qwen2/2.5", notes="q/k/v biases; width: hidden channels allowed"),
    Family("gemma", "Gemma", notes="width: heads and MLP only (embedding scale)"),
    Family("gemma2", "Gemma 2", notes="sliding/full layers; width: heads and MLP only"),
    Family(
        "gemma3_text",
        "Gemma 3 text (MedGemma)",
        notes="q/k norms, sliding/full layers; width: heads and MLP only",
    ),
    Family(
        "gemma3",
        "Gemma 3 multimodal (MedGemma 4B)",
        notes="its language model is pruned (as gemma3_text); vision tower and projector kept",
    ),
    Family("qwen3", "Qwen3", notes="q/k norms; width: hidden channels allowed"),
    Family("phi3", "Phi-3", notes="fused qkv/gate_up; width: hidden channels allowed"),
)

#: ``config.model_type`` -> :class:`Family`.
FAMILIES: dict[str, Family] = {f.model_type: f for f in _FAMILIES}


def supported_families() -> dict[str, Family]:
    """Every family the engine prunes, keyed by ``config.model_type``."""
    return dict(FAMILIES)


def support_table() -> str:
    """Families x methods as a plain-text table (``medprune support``)."""
    width = max(len(f.model_type) for f in FAMILIES.values())
    lines = [f"{'model_type':{width}s}  " + "  ".join(ALL_METHODS) + "  notes"]
    for f in FAMILIES.values():
        marks = "  ".join(f"{'yes' if m in f.methods else '-':{len(m)}s}" for m in ALL_METHODS)
        lines.append(f"{f.model_type:{width}s}  {marks}  {f.name}: {f.notes}")
    return "\n".join(lines)


def check_supported(model: nn.Module | str) -> str:
    """Return the model type or raise a :class:`PruneError` naming it and the supported ones.

    ``model`` is a loaded model or just a ``config.model_type`` string (as read from a
    checkpoint's ``config.json``), so a preflight can check before loading any weights.
    """
    model_type: str | None
    if isinstance(model, str):
        model_type = model
    else:
        model_type = getattr(getattr(model, "config", None), "model_type", None)
    if model_type not in FAMILIES:
        raise PruneError(
            f"model type {model_type!r} is not supported for pruning (config.json model_type); "
            f"supported: {', '.join(FAMILIES)}"
        )
    if isinstance(model, str):
        return model_type
    if not isinstance(getattr(getattr(model, "model", None), "layers", None), nn.ModuleList):
        hint = (
            "; prune its language model: medprune.load.model.language_model_view(model) "
            "(load_model does this)"
            if model_type == "gemma3"
            else ""
        )
        raise PruneError(f"{type(model).__name__} has no model.layers decoder stack{hint}")
    return model_type


def decoder_layers(model: nn.Module) -> nn.ModuleList:
    """The list of decoder blocks of a supported causal LM."""
    check_supported(model)
    return model.model.layers


@dataclass(frozen=True)
class HeadLayout:
    num_heads: int
    num_kv_heads: int
    head_dim: int

    @property
    def group_size(self) -> int:
        return self.num_heads // self.num_kv_heads


def head_layout(config) -> HeadLayout:
    heads = config.num_attention_heads
    kv = getattr(config, "num_key_value_heads", None) or heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    return HeadLayout(heads, kv, head_dim)


@dataclass
class LayerParts:
    """The linears of one decoder layer. Exactly one of ``qkv`` / ``(q, k, v)`` is set, and
    one of ``gate_up`` / ``(gate, up)``."""

    o: nn.Linear
    down: nn.Linear
    q: nn.Linear | None = None
    k: nn.Linear | None = None
    v: nn.Linear | None = None
    qkv: nn.Linear | None = None
    gate: nn.Linear | None = None
    up: nn.Linear | None = None
    gate_up: nn.Linear | None = None


def layer_parts(layer: nn.Module) -> LayerParts:
    attn = getattr(layer, "self_attn", None)
    mlp = getattr(layer, "mlp", None)
    if attn is None or mlp is None:
        raise PruneError(f"decoder layer {type(layer).__name__} has no self_attn/mlp")
    try:
        if hasattr(attn, "qkv_proj"):
            parts = LayerParts(o=attn.o_proj, down=mlp.down_proj, qkv=attn.qkv_proj)
        else:
            parts = LayerParts(
                o=attn.o_proj, down=mlp.down_proj, q=attn.q_proj, k=attn.k_proj, v=attn.v_proj
            )
        if hasattr(mlp, "gate_up_proj"):
            parts.gate_up = mlp.gate_up_proj
        else:
            parts.gate, parts.up = mlp.gate_proj, mlp.up_proj
    except AttributeError as exc:
        raise PruneError(
            f"decoder layer {type(layer).__name__}: unexpected layout ({exc})"
        ) from None
    return parts


def layer_norms(layer: nn.Module, hidden_size: int) -> dict[str, nn.Module]:
    """Norm modules of a layer whose weight spans the hidden dimension (2 in Llama, 4 in
    Gemma 2); q/k norms over ``head_dim`` are not included."""
    return {
        name: m
        for name, m in layer.named_modules()
        if not isinstance(m, nn.Linear)
        and "norm" in type(m).__name__.lower()
        and getattr(m, "weight", None) is not None
        and tuple(m.weight.shape) == (hidden_size,)
    }
