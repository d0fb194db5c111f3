"""Embedded datasets: generated deterministically from a seed, no downloads.

    EMBEDDED: dict[str, Embedded]   "mini-docs" (stands in for RVL-CDIP: grey office pages, its 16 classes),
                                    "mini-objects" (stands in for ILSVRC: 12 colour object classes on clutter),
                                    "mini-docs-b" (stands in for ANDOC: grey historical pages, 8 classes of
                                    their own; for the cross-dataset measurements of Fig. 10, not for training)
    SPLITS = ("train", "val", "test")
    class_names(name) -> list[str]
    image(name, split, index, size, seed=0) -> (uint8 image, label)
    generate(name, split, count, size, seed=0, start=0, workers=1)
        -> (images uint8 [count, size, size] grey or [count, size, size, 3] BGR, labels list[int], class_names)
    gallery(name, out_png, size=96, per_class=4, seed=0) -> Path   labelled grid of examples

Image `index` of a split is a pure function of (name, split, index, seed, size): its generator is seeded by
SeedSequence([seed, split, index, name]), so generation can run in any order, in parallel, or resume, and
the splits come from disjoint seed streams. Labels cycle through the classes (index mod classes), so every
split is balanced. Drawing happens at twice the target size, resized with INTER_AREA; random layout draws do
not depend on the size, so one index shows the same page or object at every size.
"""
from __future__ import annotations

import multiprocessing as mp
import os
import zlib
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from convert.errors import UserError
from replicate.datasets import docs, objects

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class Embedded:
    """One embedded dataset: what it stands in for, its classes and its renderer."""
    name: str
    stands_in_for: str
    colour: bool
    classes: tuple[str, ...]
    render: Callable[[int, int, np.random.Generator], np.ndarray]  # (label, size, rng) -> uint8 image
    description: str


EMBEDDED = {e.name: e for e in (
    Embedded("mini-docs", "rvl-cdip", False, docs.RVL_CDIP_CLASSES, docs.office_page,
             "grey office pages with class-typical layouts, scan noise, slight skew"),
    Embedded("mini-objects", "ilsvrc", True, objects.OBJECT_CLASSES, objects.object_image,
             "colour objects at random position, scale, pose and colour on cluttered backgrounds"),
    Embedded("mini-docs-b", "andoc", False, docs.HISTORICAL_CLASSES, docs.historical_page,
             "grey historical pages (aged paper, faded ink, bleed-through, stains): a second document domain"),
)}


def get(name: str) -> Embedded:
    """The embedded dataset `name` (UserError listing the valid names otherwise)."""
    if name not in EMBEDDED:
        raise UserError(f"unknown embedded dataset {name!r}; expected one of {sorted(EMBEDDED)}")
    return EMBEDDED[name]


def class_names(name: str) -> list[str]:
    """Class names in label order."""
    return list(get(name).classes)


def image(name: str, split: str, index: int, size: int, seed: int = 0) -> tuple[np.ndarray, int]:
    """Image `index` of a split and its label."""
    dataset = get(name)
    if split not in SPLITS:
        raise UserError(f"unknown split {split!r}; expected one of {list(SPLITS)}")
    if size < 16:
        raise UserError(f"image size {size} is too small; expected at least 16 pixels")
    rng = np.random.default_rng(np.random.SeedSequence(
        [seed, SPLITS.index(split), index, zlib.crc32(name.encode())]))
    label = index % len(dataset.classes)
    return dataset.render(label, size, rng), label


def _chunk(args: tuple[str, str, int, int, int, int]) -> list[tuple[np.ndarray, int]]:
    name, split, first, count, size, seed = args
    return [image(name, split, i, size, seed) for i in range(first, first + count)]


def generate(name: str, split: str, count: int, size: int, seed: int = 0, start: int = 0,
             workers: int = 1) -> tuple[np.ndarray, list[int], list[str]]:
    """Images start .. start+count-1 of a split: (images, labels, class names); workers > 1 uses processes."""
    get(name)
    if workers <= 1 or count < 64:
        pairs = _chunk((name, split, start, count, size, seed))
    else:
        step = -(-count // (workers * 4))
        jobs = [(name, split, s, min(step, start + count - s), size, seed) for s in range(start, start + count, step)]
        # spawn, not fork: a forked child of a process whose OpenCV/OpenMP threads already ran can deadlock
        with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"), initializer=cv2.setNumThreads,
                                 initargs=(1,)) as pool:
            pairs = [p for part in pool.map(_chunk, jobs) for p in part]
    images = np.stack([p[0] for p in pairs]) if pairs else np.zeros((0, size, size), np.uint8)
    return images, [p[1] for p in pairs], class_names(name)


def default_workers() -> int:
    """Processes to use for generation: the CPUs this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def gallery(name: str, out_png: str | Path, size: int = 96, per_class: int = 4, seed: int = 0) -> Path:
    """A PNG grid: one row per class (name on the left), `per_class` test-split examples each."""
    dataset = get(name)
    n = len(dataset.classes)
    label_w, pad = 9 * max(len(c) for c in dataset.classes) + 8, 4
    grid = np.full((n * (size + pad) + pad, label_w + per_class * (size + pad) + pad, 3), 255, np.uint8)
    for label, cls in enumerate(dataset.classes):
        top = pad + label * (size + pad)
        cv2.putText(grid, cls, (4, top + size // 2 + 5), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
        for k in range(per_class):
            img, got = image(name, "test", label + k * n, size, seed)
            assert got == label
            left = label_w + k * (size + pad)
            grid[top:top + size, left:left + size] = img if img.ndim == 3 else img[..., None]
    out = Path(out_png)
    tmp = out.with_name(f".{out.name}.tmp.png")
    if not cv2.imwrite(str(tmp), grid):
        raise UserError(f"{out}: could not write the gallery PNG (does the directory exist?)")
    os.replace(tmp, out)
    return out
