"""Keep pruning masks intact during training.

Masks are captured per parameter from the weights' zeros, on the tensor each process holds
(the whole weight on one device or under DDP, the local shard under FSDP2), so they never
need gathering. Gradients are masked before the optimizer step and the weights re-masked
after it; with AdamW a zero weight whose gradient is always zero stays exactly zero.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from medprune.errors import RecoveryError
from medprune.prune.apply import prunable_linears


def local_tensor(t: torch.Tensor) -> torch.Tensor:
    """The part of ``t`` this process holds (a DTensor's local shard, else ``t``)."""
    to_local = getattr(t, "to_local", None)
    return to_local() if callable(to_local) else t


def _clean_name(name: str) -> str:
    # DDP wraps the model as `module.`, FSDP1 / torch.compile add their own prefixes.
    for prefix in ("module.", "_orig_mod.", "_fsdp_wrapped_module.", "_checkpoint_wrapped_module."):
        name = name.replace(prefix, "")
    return name


def capture_masks(
    model: nn.Module, exclude: list[str] | tuple[str, ...]
) -> dict[str, torch.Tensor]:
    """Keep-masks (``weight != 0``) of every prunable linear weight that has zeros, keyed by
    the module name (wrapper prefixes removed)."""
    masks = {}
    for name, m in prunable_linears(model, exclude).items():
        keep = local_tensor(m.weight.detach()) != 0
        if not bool(keep.all()):
            masks[_clean_name(name)] = keep
    return masks


def _weights(
    model: nn.Module, masks: dict[str, torch.Tensor]
) -> list[tuple[str, nn.Parameter, torch.Tensor]]:
    modules = {_clean_name(n): m for n, m in model.named_modules()}
    out = []
    for name, keep in masks.items():
        if name not in modules:
            raise RecoveryError(f"{name}: masked layer not found in the model being trained")
        out.append((name, modules[name].weight, keep))
    return out


def mask_gradients(model: nn.Module, masks: dict[str, torch.Tensor]) -> None:
    """Zero the gradients of pruned weights (call before clipping and the optimizer step)."""
    for _, w, keep in _weights(model, masks):
        if w.grad is not None:
            g = local_tensor(w.grad)
            g.mul_(keep.to(device=g.device, dtype=g.dtype))


@torch.no_grad()
def reapply_masks(model: nn.Module, masks: dict[str, torch.Tensor]) -> None:
    """Zero pruned weights again (belt and braces after each optimizer step)."""
    for _, w, keep in _weights(model, masks):
        t = local_tensor(w)
        t.mul_(keep.to(device=t.device, dtype=t.dtype))


def verify_masks(model: nn.Module, masks: dict[str, torch.Tensor]) -> None:
    """Raise :class:`RecoveryError` if any pruned weight is non-zero."""
    for name, w, keep in _weights(model, masks):
        t = local_tensor(w.detach())
        leaked = int(((t != 0) & ~keep.to(t.device)).sum())
        if leaked:
            raise RecoveryError(f"{name}: {leaked} pruned weights became non-zero during recovery")


def nm_violations(weight: torch.Tensor, n: int, m: int) -> int:
    """Groups of ``m`` consecutive input weights (per output row) with more than ``n`` non-zeros."""
    if weight.shape[-1] % m:
        raise RecoveryError(f"weight with {weight.shape[-1]} inputs cannot hold a {n}:{m} pattern")
    groups = (weight.detach() != 0).reshape(-1, m).sum(dim=1)
    return int((groups > n).sum())


def verify_against_reference(
    state: dict[str, torch.Tensor],
    reference_dir: str | Path,
    exclude: list[str] | tuple[str, ...],
    nm: tuple[int, int] | None = None,
) -> dict:
    """Check a trained state dict against the pruned model it started from (its safetensors in
    ``reference_dir``): every weight that was zero is still zero, and the N:M pattern holds.

    Reads the reference one tensor at a time, so it works for models larger than memory
    allows twice. Raises :class:`RecoveryError` naming the first bad layer. Returns counts.
    """
    from safetensors import safe_open

    files = sorted(Path(reference_dir).glob("*.safetensors"))
    if not files:
        raise RecoveryError(f"{reference_dir}: no safetensors to verify the masks against")
    clean = {_clean_name(k): v for k, v in state.items()}
    checked = zeros = 0
    for f in files:
        with safe_open(str(f), framework="pt") as fh:
            for key in fh.keys():  # noqa: SIM118  a safe_open handle is not iterable
                if (
                    not key.endswith(".weight")
                    or any(p in key for p in exclude)
                    or key not in clean
                ):
                    continue
                ref = fh.get_tensor(key)
                if ref.dim() != 2:
                    continue
                pruned = ref == 0
                if not bool(pruned.any()):
                    continue
                now = clean[key].detach().cpu()
                if now.shape != ref.shape:
                    raise RecoveryError(
                        f"{key}: shape changed during recovery {tuple(ref.shape)} -> {tuple(now.shape)}"
                    )
                leaked = int((now[pruned] != 0).sum())
                if leaked:
                    raise RecoveryError(
                        f"{key}: {leaked} pruned weights became non-zero during recovery"
                    )
                if nm is not None:
                    bad = nm_violations(now, *nm)
                    if bad:
                        raise RecoveryError(
                            f"{key}: {bad} groups break the {nm[0]}:{nm[1]} pattern after recovery"
                        )
                checked += 1
                zeros += int(pruned.sum())
    return {"verified_layers": checked, "verified_zeros": zeros}


@torch.no_grad()
def merge_lora_through_masks(peft_model, masks: dict[str, torch.Tensor]) -> nn.Module:
    """Merge LoRA adapters into their base weights, keeping pruned weights zero
    (``W += mask * delta``), and return the plain base model without adapters."""
    from peft.tuners.lora import LoraLayer

    for name, module in peft_model.named_modules():
        if not isinstance(module, LoraLayer):
            continue
        base = module.get_base_layer()
        clean = _clean_name(name).replace("base_model.model.", "", 1)
        keep = masks.get(clean)
        for adapter in module.active_adapters:
            if adapter not in module.lora_A:
                continue
            delta = module.get_delta_weight(adapter).to(base.weight.dtype)
            if keep is not None:
                delta = delta * keep.to(device=delta.device, dtype=delta.dtype)
            base.weight.add_(delta)
    return peft_model.unload()
