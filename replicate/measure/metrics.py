"""Section 3.3's losses, computed through the network's fixed classifier fc8.

L_err = 1 - accuracy of fc8(r') against the true labels, r' = M_g(phi(gx)) (equivariance) or phi(gx)
(invariance, M_g = identity). A sample counts as correct when no class scores strictly higher than the
true one (Caffe's Accuracy layer; Table 3 counts the same way). Softmax does not change the argmax.

L_L2 = normalised distance between r' and r = phi(x), two normalisations (docs/protocol.md):
  authors     the authors' equivariance code (Fig. 10 plots 1 - this): mean_i ||r_i - r'_i|| / mean_i ||r_i||.
              The default (replicate.config.DEFAULT_L2): what the published figures were computed with.
  per-neuron  the paper's wording ("we normalize each dimension of r to have similar magnitude", the
              authors' distance code): every neuron j is scaled by 1 / sqrt(E[r_j^2]) (second moment over
              the reported samples of phi(x); neurons that never fire are dropped), then the same ratio of
              means, mean_i ||D (r_i - r'_i)|| / mean_i ||D r_i||. (A mean of per-sample ratios would be
              dominated by the few samples with a tiny ||D r_i||.)
"""
from __future__ import annotations

import torch

from convert.errors import UserError
from replicate.config import DEFAULT_L2

L2_NORMALISATIONS = ("per-neuron", "authors")


def accuracy(r: torch.Tensor, labels: torch.Tensor, fc8_weight: torch.Tensor, fc8_bias: torch.Tensor) -> float:
    """Fraction of samples whose true class is not beaten by any other class score of fc8(r)."""
    scores = r @ fc8_weight.T + fc8_bias
    true = scores.gather(1, labels.long()[:, None])
    return float(((scores > true).sum(1) < 1).double().mean())


def check_l2(normalisation: str) -> str:
    """The name if it is a known L2 normalisation; UserError listing them otherwise."""
    if normalisation not in L2_NORMALISATIONS:
        raise UserError(f"unknown L2 normalisation {normalisation!r}; expected one of {', '.join(L2_NORMALISATIONS)}")
    return normalisation


def l2(r_mapped: torch.Tensor, r: torch.Tensor, normalisation: str = DEFAULT_L2) -> float:
    """L_L2 between r' (mapped or transformed phi) and r = phi(x), normalised as named."""
    check_l2(normalisation)
    if normalisation == "authors":
        return float((r_mapped - r).norm(dim=1).mean() / r.norm(dim=1).mean().clamp(min=1e-12))
    second = (r.double() ** 2).mean(0)
    scale = torch.where(second > 0, second.clamp(min=1e-300).rsqrt(), torch.zeros_like(second))
    diff = ((r_mapped.double() - r.double()) * scale).norm(dim=1)
    base = (r.double() * scale).norm(dim=1)
    return float(diff.mean() / base.mean()) if base.any() else float("nan")


def scores(r_mapped: torch.Tensor, r: torch.Tensor, labels: torch.Tensor, fc8_weight: torch.Tensor,
           fc8_bias: torch.Tensor) -> dict[str, float]:
    """Every metric of one r' against r: accuracy (1 - L_err), both L_L2, the map loss."""
    return {"accuracy": accuracy(r_mapped, labels, fc8_weight, fc8_bias),
            **{f"l2_{n.replace('-', '_')}": l2(r_mapped, r, n) for n in L2_NORMALISATIONS},
            "loss": float(((r_mapped - r) ** 2).sum(1).mean())}
