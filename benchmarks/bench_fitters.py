"""Equivariance-map fitters on a 4096-d map with 40,000 samples (the paper's size): `fast` vs `paper` on the CPU.

Usage: .venv/bin/python benchmarks/bench_fitters.py [--dim 4096] [--samples 40000] [--paper-steps 400]
Data: synthetic fc7-like features (non-negative, sparse after a ReLU, low-rank structure): y = phi(x) =
ReLU(z B), x = phi(gx) = ReLU(y P + noise) for a fixed permutation P, plus 4,000 held-out samples.
`fast` runs in full. `paper` (Section 5.2: online SGD, batch 1, 10 epochs) would take hours: it is timed
on --paper-steps samples of its first epoch and extrapolated linearly to 10 epochs x samples (the
per-step work is the same at every step). The reference in the same process is one dense
(samples x dim) @ (dim x dim) matmul, which shows the machine's speed at the time. Prints a Markdown row
and the held-out loss of `fast` and of the identity map (invariance).
"""
from __future__ import annotations

import argparse
import os
import platform
import time

import torch

from replicate.measure import fitters


def features(n: int, dim: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    basis = torch.randn(64, dim, generator=gen) / 8
    y = torch.relu(torch.randn(n, 64, generator=gen) @ basis)
    perm = torch.randperm(dim, generator=torch.Generator().manual_seed(seed + 1))
    x = torch.relu(y[:, perm] + 0.1 * torch.randn(n, dim, generator=gen))
    return x, y


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dim", type=int, default=4096)
    parser.add_argument("--samples", type=int, default=40_000)
    parser.add_argument("--paper-steps", type=int, default=400)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    x, y = features(args.samples + 4000, args.dim)
    x_fit, y_fit, x_hold, y_hold = x[:args.samples], y[:args.samples], x[args.samples:], y[args.samples:]

    tic = time.perf_counter()
    x_fit @ torch.eye(args.dim)
    reference = time.perf_counter() - tic

    tic = time.perf_counter()
    fast_map, record = fitters.fit_fast(x_fit, y_fit)
    fast = time.perf_counter() - tic

    tic = time.perf_counter()
    fitters.fit_paper(x_fit[:args.paper_steps], y_fit[:args.paper_steps], epochs=1)
    per_step = (time.perf_counter() - tic) / args.paper_steps
    paper = per_step * 10 * args.samples

    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    print(f"machine: {os.cpu_count()} cores, {cpu}, {platform.python_version()}, torch {torch.__version__}, "
          f"{args.threads} threads")
    print(f"held-out loss: fast {fitters.loss(fast_map, x_hold, y_hold):.4f}, identity "
          f"{fitters.loss(fitters.AffineMap.identity(args.dim), x_hold, y_hold):.4f} (ridge {record['ridge_relative']})")
    print("| dim | samples | fast (s) | paper, extrapolated (s) | paper / fast | reference matmul (s) |")
    print("|---|---|---|---|---|---|")
    print(f"| {args.dim} | {args.samples} | {fast:.1f} | {paper:.0f} ({per_step * 1e3:.2f} ms/step x "
          f"{10 * args.samples} steps, timed on {args.paper_steps}) | {paper / fast:.0f}x | {reference:.2f} |")


if __name__ == "__main__":
    main()
