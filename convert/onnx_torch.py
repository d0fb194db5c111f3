"""Our PyTorch Net -> ONNX through torch.onnx (the TorchScript exporter): the second conversion route.

Graph inputs and outputs carry the Caffe blob names (an output is the blob's last value, as in
the Net); values inside the graph are named by the exporter. The direct route (onnx_direct) keeps
every blob name; this route cross-checks it with an independent path to the same numbers.
"""
from __future__ import annotations

import io
import json
import math
import warnings
from typing import Mapping, Sequence

import numpy as np
import onnx
import torch
from torch import nn
from torch.onnx import symbolic_helper

from convert.errors import UserError
from convert.net import Net
from convert.onnx_direct import ave_divisor_correction, pool_end_pads, pooled_size

OPSET = 18
# Layer types whose PyTorch implementation torch.onnx cannot export (the direct route converts them).
NOT_EXPORTABLE = {"ArgMax": "its stable sort (Caffe's tie order) has no torch.onnx export"}


@symbolic_helper.parse_args("v", "is", "is", "is", "i", "i", "i")
def _avg_pool(g, x, kernel, stride, padding, ceil_mode, count_include_pad, divisor_override=None):
    """aten::avg_pool{2,3}d honouring divisor_override, which torch's own symbolic silently drops.

    The Net sums windows with divisor_override=1 (Caffe's AVE divisor, LRN's window sum). In floor
    mode with zero or counted padding every window is fully counted, so AveragePool is sum / k-volume
    and multiplying by k-volume / d gives sum / d.
    """
    rank = len(kernel)
    pads = (list(padding) if len(padding) == rank else list(padding[:rank])) * 2
    if divisor_override and (ceil_mode or (any(pads) and not count_include_pad)):
        return symbolic_helper._unimplemented("avg_pool", "divisor_override with ceil_mode or uncounted pads", x)
    pooled = g.op("AveragePool", x, kernel_shape_i=list(kernel), strides_i=list(stride or kernel), pads_i=pads,
                  ceil_mode_i=ceil_mode, count_include_pad_i=count_include_pad)
    if not divisor_override:
        return pooled
    factor = torch.tensor(math.prod(kernel) / divisor_override, dtype=torch.float32)
    return g.op("Mul", pooled, g.op("Constant", value_t=factor))


_SYMBOLICS = {"aten::avg_pool2d": _avg_pool, "aten::avg_pool3d": _avg_pool}


def _explicit_ceil_pooling(model: onnx.ModelProto, input_shapes: Mapping[str, Sequence[int]]) -> None:
    """Rewrite ceil_mode pooling as floor mode with explicit end pads (+ AVE divisor correction).

    ONNX's ceil_mode is ambiguous: its shape inference keeps a last window that starts in the right
    padding, onnxruntime (like Caffe and PyTorch) drops it. Explicit pads mean the same everywhere
    (see onnx_direct.pool_nodes). The pooled inputs' sizes are measured by one onnxruntime run,
    since the exporter loses static shapes after data-dependent pads.
    """
    import onnxruntime as ort
    pools = [n for n in model.graph.node if n.op_type in ("MaxPool", "AveragePool")
             and any(a.name == "ceil_mode" and a.i for a in n.attribute)]
    if not pools:
        return
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    probe.graph.output.extend(onnx.helper.make_empty_tensor_value_info(n.input[0]) for n in pools)
    session = ort.InferenceSession(probe.SerializeToString(), providers=["CPUExecutionProvider"])
    feeds = {name: np.zeros(shape, np.float32) for name, shape in input_shapes.items()}
    sizes = dict(zip([n.input[0] for n in pools], session.run([n.input[0] for n in pools], feeds)))
    new_nodes = []
    for node in model.graph.node:
        new_nodes.append(node)
        if node not in pools:
            continue
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        size = tuple(sizes[node.input[0]].shape[2:])
        k, rank = tuple(attrs["kernel_shape"]), len(attrs["kernel_shape"])
        s, p = tuple(attrs.get("strides", [1] * rank)), tuple(attrs.get("pads", [0] * 2 * rank)[:rank])
        out = tuple(pooled_size(size[i], k[i], s[i], p[i]) for i in range(rank))
        attrs.update(ceil_mode=0, pads=list(p) + pool_end_pads(size, out, k, s, p))
        node.CopyFrom(onnx.helper.make_node(node.op_type, node.input, node.output, name=node.name, **attrs))
        correction = ave_divisor_correction(size, out, k, s, p) if node.op_type == "AveragePool" else None
        if correction is not None:
            if not attrs.get("count_include_pad"):
                raise UserError(f"pooling node {node.name!r}: AVE pooling without counted padding in ceil mode")
            result = node.output[0]
            node.output[0] = f"{result}/mean_kxk"
            model.graph.initializer.append(onnx.numpy_helper.from_array(correction.astype(np.float32),
                                                                        f"{result}/divisor_fix"))
            new_nodes.append(onnx.helper.make_node("Mul", [node.output[0], f"{result}/divisor_fix"], [result],
                                                   name=f"{node.name}/divisor_fix"))
    del model.graph.node[:]
    model.graph.node.extend(new_nodes)
    del model.graph.value_info[:]  # the exporter's inferred shapes follow the old ceil rule


class _BlobOutputs(nn.Module):
    """The net with a fixed list of blobs returned as a tuple (what the exporter traces)."""

    def __init__(self, net: Net, outputs: Sequence[str]):
        super().__init__()
        self.net, self.outputs = net, list(outputs)

    def forward(self, *inputs: torch.Tensor):
        blobs = self.net(dict(zip(self.net.input_blobs, inputs)), outputs=self.outputs)
        return tuple(blobs[name] for name in self.outputs)


def export(net: Net, outputs: Sequence[str] | None = None, metadata: Mapping[str, object] | None = None) -> onnx.ModelProto:
    """Trace the net at its declared input shapes and return the ONNX model (inputs/outputs named by blob)."""
    for lp, _ in net.named_layers():
        if lp.type in NOT_EXPORTABLE:
            raise UserError(f"layer {lp.name!r}: layer type {lp.type!r} has no torch.onnx export "
                            f"({NOT_EXPORTABLE[lp.type]}); use --route direct")
    outputs = list(outputs) if outputs else list(net.output_blobs)
    unknown = [o for o in outputs if o not in net.blob_shapes]
    if unknown:
        raise UserError(f"output {unknown[0]!r} is no blob of net {net.name!r}; blobs: {', '.join(net.blob_shapes)}")
    dummies = tuple(torch.zeros(net.blob_shapes[name]) for name in net.input_blobs)
    buffer = io.BytesIO()
    was_training = net.training
    net.eval()
    for op, fn in _SYMBOLICS.items():
        torch.onnx.register_custom_op_symbolic(op, fn, OPSET)
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the exporter's deprecation and constant-folding chatter
            torch.onnx.export(_BlobOutputs(net, outputs), dummies, buffer, dynamo=False, opset_version=OPSET,
                              input_names=list(net.input_blobs), output_names=outputs, do_constant_folding=True)
    finally:
        for op in _SYMBOLICS:
            torch.onnx.unregister_custom_op_symbolic(op, OPSET)
    net.train(was_training)
    model = onnx.load_from_string(buffer.getvalue())
    _explicit_ceil_pooling(model, {name: net.blob_shapes[name] for name in net.input_blobs})
    for value in model.graph.output:  # the tracer's static shapes can be wrong after slicing; the net's are Caffe's
        value.CopyFrom(onnx.helper.make_tensor_value_info(value.name, onnx.TensorProto.FLOAT,
                                                          list(net.blob_shapes[value.name])))
    meta = {"caffe_net": net.name, "route": "torch",
            **{k: v if isinstance(v, str) else json.dumps(v) for k, v in (metadata or {}).items()}}
    onnx.helper.set_model_props(model, meta)
    return model
