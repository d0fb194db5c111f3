"""Issue 16, point 2: how strong each family's widest Table 3 transform is at 64 px vs the paper's 227 px.

Run: .venv/bin/python benchmarks/bench_regime.py strength [--draws 200]
Prints a Markdown table for benchmarks/RESULTS.md. Geometric families: the mean displacement of a pixel's
source coordinate as a fraction of the side, and the fraction of output pixels filled with 0 (from
outside the image), over `--draws` training draws of the family's sampler at each side. Displacement
is measured by warping coordinate ramps (uint8, exact at both sides since 227 < 256), so it carries a
rounding error of about 0.25 px per axis (0.4% of a 64-px side, 0.1% of 227).
The regime sweep of issue 16 point 1 is NOT in this file yet (see the report of this session).
"""
from __future__ import annotations

import argparse

import numpy as np

from replicate import zoo
from replicate.transforms import FAMILIES

SIDES = (64, 227)            # the mini input side and the paper's
GEOMETRIC = ("perspective", "shear", "rotation", "elastic")


def geometric_strength(family: str, config: dict, side: int, draws: int, seed: int = 0) -> tuple[float, float]:
    """(mean displacement / side, fraction of pixels filled with 0) over `draws` training draws."""
    fam = FAMILIES[family]
    config = {**fam.default_config, **config}
    rng = np.random.default_rng(seed)
    ys, xs = np.indices((side, side))
    ramp_x, ramp_y = xs.astype(np.uint8), ys.astype(np.uint8)
    ones = np.full((side, side), 255, np.uint8)
    disp, fill = [], []
    for _ in range(draws):
        params = fam.draw(config, rng, 1, side)
        inside = fam.apply_fn(ones, **params) == 255       # pixels fully from inside the image
        fill.append(float((fam.apply_fn(ones, **params) == 0).mean()))
        sx = fam.apply_fn(ramp_x, **params).astype(float)
        sy = fam.apply_fn(ramp_y, **params).astype(float)
        d = np.hypot(sx - xs, sy - ys)[inside]
        disp.append(float(d.mean()) / side if d.size else float("nan"))
    return float(np.nanmean(disp)), float(np.mean(fill))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=["strength"])
    parser.add_argument("--draws", type=int, default=200)   # enough for the means to settle to ~1% of their value
    args = parser.parse_args()
    print("| family (widest net) | side | mean displacement / side | fraction filled with 0 |")
    print("|---|---|---|---|")
    for family in GEOMETRIC:
        net = zoo.widest("rvl-cdip", family)
        for side in SIDES:
            d, f = geometric_strength(family, dict(net.params), side, args.draws)
            print(f"| {net.name} | {side} | {d:.4f} | {f:.4f} |")
    from replicate.config import get_scale
    mini = get_scale("mini")
    for paper_side in (320,):
        s = mini.crop_resize(paper_side)
        print(f"| Crop {paper_side} (analytic) | 64 | zoom {s / 64:.3f}, max offset {(s - 64) / 64:.3f} | 0 |")
        print(f"| Crop {paper_side} (analytic) | 227 | zoom {paper_side / 227:.3f}, max offset {(paper_side - 227) / 227:.3f} | 0 |")


if __name__ == "__main__":
    main()
