"""Figs. 3, 11, 12 from distance matrices -> PNG and PDF (matplotlib Agg, written atomically), and their CSVs.

Fig. 3: (a) the same-family K-NN percentage against K = 1..n-1 per dataset, with the chance line K / (n - 1);
(b, c) the family-mean distance heatmap per dataset (zoo family order, Baseline included), diagonal blank, lighter
= farther as in the paper. Fig. 11: t-SNE of D, markers and colours by family, marker size by the zoo's range
rank, one row per seed, the nearest-neighbour agreement across seeds in the titles. Fig. 12: D' (Eq. 9) over all
pairs, ticks labelled with the family abbreviations. D is Eq. 4 with L_L2 as normalised by `l2` (the distance
experiments pass per-neuron).
"""
from __future__ import annotations

import csv
import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the backend)
import numpy as np  # noqa: E402

from replicate import zoo  # noqa: E402
from replicate.config import DEFAULT_L2  # noqa: E402
from replicate.figures.plot import save  # noqa: E402
from replicate.measure import metrics, pairs  # noqa: E402
from replicate.measure.distance import DistanceMatrix  # noqa: E402
from replicate.transforms import FAMILIES  # noqa: E402

ABBREVIATIONS = {"baseline": "Ba", "color_jitter": "CJ", "crop": "Cr", "elastic": "El", "blur": "Bl", "noise": "No",
                 "mirror": "Mi", "perspective": "Pe", "rotation": "Ro", "shear": "Sh"}
MARKERS = dict(zip(zoo.FAMILIES, "osD^v<>p*X"))
COLOURS = dict(zip(zoo.FAMILIES, plt.get_cmap("tab10").colors))
HEATMAP = "viridis"   # dark = near, light = far (the paper: "Lighter squares indicate greater distance")


def _heatmap(ax: plt.Axes, values: np.ndarray, labels: list[str], title: str, annotate: bool) -> None:
    image = ax.imshow(np.ma.masked_invalid(values), cmap=matplotlib.colormaps[HEATMAP].with_extremes(bad="white"))
    ticks = range(len(labels))
    ax.set_xticks(ticks, labels, rotation=45, ha="right", fontsize=6)
    ax.set_yticks(ticks, labels, fontsize=6)
    ax.set_title(title, fontsize=9)
    if annotate:
        for (r, c), v in np.ndenumerate(values):
            if np.isfinite(v):
                ax.text(c, r, f"{v:.2f}", ha="center", va="center", fontsize=5, color="white")
    ax.figure.colorbar(image, ax=ax, fraction=0.046, pad=0.04).ax.tick_params(labelsize=6)


def draw_fig3(matrices: dict[str, DistanceMatrix], stem: Path, l2: str = DEFAULT_L2) -> list[Path]:
    """(a) same-family K-NN curves with chance, then one family-mean heatmap per dataset."""
    metrics.check_l2(l2)
    fig, axes = plt.subplots(1, 1 + len(matrices), figsize=(4.6 * (1 + len(matrices)), 4.8), squeeze=False)
    knn = axes[0, 0]
    for (dataset, dm), colour in zip(matrices.items(), ("tab:blue", "tab:orange", "tab:green")):
        ks, fractions, chance = pairs.knn_curve(dm.matrix(l2), dm.families)
        knn.plot(ks, 100 * fractions, "-", marker=".", color=colour, label=dataset)
        knn.plot(ks, 100 * chance, ":", color=colour, label=f"{dataset}: chance")
    knn.set(xlabel="K", ylabel="same-family pairs within K neighbours (%)", title="(a) K-NN same transform")
    knn.legend(fontsize=6)
    knn.grid(alpha=0.3)
    for ax, letter, (dataset, dm) in zip(axes[0, 1:], "bcdefgh", matrices.items()):
        means = pairs.family_means(dm.matrix(l2), dm.families, zoo.FAMILIES)
        np.fill_diagonal(means, np.nan)   # the paper blanks the diagonal
        _heatmap(ax, means, [FAMILIES[f].title for f in zoo.FAMILIES], f"({letter}) {dataset}: mean D by family",
                 annotate=True)
    fig.suptitle(f"Representation distance (Eq. 4, L_L2 {l2}, {_combine(matrices)})", fontsize=10)
    fig.tight_layout()
    return save(fig, stem)


def draw_fig11(matrices: dict[str, DistanceMatrix], stem: Path, seeds: list[int], l2: str = DEFAULT_L2) -> list[Path]:
    """t-SNE of each dataset's D: one row per seed, one column per dataset."""
    metrics.check_l2(l2)
    fig, axes = plt.subplots(len(seeds), len(matrices), figsize=(4.6 * len(matrices), 4.0 * len(seeds)), squeeze=False)
    for column, (dataset, dm) in enumerate(matrices.items()):
        emb = pairs.tsne(dm.matrix(l2), seeds)
        for row, (seed, points) in enumerate(zip(seeds, emb.points)):
            ax = axes[row, column]
            for family in dict.fromkeys(dm.families):
                mine = [i for i, f in enumerate(dm.families) if f == family]
                ax.scatter(points[mine, 0], points[mine, 1], marker=MARKERS[family], color=COLOURS[family],
                           s=[18 + 22 * dm.nets[i].range_rank for i in mine], label=ABBREVIATIONS[family],
                           edgecolors="black", linewidths=0.3)
            ax.set_title(f"{dataset}, seed {seed} (NN agreement over {len(seeds)} seeds: {emb.nn_agreement:.2f})",
                         fontsize=8)
            ax.set_xticks([])
            ax.set_yticks([])
        axes[0, column].legend(fontsize=6, ncols=2, loc="best")
    fig.suptitle(f"t-SNE of D (perplexity {emb.perplexity:.1f}; marker size: training range rank)", fontsize=10)
    fig.tight_layout()
    return save(fig, stem)


def draw_fig12(matrices: dict[str, DistanceMatrix], stem: Path, l2: str = DEFAULT_L2) -> list[Path]:
    """Heatmap of D' = |one-way difference| (Eq. 9) over all pairs, one per dataset."""
    metrics.check_l2(l2)
    fig, axes = plt.subplots(1, len(matrices), figsize=(6.0 * len(matrices), 5.4), squeeze=False)
    for ax, letter, (dataset, dm) in zip(axes[0], "abcdefgh", matrices.items()):
        _heatmap(ax, dm.matrix(l2, "D_prime"), [ABBREVIATIONS[f] for f in dm.families],
                 f"({letter}) {dataset}: |one-way difference| (Eq. 9)", annotate=False)
    fig.suptitle(f"Asymmetry of the one-way distances (L_L2 {l2})", fontsize=10)
    fig.tight_layout()
    return save(fig, stem)


def _combine(matrices: dict[str, DistanceMatrix]) -> str:
    combines = sorted({str(dm.config.get("combine")) for dm in matrices.values()})
    return f"D = {' / '.join(combines)} of the one-way distances"


# ------------------------------------------------------------------------------------------------ CSV
def matrices_csv(matrices: dict[str, DistanceMatrix]) -> str:
    """Every pair (i, j) of every dataset: D, both one-way directions, D' per normalisation, map loss and CKA."""
    norms = [n.replace("-", "_") for n in metrics.L2_NORMALISATIONS]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["dataset", "row_net", "col_net", "row_family", "col_family",
                     *(f"{kind}_{n}" for n in norms for kind in ("D", "one_way_row_to_col", "one_way_col_to_row",
                                                                 "D_prime")),
                     "map_loss_row_to_col", "cka"])
    for dataset, dm in matrices.items():
        for (i, a), (j, b) in ((x, y) for x in enumerate(dm.nets) for y in enumerate(dm.nets)):
            values = [m[r, c] for n in metrics.L2_NORMALISATIONS
                      for m, (r, c) in ((dm.D[n], (i, j)), (dm.one_way[n], (i, j)), (dm.one_way[n], (j, i)),
                                        (dm.D_prime[n], (i, j)))]
            writer.writerow([dataset, a.id, b.id, a.family, b.family, *(f"{v:.6f}" for v in values),
                             f"{dm.map_loss[i, j]:.6f}", f"{dm.cka[i, j]:.6f}"])
    return buffer.getvalue()


def fig3_csv(matrices: dict[str, DistanceMatrix], l2: str = DEFAULT_L2) -> str:
    """Fig. 3's plotted values: the K-NN curve with chance per dataset, then the family means."""
    metrics.check_l2(l2)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["dataset", "panel", "k_or_row_family", "col_family", "value", "chance"])
    for dataset, dm in matrices.items():
        for k, fraction, chance in zip(*pairs.knn_curve(dm.matrix(l2), dm.families)):
            writer.writerow([dataset, "knn_same_family", int(k), "", f"{fraction:.6f}", f"{chance:.6f}"])
        means = pairs.family_means(dm.matrix(l2), dm.families, zoo.FAMILIES)
        for (r, c), v in np.ndenumerate(means):
            writer.writerow([dataset, "family_mean_D", zoo.FAMILIES[r], zoo.FAMILIES[c], f"{v:.6f}", ""])
    return buffer.getvalue()
