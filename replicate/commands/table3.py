"""`replicate table3`: train every network of Table 3 (what is missing) and print the table."""
from __future__ import annotations

import argparse
from pathlib import Path

from replicate.config import SCALES


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("table3", help="train the networks of Table 3 and print it beside the published numbers")
    p.add_argument("--dataset", default="all", help="all, rvl-cdip or ilsvrc (default: all)")
    p.add_argument("--scale", default="mini", help=f"{', '.join(SCALES)} (default: mini)")
    p.add_argument("--data-root", type=Path, help="a directory prepared by `replicate data prepare` (paper scale)")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--dropout", default="caffe", choices=["caffe", "paper"],
                   help="test-time dropout convention (caffe: identity at TEST; paper: halve at TEST)")
    p.add_argument("--workers", type=int, help="networks trained at once (default: CPU cores)")
    p.add_argument("--out", type=Path, default=Path("runs"), help="results store and outputs (default: runs/)")
    p.add_argument("--rebuild", action="append", default=[], metavar="NAME",
                   help="recompute the stored job(s) of this network id or data set (repeatable)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from replicate import pipeline
    from replicate.config import get_scale
    from replicate.store import Store
    datasets = pipeline.check_datasets(args.dataset)
    scale = get_scale(args.scale)
    kinds = ["data"] + [f"train-{scale.name}-{d}" for d in datasets]   # only what this command would compute
    for name in args.rebuild:
        pipeline.check_job_name(name, datasets, scale.name)
        removed = Store(args.out / "store").rebuild(name, kinds)
        print(f"rebuild {name}: removed {removed} stored job(s)")
    md = pipeline.table3(datasets, args.scale, args.out, args.data_root, args.device, args.dropout, args.workers,
                         progress=not args.quiet)
    print(md.read_text())
    print(f"written: {md} (and .csv, .json)")
    return 0
