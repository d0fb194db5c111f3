"""Dropout as the solver trains it: at TRAIN keep with probability 1-p, scale by 1/(1-p); at TEST identity.

The paper's convention (footnote 2) is the alternative: no scaling at TRAIN, multiply by 1-p at TEST.
"""
from __future__ import annotations

import math

import pytest
import torch

from convert import caffe_pb2 as pb
from convert.net import Net
from convert.protoio import parse_text_proto

NET = """
layer { name: "in" type: "Input" top: "x" input_param { shape { dim: 400 dim: 500 } } }
layer { name: "drop" type: "Dropout" bottom: "x" top: "y" dropout_param { dropout_ratio: RATIO } }
"""
N = 400 * 500


def dropout(phase, ratio, convention, x):
    net = Net(parse_text_proto(NET.replace("RATIO", str(ratio)), pb.NetParameter), phase, dropout=convention)
    return net(x)["y"]


@pytest.mark.parametrize("ratio", [0.5, 0.2])
def test_train_keeps_one_minus_p_and_scales(ratio):
    torch.manual_seed(0)
    x = torch.rand(400, 500) + 0.5          # strictly positive, so a zero output means dropped
    y = dropout(pb.TRAIN, ratio, "caffe", x)
    kept = y != 0
    fraction = kept.double().mean().item()
    sigma = math.sqrt(ratio * (1 - ratio) / N)
    assert abs(fraction - (1 - ratio)) < 5 * sigma
    assert torch.allclose(y[kept], x[kept] / (1 - ratio), rtol=1e-6)
    # independent masks: two passes agree on about (1-p)^2 + p^2 of the units, not all
    again = dropout(pb.TRAIN, ratio, "caffe", x) != 0
    same = (kept == again).double().mean().item()
    assert abs(same - ((1 - ratio) ** 2 + ratio ** 2)) < 10 * sigma


def test_test_phase_is_identity():
    x = torch.randn(400, 500)
    assert torch.equal(dropout(pb.TEST, 0.5, "caffe", x), x)


def test_paper_convention_halves_at_test_and_does_not_scale_at_train():
    torch.manual_seed(1)
    x = torch.rand(400, 500) + 0.5
    assert torch.allclose(dropout(pb.TEST, 0.5, "paper", x), x * 0.5)
    y = dropout(pb.TRAIN, 0.5, "paper", x)
    kept = y != 0
    assert abs(kept.double().mean().item() - 0.5) < 5 * math.sqrt(0.25 / N)
    assert torch.equal(y[kept], x[kept])
