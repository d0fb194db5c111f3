"""A second opinion: OpenCV's own Caffe importer (cv2.dnn) on our prototxt + caffemodel.

The fixture CaffeNet's fc8 and the real models' outputs (AlexNet, GoogLeNet, ResNet-50; filler or
random weights written to a caffemodel by us) must agree within 1e-5 (max|diff| / max|opencv|).
"""
import cv2
import numpy as np
import pytest
import torch

from conftest import CAFFE, REAL_MODELS, rel_err
from convert import protoio
from convert.net import Net, with_inputs


def opencv_forward(prototxt, caffemodel, inputs: dict, outputs: list[str]) -> list[np.ndarray]:
    cvnet = cv2.dnn.readNetFromCaffe(str(prototxt), str(caffemodel))
    cvnet.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
    for name, value in inputs.items():
        cvnet.setInput(value, name)
    return [np.asarray(o) for o in cvnet.forward(outputs)]


def test_opencv_gives_the_fixture_caffenet_fc8(tmp_path):
    ref = np.load(CAFFE / "blobs_caffenet_color.npz")
    data = ref["data"][:4]
    deploy = with_inputs(protoio.read_net(CAFFE / "caffenet_color.prototxt"), {"data": data.shape})
    protoio.write_text_proto(tmp_path / "deploy.prototxt", deploy)
    net = Net(deploy)
    net.load_weights(CAFFE / "weights" / "caffenet_color_iter_0.caffemodel")
    net.save_caffemodel(tmp_path / "ours.caffemodel")
    with torch.no_grad():
        ours = net(torch.from_numpy(data), outputs=["fc8"])["fc8"].numpy()
    (theirs,) = opencv_forward(tmp_path / "deploy.prototxt", tmp_path / "ours.caffemodel", {"data": data}, ["fc8"])
    assert rel_err(ours, theirs) <= 1e-5
    assert rel_err(ours, ref["fc8"][:4]) <= 1e-5


def randomize_unfilled(net: Net, seed: int) -> None:
    """Blobs a deploy prototxt leaves at constant 0 get random values; BatchNorm gets plausible statistics."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for lp, layer in net.named_layers():
            if lp.type == "BatchNorm":
                channels = layer.mean.numel()
                layer.mean.copy_(torch.randn(channels, generator=gen) * 0.1 * 2.0)
                layer.variance.copy_((torch.rand(channels, generator=gen) + 0.5) * 2.0)
                layer.factor.fill_(2.0)  # the statistics are sums: divided by this factor
                continue
            for blob in layer.caffe_blobs:
                if torch.count_nonzero(blob) == 0:
                    fan_in = blob[0].numel() if blob.dim() > 1 else 1
                    scale = (1.0 / fan_in) ** 0.5 if blob.dim() > 1 else 0.1
                    blob.copy_(torch.randn(blob.shape, generator=gen) * scale)
                if lp.type == "Scale" and blob is layer.caffe_blobs[0]:
                    blob.copy_(1.0 + 0.1 * torch.randn(blob.shape, generator=gen))


@pytest.mark.parametrize("model,output", [("alexnet", "fc8"), ("googlenet", "loss3/classifier"),
                                          ("resnet50", "fc1000")])
def test_real_models_agree_with_opencv(model, output, tmp_path):
    net_param = protoio.read_net(REAL_MODELS / f"{model}_deploy.prototxt")
    inp = next(layer for layer in net_param.layer if layer.type == "Input")
    input_name, shape = inp.top[0], (1,) + tuple(inp.input_param.shape[0].dim[1:])
    net_param = with_inputs(net_param, {input_name: shape})
    protoio.write_text_proto(tmp_path / "deploy.prototxt", net_param)
    net = Net(net_param, seed=1)
    randomize_unfilled(net, seed=2)
    net.save_caffemodel(tmp_path / "weights.caffemodel")
    x = np.random.default_rng(3).normal(size=shape).astype(np.float32)
    with torch.no_grad():
        ours = net(torch.from_numpy(x), outputs=[output, "prob"])
    theirs = opencv_forward(tmp_path / "deploy.prototxt", tmp_path / "weights.caffemodel", {input_name: x},
                            [output, "prob"])
    assert np.abs(theirs[0]).max() > 0 and theirs[1].std() > 1e-4  # not a degenerate output
    assert rel_err(ours[output].numpy(), theirs[0].reshape(ours[output].shape)) <= 1e-5
    assert rel_err(ours["prob"].numpy(), theirs[1].reshape(ours["prob"].shape)) <= 1e-5
