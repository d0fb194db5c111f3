"""Build a one-layer net from a LayerParameter in text format, fed by Input blobs b0, b1, ..."""
from __future__ import annotations

import numpy as np
import torch

from convert import caffe_pb2 as pb
from convert.net import Net
from convert.protoio import parse_text_proto


def one_layer_net(layer_text: str, *shapes, phase: int = pb.TEST, dtype=torch.float32, **net_options) -> Net:
    """A net: Input layers for b0..bk of the given shapes, then the layer (its bottoms name b0..bk); net_options
    go to Net (e.g. pooling)."""
    net = pb.NetParameter(name="one")
    for i, shape in enumerate(shapes):
        inp = net.layer.add(name=f"in{i}", type="Input", top=[f"b{i}"])
        inp.input_param.shape.add().dim.extend(shape)
    net.layer.add().CopyFrom(parse_text_proto(layer_text, pb.LayerParameter))
    return Net(net, phase, **net_options).to(dtype)


def run_layer(layer_text: str, *arrays, phase: int = pb.TEST, **net_options) -> tuple[Net, dict[str, np.ndarray]]:
    """Build the one-layer net for the arrays' shapes and return it with its top blobs as numpy."""
    net = one_layer_net(layer_text, *[a.shape for a in arrays], phase=phase, **net_options)
    lp = net.layer_params[-1]
    with torch.no_grad():
        out = net({f"b{i}": torch.from_numpy(np.asarray(a, np.float32)) for i, a in enumerate(arrays)},
                  outputs=list(lp.top))
    return net, {k: v.numpy() for k, v in out.items()}


def gradcheck_layer(text: str, shapes: list[tuple[int, ...]], **net_options) -> bool:
    """torch.autograd.gradcheck of one layer (float64, TRAIN) w.r.t. its inputs and its parameters."""
    bottoms = " ".join(f'bottom: "b{i}"' for i in range(len(shapes)))
    net = one_layer_net(f'name: "l" {text} {bottoms} top: "y"', *shapes, phase=pb.TRAIN, dtype=torch.float64,
                        **net_options)
    gen = torch.Generator().manual_seed(0)
    inputs = [torch.randn(s, generator=gen, dtype=torch.float64, requires_grad=True) for s in shapes]
    names = [name for name, _ in net.named_parameters()]
    params = [p.detach().clone().requires_grad_(True) for _, p in net.named_parameters()]

    def forward(*tensors):
        xs, ps = tensors[:len(inputs)], tensors[len(inputs):]
        feed = {f"b{i}": x for i, x in enumerate(xs)}
        return torch.func.functional_call(net, dict(zip(names, ps)), (feed,), {"outputs": ["y"]})["y"]

    return torch.autograd.gradcheck(forward, inputs + params, eps=1e-6, atol=1e-5)

