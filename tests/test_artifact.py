"""The PyTorch artifact: weights by Caffe layer name, deploy prototxt and preprocessing, one call to load."""
import numpy as np
import pytest
import torch

from conftest import CAFFE, rel_err
from convert import protoio
from convert.artifact import FORMAT, load_artifact, save_artifact
from convert.deploy import deploy_net, preprocessing
from convert.errors import UserError
from convert.net import Net, numpy_blobs


def test_round_trip_keeps_blobs_names_and_preprocessing(tmp_path):
    ref = dict(np.load(CAFFE / "blobs_caffenet_color.npz"))
    train_val = protoio.read_net(CAFFE / "caffenet_color.prototxt")
    deploy = deploy_net(train_val, {"data": ref["data"].shape})
    net = Net(deploy)
    net.load_weights(CAFFE / "weights" / "caffenet_color_iter_0.caffemodel")
    prep = preprocessing(train_val)
    prep["mean"] = torch.from_numpy(protoio.read_binaryproto(CAFFE / prep["mean_file"]))
    save_artifact(tmp_path / "m.pt", net, deploy, prep, {"seed": 0})
    assert [p.name for p in tmp_path.iterdir()] == ["m.pt"]  # nothing half-written left behind

    raw = torch.load(tmp_path / "m.pt", weights_only=True)  # plain data: no pickled code
    assert raw["format"] == FORMAT and raw["state"]["conv1.0"].shape == (16, 3, 11, 11)
    assert raw["state"]["fc8.1"].shape == (16,) and "relu1.0" not in raw["state"]

    loaded = load_artifact(tmp_path / "m.pt")
    assert loaded.preprocessing["scale"] == pytest.approx(1 / 256) and loaded.preprocessing["crop_size"] == 227
    assert loaded.preprocessing["channel_order"] == "BGR" and loaded.preprocessing["mean"].shape == (1, 3, 256, 256)
    assert loaded.metadata == {"seed": 0}
    with torch.no_grad():
        blobs = numpy_blobs(loaded(torch.from_numpy(ref["data"]), outputs="all"))
    for blob, expected in ref.items():  # real Caffe's blobs from the reloaded artifact
        assert rel_err(blobs[blob], expected) <= 1e-5, blob


def test_not_an_artifact_is_a_user_error(tmp_path):
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a torch file")
    with pytest.raises(UserError, match="not a PyTorch artifact"):
        load_artifact(junk)
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(2)}, other)
    with pytest.raises(UserError, match="not a converted Caffe model"):
        load_artifact(other)
