"""Training losses: language-model cross-entropy, and distillation from the dense teacher."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from medprune.recover.data import IGNORE_INDEX


def shifted(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits at positions ``0..T-2`` and the tokens they predict (``labels[1:]``)."""
    return logits[:, :-1, :], labels[:, 1:]


def lm_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy over positions whose label is not ``-100``."""
    lg, lb = shifted(logits, labels)
    return F.cross_entropy(
        lg.reshape(-1, lg.shape[-1]).float(), lb.reshape(-1), ignore_index=IGNORE_INDEX
    )


def kl_distill_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    labels: torch.Tensor,
    temperature: float,
) -> torch.Tensor:
    """KL(teacher || student) of the temperature-softened next-token distributions, averaged
    over positions that carry a loss and scaled by ``T**2`` (Hinton et al.) so its gradient
    does not shrink as the temperature grows."""
    s, lb = shifted(student_logits, labels)
    t, _ = shifted(teacher_logits, labels)
    keep = lb != IGNORE_INDEX
    s = s[keep].float() / temperature
    t = t[keep].float() / temperature
    if s.numel() == 0:
        return student_logits.sum() * 0.0
    kl = F.kl_div(
        F.log_softmax(s, dim=-1), F.log_softmax(t, dim=-1), log_target=True, reduction="batchmean"
    )
    return kl * temperature**2


def recovery_loss(
    student_logits: torch.Tensor,
    labels: torch.Tensor,
    teacher_logits: torch.Tensor | None,
    *,
    temperature: float,
    kl_weight: float,
    ce_weight: float,
) -> tuple[torch.Tensor, dict[str, float]]:
    """The training objective: ``kl_weight * KL + ce_weight * CE`` with a teacher, plain
    cross-entropy without one. Returns the loss and its parts as floats."""
    ce = lm_loss(student_logits, labels)
    if teacher_logits is None:
        return ce, {"ce": float(ce.detach())}
    kl = kl_distill_loss(student_logits, teacher_logits, labels, temperature)
    loss = kl_weight * kl + ce_weight * ce
    return loss, {"ce": float(ce.detach()), "kl": float(kl.detach())}
