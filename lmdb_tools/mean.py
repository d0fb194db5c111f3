"""compute_image_mean: the per-pixel mean of every Datum in an LMDB, as a BlobProto."""
from __future__ import annotations

import json
import os

import numpy as np
from tqdm import tqdm

from convert.errors import UserError, about
from convert.protoio import atomic_write, write_binaryproto
from lmdb_tools.datum import datum_to_array, key_text, parse_datum
from lmdb_tools.db import open_readonly, reading


def compute_image_mean(db: str | os.PathLike, progress: bool = True) -> np.ndarray:
    """The mean image (C, H, W) float32, summed in float32 record by record as Caffe's tool does."""
    env = open_readonly(db)
    total, count = None, 0
    with reading(db), env.begin(buffers=True) as txn:
        bar = tqdm(total=env.stat()["entries"], disable=not progress, unit="rec", desc="compute_image_mean")
        for key, value in txn.cursor():
            # Encoded records are decoded natively (their own channel count), as DecodeDatumNative.
            with about(f"{db}: record {key_text(key)}"):
                image = datum_to_array(parse_datum(value, key, str(db)))
            if total is None:
                total = np.zeros(image.shape, np.float32)
            elif image.shape != total.shape:
                raise UserError(f"{db}: record {key_text(key)} is {image.shape} "
                                f"(C, H, W), the first record is {total.shape}; a mean needs equal sizes")
            # float32 + value per pixel, rounded each time: Caffe's accumulation, bit for bit.
            total += image
            count += 1
            bar.update()
        bar.close()
    if count == 0:
        raise UserError(f"{db}: the LMDB holds no records; nothing to average")
    return total / np.float32(count)


def channel_means(mean: np.ndarray) -> list[float]:
    """Per-channel averages of a mean image (what compute_image_mean logs)."""
    return [float(v) for v in mean.reshape(mean.shape[0], -1).mean(axis=1, dtype=np.float64)]


def write_mean(db: str | os.PathLike, out: str | os.PathLike, progress: bool = True) -> np.ndarray:
    """Compute the mean of db and write it as a legacy 4-D binaryproto plus a JSON note of its origin."""
    mean = compute_image_mean(db, progress)
    write_binaryproto(out, mean[None], legacy_4d=True)
    note = {"tool": "compute_image_mean", "db": str(db), "shape": list(mean.shape),
            "channel_means": channel_means(mean)}
    atomic_write(f"{out}.json", json.dumps(note, indent=1).encode())
    return mean
