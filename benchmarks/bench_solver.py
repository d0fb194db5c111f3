"""Training throughput (images/s) of CaffeNet through our Caffe solver vs plain torch.nn + torch.optim.SGD.

Usage: .venv/bin/python benchmarks/bench_solver.py [--net full|mini] [--iters 6] [--rounds 2] [--batch 16]
       [--threads N]
full: prototxt/caffenet_ilsvrc_train_val.prototxt (227x227 colour, 1000 classes); mini: the mini scale's
prototxt/mini/caffenet_train_val.prototxt (40x40 grey, 16 classes, the net `make table3` trains 76 of).
Ours is trained by replicate.solver.Solver (the code `replicate train` runs), its Data layer replaced by a
fixed random batch through the data_override hook, so neither side reads data; in both of torch's
layouts (the default, and channels_last, the Solver's default). Reference in the same process: the same
architecture written directly in torch.nn (LocalResponseNorm, grouped Conv2d, ceil-mode pooling, Dropout)
with torch.optim.SGD (momentum 0.9, weight decay 5e-4), in both layouts too. All are timed in alternating
rounds after one warm-up iteration each, so a change in machine load hits every one. Prints Markdown rows.
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
from replicate.config import get_scale
from replicate.solver import Solver

PROTOTXT = {"full": "prototxt/caffenet_ilsvrc_train_val.prototxt", "mini": "prototxt/mini/caffenet_train_val.prototxt"}
SOLVER = 'base_lr: 0.01 lr_policy: "step" gamma: 0.1 stepsize: 100000 momentum: 0.9 weight_decay: 0.0005 max_iter: 1000000'


def reference_caffenet(net_param: pb.NetParameter, channels: int, side: int, classes: int) -> nn.Module:
    """CaffeNet (pool before LRN) in plain torch.nn, with the widths and strides of `net_param`'s layers."""
    spec = {lp.name: lp for lp in net_param.layer}
    def conv(name, cin):
        cp = spec[name].convolution_param
        return [nn.Conv2d(cin, cp.num_output, cp.kernel_size[0], cp.stride[0] if cp.stride else 1,
                          cp.pad[0] if cp.pad else 0, groups=cp.group), nn.ReLU(inplace=True)]
    widths = [spec[f"conv{i}"].convolution_param.num_output for i in range(1, 6)]
    fc = spec["fc6"].inner_product_param.num_output
    pool = lambda: nn.MaxPool2d(3, 2, ceil_mode=True)
    lrn = lambda: nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=1.0)
    features = nn.Sequential(*conv("conv1", channels), pool(), lrn(), *conv("conv2", widths[0]), pool(), lrn(),
                             *conv("conv3", widths[1]), *conv("conv4", widths[2]), *conv("conv5", widths[3]), pool())
    flat = features(torch.zeros(1, channels, side, side)).numel()
    return nn.Sequential(features, nn.Flatten(), nn.Linear(flat, fc), nn.ReLU(inplace=True), nn.Dropout(0.5),
                         nn.Linear(fc, fc), nn.ReLU(inplace=True), nn.Dropout(0.5), nn.Linear(fc, classes))


def input_geometry(net: str, net_param: pb.NetParameter) -> tuple[int, int, int]:
    """(channels, side, classes): ILSVRC's 3 x 227 crop for `full`; mini-docs' grey pages at the mini side for `mini`."""
    classes = next(lp for lp in net_param.layer if lp.name == "fc8").inner_product_param.num_output
    return (3, 227, classes) if net == "full" else (1, get_scale("mini").input_size, classes)


def timed(step, iters: int) -> float:
    tic = time.perf_counter()
    for _ in range(iters):
        step()
    return time.perf_counter() - tic


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--net", choices=sorted(PROTOTXT), default="full")
    parser.add_argument("--iters", type=int, default=6, help="iterations per timed round")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(),
                        help="torch threads (a make table3 worker uses 1)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    net_param = protoio.read_net(PROTOTXT[args.net])
    channels, side, classes = input_geometry(args.net, net_param)
    x = torch.randn(args.batch, channels, side, side)
    y = torch.randint(0, classes, (args.batch,))
    steps = {}
    for channels_last in (False, True):
        solver = Solver(parse_text_proto(SOLVER, pb.SolverParameter), net_param=net_param,
                        data_override=lambda: (x, y.float()), log_path=os.devnull, channels_last=channels_last)
        steps[("ours", channels_last)] = lambda solver=solver: solver.step(1)
        steps[("reference", channels_last)] = reference_step(net_param, x, y, channels, side, classes, channels_last)
    for step in steps.values():
        step()                                   # warm-up
    seconds = dict.fromkeys(steps, 0.0)
    for _ in range(args.rounds):
        for key, step in steps.items():
            seconds[key] += timed(step, args.iters)
    n = args.rounds * args.iters * args.batch
    rate = {key: n / t for key, t in seconds.items()}
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    print(f"# {args.net}: {cpu}, nproc {os.cpu_count()}, torch {torch.__version__} ({torch.get_num_threads()} threads), "
          f"Python {platform.python_version()}, load average {os.getloadavg()[0]:.1f}")
    print("| net | batch | iterations | layout | ours (Solver, Caffe SGD) | torch.nn + torch.optim.SGD (reference) | ratio |")
    print("|---|---|---|---|---|---|---|")
    for channels_last in (False, True):
        ours, ref = rate[("ours", channels_last)], rate[("reference", channels_last)]
        print(f"| {args.net} | {args.batch} | {args.rounds * args.iters} | {'channels_last' if channels_last else 'default'} "
              f"| {ours:.1f} img/s | {ref:.1f} img/s | {ours / ref:.2f} |")


def reference_step(net_param, x, y, channels: int, side: int, classes: int, channels_last: bool):
    """One SGD step of the torch.nn reference, in the given layout."""
    ref = reference_caffenet(net_param, channels, side, classes)
    layout = torch.channels_last if channels_last else torch.contiguous_format
    ref = ref.to(memory_format=layout)
    opt = torch.optim.SGD(ref.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    loss_fn = nn.CrossEntropyLoss()
    batch = x.contiguous(memory_format=layout)

    def step():
        opt.zero_grad()
        loss_fn(ref(batch), y).backward()
        opt.step()
    return step


if __name__ == "__main__":
    main()
