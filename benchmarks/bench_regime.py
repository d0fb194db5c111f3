"""Issue 16: the mini proxy's training regime (sweep) and transform strength at 40 / 64 px vs 227 px (strength).

Run: .venv/bin/python benchmarks/bench_regime.py sweep [--train 2400 1200] [--nets ...] [--iters 1200]
         [--width 0.5] [--side 48] [--batch 32] [--lr 0.01]
     .venv/bin/python benchmarks/bench_regime.py strength [--draws 200]
sweep: trains a handful of zoo nets at a variant of mini (training-set size, iterations, width times
mini's prototxt, input side, batch, base lr) and records, every --every iterations, top-1 accuracy on the
un-augmented training images and on the validation split: benchmarks/regime/sweep.csv and sweep.png
(over-fitting shows as train accuracy well above validation). The solver is mini's except those numbers
and the step (kept at 2/3 of max_iter). One torch thread, as each `make table3` worker. Rerun rows
append; the CSV records the commit of each row and conv1's channels (width is relative to mini's
prototxt of that commit: 32 conv1 channels before issue 16's choice, 16 after).
strength: prints a Markdown table for benchmarks/RESULTS.md. Geometric families: the mean displacement of a pixel's
source coordinate as a fraction of the side, and the fraction of output pixels filled with 0 (from
outside the image), over `--draws` training draws of the family's sampler at each side. Displacement
is measured by warping coordinate ramps (uint8, exact at both sides since 227 < 256), so it carries a
rounding error of about 0.25 px per axis (0.6% of a 40-px side, 0.1% of 227). Elastic displacements are
sub-pixel at 40-64 px, below that resolution, so they are read from the drawn field itself (exact).
Photometric families (blur, noise, colour jitter): the RMS intensity change / 255 on mini-docs images at
each side, and again after area-resizing both images to 40 px (the change at the scale of the content).
"""
from __future__ import annotations

import argparse
import csv
import dataclasses
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

from replicate import zoo
from replicate.transforms import FAMILIES

SIDES = (40, 64, 227)        # the mini input side, the mini side before issue 16, the paper's
GEOMETRIC = ("perspective", "shear", "rotation")
PHOTOMETRIC = ("blur", "noise", "color_jitter")


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


OUT = Path(__file__).parent / "regime"
SWEEP_NETS = ("baseline", "perspective", "crop", "mirror", "shear")   # baseline + widest of 4 families
FIELDS = ("commit", "dataset", "train_images", "iters", "width", "conv1", "side", "batch", "lr", "net", "iteration",
          "epochs", "train_acc", "val_acc", "seconds")   # width: x mini's prototxt then; conv1: its channels


@dataclasses.dataclass(frozen=True)
class Variant:
    """What the sweep changes about mini: training images, channel width, input side, batch, base lr."""
    train_images: int
    iters: int = 1200      # mini's max_iter
    width: float = 1.0     # every conv / fc layer's num_output times this (fc8 keeps the class count)
    side: int = 40         # mini's input side (the transforms' size rules and Crop's resize sides follow it)
    batch: int = 32        # training batch
    lr: float = 0.01       # base_lr; the step stays at 2/3 of the run

    def fields(self) -> dict:
        return {"train_images": self.train_images, "iters": self.iters, "width": self.width, "side": self.side, "batch": self.batch,
                "lr": self.lr}

    def label(self) -> str:
        return f"{self.train_images} img x {self.iters} it, width {self.width:g}, {self.side} px, batch {self.batch}, lr {self.lr:g}"


def narrowed(param, width: float):
    """The net with every conv / fc layer but fc8 `width` times as wide (even, so groups of 2 still divide)."""
    for layer in param.layer:
        if layer.name == "fc8":
            continue
        for field in (layer.convolution_param, layer.inner_product_param):
            if layer.type in ("Convolution", "InnerProduct") and field.num_output:
                field.num_output = max(2, 2 * round(field.num_output * width / 2))
    return param


def sweep_net(name: str, dataset: str):
    """The widest net of a family (Baseline 1 for baseline), or a zoo net by id or name."""
    return zoo.widest(dataset, name) if name in FAMILIES else zoo.get(name, dataset)


def net_label(net) -> str:
    """The net's Table 3 name; a perspective net under the code's convention says so (same name, a tenth of s_max)."""
    return net.name + (f" (code: s_max {net.params['s_max']:g})" if net.id.endswith(zoo.CODE_SUFFIX) else "")


def train_curve(dataset: str, variant: Variant, net, every: int, store_root: Path) -> list[dict]:
    """One net trained at a mini variant: accuracy rows on train and val every `every` iterations."""
    from convert import caffe_pb2 as pb
    from convert.protoio import write_text_proto
    from replicate import config, experiment_data, training
    from replicate.solver import Solver
    from replicate.store import Store
    mini = config.get_scale("mini")
    scale = dataclasses.replace(mini, name=f"mini-train{variant.train_images}-side{variant.side}",
                                input_size=variant.side,
                                split_sizes={**mini.split_sizes, "train": variant.train_images})
    data = experiment_data.data_for(dataset, scale, Store(store_root), None, progress=False)
    job_dir = Path(tempfile.mkdtemp(dir=store_root))
    resolved = lambda split: narrowed(training.resolved_net(scale, dataset, data, net, split), variant.width)
    train_val = resolved("val")
    for layer in train_val.layer:
        if layer.type == "Data" and any(rule.phase == pb.TRAIN for rule in layer.include):
            layer.data_param.batch_size = variant.batch
    write_text_proto(job_dir / "train_val.prototxt", train_val)
    conv1 = next(layer.convolution_param.num_output for layer in train_val.layer if layer.name == "conv1")
    solver_param = training.resolved_solver(scale, dataset, net, job_dir)
    solver_param.max_iter, solver_param.stepsize, solver_param.test_interval = (
        variant.iters, round(variant.iters * 2 / 3), 0)
    solver_param.base_lr = variant.lr
    solver = Solver(solver_param, root=job_dir, seed=net.seed, device="cpu", progress=False)
    training.attach_augmentation(solver, net, scale)
    rows, seconds, weights = [], 0.0, job_dir / "w.caffemodel"
    for _ in range(variant.iters // every):
        started = time.time()
        solver.step(every)
        seconds += time.time() - started   # training time only: the evaluations below are not counted
        solver.net.save_caffemodel(weights)
        acc = {split: 100 * training.evaluate(resolved(split), weights, job_dir) for split in ("train", "val")}
        rows.append({"dataset": dataset, **variant.fields(), "conv1": conv1, "net": net_label(net),
                     "iteration": solver.iter,
                     "epochs": round(solver.iter * solver.images_per_iter / variant.train_images, 2),
                     "train_acc": round(acc["train"], 2), "val_acc": round(acc["val"], 2),
                     "seconds": round(seconds, 1)})
    return rows


def sweep(args: argparse.Namespace) -> None:
    """Train every (train size, net), append the rows to sweep.csv, redraw sweep.png."""
    from tqdm import tqdm
    OUT.mkdir(exist_ok=True)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    path = OUT / "sweep.csv"
    new = not path.exists()
    store_root = Path(args.store).resolve()   # the solver resolves the net file against the job dir
    store_root.mkdir(parents=True, exist_ok=True)
    runs = [(d, Variant(n, args.iters, args.width, args.side, args.batch, args.lr), name)
            for d in args.dataset for n in args.train for name in args.nets]
    with open(path, "a", newline="") as f:
        writer = csv.DictWriter(f, FIELDS)
        if new:
            writer.writeheader()
        for dataset, variant, name in tqdm(runs, desc="regime sweep", unit="net"):
            for row in train_curve(dataset, variant, sweep_net(name, dataset), args.every, store_root):
                writer.writerow({"commit": commit, **row})
                f.flush()
    plot_sweep(path, OUT / "sweep.png")


def plot_sweep(csv_path: Path, png: Path) -> None:
    """Train (dashed) and validation (solid) accuracy against epochs: one panel per dataset and variant."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    with open(csv_path) as f:
        rows = list(csv.DictReader(f))
    key = lambda r: (r["dataset"], Variant(int(r["train_images"]), int(r["iters"]), float(r["width"]),
                                           int(r["side"]), int(r["batch"]), float(r["lr"])), r["conv1"])
    panels = list(dict.fromkeys(key(r) for r in rows))
    colours = {net: f"C{i}" for i, net in enumerate(dict.fromkeys(r["net"] for r in rows))}   # one per net
    columns = min(4, len(panels))
    grid = (len(panels) + columns - 1) // columns
    fig, axes = plt.subplots(grid, columns, figsize=(4.2 * columns, 3.4 * grid), squeeze=False, sharey=True)
    for ax, panel in zip(axes.flat, panels):
        mine = [r for r in rows if key(r) == panel]
        for net in dict.fromkeys(r["net"] for r in mine):
            curve = [r for r in mine if r["net"] == net]
            x = [float(r["epochs"]) for r in curve]
            ax.plot(x, [float(r["val_acc"]) for r in curve], color=colours[net], label=net)
            ax.plot(x, [float(r["train_acc"]) for r in curve], color=colours[net], linestyle="--")
        ax.set_title(f"{panel[0]}: {panel[1].label()} (conv1 {panel[2]})", fontsize=6)
        ax.set_xlabel("epochs")
        ax.grid(alpha=0.3)
    for ax in axes.flat[len(panels):]:
        ax.axis("off")
    for row in axes:
        row[0].set_ylabel("top-1 % (dashed: train, solid: val)", fontsize=8)
    handles = [plt.Line2D([], [], color=c, label=net) for net, c in colours.items()]
    axes.flat[0].legend(handles=handles, fontsize=6, loc="lower right")
    fig.tight_layout()
    fig.savefig(png, dpi=70)


def elastic_strength(config: dict, side: int, draws: int, seed: int = 0) -> float:
    """Mean length of the elastic backward map's displacement / side, from the drawn field itself (exact)."""
    from replicate.transforms import ops
    fam = FAMILIES["elastic"]
    config = {**fam.default_config, **config}
    rng = np.random.default_rng(seed)
    lengths = []
    for _ in range(draws):
        p = fam.draw(config, rng, 1, side)
        dx, dy = ops.elastic_field((side, side), p["alpha"], p["sigma"], p["seed"])
        lengths.append(float(np.hypot(dx, dy).mean()) / side)
    return float(np.mean(lengths))


def photometric_strength(family: str, config: dict, side: int, draws: int, seed: int = 0) -> tuple[float, float]:
    """(RMS intensity change / 255 at this side, the same after both images are area-resized to SIDES[0]).

    On mini-docs images rendered at 227 and resized to `side` as the data pipeline does; the second number
    compares the change at the same fraction of the image (the scale of its content)."""
    import cv2
    from replicate.datasets import embedded
    fam = FAMILIES[family]
    config = {**fam.default_config, **config}
    rng = np.random.default_rng(seed)
    images, _, _ = embedded.generate("mini-docs", "train", 8, SIDES[-1], seed=2017)
    images = [cv2.resize(im, (side, side), interpolation=cv2.INTER_AREA) for im in images]
    small = lambda im: cv2.resize(im, (SIDES[0], SIDES[0]), interpolation=cv2.INTER_AREA).astype(float)
    at_side, at_content = [], []
    for i in range(draws):
        image = images[i % len(images)]
        out = fam.apply_fn(image, **fam.draw(config, rng, 1, side))
        at_side.append(float(np.sqrt(((out.astype(float) - image) ** 2).mean())) / 255)
        at_content.append(float(np.sqrt(((small(out) - small(image)) ** 2).mean())) / 255)
    return float(np.mean(at_side)), float(np.mean(at_content))


def print_rows(columns: tuple[str, str], nets: list, measure, draws: int) -> None:
    """A Markdown table of two measured numbers per (zoo net, side)."""
    print(f"| family (widest net) | side | {columns[0]} | {columns[1]} |")
    print("|---|---|---|---|")
    for net in nets:
        for side in SIDES:
            first, second = measure(net.family, dict(net.params), side, draws)
            print(f"| {net_label(net)} | {side} | {first:.4f} | {second:.4f} |")


def widest_nets(families: tuple[str, ...]) -> list:
    """Each family's widest RVL-CDIP net; perspective's also under the code's convention (a tenth of s_max)."""
    nets = [zoo.widest("rvl-cdip", family) for family in families]
    return nets + [zoo.as_trained_by(n, "code") for n in nets if n.family == "perspective"]


def strength(draws: int) -> None:
    """The strength table (Markdown) of every family's widest RVL-CDIP net at each of SIDES."""
    print_rows(("mean displacement / side", "fraction filled with 0"), widest_nets(GEOMETRIC), geometric_strength,
               draws)
    net = zoo.widest("rvl-cdip", "elastic")
    for side in SIDES:
        print(f"| {net.name} (field) | {side} | {elastic_strength(dict(net.params), side, draws):.4f} | 0 |")
    from replicate.config import get_scale
    mini = get_scale("mini")
    for paper_side in (320,):
        for side in SIDES:
            resize = dataclasses.replace(mini, input_size=side).crop_resize(paper_side)   # the pipeline's rule
            print(f"| Crop {paper_side} (analytic) | {side} | zoom {resize / side:.3f}, max offset "
                  f"{(resize - side) / side:.3f} | 0 |")
    print()
    print_rows(("RMS change / 255", f"RMS change / 255 at {SIDES[0]}-px content scale"), widest_nets(PHOTOMETRIC),
               photometric_strength, draws)


def flips(store_root: Path) -> None:
    """Markdown rows: top-1 of the stored mini baselines and mirror nets on test images under each flip."""
    from replicate import config, experiment_data, training
    from replicate.store import Store
    from replicate.transforms import ops
    scale, store = config.get_scale("mini"), Store(store_root)
    print("| dataset | net | " + " | ".join(ops.FLIPS) + " |")
    print("|---|---|" + "---|" * len(ops.FLIPS))
    for dataset in ("rvl-cdip", "ilsvrc"):
        data = experiment_data.data_for(dataset, scale, store, None, progress=False)
        for net in (n for n in zoo.nets(dataset) if n.family in ("baseline", "mirror")):
            job = training.job_for(store, scale, dataset, data, net, training.DROPOUT_CAFFE)
            if not job.done:
                continue
            test = training.resolved_net(scale, dataset, data, net, data.eval_split)
            cells = [100 * training.evaluate(test, job.dir / "net.caffemodel", job.dir,
                                             augment=lambda image, f=flip: ops.mirror(image, f)) for flip in ops.FLIPS]
            print(f"| {dataset} | {net.name} | " + " | ".join(f"{c:.1f}" for c in cells) + " |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=["strength", "sweep", "flips"])
    parser.add_argument("--draws", type=int, default=200)   # enough for the means to settle to ~1% of their value
    parser.add_argument("--dataset", nargs="+", default=["rvl-cdip"])
    parser.add_argument("--train", nargs="+", type=int, default=[4800, 1200])   # training images
    parser.add_argument("--nets", nargs="+", default=list(SWEEP_NETS))
    parser.add_argument("--iters", type=int, default=Variant.iters)
    parser.add_argument("--width", type=float, default=Variant.width)
    parser.add_argument("--side", type=int, default=Variant.side)
    parser.add_argument("--batch", type=int, default=Variant.batch)
    parser.add_argument("--lr", type=float, default=Variant.lr)
    parser.add_argument("--every", type=int, default=100)
    parser.add_argument("--threads", type=int, default=1)   # torch threads: 1, as each worker of `make table3`
    parser.add_argument("--store", default="runs/regime-store")   # embedded data of each train size
    args = parser.parse_args()
    if args.mode == "flips":   # reads the nets a `make table3` stored under --store (e.g. runs/store)
        flips(Path(args.store).resolve())
    elif args.mode == "sweep":
        import torch
        torch.set_num_threads(args.threads)
        sweep(args)
    else:
        strength(args.draws)


if __name__ == "__main__":
    main()
