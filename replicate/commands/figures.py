"""`replicate fig1|fig2|fig7|fig8|fig9|fig10`: invariance and equivariance figures (Eqs. 2, 8) with claim checks."""
from __future__ import annotations

import argparse
from pathlib import Path

from replicate.config import SCALES
from replicate.measure import metrics
from replicate.figures.specs import MEASURED_FAMILIES, SPECS


def register(sub: argparse._SubParsersAction) -> None:
    for spec in SPECS.values():
        p = sub.add_parser(spec.name, help=f"{spec.title}: figure, CSV and claim checks")
        p.add_argument("--dataset", action="append", metavar="NAME",
                       help=f"dataset(s) measured, repeatable (default: {', '.join(spec.datasets)})")
        p.add_argument("--families", nargs="+", metavar="FAMILY",
                       help=f"only these families (default: {', '.join(spec.families)}; "
                            f"any of {', '.join(MEASURED_FAMILIES)})")
        p.add_argument("--scale", default="mini", help=f"{', '.join(SCALES)} (default: mini)")
        p.add_argument("--fitter", default="fast",
                       help="equivariance-map fitter: fast (ridge + SGD, default), paper (Section 5.2), authors")
        p.add_argument("--dropout", default="caffe", choices=["caffe", "paper"],
                       help="test-time dropout of phi and of the trained nets (caffe: identity; paper: halve)")
        p.add_argument("--l2", default=metrics.DEFAULT_L2,
                       help="L_L2 normalisation: authors (their code, what Fig. 10 plots; default) or per-neuron")
        p.add_argument("--out", type=Path, default=Path("runs"), help="results store and outputs (default: runs/)")
        p.add_argument("--data-root", type=Path, help="a directory prepared by `replicate data prepare` (paper scale)")
        p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
        p.add_argument("--workers", type=int, help="networks trained at once (default: CPU cores)")
        p.add_argument("--quiet", action="store_true", help="no progress bars")
        p.set_defaults(func=run, figure=spec.name)


def run(args: argparse.Namespace) -> int:
    from replicate.figures import claims, run as figure_run
    from replicate.figures.specs import check_datasets, check_families, get_spec
    spec = get_spec(args.figure)
    datasets = check_datasets(spec, args.dataset)
    families = check_families(spec, args.families)
    options = figure_run.Options(scale=args.scale, fitter=args.fitter, dropout=args.dropout, l2=args.l2,
                                 out=args.out.resolve(),   # the solver resolves job files against the job dir
                                 data_root=args.data_root, device=args.device, workers=args.workers,
                                 progress=not args.quiet)
    result = figure_run.make(spec, datasets, families, options)
    print(claims.render(result["claims"]))
    print(f"written ({result['seconds']:.0f} s): " + ", ".join(str(p) for p in result["outputs"]))
    return 0
