"""Build a one-layer net from a LayerParameter in text format, fed by Input blobs b0, b1, ..."""
from __future__ import annotations

import numpy as np
import torch

from convert import caffe_pb2 as pb
from convert.net import Net
from convert.protoio import parse_text_proto


def one_layer_net(layer_text: str, *shapes, phase: int = pb.TEST, dtype=torch.float32) -> Net:
    """A net: Input layers for b0..bk of the given shapes, then the layer (its bottoms name b0..bk)."""
    net = pb.NetParameter(name="one")
    for i, shape in enumerate(shapes):
        inp = net.layer.add(name=f"in{i}", type="Input", top=[f"b{i}"])
        inp.input_param.shape.add().dim.extend(shape)
    net.layer.add().CopyFrom(parse_text_proto(layer_text, pb.LayerParameter))
    return Net(net, phase).to(dtype)


def run_layer(layer_text: str, *arrays, phase: int = pb.TEST) -> tuple[Net, dict[str, np.ndarray]]:
    """Build the one-layer net for the arrays' shapes and return it with its top blobs as numpy."""
    net = one_layer_net(layer_text, *[a.shape for a in arrays], phase=phase)
    lp = net.layer_params[-1]
    with torch.no_grad():
        out = net({f"b{i}": torch.from_numpy(np.asarray(a, np.float32)) for i, a in enumerate(arrays)},
                  outputs=list(lp.top))
    return net, {k: v.numpy() for k, v in out.items()}
