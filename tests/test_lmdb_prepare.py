"""`replicate data prepare` on small trees in each dataset's layout, built here (no downloads)."""
from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from convert.protoio import read_binaryproto
from lmdb_tools.prepare import prepare
from lmdb_tools.reader import LMDBDataset
from replicate.cli import main as cli

SIZES = (227, 240)


def write_images(folder: Path, names: list[str], color: bool, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    for name in names:
        shape = (60 + len(name), 45, 3) if color else (70, 50 + len(name))
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        assert cv2.imwrite(str(folder / name), rng.integers(0, 256, shape, dtype=np.uint8))


def rvl_cdip_tree(root: Path) -> Path:
    splits = {"train": ["imagesa/a/a/1.tif", "imagesb/b/2.tif", "imagesc/3.tif"],
              "val": ["imagesd/4.tif"], "test": ["imagese/5.tif", "imagese/6.tif"]}
    (root / "labels").mkdir(parents=True)
    for split, names in splits.items():
        write_images(root / "images", names, color=False)
        (root / "labels" / f"{split}.txt").write_text("".join(f"{n} {i * 5 % 16}\n" for i, n in enumerate(names)))
    return root


def test_prepare_rvl_cdip_writes_every_split_size_and_mean(tmp_path):
    root = rvl_cdip_tree(tmp_path / "rvl")
    report = prepare("rvl-cdip", root, tmp_path / "out", SIZES, workers=2, progress=False)
    out = tmp_path / "out"
    assert sorted(report["built"]) == sorted([f"{s}_{n}_lmdb" for s in ("train", "val", "test") for n in SIZES]
                                             + [f"train_{n}_mean.binaryproto" for n in SIZES])
    ds = LMDBDataset(out / "train_240_lmdb")
    assert len(ds) == 3 and [ds[i][1] for i in range(3)] == [0, 5, 10]
    image = cv2.imread(str(root / "images" / "imagesb/b/2.tif"), cv2.IMREAD_GRAYSCALE)
    np.testing.assert_array_equal(ds.array(1)[0], cv2.resize(image, (240, 240)))
    assert ds.keys[1] == b"00000001_imagesb/b/2.tif"
    mean = read_binaryproto(out / "train_227_mean.binaryproto")
    stack = np.stack([LMDBDataset(out / "train_227_lmdb").array(i) for i in range(3)]).astype(np.float64)
    assert mean.shape == (1, 1, 227, 227) and np.abs(mean[0] - stack.mean(0)).max() < 1e-4
    assert not (out / "val_227_mean.binaryproto").exists()


def test_prepare_resumes_and_keeps_finished_dbs(tmp_path):
    root = rvl_cdip_tree(tmp_path / "rvl")
    out = tmp_path / "out"
    prepare("rvl-cdip", root, out, (227,), workers=1, progress=False)
    shutil.rmtree(out / "val_227_lmdb")   # as if the run had stopped before this one
    kept = (out / "train_227_lmdb" / "data.mdb").stat().st_mtime_ns
    report = prepare("rvl-cdip", root, out, (227,), workers=1, progress=False)
    assert report["built"] == ["val_227_lmdb"]
    assert (out / "train_227_lmdb" / "data.mdb").stat().st_mtime_ns == kept


def test_prepare_ilsvrc_colour_and_andoc_lists(tmp_path):
    root = tmp_path / "ilsvrc"
    write_images(root / "train", ["n01/a.png", "n02/b.png"], color=True)
    write_images(root / "val", ["v1.png"], color=True)
    (root / "train.txt").write_text("n01/a.png 0\nn02/b.png 999\n")
    (root / "val.txt").write_text("v1.png 7\n")
    prepare("ilsvrc", root, tmp_path / "ilsvrc_out", (227,), workers=1, progress=False)
    ds = LMDBDataset(tmp_path / "ilsvrc_out" / "val_227_lmdb")
    assert ds.datum(0).channels == 3 and ds[0][1] == 7
    assert read_binaryproto(tmp_path / "ilsvrc_out" / "train_227_mean.binaryproto").shape == (1, 3, 227, 227)

    andoc = tmp_path / "andoc"
    write_images(andoc / "images", ["p1.png", "p2.jpg"], color=True)
    (andoc / "labels").mkdir()
    (andoc / "labels" / "measure.txt").write_text("p1.png 0\np2.jpg 0\n")
    assert cli(["data", "prepare", "andoc", "--root", str(andoc), "--out", str(tmp_path / "andoc_out"),
                "--sizes", "227", "--workers", "1"]) == 0
    ds = LMDBDataset(tmp_path / "andoc_out" / "measure_227_lmdb")
    assert len(ds) == 2 and ds.datum(1).channels == 1   # grey, as the paper's ANDOC
    assert (tmp_path / "andoc_out" / "measure_227_mean.binaryproto").exists()


@pytest.mark.parametrize("dataset,expected", [("rvl-cdip", "labels/{train,val,test}.txt"),
                                              ("ilsvrc", "train.txt with images in"),
                                              ("andoc", "list files")])
def test_wrong_layout_says_what_was_expected(dataset, expected, tmp_path, capsys):
    (tmp_path / "images").mkdir()
    assert cli(["data", "prepare", dataset, "--root", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "missing; expected" in err and expected in err


def test_label_outside_the_classes_names_the_line(tmp_path, capsys):
    root = rvl_cdip_tree(tmp_path / "rvl")
    (root / "labels" / "val.txt").write_text("imagesd/4.tif 16\n")
    assert cli(["data", "prepare", "rvl-cdip", "--root", str(root), "--out", str(tmp_path / "o")]) == 2
    assert "val.txt:1: label 16 is outside 0..15" in capsys.readouterr().err
