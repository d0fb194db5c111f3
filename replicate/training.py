"""Train and evaluate one network of Table 3: the scale's prototxt, Caffe's solver, the net's augmentation.

A network is a job in the results store keyed by everything that changes its numbers (dataset and its
data job, scale, prototxt and solver as parsed, so comments do not count, the zoo entry and seed, dropout
convention, code fingerprint). The job directory holds the resolved train_val.prototxt and solver.prototxt
(runnable with `replicate train`, except for the augmentation, which the authors ran inside their Caffe fork's
transformer and we run in the Data layer's `augment` hook), the trained net.caffemodel, and
result.json with the accuracies.

Augmentation: the transform is applied to the stored uint8 image, then Caffe's DataTransformer crops
(Crop nets: random at TRAIN, centre at TEST), subtracts the mean file and scales by 1/255. Evaluation
uses untransformed images (centre crops for Crop nets). The authors' fork ran its transforms after a
linear step (subtract the per-channel mean value, scale by 1/255; createNetwork.py's transform order:
noise, jitter, linear, mirror, perspective, elastic, rotate, shear, blur, crop), so their warps filled
the pixels from outside the image with 0 in mean-subtracted units: the dataset's mean colour, not black.
We warp the raw image with fill = the mean file's per-channel average (`channel_mean`), the same picture
up to uint8 rounding; after the mean file is subtracted those pixels are close to 0 as theirs were.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from google.protobuf import text_format

from convert import caffe_pb2 as pb
from convert.layers.base import DROPOUT_CAFFE
from convert.net import Net
from convert.protoio import parse_text_proto, read_net, read_solver, write_text_proto
from lmdb_tools.reader import LMDBDataset
from lmdb_tools.transformer import DataTransformer
from replicate import zoo
from replicate.config import Scale, code_fingerprint
from replicate.experiment_data import ExperimentData, crop_side
from replicate.store import Job, Store, write_json
from replicate.transforms import FAMILIES

PIXEL_SCALE = 1.0 / 255    # docs/protocol.md: subtract the mean, then scale by 1/255
TIMING = "timing.json"     # a trained net's train/eval seconds and images per second
CHANNELS_LAST = True       # evaluation and measurement nets run in the solver's layout (convert.net.Net): its speed


def resolved_net(scale: Scale, dataset: str, data: ExperimentData, net: zoo.Net,
                 test_split: str = "val") -> pb.NetParameter:
    """The scale's train_val net pointed at this dataset's LMDBs, mean file, crop and class count.

    The TEST Data layer reads `test_split`: the validation split while training (model selection, as
    the paper's protocol), the reported split for the final evaluation.
    """
    param = read_net(scale.net_path(dataset))
    side = crop_side(net, scale)
    for layer in param.layer:
        if layer.type == "Data":
            train = any(r.phase == pb.TRAIN for r in layer.include)
            split = "train" if train else test_split
            layer.data_param.source = str(data.lmdb(split, side))
            if not train:
                layer.data_param.batch_size = scale.test_batch
            tp = layer.transform_param
            tp.mean_file = str(data.mean_file(side))
            tp.scale = PIXEL_SCALE
            if side != scale.input_size:
                tp.crop_size = scale.input_size
        if layer.name == "fc8":
            layer.inner_product_param.num_output = data.classes
    return param


def resolved_solver(scale: Scale, dataset: str, net: zoo.Net, job_dir: Path) -> pb.SolverParameter:
    """The scale's solver for this network: its seed, its net file and snapshot prefix in the job dir."""
    solver = read_solver(scale.solver_path(dataset))
    solver.net = str(job_dir / "train_val.prototxt")
    solver.snapshot_prefix = str(job_dir / "net")
    solver.random_seed = net.seed
    solver.snapshot_after_train = False   # the job saves net.caffemodel itself
    return solver


def channel_mean(transformer: DataTransformer) -> tuple[float, ...]:
    """The per-channel value a Data layer subtracts on average: the mean file's channel means, or its mean values."""
    if transformer.mean_file is not None:
        return tuple(float(v) for v in transformer.mean_file.mean(axis=(1, 2)))
    return tuple(float(v) for v in transformer.mean_values) or (0.0,)


def augmentation(net: zoo.Net, scale: Scale, fill: tuple[float, ...] = (0.0,)
                 ) -> Callable[[np.ndarray, np.random.Generator], np.ndarray] | None:
    """The per-image training transform of a zoo net (None for baselines and Crop nets, whose crop is Caffe's).

    `fill` is what the warps (rotation, shear, perspective) bring in from outside the image."""
    if net.family in ("baseline", "crop"):
        return None
    family = FAMILIES[net.family]
    config = dict(net.params)
    if "fill" in family.default_config:
        config["fill"] = fill
    return family.sampler(config, scale.input_size)


def attach_augmentation(solver, net: zoo.Net, scale: Scale) -> None:
    """Hook a zoo net's training transform into the solver's Data layer, drawing from its own seeded stream.

    Warps fill with the Data layer's mean colour, as the authors' fork did (see the module docstring)."""
    data_layer = solver.net.layer("data")
    augment = augmentation(net, scale, channel_mean(data_layer.transformer))
    if augment is not None:
        rng = np.random.default_rng([net.seed, 1])
        data_layer.augment = lambda image: augment(image, rng)


def solver_text(scale: Scale, dataset: str) -> str:
    """The scale's solver as protobuf text: what it sets, so a comment edit keeps every store key."""
    return text_format.MessageToString(read_solver(scale.solver_path(dataset)))


def job_for(store: Store, scale: Scale, dataset: str, data: ExperimentData, net: zoo.Net, dropout: str) -> Job:
    """The store entry of one trained network."""
    config = {"dataset": dataset, "data": data.source, "data_dir": str(data.root), "scale": scale.name,
              "net": net.id, "name": net.name, "family": net.family, "params": net.params, "seed": net.seed,
              "net_prototxt": text_format.MessageToString(resolved_net(scale, dataset, data, net)),
              "solver_prototxt": solver_text(scale, dataset), "dropout": dropout,
              "code": code_fingerprint()}
    return store.job(f"train-{scale.name}-{dataset}", net.id, config)


def train(job: Job, scale: Scale, dataset: str, data: ExperimentData, net: zoo.Net, dropout: str = DROPOUT_CAFFE,
          device: str = "cpu") -> dict:
    """Train one network with Caffe's solver, evaluate it, and record the result in the store."""
    from replicate.solver import Solver
    job_dir = job.begin()   # waits while another run on this store trains the same net
    if job.done:            # it finished while we waited: use its result
        job.release()
        return job.result()
    try:
        return _train(job, job_dir, scale, dataset, data, net, dropout, device, Solver)
    finally:
        job.release()   # finish() has released it already; on an error this gives the claim up


def _train(job: Job, job_dir: Path, scale: Scale, dataset: str, data: ExperimentData, net: zoo.Net,
           dropout: str, device: str, Solver) -> dict:
    net_param = resolved_net(scale, dataset, data, net)
    write_text_proto(job_dir / "train_val.prototxt", net_param)
    solver_param = resolved_solver(scale, dataset, net, job_dir)
    write_text_proto(job_dir / "solver.prototxt", solver_param)
    started = time.time()
    # The seed also seeds the global torch RNG (Dropout's masks): a rerun of the job gives the same net.
    solver = Solver(solver_param, root=job_dir, seed=net.seed, dropout=dropout, device=device, progress=False)
    attach_augmentation(solver, net, scale)
    solver.solve()
    train_seconds = time.time() - started
    weights = job_dir / "net.caffemodel"
    solver.net.save_caffemodel(weights)
    started = time.time()
    accuracy = evaluate(resolved_net(scale, dataset, data, net, data.eval_split), weights, job_dir, device)
    # Timings go beside the result, not in it: the same seeds and code give a byte-identical result.json.
    write_json(job_dir / TIMING, {"train_seconds": round(train_seconds, 1), "eval_seconds": round(time.time() - started, 1),
                                  "images_per_second": round(solver_param.max_iter * solver.images_per_iter
                                                             / train_seconds, 1)})
    return job.finish({"accuracy": 100.0 * accuracy, "eval_split": data.eval_split,
                       "iterations": solver_param.max_iter, "weights": weights.name})


def evaluate(net_param: pb.NetParameter, weights: Path, root: Path, device: str = "cpu",
             augment: Callable[[np.ndarray], np.ndarray] | None = None) -> float:
    """Top-1 accuracy over every record of the TEST Data layer's LMDB (ties count as correct, as in Caffe).

    `augment` transforms each stored image first (the Data layer's hook), e.g. to test a net on flipped images."""
    net = Net(net_param, pb.TEST, root=root, channels_last=CHANNELS_LAST).to(device)
    net.load_weights(weights)
    data_layer = net.layer("data")
    data_layer.augment = augment
    total, batch = len(data_layer.dataset), data_layer.batch_size
    correct = 0
    with torch.no_grad():
        for start in range(0, total, batch):
            blobs = net(outputs=["fc8", "label"])
            keep = min(batch, total - start)   # the last batch wraps around (Caffe's cursor): count each record once
            scores, labels = blobs["fc8"][:keep], blobs["label"][:keep].long()
            correct += int(((scores > scores.gather(1, labels[:, None])).sum(1) < 1).sum())
    return correct / total
