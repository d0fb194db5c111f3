"""`replicate convert`: train_val nets, both routes, artifacts, --fold-bn, and bad input (exit 2, one line)."""
import numpy as np
import onnx
import pytest

from conftest import CAFFE, rel_err
from convert import caffe_pb2 as pb
from convert import protoio
from convert.onnx_check import run_onnx
from replicate.cli import main
from test_onnx import FOLD_NET, fold_net, full_caffenet

COLOR = [str(CAFFE / "caffenet_color.prototxt"), str(CAFFE / "weights" / "caffenet_color_iter_0.caffemodel")]
GRAY = [str(CAFFE / "caffenet_gray.prototxt"), str(CAFFE / "weights" / "caffenet_gray_iter_0.caffemodel")]
REF_COLOR = str(CAFFE / "blobs_caffenet_color.npz")


def run(capsys, *argv):
    code = main(["convert", *map(str, argv)])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("route", ["direct", "torch"])
def test_train_val_net_converts_and_checks_against_caffe(tmp_path, capsys, route):
    out = tmp_path / "m.onnx"
    code, stdout, err = run(capsys, *COLOR, "--to", "onnx", "--route", route, "--outputs", "conv1,pool5,fc7,prob",
                            "--out", out, "--check", "--reference", REF_COLOR)
    assert code == 0, err
    lines = stdout.splitlines()
    assert lines[0] == "ran on: onnxruntime CPUExecutionProvider"
    rows = [ln.split()[0] for ln in lines if ln.split()[-1:] == ["ok"]]
    assert rows == ["conv1", "pool5", "fc7", "prob"]
    model = onnx.load(out)
    assert [o.name for o in model.graph.output] == ["conv1", "pool5", "fc7", "prob"]
    meta = {p.key: p.value for p in model.metadata_props}
    assert '"crop_size": 227' in meta["preprocessing"] and '"route": "%s"' % route in meta["config"]
    ref = dict(np.load(REF_COLOR))
    blobs, _ = run_onnx(model, {"data": ref["data"]})
    assert rel_err(blobs["fc7"], ref["fc7"]) <= 1e-5


def test_pytorch_artifact_from_a_train_val_net_reads_its_input_shape_from_the_data_layer(tmp_path, capsys):
    out = tmp_path / "gray.pt"
    code, stdout, err = run(capsys, *GRAY, "--to", "pytorch", "--out", out, "--check")
    assert code == 0, err
    assert "ran on: the reloaded PyTorch artifact" in stdout and "inputs: N(0, 1), seed 0" in stdout
    from convert.artifact import load_artifact
    net = load_artifact(out)
    assert net.blob_shapes["data"] == (4, 1, 227, 227)  # the Data layer's TEST batch
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gray.pt"]


@pytest.mark.parametrize("route", ["direct", "torch"])
def test_fold_bn_cli_checks_against_the_unfolded_net(tmp_path, capsys, route):
    _, net, _ = fold_net()
    (tmp_path / "fold.prototxt").write_text(FOLD_NET)
    net.save_caffemodel(tmp_path / "fold.caffemodel")
    code, stdout, err = run(capsys, tmp_path / "fold.prototxt", tmp_path / "fold.caffemodel", "--to", "onnx",
                            "--route", route, "--fold-bn", "--out", tmp_path / "f.onnx", "--check")
    assert code == 0, err
    assert [ln.split()[0] for ln in stdout.splitlines() if ln.endswith(" ok")] == ["sum"]
    ops = [n.op_type for n in onnx.load(tmp_path / "f.onnx").graph.node]
    assert ops.count("Conv") == 3 and ops.count("BatchNormalization") <= 1


def test_unconvertible_layer_type_is_named(tmp_path, capsys):
    net = protoio.parse_text_proto(FOLD_NET, pb.NetParameter)
    net.layer.add(name="emb", type="Embed", bottom=["sum"], top=["emb"])
    (tmp_path / "n.prototxt").write_text(str(net))
    _, fnet, _ = fold_net()
    fnet.save_caffemodel(tmp_path / "n.caffemodel")
    code, stdout, err = run(capsys, tmp_path / "n.prototxt", tmp_path / "n.caffemodel", "--to", "onnx",
                            "--out", tmp_path / "n.onnx")
    assert code == 2 and "'Embed'" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "n.onnx").exists()


@pytest.mark.parametrize("route", ["direct", "torch"])
def test_weights_that_do_not_fit_the_prototxt(tmp_path, capsys, route):
    code, _, err = run(capsys, COLOR[0], GRAY[1], "--to", "onnx", "--route", route, "--out", tmp_path / "x.onnx")
    assert code == 2 and "does not fit" in err and "conv1" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "x.onnx").exists()


@pytest.mark.parametrize("to, route", [("onnx", "direct"), ("onnx", "torch"), ("pytorch", "direct")])
def test_output_that_is_no_blob(tmp_path, capsys, to, route):
    code, _, err = run(capsys, *GRAY, "--to", to, "--route", route, "--outputs", "fc7,nosuch",
                       "--out", tmp_path / "x")
    assert code == 2 and "'nosuch' is no blob" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("to", ["onnx", "pytorch"])
def test_failed_check_shows_the_blob_and_writes_nothing(tmp_path, capsys, to):
    ref = dict(np.load(REF_COLOR))
    ref["fc7"] = ref["fc7"] * 1.01
    np.savez(tmp_path / "bad.npz", **ref)
    out = tmp_path / "m.out"
    code, stdout, err = run(capsys, *COLOR, "--to", to, "--outputs", "pool5,fc7", "--out", out, "--check",
                            "--reference", tmp_path / "bad.npz")
    assert code == 2
    verdicts = {ln.split()[0]: ln for ln in stdout.splitlines() if ln.startswith(("pool5", "fc7"))}
    assert verdicts["pool5"].endswith("ok") and "FAIL" in verdicts["fc7"]
    assert "check failed: 1 blob(s)" in err and "fc7" in err and len(err.strip().splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.npz"]


def test_bad_input_shape(tmp_path, capsys):
    code, _, err = run(capsys, *GRAY, "--to", "onnx", "--input-shape", "data=1,x", "--out", tmp_path / "x")
    assert code == 2 and "--input-shape" in err
    code, _, err = run(capsys, *GRAY, "--to", "onnx", "--input-shape", "pixels=1,1,227,227", "--out", tmp_path / "x")
    assert code == 2 and "not input blobs" in err


@pytest.mark.slow
def test_full_caffenet_cli_converts_and_checks(tmp_path, capsys):
    deploy, net, _ = full_caffenet()
    net.save_caffemodel(tmp_path / "caffenet.caffemodel")
    proto = str(CAFFE.parents[2] / "prototxt" / "caffenet_ilsvrc_deploy.prototxt")
    for route in ("direct", "torch"):
        code, stdout, err = run(capsys, proto, tmp_path / "caffenet.caffemodel", "--to", "onnx", "--route", route,
                                "--input-shape", "data=2,3,227,227", "--outputs", "pool5,fc7,prob",
                                "--out", tmp_path / f"{route}.onnx", "--check")
        assert code == 0, err
        assert [ln.split()[0] for ln in stdout.splitlines() if ln.endswith(" ok")] == ["pool5", "fc7", "prob"]
        assert "opencv vs float64" in stdout and "n/a: " not in stdout  # OpenCV loads and runs CaffeNet
