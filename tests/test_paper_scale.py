"""The paper-scale path wired end to end up to training: prepared LMDBs -> resolved CaffeNet at 227."""
from pathlib import Path

import pytest

from convert import caffe_pb2 as pb
from convert.net import Net
from lmdb_tools.prepare import PAPER_SIZES, prepare
from replicate import zoo
from replicate.config import get_scale
from replicate.experiment_data import data_for
from replicate.store import Store
from replicate.training import resolved_net, resolved_solver
from test_lmdb_prepare import rvl_cdip_tree


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("paper")
    prepare("rvl-cdip", rvl_cdip_tree(base / "download"), base / "lmdb" / "rvl-cdip", PAPER_SIZES, workers=1,
            progress=False)
    return base / "lmdb"


@pytest.mark.parametrize("net_id, side, crop", [("baseline_1", 227, 0), ("crop_288", 288, 227)])
def test_paper_nets_read_the_prepared_lmdbs(prepared, tmp_path, net_id, side, crop):
    scale = get_scale("paper")
    data = data_for("rvl-cdip", scale, Store(tmp_path / "store"), prepared)   # root holding rvl-cdip/
    assert (data.classes, data.channels, data.eval_split) == (16, 1, "test")
    net = zoo.get(net_id, "rvl-cdip")
    param = resolved_net(scale, "rvl-cdip", data, net)
    sources = {r.phase: (l.data_param.source, l.transform_param) for l in param.layer if l.type == "Data"
               for r in l.include}
    assert sources[pb.TRAIN][0].endswith(f"train_{side}_lmdb") and sources[pb.TEST][0].endswith(f"val_{side}_lmdb")
    assert sources[pb.TRAIN][1].crop_size == crop and sources[pb.TRAIN][1].mean_file.endswith(f"train_{side}_mean.binaryproto")
    built = Net(param, pb.TEST)
    assert built.blob_shapes["data"][1:] == (1, 227, 227) and built.blob_shapes["fc8"][1] == 16
    solver = resolved_solver(scale, "rvl-cdip", net, tmp_path)
    assert (solver.base_lr, solver.max_iter, solver.stepsize) == (pytest.approx(0.003), 500000, 150000)
    assert solver.random_seed == net.seed
