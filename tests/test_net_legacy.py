"""Legacy formats: a hand-written V1 net, V1 caffemodels with 4-D blob dims, and our caffemodel round trip."""
import numpy as np
import torch

from conftest import CAFFE, FIXTURES, rel_err
from convert import caffe_pb2 as pb
from convert import protoio
from convert.net import Net, numpy_blobs, with_inputs

V1_NET = FIXTURES / "legacy" / "caffenet_gray_v1.prototxt"
WEIGHTS = CAFFE / "weights" / "caffenet_gray_iter_0.caffemodel"
REF = dict(np.load(CAFFE / "blobs_caffenet_gray.npz"))


def all_blobs(net: Net) -> dict:
    with torch.no_grad():
        return numpy_blobs(net(torch.from_numpy(REF["data"]), outputs="all"))


def current_net() -> Net:
    return Net(with_inputs(protoio.read_net(CAFFE / "caffenet_gray.prototxt"), {"data": REF["data"].shape}))


def test_v1_net_gives_caffes_blobs():
    net_param = protoio.read_net(V1_NET)
    assert not net_param.layers and not net_param.input and net_param.layer[0].type == "Input"
    net = Net(net_param)
    assert net.load_weights(WEIGHTS)["untouched"] == []
    ours = all_blobs(net)
    for blob, expected in REF.items():
        assert rel_err(ours[blob], expected) <= 1e-5, blob


def test_v1_multipliers_equal_the_current_format():
    v1 = [(b.layer, b.index, b.lr_mult, b.decay_mult) for b in Net(protoio.read_net(V1_NET)).learnable_blobs()]
    now = [(b.layer, b.index, b.lr_mult, b.decay_mult) for b in current_net().learnable_blobs()]
    assert v1 == now
    assert {(lr, decay) for _, i, lr, decay in v1} == {(1, 1), (2, 0)}


def test_v1_caffemodel_with_legacy_4d_dims_loads(tmp_path):
    model = protoio.read_caffemodel(WEIGHTS)
    legacy = pb.NetParameter(name=model.name)
    v1_types = {"Convolution": pb.V1LayerParameter.CONVOLUTION, "InnerProduct": pb.V1LayerParameter.INNER_PRODUCT}
    for layer in model.layer:
        if layer.type not in v1_types:
            continue
        old = legacy.layers.add(name=layer.name, type=v1_types[layer.type])
        for blob in layer.blobs:
            array = protoio.blob_to_array(blob)
            old.blobs.append(protoio.array_to_blob(array, legacy_4d=True))
            assert not old.blobs[-1].HasField("shape") and old.blobs[-1].num == (1 if array.ndim < 4 else array.shape[0])
    protoio.write_caffemodel(tmp_path / "v1.caffemodel", legacy)
    net = current_net()
    assert net.load_weights(tmp_path / "v1.caffemodel")["untouched"] == []
    assert rel_err(all_blobs(net)["fc8"], REF["fc8"]) <= 1e-5


def test_our_caffemodel_reads_back_identical(tmp_path):
    net = current_net()
    net.load_weights(WEIGHTS)
    path = tmp_path / "ours.caffemodel"
    net.save_caffemodel(path)
    back = protoio.read_caffemodel(path)
    assert back == net.to_proto()
    originals = {layer.name: layer.blobs for layer in protoio.read_caffemodel(WEIGHTS).layer}
    for layer in back.layer:
        for ours, theirs in zip(layer.blobs, originals.get(layer.name, [])):
            np.testing.assert_array_equal(protoio.blob_to_array(ours), protoio.blob_to_array(theirs))
    fresh = current_net()
    fresh.load_weights(path)
    for a, b in zip(net.learnable_blobs(), fresh.learnable_blobs()):
        assert torch.equal(a.tensor, b.tensor)
    assert [p.name for p in tmp_path.iterdir()] == ["ours.caffemodel"]
