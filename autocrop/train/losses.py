"""Training losses. Shapes: predictions and targets of one image are 1-D tensors [N] over its crops."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class SmoothL1ScoreLoss(nn.Module):
    """Smooth-L1 (Huber, beta=1) between predicted scores and standardised MOS, mean over crops."""

    def forward(self, pred: Tensor, target: Tensor) -> Tensor:
        return F.smooth_l1_loss(pred, target, beta=1.0)


class RankingGainLoss(nn.Module):
    """VRN's ranking gain loss L_r = exp(-beta).

    beta = sum_i (e^{sigma_i} - 1) / ln(i + 1), sigma_i = s^_i - |s_i - s^_i|, where i = 1..N is the
    ground-truth rank of a crop (best first), s_i its predicted and s^_i its ground-truth score.
    With ``normalize`` beta is divided by sum_i 1/ln(i+1) (as NDCG is by its ideal value), which keeps
    exp(-beta) in a useful range for any N; ``normalize=False`` is the paper's formula verbatim.
    """

    def __init__(self, normalize: bool = True) -> None:
        super().__init__()
        self.normalize = normalize

    def forward(self, pred: Tensor, target: Tensor) -> Tensor:
        order = torch.argsort(target, descending=True, stable=True)
        s, s_hat = pred[order], target[order]
        sigma = s_hat - (s - s_hat).abs()
        discount = 1.0 / torch.log(torch.arange(2, len(s) + 2, dtype=pred.dtype, device=pred.device))
        beta = ((torch.exp(sigma) - 1.0) * discount).sum()
        if self.normalize:
            beta = beta / discount.sum()
        return torch.exp(-beta)


class ListwiseTop1Loss(nn.Module):
    """LVRN: cross-entropy between the top-1 probability distributions softmax(target/T) and softmax(pred)."""

    def __init__(self, temperature: float = 1.0) -> None:
        super().__init__()
        self.temperature = temperature

    def forward(self, pred: Tensor, target: Tensor) -> Tensor:
        target_dist = torch.softmax(target / self.temperature, dim=0)
        return -(target_dist * torch.log_softmax(pred, dim=0)).sum()


class PairwiseBCELoss(nn.Module):
    """Binary cross-entropy of pair logits against soft labels q = P(first crop is better), mean over pairs."""

    def forward(self, logits: Tensor, q: Tensor) -> Tensor:
        return F.binary_cross_entropy_with_logits(logits, q)


class RankConsistencyLoss(nn.Module):
    """Wang et al. 2023: hinge max(0, delta + sign(p - 0.5) * (y_j - y_i)) averaged over pairs.

    ``p`` [P] is the pair classifier's probability that crop i beats crop j (treated as a fixed label);
    ``score_i``, ``score_j`` [P] are the regressed scores of the two crops.
    """

    def __init__(self, delta: float = 0.1) -> None:
        super().__init__()
        self.delta = delta

    def forward(self, score_i: Tensor, score_j: Tensor, p: Tensor) -> Tensor:
        sign = torch.sign(p.detach() - 0.5)
        return F.relu(self.delta + sign * (score_j - score_i)).mean()


def mos_pairs(
    mos: Tensor, margin: float = 0.5, max_pairs: int = 256, generator: torch.Generator | None = None
) -> tuple[Tensor, Tensor]:
    """Index pairs (i, j) [P] with mos[i] - mos[j] > margin (i better), at most ``max_pairs`` sampled."""
    diff = mos.unsqueeze(1) - mos.unsqueeze(0)
    i, j = torch.nonzero(diff > margin, as_tuple=True)
    if len(i) > max_pairs:
        pick = torch.randperm(len(i), generator=generator)[:max_pairs]
        i, j = i[pick], j[pick]
    return i, j
