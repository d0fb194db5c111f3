"""ONNX conversions (direct route) of the fork layers in convert/layers/fork.py, registered in onnx_direct.

Each is an ONNX op where one has the layer's semantics (Transpose, Resize with align_corners, MaxRoiPool,
BatchNormalization) and a composition otherwise; PriorBox, which depends only on shapes, is a constant.
DetectionOutput has no conversion: its number of outputs depends on the data.
"""
from __future__ import annotations

import numpy as np
from onnx import TensorProto

from convert import caffe_pb2 as pb
from convert.errors import UserError
from convert.layers.fork import as_bvlc_convolution, bn_flavor, interp_size, prior_boxes, python_layer_message
from convert.onnx_direct import CONVERTERS, NOT_CONVERTIBLE, _Graph, converts, pool_end_pads

NOT_CONVERTIBLE.update({
    "DetectionOutput": "its number of detections depends on the data (NMS); convert up to its bottoms "
                       "(--outputs LOC,CONF,PRIORS) and run convert.layers.fork.DetectionOutput on the outputs",
    "Python": "it runs the model's own Python code; cut the net before it with --outputs",
    "DenseImageData": "reads image files (convert the deploy form: Input instead)",
})


def rewrite_fork_layers(layers: list[pb.LayerParameter]) -> list[pb.LayerParameter]:
    """Layers the direct route writes as BVLC ones: py-faster-rcnn's Dropout with scale_train false is
    x * (1 - ratio) at TEST (a Power layer); HoleConvolution is a dilated Convolution. A Python layer
    raises the message naming its module and class."""
    out = []
    for lp in layers:
        if lp.type == "Python":
            raise UserError(python_layer_message(lp))
        if lp.type == "Dropout" and not lp.dropout_param.scale_train:
            power = pb.LayerParameter(name=lp.name, type="Power", bottom=lp.bottom, top=lp.top)
            power.power_param.scale = 1.0 - lp.dropout_param.dropout_ratio
            lp = power
        elif lp.type == "HoleConvolution":
            lp = as_bvlc_convolution(lp, 0)
        out.append(lp)
    return out


@converts("ConvolutionDepthwise", "DepthwiseConvolution", "HoleConvolution")
def _depthwise(g: _Graph, lp, ins, shapes, outs):
    return CONVERTERS["Convolution"](g, as_bvlc_convolution(lp, shapes[0][1]), ins, shapes, outs)


_bvlc_pooling = CONVERTERS["Pooling"]


@converts("Pooling")
def _pooling_with_mask(g: _Graph, lp, ins, shapes, outs):
    """MAX pooling's mask top: ONNX MaxPool's Indices (flat over the tensor) modulo the plane size."""
    if len(lp.top) < 2:
        return _bvlc_pooling(g, lp, ins, shapes, outs)
    layer, name = g.parsed(lp, shapes), lp.name
    (n, c, h, w), top = shapes[0], layer.top_shapes[0]
    k, s, p = layer.kernel, layer.stride, layer.pad
    end = pool_end_pads((h, w), top[2:], k, s, p)
    g.node("MaxPool", ins, [outs[0], f"{name}/indices"], name, kernel_shape=list(k), strides=list(s),
           pads=[p[0], p[1], end[0], end[1]])
    g.node("Mod", [f"{name}/indices", g.const(f"{name}/plane", np.array(h * w, np.int64))], [f"{name}/in_plane"],
           f"{name}/mod")
    g.node("Cast", [f"{name}/in_plane"], [outs[1]], f"{name}/mask", to=TensorProto.FLOAT)
    return [top, top]


@converts("Upsample")
def _upsample(g: _Graph, lp, ins, shapes, outs):
    """Max unpooling as ScatterElements of each plane into zeros; the one-bottom fork as nearest Resize."""
    layer, name = g.parsed(lp, shapes), lp.name
    top = layer.top_shapes[0]
    if not layer.unpool:
        g.node("Resize", [ins[0], "", g.const(f"{name}/scales", np.array([1, 1, layer.scale, layer.scale], np.float32))],
               outs, name, mode="nearest", coordinate_transformation_mode="asymmetric", nearest_mode="floor")
        return [top]
    n, c, h, w = shapes[0]
    planes = g.const(f"{name}/planes", [n, c, h * w])
    g.node("Reshape", [ins[0], planes], [f"{name}/values"], f"{name}/values")
    g.node("Cast", [ins[1]], [f"{name}/mask_i64"], f"{name}/cast", to=TensorProto.INT64)
    g.node("Reshape", [f"{name}/mask_i64", planes], [f"{name}/index"], f"{name}/index")
    zeros = g.const(f"{name}/zeros", np.zeros((n, c, top[2] * top[3]), np.float32))
    g.node("ScatterElements", [zeros, f"{name}/index", f"{name}/values"], [f"{name}/scattered"], name, axis=2)
    g.node("Reshape", [f"{name}/scattered", g.const(f"{name}/top_shape", list(top))], outs, f"{name}/out")
    return [top]


@converts("Interp")
def _interp(g: _Graph, lp, ins, shapes, outs):
    """Crop (negative pads), then Resize with align_corners: linear, or nearest rounding halves up."""
    ip, name, shape = lp.interp_param, lp.name, shapes[0]
    size = interp_size(lp, shapes)
    x = ins[0]
    if ip.pad_beg or ip.pad_end:
        g.node("Slice", [x, g.const(f"{name}/crop_starts", [-ip.pad_beg] * 2),
                         g.const(f"{name}/crop_ends", [d + ip.pad_end for d in shape[2:]]),
                         g.const(f"{name}/crop_axes", [2, 3])], [f"{name}/cropped"], f"{name}/crop")
        x = f"{name}/cropped"
    top = tuple(shape[:2]) + tuple(size)
    cropped = tuple(d + ip.pad_beg + ip.pad_end for d in shape[2:])
    if cropped == tuple(size):
        g.node("Identity", [x], outs, name)
        return [top]
    nearest = ip.interp_type == "nearest_neighbor"
    g.node("Resize", [x, "", "", g.const(f"{name}/sizes", list(top))], outs, name,
           mode="nearest" if nearest else "linear", coordinate_transformation_mode="align_corners",
           **({"nearest_mode": "round_prefer_ceil"} if nearest else {}))
    return [top]


@converts("BN")
def _bn(g: _Graph, lp, ins, shapes, outs):
    """caffe-segnet INFERENCE: x * scale + shift. PSPNet with stored statistics: BatchNormalization.
    Batch statistics (SegNet LEARN, PSPNet without moving_average) are composed with ReduceMean."""
    bp, name, shape = lp.bn_param, lp.name, shapes[0]
    c = shape[1]
    n_blobs = len(g.weights.get(lp.name, []))
    flavor = bn_flavor(bp) or ("pspnet" if n_blobs == 4 else "segnet")
    arrays = g.blobs(lp, [(1, c, 1, 1)] * (4 if flavor == "pspnet" else 2))
    x = ins[0]
    if flavor == "pspnet" and bp.moving_average:
        g.node("BatchNormalization", [x, g.const(f"{name}/gamma", arrays[0].reshape(c)),
                                      g.const(f"{name}/beta", arrays[1].reshape(c)),
                                      g.const(f"{name}/mean", arrays[2].reshape(c)),
                                      g.const(f"{name}/var", arrays[3].reshape(c))], outs, name, epsilon=bp.var_eps)
        return [shape]
    scale, shift = g.const(f"{name}/scale", arrays[0]), g.const(f"{name}/shift", arrays[1])
    if flavor == "segnet" and bp.bn_mode == pb.BNParameter.INFERENCE:
        g.node("Mul", [x, scale], [f"{name}/scaled"], f"{name}/scale")
        g.node("Add", [f"{name}/scaled", shift], outs, name)
        return [shape]
    axes = g.const(f"{name}/axes", [0, 2, 3])
    g.node("ReduceMean", [x, axes], [f"{name}/mean"], f"{name}/mean", keepdims=1)
    g.node("Sub", [x, f"{name}/mean"], [f"{name}/centred"], f"{name}/centred")
    if flavor == "segnet":  # var = E[x^2] - E[x]^2, eps 1e-9
        g.node("Mul", [x, x], [f"{name}/sq"], f"{name}/sq")
        g.node("ReduceMean", [f"{name}/sq", axes], [f"{name}/mean_sq"], f"{name}/mean_sq", keepdims=1)
        g.node("Mul", [f"{name}/mean", f"{name}/mean"], [f"{name}/sq_mean"], f"{name}/sq_mean")
        g.node("Sub", [f"{name}/mean_sq", f"{name}/sq_mean"], [f"{name}/var"], f"{name}/var")
        eps = 1e-9
    else:
        g.node("Mul", [f"{name}/centred", f"{name}/centred"], [f"{name}/dev_sq"], f"{name}/dev_sq")
        g.node("ReduceMean", [f"{name}/dev_sq", axes], [f"{name}/var"], f"{name}/var", keepdims=1)
        eps = bp.var_eps
    g.node("Add", [f"{name}/var", g.const(f"{name}/eps", eps)], [f"{name}/var_eps"], f"{name}/eps")
    g.node("Sqrt", [f"{name}/var_eps"], [f"{name}/std"], f"{name}/std")
    g.node("Div", [f"{name}/centred", f"{name}/std"], [f"{name}/normed"], f"{name}/normed")
    g.node("Mul", [f"{name}/normed", scale], [f"{name}/scaled"], f"{name}/scale")
    g.node("Add", [f"{name}/scaled", shift], outs, name)
    return [shape]


@converts("ShuffleChannel")
def _shuffle_channel(g: _Graph, lp, ins, shapes, outs):
    layer, name, shape = g.parsed(lp, shapes), lp.name, shapes[0]
    grid = [shape[0], layer.group, shape[1] // layer.group, *shape[2:]]
    g.node("Reshape", [ins[0], g.const(f"{name}/grid_shape", grid)], [f"{name}/grid"], f"{name}/grid")
    perm = [0, 2, 1] + list(range(3, len(grid)))
    g.node("Transpose", [f"{name}/grid"], [f"{name}/shuffled"], f"{name}/transpose", perm=perm)
    g.node("Reshape", [f"{name}/shuffled", g.const(f"{name}/shape", list(shape))], outs, name)
    return [shape]


@converts("Axpy")
def _axpy(g: _Graph, lp, ins, shapes, outs):
    g.parsed(lp, shapes)
    a, x = shapes[0], shapes[1]
    name = lp.name
    g.node("Reshape", [ins[0], g.const(f"{name}/a_shape", list(a[:2]) + [1] * (len(x) - 2))], [f"{name}/a"],
           f"{name}/a")
    g.node("Mul", [f"{name}/a", ins[1]], [f"{name}/ax"], f"{name}/ax")
    g.node("Add", [ins[2], f"{name}/ax"], outs, name)
    return [tuple(x)]


@converts("Permute")
def _permute(g: _Graph, lp, ins, shapes, outs):
    layer = g.parsed(lp, shapes)
    g.node("Transpose", ins, outs, lp.name, perm=layer.order)
    return layer.top_shapes


@converts("Normalize")
def _normalize(g: _Graph, lp, ins, shapes, outs):
    npm, name, shape = lp.norm_param, lp.name, shapes[0]
    (scale,) = g.blobs(lp, [(1,) if npm.channel_shared else (shape[1],)])
    axes = list(range(1, len(shape))) if npm.across_spatial else [1]
    g.node("ReduceSumSquare", [ins[0], g.const(f"{name}/axes", axes)], [f"{name}/sumsq"], f"{name}/sumsq", keepdims=1)
    g.node("Add", [f"{name}/sumsq", g.const(f"{name}/eps", npm.eps)], [f"{name}/sumsq_eps"], f"{name}/eps")
    g.node("Sqrt", [f"{name}/sumsq_eps"], [f"{name}/norm"], f"{name}/norm")
    if npm.across_spatial:  # SSD multiplies by the reciprocal here, divides per position
        g.node("Reciprocal", [f"{name}/norm"], [f"{name}/inv_norm"], f"{name}/inv_norm")
        g.node("Mul", [ins[0], f"{name}/inv_norm"], [f"{name}/normed"], f"{name}/normed")
    else:
        g.node("Div", [ins[0], f"{name}/norm"], [f"{name}/normed"], f"{name}/normed")
    scale = scale if npm.channel_shared else scale.reshape((1, -1) + (1,) * (len(shape) - 2))
    g.node("Mul", [f"{name}/normed", g.const(f"{name}/scale", scale)], outs, name)
    return [shape]


@converts("PriorBox")
def _prior_box(g: _Graph, lp, ins, shapes, outs):
    """The priors depend only on the (static) shapes: an initializer."""
    priors = prior_boxes(lp, shapes[0], shapes[1]).astype(np.float32)
    g.node("Identity", [g.const(f"{lp.name}/priors", priors)], outs, lp.name)
    return [priors.shape]


@converts("ROIPooling")
def _roi_pooling(g: _Graph, lp, ins, shapes, outs):
    """ONNX MaxRoiPool is Fast R-CNN's ROIPooling (rounded corners, +1 sizes, floor/ceil bins)."""
    layer, name = g.parsed(lp, shapes), lp.name
    rois = ins[1]
    if len(shapes[1]) != 2:
        g.node("Reshape", [rois, g.const(f"{name}/rois_shape", [shapes[1][0], 5])], [f"{name}/rois"], f"{name}/rois")
        rois = f"{name}/rois"
    g.node("MaxRoiPool", [ins[0], rois], outs, name, pooled_shape=list(layer.pooled),
           spatial_scale=float(layer.spatial_scale))
    return layer.top_shapes
