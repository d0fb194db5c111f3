"""convert_imageset and compute_image_mean against the LMDBs and mean files real Caffe wrote."""
from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import lmdb
import numpy as np
import pytest

from conftest import CAFFE
from convert.protoio import read_binaryproto
from lmdb_tools import writer
from lmdb_tools.db import open_readonly
from lmdb_tools.datum import datum_to_array, parse_datum
from lmdb_tools.mean import compute_image_mean, write_mean
from lmdb_tools.writer import ImagesetOptions, convert_imageset
from replicate.cli import main as cli

# The command lines of tests/fixtures/caffe/README.md.
FIXTURE_DBS = {
    "color256_lmdb": ("images/", "list.txt", ImagesetOptions(resize_height=256, resize_width=256)),
    "gray227_lmdb": ("images/", "list.txt", ImagesetOptions(gray=True, resize_height=227, resize_width=227)),
    "train_lmdb": ("train/", "train_list.txt", ImagesetOptions(gray=True)),
    "encoded_lmdb": ("images/", "list.txt", ImagesetOptions(encoded=True, encode_type="png",
                                                            resize_height=64, resize_width=48)),
}


def records(db: Path) -> list[tuple[bytes, bytes]]:
    with open_readonly(db).begin() as txn:   # the process's one read-only, lock-free environment
        return list(txn.cursor())


def test_fixture_lmdb_opens_without_lock_file():
    assert not (CAFFE / "lmdb" / "color256_lmdb" / "lock.mdb").exists()
    assert len(records(CAFFE / "lmdb" / "color256_lmdb")) == 12


@pytest.mark.parametrize("name", sorted(FIXTURE_DBS))
def test_writer_reproduces_caffe_lmdb(name, tmp_path):
    folder, list_name, opts = FIXTURE_DBS[name]
    convert_imageset(f"{CAFFE / folder}/", CAFFE / list_name, tmp_path / name, opts, progress=False)
    ours, caffe = records(tmp_path / name), records(CAFFE / "lmdb" / name)
    assert [k for k, _ in ours] == [k for k, _ in caffe]
    if name == "encoded_lmdb":   # PNG bytes depend on the zlib build: compare the pixels
        for (key, a), (_, b) in zip(ours, caffe):
            da, db = parse_datum(a, key), parse_datum(b, key)
            assert da.encoded and db.encoded and da.label == db.label
            assert (da.channels, da.height, da.width) == (db.channels, db.height, db.width)
            np.testing.assert_array_equal(datum_to_array(da), datum_to_array(db))
    else:
        assert [v for _, v in ours] == [v for _, v in caffe]


def test_caffe_lmdb_holds_opencv_pixels():
    """Independent of our writer: the stored arrays are OpenCV's BGR pixels in CHW order."""
    (key, value), = records(CAFFE / "lmdb" / "color256_lmdb")[1:2]
    image = cv2.resize(cv2.imread(str(CAFFE / "images" / "img01.png")), (256, 256))
    np.testing.assert_array_equal(datum_to_array(parse_datum(value, key)), image.transpose(2, 0, 1))


@pytest.mark.parametrize("name", ["color256", "gray227"])
def test_mean_matches_compute_image_mean(name, tmp_path):
    ours = compute_image_mean(CAFFE / "lmdb" / f"{name}_lmdb", progress=False)
    caffe = read_binaryproto(CAFFE / "lmdb" / f"{name}_mean.binaryproto")
    assert caffe.shape == (1, *ours.shape)
    assert np.abs(ours - caffe[0]).max() <= 1e-5 * np.abs(caffe).max()
    write_mean(CAFFE / "lmdb" / f"{name}_lmdb", tmp_path / "mean.binaryproto", progress=False)
    assert (tmp_path / "mean.binaryproto").read_bytes() == (CAFFE / "lmdb" / f"{name}_mean.binaryproto").read_bytes()


def test_shuffle_is_seeded_permutation(tmp_path):
    def keys(seed, name):
        opts = ImagesetOptions(gray=True, shuffle=True, seed=seed)
        convert_imageset(f"{CAFFE}/train/", CAFFE / "train_list.txt", tmp_path / name, opts, progress=False)
        return [k.decode() for k, _ in records(tmp_path / name)]
    a, b, c = keys(1, "a"), keys(1, "b"), keys(2, "c")
    assert a == b and a != c
    paths = sorted(k.split("_", 1)[1] for k in a)
    assert paths == sorted(line.split()[0] for line in (CAFFE / "train_list.txt").read_text().splitlines())
    assert [int(k[:8]) for k in a] == list(range(64))


def _tree_with_bad_lines(tmp_path: Path, lines: list[str]) -> tuple[str, Path]:
    root = tmp_path / "imgs"
    root.mkdir()
    for name in ("t00.png", "t01.png", "t02.png"):
        shutil.copy(CAFFE / "train" / name, root / name)
    (root / "broken.png").write_bytes(b"not a png")
    list_file = tmp_path / "list.txt"
    list_file.write_text("\n".join(lines) + "\n")
    return f"{root}/", list_file


def _leftovers(tmp_path: Path) -> list[str]:
    return sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".") or p.name == "db")


@pytest.mark.parametrize("bad_line,message", [
    ("missing.png 1", "list.txt:2: cannot read image"),
    ("broken.png 1", "not an image OpenCV can read"),
    ("t01.png one", "list.txt:2: label 'one' is not an integer"),
])
def test_bad_list_line_names_line_and_leaves_nothing(bad_line, message, tmp_path, capsys):
    root, list_file = _tree_with_bad_lines(tmp_path, ["t00.png 0", bad_line, "t02.png 2"])
    assert cli(["lmdb", "create", root, str(list_file), str(tmp_path / "db")]) == 2
    assert message in capsys.readouterr().err
    assert _leftovers(tmp_path) == []


def test_skip_bad_skips_and_reports(tmp_path, capsys):
    root, list_file = _tree_with_bad_lines(tmp_path, ["t00.png 0", "missing.png 1", "broken.png 1", "t02.png 2"])
    assert cli(["lmdb", "create", root, str(list_file), str(tmp_path / "db"), "--gray", "--skip-bad"]) == 0
    assert "skipped 2 unreadable images (list lines 2, 3)" in capsys.readouterr().out
    # Caffe numbers keys by list position, so skipped lines leave gaps.
    assert [k for k, _ in records(tmp_path / "db")] == [b"00000000_t00.png", b"00000003_t02.png"]


def test_existing_target_refused_unless_overwrite(tmp_path, capsys):
    root, list_file = _tree_with_bad_lines(tmp_path, ["t00.png 0"])
    (tmp_path / "db").mkdir()
    (tmp_path / "db" / "keep").write_text("x")
    assert cli(["lmdb", "create", root, str(list_file), str(tmp_path / "db")]) == 2
    assert "already exists; pass --overwrite" in capsys.readouterr().err
    assert (tmp_path / "db" / "keep").exists()
    assert cli(["lmdb", "create", root, str(list_file), str(tmp_path / "db"), "--overwrite"]) == 0
    assert len(records(tmp_path / "db")) == 1 and not (tmp_path / "db" / "keep").exists()


def test_record_that_is_not_a_datum_names_key(tmp_path, capsys):
    env = lmdb.open(str(tmp_path / "junk"), map_size=1 << 20)
    with env.begin(write=True) as txn:
        txn.put(b"00000000_ok", parse_datum(records(CAFFE / "lmdb" / "train_lmdb")[0][1], "k").SerializeToString())
        txn.put(b"00000001_bad", b"\xff\xff\xff garbage")
    env.close()
    assert cli(["lmdb", "inspect", str(tmp_path / "junk")]) == 2
    assert "record 00000001_bad: not a Caffe Datum" in capsys.readouterr().err
    assert cli(["lmdb", "mean", str(tmp_path / "junk"), str(tmp_path / "m.binaryproto")]) == 2
    assert not (tmp_path / "m.binaryproto").exists()


def test_path_that_is_not_an_lmdb(tmp_path, capsys):
    assert cli(["lmdb", "inspect", str(CAFFE / "images")]) == 2
    assert "is not an LMDB" in capsys.readouterr().err
    assert cli(["lmdb", "mean", str(tmp_path / "nothing"), str(tmp_path / "m.binaryproto")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_check_size_rejects_mixed_sizes(tmp_path, capsys):
    assert cli(["lmdb", "create", f"{CAFFE}/images/", str(CAFFE / "list.txt"), str(tmp_path / "db"),
                "--check_size"]) == 2
    assert "list.txt:2: image 'img01.png'" in capsys.readouterr().err
    assert _leftovers(tmp_path) == []


def test_interrupted_build_resumes(tmp_path, monkeypatch):
    monkeypatch.setattr(writer, "COMMIT_EVERY", 8)
    real, calls = writer.make_record, []

    def interrupt_at_20(*args):
        calls.append(args[2])
        if len(calls) == 20:
            raise KeyboardInterrupt
        return real(*args)
    opts = ImagesetOptions(gray=True)
    monkeypatch.setattr(writer, "make_record", interrupt_at_20)
    with pytest.raises(KeyboardInterrupt):
        convert_imageset(f"{CAFFE}/train/", CAFFE / "train_list.txt", tmp_path / "db", opts, progress=False)
    assert not (tmp_path / "db").exists() and (tmp_path / ".db.partial").exists()
    calls.clear()
    monkeypatch.setattr(writer, "make_record", real)
    monkeypatch.setattr(writer, "make_record", lambda *a: calls.append(a[2]) or real(*a))
    convert_imageset(f"{CAFFE}/train/", CAFFE / "train_list.txt", tmp_path / "db", opts, progress=False)
    assert calls[0] == 16   # resumed after the last commit (2 x 8 records), not from 0
    assert records(tmp_path / "db") == records(CAFFE / "lmdb" / "train_lmdb")
    assert not (tmp_path / ".db.partial").exists()


def test_parallel_workers_write_the_same_db(tmp_path):
    _, _, opts = FIXTURE_DBS["gray227_lmdb"]
    convert_imageset(f"{CAFFE}/images/", CAFFE / "list.txt", tmp_path / "db", opts, workers=2, progress=False)
    assert records(tmp_path / "db") == records(CAFFE / "lmdb" / "gray227_lmdb")


def test_cli_create_mean_inspect(tmp_path, capsys):
    db = tmp_path / "c"
    assert cli(["lmdb", "create", f"{CAFFE}/images/", str(CAFFE / "list.txt"), str(db),
                "--resize_height", "256", "--resize_width", "256"]) == 0
    assert records(db) == records(CAFFE / "lmdb" / "color256_lmdb")
    assert cli(["lmdb", "mean", str(db), str(tmp_path / "m.binaryproto")]) == 0
    out = capsys.readouterr().out
    caffe = read_binaryproto(CAFFE / "lmdb" / "color256_mean.binaryproto")[0]
    assert f"mean_value channel 2: {caffe[2].mean(dtype=np.float64):.6f}" in out
    assert cli(["lmdb", "inspect", str(CAFFE / "lmdb" / "encoded_lmdb"), "--grid", str(tmp_path / "g.png")]) == 0
    out = capsys.readouterr().out
    assert "12 records" in out and "encoded x12" in out and "3x64x48 x12" in out
    assert "labels: 0: 3, 1: 3, 2: 2, 3: 2, 4: 2" in out and "00000000_img00.png" in out
    assert cv2.imread(str(tmp_path / "g.png")).shape[2] == 3
