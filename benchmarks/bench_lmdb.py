"""Throughput of the LMDB reader + DataTransformer (images/s): raw grey/colour 256x256 and encoded PNG, crop 227.

Usage: .venv/bin/python benchmarks/bench_lmdb.py [--records 2000] [--batch 32]
Builds temporary LMDBs of synthetic images, then times (a) a plain LMDB read of every value (the
reference: the floor set by LMDB + memory copies), (b) LMDBBatches + TRAIN transform (random crop 227,
mirror, mean_value, scale 1/255) in this process, (c) LMDBBatches through DataLoader(batch_size=None)
with 1 and 2 fork workers (uint8 crops handed over as numpy arrays, mean and scale in the main
process: `finish`, as `LMDBBatches.loader` does) and (d) the per-record LMDBDataset through a collating DataLoader, the old
path, for comparison. DataLoader runs are timed on the second epoch (persistent workers, after
start-up). Each cell is wall-clock img/s / img per CPU-second, where CPU time is this process's plus
its worker processes' (utime+stime from /proc), so the second number is the rate per core whatever
else the machine runs. Prints a Markdown table and the CPU split between workers and main process.
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
from lmdb_tools.reader import LMDBBatches, LMDBDataset, as_is
from lmdb_tools.transformer import DataTransformer

TICK = os.sysconf("SC_CLK_TCK")


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


def children_cpu() -> float:
    """CPU seconds (user + system) used so far by this process's live child processes."""
    total = 0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            fields = Path(entry.path, "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == os.getpid():   # fields after "(comm)": state, ppid, ..., utime (12), stime (13)
            total += int(fields[11]) + int(fields[12])
    return total / TICK


def timed(images_of) -> tuple[float, float, float]:
    """(wall img/s, img per CPU-second, share of the CPU spent in the main process) of images_of()."""
    wall, cpu, kids = time.perf_counter(), time.process_time(), children_cpu()
    n = images_of()
    main_cpu = time.process_time() - cpu
    total_cpu = main_cpu + children_cpu() - kids
    return n / (time.perf_counter() - wall), n / total_cpu, main_cpu / total_cpu


def plain_read(path: Path) -> int:
    with open_readonly(path).begin() as txn:
        return sum(1 for _ in txn.cursor())


def transformer(channels: int) -> DataTransformer:
    param = pb.TransformationParameter(crop_size=227, mirror=True, scale=1 / 255, mean_value=[100] * channels)
    return DataTransformer(param, pb.TRAIN)


def in_process(path: Path, channels: int, batch: int) -> int:
    batches = LMDBBatches(path, batch, transformer(channels), shuffle=True)
    return sum(images.shape[0] for images, _ in batches.loader())


def loader(dataset, workers: int, finish=lambda item: item, **kwargs):
    """A function running one epoch of dataset through a DataLoader (after a warm-up epoch)."""
    dl = DataLoader(dataset, num_workers=workers, multiprocessing_context="fork", persistent_workers=True, **kwargs)
    for _ in dl:   # warm-up epoch: worker start-up is not throughput
        pass
    return lambda: sum(finish(item)[0].shape[0] for item in dl)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=2000)
    parser.add_argument("--batch", type=int, default=32)
    args = parser.parse_args()
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    print(f"nproc {os.cpu_count()}, CPU {cpu}, Python {platform.python_version()}, torch {torch.__version__}, "
          f"{args.records} records, batch {args.batch}, load average {os.getloadavg()[0]:.1f} at start\n")
    print("wall img/s / img per CPU-second (main + workers)\n")
    print("| data | plain LMDB read (reference) | batched, in process | batched, 1 worker | batched, 2 workers "
          "| per-record, 1 worker | per-record, 2 workers |")
    print("|---|---|---|---|---|---|---|")
    splits = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, channels, encoded in [("raw grey 256x256", 1, False), ("raw colour 256x256", 3, False),
                                        ("encoded PNG grey 256x256", 1, True)]:
            path = Path(tmp) / name.replace(" ", "_")
            build(path, args.records, channels, encoded)
            runs = [lambda: plain_read(path), lambda: in_process(path, channels, args.batch)]
            for workers in (1, 2):
                batches = LMDBBatches(path, args.batch, transformer(channels), shuffle=True)
                runs.append(loader(batches, workers, batches.finish, batch_size=None, collate_fn=as_is))
            for workers in (1, 2):
                runs.append(loader(LMDBDataset(path, transformer(channels)), workers, batch_size=args.batch,
                                   shuffle=True))
            results = [timed(run) for run in runs]
            print(f"| {name} -> crop 227 | " + " | ".join(f"{w:,.0f} / {c:,.0f}" for w, c, _ in results) + " |")
            splits.append(f"{name}: main process {results[2][2]:.0%} (1 worker), {results[3][2]:.0%} (2 workers)")
    print(f"\nload average {os.getloadavg()[0]:.1f} at end. CPU share of the main process, batched DataLoader runs: "
          + "; ".join(splits))


if __name__ == "__main__":
    main()
