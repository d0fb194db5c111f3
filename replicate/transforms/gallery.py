"""Pictures of one image under a family's measurement grid (like the paper's Figs. 5-6), saved as PNG."""
from __future__ import annotations

import json
import math
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np

from convert.errors import UserError
from convert.protoio import atomic_write
from replicate.paper import DATASETS
from replicate.transforms.family import REFERENCE_SIZE, Family

LABEL_HEIGHT = 18
GAP = 4


def synthetic_image(dataset: str, size: int, seed: int = 0) -> np.ndarray:
    """A deterministic stand-in image: a grey text page (rvl-cdip) or a BGR colour scene (ilsvrc)."""
    rng = np.random.default_rng(seed)
    if dataset == "rvl-cdip":
        page = np.full((size, size), 235, np.uint8)
        cv2.rectangle(page, (size // 10, size // 12), (size // 2, size // 12 + size // 20), 30, -1)
        y = size // 5
        while y < size - size // 10:  # lines of "words": dark bars of random widths
            x = size // 10
            while x < size - size // 8:
                width = int(rng.integers(size // 30 + 1, size // 8 + 2))
                cv2.rectangle(page, (x, y), (min(x + width, size - size // 10), y + max(1, size // 60)), 40, -1)
                x += width + max(2, size // 40)
            y += max(3, size // 22)
        return page
    if dataset == "ilsvrc":
        ramp = np.linspace(0, 1, size)[:, None]
        sky = np.stack([200 + 55 * (1 - ramp), 150 + 60 * (1 - ramp), 90 + 20 * ramp], axis=-1)
        scene = np.broadcast_to(sky, (size, size, 3)).astype(np.uint8).copy()
        cv2.rectangle(scene, (0, 2 * size // 3), (size, size), (40, 120, 60), -1)
        cv2.circle(scene, (3 * size // 4, size // 4), size // 9, (60, 220, 250), -1)
        cv2.rectangle(scene, (size // 5, size // 3), (size // 2, 3 * size // 4), (30, 40, 180), -1)
        cv2.line(scene, (size // 5, size // 3), (size // 2, 3 * size // 4), (250, 250, 250), max(1, size // 60))
        noise = rng.normal(0, 6, scene.shape)
        return np.clip(scene + noise, 0, 255).astype(np.uint8)
    raise UserError(f"--dataset {dataset!r}: expected one of {', '.join(DATASETS)}")


def read_image(path: str | Path) -> np.ndarray:
    """An image file as uint8 (grey stays HxW, colour is HxWxC BGR)."""
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise UserError(f"{path}: not a readable image file")
    if image.dtype != np.uint8:
        raise UserError(f"{path}: {image.dtype} pixels, expected 8-bit")
    return image


def png_bytes(image: np.ndarray, metadata: dict) -> bytes:
    """PNG encoding of image with metadata as JSON in a tEXt chunk named 'replicate'."""
    ok, encoded = cv2.imencode(".png", image)
    if not ok:
        raise UserError(f"cannot encode an image of shape {image.shape} as PNG")
    data = b"replicate\0" + json.dumps(metadata, sort_keys=True).encode("latin-1")
    chunk = struct.pack(">I", len(data)) + b"tEXt" + data + struct.pack(">I", zlib.crc32(b"tEXt" + data))
    raw = encoded.tobytes()
    iend = raw.rindex(b"IEND") - 4  # chunks are length, type, data, crc; IEND's length precedes it
    return raw[:iend] + chunk + raw[iend:]


def write_png(path: str | Path, image: np.ndarray, metadata: dict) -> None:
    """Atomically write image as PNG, recording metadata (configuration and seed) inside it."""
    atomic_write(path, png_bytes(image, metadata))


def panels(family: Family, image: np.ndarray, size: int, config: dict | None = None) -> list[tuple[str, np.ndarray]]:
    """(label, picture) of the reference and of every measurement setting of family at `size`."""
    out = [("reference", family.apply(image, **family.reference(size, config)))]
    return out + [(s.label, family.apply(image, **s.params)) for s in family.measurement_grid(size, config)]


def sheet(labelled: list[tuple[str, np.ndarray]], title: str = "") -> np.ndarray:
    """Labelled panels on a square-ish grid, under an optional title line."""
    cols = math.ceil(math.sqrt(len(labelled)))
    rows = math.ceil(len(labelled) / cols)
    ph, pw = labelled[0][1].shape[:2]
    head = LABEL_HEIGHT if title else 0
    grid = np.full((head + rows * (ph + LABEL_HEIGHT + GAP), cols * (pw + GAP)) + labelled[0][1].shape[2:], 255,
                   np.uint8)
    if title:
        cv2.putText(grid, title, (2, LABEL_HEIGHT - 5), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    for i, (label, panel) in enumerate(labelled):
        top, left = head + (i // cols) * (ph + LABEL_HEIGHT + GAP), (i % cols) * (pw + GAP)
        grid[top:top + ph, left:left + pw] = panel
        cv2.putText(grid, label, (left + 2, top + ph + LABEL_HEIGHT - 5), cv2.FONT_HERSHEY_SIMPLEX,
                    0.4, (0, 0, 0), 1, cv2.LINE_AA)
    return grid


def gallery(family: Family, image: np.ndarray, size: int, config: dict | None = None) -> np.ndarray:
    """The reference and every measurement setting of family, as labelled panels on a grid."""
    return sheet(panels(family, image, size, config))


def comparison(family: Family, image: np.ndarray, size: int, config: dict | None = None) -> np.ndarray:
    """The proxy's grid at `size` above the paper's grid at 227 px seen at `size` (each panel area-shrunk).

    `image` is at 227 px (crop: any side, the family resizes it to S). Both halves show the same picture
    at the same content scale, so a size rule that makes the proxy stronger or weaker than the paper's
    transform shows as a difference between them (benchmarks/RESULTS.md, "Transform strength")."""
    shrink = lambda picture: cv2.resize(picture, (size, size), interpolation=cv2.INTER_AREA)
    small = image if family.name == "crop" else shrink(image)
    proxy = sheet(panels(family, small, size, config), f"proxy: {family.name} at {size} px")
    paper = sheet([(label, shrink(picture)) for label, picture in panels(family, image, REFERENCE_SIZE, config)],
                  f"paper: {family.name} at {REFERENCE_SIZE} px, shrunk to {size} px")
    return np.concatenate([proxy, np.full((GAP * 2,) + proxy.shape[1:], 255, np.uint8), paper])
