"""Issue 14: `replicate plan`'s calibration on this machine, beside a plain torch.nn CaffeNet step in the same process.

Run: .venv/bin/python benchmarks/bench_plan.py [--scale paper] [--iterations 2]
For each dataset: replicate.plan.calibrate (one worker: one CPU thread; our Solver, net and Data layer on a
synthetic LMDB) and, at paper scale, the same batch through a plain torch.nn CaffeNet with torch.optim.SGD
(one thread, tensors already in memory: no data path), then the plan's totals in worker hours.
Prints Markdown rows for benchmarks/RESULTS.md.
"""
from __future__ import annotations

import argparse
import socket
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_solver import reference_caffenet   # noqa: E402

from replicate import plan   # noqa: E402
from replicate.config import get_scale   # noqa: E402


def reference_rate(dataset: str, batch: int, iterations: int) -> float:
    """Training images/s of a plain torch.nn CaffeNet (SGD, momentum 0.9) at the paper's batch, one thread."""
    channels, classes = (1, 16) if dataset == "rvl-cdip" else (3, 1000)
    model = reference_caffenet(classes)
    model[0] = torch.nn.Conv2d(channels, 96, 11, 4)
    optimiser = torch.optim.SGD(model.parameters(), lr=0.001, momentum=0.9, weight_decay=0.0005)
    x, y = torch.randn(batch, channels, 227, 227), torch.randint(0, classes, (batch,))

    def step():
        optimiser.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        optimiser.step()
    step()
    started = time.perf_counter()
    for _ in range(iterations):
        step()
    return iterations * batch / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", default="paper", choices=["smoke", "mini", "paper"])
    parser.add_argument("--iterations", type=int, default=2)
    args = parser.parse_args()
    scale = get_scale(args.scale)
    torch.set_num_threads(1)
    _, totals, _ = plan.count(scale, ["rvl-cdip", "ilsvrc"])
    print("| scale | dataset | batch | ours: train img/s | plain torch.nn: train img/s | ours: forward img/s | "
          "map (1024-d, 4096 samples) s | worker hours, all experiments | host |")
    print("|---|---|---|---|---|---|---|---|---|")
    for dataset in ("rvl-cdip", "ilsvrc"):
        c = plan.calibrate(scale, dataset, "cpu", args.iterations)
        reference = f"{reference_rate(dataset, c['batch'], args.iterations):.2f}" if args.scale == "paper" else "—"
        print(f"| {args.scale} | {dataset} | {c['batch']} | {c['train_images_per_second']} | {reference} | "
              f"{c['forward_images_per_second']} | {c['map']['seconds'][-1]} | "
              f"{plan.hours(totals[dataset], c)['total']:,.0f} | {socket.gethostname()} |", flush=True)


if __name__ == "__main__":
    main()
