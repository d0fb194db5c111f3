"""The data of an experiment: LMDBs per split and side plus mean files, in `replicate data prepare`'s layout.

Layout of a data directory (the same for the embedded datasets and for RVL-CDIP / ILSVRC prepared
from disk): `<split>_<S>_lmdb` for each split and side S, and `train_<S>_mean.binaryproto`.
Sides are the scale's input side and the Crop nets' resize sides (docs/protocol.md's 240/256/288/320,
scaled to the input side). The embedded datasets are rendered once at the largest side (our
"originals") and resized to each side with cv::resize INTER_LINEAR, as convert_imageset resizes
real images; they are written as raw Datums with convert_imageset's key format, so everything
after this point is the path real data takes.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from convert.errors import UserError
from lmdb_tools.datum import image_to_datum
from lmdb_tools.db import building, open_writable
from lmdb_tools.layout import CROP_SIZES, lmdb_path, mean_path
from lmdb_tools.mean import write_mean
from replicate import zoo
from replicate.config import DATA_CODE, DATA_SEED, EMBEDDED_FOR, MEASURE_ONLY_SPLITS, Scale, code_fingerprint
from replicate.store import Job, Store



@dataclass(frozen=True)
class ExperimentData:
    """Where a dataset's LMDBs live and what they hold."""
    root: Path
    classes: int
    channels: int
    eval_split: str        # the split Table 3 reports (RVL-CDIP: test; ILSVRC: val)
    source: str            # "embedded:<name>" or the data root

    def lmdb(self, split: str, side: int) -> Path:
        path = lmdb_path(self.root, split, side)
        if not (path / "data.mdb").exists():
            raise UserError(f"{path}: missing; expected `replicate data prepare` output with side {side}")
        return path

    def mean_file(self, side: int) -> Path:
        return mean_path(self.root, "train", side)


def sides(scale: Scale) -> list[int]:
    """Every image side a scale's networks read: the input side and the scaled Crop sides."""
    return sorted({scale.input_size, *(scale.crop_resize(s) for s in CROP_SIZES)})


def data_for(dataset: str, scale: Scale, store: Store, data_root: str | os.PathLike | None,
             progress: bool = True) -> ExperimentData:
    """The dataset at this scale: embedded (generated into the store once) or prepared on disk."""
    if data_root is not None:
        return _from_disk(dataset, Path(data_root), scale)
    if scale.proxy is False:
        raise UserError(f"--scale {scale.name} needs --data-root: download {dataset.upper()} and prepare it with "
                        f"`replicate data prepare {dataset} --root DOWNLOAD --out DIR`, then pass --data-root DIR")
    return _embedded(dataset, scale, store, progress)


def _from_disk(dataset: str, root: Path, scale: Scale) -> ExperimentData:
    if (root / dataset / "prepare.json").exists():   # one root holding rvl-cdip/ and ilsvrc/
        root = root / dataset
    manifest_path = root / "prepare.json"
    if not manifest_path.exists():
        raise UserError(f"{root}: not a prepared data directory (no prepare.json, nor {dataset}/prepare.json); "
                        f"run `replicate data prepare {dataset} --root DOWNLOAD --out {root / dataset}` first")
    try:
        manifest = json.loads(manifest_path.read_text())
        if not isinstance(manifest, dict):
            raise ValueError("not a JSON object")
    except (ValueError, RecursionError) as e:
        raise UserError(f"{manifest_path}: corrupt ({e}); rerun `replicate data prepare {dataset}`") from None
    if manifest.get("dataset") != dataset:
        raise UserError(f"{manifest_path}: holds {manifest.get('dataset')!r}, expected {dataset!r}")
    missing = [s for s in sides(scale) if s not in manifest.get("sizes", [])]
    if missing:
        raise UserError(f"{manifest_path}: has sides {manifest.get('sizes')}, scale {scale.name} needs {sides(scale)}")
    splits = manifest.get("splits", {})
    eval_split = "test" if "test" in splits else "val"
    channels = 1 if manifest.get("gray") else 3
    classes = {"rvl-cdip": 16, "ilsvrc": 1000}[dataset]
    return ExperimentData(root, classes, channels, eval_split, str(root))


def embedded_job(dataset: str, scale: Scale, store: Store) -> Job:
    """The store entry of a dataset's embedded stand-in at a scale (generated or not)."""
    if dataset not in EMBEDDED_FOR:
        raise UserError(f"unknown dataset {dataset!r}; expected one of {', '.join(EMBEDDED_FOR)}")
    name = EMBEDDED_FOR[dataset]
    keep = MEASURE_ONLY_SPLITS.get(dataset, tuple(scale.split_sizes))
    splits = {split: count for split, count in scale.split_sizes.items() if split in keep}
    config = {"embedded": name, "scale": scale.name, "sides": sides(scale), "splits": splits,
              "render_side": max(sides(scale)), "seed": DATA_SEED, "code": code_fingerprint(DATA_CODE)}
    return store.job("data", f"{dataset}-{scale.name}", config)


def _embedded(dataset: str, scale: Scale, store: Store, progress: bool) -> ExperimentData:
    from replicate.datasets import embedded
    job = embedded_job(dataset, scale, store)
    name, config = job.config["embedded"], job.config
    if not job.done:
        root = job.begin()   # waits while another run generates it
    if not job.done:
        meta = {}
        total = sum(scale.split_sizes.values()) * (1 + len(config["sides"]))
        with tqdm(total=total, desc=f"data {dataset} ({name}, {scale.name})", unit="img", disable=not progress) as bar:
            for split, count in scale.split_sizes.items():
                images, labels, class_names = embedded.generate(name, split, count, config["render_side"],
                                                                  DATA_SEED, workers=embedded.default_workers())
                bar.update(count)
                meta = {"classes": len(class_names), "class_names": list(class_names),
                        "channels": 1 if images[0].ndim == 2 else images[0].shape[2]}
                for side in config["sides"]:
                    write_lmdb(lmdb_path(root, split, side), images, labels, side, f"{name}/{split}")
                    bar.update(count)
        for side in config["sides"]:
            write_mean(lmdb_path(root, "train", side), mean_path(root, "train", side), progress=False)
        job.finish({**meta, "eval_split": "test"})
    job.release()
    result = job.result()
    return ExperimentData(job.dir, result["classes"], result["channels"], result["eval_split"], f"embedded:{name}")


def write_lmdb(db: Path, images: list[np.ndarray], labels: list[int], side: int, prefix: str) -> None:
    """Raw Datums of the images resized to side x side, keyed like convert_imageset (%08d_<path>)."""
    with building(db, overwrite=True) as tmp:
        env = open_writable(tmp)
        with env.begin(write=True) as txn:
            for i, (image, label) in enumerate(zip(images, labels)):
                resized = cv2.resize(image, (side, side), interpolation=cv2.INTER_LINEAR)
                key = f"{i:08d}_{prefix}/{i:06d}.png".encode()
                txn.put(key, image_to_datum(resized, int(label)).SerializeToString())
        env.close()


def crop_side(net: zoo.Net, scale: Scale) -> int:
    """The side of the LMDB a network reads: a Crop net's resize side, else the input side."""
    return scale.crop_resize(int(net.params["resize"])) if net.family == "crop" else scale.input_size
