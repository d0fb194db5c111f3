"""mini-objects learnability: zoo nets trained at `mini` scale with Caffe's solver, test accuracy and time,
plus the accuracy on a test set drawn without the class hue prior (how much the nets use the shapes).

Run: .venv/bin/python benchmarks/bench_objects_learnability.py --store /tmp/store_objects [baseline_1 baseline_2 rotation_20]
Prints Markdown lines for the `## mini-objects learnability` section of benchmarks/RESULTS.md.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

import torch

from replicate import zoo
from replicate.config import DATA_SEED, get_scale
from replicate.datasets import embedded, objects
from replicate.experiment_data import ExperimentData, data_for, write_lmdb
from replicate.store import Store
from replicate.training import TIMING, evaluate, job_for, resolved_net, train

DATASET = "ilsvrc"   # mini-objects stands in for it


def hue_free_data(data: ExperimentData, side: int, count: int) -> ExperimentData:
    """The test split redrawn with HUE_PRIOR 0 (in this process: spawned workers would reset the knob)."""
    objects.HUE_PRIOR, saved = 0.0, objects.HUE_PRIOR
    try:
        images, labels, _ = embedded.generate("mini-objects", "test", count, max(side, 90), DATA_SEED, workers=1)
    finally:
        objects.HUE_PRIOR = saved
    root = Path(tempfile.mkdtemp(prefix="hue_free_"))
    write_lmdb(root / f"test_{side}_lmdb", images, labels, side, "mini-objects/test")
    shutil.copy(data.mean_file(side), root / f"train_{side}_mean.binaryproto")
    (root / f"train_{side}_lmdb").symlink_to(data.lmdb("train", side))
    return ExperimentData(root, data.classes, data.channels, "test", "embedded:mini-objects, HUE_PRIOR 0")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", required=True)
    parser.add_argument("nets", nargs="*", default=["baseline_1", "baseline_2", "rotation_20"])
    args = parser.parse_args()
    torch.set_num_threads(1)
    scale = get_scale("mini")
    print(f"- machine: {os.cpu_count()} CPUs ({platform.processor() or platform.machine()}), "
          f"load average {os.getloadavg()[0]:.1f}, date {time.strftime('%Y-%m-%d')}")
    started = time.time()
    data = data_for(DATASET, scale, Store(args.store), None, progress=False)
    print(f"- data: {data.root} ({time.time() - started:.0f} s, cached after the first run)")
    hue_free = hue_free_data(data, scale.input_size, scale.split_sizes["test"])
    for net_id in args.nets:
        net = zoo.get(net_id, DATASET)
        job = job_for(Store(args.store), scale, DATASET, data, net, "caffe")
        result = job.result() if job.done else train(job, scale, DATASET, data, net)
        shapes = evaluate(resolved_net(scale, DATASET, hue_free, net, "test"), job.dir / result["weights"], job.dir)
        seconds = json.loads((job.dir / TIMING).read_text())["train_seconds"]
        print(f"- {net.name} (seed {net.seed}): test accuracy {result['accuracy']:.1f}%, "
              f"without hue prior {100 * shapes:.1f}%, training {seconds:.0f} s")
    shutil.rmtree(hue_free.root)


if __name__ == "__main__":
    main()
