"""Figs. 3, 11, 12: representation distance between every pair of a dataset's networks (Eqs. 4, 9).

Inputs: all 36 zoo nets of each dataset. Computation: replicate.measure.distance.distance_matrix (each
ordered pair a store job, all maps of one source net fitted in one batched step with the fast fitter),
shared by the three figures: a second figure command reads the matrix from the store.
    fig3   (a) share of same-family pairs among the K nearest neighbours, K = 1..35, with chance;
           (b, c) mean D between families, one heatmap per dataset, diagonal blank as in the paper
    fig11  t-SNE of D (sklearn, metric="precomputed") for several seeds, with how much the runs agree
    fig12  heatmap of D' (Eq. 9), the asymmetry of the one-way distances, over all pairs
Outputs: OUT/figures/<scale>/<fig>-<datasets>.{png,pdf,csv,json}; the CSV of every figure holds the full
matrices (D, both one-way directions, D' under both L_L2 normalisations, the map loss and linear CKA);
fig3's also the plotted K-NN and family-mean values.

L_L2 defaults to `per-neuron` here (not the figures' `authors`): the paper normalises "each dimension of r
to have similar magnitude" and the authors' distance code scales each neuron by 1/sqrt(its second moment);
both agree, so the default follows them. Eq. 4 is the sum of the one-way distances (`--combine mean` for
Appendix B.3's average).
"""
from __future__ import annotations

import argparse

from convert.errors import UserError
from convert.protoio import atomic_write
from replicate import zoo
from replicate.claims import Evidence
from replicate.experiments import register
from replicate.experiments.base import TRAINABLE, Context, Experiment, write_sidecar
from replicate.figures import distance_plots
from replicate.measure.distance import COMBINES, DEFAULT_COMBINE, check_clip, distance_matrix
from replicate.measure.fitters import AUTHORS_DISTANCE_CLIP

TSNE_SEEDS = 5   # t-SNE runs of fig11 (B.3: the embeddings "do not agree" across runs; 5 shows it)
OPTIONS = ("dataset", "scale", "fitter", "dropout", "l2", "out", "data_root", "device", "workers", "executor", "ray_address", "rebuild", "quiet")
DISTANCE_DEFAULTS = {"l2": "per-neuron"}   # paper and the authors' distance code agree (module docstring)


def arguments(parser: argparse.ArgumentParser) -> None:
    """The distance maps' own options."""
    parser.add_argument("--combine", default=DEFAULT_COMBINE, choices=COMBINES,
                        help="Eq. 4 as the sum (default, as printed) or the mean (Appendix B.3) of the one-way distances")
    parser.add_argument("--clip-gradients", type=float, metavar="NORM",
                        help=f"gradient clipping of the paper/authors fitters (the authors' code: "
                             f"{AUTHORS_DISTANCE_CLIP:g}; default none, as the paper)")
    parser.add_argument("--tsne-seeds", type=int, default=TSNE_SEEDS, help=f"t-SNE runs (fig11; default {TSNE_SEEDS})")


def extra(args: argparse.Namespace) -> dict:
    check_clip(args.fitter, args.clip_gradients)
    if args.tsne_seeds < 2:
        raise UserError(f"--tsne-seeds {args.tsne_seeds}: expected at least 2 (their agreement is the point)")
    return {"combine": args.combine, "clip_gradients": args.clip_gradients, "tsne_seeds": args.tsne_seeds}


def inputs(ctx: Context) -> dict[str, set[str]]:
    return {d: {n.id for n in zoo.nets(d)} for d in ctx.options.datasets}


def compute(ctx: Context) -> dict:
    """{dataset: DistanceMatrix} of every trained net of each dataset."""
    own = ctx.options.extra
    return {d: distance_matrix([ctx.source(d, n) for n in zoo.nets(d)], fitter=ctx.options.fitter,
                               combine=own["combine"], clip=own["clip_gradients"], progress=ctx.options.progress)
            for d in ctx.options.datasets}


def _experiment(name: str, figure: str, what: str, draw) -> Experiment:
    def render(ctx: Context, matrices: dict, checks: list) -> list:
        options = ctx.options
        stem = options.out / "figures" / ctx.scale.name / f"{name}-{'+'.join(options.datasets)}"
        outputs = draw(ctx, matrices, stem)
        csv = distance_plots.matrices_csv(matrices)
        if name == "fig3":
            csv += "\n" + distance_plots.fig3_csv(matrices, options.l2)
        atomic_write(stem.with_suffix(".csv"), csv.encode())
        config = {"figure": name, "paper_figure": figure, "l2_normalisation": options.l2,
                  "distance": {d: dm.config for d, dm in matrices.items()},
                  "cka_vs_distance_spearman": {d: dm.cka_spearman for d, dm in matrices.items()},
                  "nets": {d: [n.id for n in dm.nets] for d, dm in matrices.items()}}
        return [*outputs, stem.with_suffix(".csv"), write_sidecar(stem.with_suffix(".json"), ctx, checks, **config)]

    return Experiment(
        name=name, paper=f"Fig. {figure}", help=f"{what}: figure, CSV (full distance matrices) and claim checks",
        claims=(figure,), datasets=TRAINABLE, default_datasets=TRAINABLE, options=OPTIONS, inputs=inputs,
        compute=compute, evidence=lambda ctx, matrices: Evidence(distances=matrices, l2=ctx.options.l2), render=render,
        arguments=arguments, extra=extra, defaults=DISTANCE_DEFAULTS)


register(_experiment("fig3", "3", "K-NN analysis and family means of the representation distance",
                     lambda ctx, m, stem: distance_plots.draw_fig3(m, stem, ctx.options.l2)))
register(_experiment("fig11", "11", "t-SNE of the representation distance over several seeds",
                     lambda ctx, m, stem: distance_plots.draw_fig11(m, stem, list(range(ctx.options.extra["tsne_seeds"])),
                                                                   ctx.options.l2)))
register(_experiment("fig12", "12", "asymmetry of the one-way distances (Eq. 9)",
                     lambda ctx, m, stem: distance_plots.draw_fig12(m, stem, ctx.options.l2)))
