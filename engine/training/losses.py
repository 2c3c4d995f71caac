"""Metric-learning losses on a batch of l2-normalised descriptors ``(B, D)`` with group labels ``(B,)``.

* :func:`triplet_hardest_negative`: ACTNET's triplet loss (Sec. 3.4, eq. (24) of
  ``papers/actnet.txt``; margin 0.1) with the hardest negative of the batch per anchor.
* :func:`nra_loss`: the NRA loss of DARAC (Schall et al., slides "NRA Loss Function"):
  ``J = -(1/m) sum_i [ log s+_{i,max} + log(1 - s-_{i,min}) ]``.
"""
from __future__ import annotations

import torch

EPS = 1e-6


def _masks(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(pos, neg)`` boolean ``(B,B)`` masks; ``pos`` excludes the diagonal."""
    same = labels.view(-1, 1) == labels.view(1, -1)
    eye = torch.eye(len(labels), dtype=torch.bool, device=labels.device)
    return same & ~eye, ~same


def squared_distances(desc: torch.Tensor) -> torch.Tensor:
    """``||x_i - x_j||^2`` for all pairs, ``(B,B)`` (exact, clamped at 0)."""
    diff = desc.unsqueeze(1) - desc.unsqueeze(0)
    return (diff * diff).sum(-1)


def triplet_hardest_negative(desc: torch.Tensor, labels: torch.Tensor, margin: float = 0.1) -> torch.Tensor:
    """ACTNET triplet loss with hardest-negative mining.

    For every anchor ``a`` and every positive ``p`` of ``a`` (same label, ``p != a``) the
    negative is the batch's hardest one, ``n*(a) = argmin_{n: label_n != label_a} ||x_a - x_n||^2``;
    ``L = mean_{(a,p)} max(0, margin + ||x_a - x_p||^2 - ||x_a - x_{n*(a)}||^2)``.
    Anchors without a positive or without a negative in the batch contribute nothing; a batch
    with no valid triplet gives 0 (with a gradient graph, so ``backward`` still works).
    """
    d2 = squared_distances(desc)
    pos, neg = _masks(labels)
    big = torch.finfo(d2.dtype).max / 4
    hardest_neg = torch.where(neg, d2, torch.full_like(d2, big)).amin(dim=1)  # (B,)
    valid = pos & neg.any(dim=1, keepdim=True)
    if not bool(valid.any()):
        return desc.sum() * 0.0
    per_pair = torch.relu(margin + d2 - hardest_neg.view(-1, 1))
    return per_pair[valid].mean()


def nra_similarities(desc: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(s_pos, s_neg, valid)`` of the NRA loss, each ``(B,)``.

    Definitions (ours; the slides give no formula for ``s``): pair similarity
    ``s_ij = (1 + cos(x_i, x_j)) / 2`` maps the cosine to [0, 1] and is clamped to
    ``[EPS, 1 - EPS]`` (so both logs are finite). Ranking image ``i``'s batch by ``s_ij``:

    * ``s+_{i,max} = min_{j in P(i)} s_ij``: the positive at the *maximal* rank, i.e. the
      hardest (least similar) positive;
    * ``s-_{i,min} = max_{j in N(i)} s_ij``: the negative at the *minimal* rank, i.e. the
      hardest (most similar) negative.

    ``valid[i]``: ``i`` has at least one positive and one negative in the batch.
    """
    s = ((1.0 + desc @ desc.T) / 2.0).clamp(EPS, 1.0 - EPS)
    pos, neg = _masks(labels)
    s_pos = torch.where(pos, s, torch.ones_like(s)).amin(dim=1)
    s_neg = torch.where(neg, s, torch.zeros_like(s)).amax(dim=1)
    valid = pos.any(dim=1) & neg.any(dim=1)
    return s_pos, s_neg, valid


def nra_loss(desc: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """NRA loss (DARAC slides): ``J = -(1/m) sum_i [log s+_{i,max} + log(1 - s-_{i,min})]``.

    ``s`` as in :func:`nra_similarities`; the mean runs over the ``m`` anchors that have both
    a positive and a negative in the batch (0 with a graph when there is none).
    """
    s_pos, s_neg, valid = nra_similarities(desc, labels)
    if not bool(valid.any()):
        return desc.sum() * 0.0
    return -(torch.log(s_pos[valid]) + torch.log(1.0 - s_neg[valid])).mean()
