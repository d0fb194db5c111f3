"""One place for the experiment's defaults (as pycls does): scales, data sizes, fingerprints.

A scale is a net prototxt and a solver prototxt in prototxt/ (data, visible and editable) plus the
few numbers below. Every number is commented with why it has its value.
"""
from __future__ import annotations

import ast
import hashlib
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from convert.errors import UserError
from lmdb_tools.layout import PAPER_SIZE

ROOT = Path(__file__).resolve().parent.parent
PROTOTXT = ROOT / "prototxt"


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
    # Default: 40 px CaffeNet-mini (16-48 channels), 3,600 iterations of 32 over 1,200 training images
    # (96 epochs); 1,600 test images make one image worth 0.06 accuracy points. Chosen by the regime
    # sweep of benchmarks/RESULTS.md ("Regime sweep"): iterations decide it (the widest augmented nets
    # gain with every iteration at every size swept), so mini takes the most iterations `make table3`'s
    # 20 minutes on 2 cores hold with a margin: 900 on the machine of the first sweeps, 1,800 on a 2-3x
    # faster one, 3,600 there once the solver ran in channels_last (16 minutes on a fresh clone). At
    # 3,600 the baseline over-fits (train accuracy far above validation) and every family's widest net
    # is within a few points of the baselines, mirror H/V on the documents the last to close; perspective
    # at Table 3's sigma still loses most (docs/protocol.md: the authors' code trained a tenth of it;
    # table3 --perspective-sigma code).
    "mini": Scale("mini", input_size=40, net="mini/caffenet_train_val.prototxt",
                  solver="mini/solver.prototxt",
                  split_sizes={"train": 1200, "val": 500, "test": 1600}, test_batch=200),
    # The paper: CaffeNet at 227 px on RVL-CDIP / ILSVRC from disk, the solver of docs/protocol.md.
    "paper": Scale("paper", input_size=227, net="caffenet_{dataset}_train_val.prototxt",
                   solver="caffenet_{dataset}_solver.prototxt", test_batch=100, proxy=False),
}

# ------------------------------------------------------------------ defaults of the experiment commands
# replicate/options.py declares every shared option once with these defaults; every output records the
# resolved values.
DEFAULT_SCALE = "mini"      # runs on the embedded datasets on a 2-core laptop CPU in minutes; "paper" needs data
DEFAULT_OUT = Path("runs")  # holds the results store (runs/store) and every table and figure
DEFAULT_EXECUTOR = "local"  # a pool of spawned processes on this machine; "ray" for a cluster (replicate/executors.py)
DEFAULT_DEVICE = "cpu"      # the CPU build of torch is what `make` installs; "cuda" for the paper scale
DEFAULT_DROPOUT = "caffe"   # Caffe's own TEST dropout (identity); "paper" halves activations (footnote 2)
DEFAULT_FITTER = "fast"     # ridge + SGD: held-out loss no worse than Section 5.2's SGD at ~1/1000 of the time
DEFAULT_L2 = "authors"      # L_L2 as the authors' code normalises it: what the published Fig. 10 plots
# --seeds N (table3): replica k of a net trains with seed net.seed + k * REPLICA_SEED_STRIDE. Replica 0 is the net
# itself (same store entry as a run without --seeds); zoo.csv's seeds are 1..72 apart, so 1000 keeps replicas
# of different nets from sharing a seed.
REPLICA_SEED_STRIDE = 1000
DEFAULT_SEEDS = 1           # replicas per net: one fits make table3's 20-minute budget; 3+ for error bars
# table3 --perspective-sigma: the Perspective nets' s_max as Table 3 labels it (paper) or as the authors' generator
# trained it (code, a tenth); where the two disagree the default follows the paper (docs/protocol.md).
DEFAULT_PERSPECTIVE_SIGMA = "paper"
FITTER_SEED = 0             # seeds the map fitters' sample orders and hold-outs (any fixed value would do)

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

    Only what the code does counts: Python files are hashed as their syntax tree without docstrings,
    prototxts without comments, so documentation edits keep every store key. Computed once per
    process: the code a process runs is the code it imported.
    """
    digest = hashlib.sha256()
    for entry in entries:
        path = ROOT / entry
        files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in (".py", ".prototxt")) \
            if path.is_dir() else [path]
        for f in files:
            if f.exists():
                digest.update(str(f.relative_to(ROOT)).encode())
                digest.update(_meaning(f).encode())
    return digest.hexdigest()[:12]


def _meaning(path: Path) -> str:
    """A file's content without what cannot change a number: docstrings (Python) and comments."""
    text = path.read_text(encoding="utf-8")
    if path.suffix != ".py":
        return "\n".join(line for line in (_uncommented(raw) for raw in text.splitlines()) if line)
    tree = ast.parse(text)
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr) \
                and isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str):
            node.body = body[1:] or [ast.Pass()]
    return ast.dump(tree)


def _uncommented(line: str) -> str:
    """A prototxt line without its # comment (a # inside a quoted string is kept)."""
    quoted = False
    for i, char in enumerate(line):
        if char == '"':
            quoted = not quoted
        elif char == "#" and not quoted:
            return line[:i].rstrip()
    return line.rstrip()


# ------------------------------------------------------------ equivariance finetuning (Eqs. 5-7, Tables 2, 4)
# replicate.finetune. `paper`: Section 5.4 (150,000 updates, batch 10 on RVL-CDIP / 100 on ILSVRC, lr 0.0005
# divided by 10 every 60,000, momentum 0.9, no weight decay). `mini` and `smoke` keep the policy, momentum,
# no decay and the rate cuts at 40% and 80% of the run. `mini`: 4,800 images (four epochs of the 1,200 embedded
# training images) at the paper's RVL-CDIP batch (10, for ILSVRC too: the run is compute-bound on a CPU);
# with the 64-px mini of before that was about 60 s per net on one core and a table (9 finetuned nets plus
# before/after measurements, 2 workers) about 6 minutes on a 2-core CPU, the 40-px net costs less; lr 0.001 is 1/10 of the mini training rate (the paper's finetuning rate is 1/6
# of its RVL-CDIP and 1/20 of its ILSVRC training rate). `smoke`: tests only.
# `snapshot`: iterations between resume points (a killed run continues from the newest).
@dataclass(frozen=True)
class FinetuneSchedule:
    """Solver numbers of one finetuning run (SGD, step policy)."""
    max_iter: int
    batch: int                 # images per branch per update (every branch reads the same records)
    base_lr: float
    stepsize: int
    snapshot: int
    gamma: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 0.0


FINETUNE_SCHEDULES = {
    ("paper", "rvl-cdip"): FinetuneSchedule(150_000, 10, 0.0005, 60_000, snapshot=10_000),
    ("paper", "ilsvrc"): FinetuneSchedule(150_000, 100, 0.0005, 60_000, snapshot=10_000),
    ("mini", "rvl-cdip"): FinetuneSchedule(480, 10, 0.001, 192, snapshot=120),
    ("mini", "ilsvrc"): FinetuneSchedule(480, 10, 0.001, 192, snapshot=120),
    ("smoke", "rvl-cdip"): FinetuneSchedule(100, 10, 0.001, 40, snapshot=10),
    ("smoke", "ilsvrc"): FinetuneSchedule(100, 10, 0.001, 40, snapshot=10),
}
# Eq. 6's lambda1 = 50/4096 and lambda2 = 25/4096 as numerators per fc7 dimension (4096 at `paper` scale), and
# lambda3 = 0.3 (Eq. 7); see replicate/finetune/net.py.
FINETUNE_LAMBDAS = {"equivariance": 50.0, "invariance": 25.0, "lambda3": 0.3}
FINETUNE_CODE = (*MEASURE_CODE, "replicate/finetune")   # what changes a finetuned net's numbers


def finetune_schedule(scale: str, dataset: str) -> FinetuneSchedule:
    """The finetuning schedule of a scale and dataset; UserError listing the known pairs otherwise."""
    if (scale, dataset) not in FINETUNE_SCHEDULES:
        raise UserError(f"no finetuning schedule for scale {scale!r}, dataset {dataset!r}; known: "
                        + ", ".join(f"{s}/{d}" for s, d in FINETUNE_SCHEDULES))
    return FINETUNE_SCHEDULES[(scale, dataset)]
