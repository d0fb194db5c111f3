"""Reader Dataset, DataTransformer and the net's Data layer against Caffe's own blobs."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from conftest import CAFFE, rel_err
from convert import caffe_pb2 as pb
from convert.errors import UserError
from convert.layers.base import NetContext
from convert.protoio import read_net, write_binaryproto
from convert.registry import layer_class
from lmdb_tools.reader import LMDBDataset
from lmdb_tools.transformer import DataTransformer

COLOR = dict(scale=0.00390625, crop_size=227, mean_file="lmdb/color256_mean.binaryproto")
GRAY = dict(scale=0.00390625, mean_file="lmdb/gray227_mean.binaryproto")


@pytest.mark.parametrize("db,param,blobs", [("color256_lmdb", COLOR, "blobs_caffenet_color.npz"),
                                            ("gray227_lmdb", GRAY, "blobs_caffenet_gray.npz")])
def test_test_transform_reproduces_caffe_data_blob(db, param, blobs):
    t = DataTransformer(pb.TransformationParameter(**param), pb.TEST, CAFFE)
    ds = LMDBDataset(CAFFE / "lmdb" / db, t)
    ours = np.stack([ds[i][0].numpy() for i in range(len(ds))])
    assert rel_err(ours, np.load(CAFFE / blobs)["data"]) <= 1e-6


def caffe_loop(image, mean, scale, crop, h_off, w_off, mirror):
    """data_transformer.cpp's index arithmetic, pixel by pixel (reference for the vectorised version)."""
    c_n, height, width = image.shape
    out = np.zeros((c_n, crop, crop), np.float32)
    for c in range(c_n):
        for h in range(crop):
            for w in range(crop):
                top_w = crop - 1 - w if mirror else w
                x = np.float32(image[c, h_off + h, w_off + w])
                out[c, h, top_w] = (x - np.float32(mean[c, h_off + h, w_off + w])) * np.float32(scale)
    return out


def test_train_crop_and_mirror_follow_caffe_indexing(tmp_path):
    rng = np.random.default_rng(3)
    image = rng.integers(0, 256, (2, 9, 11), dtype=np.uint8)
    mean = rng.random((2, 9, 11)).astype(np.float32) * 255
    write_binaryproto(tmp_path / "mean.binaryproto", mean[None])
    param = pb.TransformationParameter(scale=0.5, crop_size=5, mirror=True, mean_file="mean.binaryproto")
    t = DataTransformer(param, pb.TRAIN, tmp_path, np.random.default_rng(0))
    seen = set()
    for _ in range(60):
        state = t.rng.bit_generator.state
        out = t(image)
        t.rng.bit_generator.state = state   # replay the draws, in Caffe's order, to know what was chosen
        mirror, h_off, w_off = bool(t.rng.integers(2)), int(t.rng.integers(9 - 5 + 1)), int(t.rng.integers(11 - 5 + 1))
        np.testing.assert_array_equal(out, caffe_loop(image, mean, 0.5, 5, h_off, w_off, mirror))
        seen.add((h_off, w_off, mirror))
    assert len(seen) > 20   # offsets and flips really vary at TRAIN


def test_test_phase_crop_is_centred_and_mean_values_per_channel():
    image = np.arange(2 * 8 * 7, dtype=np.uint8).reshape(2, 8, 7)
    one = DataTransformer(pb.TransformationParameter(crop_size=4, mean_value=[10]), pb.TEST)
    two = DataTransformer(pb.TransformationParameter(crop_size=4, mean_value=[10, 20], scale=2), pb.TEST)
    # (8 - 4) // 2 = 2 rows, (7 - 4) // 2 = 1 column
    np.testing.assert_array_equal(one(image), image[:, 2:6, 1:5].astype(np.float32) - 10)
    expected = (image[:, 2:6, 1:5].astype(np.float32) - np.float32([10, 20])[:, None, None]) * 2
    np.testing.assert_array_equal(two(image), expected)
    with pytest.raises(UserError, match="3 mean_values for 2 channels"):
        DataTransformer(pb.TransformationParameter(mean_value=[1, 2, 3]))(image)


def test_force_color_and_gray_decode_encoded_datums():
    ds = LMDBDataset(CAFFE / "lmdb" / "encoded_lmdb")
    datum = ds.datum(3)   # img03 is a grey PNG stored as 3-channel encoded
    gray = DataTransformer(pb.TransformationParameter(force_gray=True))
    color = DataTransformer(pb.TransformationParameter(force_color=True))
    assert gray(gray.from_datum(datum)).shape == (1, 64, 48)
    assert color(color.from_datum(datum)).shape == (3, 64, 48)
    with pytest.raises(UserError, match="force_color and force_gray"):
        DataTransformer(pb.TransformationParameter(force_color=True, force_gray=True))


def test_float_data_reader_matches_zoo_input():
    ds = LMDBDataset(CAFFE / "zoo_input_lmdb")
    np.testing.assert_array_equal(np.stack([ds[i][0].numpy() for i in range(4)]), np.load(CAFFE / "zoo_input.npy"))


@pytest.mark.parametrize("context", ["fork", "spawn"])
def test_dataloader_workers_read_every_record(context):
    ds = LMDBDataset(CAFFE / "lmdb" / "train_lmdb")
    ds[0]   # an environment opened in the parent must not leak into the workers
    workers = 2 if context == "fork" else 1
    loader = DataLoader(ds, batch_size=8, num_workers=workers, multiprocessing_context=context)
    images, labels = zip(*loader)
    assert torch.cat(labels).tolist() == [ds[i][1] for i in range(len(ds))]
    np.testing.assert_array_equal(torch.cat(images).numpy(), np.stack([ds.array(i) for i in range(len(ds))]))


def data_layer(prototxt: str, phase: int = pb.TEST, seed: int = 0):
    param = read_net(CAFFE / prototxt).layer[0]
    return layer_class("Data")(param, [], NetContext(phase=phase, root=CAFFE, seed=seed))


@pytest.mark.parametrize("prototxt,blobs", [("caffenet_color.prototxt", "blobs_caffenet_color.npz"),
                                            ("caffenet_gray.prototxt", "blobs_caffenet_gray.npz"),
                                            ("zoo.prototxt", "blobs_zoo.npz")])
def test_data_layer_batches_match_caffe(prototxt, blobs):
    import lmdb_tools  # noqa: F401  (registers Data, as the registry does lazily)
    layer = data_layer(prototxt)
    ref = np.load(CAFFE / blobs)["data"]
    assert layer.top_shapes[0] == (4, *ref.shape[1:]) and layer.top_shapes[1] == (4,)
    batches = [layer() for _ in range(len(ref) // 4)]
    assert rel_err(torch.cat([d for d, _ in batches]).numpy(), ref) <= 1e-6
    assert all(d.dtype == torch.float32 and lbl.dtype == torch.float32 for d, lbl in batches)


def test_data_layer_wraps_around_and_cursors_are_independent():
    train, test = data_layer("caffenet_gray.prototxt"), data_layer("caffenet_gray.prototxt")
    labels = [train()[1] for _ in range(4)]   # 16 records read from a 12-record DB
    expected = [0, 1, 2, 3, 4, 0, 1, 2, 3, 4, 0, 1]
    assert torch.cat(labels).tolist() == expected + expected[:4]
    assert test()[1].tolist() == expected[:4]   # its own cursor, still at record 0
    train.seek(10)
    assert train()[1].tolist() == [0, 1, 0, 1]
    train.reset()
    assert train.cursor == 0


def test_data_layer_train_phase_crops_randomly_and_is_seeded():
    a, b = data_layer("caffenet_color.prototxt", pb.TRAIN, 5), data_layer("caffenet_color.prototxt", pb.TRAIN, 5)
    test = data_layer("caffenet_color.prototxt", pb.TEST)
    da, db, dt = a()[0], b()[0], test()[0]
    assert torch.equal(da, db) and not torch.equal(da, dt)


def test_data_layer_missing_source_is_named(tmp_path):
    param = read_net(CAFFE / "caffenet_gray.prototxt").layer[0]
    with pytest.raises(UserError, match="does not exist"):
        layer_class("Data")(param, [], NetContext(root=tmp_path))
