"""Build a new, smaller Hugging Face model from a pruned plan.

The new model is created on the meta device (no memory), then each of its tensors is set
from the old model (sliced for width pruning, renumbered for depth pruning). Old decoder
layers are released (moved to ``meta``) as soon as they are copied, so peak memory stays
near one model. The result is an ordinary ``*ForCausalLM`` whose config describes it, so
``save_pretrained`` / ``from_pretrained`` round-trip it.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from medprune.errors import PruneError


def skeleton(model: nn.Module, **config_updates) -> nn.Module:
    """An uninitialised model of ``type(model)`` on the meta device with an updated config."""
    cfg = copy.deepcopy(model.config)
    for key, value in config_updates.items():
        setattr(cfg, key, value)
    with torch.device("meta"):
        new = type(model)(cfg)
    return new.to(dtype=next(model.parameters()).dtype)


def set_param(module: nn.Module, name: str, value: torch.Tensor) -> None:
    setattr(module, name, nn.Parameter(value.contiguous(), requires_grad=False))


def fill_from(new: nn.Module, old: nn.Module, what: str) -> None:
    """Copy every parameter or buffer of ``new`` still on ``meta`` from the same-named one of
    ``old``; their shapes must agree."""
    old_tensors = dict(old.named_parameters(remove_duplicate=False))
    old_tensors.update(dict(old.named_buffers(remove_duplicate=False)))
    for name, tensor in list(new.named_parameters(remove_duplicate=False)) + list(
        new.named_buffers(remove_duplicate=False)
    ):
        if not tensor.is_meta:
            continue
        src = old_tensors.get(name)
        if src is None or src.is_meta or src.shape != tensor.shape:
            raise PruneError(
                f"{what}: cannot fill {name} {tuple(tensor.shape)} from the original model "
                f"({None if src is None else tuple(src.shape)})"
            )
        owner, _, leaf = name.rpartition(".")
        module = new.get_submodule(owner) if owner else new
        if leaf in module._parameters:
            set_param(module, leaf, src.detach())
        else:
            module._buffers[leaf] = src.detach()


def finish(new: nn.Module, old: nn.Module) -> nn.Module:
    """Tie embeddings if the config says so and check nothing is left on ``meta``."""
    if getattr(new.config, "tie_word_embeddings", False):
        new.lm_head.weight = new.model.embed_tokens.weight
    left = [n for n, t in list(new.named_parameters()) + list(new.named_buffers()) if t.is_meta]
    if left:
        raise PruneError(f"structured pruning left tensors unset: {left[:5]}")
    new.eval()
    if hasattr(old, "generation_config") and old.generation_config is not None:
        new.generation_config = copy.deepcopy(old.generation_config)
    from medprune.load.model import MULTIMODAL_PARENT

    parent = getattr(old, MULTIMODAL_PARENT, None)
    if parent is not None:  # the language model of a multimodal model: keep the rest
        object.__setattr__(new, MULTIMODAL_PARENT, parent)
    return new
