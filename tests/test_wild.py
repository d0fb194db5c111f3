"""Real deploy prototxts from the wild (tests/fixtures/wild/, sources in SOURCES.md): each parses, runs
on random weights, agrees with OpenCV's Caffe importer where OpenCV runs it, and converts to ONNX with a
passing float64-rule check; nets we cannot run fail with one line naming the layer, its type and why.
`make test` runs small inputs of the light nets; the slow tier runs every net at its declared size."""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from convert import protoio
from convert.deploy import deploy_net, prune_to_outputs
from convert.errors import UserError
import convert.layers  # noqa: F401  (registers the layer types)
from convert.layers.base import POOLING_CAFFE, POOLING_DARKNET
from convert.registry import LAYERS
from convert.net import Net
from convert.onnx_check import check_onnx, opencv_blobs
from convert.onnx_direct import to_onnx
from test_net_opencv import randomize_unfilled

WILD = Path(__file__).parent / "fixtures" / "wild"
SSD_OUTPUTS = ("mbox_loc", "mbox_conf_flatten", "mbox_priorbox")


@dataclass(frozen=True)
class Case:
    """How a corpus net is run: `small` input shapes for make test (None: slow tier only)."""
    small: dict | None = None
    outputs: tuple[str, ...] = ()   # ONNX outputs, where the net ends in a layer ONNX cannot express
    cut: tuple[str, ...] = ()       # run only up to these blobs (before a Python layer)
    opencv: str = ""                # "" OpenCV must agree; else why it is not compared (a fragment of its note)
    error: str = ""                 # the expected one-line failure (regex)
    full: dict | None = None        # full-size input shapes where the file declares none
    pooling: str = POOLING_CAFFE    # the pooling size rule of the Caffe the net was made for


CASES = {
    "lenet": Case({"data": (2, 1, 28, 28)}),
    "cifar10_quick": Case({}),
    "cifar10_full": Case({}),
    "caffenet": Case({"data": (1, 3, 99, 99)}),
    "bvlc_alexnet_v1": Case({"data": (1, 3, 99, 99)}),
    "rcnn_ilsvrc13": Case(),
    "flickr_style": Case(),
    "squeezenet_v1.0": Case({"data": (1, 3, 64, 64)}),
    "squeezenet_v1.1": Case({"data": (1, 3, 64, 64)}),
    "mobilenet_v1": Case({"data": (1, 3, 64, 64)}),
    "mobilenet_v2": Case({"data": (1, 3, 64, 64)}),
    "resnet101": Case(),
    "vgg16": Case({"data": (1, 3, 32, 32)}),
    # OpenCV 4.14's importer rewrites Axpy as bottom[0] * bottom[2] + bottom[1]; SENet's layer scales
    # bottom[1] (test_layers_fork.py shows both on one layer), so OpenCV is not a reference here.
    "se_resnet50": Case(opencv="skip: OpenCV's Axpy scales bottom[2]"),
    "shufflenet_g3": Case({"data": (1, 3, 64, 64)}),
    "densenet121": Case(opencv="OpenCV cannot"),
    "mobilenet_ssd": Case({}, outputs=SSD_OUTPUTS),
    "opencv_face_ssd": Case({}, outputs=SSD_OUTPUTS),
    "segnet_basic": Case({"data": (1, 3, 40, 48)}, opencv="OpenCV cannot", full={"data": (1, 3, 360, 480)}),  # CamVid
    "pspnet50_ade20k": Case(opencv="OpenCV cannot"),
    "fcn32s_voc": Case(),
    "colorization_v2": Case(outputs=("class8_ab",)),
    "fast_rcnn_zf": Case(),
    "faster_rcnn_zf": Case({"data": (1, 3, 96, 96)}, cut=("rpn_cls_prob_reshape", "rpn_bbox_pred"),
                           opencv="OpenCV cannot"),
    "fast_rcnn_vgg_cnn_s_v1": Case({}, error=r"fast_rcnn_vgg_cnn_s_v1\.prototxt:\d+:\d+: .*ROI_POOLING"),
    "xception": Case({"data": (1, 3, 75, 75)}),   # sides 299 - 32k: its stride-2 branches meet only there
    "resnext50_32x4d": Case({"data": (1, 3, 64, 64)}, opencv="kernel[i] > 0"),   # OpenCV cannot; cause not found yet
    "inception_v3": Case({"data": (1, 3, 139, 139)}),
    "yolov3": Case({"data": (1, 3, 64, 64)}, opencv="OpenCV cannot"),   # no Upsample in OpenCV
    # Darknet2Caffe's fork sizes its 2x2 stride-1 pooling as Darknet does; OpenCV's importer as BVLC does.
    "yolov3_tiny": Case({"data": (1, 3, 64, 64)}, pooling=POOLING_DARKNET,
                        opencv="skip: OpenCV's Caffe importer sizes pooling as BVLC does"),
}
# The whole Faster R-CNN net: its proposal layer is Python.
PYTHON_ERROR = (r"layer 'proposal' \(Python\): .*rpn\.proposal_layer\.ProposalLayer.*--outputs")


pytestmark = pytest.mark.usefixtures("one_thread")   # each 2-thread conv2d waited ~45 ms for its partner here


def fix_bn(net: Net, seed: int) -> None:
    """Fork BN layers get plausible random scale, shift and statistics (a deploy leaves them 0)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for lp, layer in net.named_layers():
            if lp.type == "BN":
                layer.scale.copy_(1 + 0.1 * torch.randn(layer.scale.shape, generator=gen))
                layer.shift.copy_(0.1 * torch.randn(layer.shift.shape, generator=gen))
                if "mean" in layer.blob_names:
                    layer.mean.copy_(0.1 * torch.randn(layer.mean.shape, generator=gen))
                    layer.variance.copy_(0.5 + torch.rand(layer.variance.shape, generator=gen))


def random_inputs(net: Net, seed: int) -> dict[str, np.ndarray]:
    """Normal images; rois (R, 5) as valid boxes [0, x1, y1, x2, y2] inside the image."""
    rng = np.random.default_rng(seed)
    out = {}
    for b in net.input_blobs:
        shape = net.blob_shapes[b]
        if b == "rois":
            side = min(net.blob_shapes["data"][2:])
            corners = np.sort(rng.uniform(0, side - 1, (shape[0], 2, 2)), axis=1)
            out[b] = np.concatenate([np.zeros((shape[0], 1)), corners[:, 0], corners[:, 1]], 1).astype(np.float32)
        else:
            out[b] = rng.standard_normal(shape).astype(np.float32)
    return out


def build(name: str, shapes: dict, case: Case, seed: int = 1) -> tuple:
    """(deploy, net with random weights, weights by layer)."""
    deploy = deploy_net(protoio.read_net(WILD / f"{name}.prototxt"), shapes)
    if case.cut:
        deploy = prune_to_outputs(deploy, list(case.cut))
    net = Net(deploy, seed=seed, pooling=case.pooling)
    randomize_unfilled(net, seed=seed + 1)
    fix_bn(net, seed + 2)
    weights = {lp.name: layer.blob_arrays() for lp, layer in net.named_layers() if layer.blob_names}
    return deploy, net, weights


def check_case(name: str, shapes: dict, tmp_path: Path) -> None:
    """Run, compare with OpenCV and convert one corpus net; or see its expected one-line failure."""
    case = CASES[name]
    if case.error:
        with pytest.raises(UserError) as err:
            build(name, shapes, case)
        assert "\n" not in str(err.value) and re.search(case.error, str(err.value)), str(err.value)
        return
    deploy, net, weights = build(name, shapes, case)
    inputs = random_inputs(net, seed=0)
    cm = tmp_path / "w.caffemodel"
    net.save_caffemodel(cm)
    model = to_onnx(deploy, weights, outputs=list(case.outputs or case.cut) or None, pooling=case.pooling)
    opencv = None if case.opencv.startswith("skip") else (deploy, cm)
    report = check_onnx(model, net, inputs, opencv=opencv)
    assert report.ok, f"{name}\n{report.table()}"
    if not case.opencv:
        assert not report.notes and all(r.diffs["opencv_vs_f64"] is not None for r in report.rows), report.table()
    elif opencv:
        assert any(case.opencv in n for n in report.notes), report.table()


FAST = [n for n, c in CASES.items() if c.small is not None]


@pytest.mark.parametrize("name", FAST)
def test_corpus_net_small(name, tmp_path):
    check_case(name, CASES[name].small, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("name", list(CASES))
def test_corpus_net_full_size(name, tmp_path):
    check_case(name, CASES[name].full or {}, tmp_path)


def test_every_corpus_file_has_a_case_and_a_source():
    files = sorted(p.stem for p in WILD.glob("*.prototxt"))
    assert files == sorted(CASES) and len(files) >= 25
    sources = (WILD / "SOURCES.md").read_text()
    for stem in files:
        assert re.search(rf"^\| `{re.escape(stem)}\.prototxt` \|.*\| [0-9a-f]{{40}} \|", sources, re.M), stem


@pytest.mark.parametrize("name", [n for n, c in CASES.items() if c.small is None])
def test_heavy_corpus_nets_parse_with_known_layers(name):
    """The nets run only in the slow tier still parse here, and every layer type is one we run."""
    net_param = protoio.read_net(WILD / f"{name}.prototxt")
    unknown = {lp.type for lp in net_param.layer} - set(LAYERS)
    assert not unknown and len(net_param.layer) > 10


def test_python_layer_is_named_and_outputs_cut_before_it():
    net_param = deploy_net(protoio.read_net(WILD / "faster_rcnn_zf.prototxt"), {"data": (1, 3, 96, 96)})
    with pytest.raises(UserError) as err:
        Net(net_param)
    assert "\n" not in str(err.value) and re.search(PYTHON_ERROR, str(err.value)), str(err.value)
    cut = prune_to_outputs(net_param, ["rpn_cls_prob_reshape", "rpn_bbox_pred"])
    assert "Python" not in {lp.type for lp in cut.layer} and Net(cut).blob_shapes["rpn_bbox_pred"][1] == 36


# --- MobileNet-SSD end to end: DetectionOutput against OpenCV's ---

def ssd_detections(tmp_path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(ours, OpenCV's) detection_out of MobileNet-SSD on a test image with seeded random weights."""
    import cv2
    deploy, net, _ = build("mobilenet_ssd", {}, Case())
    gen = torch.Generator().manual_seed(7)
    with torch.no_grad():  # sharper class scores than He-style weights give, so some pass the 0.1 threshold
        for lp, layer in net.named_layers():
            if lp.type == "Convolution" and lp.name.endswith("mbox_conf"):
                layer.caffe_blobs[1].copy_(torch.randn(layer.caffe_blobs[1].shape, generator=gen) * 2.0)
    cm = tmp_path / "ssd.caffemodel"
    net.save_caffemodel(cm)
    image = cv2.imread(str(Path(__file__).parent / "fixtures" / "caffe" / "images" / "img01.png"))
    blob = cv2.dnn.blobFromImage(image, 0.007843, (300, 300), 127.5)  # MobileNet-SSD's published preprocessing
    with torch.no_grad():
        ours = net(torch.from_numpy(blob), outputs=["detection_out"])["detection_out"].numpy()
    theirs = opencv_blobs(deploy, cm, {"data": blob}, ["detection_out"])
    assert not isinstance(theirs, str), theirs
    return ours.reshape(-1, 7), theirs["detection_out"].reshape(-1, 7)


def test_mobilenet_ssd_detections_equal_opencv(tmp_path):
    ours, theirs = ssd_detections(tmp_path)
    assert len(ours) >= 5, ours  # the test means something only if boxes are found
    assert len(ours) == len(theirs)
    # Pair each detection with its nearest of OpenCV's (max |difference| over image, label, score, box), one to
    # one: sorting or rounding scores would mis-pair two detections whose scores differ by float32 noise.
    from scipy.optimize import linear_sum_assignment
    cost = np.abs(ours[:, None, :] - theirs[None, :, :]).max(-1)
    rows, cols = linear_sum_assignment(cost)
    assert cost[rows, cols].max() <= 1e-4, (cost[rows, cols].max(), np.unique(ours[:, 1]))


def test_cli_names_the_python_layer_and_converts_up_to_it(tmp_path, capsys):
    from replicate.cli import main
    prototxt = WILD / "faster_rcnn_zf.prototxt"
    cut = prune_to_outputs(deploy_net(protoio.read_net(prototxt), {"data": (1, 3, 96, 96)}),
                           ["rpn_cls_prob_reshape", "rpn_bbox_pred"])
    net = Net(cut, seed=1)
    randomize_unfilled(net, seed=2)
    weights = tmp_path / "zf.caffemodel"
    net.save_caffemodel(weights)
    argv = ["convert", str(prototxt), str(weights), "--to", "onnx", "--input-shape", "data=1,3,96,96",
            "--out", str(tmp_path / "zf.onnx")]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and re.search(PYTHON_ERROR, err), err
    assert main(argv + ["--outputs", "rpn_cls_prob_reshape,rpn_bbox_pred", "--check"]) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert "opencv vs float64" in out and "rpn_bbox_pred" in out and (tmp_path / "zf.onnx").exists()


def test_yolov3_tiny_needs_the_darknet_rule_and_the_error_says_so():
    """BVLC's sizes break its route (Concat) after the 2x2/1 pooling; the one-line error names the rule."""
    deploy = deploy_net(protoio.read_net(WILD / "yolov3_tiny.prototxt"), {"data": (1, 3, 64, 64)})
    with pytest.raises(UserError) as err:
        Net(deploy)
    assert "\n" not in str(err.value) and re.search(r"layer 'layer21-route' \(Concat\): cannot concatenate .*"
                                                   r"'layer12-maxpool'.*--pooling darknet", str(err.value))
    net = Net(deploy, pooling=POOLING_DARKNET)
    assert net.blob_shapes["layer12-maxpool"] == net.blob_shapes["layer11-conv"]


@pytest.mark.parametrize("to", ["onnx", "pytorch"])
def test_cli_converts_yolov3_tiny_with_the_darknet_rule(to, tmp_path, capsys):
    from convert.artifact import load_artifact
    from replicate.cli import main
    _, net, _ = build("yolov3_tiny", {"data": (1, 3, 64, 64)}, CASES["yolov3_tiny"])
    weights, out = tmp_path / "tiny.caffemodel", tmp_path / f"tiny.{'onnx' if to == 'onnx' else 'pt'}"
    net.save_caffemodel(weights)
    argv = ["convert", str(WILD / "yolov3_tiny.prototxt"), str(weights), "--to", to, "--input-shape",
            "data=1,3,64,64", "--out", str(out), "--check"]
    assert main(argv) == 2 and "--pooling darknet" in capsys.readouterr().err
    assert main(argv + ["--pooling", "darknet"]) == 0, capsys.readouterr().err
    printed = capsys.readouterr().out
    assert "layer23-conv" in printed and "sizes pooling as BVLC does" in printed, printed
    if to == "pytorch":
        assert load_artifact(out).blob_shapes["layer12-maxpool"] == net.blob_shapes["layer12-maxpool"]
