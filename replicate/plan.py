"""`replicate plan`: what each experiment costs at a scale, counted before anything runs.

The work is counted from the definitions the experiments run (the zoo, the scale's solver and net
prototxts, the measurement grids, the finetuning schedules and tables, the distance pairs), so it cannot
drift from them. Each piece of work is a store job of its own, keyed like the store keys it:
    train      one net trained: images through forward+backward, plus its tests while training and
               its evaluation (forward)
    finetune   one net finetuned with Eq. 7: every branch's images through forward+backward
    phi        one view of one net on one split: images through the net to fc7 (forward)
    map        one affine map (Eq. 2 per measured setting, Eq. 3 per ordered pair of nets) fitted on
               `samples` phi vectors of `dim` dimensions
An experiment's row counts everything it needs; the total counts a job shared by several experiments
once (the second experiment reads it from the store).

Hours come from a calibration (`calibrate`, `replicate plan --calibrate`) measured on this machine's
device with the scale's real net, solver and Data layer reading a synthetic LMDB of the right side and
channels: training and forward images per second, and the fast fitter's seconds at two sample counts
for dim min(D, 1024), extrapolated as a (D/d)^3 + b N (D/d)^2 (an eigendecomposition and the Gram/SGD
passes). Distance maps of one source net share one Gram matrix when fitted together, so their hours
are an upper bound. Worker hours are one worker's (one CPU thread, as the executors run a job, or one
GPU); wall hours divide them by the workers (the jobs are independent; on a CPU, at most its cores).
"""
from __future__ import annotations

import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from convert import caffe_pb2 as pb
from convert.protoio import read_net, read_solver
from lmdb_tools.layout import lmdb_path, mean_path
from lmdb_tools.mean import write_mean
from replicate import paper, zoo
from replicate.config import MEASURE_ONLY_SPLITS, Scale, finetune_schedule
from replicate.experiment_data import ExperimentData, crop_side, write_lmdb
from replicate.experiments.invariance import CROSS_DOMAIN, SPECS, requests
from replicate.finetune import nets_of
from replicate.finetune.views import family_rows, row_view
from replicate.measure import study
from replicate.measure.phi import View, views

# Images per split at paper scale (Section 5.1; ILSVRC 2012's exact train count). ANDOC's are not
# published: with --data-root its LMDBs are counted, else RVL-CDIP's val/test sizes stand in (said so).
PAPER_SPLITS = {"rvl-cdip": {"train": 320_000, "val": 40_000, "test": 40_000},
                "ilsvrc": {"train": 1_281_167, "val": 50_000}}
ANDOC_STAND_IN = "rvl-cdip"
DISTANCE = ("fig3", "fig11", "fig12")     # one distance matrix per dataset serves the three figures
CALIBRATION_DIM = 1024                    # map calibration width (a 4096-d map takes minutes on a CPU)
CALIBRATION_SAMPLES = (2, 4)              # ... at these multiples of its width (two points for a + b N)


@dataclass
class Cost:
    """The work of one store job (or a sum of them)."""
    iterations: int = 0        # solver iterations (training and finetuning)
    train_images: int = 0      # through forward + backward
    forward_images: int = 0    # through the net to fc7 / fc8
    maps: int = 0
    map_work: dict = field(default_factory=dict)   # (samples, dim) -> maps of that size
    nets: int = 0              # nets trained
    finetuned: int = 0         # nets finetuned (Eq. 7)

    def add(self, other: "Cost") -> None:
        self.iterations += other.iterations
        self.train_images += other.train_images
        self.forward_images += other.forward_images
        self.maps += other.maps
        self.nets += other.nets
        self.finetuned += other.finetuned
        for size, count in other.map_work.items():
            self.map_work[size] = self.map_work.get(size, 0) + count


@dataclass
class Counter:
    """Jobs by key for one experiment; `sizes` gives images per split of each dataset."""
    scale: Scale
    sizes: dict[str, dict[str, int]]
    jobs: dict = field(default_factory=dict)

    def eval_split(self, dataset: str) -> str:
        return "test" if "test" in self.sizes[dataset] else "val"

    def train(self, dataset: str, net: zoo.Net) -> None:
        solver = read_solver(self.scale.solver_path(dataset))
        batch = train_batch(self.scale, dataset) * max(1, solver.iter_size)
        tests = solver.max_iter // solver.test_interval if solver.test_interval else 0
        tests += 1 if solver.test_initialization and solver.test_interval else 0
        test_images = tests * sum(solver.test_iter) * self.scale.test_batch
        self.jobs[("train", dataset, net.id)] = Cost(solver.max_iter, solver.max_iter * batch, test_images
                                                     + self.sizes[dataset][self.eval_split(dataset)], nets=1)

    def phi(self, dataset: str, net: zoo.Net, weights: str, measured_on: str, view: View) -> tuple[int, int]:
        """The fit and report phi of a view; returns (fit samples, dim)."""
        fit_split, limit, report_split = study.splits_for(self.eval_split(measured_on))
        fit = min(limit or self.sizes[measured_on][fit_split], self.sizes[measured_on][fit_split])
        base = (dataset, net.id, weights, measured_on, repr(asdict(view)))
        self.jobs[("phi", *base, fit_split)] = Cost(forward_images=fit)
        self.jobs[("phi", *base, report_split)] = Cost(forward_images=self.sizes[measured_on][report_split])
        return fit, fc7_width(self.scale, dataset)

    def map(self, key: tuple, samples: int, dim: int) -> None:
        self.jobs[("map", *key)] = Cost(maps=1, map_work={(samples, dim): 1})

    def setting(self, dataset: str, net: zoo.Net, weights: str, measured_on: str, ref: View, view: View) -> None:
        """One measured setting: the reference and the view's phi, and their map."""
        self.phi(dataset, net, weights, measured_on, ref)
        samples, dim = self.phi(dataset, net, weights, measured_on, view)
        self.map((dataset, net.id, weights, measured_on, repr(asdict(ref)), repr(asdict(view))), samples, dim)


def train_batch(scale: Scale, dataset: str) -> int:
    """The TRAIN Data layer's batch size of the scale's net."""
    for layer in read_net(scale.net_path(dataset)).layer:
        if layer.type == "Data" and any(r.phase == pb.TRAIN for r in layer.include):
            return layer.data_param.batch_size
    raise ValueError(f"{scale.net_path(dataset)}: no TRAIN Data layer")


def fc7_width(scale: Scale, dataset: str) -> int:
    """phi's dimension: fc7's num_output in the scale's net."""
    return next(l.inner_product_param.num_output for l in read_net(scale.net_path(dataset)).layer if l.name == "fc7")


def split_sizes(scale: Scale, datasets: set[str], data_root: Path | None) -> tuple[dict, list[str]]:
    """Images per split of each dataset at this scale, and the assumptions made."""
    if scale.proxy:
        keep = {d: MEASURE_ONLY_SPLITS.get(d, tuple(scale.split_sizes)) for d in datasets}
        return {d: {s: n for s, n in scale.split_sizes.items() if s in keep[d]} for d in datasets}, []
    sizes, notes = {}, []
    for dataset in datasets:
        counted = _counted(dataset, scale, data_root) if data_root else None
        if counted:
            sizes[dataset] = counted
        elif dataset in PAPER_SPLITS:
            sizes[dataset] = dict(PAPER_SPLITS[dataset])
        else:
            sizes[dataset] = {s: PAPER_SPLITS[ANDOC_STAND_IN][s] for s in MEASURE_ONLY_SPLITS[dataset]}
            notes.append(f"{dataset}: split sizes unknown without --data-root; {ANDOC_STAND_IN}'s "
                         f"{'/'.join(sizes[dataset])} sizes assumed")
    return sizes, notes


def _counted(dataset: str, scale: Scale, data_root: Path) -> dict[str, int] | None:
    """Records per split in a prepared data directory (None when it does not hold the dataset)."""
    import lmdb
    root = data_root / dataset if (data_root / dataset / "prepare.json").exists() else data_root
    counts = {}
    for split in ("train", "val", "test"):
        path = lmdb_path(root, split, scale.input_size)
        if (path / "data.mdb").exists():
            with lmdb.open(str(path), readonly=True, lock=False) as env:
                counts[split] = env.stat()["entries"]
    return counts or None


# ----------------------------------------------------------------------------- the experiments' work
def table3(c: Counter, datasets: list[str]) -> None:
    for dataset in datasets:
        for net in zoo.nets(dataset):
            c.train(dataset, net)


def figure(name: str):
    """The counter of one invariance figure (its requests, as the figure runs them)."""
    spec = SPECS[name]

    def count(c: Counter, datasets: list[str]) -> None:
        for r in requests(spec, tuple(d for d in datasets if d in spec.datasets), spec.families):
            c.train(r.dataset, r.net)
            ref, settings = views(r.family, r.net, c.scale, r.measured_resize)
            for _, view in settings:
                c.setting(r.dataset, r.net, "original", r.measured_on, ref, view)
    return count


def distance(c: Counter, datasets: list[str]) -> None:
    for dataset in datasets:
        nets = zoo.nets(dataset)
        for net in nets:
            c.train(dataset, net)
            samples, dim = c.phi(dataset, net, "original", dataset, View(crop_side(net, c.scale)))
        for source in nets:
            for target in nets:
                if source is not target:
                    c.map(("pair", dataset, source.id, target.id), samples, dim)


def finetune_table(table: str):
    """The counter of Table 2 or 4: train, finetune with J branches, measure before and after."""
    def count(c: Counter, datasets: list[str]) -> None:
        dataset = paper.FINETUNE_TABLES[table]
        if dataset not in datasets:
            return
        rows, schedule = paper.finetune_table(table), finetune_schedule(c.scale.name, dataset)
        for family, net in nets_of(table).items():
            c.train(dataset, net)
            chosen = family_rows(rows, family)
            ref, branches = row_view(chosen[0], net, c.scale), [row_view(r, net, c.scale) for r in chosen[1:]]
            c.jobs[("finetune", table, family)] = Cost(schedule.max_iter, schedule.max_iter * schedule.batch * (len(branches) + 1),
                                                        finetuned=1)
            for weights in ("original", f"finetuned-{table}"):
                for view in branches:
                    c.setting(dataset, net, weights, dataset, ref, view)
    return count


EXPERIMENTS = {"table3": table3, **{name: figure(name) for name in SPECS}, "+".join(DISTANCE): distance,
               "table2": finetune_table("table2"), "table4": finetune_table("table4")}


def datasets_of(chosen: list[str]) -> set[str]:
    """The datasets the chosen training datasets are measured on too (Fig. 10: ANDOC)."""
    return {*chosen, *(CROSS_DOMAIN[d] for d in chosen if d in CROSS_DOMAIN)}


def count(scale: Scale, datasets: list[str], data_root: Path | None = None
          ) -> tuple[dict[tuple[str, str], Cost], dict[str, Cost], list[str]]:
    """Each (experiment, training dataset)'s cost, each dataset's total with shared jobs counted once, assumptions."""
    sizes, notes = split_sizes(scale, datasets_of(datasets), data_root)
    rows, totals = {}, {}
    for dataset in datasets:
        everything = {}
        for name, counter in EXPERIMENTS.items():
            c = Counter(scale, sizes)
            counter(c, [dataset])
            if c.jobs:
                rows[(name, dataset)] = _sum(c.jobs.values())
                everything.update(c.jobs)
        totals[dataset] = _sum(everything.values())
    return rows, totals, notes


def _sum(costs) -> Cost:
    total = Cost()
    for cost in costs:
        total.add(cost)
    return total


# -------------------------------------------------------------------------------------------- hours
def hours(cost: Cost, calibration: dict) -> dict[str, float]:
    """Worker hours of a cost from a calibration (calibrate()): training, forward passes, map fits, all."""
    train = cost.train_images / calibration["train_images_per_second"]
    forward = cost.forward_images / calibration["forward_images_per_second"]
    maps = sum(count * map_seconds(samples, dim, calibration["map"]) for (samples, dim), count in cost.map_work.items())
    return {k: v / 3600 for k, v in {"train": train, "forward": forward, "maps": maps,
                                     "total": train + forward + maps}.items()}


def map_seconds(samples: int, dim: int, measured: dict) -> float:
    """One fast-fitter map of `samples` x `dim`, from the two calibrated fits (a + b N, scaled by dim)."""
    (n1, n2), (t1, t2), d = measured["samples"], measured["seconds"], measured["dim"]
    per_sample = max(0.0, (t2 - t1) / (n2 - n1))
    fixed = max(0.0, t1 - per_sample * n1)
    return fixed * (dim / d) ** 3 + per_sample * samples * (dim / d) ** 2


# ---------------------------------------------------------------------------------------- calibration
def calibrate(scale: Scale, dataset: str, device: str = "cpu", iterations: int = 3) -> dict:
    """Measured rates of one worker on this machine's device for a scale and dataset (module docstring).

    A worker is what an executor runs a job in: one thread on a CPU (as replicate.pipeline.worker_init
    sets it; workers run side by side on the cores), or one GPU.
    """
    threads = torch.get_num_threads()
    if device == "cpu":
        torch.set_num_threads(1)
    try:
        with tempfile.TemporaryDirectory(prefix="replicate-plan-") as tmp:
            data = synthetic_data(Path(tmp), scale, dataset)
            train_ips, batch = train_rate(Path(tmp), scale, dataset, data, device, iterations)
            forward_ips = forward_rate(Path(tmp), scale, dataset, data, device, iterations)
        dim = min(fc7_width(scale, dataset), CALIBRATION_DIM)
        samples = [k * dim for k in CALIBRATION_SAMPLES]
        seconds = [_fit_seconds(n, dim, device) for n in samples]
        worker_threads = torch.get_num_threads()
    finally:
        torch.set_num_threads(threads)
    return {"scale": scale.name, "dataset": dataset, "device": device, "iterations": iterations, "batch": batch,
            "train_images_per_second": train_ips, "forward_images_per_second": forward_ips,
            "map": {"dim": dim, "samples": samples, "seconds": seconds},
            "torch": torch.__version__, "threads": worker_threads}


def synthetic_data(root: Path, scale: Scale, dataset: str) -> ExperimentData:
    """Random images in the dataset's channels at the scale's input side: a train and a test LMDB, a mean file."""
    channels, classes = (1, 16) if dataset == "rvl-cdip" else (3, 1000)
    side, rng = scale.input_size, np.random.default_rng(0)
    count = max(train_batch(scale, dataset), scale.test_batch)
    shape = (side, side) if channels == 1 else (side, side, 3)
    images = [rng.integers(0, 256, shape, dtype=np.uint8) for _ in range(count)]
    labels = [int(i % classes) for i in range(count)]
    for split in ("train", "test"):
        write_lmdb(lmdb_path(root, split, side), images, labels, side, f"calibration/{split}")
    write_mean(lmdb_path(root, "train", side), mean_path(root, "train", side), progress=False)
    return ExperimentData(root, classes, channels, "test", "synthetic")


def train_rate(root: Path, scale: Scale, dataset: str, data: ExperimentData, device: str,
                iterations: int) -> tuple[float, int]:
    """(training images/s of the scale's baseline net through our Solver and Data layer on `data`, images per iteration)."""
    from replicate.solver import Solver
    from replicate.training import resolved_net, resolved_solver
    net = zoo.get("baseline_1", dataset)
    solver_param = resolved_solver(scale, dataset, net, root)
    solver_param.test_initialization, solver_param.test_interval = False, 10 ** 9   # training only
    solver_param.display = 0
    solver = Solver(solver_param, root=root, net_param=resolved_net(scale, dataset, data, net, "test"),
                    seed=net.seed, device=device, progress=False)
    solver.step(1)   # warm-up: allocations, first reads
    started = time.perf_counter()
    solver.step(iterations)
    return round(iterations * solver.images_per_iter / (time.perf_counter() - started), 2), solver.images_per_iter


def forward_rate(root: Path, scale: Scale, dataset: str, data: ExperimentData, device: str, iterations: int) -> float:
    """Forward images/s (TEST phase, to fc7) of the scale's baseline net on `data`."""
    from convert.net import Net
    from replicate.training import CHANNELS_LAST, resolved_net
    net = Net(resolved_net(scale, dataset, data, zoo.get("baseline_1", dataset), "test"), pb.TEST, root=root,
              channels_last=CHANNELS_LAST).to(device)   # the layout the measurements run in
    with torch.no_grad():
        net(outputs=["fc7"])
        started = time.perf_counter()
        for _ in range(iterations):
            net(outputs=["fc7"])
    return round(iterations * scale.test_batch / (time.perf_counter() - started), 2)


def _fit_seconds(samples: int, dim: int, device: str) -> float:
    from replicate.measure.fitters import fit_fast
    generator = torch.Generator().manual_seed(0)
    x = torch.relu(torch.randn(samples, dim, generator=generator)).to(device)
    y = torch.relu(x + 0.1 * torch.randn(samples, dim, generator=generator).to(device))
    started = time.perf_counter()
    fit_fast(x, y)
    if device == "cuda":
        torch.cuda.synchronize()
    return round(time.perf_counter() - started, 3)


def as_json(cost: Cost) -> dict:
    """A cost as JSON (map sizes as 'SAMPLESxDIM' keys)."""
    return {**{k: v for k, v in asdict(cost).items() if k != "map_work"},
            "map_work": {f"{n}x{d}": count for (n, d), count in sorted(cost.map_work.items())}}
