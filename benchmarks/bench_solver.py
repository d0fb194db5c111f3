"""Training throughput (images/s) of full CaffeNet through our Caffe solver vs plain torch.nn + torch.optim.SGD.

Usage: .venv/bin/python benchmarks/bench_solver.py [--iters 6] [--rounds 2] [--batch 16]
Ours: prototxt/caffenet_ilsvrc_train_val.prototxt (227x227 colour, 1000 classes) trained by
replicate.solver.Solver (the code `replicate train` runs), its Data layer replaced by a fixed random
batch through the data_override hook, so neither side reads data. Reference in the same process: the
same architecture written directly in torch.nn (LocalResponseNorm, grouped Conv2d, ceil-mode pooling,
Dropout) with torch.optim.SGD (momentum 0.9, weight decay 5e-4). The two are timed in alternating
rounds after one warm-up iteration each, so a change in machine load hits both. Prints a Markdown row.
"""
from __future__ import annotations

import argparse
import os
import platform
import time

import torch
from torch import nn

from convert import caffe_pb2 as pb
from convert import protoio
from convert.protoio import parse_text_proto
from replicate.solver import Solver

PROTOTXT = "prototxt/caffenet_ilsvrc_train_val.prototxt"
SOLVER = 'base_lr: 0.01 lr_policy: "step" gamma: 0.1 stepsize: 100000 momentum: 0.9 weight_decay: 0.0005 max_iter: 1000000'


def reference_caffenet(classes: int = 1000) -> nn.Module:
    """CaffeNet (pool before LRN) in plain torch.nn."""
    def conv(cin, cout, k, stride=1, pad=0, groups=1):
        return [nn.Conv2d(cin, cout, k, stride, pad, groups=groups), nn.ReLU(inplace=True)]
    pool = lambda: nn.MaxPool2d(3, 2, ceil_mode=True)
    lrn = lambda: nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=1.0)
    return nn.Sequential(
        *conv(3, 96, 11, 4), pool(), lrn(), *conv(96, 256, 5, pad=2, groups=2), pool(), lrn(),
        *conv(256, 384, 3, pad=1), *conv(384, 384, 3, pad=1, groups=2), *conv(384, 256, 3, pad=1, groups=2),
        pool(), nn.Flatten(), nn.Linear(256 * 6 * 6, 4096), nn.ReLU(inplace=True), nn.Dropout(0.5),
        nn.Linear(4096, 4096), nn.ReLU(inplace=True), nn.Dropout(0.5), nn.Linear(4096, classes))


def timed(step, iters: int) -> float:
    tic = time.perf_counter()
    for _ in range(iters):
        step()
    return time.perf_counter() - tic


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iters", type=int, default=6, help="iterations per timed round")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--batch", type=int, default=16)
    args = parser.parse_args()
    torch.manual_seed(0)
    x = torch.randn(args.batch, 3, 227, 227)
    y = torch.randint(0, 1000, (args.batch,))

    solver = Solver(parse_text_proto(SOLVER, pb.SolverParameter), net_param=protoio.read_net(PROTOTXT),
                    data_override=lambda: (x, y.float()), log_path=os.devnull)
    ref = reference_caffenet()
    opt = torch.optim.SGD(ref.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    loss_fn = nn.CrossEntropyLoss()

    def ref_step():
        opt.zero_grad()
        loss_fn(ref(x), y).backward()
        opt.step()

    ours_step = lambda: solver.step(1)
    ours_step(), ref_step()                      # warm-up
    t_ours = t_ref = 0.0
    for _ in range(args.rounds):
        t_ours += timed(ours_step, args.iters)
        t_ref += timed(ref_step, args.iters)
    n = args.rounds * args.iters * args.batch
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    print(f"# {cpu}, nproc {os.cpu_count()}, torch {torch.__version__} ({torch.get_num_threads()} threads), "
          f"Python {platform.python_version()}, load average {os.getloadavg()[0]:.1f}")
    print("| batch | iterations | ours (Solver, Caffe SGD) | torch.nn + torch.optim.SGD (reference) | ratio |")
    print("|---|---|---|---|---|")
    print(f"| {args.batch} | {args.rounds * args.iters} | {n / t_ours:.1f} img/s | {n / t_ref:.1f} img/s | "
          f"{t_ref / t_ours:.2f} |")


if __name__ == "__main__":
    main()
