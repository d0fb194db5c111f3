"""Every blob of the real-Caffe fixture nets, from the fixture caffemodels, within 1e-5 of Caffe."""
import numpy as np
import pytest
import torch

from conftest import CAFFE, rel_err
from convert import protoio
from convert.net import Net, numpy_blobs, with_inputs


def run_fixture_net(name: str, weights: str, channels_last: bool = False) -> tuple[dict, dict]:
    ref = dict(np.load(CAFFE / f"blobs_{name}.npz"))
    net_param = with_inputs(protoio.read_net(CAFFE / f"{name}.prototxt"), {"data": ref["data"].shape})
    net = Net(net_param, channels_last=channels_last)
    report = net.load_weights(CAFFE / "weights" / weights)
    assert not report["untouched"], report
    with torch.no_grad():
        ours = numpy_blobs(net(torch.from_numpy(ref["data"]), outputs="all"))
    return ours, ref


@pytest.mark.parametrize("channels_last", [False, True], ids=["default-layout", "channels_last"])
@pytest.mark.parametrize("name", ["caffenet_color", "caffenet_gray"])
def test_caffenet_blobs_match_caffe(name, channels_last):
    ours, ref = run_fixture_net(name, f"{name}_iter_0.caffemodel", channels_last)
    assert set(ref) <= set(ours)
    for blob, expected in ref.items():
        assert rel_err(ours[blob], expected) <= 1e-5, blob


def test_channels_last_keeps_every_4d_blob_in_that_layout_even_from_a_grey_input():
    """A 1-channel input is both layouts at once; conv1 would pick the default one unless the net converts it."""
    ref = dict(np.load(CAFFE / "blobs_caffenet_gray.npz"))
    net = Net(with_inputs(protoio.read_net(CAFFE / "caffenet_gray.prototxt"), {"data": ref["data"].shape}),
              channels_last=True)
    with torch.no_grad():
        blobs = net(torch.from_numpy(ref["data"]), outputs="all")
    four_d = {name: b for name, b in blobs.items() if b.dim() == 4 and b.shape[1] > 1}
    assert four_d and all(b.is_contiguous(memory_format=torch.channels_last) for b in four_d.values())
