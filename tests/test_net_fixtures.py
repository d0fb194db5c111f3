"""Every blob of the real-Caffe fixture nets, from the fixture caffemodels, within 1e-5 of Caffe."""
import numpy as np
import pytest
import torch

from conftest import CAFFE, rel_err
from convert import protoio
from convert.net import Net, numpy_blobs, with_inputs


def run_fixture_net(name: str, weights: str) -> tuple[dict, dict]:
    ref = dict(np.load(CAFFE / f"blobs_{name}.npz"))
    net_param = with_inputs(protoio.read_net(CAFFE / f"{name}.prototxt"), {"data": ref["data"].shape})
    net = Net(net_param)
    report = net.load_weights(CAFFE / "weights" / weights)
    assert not report["untouched"], report
    with torch.no_grad():
        ours = numpy_blobs(net(torch.from_numpy(ref["data"]), outputs="all"))
    return ours, ref


@pytest.mark.parametrize("name", ["caffenet_color", "caffenet_gray"])
def test_caffenet_blobs_match_caffe(name):
    ours, ref = run_fixture_net(name, f"{name}_iter_0.caffemodel")
    assert set(ref) <= set(ours)
    for blob, expected in ref.items():
        assert rel_err(ours[blob], expected) <= 1e-5, blob
