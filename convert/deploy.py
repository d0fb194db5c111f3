"""The deploy form of a Caffe net: TEST phase, Input layers instead of data layers, no label consumers.

Both ONNX routes and the PyTorch artifact convert this form. A train_val net's data layers (Data,
ImageData, ...) become Input layers of their data blob's shape; layers left without a producer for
a bottom (loss, accuracy, silence on the label) are dropped. The data layer's transform_param is
the preprocessing that must travel with the converted model.
"""
from __future__ import annotations

from typing import Mapping

from convert import caffe_pb2 as pb
from convert.errors import UserError
from convert.net import layer_included, with_inputs

Shape = tuple[int, ...]

# Caffe's data-producing layers other than Input: they read files, so a converted model gets an Input instead.
DATA_LAYER_TYPES = {"Data", "ImageData", "HDF5Data", "MemoryData", "WindowData",
                    "DenseImageData"}  # caffe-segnet's image + label layer


def test_phase(net_param: pb.NetParameter) -> pb.NetParameter:
    """A copy holding only the layers Caffe instantiates at TEST (include/exclude rules applied)."""
    state = pb.NetState(phase=pb.TEST)
    if net_param.HasField("state"):
        state.MergeFrom(net_param.state)
        state.phase = pb.TEST
    out = pb.NetParameter()
    out.CopyFrom(net_param)
    del out.layer[:]
    out.layer.extend(lp for lp in net_param.layer if layer_included(lp, state))
    out.ClearField("state")
    return out


def data_blobs(net_param: pb.NetParameter) -> list[str]:
    """The blobs a deploy net takes as input: Input tops and the first top of each data layer."""
    names: list[str] = []
    for lp in net_param.layer:
        if lp.type == "Input":
            names.extend(lp.top)
        elif lp.type in DATA_LAYER_TYPES and lp.top:
            names.append(lp.top[0])
    return list(dict.fromkeys(names))


def input_shapes_of(net_param: pb.NetParameter) -> dict[str, Shape]:
    """Shapes declared by Input layers (data layers declare none; their shapes come from the data)."""
    shapes: dict[str, Shape] = {}
    for lp in net_param.layer:
        if lp.type == "Input":
            dims = [tuple(int(d) for d in s.dim) for s in lp.input_param.shape]
            for i, top in enumerate(lp.top):
                shapes[top] = dims[0] if len(dims) == 1 else dims[i]
    return shapes


def deploy_net(net_param: pb.NetParameter, input_shapes: Mapping[str, Shape] | None = None) -> pb.NetParameter:
    """The TEST-phase net with Input layers for every data blob (given shapes override declared ones)."""
    net = test_phase(net_param)
    shapes = {**input_shapes_of(net), **dict(input_shapes or {})}
    unknown = [b for b in (input_shapes or {}) if b not in data_blobs(net)]
    if unknown:
        raise UserError(f"--input-shape names {unknown}, which are not input blobs; inputs: {data_blobs(net)}")
    missing = [b for b in data_blobs(net) if b not in shapes]
    if missing:
        raise UserError(f"no shape for input blob(s) {missing}: give --input-shape {missing[0]}=N,C,H,W")
    net = with_inputs(net, {b: shapes[b] for b in data_blobs(net)})
    out = pb.NetParameter()
    out.CopyFrom(net)
    del out.layer[:]
    available: set[str] = set()
    for lp in net.layer:
        if all(b in available for b in lp.bottom):  # label consumers lose their bottom and go
            out.layer.add().CopyFrom(lp)
            available.update(lp.top)
    return out


def preprocessing(net_param: pb.NetParameter) -> dict:
    """What the data layer did to images before the net saw them (Caffe's TEST-phase DataTransformer)."""
    for lp in test_phase(net_param).layer:
        if lp.type in DATA_LAYER_TYPES:
            tp = lp.transform_param
            return {"source_layer": lp.name, "channel_order": "BGR", "scale": tp.scale,
                    "mean_file": tp.mean_file or None, "mean_value": list(tp.mean_value),
                    "crop_size": tp.crop_size, "crop": "center" if tp.crop_size else None,
                    "force_color": tp.force_color, "force_gray": tp.force_gray,
                    "order": "crop, subtract mean, multiply by scale (Caffe's DataTransformer)"}
    return {}


def prune_to_outputs(net_param: pb.NetParameter, outputs: list[str]) -> pb.NetParameter:
    """A copy with only the layers the given blobs depend on (so a net converts up to a layer that cannot run).

    A blob's value is that of its last writer before the cut; in-place writers of a kept blob stay.
    """
    layers = list(net_param.layer)
    needed, keep = set(outputs), [False] * len(layers)
    for i in range(len(layers) - 1, -1, -1):
        if needed & set(layers[i].top):
            keep[i] = True
            needed |= set(layers[i].bottom)
    produced = {t for lp, k in zip(layers, keep) if k for t in lp.top}
    missing = [o for o in outputs if o not in produced]
    if missing:
        raise UserError(f"output {missing[0]!r} is no blob of net {net_param.name!r}")
    out = pb.NetParameter()
    out.CopyFrom(net_param)
    del out.layer[:]
    out.layer.extend(lp for lp, k in zip(layers, keep) if k)
    return out

