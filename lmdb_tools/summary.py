"""What an LMDB holds: record count, shapes, storage kind, label histogram, first keys, a picture."""
from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from convert.errors import UserError, about
from convert.protoio import atomic_write
from lmdb_tools.datum import datum_to_array, key_text, parse_datum
from lmdb_tools.db import open_readonly, reading


def summarize(db: str | os.PathLike, first: int = 5, progress: bool = True) -> dict:
    """Scan every record: count, (C, H, W) shapes, raw/encoded/float_data, labels, the first keys."""
    env = open_readonly(db)
    shapes, kinds, labels, keys = Counter(), Counter(), Counter(), []
    with reading(db), env.begin() as txn:
        for key, value in tqdm(txn.cursor(), total=env.stat()["entries"], disable=not progress,
                               unit="rec", desc="inspect"):
            datum = parse_datum(value, key, str(db))
            kinds["encoded" if datum.encoded else "raw uint8" if datum.data else "float_data"] += 1
            shapes[(datum.channels, datum.height, datum.width)] += 1
            labels[datum.label] += 1
            if len(keys) < first:
                keys.append(key_text(key))
    return {"records": sum(kinds.values()), "kinds": dict(kinds), "shapes": dict(shapes),
            "labels": dict(sorted(labels.items())), "first_keys": keys}


def write_grid(db: str | os.PathLike, out: str | os.PathLike, count: int = 16, cell: int = 128) -> None:
    """A PNG of the first `count` images, each fitted into a cell and captioned with its label."""
    env = open_readonly(db)
    tiles = []
    with reading(db), env.begin() as txn:
        for key, value in txn.cursor():
            if len(tiles) == count:
                break
            datum = parse_datum(value, key, str(db))
            with about(f"{db}: record {key_text(key)}"):
                tiles.append(_tile(datum_to_array(datum), datum.label, cell))
    if not tiles:
        raise UserError(f"{db}: holds no records to draw (or --count is {count})")
    columns = int(np.ceil(np.sqrt(len(tiles)))) or 1
    rows = -(-len(tiles) // columns)
    grid = np.zeros((rows * cell, columns * cell, 3), np.uint8)
    for i, tile in enumerate(tiles):
        r, c = divmod(i, columns)
        grid[r * cell:(r + 1) * cell, c * cell:(c + 1) * cell] = tile
    ok, png = cv2.imencode(".png", grid)
    atomic_write(Path(out), png.tobytes())


def _tile(image: np.ndarray, label: int, cell: int) -> np.ndarray:
    """One CHW image (BGR or grey; float data min-max scaled) fitted into a cell x cell BGR tile."""
    if image.dtype != np.uint8:
        lo, hi = float(image.min()), float(image.max())
        image = ((image - lo) / (hi - lo if hi > lo else 1) * 255).astype(np.uint8)
    hwc = image.transpose(1, 2, 0)
    hwc = cv2.cvtColor(hwc, cv2.COLOR_GRAY2BGR) if hwc.shape[2] == 1 else hwc[:, :, :3]
    scale = (cell - 2) / max(hwc.shape[:2])
    size = (max(1, round(hwc.shape[1] * scale)), max(1, round(hwc.shape[0] * scale)))
    hwc = cv2.resize(np.ascontiguousarray(hwc), size, interpolation=cv2.INTER_AREA)
    tile = np.zeros((cell, cell, 3), np.uint8)
    tile[1:1 + hwc.shape[0], 1:1 + hwc.shape[1]] = hwc
    cv2.putText(tile, str(label), (4, cell - 6), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 3)
    cv2.putText(tile, str(label), (4, cell - 6), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 255, 255), 1)
    return tile
