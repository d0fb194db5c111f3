"""What a distance matrix says about the nets (Figs. 3, 11, 12; Appendix B.3): pure numpy/scipy/sklearn.

Every function takes a square matrix D (D[i, j]: distance from net i to net j; any diagonal, ignored) and, where
it needs them, the nets' family labels in matrix order.
Neighbours: net i's neighbours are the other nets in increasing D[i, j]; ties go to the lower index.
"""
from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations
from typing import Sequence

import numpy as np
from scipy.spatial.distance import pdist
from scipy.stats import spearmanr

from convert.errors import UserError


def _square(D: np.ndarray, families: Sequence[str] | None = None) -> np.ndarray:
    D = np.asarray(D, dtype=float)
    if D.ndim != 2 or D.shape[0] != D.shape[1] or D.shape[0] < 2:
        raise UserError(f"distance matrix of shape {D.shape}: expected a square matrix of at least 2 x 2")
    if families is not None and len(families) != D.shape[0]:
        raise UserError(f"{len(families)} family labels for a {D.shape[0]} x {D.shape[0]} distance matrix; "
                        f"expected one per net")
    off = ~np.eye(len(D), dtype=bool)
    if not np.isfinite(D[off]).all():
        raise UserError("distance matrix: expected finite off-diagonal distances")
    return D


def neighbour_ranks(D: np.ndarray) -> np.ndarray:
    """ranks[i, j] = position of net j among net i's neighbours (1 = nearest; ties to the lower index); 0 on the diagonal."""
    D = _square(D)
    keys = D.copy()
    np.fill_diagonal(keys, -np.inf)                       # self first, then the others
    order = np.argsort(keys, axis=1, kind="stable")       # stable: equal distances keep index order
    ranks = np.empty_like(order)
    np.put_along_axis(ranks, order, np.arange(len(D))[None, :].repeat(len(D), 0), axis=1)
    return ranks


def _same_family(families: Sequence[str]) -> np.ndarray:
    labels = np.asarray(families)
    same = labels[:, None] == labels[None, :]
    np.fill_diagonal(same, False)
    return same


def knn_same_family(D: np.ndarray, families: Sequence[str], k: int) -> float:
    """Fraction of same-family ordered pairs (i, j), i != j, with j among i's k nearest neighbours (NaN: no such pairs)."""
    _square(D, families)
    if not 1 <= k < len(families):
        raise UserError(f"k = {k}: expected 1 <= k <= {len(families) - 1} (the number of other nets)")
    same = _same_family(families)
    return float((neighbour_ranks(D)[same] <= k).mean()) if same.any() else float("nan")


def knn_curve(D: np.ndarray, families: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(K = 1..n-1, the same-family K-NN fraction per K, chance K / (n - 1): the fraction for random neighbours)."""
    _square(D, families)
    same, ranks, n = _same_family(families), neighbour_ranks(D), len(families)
    ks = np.arange(1, n)
    fractions = np.array([(ranks[same] <= k).mean() if same.any() else np.nan for k in ks])
    return ks, fractions, ks / (n - 1)


def family_means(D: np.ndarray, families: Sequence[str], order: Sequence[str]) -> np.ndarray:
    """[a, b] = mean D[i, j] over i in family a, j in family b, i != j (diagonal: within-family, NaN for one net)."""
    D = _square(D, families)
    labels = np.asarray(families)
    off = ~np.eye(len(D), dtype=bool)
    out = np.full((len(order), len(order)), np.nan)
    for a, fa in enumerate(order):
        for b, fb in enumerate(order):
            cells = (labels[:, None] == fa) & (labels[None, :] == fb) & off
            if cells.any():
                out[a, b] = D[cells].mean()
    return out


def triangle_violations(D: np.ndarray) -> float:
    """Fraction of ordered triples of distinct (i, j, k) with D[i, k] > D[i, j] + D[j, k]."""
    D = _square(D)
    n = len(D)
    if n < 3:
        raise UserError(f"triangle inequality: expected at least 3 nets, got {n}")
    violated = D[:, None, :] > D[:, :, None] + D[None, :, :]      # [i, j, k]: D[i, k] > D[i, j] + D[j, k]
    i, j, k = np.meshgrid(*(np.arange(n),) * 3, indexing="ij")
    distinct = (i != j) & (j != k) & (i != k)
    return float(violated[distinct].mean())


def cluster_contrast(D: np.ndarray, families: Sequence[str], group: Sequence[str]) -> tuple[float, float]:
    """(mean D between nets of the group's families, i != j; mean D from those nets to every other net)."""
    D = _square(D, families)
    inside = np.isin(np.asarray(families), list(group))
    off = ~np.eye(len(D), dtype=bool)
    within = D[inside[:, None] & inside[None, :] & off]
    across = D[inside[:, None] & ~inside[None, :]]
    if not len(within) or not len(across):
        raise UserError(f"family group {list(group)}: expected at least two of its nets and one net outside it")
    return float(within.mean()), float(across.mean())


def uniqueness(D: np.ndarray, families: Sequence[str]) -> dict[str, float]:
    """Per family, the mean distance from its nets to nets of other families, most unique first."""
    D = _square(D, families)
    labels = np.asarray(families)
    scores = {f: float(D[labels == f][:, labels != f].mean()) for f in dict.fromkeys(families)
              if (labels != f).any()}
    return dict(sorted(scores.items(), key=lambda kv: -kv[1]))


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rho of two samples; NaN (without scipy's warning) when either is constant."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if len(a) < 2 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    return float(spearmanr(a, b).statistic)


def off_diagonal(D: np.ndarray) -> np.ndarray:
    """The values D[i, j], i != j."""
    D = _square(D)
    return D[~np.eye(len(D), dtype=bool)]


@dataclass
class Embeddings:
    """t-SNE embeddings of D, one per seed, and how much they agree."""
    seeds: list[int]
    points: list[np.ndarray]          # per seed: n x 2
    perplexity: float
    nn_agreement: float               # fraction of nets whose 2-D nearest neighbour is the same in every embedding
    distance_agreement: float         # mean Spearman rho between two embeddings' pairwise distances, over seed pairs
    fidelity: float                   # mean Spearman rho between an embedding's pairwise distances and D's


def perplexity_for(n: int) -> float:
    """t-SNE perplexity for n points: 10 for the paper's 36-37 nets (about a family and its neighbours), < n / 3 below."""
    return float(min(10.0, (n - 1) / 3))


def tsne(D: np.ndarray, seeds: Sequence[int], perplexity: float | None = None) -> Embeddings:
    """sklearn's exact t-SNE of the precomputed distances (random init), once per seed."""
    from sklearn.manifold import TSNE   # sklearn takes a second to import: only when embedding
    D = _square(D)
    if not np.allclose(D, D.T) or (D < 0).any():
        raise UserError("t-SNE: expected a symmetric non-negative distance matrix (Eq. 4's D)")
    if len(seeds) < 1:
        raise UserError("t-SNE: expected at least one seed")
    D = D.copy()
    np.fill_diagonal(D, 0.0)
    perplexity = perplexity_for(len(D)) if perplexity is None else perplexity
    points = [TSNE(2, metric="precomputed", init="random", perplexity=perplexity, method="exact",
                   random_state=seed).fit_transform(D) for seed in seeds]
    nearest = [neighbour_ranks(_pairwise(p)).argsort(1)[:, 1] for p in points]
    target = D[np.triu_indices(len(D), 1)]
    agree = [spearman(pdist(a), pdist(b)) for a, b in combinations(points, 2)]
    return Embeddings(list(seeds), points, perplexity,
                      float(np.mean([all(nn[i] == nearest[0][i] for nn in nearest) for i in range(len(D))])),
                      float(np.mean(agree)) if agree else float("nan"),
                      float(np.mean([spearman(pdist(p), target) for p in points])))


def _pairwise(points: np.ndarray) -> np.ndarray:
    return np.linalg.norm(points[:, None, :] - points[None, :, :], axis=-1)
