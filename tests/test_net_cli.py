"""`replicate net summary|forward` and bad input through the CLI: one line on stderr, exit code 2."""
import re
from pathlib import Path

import numpy as np
import pytest

from conftest import CAFFE, rel_err
from convert import caffe_pb2 as pb
from convert import protoio
from convert.net import Net, with_inputs
from convert.summary import summarize
from replicate.cli import main

REPO = Path(__file__).resolve().parents[1]


def run_cli(capsys, *argv):
    code = main(list(map(str, argv)))
    out, err = capsys.readouterr()
    return code, out, err


def summary_rows(out: str) -> dict[str, list[str]]:
    """The table's body rows by layer name (between the two rules)."""
    lines = out.strip().splitlines()
    rules = [i for i, line in enumerate(lines) if set(line) == {"-"}]
    return {row.split()[0]: row.split() for row in lines[rules[0] + 1:rules[1]]}


def test_summary_of_ilsvrc_caffenet(capsys):
    code, out, _ = run_cli(capsys, "net", "summary", REPO / "prototxt" / "caffenet_ilsvrc_deploy.prototxt")
    assert code == 0
    assert out.strip().splitlines()[-1].split()[-2] == "60,965,224"
    side = {name: row[2].split("x")[-1] for name, row in summary_rows(out).items()}
    assert [side[k] for k in ("data", "conv1", "pool1", "pool2", "pool5")] == ["227", "55", "27", "13", "6"]


@pytest.mark.parametrize("phase", [pb.TRAIN, pb.TEST])
@pytest.mark.parametrize("dataset,channels,classes", [("ilsvrc", 3, 1000), ("rvl_cdip", 1, 16)])
def test_paper_train_val_nets(phase, dataset, channels, classes):
    net_param = protoio.read_net(REPO / "prototxt" / f"caffenet_{dataset}_train_val.prototxt")
    net = Net(with_inputs(net_param, {"data": (2, channels, 227, 227), "label": (2,)}), phase)
    rows = {r.name: r for r in summarize(net)}
    expected = 60_965_224 - (3 - channels) * 96 * 11 * 11 - (1000 - classes) * 4097
    assert sum(r.params for r in rows.values()) == expected
    assert [rows[k].top_shapes[0][-1] for k in ("conv1", "pool1", "pool2", "pool5")] == [55, 27, 13, 6]
    assert ("accuracy" in rows) == (phase == pb.TEST) and "loss" in rows
    lr = {(b.layer, b.index): (b.lr_mult, b.decay_mult) for b in net.learnable_blobs()}
    assert set(lr.values()) == {(1, 1), (2, 0)} and lr[("fc8", 1)] == (2, 0)
    solver = protoio.read_solver(REPO / "prototxt" / f"caffenet_{dataset}_solver.prototxt")
    assert (solver.momentum, solver.stepsize, solver.gamma) == (pytest.approx(0.9), 150000 if channels == 1 else 100000,
                                                                 pytest.approx(0.1))


def test_summary_counts_match_the_caffemodel():
    model = protoio.read_caffemodel(CAFFE / "weights" / "caffenet_gray_iter_0.caffemodel")
    stored = sum(len(b.data) for layer in model.layer for b in layer.blobs)
    rows = summarize(Net(with_inputs(protoio.read_net(CAFFE / "caffenet_gray.prototxt"), {"data": (2, 1, 227, 227)})))
    assert sum(r.params for r in rows) == stored
    conv1 = next(r for r in rows if r.name == "conv1")
    assert conv1.macs == 55 * 55 * 16 * (1 * 11 * 11)


def test_forward_with_input_matches_caffe(capsys, tmp_path):
    ref = np.load(CAFFE / "blobs_caffenet_gray.npz")
    np.save(tmp_path / "x.npy", ref["data"])
    out = tmp_path / "blobs.npz"
    code, _, err = run_cli(capsys, "net", "forward", CAFFE / "caffenet_gray.prototxt", "--weights",
                           CAFFE / "weights" / "caffenet_gray_iter_0.caffemodel", "--input", f"data={tmp_path / 'x.npy'}",
                           "--blobs", "fc7,prob", "--out", out)
    assert code == 0, err
    got = np.load(out)
    assert set(got.files) == {"fc7", "prob", "__config__"}
    for blob in ("fc7", "prob"):
        assert rel_err(got[blob], ref[blob]) <= 1e-5
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blobs.npz", "x.npy"]  # no temporary left behind


def test_forward_batches_through_the_data_layer_equal_extract_features(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(CAFFE)  # the prototxt's LMDB and mean paths are relative to the working directory
    out = tmp_path / "blobs.npz"
    code, _, err = run_cli(capsys, "net", "forward", "caffenet_color.prototxt", "--weights",
                           "weights/caffenet_color_iter_0.caffemodel", "--batches", "3", "--out", out)
    assert code == 0, err
    got = np.load(out)
    ref = np.load(CAFFE / "blobs_caffenet_color.npz")
    for blob in ref.files:
        assert rel_err(got[blob], ref[blob]) <= 1e-5, blob


# ------------------------------------------------------------------ bad input

DEPLOY = CAFFE / "caffenet_gray.prototxt"


def assert_one_line_error(capsys, argv, *patterns):
    code, _, err = run_cli(capsys, *argv)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    for pattern in patterns:
        assert re.search(pattern, lines[0]), (pattern, lines[0])
    return lines[0]


def test_malformed_prototxt_names_file_line_column(capsys, tmp_path):
    bad = tmp_path / "bad.prototxt"
    bad.write_text('name: "x"\nlayer {\n  name: "data"\n  type: "Input"\n  top "data"\n}\n')
    assert_one_line_error(capsys, ["net", "summary", bad], re.escape(f"{bad}:5:"))


def test_unknown_layer_type_is_named_with_the_supported_ones(capsys, tmp_path):
    bad = tmp_path / "unknown.prototxt"
    bad.write_text('layer { name: "in" type: "Input" top: "x" input_param { shape { dim: 1 dim: 2 } } }\n'
                   'layer { name: "odd" type: "FancyNorm" bottom: "x" top: "y" }\n')
    assert_one_line_error(capsys, ["net", "summary", bad], "'FancyNorm'", "'odd'", "supported: .*Convolution.*Pooling")


def test_bottom_that_no_layer_produces(capsys, tmp_path):
    bad = tmp_path / "bottom.prototxt"
    bad.write_text('layer { name: "in" type: "Input" top: "x" input_param { shape { dim: 1 dim: 2 } } }\n'
                   'layer { name: "relu" type: "ReLU" bottom: "z" top: "y" }\n')
    assert_one_line_error(capsys, ["net", "summary", bad], "'relu'", "'z'")


@pytest.fixture
def deploy_gray(tmp_path):
    """The gray fixture net as a deploy net (Input layer) and a copy of its caffemodel."""
    net = protoio.read_net(DEPLOY)
    protoio.write_text_proto(tmp_path / "deploy.prototxt", with_inputs(net, {"data": (1, 1, 227, 227)}))
    return tmp_path / "deploy.prototxt"


def test_caffemodel_with_wrong_blob_shape(capsys, tmp_path, deploy_gray):
    model = protoio.read_caffemodel(CAFFE / "weights" / "caffenet_gray_iter_0.caffemodel")
    fc7 = next(layer for layer in model.layer if layer.name == "fc7")
    fc7.blobs[1].CopyFrom(protoio.array_to_blob(np.zeros(65, np.float32)))
    protoio.write_caffemodel(tmp_path / "bad.caffemodel", model)
    assert_one_line_error(capsys, ["net", "summary", deploy_gray, "--weights", tmp_path / "bad.caffemodel"],
                          "bad.caffemodel", "'fc7'", "blob 1", r"\(65,\)", r"\(64,\)")


def test_truncated_caffemodel_says_so(capsys, tmp_path, deploy_gray):
    data = (CAFFE / "weights" / "caffenet_gray_iter_0.caffemodel").read_bytes()
    (tmp_path / "cut.caffemodel").write_bytes(data[: len(data) // 2])
    assert_one_line_error(capsys, ["net", "summary", deploy_gray, "--weights", tmp_path / "cut.caffemodel"],
                          "cut.caffemodel", "truncated")


def test_forward_leaves_nothing_behind_on_error(capsys, tmp_path, deploy_gray):
    out = tmp_path / "out" / "blobs.npz"
    assert_one_line_error(capsys, ["net", "forward", deploy_gray, "--weights", tmp_path / "missing.caffemodel",
                                   "--out", out], "missing.caffemodel")
    assert not out.exists() and not (out.parent.exists() and list(out.parent.iterdir()))
