"""Published deploy nets (AlexNet, GoogLeNet, ResNet-50) convert by both routes and match our Net; ResNet-50
folds its BatchNorm+Scale pairs into the convolutions within 1e-5. Filler weights; slow (full-size nets)."""
import numpy as np
import onnx
import pytest

from conftest import REAL_MODELS
from convert import protoio
from convert.deploy import deploy_net, input_shapes_of
from convert.net import Net
from convert.onnx_check import check_onnx, difference, run_onnx
from convert.onnx_direct import to_onnx
from convert.onnx_torch import export

pytestmark = pytest.mark.slow


def build(name: str):
    deploy = deploy_net(protoio.read_net(REAL_MODELS / f"{name}_deploy.prototxt"))
    shape = input_shapes_of(deploy)["data"]
    deploy = deploy_net(deploy, {"data": (1,) + tuple(shape[1:])})
    net = Net(deploy, seed=0)
    weights = {lp.name: layer.blob_arrays() for lp, layer in net.named_layers() if layer.blob_names}
    x = np.random.default_rng(0).standard_normal((1,) + tuple(shape[1:])).astype(np.float32)
    return deploy, net, weights, {"data": x}


@pytest.mark.parametrize("route", ["direct", "torch"])
@pytest.mark.parametrize("name", ["alexnet", "googlenet", "resnet50"])
def test_real_model_converts_and_matches_our_net(name, route):
    deploy, net, weights, inputs = build(name)
    model = to_onnx(deploy, weights) if route == "direct" else export(net)
    onnx.checker.check_model(model)
    report = check_onnx(model, net, inputs)
    assert report.rows and report.ok, report.table()


def test_resnet50_fold_bn_matches_unfolded():
    deploy, net, weights, inputs = build("resnet50")
    rng = np.random.default_rng(1)
    for lp, layer in net.named_layers():  # non-trivial statistics (fillers give mean 0, var 0, factor 0)
        if lp.type == "BatchNorm":
            c = layer.mean.shape[0]
            weights[lp.name] = [rng.standard_normal(c).astype(np.float32) * 0.1,
                                rng.uniform(0.5, 2.0, c).astype(np.float32), np.array([0.9], np.float32)]
    plain = to_onnx(deploy, weights, outputs=["prob"])
    folded = to_onnx(deploy, weights, outputs=["prob"], fold_bn=True)
    ops = [n.op_type for n in folded.graph.node]
    assert "BatchNormalization" not in ops and ops.count("Conv") == 53
    a, _ = run_onnx(plain, inputs)
    b, _ = run_onnx(folded, inputs)
    assert difference(b["prob"], a["prob"])[1] <= 1e-5
