"""Caffe -> ONNX, both routes: real-Caffe fixture blobs on ONNX Runtime, full CaffeNet, legacy V1, BN folding."""
import numpy as np
import onnx
import pytest
import torch
from google.protobuf import text_format

from conftest import CAFFE, rel_err
from convert import caffe_pb2 as pb
from convert import protoio
from convert.deploy import deploy_net
from convert.errors import UserError
from convert.net import Net, numpy_blobs
from convert.onnx_check import check_onnx, run_onnx
from convert.onnx_direct import ALIAS_TYPES, CONVERTERS, NOT_CONVERTIBLE, to_onnx
from convert.onnx_torch import export
from convert.registry import LAYERS, layer_class

FIXTURE_NETS = {"caffenet_color": "caffenet_color_iter_0", "caffenet_gray": "caffenet_gray_iter_0",
                "zoo": "zoo_iter_3"}
ROOT = CAFFE.parents[2]


def fixture(name: str):
    ref = dict(np.load(CAFFE / f"blobs_{name}.npz"))
    deploy = deploy_net(protoio.read_net(CAFFE / f"{name}.prototxt"), {"data": ref["data"].shape})
    return ref, deploy, CAFFE / "weights" / f"{FIXTURE_NETS[name]}.caffemodel"


def convert(route: str, deploy, weights_path, outputs):
    if route == "direct":
        return to_onnx(deploy, protoio.read_caffemodel(weights_path), outputs=outputs)
    net = Net(deploy)
    net.load_weights(weights_path)
    return export(net, outputs)


@pytest.mark.parametrize("route", ["direct", "torch"])
@pytest.mark.parametrize("name", list(FIXTURE_NETS))
def test_fixture_nets_match_caffe_on_onnxruntime(name, route):
    ref, deploy, weights = fixture(name)
    blobs = [b for b in ref if b != "data"]
    model = convert(route, deploy, weights, blobs)
    onnx.checker.check_model(model, full_check=True)
    assert model.opset_import[0].version >= 17
    assert [i.name for i in model.graph.input] == ["data"]
    ours, provider = run_onnx(model, {"data": ref["data"]})
    assert provider == "CPUExecutionProvider"
    assert sorted(ours) == sorted(blobs)
    for blob in blobs:
        assert rel_err(ours[blob], ref[blob]) <= 1e-5, blob


def test_direct_graph_keeps_blob_names_and_versions_in_place_writes():
    """conv1 then relu1 in place: 'conv1@conv1' is the convolution, 'conv1' the last writer's value."""
    ref, deploy, weights = fixture("caffenet_color")
    model = to_onnx(deploy, protoio.read_caffemodel(weights), outputs=["conv1", "fc7"])
    by_name = {n.name: n for n in model.graph.node}
    assert list(by_name["conv1"].output) == ["conv1@conv1"]
    assert list(by_name["relu1"].input) == ["conv1@conv1"] and list(by_name["relu1"].output) == ["conv1"]
    assert list(by_name["pool1"].input) == ["conv1"]
    assert "drop7" not in by_name  # Dropout is the identity at TEST
    assert [o.name for o in model.graph.output] == ["conv1", "fc7"]
    default = to_onnx(deploy, protoio.read_caffemodel(weights))
    assert [o.name for o in default.graph.output] == ["prob"]  # the net's output when none is asked for


def test_every_registered_layer_type_converts_or_says_why():
    import convert.layers  # noqa: F401
    for type_name in LAYERS:
        assert type_name in CONVERTERS or type_name in ALIAS_TYPES or type_name == "Input" \
            or type_name in NOT_CONVERTIBLE, type_name


# Layer types and options the zoo fixture does not exercise, checked against our PyTorch net.
EXTRA_NET = """
name: "extra"
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 2 dim: 6 dim: 5 dim: 4 } } }
layer { name: "relu" type: "ReLU" bottom: "data" top: "relu" }
layer { name: "argmax_axis" type: "ArgMax" bottom: "relu" top: "argmax_axis" argmax_param { axis: 1 top_k: 2 } }
layer { name: "argmax_flat" type: "ArgMax" bottom: "relu" top: "argmax_flat" argmax_param { top_k: 3 out_max_val: true } }
layer { name: "argmax_val" type: "ArgMax" bottom: "data" top: "argmax_val" argmax_param { axis: 2 out_max_val: true } }
layer { name: "tile" type: "Tile" bottom: "data" top: "tile" tile_param { axis: 2 tiles: 3 } }
layer { name: "mvn" type: "MVN" bottom: "data" top: "mvn" }
layer { name: "mvn_across" type: "MVN" bottom: "data" top: "mvn_across" mvn_param { across_channels: true normalize_variance: false } }
layer { name: "clip" type: "Clip" bottom: "data" top: "clip" clip_param { min: -0.5 max: 0.7 } }
layer { name: "threshold" type: "Threshold" bottom: "data" top: "threshold" threshold_param { threshold: 0.2 } }
layer { name: "swish" type: "Swish" bottom: "data" top: "swish" swish_param { beta: 1.5 } }
layer { name: "abs" type: "AbsVal" bottom: "data" top: "abs" }
layer { name: "log" type: "Log" bottom: "abs" top: "log" log_param { base: 10 scale: 2 shift: 1 } }
layer { name: "exp2" type: "Exp" bottom: "data" top: "exp2" exp_param { base: 2 shift: 0.5 } }
layer { name: "power3" type: "Power" bottom: "data" top: "power3" power_param { power: 3 } }
layer { name: "red_asum" type: "Reduction" bottom: "data" top: "red_asum" reduction_param { operation: ASUM axis: 2 } }
layer { name: "red_mean" type: "Reduction" bottom: "data" top: "red_mean" reduction_param { operation: MEAN axis: -1 coeff: 2 } }
layer { name: "red_sum" type: "Reduction" bottom: "data" top: "red_sum" reduction_param { operation: SUM } }
layer { name: "slice_eq" type: "Slice" bottom: "data" top: "s0" top: "s1" top: "s2" slice_param { axis: 1 } }
layer { name: "scale2" type: "Scale" bottom: "data" bottom: "red_mean" top: "scale2" scale_param { axis: 0 bias_term: true } }
layer { name: "bias2" type: "Bias" bottom: "s1" bottom: "s2" top: "bias2" bias_param { axis: 0 } }
layer { name: "scale_c" type: "Scale" bottom: "data" top: "scale_c" scale_param { axis: 1 num_axes: 2 filler { type: "gaussian" } } }
layer { name: "reshape_ax" type: "Reshape" bottom: "data" top: "reshape_ax" reshape_param { axis: 2 shape { dim: -1 } } }
layer { name: "ip_t" type: "InnerProduct" bottom: "data" top: "ip_t" inner_product_param { num_output: 3 axis: 2 transpose: true weight_filler { type: "gaussian" } bias_filler { type: "gaussian" } } }
layer { name: "prelu_s" type: "PReLU" bottom: "data" top: "prelu_s" prelu_param { channel_shared: true } }
layer { name: "elt_max3" type: "Eltwise" bottom: "data" bottom: "clip" bottom: "swish" top: "elt_max3" eltwise_param { operation: MAX } }
layer { name: "elt_sum3" type: "Eltwise" bottom: "data" bottom: "clip" bottom: "swish" top: "elt_sum3" }
layer { name: "pool_floor" type: "Pooling" bottom: "data" top: "pool_floor" pooling_param { pool: AVE kernel_size: 2 stride: 2 round_mode: FLOOR } }
layer { name: "pool_pad2" type: "Pooling" bottom: "data" top: "pool_pad2" pooling_param { pool: AVE kernel_size: 3 stride: 3 pad: 2 } }
layer { name: "pool_max_pad2" type: "Pooling" bottom: "data" top: "pool_max_pad2" pooling_param { pool: MAX kernel_size: 3 stride: 3 pad: 2 } }
layer { name: "sm1" type: "Softmax" bottom: "data" top: "sm1" softmax_param { axis: 2 } }
layer { name: "drop" type: "Dropout" bottom: "sm1" top: "drop_out" }
layer { name: "split" type: "Split" bottom: "drop_out" top: "split_a" top: "split_b" }
"""


@pytest.mark.parametrize("route", ["direct", "torch"])
def test_layers_outside_the_zoo_match_our_net(route):
    if "ArgMax" not in LAYERS:
        layer_class("ArgMax")  # registers the built-in layers
    deploy = protoio.parse_text_proto(EXTRA_NET, pb.NetParameter)
    if route == "torch":  # torch.onnx cannot export ArgMax's stable sort: the route refuses it by name
        with pytest.raises(UserError, match="'ArgMax' has no torch.onnx export"):
            export(Net(deploy), None)
        kept = [lp for lp in deploy.layer if lp.type != "ArgMax"]
        del deploy.layer[:]
        deploy.layer.extend(kept)
    net = Net(deploy, seed=3)
    weights = {lp.name: layer.blob_arrays() for lp, layer in net.named_layers() if layer.blob_names}
    blobs = [b for b in net.blob_shapes if b != "data"]
    model = to_onnx(deploy, weights, outputs=blobs) if route == "direct" else export(net, blobs)
    onnx.checker.check_model(model, full_check=True)
    x = np.random.default_rng(1).standard_normal((2, 6, 5, 4)).astype(np.float32)
    x[0, :, 0, 0] = 0.0  # ties for ArgMax: Caffe puts the larger index first
    report = check_onnx(model, net, {"data": x})
    assert [r.blob for r in report.rows] == blobs
    assert report.ok, report.table()


def full_caffenet(batch: int = 1):
    deploy = deploy_net(protoio.read_net(ROOT / "prototxt" / "caffenet_ilsvrc_deploy.prototxt"),
                        {"data": (batch, 3, 227, 227)})
    net = Net(deploy, seed=0)
    return deploy, net, {lp.name: layer.blob_arrays() for lp, layer in net.named_layers() if layer.blob_names}


def to_v1(net_param: pb.NetParameter) -> str:
    """The net in Caffe's legacy V1 text format (`layers`, enum types, net-level input/input_dim)."""
    v1_enum = {new: old for old, new in protoio.V1_TYPE_NAMES.items()}
    out = pb.NetParameter(name=net_param.name)
    for lp in net_param.layer:
        if lp.type == "Input":
            out.input.extend(lp.top)
            out.input_dim.extend(lp.input_param.shape[0].dim)
            continue
        v1 = out.layers.add(name=lp.name, type=pb.V1LayerParameter.LayerType.Value(v1_enum[lp.type]))
        v1.bottom.extend(lp.bottom)
        v1.top.extend(lp.top)
        v1.blobs_lr.extend(p.lr_mult for p in lp.param)
        v1.weight_decay.extend(p.decay_mult for p in lp.param)
        for field, _ in lp.ListFields():
            if field.name.endswith("_param") and field.name != "param":
                getattr(v1, field.name).CopyFrom(getattr(lp, field.name))
    return text_format.MessageToString(out)


def assert_v1_gives_the_same_graph(deploy: pb.NetParameter, weights, outputs) -> None:
    model = to_onnx(deploy, weights, outputs=outputs)
    v1_text = to_v1(deploy)
    assert "layers {" in v1_text and "type: CONVOLUTION" in v1_text and "input_dim: " in v1_text
    v1_deploy = deploy_net(protoio.upgrade_net(protoio.parse_text_proto(v1_text, pb.NetParameter)))
    v1_model = to_onnx(v1_deploy, weights, outputs=outputs)
    assert v1_model.graph.node == model.graph.node
    assert v1_model.graph.input == model.graph.input and v1_model.graph.output == model.graph.output
    assert [i.name for i in v1_model.graph.initializer] == [i.name for i in model.graph.initializer]
    assert all(a.raw_data == b.raw_data for a, b in zip(v1_model.graph.initializer, model.graph.initializer))


def test_legacy_v1_fixture_caffenet_gives_the_same_graph():
    ref, deploy, weights = fixture("caffenet_color")
    assert_v1_gives_the_same_graph(deploy, protoio.read_caffemodel(weights), ["conv1", "norm2", "fc7", "prob"])


@pytest.mark.slow
def test_full_caffenet_converts_and_checks_and_v1_gives_the_same_graph():
    deploy, net, weights = full_caffenet()
    outputs = ["conv1", "norm2", "pool5", "fc7", "prob"]
    model = to_onnx(deploy, weights, outputs=outputs)
    onnx.checker.check_model(model)
    x = np.random.default_rng(0).standard_normal((1, 3, 227, 227)).astype(np.float32)
    report = check_onnx(model, net, {"data": x})
    assert report.ok, report.table()
    assert_v1_gives_the_same_graph(deploy, weights, outputs)


# ------------------------------------------------------------------ fold BN
FOLD_NET = """
name: "fold"
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 2 dim: 3 dim: 12 dim: 12 } } }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1" convolution_param { num_output: 8 kernel_size: 3 weight_filler { type: "msra" } bias_filler { type: "gaussian" } } }
layer { name: "bn1" type: "BatchNorm" bottom: "conv1" top: "bn1" batch_norm_param { eps: 0.001 } }
layer { name: "scale1" type: "Scale" bottom: "bn1" top: "scale1" scale_param { bias_term: true filler { type: "gaussian" } bias_filler { type: "gaussian" } } }
layer { name: "relu1" type: "ReLU" bottom: "scale1" top: "scale1" }
layer { name: "conv2" type: "Convolution" bottom: "scale1" top: "conv2" convolution_param { num_output: 5 kernel_size: 3 bias_term: false weight_filler { type: "msra" } } }
layer { name: "bn2" type: "BatchNorm" bottom: "conv2" top: "conv2" }
layer { name: "scale2" type: "Scale" bottom: "conv2" top: "conv2" scale_param { filler { type: "gaussian" } } }
layer { name: "conv3" type: "Convolution" bottom: "conv2" top: "conv3" convolution_param { num_output: 4 kernel_size: 1 weight_filler { type: "msra" } } }
layer { name: "bn3" type: "BatchNorm" bottom: "conv3" top: "bn3" }
layer { name: "side" type: "Sigmoid" bottom: "conv3" top: "side" }
layer { name: "sum" type: "Eltwise" bottom: "bn3" bottom: "side" top: "sum" }
"""


def fold_net():
    deploy = protoio.parse_text_proto(FOLD_NET, pb.NetParameter)
    net = Net(deploy, seed=5)
    rng = np.random.default_rng(5)
    for name, factor in (("bn1", 0.37), ("bn2", 0.0), ("bn3", 2.5)):  # bn2: Caffe's zero-factor guard
        layer = net.layer(name)
        c = layer.mean.shape[0]
        layer.load_blobs([rng.standard_normal(c), rng.uniform(0.1, 2.0, c), np.array([factor])])
    return deploy, net, {lp.name: layer.blob_arrays() for lp, layer in net.named_layers() if layer.blob_names}


@pytest.mark.parametrize("outputs", [["sum"], ["sum", "scale1"]])
def test_fold_bn_matches_unfolded(outputs):
    deploy, net, weights = fold_net()
    plain = to_onnx(deploy, weights, outputs=outputs)
    folded = to_onnx(deploy, weights, outputs=outputs, fold_bn=True)
    onnx.checker.check_model(folded, full_check=True)
    ops = [n.op_type for n in folded.graph.node]
    # bn1+scale1 and bn2+scale2 fold; bn3 stays (conv3 also feeds 'side')
    assert ops.count("BatchNormalization") == 1 and "Mul" not in ops and ops.count("Conv") == 3
    assert [n.op_type for n in plain.graph.node].count("BatchNormalization") == 3
    x = {"data": np.random.default_rng(0).standard_normal((2, 3, 12, 12)).astype(np.float32)}
    a, _ = run_onnx(plain, x)
    b, _ = run_onnx(folded, x)
    with torch.no_grad():
        ours = numpy_blobs(net(torch.from_numpy(x["data"]), outputs=outputs))
    for blob in outputs:
        assert rel_err(b[blob], a[blob]) <= 1e-5 and rel_err(b[blob], ours[blob]) <= 1e-5, blob


def test_fold_bn_keeps_a_requested_intermediate_blob():
    deploy, _, weights = fold_net()
    folded = to_onnx(deploy, weights, outputs=["sum", "conv1"], fold_bn=True)
    ops = [n.op_type for n in folded.graph.node]
    assert ops.count("BatchNormalization") == 2  # conv1's own value is asked for: bn1 is not folded
