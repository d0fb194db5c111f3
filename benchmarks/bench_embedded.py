"""Embedded datasets: generation speed (images/s) and a difficulty floor (simple classifiers on pixels).

Run: .venv/bin/python benchmarks/bench_embedded.py [--count 10000] [--size 64]
Prints Markdown lines for the `## embedded datasets` section of benchmarks/RESULTS.md.
"""
from __future__ import annotations

import argparse
import os
import platform
import time

import cv2
import numpy as np

from replicate.datasets import embedded


def reference_seconds() -> float:
    """A fixed OpenCV workload (2000 INTER_AREA resizes of 192 px noise) to calibrate the machine's speed."""
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (2000, 192, 192), dtype=np.uint8)
    start = time.perf_counter()
    for image in images:
        cv2.resize(image, (96, 96), interpolation=cv2.INTER_AREA)
    return time.perf_counter() - start


def pixel_features(images: np.ndarray) -> np.ndarray:
    small = [cv2.resize(i, (16, 16), interpolation=cv2.INTER_AREA) for i in images]
    return np.stack(small).reshape(len(images), -1).astype(np.float32) / 255


def accuracies(name: str, size: int, n_train: int, n_test: int) -> tuple[float, float]:
    """Test accuracy of nearest centroid and of softmax regression (numpy, full batch) on 16x16 pixels."""
    x, ytr, classes = embedded.generate(name, "train", n_train, size, workers=embedded.default_workers())
    xt, yte, _ = embedded.generate(name, "test", n_test, size, workers=embedded.default_workers())
    ftr, fte, ytr, yte, k = pixel_features(x), pixel_features(xt), np.array(ytr), np.array(yte), len(classes)
    centroids = np.stack([ftr[ytr == c].mean(0) for c in range(k)])
    nearest = float((((fte[:, None] - centroids[None]) ** 2).sum(-1).argmin(1) == yte).mean())
    mu, sd = ftr.mean(0), ftr.std(0) + 1e-6
    ftr, fte = (ftr - mu) / sd, (fte - mu) / sd
    w, b, onehot = np.zeros((ftr.shape[1], k)), np.zeros(k), np.eye(k)[ytr]
    for _ in range(300):
        z = ftr @ w + b
        p = np.exp(z - z.max(1, keepdims=True))
        g = (p / p.sum(1, keepdims=True) - onehot) / len(ftr)
        w -= 0.5 * (ftr.T @ g + 1e-3 * w)
        b -= 0.5 * g.sum(0)
    return nearest, float(((fte @ w + b).argmax(1) == yte).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=10000)
    parser.add_argument("--size", type=int, default=64)
    args = parser.parse_args()
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
               platform.processor())
    workers = embedded.default_workers()
    print(f"- machine: {os.cpu_count()} CPUs ({cpu}), {workers} usable, load average {os.getloadavg()[0]:.1f}, "
          f"date {time.strftime('%Y-%m-%d')}")
    print(f"- reference: 2000 INTER_AREA resizes 192->96 px take {reference_seconds():.3f} s")
    for name in embedded.EMBEDDED:
        start = time.perf_counter()
        embedded.generate(name, "train", args.count, args.size, workers=workers)
        seconds = time.perf_counter() - start
        print(f"- {name}: {args.count} images at {args.size} px with {workers} workers in {seconds:.1f} s "
              f"({args.count / seconds:.0f} images/s)")
    for name in embedded.EMBEDDED:
        chance = 1 / len(embedded.class_names(name))
        nearest, softmax = accuracies(name, args.size, 3200, 800)
        print(f"- {name} difficulty (3200 train / 800 test, 16x16 pixels): chance {chance:.3f}, "
              f"nearest centroid {nearest:.3f}, softmax regression {softmax:.3f}")


if __name__ == "__main__":
    main()
