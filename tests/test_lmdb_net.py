"""End to end: `replicate net forward` in the fixture directory reads the LMDB through our Data layer."""
from __future__ import annotations

import numpy as np
import pytest

from conftest import CAFFE, rel_err
from replicate.cli import main as cli


@pytest.mark.parametrize("net,weights,batches", [("caffenet_color", "caffenet_color_iter_0", 3),
                                                 ("zoo", "zoo_iter_3", 1)])
def test_net_forward_through_data_layer_matches_caffe(net, weights, batches, tmp_path, monkeypatch):
    monkeypatch.chdir(CAFFE)   # the prototxt's sources are relative, as Caffe resolves them
    out = tmp_path / "blobs.npz"
    assert cli(["net", "forward", f"{net}.prototxt", "--weights", f"weights/{weights}.caffemodel",
                "--batches", str(batches), "--out", str(out)]) == 0
    ours, caffe = np.load(out), np.load(CAFFE / f"blobs_{net}.npz")
    assert rel_err(ours["data"], caffe["data"]) <= 1e-6
    for name in caffe.files:
        assert rel_err(ours[name], caffe[name]) <= 1e-5, name
