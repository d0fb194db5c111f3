"""CaffeNet (227, batch 16) on CPU: our Net from prototxt vs a plain torch.nn CaffeNet, same process.

    .venv/bin/python benchmarks/bench_net.py [--batch 16] [--repeats 3] [--threads N] [--channels-last]

Both nets get the same weights (our Net's MSRA fillers, seed 0); the script checks they compute the
same fc8 before timing. Forward runs at TEST under no_grad; forward+backward at TRAIN (dropout on),
backward of fc8.sum(). --channels-last runs both in torch's channels_last layout (our
`Net(channels_last=True)`, the torch.nn net and its input converted), the layout the solver and the
measurements use. Prints images/s, the machine and the configuration.
"""
from __future__ import annotations

import argparse
import datetime
import os
import platform
import time
from pathlib import Path

import torch
from torch import nn

from convert import caffe_pb2 as pb
from convert import protoio
from convert.net import Net, with_inputs

PROTOTXT = Path(__file__).resolve().parents[1] / "prototxt" / "caffenet_ilsvrc_deploy.prototxt"


def plain_caffenet() -> nn.Sequential:
    """CaffeNet written directly in torch.nn (pooling before LRN, ceil-mode pooling like Caffe)."""
    pool = lambda: nn.MaxPool2d(3, 2, ceil_mode=True)
    lrn = lambda: nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=1.0)
    return nn.Sequential(
        nn.Conv2d(3, 96, 11, 4), nn.ReLU(), pool(), lrn(),
        nn.Conv2d(96, 256, 5, padding=2, groups=2), nn.ReLU(), pool(), lrn(),
        nn.Conv2d(256, 384, 3, padding=1), nn.ReLU(),
        nn.Conv2d(384, 384, 3, padding=1, groups=2), nn.ReLU(),
        nn.Conv2d(384, 256, 3, padding=1, groups=2), nn.ReLU(), pool(), nn.Flatten(),
        nn.Linear(9216, 4096), nn.ReLU(), nn.Dropout(0.5),
        nn.Linear(4096, 4096), nn.ReLU(), nn.Dropout(0.5),
        nn.Linear(4096, 1000))


def copy_weights(ours: Net, plain: nn.Sequential) -> None:
    learned = [m for m in plain if isinstance(m, (nn.Conv2d, nn.Linear))]
    names = ["conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7", "fc8"]
    with torch.no_grad():
        for name, module in zip(names, learned):
            module.weight.copy_(ours.layer(name).weight)
            module.bias.copy_(ours.layer(name).bias)


def images_per_second(step, batch: int, repeats: int) -> float:
    step()  # warm-up
    start = time.perf_counter()
    for _ in range(repeats):
        step()
    return batch * repeats / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--channels-last", action="store_true", help="both nets in torch's channels_last layout")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    shape = (args.batch, 3, 227, 227)
    net_param = with_inputs(protoio.read_net(PROTOTXT), {"data": shape})
    layout = dict(channels_last=args.channels_last)
    ours_test, ours_train = Net(net_param, pb.TEST, seed=0, **layout), Net(net_param, pb.TRAIN, seed=0, **layout)
    ours_train.share_blobs_from(ours_test)
    plain = plain_caffenet()
    copy_weights(ours_test, plain)
    x = torch.randn(shape)
    if args.channels_last:
        plain, x = plain.to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last)

    with torch.no_grad():
        plain.eval()
        reference = plain(x)
        diff = ((ours_test(x, outputs=["fc8"])["fc8"] - reference).abs().max() / reference.abs().max()).item()

    def ours_forward():
        with torch.no_grad():
            ours_test(x, outputs=["fc8"])

    def plain_forward():
        with torch.no_grad():
            plain.eval()(x)

    def ours_train_step():
        ours_train(x, outputs=["fc8"])["fc8"].sum().backward()

    def plain_train_step():
        plain.train()(x).sum().backward()

    results = {name: images_per_second(fn, args.batch, args.repeats) for name, fn in [
        ("ours forward", ours_forward), ("torch.nn forward", plain_forward),
        ("ours forward+backward", ours_train_step), ("torch.nn forward+backward", plain_train_step)]}
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "?")
    print(f"# {datetime.date.today()}  nproc {os.cpu_count()}  threads {args.threads}  CPU {cpu}  "
          f"Python {platform.python_version()}  torch {torch.__version__}  load {os.getloadavg()[0]:.1f}")
    print(f"# CaffeNet {PROTOTXT.name}, batch {args.batch}, repeats {args.repeats}, seed 0, "
          f"layout {'channels_last' if args.channels_last else 'default'}; "
          f"fc8 max|ours - torch.nn| / max|torch.nn| = {diff:.1e}")
    for name, value in results.items():
        print(f"{name:28s} {value:8.1f} images/s")


if __name__ == "__main__":
    main()
