"""Training losses: language-model cross-entropy, and distillation from the dense teacher.

Three distillation terms, each a small function of tensors:

- :func:`kl_distill_loss`: KL(teacher || student) over the full vocabulary (the default).
- :func:`topk_kl_distill_loss`: the same KL over the teacher's top-k tokens plus one "rest"
  bucket (``recover.distill.top_k``), for large vocabularies.
- :func:`hidden_state_loss`: normalized MSE between paired intermediate hidden states
  (``recover.distill.hidden_weight``, Minitron).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from medprune.recover.data import IGNORE_INDEX

# Smallest probability mass a "rest" bucket is given, so that its log stays finite.
_TINY = torch.finfo(torch.float32).tiny


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


def log_rest_mass(log_probs: torch.Tensor) -> torch.Tensor:
    """``log(1 - sum(exp(log_probs)))`` along the last axis: the log of the probability mass
    outside the given tokens, at least the float32 ``tiny`` (finite, with a finite gradient)."""
    covered = torch.logsumexp(log_probs, dim=-1).clamp(max=0.0)
    return torch.log((-torch.expm1(covered)).clamp(min=_TINY))


def topk_kl_distill_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    labels: torch.Tensor,
    temperature: float,
    k: int,
) -> torch.Tensor:
    """KL(teacher || student) over ``k + 1`` outcomes per position: the teacher's ``k`` most
    likely tokens and one bucket holding the rest of the probability mass on both sides,
    averaged over positions that carry a loss and scaled by ``T**2`` as
    :func:`kl_distill_loss`. With ``k`` >= the vocabulary it equals the full KL.

    Why top-k with a rest bucket and not sequence chunks: chunking the full KL does not
    bound autograd memory (each chunk's log-softmax is kept for the backward pass unless
    it is recomputed), while top-k never forms the teacher's log-softmax nor the elementwise
    KL over the vocabulary. The student's rest mass is ``1 - sum(top-k probabilities)``
    from its log-sum-exp over the vocabulary (no second softmax copy), so a student rest
    mass below float32 precision of that sum (about 1e-6) reads as the floor; the rest
    bucket keeps the loss a proper KL between two distributions and pushes mass off the
    tokens the teacher does not rank."""
    s, lb = shifted(student_logits, labels)
    t, _ = shifted(teacher_logits, labels)
    keep = lb != IGNORE_INDEX
    if not bool(keep.any()):
        return student_logits.sum() * 0.0
    # Every pass over the vocabulary runs on the (batch, time) views and only the small
    # (positions, k) results are selected by ``keep``: a boolean index of the logits would
    # copy them (and scatter back in the backward pass).
    with torch.no_grad():
        t = t.float() / temperature
        k = min(k, t.shape[-1])
        t_top, index = torch.topk(t, k, dim=-1)
        log_p = (t_top - torch.logsumexp(t, dim=-1, keepdim=True))[keep]
        del t
    s = s.float() / temperature
    log_q = (s.gather(-1, index) - torch.logsumexp(s, dim=-1, keepdim=True))[keep]
    kl = (log_p.exp() * (log_p - log_q)).sum(-1)
    if k < s.shape[-1]:
        log_p_rest = log_rest_mass(log_p)
        kl = kl + log_p_rest.exp() * (log_p_rest - log_rest_mass(log_q))
    return kl.mean() * temperature**2


def normalized_mse(
    student: torch.Tensor, teacher: torch.Tensor, token_mask: torch.Tensor | None
) -> torch.Tensor:
    """Mean over the tokens ``token_mask`` keeps (all when None) of
    ``||student - teacher||^2 / ||teacher||^2``: 0 when they match, scale-free, and each
    token counts once however large its activations (a few tokens carry outsized norms)."""
    s = student.float()
    t = teacher.detach().float()
    err = (s - t).pow(2).sum(-1) / t.pow(2).sum(-1).clamp(min=1e-12)
    if token_mask is None:
        return err.mean()
    keep = token_mask.bool()
    if not bool(keep.any()):
        return student.sum() * 0.0
    return err[keep].mean()


def hidden_state_loss(
    student_hidden: Sequence[torch.Tensor],
    teacher_hidden: Sequence[torch.Tensor],
    pairs: Sequence[tuple[int, int]],
    attention_mask: torch.Tensor | None,
) -> torch.Tensor:
    """Mean of :func:`normalized_mse` over ``pairs`` of indices into the models'
    ``hidden_states`` (Hugging Face's ``output_hidden_states=True``: index 0 is the
    embedding output, ``i + 1`` the output of layer ``i``), over non-padding tokens."""
    if not pairs:
        raise ValueError("hidden_state_loss needs at least one (student, teacher) pair")
    losses = [
        normalized_mse(student_hidden[i], teacher_hidden[j], attention_mask) for i, j in pairs
    ]
    return torch.stack(losses).mean()


def recovery_loss(
    student_logits: torch.Tensor,
    labels: torch.Tensor,
    teacher_logits: torch.Tensor | None,
    *,
    temperature: float,
    kl_weight: float,
    ce_weight: float,
    top_k: int | None = None,
    hidden: torch.Tensor | None = None,
    hidden_weight: float = 0.0,
) -> tuple[torch.Tensor, dict[str, float]]:
    """The training objective: ``kl_weight * KL + ce_weight * CE`` with a teacher (KL over
    the teacher's ``top_k`` tokens and a rest bucket when set), plus ``hidden_weight *
    hidden`` when a hidden-state loss is given; plain cross-entropy without a teacher.
    Returns the loss and its parts as floats."""
    ce = lm_loss(student_logits, labels)
    if teacher_logits is None:
        return ce, {"ce": float(ce.detach())}
    if top_k is None:
        kl = kl_distill_loss(student_logits, teacher_logits, labels, temperature)
    else:
        kl = topk_kl_distill_loss(student_logits, teacher_logits, labels, temperature, top_k)
    loss = kl_weight * kl + ce_weight * ce
    parts = {"ce": float(ce.detach()), "kl": float(kl.detach())}
    if hidden is not None and hidden_weight > 0:
        loss = loss + hidden_weight * hidden
        parts["hidden"] = float(hidden.detach())
    return loss, parts
