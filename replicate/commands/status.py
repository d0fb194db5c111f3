"""`replicate status`: what the results store holds for Table 3 — done, running, partial (killed), missing."""
from __future__ import annotations

import argparse
from collections import Counter

from replicate import options

OPTIONS = ("dataset", "scale", "out", "data_root", "dropout")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("status", help="what is done, running, partial or missing in the results store")
    options.add(p, OPTIONS)
    p.add_argument("--verbose", "-v", action="store_true", help="one line per network")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from replicate import zoo
    from replicate.config import get_scale
    from replicate.experiments.base import TRAINABLE
    from replicate.experiment_data import data_for, embedded_job
    from replicate.store import Store
    from replicate.training import job_for
    datasets = options.check_names("dataset", args.dataset, TRAINABLE, TRAINABLE, "status")
    resolved = options.resolve(args, OPTIONS, datasets)
    scale, store = get_scale(resolved.scale), Store(resolved.out / "store")
    for dataset in datasets:
        if resolved.data_root is None and not embedded_job(dataset, scale, store).done:
            print(f"{dataset} ({scale.name}): data not generated yet; 0/{len(zoo.nets(dataset))} networks trained")
            continue
        data = data_for(dataset, scale, store, resolved.data_root, progress=False)
        states = Counter()
        for net in zoo.nets(dataset):
            job = job_for(store, scale, dataset, data, net, resolved.dropout)
            states[job.state] += 1
            if args.verbose:
                holder = job.holder if job.state == "running" else None
                detail = f"{job.result()['accuracy']:.2f}%" if job.done else \
                    f"on {holder['host']} (pid {holder['pid']})" if holder else ""
                print(f"  {job.state:8} {net.id:18} {net.name:28} {detail}")
        summary = ", ".join(f"{states[s]} {s}" for s in ("done", "running", "partial", "missing") if states[s])
        print(f"{dataset} ({scale.name}, {data.source}): {summary} of {sum(states.values())} networks")
    return 0
