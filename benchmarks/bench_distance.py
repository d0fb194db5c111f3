"""Distance maps (Section 5.3) at the paper's size: one source and 35 targets, batched vs pair by pair vs `paper`.

Usage: .venv/bin/python benchmarks/bench_distance.py [--dim 4096] [--samples 40000] [--targets 35] [--pool 3]
           [--pairs-timed 1] [--paper-steps 200] [--threads 1]
Data: synthetic fc7-like phi, ReLU of correlated Gaussians (a shared 64-d latent through each net's own basis,
plus noise; about half the activations are 0). Targets cycle through --pool distinct arrays (35 distinct
40,000 x 4096 arrays would need 23 GB); the fitter treats every target as its own, so the work is the same.
Timed, on --threads threads (default 1: the cores may be shared):
  batched       distance.fit_targets(source, 35 targets), in full;
  pair by pair  fit_fast(source, target, residual=False) on --pairs-timed targets, extrapolated linearly to 35
                (every pair does the same work: Gram, eigendecomposition, solves, SGD), and checked against the
                batched maps (max |difference|);
  paper         fit_paper(residual=False) on --paper-steps samples of its first epoch, extrapolated to
                10 epochs x samples per map (every step does the same dense work, whatever the values).
  scoring       one map's L_L2 (both normalisations) and loss on --samples report samples (every map needs it).
  CKA           one pair of linear CKA in float64 (the matrix has n(n-1)/2 of them).
The reference, at the start and at the end, is one dense (samples x dim) @ (dim x dim) float32 matmul (the machine's
speed at the time). Prints Markdown rows and the paper-scale estimate: 36 x 35 = 1,260 maps per dataset.
"""
from __future__ import annotations

import argparse
import datetime
import os
import platform
import time

import torch

from replicate.measure import distance, fitters

MAPS_PER_DATASET = 36 * 35   # every ordered pair of Table 3's 36 nets


def features(n: int, dim: int, nets: int, seed: int = 0) -> list[torch.Tensor]:
    """phi of `nets` nets on the same n images: ReLU(latent B_k + noise), latent shared, basis per net."""
    gen = torch.Generator().manual_seed(seed)
    latent = torch.randn(n, 64, generator=gen)
    return [torch.relu(latent @ (torch.randn(64, dim, generator=gen) / 8) + 0.3 * torch.randn(n, dim, generator=gen))
            for _ in range(nets)]


def timed(fn):
    tic = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - tic


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dim", type=int, default=4096)
    parser.add_argument("--samples", type=int, default=40_000)
    parser.add_argument("--targets", type=int, default=35)
    parser.add_argument("--pool", type=int, default=3)
    parser.add_argument("--pairs-timed", type=int, default=1)
    parser.add_argument("--paper-steps", type=int, default=200)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    source, *pool = features(args.samples, args.dim, 1 + args.pool)
    targets = [pool[t % len(pool)] for t in range(args.targets)]
    zeros = (source > 0).float().mean()

    _, reference = timed(lambda: source @ torch.eye(args.dim))
    batched_maps, batched = timed(lambda: distance.fit_targets(source, targets))
    pair_times, worst = [], 0.0
    for t in range(args.pairs_timed):
        (m, _), seconds = timed(lambda: fitters.fit_fast(source, targets[t], residual=False))
        pair_times.append(seconds)
        worst = max(worst, float((m.weight - batched_maps[t][0].weight).abs().max()),
                    float((m.bias - batched_maps[t][0].bias).abs().max()))
    pair = sum(pair_times) / len(pair_times)
    steps = slice(0, args.paper_steps)
    _, paper_part = timed(lambda: fitters.fit_paper(source[steps], targets[0][steps], residual=False, epochs=1))
    per_step = paper_part / args.paper_steps
    paper = per_step * 10 * args.samples
    _, scoring = timed(lambda: distance.one_way(batched_maps[0][0], source, targets[0]))
    _, cka = timed(lambda: distance.linear_cka(source, targets[0]))
    _, reference_end = timed(lambda: source @ torch.eye(args.dim))

    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    print(f"date {datetime.date.today()}, machine: {os.cpu_count()} cores, {cpu}, Python {platform.python_version()}, "
          f"torch {torch.__version__}, {args.threads} thread(s), load average {os.getloadavg()[0]:.1f} at the end")
    print(f"phi: {args.samples} x {args.dim}, {100 * (1 - zeros):.0f}% zeros; {args.targets} targets "
          f"({args.pool} distinct); batched vs pair-by-pair max |difference| {worst:.1e}")
    print(f"reference matmul ({args.samples} x {args.dim}) @ ({args.dim} x {args.dim}) float32: {reference:.1f} s at "
          f"the start, {reference_end:.1f} s at the end")
    print("| fitter | one source, 35 targets (s) | per map (s) | vs batched | 1,260 maps (CPU h) |")
    print("|---|---|---|---|---|")
    scale = 35 / args.targets
    rows = [("fast, batched (fit_targets)", batched * scale, "in full"),
            ("fast, pair by pair (fit_fast, residual=False)", pair * 35, f"{args.pairs_timed} pair(s) timed, x 35"),
            ("paper (online SGD, 10 epochs)", paper * 35,
             f"{per_step * 1e3:.1f} ms/step x {10 * args.samples} steps, timed on {args.paper_steps}")]
    for name, seconds, how in rows:
        print(f"| {name} ({how}) | {seconds:.0f} | {seconds / 35:.1f} | {seconds / (batched * scale):.1f}x | "
              f"{seconds * 36 / 3600:.1f} |")
    print(f"| scoring one map (L_L2 both ways, loss) on {args.samples} samples | - | {scoring:.1f} | - | "
          f"{scoring * MAPS_PER_DATASET / 3600:.1f} |")
    print(f"| linear CKA, one pair (float64) | - | {cka:.1f} | - | {cka * MAPS_PER_DATASET / 2 / 3600:.1f} "
          f"(630 pairs) |")


if __name__ == "__main__":
    main()
