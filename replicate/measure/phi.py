"""phi_fc7 of one split under one fixed transform, through the net's own TEST Data layer, cached in the store.

phi is the `fc7` blob after the in-place relu7 and drop7, i.e. exactly what fc8 reads, at TEST with the
chosen dropout convention (footnote 2, "paper": activations halved; "caffe": identity). The convention is
part of the trained net's job (a net trained with one convention is measured with it) and of every key.

The images go through the path training and Table 3 use: the stored uint8 image, the transform g in the
Data layer's `augment` hook, then Caffe's TEST DataTransformer (centre crop for S-sided inputs, mean file,
scale 1/255). A View says which stored images (side S), which g, and which crop window:
  * non-crop families: the net's own side; g is the family's apply() with the setting's parameters;
  * crop family: the setting's resize side S and window (x, y) instead of Caffe's centre; the mean file is
    read at the same window, as Caffe reads it at its crop. Baselines measured on the crop grid read the
    same S-sided images and mean (the inputs a Crop net sees).
The reference view (phi(x)) is the untransformed image at the same side with the centre window.

A finetuned net (replicate.finetune) is measured with `Source.weights`, its store job: its net.caffemodel in the
Table 3 net's measurement net (the branch-0 layers keep the Table 3 names); that job's name joins every key.

Records are read in key order from the start of the LMDB. ILSVRC's fit set ("a fixed random 50K training
images") is therefore the first `limit` records of the train LMDB, which `replicate data prepare` writes
shuffled; the embedded datasets and RVL-CDIP use whole splits.
"""
from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field
from functools import cached_property

import numpy as np
import torch

from convert import caffe_pb2 as pb
from convert.net import Net
from replicate import zoo
from replicate.config import MEASURE_CODE, Scale, code_fingerprint
from replicate.experiment_data import ExperimentData, crop_side
from replicate.store import Job, Store
from replicate.training import CHANNELS_LAST, job_for, resolved_net
from replicate.transforms import FAMILIES

PHI_BLOB = "fc7"   # relu7 and drop7 work in place: this blob is fc7 after ReLU and test-time dropout


@dataclass(frozen=True)
class View:
    """Which images a phi is taken of: stored side, transform (family + apply() params), crop window."""
    side: int
    family: str | None = None             # None: untransformed
    params: dict = field(default_factory=dict)
    window: tuple[int, int] | None = None  # (x, y) of the crop; None: Caffe's centre crop


def views(family: str, net: zoo.Net, scale: Scale,
          measured_resize: int | None = None) -> tuple[View, list[tuple[str, View]]]:
    """The reference view and (label, view) per setting of the family's measurement grid, for this net.

    Crop: the grid of the resize S (paper units) `measured_resize`, default the net's own S (Baselines: the
    family default, 256).
    """
    fam = FAMILIES[family]
    size = scale.input_size
    if family == "crop":
        resize = measured_resize or int(net.params.get("resize", fam.default_config["resize"]))
        ref = fam.reference(size, {"resize": resize})
        grid = fam.measurement_grid(size, {"resize": resize})
        side = ref["resize"]
        return (View(side, window=(ref["x"], ref["y"])),
                [(s.label, View(side, window=(s.params["x"], s.params["y"]))) for s in grid])
    side = crop_side(net, scale)
    return View(side), [(s.label, View(side, family, dict(s.params))) for s in fam.measurement_grid(size)]


@dataclass(frozen=True)
class Source:
    """What phi is computed from: a trained net, the data it was trained on, and the data it is measured on."""
    store: Store
    scale: Scale
    dataset: str                 # the net's training dataset
    data: ExperimentData         # its data (mean files)
    images: ExperimentData       # the data measured on (the same, or e.g. the ANDOC stand-in)
    net: zoo.Net
    dropout: str
    device: str = "cpu"
    weights: Job | None = None   # the store job whose net.caffemodel is measured (a finetuned net); None: train_job

    @cached_property
    def train_job(self):
        return job_for(self.store, self.scale, self.dataset, self.data, self.net, self.dropout)

    @property
    def weights_job(self) -> Job:
        return self.weights if self.weights is not None else self.train_job

    def key(self) -> dict:
        """What identifies the measured weights in a store key (a weights job only when one is given)."""
        return {"train_job": self.train_job.dir.name,
                **({"weights_job": self.weights.dir.name} if self.weights is not None else {})}


def measurement_net(source: Source, view: View, split: str) -> pb.NetParameter:
    """The net's train_val with its TEST Data layer reading `split` of the measured data at the view's side."""
    param = resolved_net(source.scale, source.dataset, source.data, source.net, split)
    for layer in param.layer:
        if layer.type == "Data" and not any(r.phase == pb.TRAIN for r in layer.include):
            layer.data_param.source = str(source.images.lmdb(split, view.side))
            tp = layer.transform_param
            tp.mean_file = str(source.data.mean_file(view.side))
            if view.side != source.scale.input_size:
                tp.crop_size = source.scale.input_size
            else:
                tp.ClearField("crop_size")
    return param


def apply_view(data, view: View) -> None:
    """Make a Data layer produce the view: g in its `augment` hook, the crop window fixed (no random draw)."""
    if view.family is not None:
        fam, params = FAMILIES[view.family], view.params
        data.augment = lambda image: fam.apply(image, **params)
    if view.window is not None:
        x, y = view.window
        window = copy.copy(data.transformer)
        window.fixed_window = (y, x)   # Caffe's transform with the crop moved off the centre (or held there)
        data.transformer = window


def extract(source: Source, view: View, split: str, limit: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(phi [N, D] float32, labels [N] int64) of the split's first `limit` records (all by default)."""
    job = source.weights_job
    net = Net(measurement_net(source, view, split), pb.TEST, root=job.dir, dropout=source.dropout,
              channels_last=CHANNELS_LAST).to(source.device)
    net.load_weights(job.dir / "net.caffemodel")
    data = net.layer("data")
    apply_view(data, view)
    data.reset()
    total = min(len(data.dataset), limit or len(data.dataset))
    phis, labels = [], []
    with torch.no_grad():
        for start in range(0, total, data.batch_size):
            blobs = net(outputs=[PHI_BLOB, "label"])
            keep = min(data.batch_size, total - start)   # the cursor wraps at the end: keep each record once
            phis.append(blobs[PHI_BLOB][:keep].float().cpu().numpy())
            labels.append(blobs["label"][:keep].long().cpu().numpy())
    return np.concatenate(phis), np.concatenate(labels)


def classifier(source: Source) -> tuple[np.ndarray, np.ndarray]:
    """The net's fixed fc8 (weight [classes, D], bias [classes]) from its trained caffemodel."""
    from convert.protoio import blob_to_array, read_caffemodel
    model = read_caffemodel(source.weights_job.dir / "net.caffemodel")
    layer = next(l for l in model.layer if l.name == "fc8")
    return blob_to_array(layer.blobs[0]).astype(np.float32), blob_to_array(layer.blobs[1]).astype(np.float32)


def phi(source: Source, view: View, split: str, limit: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """extract() through the store: computed once per (trained net, measured data, view, split, dropout)."""
    config = {**source.key(), "images": source.images.source,
              "images_dir": str(source.images.root), "split": split, "limit": limit, "view": asdict(view),
              "dropout": source.dropout, "blob": PHI_BLOB, "code": code_fingerprint(MEASURE_CODE)}
    job = source.store.job(f"phi-{source.scale.name}-{source.dataset}", source.net.id, config)
    if not job.done:
        job_dir = job.begin()
        values, labels = extract(source, view, split, limit)
        np.save(job_dir / "phi.npy", values)
        np.save(job_dir / "labels.npy", labels)
        job.finish({"count": int(len(labels)), "dim": int(values.shape[1]), "dropout": source.dropout,
                    "mean_activation": float(values.mean())})
    return np.load(job.dir / "phi.npy"), np.load(job.dir / "labels.npy")
