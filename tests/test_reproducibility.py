"""Same seeds and code, same machine: a smoke net trained in two separate stores has identical weights and result.

Each training runs in its own process (its own hash seed, memory layout and store path), through the
pool that `replicate table3` uses; the second store gets a copy of the first one's embedded data (whose
generation is seeded per image, and which tests/test_embedded.py checks). The two stores' result.json files are
byte-identical: configurations record the store's path as $STORE, timings go to timing.json.
"""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

from convert import protoio

TRAIN_ONE = """
import sys
from replicate.config import get_scale
from replicate.executors import LocalExecutor
from replicate.experiment_data import data_for
from replicate.pipeline import collect
from replicate.store import Store

if __name__ == "__main__":
    store, scale = Store(sys.argv[1]), get_scale("smoke")
    data = {"rvl-cdip": data_for("rvl-cdip", scale, store, None, progress=False)}
    collect(store, scale, ["rvl-cdip"], data, "caffe", "cpu", LocalExecutor(1), progress=False, only={"rotation_20"})
"""


def train_in_new_store(tmp_path: Path, name: str) -> Path:
    script = tmp_path / "train_one.py"
    script.write_text(TRAIN_ONE)
    subprocess.run([sys.executable, str(script), str(tmp_path / name)], check=True, timeout=600,
                   env={**os.environ, "PYTHONHASHSEED": "random"})
    [job] = (tmp_path / name / "train-smoke-rvl-cdip").glob("rotation_20-*")
    return job


def weights(job: Path) -> list[np.ndarray]:
    return [protoio.blob_to_array(b) for layer in protoio.read_caffemodel(job / "net.caffemodel").layer
            for b in layer.blobs]


def test_two_smoke_trainings_of_one_net_in_separate_stores_are_identical(tmp_path):
    first = train_in_new_store(tmp_path, "a")
    shutil.copytree(tmp_path / "a" / "data", tmp_path / "b" / "data")   # the embedded data: 20 s saved
    second = train_in_new_store(tmp_path, "b")
    assert all(np.array_equal(x, y) for x, y in zip(weights(first), weights(second), strict=True))
    assert first.name == second.name   # the same key in both stores
    assert (first / "result.json").read_bytes() == (second / "result.json").read_bytes()
    assert "$STORE" in json.loads((first / "result.json").read_text())["config"]["data_dir"]
    assert (first / "timing.json").exists()
