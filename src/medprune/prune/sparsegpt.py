"""SparseGPT (Frantar & Alistarh, 2023): prune columns left to right and let the remaining
weights absorb the error, using the inverse Hessian ``H = X^T X`` of the layer input.

Blocked like the reference: inside a block of ``blocksize`` columns the update is applied
column by column (in steps of :data:`UPDATE_STEP` columns, each step's errors reaching the
rest of the block in one matrix product), then the block's accumulated error updates all
later columns in one matrix product. Masks are chosen per block (unstructured, with an
exact total count) or per group of M columns (N:M), by ``w^2 / [H^-1]_jj^2``.
"""

from __future__ import annotations

import torch

from medprune.errors import PruneError
from medprune.prune.select import lowest_k


def inverse_hessian_cholesky(
    hessian: torch.Tensor, dampening: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Upper Cholesky factor ``U`` of ``(H + damp I)^-1`` (``U^T U = (H + damp I)^-1``) and
    the mask of dead input features (never active in calibration; their weights are zeroed).
    ``damp = dampening * mean(diag H)``; it is raised tenfold (at most 3 times) if ``H`` is not
    positive definite.

    With ``J`` the reversal permutation and ``J H J = L L^T``, ``U = J L^-1 J``: one Cholesky
    factorisation and one triangular inverse, about a third of the work of inverting ``H``
    and factorising the inverse, and in float64 (``H`` is often badly conditioned).
    """
    # Few full-size temporaries (each a fresh mapping the kernel must fault in on CPU):
    # the dampening goes onto the diagonal in place instead of adding ``damp * I``.
    flipped = hessian.flip(0, 1).double()
    diag = torch.diagonal(flipped)  # a view: H's diagonal, reversed
    dead = torch.diagonal(hessian) == 0
    diag.masked_fill_(diag == 0, 1.0)
    undamped = diag.clone()
    damp = dampening * float(undamped.flip(0).mean())
    for _ in range(4):
        torch.add(undamped, damp, out=diag)
        lower, info = torch.linalg.cholesky_ex(flipped)
        if not int(info):
            eye = torch.eye(lower.shape[0], dtype=lower.dtype, device=lower.device)
            inv_lower = torch.linalg.solve_triangular(lower, eye, upper=False, out=eye)
            return inv_lower.float().flip(0, 1), dead
        damp *= 10.0
    raise PruneError("sparsegpt: Hessian is not positive definite even with 1000x dampening")


#: Columns whose errors are applied to each other one by one (rank-1 updates) before the
#: rest of the block gets them in one matrix product: 16 took 25-35% off the column loop of
#: SmolLM2's linears on one CPU thread against updating the whole block per column.
UPDATE_STEP = 16


def _update_step(nm: tuple[int, int] | None) -> int:
    """Columns per inner update step: a multiple of M for N:M, so that an M-group's columns
    have had every earlier column's update when its mask is chosen."""
    if nm is None:
        return UPDATE_STEP
    m = nm[1]
    return max(m, UPDATE_STEP // m * m)


def _split_counts(start: int, end: int, rows: int, sparsity: float) -> int:
    """Weights to prune in columns [start, end) of a ``rows``-row matrix so that the counts of
    all blocks add up to exactly ``round(sparsity * rows * total_cols)``."""
    return round(sparsity * rows * end) - round(sparsity * rows * start)


@torch.no_grad()
def sparsegpt_prune(
    weight: torch.Tensor,
    hessian: torch.Tensor | None,
    *,
    sparsity: float,
    nm: tuple[int, int] | None = None,
    blocksize: int = 128,
    dampening: float = 0.01,
    row_segments: list[int] | None = None,
    inverse: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> torch.Tensor:
    """Return the pruned and error-corrected copy of ``weight`` (``[rows, cols]``, float32).

    ``row_segments`` splits the rows into consecutive matrices that share this Hessian
    (q, k and v stacked); each segment gets its own exact sparsity. ``inverse`` is
    :func:`inverse_hessian_cholesky` of ``hessian`` if already computed (linears that share
    an input share it); ``hessian`` is then not read and may be ``None``.
    """
    rows, cols = weight.shape
    if inverse is None and (hessian is None or hessian.shape != (cols, cols)):
        shape = None if hessian is None else tuple(hessian.shape)
        raise ValueError(f"hessian shape {shape} != ({cols}, {cols})")
    if nm is not None and blocksize % nm[1]:
        raise PruneError(f"prune.sparsegpt.blocksize={blocksize} must be a multiple of M={nm[1]}")
    segments = row_segments or [rows]
    if sum(segments) != rows:
        raise ValueError(f"row_segments {segments} do not add up to {rows} rows")
    bounds = []
    start = 0
    for seg in segments:
        bounds.append((start, start + seg))
        start += seg

    w = weight.detach().float().clone()
    if inverse is None:
        assert hessian is not None  # checked above
        inverse = inverse_hessian_cholesky(hessian.to(w.device), dampening)
    hinv, dead = inverse[0].to(w.device), inverse[1].to(w.device)
    if hinv.shape != (cols, cols):
        raise ValueError(f"inverse shape {tuple(hinv.shape)} != ({cols}, {cols})")
    w[:, dead] = 0.0

    step = _update_step(nm)
    for i1 in range(0, cols, blocksize):
        i2 = min(i1 + blocksize, cols)
        count = i2 - i1
        w1 = w[:, i1:i2].clone()
        err1 = torch.zeros_like(w1)
        hinv1 = hinv[i1:i2, i1:i2]
        d = torch.diagonal(hinv1)
        d_list = d.tolist()  # a Python float per column: no 0-d tensor per division
        keep = torch.ones_like(w1, dtype=torch.bool)
        if nm is None and sparsity > 0:
            scores = w1.pow(2) / d.pow(2).unsqueeze(0)
            for r0, r1 in bounds:
                k = _split_counts(i1, i2, r1 - r0, sparsity)
                if k:
                    lowest = lowest_k(scores[r0:r1].reshape(-1), k)
                    keep[r0:r1] = ~lowest.view(r1 - r0, count)
        drop = (~keep).float()
        # Two levels of lazy updates: the error of column i goes right away (rank 1) only
        # to the columns of its step; the later columns of the block get each step's
        # errors in one matrix product, as the later blocks get the block's. Same
        # arithmetic as column by column, in another summation order.
        for j0 in range(0, count, step):
            j1 = min(j0 + step, count)
            for i in range(j0, j1):
                if nm is not None and i % nm[1] == 0:
                    n, m = nm
                    scores = w1[:, i : i + m].pow(2) / d[i : i + m].pow(2).unsqueeze(0)
                    lowest = lowest_k(scores, m - n, dim=1)
                    keep[:, i : i + m] = ~lowest
                    drop[:, i : i + m] = lowest.float()
                # The error of zeroing the pruned entries of column i, spread over the
                # later columns. Column i itself is left as is here and zeroed exactly
                # below: the update only ever touches columns > i.
                e = err1[:, i]
                torch.mul(w1[:, i], drop[:, i], out=e)
                e.div_(d_list[i])
                if i + 1 < j1:
                    w1[:, i + 1 : j1].addr_(e, hinv1[i, i + 1 : j1], alpha=-1.0)
            if j1 < count:
                w1[:, j1:].addmm_(err1[:, j0:j1], hinv1[j0:j1, j1:], alpha=-1.0)
        w1.mul_(keep)  # exact zeros where pruned; kept entries of column i are unchanged
        w[:, i1:i2] = w1
        if i2 < cols:
            w[:, i2:].addmm_(err1, hinv[i1:i2, i2:], alpha=-1.0)
    return w
