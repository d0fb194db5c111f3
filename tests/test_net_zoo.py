"""The real-Caffe layer zoo: every blob from zoo_iter_3.caffemodel within 1e-5 of Caffe's."""
import numpy as np
import torch

from conftest import CAFFE, rel_err
from convert import protoio
from convert.net import Net, numpy_blobs, with_inputs


def test_zoo_blobs_match_caffe():
    ref = dict(np.load(CAFFE / "blobs_zoo.npz"))
    x = np.load(CAFFE / "zoo_input.npy")
    np.testing.assert_array_equal(x, ref["data"])
    net_param = with_inputs(protoio.read_net(CAFFE / "zoo.prototxt"), {"data": x.shape, "label": (x.shape[0],)})
    net = Net(net_param)
    report = net.load_weights(CAFFE / "weights" / "zoo_iter_3.caffemodel")
    assert not report["untouched"], report
    assert float(net.layer("bn").factor[0]) not in (0.0, 1.0)  # the scale-factor path is exercised
    with torch.no_grad():
        ours = numpy_blobs(net({"data": torch.from_numpy(x), "label": torch.zeros(x.shape[0])}, outputs="all"))
    assert set(ref) <= set(ours)
    for blob, expected in ref.items():
        assert rel_err(ours[blob], expected) <= 1e-5, blob
