"""One place for the experiment's defaults (as pycls does): scales, data sizes, fingerprints.

A scale is a net prototxt and a solver prototxt in prototxt/ (data, visible and editable) plus the
few numbers below. Every number is commented with why it has its value.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from convert.errors import UserError

ROOT = Path(__file__).resolve().parent.parent
PROTOTXT = ROOT / "prototxt"
PAPER_SIZE = 227            # CaffeNet's input side; transform parameters are stated at this size


@dataclass(frozen=True)
class Scale:
    """How big an experiment is: the net, the solver, the input side and (embedded) data sizes."""
    name: str
    input_size: int                     # network input side in pixels
    net: str                            # train_val prototxt, relative to prototxt/ ({dataset}: e.g. rvl_cdip)
    solver: str                         # solver prototxt, relative to prototxt/ ({dataset}: e.g. rvl_cdip)
    split_sizes: dict = field(default_factory=dict)  # images per split of the embedded datasets
    test_batch: int = 100               # images per forward pass when evaluating
    proxy: bool = True                  # True: numbers stand in for the paper's, claims are checked instead

    def net_path(self, dataset: str) -> Path:
        return PROTOTXT / self.net.format(dataset=dataset.replace("-", "_"))

    def solver_path(self, dataset: str) -> Path:
        return PROTOTXT / self.solver.format(dataset=dataset.replace("-", "_"))

    def crop_resize(self, paper_side: int) -> int:
        """A Crop net's resize side at this scale: the paper's side scaled like every pixel length."""
        return round(paper_side * self.input_size / PAPER_SIZE)


SCALES = {
    # Tests: 32 px, a few channels, 60 iterations; the pipeline end to end in a couple of minutes.
    "smoke": Scale("smoke", input_size=32, net="smoke/caffenet_train_val.prototxt",
                   solver="smoke/solver.prototxt",
                   split_sizes={"train": 480, "val": 100, "test": 200}, test_batch=100),
    # Default: 64 px CaffeNet-mini, 400 iterations of 32 (about 2.7 epochs of 4,800 images), so the 72
    # networks of Table 3 train on a 2-core CPU in under 20 minutes; 1,600 test images make one
    # image worth 0.06 accuracy points.
    "mini": Scale("mini", input_size=64, net="mini/caffenet_train_val.prototxt",
                  solver="mini/solver.prototxt",
                  split_sizes={"train": 4800, "val": 500, "test": 1600}, test_batch=200),
    # The paper: CaffeNet at 227 px on RVL-CDIP / ILSVRC from disk, the solver of PROTOCOL.md.
    "paper": Scale("paper", input_size=227, net="caffenet_{dataset}_train_val.prototxt",
                   solver="caffenet_{dataset}_solver.prototxt", test_batch=100, proxy=False),
}

EMBEDDED_FOR = {"rvl-cdip": "mini-docs", "ilsvrc": "mini-objects",   # stand-ins when no data is on disk
                "andoc": "mini-docs-b"}
# Datasets only measured on (Fig. 10: RVL-CDIP nets on ANDOC), never trained on: no train split, no mean file
# (the measured net's own mean file applies), the splits a measurement fits and reports on.
MEASURE_ONLY_SPLITS = {"andoc": ("val", "test")}
DATA_SEED = 2017            # seeds the embedded datasets (the paper's year; any fixed value would do)

# Code whose edits change the numbers of a trained net or a measurement: its hash is part of every
# job's key, so results of older code are never mixed with new ones.
NUMERIC_CODE = ("convert/layers", "convert/net.py", "lmdb_tools", "replicate/solver.py", "replicate/lr_policy.py",
                "replicate/transforms", "replicate/datasets", "replicate/experiment_data.py", "replicate/training.py",
                "prototxt")
# Measurements (phi, maps, metrics) are keyed by the training code plus their own.
MEASURE_CODE = (*NUMERIC_CODE, "replicate/measure")
DATA_CODE = ("replicate/datasets", "replicate/experiment_data.py", "lmdb_tools")  # what makes the embedded data


def get_scale(name: str) -> Scale:
    """The named scale; UserError listing the valid ones otherwise."""
    if name not in SCALES:
        raise UserError(f"unknown scale {name!r}; expected one of {', '.join(SCALES)}")
    return SCALES[name]


@lru_cache(maxsize=None)
def code_fingerprint(entries: tuple[str, ...] = NUMERIC_CODE) -> str:
    """A hash of the code that changes numbers (files under `entries`, in a stable order).

    Computed once per process: the code a process runs is the code it imported.
    """
    digest = hashlib.sha256()
    for entry in entries:
        path = ROOT / entry
        files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in (".py", ".prototxt")) \
            if path.is_dir() else [path]
        for f in files:
            if f.exists():
                digest.update(str(f.relative_to(ROOT)).encode())
                digest.update(f.read_bytes())
    return digest.hexdigest()[:12]
