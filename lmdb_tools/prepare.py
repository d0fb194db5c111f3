"""The paper's datasets from disk -> LMDBs at 227x227 and the Crop nets' sizes, plus mean files.

Expected layouts (paths in list files are relative to the image folder named here):
- rvl-cdip, as distributed: R/images/... and R/labels/{train,val,test}.txt, lines `path label`,
  labels 0..15; read as grey.
- ilsvrc, as Caffe's ilsvrc12 aux files: R/train.txt with images under R/train/, R/val.txt with
  images under R/val/ (lines `path label`, labels 0..999); read as colour (BGR).
- andoc: R/images/... and one list file per split R/labels/<split>.txt, lines `path label`
  (use label 0 when there is none); read as grey.
Output in DIR: `<split>_<S>_lmdb` for S in sizes (square resize, as convert_imageset
--resize_height S --resize_width S), and `train_<S>_mean.binaryproto` (every split's mean when there
is no train split). A finished DB is never rebuilt; an interrupted one resumes from its last commit
(see writer.convert_imageset), so re-running the same command continues a stopped run.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from convert.errors import UserError
from convert.protoio import atomic_write
from lmdb_tools.layout import PAPER_SIZES, lmdb_path, mean_path
from lmdb_tools.mean import write_mean
from lmdb_tools.writer import ImagesetOptions, convert_imageset, read_list



@dataclass(frozen=True)
class Split:
    """One split of a dataset: its list file, the folder its paths are relative to."""
    name: str
    list_file: Path
    image_root: Path


@dataclass(frozen=True)
class Layout:
    """A dataset as found on disk."""
    name: str
    gray: bool
    classes: int | None
    splits: tuple[Split, ...]


def find_layout(dataset: str, root: str | os.PathLike) -> Layout:
    """Check root holds the dataset in its expected layout; UserError saying what was expected."""
    root = Path(root)
    if dataset == "rvl-cdip":
        expected = f"{root}/images/ and {root}/labels/{{train,val,test}}.txt (RVL-CDIP as distributed)"
        splits = [Split(s, root / "labels" / f"{s}.txt", root / "images") for s in ("train", "val", "test")]
        _require([root / "images", *(s.list_file for s in splits)], expected)
        return Layout("rvl-cdip", gray=True, classes=16, splits=tuple(splits))
    if dataset == "ilsvrc":
        expected = f"{root}/train.txt with images in {root}/train/, {root}/val.txt with images in {root}/val/"
        splits = [Split(s, root / f"{s}.txt", root / s) for s in ("train", "val")]
        _require([p for s in splits for p in (s.list_file, s.image_root)], expected)
        return Layout("ilsvrc", gray=False, classes=1000, splits=tuple(splits))
    if dataset == "andoc":
        expected = f"{root}/images/ and one or more list files {root}/labels/<split>.txt"
        lists = sorted((root / "labels").glob("*.txt")) if (root / "labels").is_dir() else []
        _require([root / "images", *lists] if lists else [root / "labels" / "<split>.txt"], expected)
        splits = [Split(p.stem, p, root / "images") for p in lists]
        return Layout("andoc", gray=True, classes=None, splits=tuple(splits))
    raise UserError(f"unknown dataset {dataset!r}; expected rvl-cdip, ilsvrc or andoc")


def _require(paths: list[Path], expected: str) -> None:
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        raise UserError(f"{missing[0]}: missing; expected {expected}")


def prepare(dataset: str, root: str | os.PathLike, out: str | os.PathLike,
            sizes: tuple[int, ...] = PAPER_SIZES, workers: int | None = None,
            overwrite: bool = False, progress: bool = True) -> dict:
    """Write every split at every size, and the mean files; return what was built and skipped."""
    layout = find_layout(dataset, root)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    workers = workers or os.cpu_count() or 1
    for split in layout.splits:
        _check_labels(split, layout)
    mean_splits = [s for s in layout.splits if s.name == "train"] or list(layout.splits)
    report = {"built": [], "kept": []}
    for size in sizes:
        opts = ImagesetOptions(resize_height=size, resize_width=size, gray=layout.gray)
        for split in layout.splits:
            db = lmdb_path(out, split.name, size)
            if db.exists() and not overwrite:
                report["kept"].append(db.name)
            else:
                convert_imageset(f"{split.image_root}/", split.list_file, db, opts, overwrite=overwrite,
                                 workers=workers, progress=progress)
                report["built"].append(db.name)
            mean_file = mean_path(out, split.name, size)
            if split in mean_splits and (overwrite or not mean_file.exists()):
                write_mean(db, mean_file, progress=progress)
                report["built"].append(mean_file.name)
    manifest = {"dataset": layout.name, "root": str(root), "gray": layout.gray, "sizes": list(sizes),
                "splits": {s.name: str(s.list_file) for s in layout.splits},
                "resize": "cv::resize INTER_LINEAR to S x S (convert_imageset)", **report}
    atomic_write(out / "prepare.json", json.dumps(manifest, indent=1).encode())
    return report


def _check_labels(split: Split, layout: Layout) -> None:
    """Labels must be class indices of the dataset (catches a wrong or shifted list early)."""
    if layout.classes is None:
        return
    for entry in read_list(split.list_file):
        if not 0 <= entry.label < layout.classes:
            raise UserError(f"{split.list_file}:{entry.line_no}: label {entry.label} is outside "
                            f"0..{layout.classes - 1} ({layout.name} has {layout.classes} classes)")
