"""Throughput of LMDBDataset + DataTransformer (images/s): raw grey/colour 256x256 and encoded PNG, crop 227.

Usage: .venv/bin/python benchmarks/bench_lmdb.py [--records 2000] [--batch 32]
Builds temporary LMDBs of synthetic images, then times (a) a plain LMDB read of every value (the
reference: the floor set by LMDB + memory copies), (b) reader + TRAIN transform (random crop 227,
mirror, mean_value, scale 1/255) in this process, and (c) the same through a DataLoader with 1 and 2
workers (fork; timed on the second epoch, after worker start-up). Prints a Markdown table.
"""
from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader

from convert import caffe_pb2 as pb
from lmdb_tools.datum import encoded_datum, image_to_datum
from lmdb_tools.db import open_readonly, open_writable
from lmdb_tools.reader import LMDBDataset
from lmdb_tools.transformer import DataTransformer


def build(path: Path, records: int, channels: int, encoded: bool) -> None:
    rng = np.random.default_rng(0)
    # Smooth-ish images so PNG sizes are realistic, not incompressible noise.
    base = cv2.resize(rng.integers(0, 256, (32, 32, channels), dtype=np.uint8), (256, 256))
    env = open_writable(path)
    with env.begin(write=True) as txn:
        for i in range(records):
            image = np.roll(base, i, axis=1).reshape(256, 256, channels)
            if channels == 1:
                image = image[:, :, 0]
            datum = (encoded_datum(cv2.imencode(".png", image)[1].tobytes(), image, i % 16) if encoded
                     else image_to_datum(image, i % 16))
            txn.put(f"{i:08d}".encode(), datum.SerializeToString())
    env.close()


def plain_read(path: Path) -> float:
    start = time.perf_counter()
    with open_readonly(path).begin() as txn:
        n = sum(1 for _ in txn.cursor())
    return n / (time.perf_counter() - start)


def transformer(channels: int) -> DataTransformer:
    param = pb.TransformationParameter(crop_size=227, mirror=True, scale=1 / 255, mean_value=[100] * channels)
    return DataTransformer(param, pb.TRAIN, rng=np.random.default_rng(0))


def in_process(path: Path, channels: int) -> float:
    ds = LMDBDataset(path, transformer(channels))
    start = time.perf_counter()
    for i in range(len(ds)):
        ds[i]
    return len(ds) / (time.perf_counter() - start)


def loader(path: Path, channels: int, workers: int, batch: int) -> float:
    ds = LMDBDataset(path, transformer(channels))
    dl = DataLoader(ds, batch_size=batch, num_workers=workers, shuffle=True,
                    multiprocessing_context="fork", persistent_workers=True)
    for _ in dl:   # warm-up epoch: worker start-up is not throughput
        pass
    start = time.perf_counter()
    n = sum(images.shape[0] for images, _ in dl)
    return n / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=2000)
    parser.add_argument("--batch", type=int, default=32)
    args = parser.parse_args()
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    print(f"nproc {os.cpu_count()}, CPU {cpu}, Python {platform.python_version()}, torch {torch.__version__}, "
          f"{args.records} records, batch {args.batch}\n")
    print("| data | plain LMDB read (reference) | reader+transform, in process | DataLoader 1 worker | DataLoader 2 workers |")
    print("|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for name, channels, encoded in [("raw grey 256x256", 1, False), ("raw colour 256x256", 3, False),
                                        ("encoded PNG grey 256x256", 1, True)]:
            path = Path(tmp) / name.replace(" ", "_")
            build(path, args.records, channels, encoded)
            rates = [plain_read(path), in_process(path, channels),
                     loader(path, channels, 1, args.batch), loader(path, channels, 2, args.batch)]
            print(f"| {name} -> crop 227 | " + " | ".join(f"{r:,.0f} img/s" for r in rates) + " |")


if __name__ == "__main__":
    main()
