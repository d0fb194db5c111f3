"""Caffe net + caffemodel -> ONNX (opset 18) directly with onnx.helper: no PyTorch traces the graph.

    model = to_onnx(deploy_net_param, weights_param, outputs=["fc7", "prob"])

Every ONNX node is written from Caffe's definition of the layer. Layer parameters are parsed and
top shapes computed by the layer classes of convert.layers for weight-less layers (one parser for
the whole project); the arithmetic is ONNX's own.

Naming rule. Caffe blobs may be written several times (in-place layers: relu1 writes conv1); ONNX
values are written once. The value written by the LAST layer that writes blob B is named B; every
earlier version is named "B@<writer layer>" (so "conv1@conv1" is the convolution's output before
relu1, and "conv1" is what Caffe's extract_features reports). Graph inputs keep their plain name.
Layers that are the identity at TEST (Dropout, Split) write no node: their top is their bottom's
value (an Identity node names it when it is a graph output). Helper values inside a composition are
named "<layer>/<what>".

Outputs: by default the net's outputs (blobs nobody consumes); any blob can be asked for.
`fold_bn` folds BatchNorm (+ the Scale right after it) into the preceding Convolution when the
convolution's value feeds only the BatchNorm and no folded-away blob is requested.
"""
from __future__ import annotations

import json
import math
from typing import Callable, Mapping, Sequence

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from convert import caffe_pb2 as pb
from convert import protoio
from convert.errors import UserError
from convert.layers.base import POOLING_CAFFE, NetContext, legacy_equivalent
from convert.layers.common import canonical_axis
from convert.layers.vision import conv_geometry
from convert.registry import layer_class

OPSET = 18
Shape = tuple[int, ...]
# Identity at TEST: the top is the bottom's value.
ALIAS_TYPES = {"Dropout", "Split"}
# Types with no ONNX meaning in a deploy graph (training objectives, metrics on labels).
NOT_CONVERTIBLE = {"SoftmaxWithLoss": "a training loss", "EuclideanLoss": "a training loss",
                   "Accuracy": "a metric on labels", "DummyData": "fills blobs from fillers at run time",
                   "Data": "reads an LMDB (convert the deploy form: Input instead)"}


def weights_by_layer(model: pb.NetParameter) -> dict[str, list[np.ndarray]]:
    """The caffemodel's blobs as arrays, by layer name."""
    return {lp.name: [protoio.blob_to_array(b) for b in lp.blobs] for lp in model.layer if lp.blobs}


class _Graph:
    """Nodes, initializers and value shapes of the graph being written."""

    def __init__(self, weights: Mapping[str, list[np.ndarray]], source: str, pooling: str = POOLING_CAFFE):
        self.source = source  # names the weights in messages
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.shapes: dict[str, Shape] = {}
        self.weights = weights
        self.ctx = NetContext(pooling=pooling)   # the layers' own parsing gives shapes by the net's rules

    def node(self, op: str, inputs: Sequence[str], outputs: Sequence[str], name: str, **attrs) -> None:
        self.nodes.append(helper.make_node(op, list(inputs), list(outputs), name=name, **attrs))

    def const(self, name: str, value) -> str:
        arr = np.asarray(value)
        arr = arr.astype(np.int64 if arr.dtype.kind in "iu" else np.float32, copy=False)
        self.inits.append(numpy_helper.from_array(arr, name))
        return name

    def blobs(self, lp: pb.LayerParameter, expected: Sequence[Shape]) -> list[np.ndarray]:
        """The layer's weights, checked against the shapes the prototxt implies."""
        arrays = self.weights.get(lp.name, [] if not expected else None)
        if arrays is None:
            raise UserError(f"{self.source}: layer {lp.name!r} ({lp.type}) has no weights; the prototxt "
                            f"needs {len(expected)} blob(s) of shapes {[tuple(s) for s in expected]}")
        if len(arrays) != len(expected):
            raise UserError(f"{self.source}: layer {lp.name!r} has {len(arrays)} blobs, the prototxt needs "
                            f"{len(expected)}")
        out = []
        for i, (arr, shape) in enumerate(zip(arrays, expected)):
            shape = tuple(shape)
            if arr.shape != shape:
                if not (arr.size == math.prod(shape) and legacy_equivalent(arr.shape, shape)):
                    raise UserError(f"{self.source}: layer {lp.name!r} blob {i} has shape {arr.shape}, the "
                                    f"prototxt needs {shape}")
                arr = arr.reshape(shape)
            out.append(arr.astype(np.float32, copy=False))
        return out

    def parsed(self, lp: pb.LayerParameter, in_shapes: Sequence[Shape]):
        """The project's layer object for a weight-less layer: Caffe's parameter parsing and top shapes."""
        return layer_class(lp.type, lp.name)(lp, list(in_shapes), self.ctx)


Converter = Callable[[_Graph, pb.LayerParameter, list[str], list[Shape], list[str]], list[Shape]]
CONVERTERS: dict[str, Converter] = {}


def converts(*types: str):
    def wrap(fn: Converter) -> Converter:
        for t in types:
            CONVERTERS[t] = fn
        return fn
    return wrap


# ------------------------------------------------------------------ vision
@converts("Convolution", "Deconvolution")
def _convolution(g: _Graph, lp, ins, shapes, outs):
    cp, (n, c, h, w) = lp.convolution_param, shapes[0]
    geo, group, num_out = conv_geometry(lp), cp.group, cp.num_output
    k, s, p, d = geo["kernel"], geo["stride"], geo["pad"], geo["dilation"]
    transposed = lp.type == "Deconvolution"
    # Caffe's layouts: Convolution (out, in/group, kh, kw); Deconvolution (in, out/group, kh, kw) = ONNX's.
    w_shape = (c, num_out // group) + k if transposed else (num_out, c // group) + k
    arrays = g.blobs(lp, [w_shape] + ([(num_out,)] if cp.bias_term else []))
    inputs = [ins[0], g.const(f"{lp.name}/weight", arrays[0])]
    if cp.bias_term:
        inputs.append(g.const(f"{lp.name}/bias", arrays[1]))
    g.node("ConvTranspose" if transposed else "Conv", inputs, outs, lp.name, kernel_shape=list(k),
           strides=list(s), pads=[p[0], p[1], p[0], p[1]], dilations=list(d), group=group)
    extent = [d[i] * (k[i] - 1) + 1 for i in range(2)]
    if transposed:
        size = [s[i] * (x - 1) + extent[i] - 2 * p[i] for i, x in enumerate((h, w))]
    else:
        size = [(x + 2 * p[i] - extent[i]) // s[i] + 1 for i, x in enumerate((h, w))]
    return [(n, num_out, *size)]


def pooled_size(size: int, k: int, s: int, p: int, ceil: bool = True) -> int:
    """Caffe's pooling output size (PyTorch's ceil_mode rule is the same for p <= k/2)."""
    out = -(-(size + 2 * p - k) // s) + 1 if ceil else (size + 2 * p - k) // s + 1
    return out - 1 if p > 0 and (out - 1) * s >= size + p else out


def pool_end_pads(size: Shape, out_size: Shape, k: Shape, s: Shape, p: Shape) -> list[int]:
    """End pads that make floor-mode pooling (begin pad p) produce exactly out_size windows."""
    return [max((out_size[i] - 1) * s[i] + k[i] - size[i] - p[i], 0) for i in range(len(size))]


def ave_divisor_correction(size: Shape, out_size: Shape, k: Shape, s: Shape, p: Shape) -> np.ndarray | None:
    """k_h*k_w / Caffe's AVE divisor per output cell (window clipped to [-p, H + p)); None if all 1."""
    divisors = []
    for i in range(2):
        starts = np.arange(out_size[i]) * s[i] - p[i]
        divisors.append(np.minimum(starts + k[i], size[i] + p[i]) - starts)
    correction = (k[0] * k[1]) / np.outer(divisors[0], divisors[1])
    return None if np.all(correction == 1) else correction


def pool_nodes(g: "_Graph", name: str, x: str, out: str, is_max: bool, size: Shape, out_size: Shape,
               k: Shape, s: Shape, p: Shape) -> None:
    """Caffe's ceil rounding and last-window shrink as explicit end pads for floor-mode ONNX pooling.

    MAX: padded cells never win (ONNX MaxPool ignores pads). AVE: ONNX with count_include_pad divides
    by k*k; Caffe divides by the window clipped to [-p, H + p), so windows reaching into the ceil
    overhang beyond H + p get a constant correction k*k / caffe_divisor (known at conversion time).
    """
    end = pool_end_pads(size, out_size, k, s, p)
    attrs = dict(kernel_shape=list(k), strides=list(s), pads=[p[0], p[1], end[0], end[1]])
    if is_max:
        g.node("MaxPool", [x], [out], name, **attrs)
        return
    correction = ave_divisor_correction(size, out_size, k, s, p)
    if correction is None:
        g.node("AveragePool", [x], [out], name, count_include_pad=1, **attrs)
        return
    g.node("AveragePool", [x], [f"{name}/mean_kxk"], name, count_include_pad=1, **attrs)
    g.node("Mul", [f"{name}/mean_kxk", g.const(f"{name}/divisor_fix", correction)], [out], f"{name}/divisor_fix")


@converts("Pooling")
def _pooling(g: _Graph, lp, ins, shapes, outs):
    layer = g.parsed(lp, shapes)
    top = layer.top_shapes[0]
    is_max = layer.method == pb.PoolingParameter.MAX
    if layer.global_pooling:
        g.node("GlobalMaxPool" if is_max else "GlobalAveragePool", ins, outs, lp.name)
    else:
        pool_nodes(g, lp.name, ins[0], outs[0], is_max, shapes[0][2:], top[2:], layer.kernel, layer.stride, layer.pad)
    return [top]


@converts("LRN")
def _lrn(g: _Graph, lp, ins, shapes, outs):
    """ACROSS: ONNX LRN is x / (bias + alpha/size * sum of squares)^beta, Caffe's with bias = k.
    WITHIN: x * (1 + alpha * mean_{n x n, zero-padded} x^2)^-beta, composed."""
    rp, x = lp.lrn_param, ins[0]
    if rp.local_size % 2 == 0:
        raise UserError(f"layer {lp.name!r}: LRN local_size must be odd, got {rp.local_size}")
    if rp.norm_region == pb.LRNParameter.ACROSS_CHANNELS:
        g.node("LRN", [x], outs, lp.name, size=rp.local_size, alpha=rp.alpha, beta=rp.beta, bias=rp.k)
        return [shapes[0]]
    n, half, name = rp.local_size, (rp.local_size - 1) // 2, lp.name
    g.node("Mul", [x, x], [f"{name}/sq"], f"{name}/sq")
    g.node("AveragePool", [f"{name}/sq"], [f"{name}/mean"], f"{name}/mean", kernel_shape=[n, n],
           strides=[1, 1], pads=[half] * 4, count_include_pad=1)
    g.node("Mul", [f"{name}/mean", g.const(f"{name}/alpha", rp.alpha)], [f"{name}/scaled"], f"{name}/scaled")
    g.node("Add", [f"{name}/scaled", g.const(f"{name}/one", 1.0)], [f"{name}/base"], f"{name}/base")
    g.node("Pow", [f"{name}/base", g.const(f"{name}/neg_beta", -rp.beta)], [f"{name}/factor"], f"{name}/factor")
    g.node("Mul", [x, f"{name}/factor"], outs, name)
    return [shapes[0]]


# ----------------------------------------------------------------- neurons
def _unary(op: str, **fixed):
    def convert(g: _Graph, lp, ins, shapes, outs):
        g.node(op, ins, outs, lp.name, **fixed)
        return [shapes[0]]
    return convert


for _caffe, _op in {"Sigmoid": "Sigmoid", "TanH": "Tanh", "AbsVal": "Abs", "BNLL": "Softplus"}.items():
    CONVERTERS[_caffe] = _unary(_op)


@converts("ReLU")
def _relu(g: _Graph, lp, ins, shapes, outs):
    slope = lp.relu_param.negative_slope
    if slope == 0:
        g.node("Relu", ins, outs, lp.name)
    else:
        g.node("LeakyRelu", ins, outs, lp.name, alpha=slope)
    return [shapes[0]]


@converts("PReLU")
def _prelu(g: _Graph, lp, ins, shapes, outs):
    shape = shapes[0]
    channels = 1 if lp.prelu_param.channel_shared else shape[1]
    (slope,) = g.blobs(lp, [(channels,)])
    slope = slope.reshape((channels,) + (1,) * (len(shape) - 2)) if channels > 1 else slope
    g.node("PRelu", [ins[0], g.const(f"{lp.name}/slope", slope)], outs, lp.name)
    return [shape]


@converts("ELU")
def _elu(g: _Graph, lp, ins, shapes, outs):
    g.node("Elu", ins, outs, lp.name, alpha=lp.elu_param.alpha)
    return [shapes[0]]


def _affine(g: _Graph, name: str, x: str, scale: float, shift: float, out: str) -> str:
    """out = shift + scale * x, skipping the identity parts; returns the value holding the result."""
    if scale != 1:
        nxt = out if shift == 0 else f"{name}/scaled"
        g.node("Mul", [x, g.const(f"{name}/scale", scale)], [nxt], f"{name}/scale")
        x = nxt
    if shift != 0:
        g.node("Add", [x, g.const(f"{name}/shift", shift)], [out], f"{name}/shift")
        x = out
    return x


def _finish(g: _Graph, name: str, value: str, out: str) -> None:
    if value != out:
        g.node("Identity", [value], [out], name)


@converts("Power")
def _power(g: _Graph, lp, ins, shapes, outs):
    p = lp.power_param
    if p.power == 1:
        _finish(g, lp.name, _affine(g, lp.name, ins[0], p.scale, p.shift, outs[0]), outs[0])
    else:
        base = _affine(g, lp.name, ins[0], p.scale, p.shift, f"{lp.name}/base")
        g.node("Pow", [base, g.const(f"{lp.name}/power", p.power)], outs, lp.name)
    return [shapes[0]]


def _ln_base(lp, base: float) -> float:
    if base != -1 and base <= 0:
        raise UserError(f"layer {lp.name!r}: base must be positive (or -1 for e), got {base}")
    return 1.0 if base == -1 else math.log(base)


@converts("Exp")
def _exp(g: _Graph, lp, ins, shapes, outs):
    """base^(shift + scale x) = exp(ln(base) * (shift + scale x))."""
    p = lp.exp_param
    ln = _ln_base(lp, p.base)
    arg = _affine(g, lp.name, ins[0], ln * p.scale, ln * p.shift, f"{lp.name}/arg")
    g.node("Exp", [arg], outs, lp.name)
    return [shapes[0]]


@converts("Log")
def _log(g: _Graph, lp, ins, shapes, outs):
    """log_base(shift + scale x) = ln(shift + scale x) / ln(base)."""
    p = lp.log_param
    ln = _ln_base(lp, p.base)
    arg = _affine(g, lp.name, ins[0], p.scale, p.shift, f"{lp.name}/arg")
    g.node("Log", [arg], [outs[0] if ln == 1 else f"{lp.name}/ln"], lp.name)
    if ln != 1:
        g.node("Mul", [f"{lp.name}/ln", g.const(f"{lp.name}/inv_ln_base", 1.0 / ln)], outs, f"{lp.name}/base")
    return [shapes[0]]


@converts("Threshold")
def _threshold(g: _Graph, lp, ins, shapes, outs):
    t = g.const(f"{lp.name}/threshold", lp.threshold_param.threshold)
    g.node("Greater", [ins[0], t], [f"{lp.name}/above"], f"{lp.name}/above")
    g.node("Cast", [f"{lp.name}/above"], outs, lp.name, to=TensorProto.FLOAT)
    return [shapes[0]]


@converts("Clip")
def _clip(g: _Graph, lp, ins, shapes, outs):
    p = lp.clip_param
    g.node("Clip", [ins[0], g.const(f"{lp.name}/min", p.min), g.const(f"{lp.name}/max", p.max)], outs, lp.name)
    return [shapes[0]]


@converts("Swish")
def _swish(g: _Graph, lp, ins, shapes, outs):
    arg = _affine(g, lp.name, ins[0], lp.swish_param.beta, 0.0, f"{lp.name}/beta_x")
    g.node("Sigmoid", [arg], [f"{lp.name}/gate"], f"{lp.name}/gate")
    g.node("Mul", [ins[0], f"{lp.name}/gate"], outs, lp.name)
    return [shapes[0]]


# ---------------------------------------------------- inner product, softmax
@converts("InnerProduct")
def _inner_product(g: _Graph, lp, ins, shapes, outs):
    ip, shape, name = lp.inner_product_param, shapes[0], lp.name
    axis = canonical_axis(ip.axis, len(shape), name)
    k, n = math.prod(shape[axis:]), ip.num_output
    arrays = g.blobs(lp, [(k, n) if ip.transpose else (n, k)] + ([(n,)] if ip.bias_term else []))
    top = tuple(shape[:axis]) + (n,)
    if axis == 1:  # the common case: (N, K) x W^T + b as one Gemm
        x = ins[0]
        if len(shape) > 2:
            g.node("Flatten", [x], [f"{name}/flat"], f"{name}/flat", axis=1)
            x = f"{name}/flat"
        inputs = [x, g.const(f"{name}/weight", arrays[0])]  # Caffe's layout; Gemm transposes as needed
        if ip.bias_term:
            inputs.append(g.const(f"{name}/bias", arrays[1]))
        g.node("Gemm", inputs, outs, name, transB=0 if ip.transpose else 1)
        return [top]
    g.node("Reshape", [ins[0], g.const(f"{name}/flat_shape", list(shape[:axis]) + [k])], [f"{name}/flat"],
           f"{name}/flat")
    weight_kn = arrays[0] if ip.transpose else np.ascontiguousarray(arrays[0].T)
    g.node("MatMul", [f"{name}/flat", g.const(f"{name}/weight", weight_kn)],
           [outs[0] if not ip.bias_term else f"{name}/product"], name)
    if ip.bias_term:
        g.node("Add", [f"{name}/product", g.const(f"{name}/bias", arrays[1])], outs, f"{name}/bias")
    return [top]


@converts("Softmax")
def _softmax(g: _Graph, lp, ins, shapes, outs):
    g.node("Softmax", ins, outs, lp.name, axis=canonical_axis(lp.softmax_param.axis, len(shapes[0]), lp.name))
    return [shapes[0]]


# ------------------------------------------------------------ normalisation
def bn_statistics(lp: pb.LayerParameter, arrays: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """BatchNorm's global mean and variance: blobs 0, 1 divided by the factor blob 2 (factor 0 gives 0)."""
    factor = float(arrays[2].reshape(-1)[0])
    scale = 0.0 if factor == 0 else 1.0 / factor
    return arrays[0] * scale, arrays[1] * scale


@converts("BatchNorm")
def _batch_norm(g: _Graph, lp, ins, shapes, outs):
    shape, bp = shapes[0], lp.batch_norm_param
    if bp.HasField("use_global_stats") and not bp.use_global_stats:
        raise UserError(f"layer {lp.name!r}: BatchNorm with use_global_stats false normalises by batch "
                        "statistics at TEST; only global statistics convert")
    if len(shape) < 2:
        raise UserError(f"layer {lp.name!r}: BatchNorm conversion needs an (N, C, ...) bottom, got {shape}")
    c = shape[1]
    mean, var = bn_statistics(lp, g.blobs(lp, [(c,), (c,), (1,)]))
    name = lp.name
    g.node("BatchNormalization", [ins[0], g.const(f"{name}/gamma", np.ones(c)), g.const(f"{name}/beta", np.zeros(c)),
                                  g.const(f"{name}/mean", mean), g.const(f"{name}/var", var)], outs, name,
           epsilon=bp.eps)
    return [shape]


def _operand_shape(layer, ndim: int, operand: Shape) -> Shape:
    """The broadcast shape of a Scale/Bias operand placed at the layer's axis."""
    return tuple(operand) + (1,) * (ndim - layer.axis - len(operand))


def _scale_or_bias(g: _Graph, lp, ins, shapes, outs, multiply: bool):
    layer = g.parsed(lp, shapes)  # parsing and blob shapes only; the weights come from the caffemodel
    name, ndim = lp.name, len(shapes[0])
    learned = [tuple(getattr(layer, n).shape) for n in layer.blob_names]
    arrays = g.blobs(lp, learned)
    if len(ins) > 1:
        operand_shape = tuple(shapes[1])
        g.node("Reshape", [ins[1], g.const(f"{name}/operand_shape", _operand_shape(layer, ndim, operand_shape))],
               [f"{name}/operand"], f"{name}/operand")
        operand = f"{name}/operand"
    else:
        operand_shape = learned[0]
        operand = g.const(f"{name}/operand", arrays.pop(0).reshape(_operand_shape(layer, ndim, operand_shape)))
    if not multiply:
        g.node("Add", [ins[0], operand], outs, name)
        return [shapes[0]]
    if arrays:  # Scale's bias blob
        bias = g.const(f"{name}/bias", arrays[0].reshape(_operand_shape(layer, ndim, operand_shape)))
        g.node("Mul", [ins[0], operand], [f"{name}/scaled"], name)
        g.node("Add", [f"{name}/scaled", bias], outs, f"{name}/bias")
    else:
        g.node("Mul", [ins[0], operand], outs, name)
    return [shapes[0]]


CONVERTERS["Scale"] = lambda g, lp, ins, shapes, outs: _scale_or_bias(g, lp, ins, shapes, outs, True)
CONVERTERS["Bias"] = lambda g, lp, ins, shapes, outs: _scale_or_bias(g, lp, ins, shapes, outs, False)


@converts("MVN")
def _mvn(g: _Graph, lp, ins, shapes, outs):
    """(x - mean) / (std + eps) per (n, c) (per n across channels); std biased, as Caffe's."""
    mp, shape, name = lp.mvn_param, shapes[0], lp.name
    axes = g.const(f"{name}/axes", list(range(1 if mp.across_channels else 2, len(shape))))
    g.node("ReduceMean", [ins[0], axes], [f"{name}/mean"], f"{name}/mean", keepdims=1)
    centred = outs[0] if not mp.normalize_variance else f"{name}/centred"
    g.node("Sub", [ins[0], f"{name}/mean"], [centred], f"{name}/centred")
    if mp.normalize_variance:
        g.node("Mul", [centred, centred], [f"{name}/sq"], f"{name}/sq")
        g.node("ReduceMean", [f"{name}/sq", axes], [f"{name}/var"], f"{name}/var", keepdims=1)
        g.node("Sqrt", [f"{name}/var"], [f"{name}/std"], f"{name}/std")
        g.node("Add", [f"{name}/std", g.const(f"{name}/eps", mp.eps)], [f"{name}/denom"], f"{name}/eps")
        g.node("Div", [centred, f"{name}/denom"], outs, name)
    return [shape]


# --------------------------------------------------------------- plumbing
@converts("Eltwise")
def _eltwise(g: _Graph, lp, ins, shapes, outs):
    layer, name = g.parsed(lp, shapes), lp.name
    if layer.operation == pb.EltwiseParameter.MAX:
        g.node("Max", ins, outs, name)
        return [shapes[0]]
    op = "Add" if layer.operation == pb.EltwiseParameter.SUM else "Mul"
    terms = list(ins)
    if op == "Add":  # Caffe's axpy order: coeff_0 x_0 + coeff_1 x_1 + ...
        for i, c in enumerate(layer.coeff):
            if c != 1:
                g.node("Mul", [ins[i], g.const(f"{name}/coeff{i}", c)], [f"{name}/term{i}"], f"{name}/coeff{i}")
                terms[i] = f"{name}/term{i}"
    acc = terms[0]
    for i, t in enumerate(terms[1:], start=1):
        nxt = outs[0] if i == len(terms) - 1 else f"{name}/partial{i}"
        g.node(op, [acc, t], [nxt], name if nxt == outs[0] else f"{name}/partial{i}")
        acc = nxt
    return [shapes[0]]


@converts("Concat")
def _concat(g: _Graph, lp, ins, shapes, outs):
    layer = g.parsed(lp, shapes)
    g.node("Concat", ins, outs, lp.name, axis=layer.axis)
    return layer.top_shapes


@converts("Slice")
def _slice(g: _Graph, lp, ins, shapes, outs):
    layer = g.parsed(lp, shapes)
    g.node("Split", [ins[0], g.const(f"{lp.name}/sizes", layer.sizes)], outs, lp.name, axis=layer.axis)
    return layer.top_shapes


def _reshape_to(g: _Graph, lp, ins, shapes, outs, dims: Sequence[int]):
    g.node("Reshape", [ins[0], g.const(f"{lp.name}/shape", list(dims))], outs, lp.name, allowzero=0)


@converts("Flatten", "Reshape")
def _reshape(g: _Graph, lp, ins, shapes, outs):
    top = g.parsed(lp, shapes).top_shapes[0]
    rp = lp.reshape_param
    if lp.type == "Reshape" and rp.axis == 0 and rp.num_axes == -1:
        dims = list(rp.shape.dim)  # ONNX Reshape (allowzero 0) means what Caffe means: 0 copies, -1 infers
    else:
        dims = list(top)
    _reshape_to(g, lp, ins, shapes, outs, dims)
    return [top]


@converts("Crop")
def _crop(g: _Graph, lp, ins, shapes, outs):
    layer = g.parsed(lp, shapes)
    top, axes = layer.top_shapes[0], list(range(layer.start, len(shapes[0])))
    starts = [layer.offsets[a] for a in axes]
    name = lp.name
    g.node("Slice", [ins[0], g.const(f"{name}/starts", starts),
                     g.const(f"{name}/ends", [s + top[a] for s, a in zip(starts, axes)]),
                     g.const(f"{name}/axes", axes)], outs, name)
    return [top]


@converts("Tile")
def _tile(g: _Graph, lp, ins, shapes, outs):
    layer = g.parsed(lp, shapes)
    g.node("Tile", [ins[0], g.const(f"{lp.name}/repeats", layer.repeats)], outs, lp.name)
    return layer.top_shapes


@converts("Reduction")
def _reduction(g: _Graph, lp, ins, shapes, outs):
    layer, rp, name = g.parsed(lp, shapes), lp.reduction_param, lp.name
    ops = {pb.ReductionParameter.SUM: "ReduceSum", pb.ReductionParameter.ASUM: "ReduceL1",
           pb.ReductionParameter.SUMSQ: "ReduceSumSquare", pb.ReductionParameter.MEAN: "ReduceMean"}
    axes = g.const(f"{name}/axes", list(range(layer.axis, len(shapes[0]))))
    reduced = outs[0] if rp.coeff == 1 else f"{name}/reduced"
    g.node(ops[rp.operation], [ins[0], axes], [reduced], name, keepdims=0)
    if rp.coeff != 1:
        g.node("Mul", [reduced, g.const(f"{name}/coeff", rp.coeff)], outs, f"{name}/coeff")
    return layer.top_shapes


@converts("ArgMax")
def _argmax(g: _Graph, lp, ins, shapes, outs):
    """TopK on the reversed axis: ONNX breaks ties towards the lower index, Caffe towards the larger."""
    layer, name, shape = g.parsed(lp, shapes), lp.name, shapes[0]
    x, axis = ins[0], (layer.axis if layer.has_axis else 1)
    if not layer.has_axis:
        g.node("Reshape", [x, g.const(f"{name}/rows_shape", [shape[0], -1])], [f"{name}/rows"], f"{name}/rows")
        x = f"{name}/rows"
    extent = shape[axis] if layer.has_axis else math.prod(shape[1:])
    g.node("Slice", [x, g.const(f"{name}/rev_start", [-1]), g.const(f"{name}/rev_end", [-extent - 1]),
                     g.const(f"{name}/rev_axis", [axis]), g.const(f"{name}/rev_step", [-1])],
           [f"{name}/reversed"], f"{name}/reversed")
    g.node("TopK", [f"{name}/reversed", g.const(f"{name}/k", [layer.top_k])], [f"{name}/values", f"{name}/rev_idx"],
           name, axis=axis, largest=1, sorted=1)
    g.node("Cast", [f"{name}/rev_idx"], [f"{name}/rev_idx_f"], f"{name}/cast", to=TensorProto.FLOAT)
    g.node("Sub", [g.const(f"{name}/last", float(extent - 1)), f"{name}/rev_idx_f"], [f"{name}/indices"],
           f"{name}/indices")
    if layer.has_axis:
        _finish(g, f"{name}/out", f"{name}/values" if layer.out_max_val else f"{name}/indices", outs[0])
        return layer.top_shapes
    if layer.out_max_val:
        g.node("Concat", [f"{name}/indices", f"{name}/values"], [f"{name}/both"], f"{name}/both", axis=1)
    g.node("Reshape", [f"{name}/both" if layer.out_max_val else f"{name}/indices",
                       g.const(f"{name}/top_shape", list(layer.top_shapes[0]))], outs, f"{name}/out")
    return layer.top_shapes


@converts("Silence")
def _silence(g: _Graph, lp, ins, shapes, outs):
    return []


# ------------------------------------------------------------ fold BN
def fold_batchnorm(layers: list[pb.LayerParameter], weights: dict[str, list[np.ndarray]],
                   keep: set[str]) -> tuple[list[pb.LayerParameter], dict[str, list[np.ndarray]], dict[str, str]]:
    """Fold BatchNorm (+ a following Scale) into the Convolution before it.

    Applies where the convolution's value is read only by the BatchNorm (and the BatchNorm's only by
    the Scale), no blob in `keep` would lose its value and nothing in between touches the blobs.
    Returns the new layers, the new weights and {folded-away layer: conv it went into}.
    """
    readers: dict[tuple[str, int], list[int]] = {}
    version: dict[str, int] = {}
    writes: list[list[tuple[str, int]]] = []
    for i, lp in enumerate(layers):
        for b in lp.bottom:
            readers.setdefault((b, version.get(b, -1)), []).append(i)
        for t in lp.top:
            version[t] = i
        writes.append([(t, i) for t in lp.top])
    last_writer = {b: i for b, i in version.items()}

    def only_reader(i: int, type_name: str) -> int | None:
        if len(layers[i].top) != 1:
            return None
        top = layers[i].top[0]
        rs = readers.get((top, i), [])
        if len(rs) != 1 or layers[rs[0]].type != type_name or len(layers[rs[0]].bottom) != 1:
            return None
        if last_writer[top] == i and top in keep:  # the requested value would vanish
            return None
        return rs[0]

    out_layers, new_weights, folded = list(layers), dict(weights), {}
    removed: set[int] = set()
    for i, lp in enumerate(layers):
        if lp.type != "Convolution" or lp.name not in weights:
            continue
        j = only_reader(i, "BatchNorm")
        if j is None or lp.name in folded.values():
            continue
        k = only_reader(j, "Scale")
        if k is not None:
            sp = layers[k].scale_param
            if not (canonical_axis(sp.axis, 4, layers[k].name) == 1 and sp.num_axes == 1):
                k = None
        last = k if k is not None else j
        new_top = layers[last].top[0]
        touched = {n for m in range(i + 1, last) if m not in (j,) for n in (*layers[m].bottom, *layers[m].top)}
        if new_top in touched or layers[i].top[0] in touched and new_top != layers[i].top[0]:
            continue
        conv_w = [a.astype(np.float64) for a in weights[lp.name]]
        bn_w = [a.astype(np.float64) for a in weights[layers[j].name]]
        mean, var = bn_statistics(layers[j], bn_w)
        a = 1.0 / np.sqrt(var + layers[j].batch_norm_param.eps)
        shift = -mean * a
        if k is not None:
            sc = [x.astype(np.float64).reshape(-1) for x in weights[layers[k].name]]
            a, shift = a * sc[0], shift * sc[0] + (sc[1] if len(sc) > 1 else 0.0)
        bias = conv_w[1] if len(conv_w) > 1 else np.zeros(conv_w[0].shape[0])
        new_weights[lp.name] = [(conv_w[0] * a.reshape(-1, 1, 1, 1)).astype(np.float32),
                                (bias * a + shift).astype(np.float32)]
        conv = pb.LayerParameter()
        conv.CopyFrom(lp)
        conv.convolution_param.bias_term = True
        conv.ClearField("top")
        conv.top.append(new_top)
        out_layers[i] = conv
        for m in (j, k):
            if m is not None:
                removed.add(m)
                folded[layers[m].name] = lp.name
    return [lp for m, lp in enumerate(out_layers) if m not in removed], new_weights, folded


# ----------------------------------------------------------------- driver
def _net_outputs(layers: Sequence[pb.LayerParameter]) -> list[str]:
    """Blobs produced and not consumed afterwards (Caffe's net outputs)."""
    available: dict[str, None] = {}
    for lp in layers:
        for b in lp.bottom:
            available.pop(b, None)
        for t in lp.top:
            available[t] = None
    return list(available)


def to_onnx(net_param: pb.NetParameter, weights: pb.NetParameter | Mapping[str, list[np.ndarray]], *,
            outputs: Sequence[str] | None = None, fold_bn: bool = False,
            metadata: Mapping[str, object] | None = None, weights_source: str = "the weights",
            pooling: str = POOLING_CAFFE) -> onnx.ModelProto:
    """Convert a deploy net (Input layers, TEST phase; see convert.deploy) with its weights to ONNX.

    weights_source names the weights in error messages (e.g. "w.caffemodel does not fit net.prototxt");
    pooling is the net's pooling output-size rule (convert.layers.base.POOLING_RULES), as for Net.
    """
    if isinstance(weights, pb.NetParameter):
        weights = weights_by_layer(weights)
    layers = list(net_param.layer)
    all_blobs = list(dict.fromkeys(t for lp in layers for t in lp.top))
    wanted = list(outputs) if outputs else _net_outputs(layers)
    unknown = [o for o in wanted if o not in all_blobs]
    if unknown:
        raise UserError(f"output {unknown[0]!r} is no blob of net {net_param.name!r}; blobs: {', '.join(all_blobs)}")
    if outputs:  # only what the outputs need: a net converts up to a layer that cannot (Python, DetectionOutput)
        from convert.deploy import prune_to_outputs
        pruned = pb.NetParameter()
        pruned.layer.extend(layers)
        layers = list(prune_to_outputs(pruned, wanted).layer)
    layers = rewrite_fork_layers(layers)  # after the cut: a Python layer beyond it does not matter
    folded: dict[str, str] = {}
    if fold_bn:
        layers, weights, folded = fold_batchnorm(layers, dict(weights), set(wanted))
    unsupported = [lp for lp in layers if lp.type not in CONVERTERS and lp.type not in ALIAS_TYPES
                   and lp.type != "Input"]
    if unsupported:
        lp = unsupported[0]
        why = f" ({NOT_CONVERTIBLE[lp.type]})" if lp.type in NOT_CONVERTIBLE else ""
        raise UserError(f"layer {lp.name!r}: layer type {lp.type!r} has no ONNX conversion{why}; convertible: "
                        + ", ".join(sorted([*CONVERTERS, *ALIAS_TYPES, "Input"])))

    g = _Graph(weights, weights_source, pooling)
    last_writer = {t: i for i, lp in enumerate(layers) for t in lp.top if lp.type not in ALIAS_TYPES}
    current: dict[str, str] = {}
    graph_inputs = []
    for i, lp in enumerate(layers):
        if lp.type == "Input":
            dims = [tuple(int(d) for d in s.dim) for s in lp.input_param.shape]
            for n, top in enumerate(lp.top):
                shape = dims[0] if len(dims) == 1 else dims[n]
                graph_inputs.append(helper.make_tensor_value_info(top, TensorProto.FLOAT, list(shape)))
                current[top], g.shapes[top] = top, shape
            continue
        missing = [b for b in lp.bottom if b not in current]
        if missing:
            raise UserError(f"layer {lp.name!r} ({lp.type}): bottom blob {missing[0]!r} is not produced by any "
                            "earlier layer")
        ins = [current[b] for b in lp.bottom]
        if lp.type in ALIAS_TYPES:
            for top in lp.top:
                current[top] = ins[0]
            continue
        is_input = {inp.name for inp in graph_inputs}
        outs = [t if last_writer[t] == i and t not in is_input else f"{t}@{lp.name}" for t in lp.top]
        top_shapes = CONVERTERS[lp.type](g, lp, ins, [g.shapes[x] for x in ins], outs)
        for top, out, shape in zip(lp.top, outs, top_shapes):
            current[top], g.shapes[out] = out, tuple(shape)

    graph_outputs = []
    for blob in wanted:
        if blob not in current:
            raise UserError(f"output {blob!r} is folded away by --fold-bn (into {folded.get(blob, 'a convolution')}); "
                            "ask for it without --fold-bn")
        value = current[blob]
        if value != blob:
            if blob in g.shapes and blob != value:  # an input blob rewritten in place keeps its input name
                raise UserError(f"output {blob!r} is a net input rewritten in place; ONNX cannot give both the name")
            g.node("Identity", [value], [blob], f"{blob}/output")
        graph_outputs.append(helper.make_tensor_value_info(blob, TensorProto.FLOAT, list(g.shapes[value])))

    graph = helper.make_graph(g.nodes, net_param.name or "caffe_net", graph_inputs, graph_outputs, g.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="replicate-convert", producer_version="direct")
    model.ir_version = min(model.ir_version, 10)  # what onnxruntime 1.2x reads
    meta = {"caffe_net": net_param.name, "route": "direct", "fold_bn": json.dumps(fold_bn),
            "folded_layers": json.dumps(folded),
            "blob_naming": "last writer of blob B is named B; earlier versions 'B@<layer>'",
            **{k: v if isinstance(v, str) else json.dumps(v) for k, v in (metadata or {}).items()}}
    onnx.helper.set_model_props(model, {k: str(v) for k, v in meta.items()})
    return model


from convert.onnx_fork import rewrite_fork_layers  # noqa: E402  (registers the fork layers' converters)
