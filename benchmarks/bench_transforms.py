"""Images/s on one core for each transform family's widest training sampler at 227 px, grey and colour.

Run: .venv/bin/python benchmarks/bench_transforms.py [--seconds S]
Reference in the same run: a plain cv2.resize (256 -> 227) of the same image. Rates are per second
of this process's CPU time (time.process_time), i.e. per core, so other jobs on the machine
distort them less than wall-clock time would.
"""
from __future__ import annotations

import argparse
import os
import platform
import time

import cv2
import numpy as np

from replicate.transforms import FAMILIES
from replicate.transforms.gallery import synthetic_image

TARGET = 500  # images/s per core at 227 grey (16 loader workers outpace CaffeNet training on one GPU)


def rate(fn, image, seconds: float) -> float:
    """Calls per CPU second of fn(image), measured over at least `seconds` of CPU time."""
    fn(image)  # warm-up
    count, start = 0, time.process_time()
    while (elapsed := time.process_time() - start) < seconds:
        for _ in range(20):
            fn(image)
        count += 20
    return count / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=1.0, help="time per measurement")
    args = parser.parse_args()
    cv2.setNumThreads(1)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    images = {"grey": synthetic_image("rvl-cdip", 227), "colour": synthetic_image("ilsvrc", 227)}
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
               platform.processor())
    print(f"# {cpu}, nproc {os.cpu_count()}, cv2 {cv2.__version__}, numpy {np.__version__}, 1 thread")
    print("| family | sampler config | grey img/s | colour img/s | grey >= 500 |")
    print("|---|---|---:|---:|---|")
    for name in ("reference: cv2.resize 256->227",) + tuple(FAMILIES):
        if name in FAMILIES:
            config = FAMILIES[name].training[-1]  # the widest range: the most work per image
            sample = FAMILIES[name].sampler(config)
            rng = np.random.default_rng(0)
            fn, shown = (lambda image: sample(image, rng)), str(config)
            inputs = images if name != "crop" else {k: cv2.resize(v, (256, 256)) for k, v in images.items()}
        else:
            fn, shown = (lambda image: cv2.resize(image, (227, 227))), "-"
            inputs = {k: cv2.resize(v, (256, 256)) for k, v in images.items()}
        grey, colour = (rate(fn, inputs[k], args.seconds) for k in ("grey", "colour"))
        verdict = "" if name not in FAMILIES else ("yes" if grey >= TARGET else "NO")
        print(f"| {name} | {shown} | {grey:,.0f} | {colour:,.0f} | {verdict} |")


if __name__ == "__main__":
    main()
