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
from lmdb_tools.datum import image_to_datum
from lmdb_tools.db import open_writable
from lmdb_tools.reader import LMDBBatches, LMDBDataset
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


def color_transformer(phase, **extra) -> DataTransformer:
    return DataTransformer(pb.TransformationParameter(**COLOR, **extra), phase, CAFFE)


def finished(batches: LMDBBatches, items) -> tuple[np.ndarray, np.ndarray]:
    pairs = [batches.finish(item) for item in items]
    return torch.cat([d for d, _ in pairs]).numpy(), torch.cat([lbl for _, lbl in pairs]).numpy()


@pytest.mark.parametrize("db,param,blobs", [("color256_lmdb", COLOR, "blobs_caffenet_color.npz"),
                                            ("gray227_lmdb", GRAY, "blobs_caffenet_gray.npz")])
def test_batches_at_test_equal_the_transformer_record_by_record(db, param, blobs):
    records = LMDBDataset(CAFFE / "lmdb" / db, DataTransformer(pb.TransformationParameter(**param), pb.TEST, CAFFE))
    batches = LMDBBatches(CAFFE / "lmdb" / db, 5, DataTransformer(pb.TransformationParameter(**param), pb.TEST, CAFFE))
    assert len(batches) == 3 and [len(batches.indices(i)) for i in range(3)] == [5, 5, 2]
    images, labels = finished(batches, batches)
    assert images.dtype == np.float32 and batches[0][0].dtype == np.uint8   # uint8 crops are handed over
    np.testing.assert_array_equal(images, np.stack([records[i][0].numpy() for i in range(len(records))]))
    assert labels.tolist() == [records[i][1] for i in range(len(records))]
    assert rel_err(images, np.load(CAFFE / blobs)["data"]) <= 1e-6
    with pytest.raises(IndexError):
        batches[3]


def test_batches_at_train_use_the_documented_order_and_draws():
    db = CAFFE / "lmdb" / "color256_lmdb"
    batches = LMDBBatches(db, 4, color_transformer(pb.TRAIN, mirror=True), shuffle=True, seed=7)
    images, labels = finished(batches, batches)
    order = np.concatenate([batches.indices(i) for i in range(len(batches))])
    assert sorted(order) == list(range(12)) and order.tolist() != list(range(12))
    records, reference = LMDBDataset(db), color_transformer(pb.TRAIN, mirror=True)
    expected = []
    for i in range(len(batches)):
        reference.reseed([7, 0, i])   # the documented stream of batch i, drawn record by record
        expected += [reference(reference.from_datum(records.datum(int(k)))) for k in batches.indices(i)]
    np.testing.assert_array_equal(images, np.stack(expected))
    assert labels.tolist() == [records.datum(int(k)).label for k in order]
    draws = np.concatenate([batches[i][2] for i in range(len(batches))])
    assert len({tuple(d) for d in draws}) > 6 and set(draws[:, 2]) == {0, 1}   # offsets and flips vary
    other = LMDBBatches(db, 4, color_transformer(pb.TRAIN, mirror=True), shuffle=True, seed=8)
    assert not np.array_equal(finished(other, other)[0], images)
    batches.set_epoch(1)
    assert not np.array_equal(finished(batches, batches)[0], images)


@pytest.mark.parametrize("context", ["fork", "spawn"])
def test_batches_from_workers_equal_batches_in_process(context):
    db = CAFFE / "lmdb" / "color256_lmdb"
    batches = LMDBBatches(db, 3, color_transformer(pb.TRAIN, mirror=True), shuffle=True, seed=1)
    batches[0]   # an environment opened in the parent must not leak into the workers
    here = [(d.numpy(), lbl.numpy()) for d, lbl in batches.loader()]
    workers = 2 if context == "fork" else 1
    there = [(d.numpy(), lbl.numpy()) for d, lbl in batches.loader(workers, multiprocessing_context=context)]
    assert len(there) == len(here) == 4
    for (a, la), (b, lb) in zip(here, there):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(la, lb)
    if context == "fork":   # a plain DataLoader (tensors via default_convert) gives the same batches
        plain = DataLoader(batches, batch_size=None, num_workers=1, multiprocessing_context=context)
        np.testing.assert_array_equal(finished(batches, plain)[0], np.concatenate([a for a, _ in here]))


def test_batches_of_mixed_sizes_are_refused(tmp_path):
    env = open_writable(tmp_path / "db")
    with env.begin(write=True) as txn:
        for i, size in enumerate([8, 8, 9]):
            txn.put(f"{i:08d}".encode(), image_to_datum(np.zeros((size, size), np.uint8), 0).SerializeToString())
    env.close()
    batches = LMDBBatches(tmp_path / "db", 3, DataTransformer())
    with pytest.raises(UserError, match=r"image 2 of the batch is \(1, 9, 9\)"):
        batches[0]
    cropped = LMDBBatches(tmp_path / "db", 3, DataTransformer(pb.TransformationParameter(crop_size=8)))
    assert cropped[0][0].shape == (3, 1, 8, 8)


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
