"""`replicate status`: what the results store holds for Table 3 — done, running, partial (killed), missing."""
from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

from replicate.config import SCALES


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("status", help="what is done, running, partial or missing in the results store")
    p.add_argument("--dataset", default="all", help="all, rvl-cdip or ilsvrc (default: all)")
    p.add_argument("--scale", default="mini", help=f"{', '.join(SCALES)} (default: mini)")
    p.add_argument("--out", type=Path, default=Path("runs"), help="the results store's parent (default: runs/)")
    p.add_argument("--data-root", type=Path, help="as given to table3 (paper scale)")
    p.add_argument("--dropout", default="caffe", choices=["caffe", "paper"])
    p.add_argument("--verbose", "-v", action="store_true", help="one line per network")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from replicate import pipeline, zoo
    from replicate.config import get_scale
    from replicate.experiment_data import data_for, embedded_job
    from replicate.store import Store
    from replicate.training import job_for
    scale, store = get_scale(args.scale), Store(args.out / "store")
    for dataset in pipeline.check_datasets(args.dataset):
        if args.data_root is None and not embedded_job(dataset, scale, store).done:
            print(f"{dataset} ({scale.name}): data not generated yet; 0/{len(zoo.nets(dataset))} networks trained")
            continue
        data = data_for(dataset, scale, store, args.data_root, progress=False)
        states = Counter()
        for net in zoo.nets(dataset):
            job = job_for(store, scale, dataset, data, net, args.dropout)
            states[job.state] += 1
            if args.verbose:
                accuracy = f"{job.result()['accuracy']:.2f}%" if job.done else ""
                print(f"  {job.state:8} {net.id:18} {net.name:28} {accuracy}")
        summary = ", ".join(f"{states[s]} {s}" for s in ("done", "running", "partial", "missing") if states[s])
        print(f"{dataset} ({scale.name}, {data.source}): {summary} of {sum(states.values())} networks")
    return 0
