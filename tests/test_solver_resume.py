"""Interrupted-and-resumed training equals uninterrupted training, with every source of randomness on.

The net draws random crops and mirrors in its Data layer, Gaussian noise from a DummyData layer and
Dropout masks; the .solverstate.json sidecar must carry all of them (and the cursor) across a restart.
"""
from __future__ import annotations

import numpy as np
import pytest

from conftest import CAFFE
from convert import caffe_pb2 as pb
from convert import protoio
from convert.protoio import parse_text_proto
from replicate.solver import Solver

NET = """
name: "stochastic"
layer { name: "data" type: "Data" top: "data" top: "label"
        transform_param { scale: 0.00390625 crop_size: 28 mirror: true }
        data_param { source: "SOURCE" batch_size: 8 backend: LMDB } }
layer { name: "noise" type: "DummyData" top: "noise"
        dummy_data_param { shape { dim: 8 dim: 1 dim: 28 dim: 28 } data_filler { type: "gaussian" std: 0.1 } } }
layer { name: "sum" type: "Eltwise" bottom: "data" bottom: "noise" top: "noisy" }
layer { name: "ip1" type: "InnerProduct" bottom: "noisy" top: "ip1"
        inner_product_param { num_output: 16 weight_filler { type: "gaussian" std: 0.05 } } }
layer { name: "relu" type: "ReLU" bottom: "ip1" top: "ip1" }
layer { name: "drop" type: "Dropout" bottom: "ip1" top: "ip1" dropout_param { dropout_ratio: 0.5 } }
layer { name: "ip2" type: "InnerProduct" bottom: "ip1" top: "ip2"
        inner_product_param { num_output: 4 weight_filler { type: "gaussian" std: 0.05 } } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip2" bottom: "label" top: "loss" }
"""
SOLVER = ('base_lr: 0.05 momentum: 0.9 weight_decay: 0.001 lr_policy: "fixed" max_iter: 6 snapshot: 3 '
          'snapshot_prefix: "snap/s" random_seed: 4 display: 1')


def make_solver(root) -> Solver:
    net = parse_text_proto(NET.replace("SOURCE", str(CAFFE / "lmdb" / "train_lmdb")), pb.NetParameter)
    return Solver(parse_text_proto(SOLVER, pb.SolverParameter), root=root, net_param=net)


def weights(path) -> list[np.ndarray]:
    return [protoio.blob_to_array(b) for l in protoio.read_caffemodel(path).layer for b in l.blobs]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> list[np.ndarray]:
    root = tmp_path_factory.mktemp("uninterrupted")
    make_solver(root).solve()
    return weights(root / "snap/s_iter_6.caffemodel")


def test_interrupted_and_resumed_equals_uninterrupted(tmp_path, uninterrupted):
    make_solver(tmp_path / "b").step(3)                 # killed after the iteration-3 snapshot
    resumed = make_solver(tmp_path / "b")
    resumed.restore("snap/s_iter_3.solverstate")
    resumed.solve()
    again = weights(tmp_path / "b/snap/s_iter_6.caffemodel")
    assert all(np.array_equal(x, y) for x, y in zip(uninterrupted, again, strict=True))

    caffe_style = make_solver(tmp_path / "c")
    caffe_style.restore(tmp_path / "b/snap/s_iter_3.solverstate", resume_data="caffe")
    assert caffe_style.net.layer("data").cursor == 0
    caffe_style.step(3)
    assert caffe_style.net.layer("data").cursor == 3 * 8
    caffe_style.snapshot()
    different = weights(tmp_path / "c/snap/s_iter_6.caffemodel")
    assert not all(np.array_equal(x, y) for x, y in zip(uninterrupted, different))


def test_stop_request_snapshots_and_resume_continues(tmp_path, uninterrupted):
    """A stop request (what Ctrl-C sets) ends at an iteration boundary with a snapshot to resume from."""
    stopped = make_solver(tmp_path / "b")
    original_forward = stopped._forward

    def forward_then_stop():
        if stopped.iter == 4:
            stopped.stop_requested = True
        return original_forward()

    stopped._forward = forward_then_stop
    stopped.solve()
    assert stopped.iter == 5 and stopped.last_snapshot == tmp_path / "b/snap/s_iter_5.solverstate"
    resumed = make_solver(tmp_path / "b")
    resumed.restore("snap/s_iter_5.solverstate")
    resumed.solve()
    again = weights(tmp_path / "b/snap/s_iter_6.caffemodel")
    assert all(np.array_equal(x, y) for x, y in zip(uninterrupted, again, strict=True))
