"""Layers of widely used Caffe forks, each with the semantics of the fork's own source (named per layer).

Parameters are the fork's messages in convert/caffe.proto (names and numbers documented there). Layers
whose output has a data-dependent size (DetectionOutput) declare the largest possible top shape.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from convert import caffe_pb2 as pb
from convert.errors import UserError
from convert.layers.base import CaffeLayer, NetContext, Shape
from convert.layers.vision import Convolution
from convert.registry import register


def _need_4d(layer: CaffeLayer, shape: Shape, what: str = "bottom") -> None:
    if len(shape) != 4:
        raise UserError(f"layer {layer.param.name!r} ({layer.param.type}): needs a 4-D (N,C,H,W) {what}, "
                        f"got shape {tuple(shape)}")


def as_bvlc_convolution(param: pb.LayerParameter, channels: int) -> pb.LayerParameter:
    """A fork convolution as the BVLC Convolution it computes (depthwise: group = channels; hole: dilation)."""
    spec = pb.LayerParameter()
    spec.CopyFrom(param)
    spec.type = "Convolution"
    cp = spec.convolution_param
    if param.type in ("ConvolutionDepthwise", "DepthwiseConvolution"):
        if cp.num_output != channels:
            raise UserError(f"layer {param.name!r} ({param.type}): num_output {cp.num_output} must equal the "
                            f"bottom's {channels} channels (one filter per channel)")
        cp.group = channels
    if param.type == "HoleConvolution":
        hole_h = cp.hole_h if cp.HasField("hole_h") else cp.hole
        hole_w = cp.hole_w if cp.HasField("hole_w") else cp.hole
        del cp.dilation[:]
        cp.dilation.extend([hole_h, hole_w])
    return spec


@register("ConvolutionDepthwise", "DepthwiseConvolution")
class ConvolutionDepthwise(Convolution):
    """Depthwise convolution of the MobileNet/ShuffleNet forks (farmingyard's ConvolutionDepthwise,
    yonghenglh6's DepthwiseConvolution): every channel with its own k x k filter, i.e. BVLC Convolution
    with group = channels = num_output. Weight (C, 1, kh, kw), optional bias (C,)."""

    def __init__(self, param: pb.LayerParameter, bottom_shapes, ctx: NetContext):
        if len(bottom_shapes[0]) != 4:
            raise UserError(f"layer {param.name!r} ({param.type}): needs a 4-D (N,C,H,W) bottom")
        super().__init__(as_bvlc_convolution(param, bottom_shapes[0][1]), bottom_shapes, ctx)
        self.param = param


@register("HoleConvolution")
class HoleConvolution(Convolution):
    """DeepLab v1 / PSPNet (hszhao/PSPNet) HoleConvolution: convolution_param.hole (hole_h/hole_w) is
    the kernel dilation of BVLC's later `dilation`; output (H + 2p - (hole(k-1)+1)) / s + 1."""

    def __init__(self, param: pb.LayerParameter, bottom_shapes, ctx: NetContext):
        channels = bottom_shapes[0][1] if len(bottom_shapes[0]) > 1 else 0
        super().__init__(as_bvlc_convolution(param, channels), bottom_shapes, ctx)
        self.param = param


@register("ShuffleChannel")
class ShuffleChannel(CaffeLayer):
    """ShuffleNet's channel shuffle (farmingyard/ShuffleNet shuffle_channel_layer.cpp): channels viewed as
    a (group, C/group) grid and transposed, so output channel j*group + i is input channel i*(C/group) + j."""

    def __init__(self, param: pb.LayerParameter, bottom_shapes, ctx: NetContext):
        super().__init__(param, bottom_shapes, ctx)
        shape, g = tuple(bottom_shapes[0]), param.shuffle_channel_param.group
        if len(shape) < 2 or g < 1 or shape[1] % g:
            raise UserError(f"layer {param.name!r} (ShuffleChannel): {shape[1] if len(shape) > 1 else '?'} "
                            f"channels do not split into group {g}")
        self.group = g
        self.top_shapes = [shape]

    def forward(self, x):
        n, c = x.shape[:2]
        grid = x.reshape(n, self.group, c // self.group, *x.shape[2:])
        return grid.transpose(1, 2).reshape(x.shape)


@register("Axpy")
class Axpy(CaffeLayer):
    """SENet's Axpy (hujie-frank/SENet axpy_layer.cpp): top = a * x + y with bottoms (a, x, y); a is
    (N, C) or (N, C, 1, 1), one scale per channel of x; x and y have the same shape."""

    def __init__(self, param: pb.LayerParameter, bottom_shapes, ctx: NetContext):
        super().__init__(param, bottom_shapes, ctx)
        if len(bottom_shapes) != 3:
            raise UserError(f"layer {param.name!r} (Axpy): needs 3 bottoms (scale, x, y), got {len(bottom_shapes)}")
        a, x, y = (tuple(s) for s in bottom_shapes)
        if tuple(x) != tuple(y) or a[:2] != x[:2] or any(d != 1 for d in a[2:]):
            raise UserError(f"layer {param.name!r} (Axpy): bottoms {a}, {x}, {y} must be (N,C[,1,1]), x and y "
                            "of one shape")
        self.top_shapes = [x]

    def forward(self, a, x, y):
        return y + a.reshape(a.shape[:2] + (1,) * (x.dim() - 2)) * x


@register("Permute")
class Permute(CaffeLayer):
    """SSD's Permute (weiliu89/caffe permute_layer.cpp): axes reordered as permute_param.order; axes not
    named follow in their original order."""

    def __init__(self, param: pb.LayerParameter, bottom_shapes, ctx: NetContext):
        super().__init__(param, bottom_shapes, ctx)
        shape = tuple(bottom_shapes[0])
        order = list(param.permute_param.order)
        if len(set(order)) != len(order) or any(o >= len(shape) for o in order):
            raise UserError(f"layer {param.name!r} (Permute): order {order} must name distinct axes of a "
                            f"{len(shape)}-D bottom")
        self.order = order + [a for a in range(len(shape)) if a not in order]
        self.top_shapes = [tuple(shape[a] for a in self.order)]

    def forward(self, x):
        return x.permute(*self.order).contiguous()


@register("Normalize")
class Normalize(CaffeLayer):
    """SSD's L2 Normalize (weiliu89/caffe normalize_layer.cpp): x times 1 / sqrt(sum x^2 + eps) over each
    item's C*H*W values (across_spatial, default), or x / sqrt(sum_c x^2 + eps) at each position; then times
    a learned scale, one value (channel_shared, default) or one per channel (filler default constant 1)."""

    def __init__(self, param: pb.LayerParameter, bottom_shapes, ctx: NetContext):
        super().__init__(param, bottom_shapes, ctx)
        npm, shape = param.norm_param, tuple(bottom_shapes[0])
        if len(shape) < 2:
            raise UserError(f"layer {param.name!r} (Normalize): needs an (N, C, ...) bottom, got {shape}")
        filler = npm.scale_filler if npm.HasField("scale_filler") else pb.FillerParameter(type="constant", value=1.0)
        self.across_spatial, self.channel_shared, self.eps = npm.across_spatial, npm.channel_shared, npm.eps
        self.add_blob("scale", (1,) if npm.channel_shared else (shape[1],), filler)
        self.top_shapes = [shape]

    def forward(self, x):
        sq = x * x
        if self.across_spatial:
            norm = torch.sqrt(sq.flatten(1).sum(1) + self.eps).reshape((-1,) + (1,) * (x.dim() - 1))
            y = x * (1.0 / norm)
        else:
            y = x / torch.sqrt(sq.sum(1, keepdim=True) + self.eps)
        scale = self.scale if self.channel_shared else self.scale.reshape((1, -1) + (1,) * (x.dim() - 2))
        return y * scale


def prior_boxes(param: pb.LayerParameter, feature: Shape, image: Shape) -> np.ndarray:
    """SSD's PriorBox output (1, 2, H*W*num_priors*4) for a feature map and image shape (float64)."""
    pp, name = param.prior_box_param, param.name
    if not pp.min_size:
        raise UserError(f"layer {name!r} (PriorBox): min_size is required")
    mins = [int(m) for m in pp.min_size]  # SSD casts the sizes to int
    maxs = [int(m) for m in pp.max_size]
    if maxs and (len(maxs) != len(mins) or any(b <= a for a, b in zip(mins, maxs))):
        raise UserError(f"layer {name!r} (PriorBox): max_size must pair with min_size and exceed it")
    ratios = [1.0]
    for ar in pp.aspect_ratio:
        if all(abs(ar - r) >= 1e-6 for r in ratios):
            ratios.append(ar)
            if pp.flip:
                ratios.append(1.0 / ar)
    variance = list(pp.variance) or [0.1]
    if len(variance) not in (1, 4):
        raise UserError(f"layer {name!r} (PriorBox): give 1 or 4 variances, got {len(variance)}")
    layer_h, layer_w = feature[2], feature[3]
    img_h, img_w = (pp.img_h, pp.img_w) if pp.HasField("img_h") or pp.HasField("img_w") else \
        ((pp.img_size, pp.img_size) if pp.HasField("img_size") else (image[2], image[3]))
    if pp.HasField("step_h") or pp.HasField("step_w"):
        step_h, step_w = pp.step_h, pp.step_w
    elif pp.HasField("step"):
        step_h = step_w = pp.step
    else:
        step_h, step_w = np.float32(img_h) / np.float32(layer_h), np.float32(img_w) / np.float32(layer_w)
    sizes = []  # (width, height) per prior, in SSD's order
    for s, m in enumerate(mins):
        sizes.append((m, m))
        if maxs:
            sizes.append((math.sqrt(m * maxs[s]),) * 2)
        sizes += [(m * math.sqrt(ar), m / math.sqrt(ar)) for ar in ratios if abs(ar - 1.0) >= 1e-6]
    sizes = np.asarray(sizes, np.float64)
    cy, cx = np.meshgrid((np.arange(layer_h) + pp.offset) * np.float64(step_h),
                         (np.arange(layer_w) + pp.offset) * np.float64(step_w), indexing="ij")
    cx, cy = cx.astype(np.float32).astype(np.float64), cy.astype(np.float32).astype(np.float64)  # float in SSD
    centres = np.stack([cx, cy], -1).reshape(-1, 1, 2)
    half = sizes[None] / 2.0
    boxes = np.concatenate([(centres - half) / [img_w, img_h], (centres + half) / [img_w, img_h]], -1)
    boxes = boxes.reshape(-1)
    if pp.clip:
        boxes = np.clip(boxes, 0.0, 1.0)
    variances = np.tile(np.asarray(variance * (4 if len(variance) == 1 else 1), np.float64), boxes.size // 4)
    return np.stack([boxes, variances])[None]


@register("PriorBox")
class PriorBox(CaffeLayer):
    """SSD's PriorBox (weiliu89/caffe prior_box_layer.cpp): default boxes for every cell of bottom 0,
    normalised by the image (bottom 1, or img_size/img_h/img_w). Cell centre (w + offset) * step (step =
    image / feature size unless given); per min_size (cast to int) a min x min box, with max_size a
    sqrt(min*max) square, then min*sqrt(r) x min/sqrt(r) for each aspect ratio r != 1 (each ratio once,
    with its flip 1/r when flip). Optionally clipped to [0, 1]. Top (1, 2, H*W*priors*4): the boxes
    (xmin, ymin, xmax, ymax), then their variances. It depends only on shapes: a constant."""

    def __init__(self, param: pb.LayerParameter, bottom_shapes, ctx: NetContext):
        super().__init__(param, bottom_shapes, ctx)
        if len(bottom_shapes) != 2:
            raise UserError(f"layer {param.name!r} (PriorBox): needs 2 bottoms (feature map, image)")
        _need_4d(self, bottom_shapes[0])
        _need_4d(self, bottom_shapes[1], "image bottom")
        priors = prior_boxes(param, tuple(bottom_shapes[0]), tuple(bottom_shapes[1]))
        self.register_buffer("priors", torch.from_numpy(priors), persistent=False)
        self.top_shapes = [tuple(priors.shape)]

    def forward(self, feature, image):
        return self.priors.to(feature.dtype)


def decode_boxes(loc: np.ndarray, priors: np.ndarray, variances: np.ndarray, code_type: int,
                 variance_in_target: bool) -> np.ndarray:
    """SSD's DecodeBBox for (P, 4) predictions against (P, 4) priors (bbox_util.cpp), no clipping."""
    var = np.ones_like(variances) if variance_in_target else variances
    pw, ph = priors[:, 2] - priors[:, 0], priors[:, 3] - priors[:, 1]
    if code_type == pb.PriorBoxParameter.CORNER:
        return priors + var * loc
    if code_type == pb.PriorBoxParameter.CORNER_SIZE:
        return priors + var * loc * np.stack([pw, ph, pw, ph], 1)
    cx, cy = (priors[:, 0] + priors[:, 2]) / 2, (priors[:, 1] + priors[:, 3]) / 2
    dcx, dcy = var[:, 0] * loc[:, 0] * pw + cx, var[:, 1] * loc[:, 1] * ph + cy
    dw, dh = np.exp(var[:, 2] * loc[:, 2]) * pw, np.exp(var[:, 3] * loc[:, 3]) * ph
    return np.stack([dcx - dw / 2, dcy - dh / 2, dcx + dw / 2, dcy + dh / 2], 1)


def _box_size(b: np.ndarray) -> np.ndarray:
    """Normalised box area; 0 for an inverted box (SSD's BBoxSize)."""
    w, h = b[..., 2] - b[..., 0], b[..., 3] - b[..., 1]
    return np.where((w < 0) | (h < 0), 0, w * h)


def jaccard(box: np.ndarray, others: np.ndarray) -> np.ndarray:
    """SSD's JaccardOverlap of one box with many (normalised coordinates)."""
    disjoint = (others[:, 0] > box[2]) | (others[:, 2] < box[0]) | (others[:, 1] > box[3]) | (others[:, 3] < box[1])
    iw = np.minimum(others[:, 2], box[2]) - np.maximum(others[:, 0], box[0])
    ih = np.minimum(others[:, 3], box[3]) - np.maximum(others[:, 1], box[1])
    inter = np.where(disjoint | (iw <= 0) | (ih <= 0), 0, iw * ih)
    union = _box_size(box) + _box_size(others) - inter
    return np.where(inter > 0, inter / np.where(union > 0, union, 1), 0)


def nms_fast(boxes: np.ndarray, scores: np.ndarray, score_threshold: float, nms_threshold: float, eta: float,
             top_k: int) -> list[int]:
    """SSD's ApplyNMSFast: scores above the threshold, stable-sorted descending, the first top_k; a box is
    kept when its overlap with every kept box is at most the (adaptive) threshold."""
    candidates = np.nonzero(scores > score_threshold)[0]
    candidates = candidates[np.argsort(-scores[candidates], kind="stable")]
    if -1 < top_k < len(candidates):
        candidates = candidates[:top_k]
    kept: list[int] = []
    threshold = nms_threshold
    for idx in candidates:
        keep = not kept or bool(np.all(jaccard(boxes[idx], boxes[kept]) <= threshold))
        if keep:
            kept.append(int(idx))
            if eta < 1 and threshold > 0.5:
                threshold *= eta
    return kept


@register("DetectionOutput")
class DetectionOutput(CaffeLayer):
    """SSD's DetectionOutput (weiliu89/caffe detection_output_layer.cpp, bbox_util.cpp): bottoms loc
    (N, P*4), conf (N, P*classes), priors (1, 2, P*4). Boxes are decoded (code_type, variances; not
    clipped); per class except background, ApplyNMSFast (scores > confidence_threshold, top_k, IoU <=
    nms_threshold, adaptive eta); with keep_top_k the image's detections are cut to the highest scores
    (ties: SSD's std::sort leaves their order open; here the per-class order). Top (1, 1, D, 7) rows
    [image, label, score, xmin, ymin, xmax, ymax], by image, label ascending, then score; with no
    detection one row per image [i, -1, ...]. D is known at run time only: the declared shape is the most
    it can be. share_location false is not supported. Not differentiable (Caffe has no backward)."""

    def __init__(self, param: pb.LayerParameter, bottom_shapes, ctx: NetContext):
        super().__init__(param, bottom_shapes, ctx)
        dp, name = param.detection_output_param, param.name
        if len(bottom_shapes) < 3:
            raise UserError(f"layer {name!r} (DetectionOutput): needs bottoms loc, conf, priors")
        if not dp.share_location:
            raise UserError(f"layer {name!r} (DetectionOutput): share_location false is not supported")
        if dp.num_classes < 1:
            raise UserError(f"layer {name!r} (DetectionOutput): num_classes is required")
        loc, conf, prior = (tuple(s) for s in bottom_shapes[:3])
        self.num_priors = prior[-1] // 4
        if math.prod(loc[1:]) != self.num_priors * 4 or math.prod(conf[1:]) != self.num_priors * dp.num_classes:
            raise UserError(f"layer {name!r} (DetectionOutput): loc {loc} / conf {conf} do not fit "
                            f"{self.num_priors} priors and {dp.num_classes} classes")
        self.dp = dp
        most = self.num_priors * (dp.num_classes - 1)
        if dp.nms_param.HasField("top_k"):
            most = min(most, dp.nms_param.top_k * (dp.num_classes - 1))
        if dp.keep_top_k > -1:
            most = min(most, dp.keep_top_k)
        self.top_shapes = [(1, 1, max(most, 1) * loc[0], 7)]

    def forward(self, loc, conf, prior):
        dtype = loc.dtype
        dp, n = self.dp, loc.shape[0]
        np_dtype = np.float64 if dtype == torch.float64 else np.float32
        loc_a = loc.detach().cpu().numpy().astype(np_dtype).reshape(n, self.num_priors, 4)
        conf_a = conf.detach().cpu().numpy().astype(np_dtype).reshape(n, self.num_priors, dp.num_classes)
        prior_a = prior.detach().cpu().numpy().astype(np_dtype).reshape(2, self.num_priors, 4)
        top_k = dp.nms_param.top_k if dp.nms_param.HasField("top_k") else -1
        rows = []
        for i in range(n):
            boxes = decode_boxes(loc_a[i], prior_a[0], prior_a[1], dp.code_type, dp.variance_encoded_in_target)
            found = []  # (label, idx)
            for c in range(dp.num_classes):
                if c == dp.background_label_id:
                    continue
                found += [(c, k) for k in nms_fast(boxes, conf_a[i, :, c], dp.confidence_threshold,
                                                   dp.nms_param.nms_threshold, dp.nms_param.eta, top_k)]
            if -1 < dp.keep_top_k < len(found):
                scores = np.asarray([conf_a[i, k, c] for c, k in found])
                best = np.argsort(-scores, kind="stable")[:dp.keep_top_k]
                kept = [found[j] for j in best]
                found = [(c, k) for label in sorted({c for c, _ in kept}) for c, k in kept if c == label]
            rows += [[i, c, conf_a[i, k, c], *boxes[k]] for c, k in found]
        if not rows:
            rows = [[i] + [-1] * 6 for i in range(n)]
        out = np.asarray(rows, np_dtype).reshape(1, 1, -1, 7)
        return torch.from_numpy(out).to(device=loc.device)


def _c_round(v: np.ndarray) -> np.ndarray:
    """C's round(): halves away from zero."""
    return np.sign(v) * np.floor(np.abs(v) + 0.5)


@register("ROIPooling")
class ROIPooling(CaffeLayer):
    """Fast/Faster R-CNN's ROIPooling (rbgirshick's caffe-fast-rcnn roi_pooling_layer.cpp): bottoms the
    feature map and rois (R, 5) [batch index, x1, y1, x2, y2] in image pixels. Per roi the corners are
    round(c * spatial_scale) (halves away from zero), the roi is (end - start + 1) cells (at least 1), cut
    into pooled_h x pooled_w bins [floor(i*bin), ceil((i+1)*bin)) offset by the start and clipped to the
    map; each output is the bin's maximum, 0 for an empty bin. Top (R, C, pooled_h, pooled_w)."""

    def __init__(self, param: pb.LayerParameter, bottom_shapes, ctx: NetContext):
        super().__init__(param, bottom_shapes, ctx)
        rp, name = param.roi_pooling_param, param.name
        if len(bottom_shapes) != 2:
            raise UserError(f"layer {name!r} (ROIPooling): needs 2 bottoms (features, rois)")
        _need_4d(self, bottom_shapes[0])
        rois = tuple(bottom_shapes[1])
        if math.prod(rois[1:]) != 5:
            raise UserError(f"layer {name!r} (ROIPooling): rois must be (R, 5), got {rois}")
        if rp.pooled_h <= 0 or rp.pooled_w <= 0:
            raise UserError(f"layer {name!r} (ROIPooling): pooled_h and pooled_w must be positive")
        self.pooled = (rp.pooled_h, rp.pooled_w)
        self.spatial_scale = rp.spatial_scale
        self.top_shapes = [(rois[0], bottom_shapes[0][1]) + self.pooled]

    def bins(self, rois: np.ndarray, height: int, width: int) -> list[tuple[int, np.ndarray, np.ndarray]]:
        """Per roi: its batch index and the [start, end) rows and columns of every bin."""
        dt = rois.dtype.type
        out = []
        for r in rois:
            start_w, start_h, end_w, end_h = (int(v) for v in _c_round(r[1:5] * dt(self.spatial_scale)))
            sizes = (max(end_h - start_h + 1, 1), max(end_w - start_w + 1, 1))
            edges = []
            for size, pooled, start, limit in zip(sizes, self.pooled, (start_h, start_w), (height, width)):
                step = dt(size) / dt(pooled)
                i = np.arange(pooled, dtype=dt)
                lo = np.floor(i * step).astype(int) + start
                hi = np.ceil((i + 1) * step).astype(int) + start
                edges.append(np.stack([np.clip(lo, 0, limit), np.clip(hi, 0, limit)], 1))
            out.append((int(r[0]), edges[0], edges[1]))
        return out

    def forward(self, x, rois):
        n, c, h, w = x.shape
        flat = rois.detach().cpu().numpy().reshape(-1, 5)
        flat = flat.astype(np.float64 if x.dtype == torch.float64 else np.float32)
        cells = []
        for batch, rows, cols in self.bins(flat, h, w):
            if not 0 <= batch < n:
                raise UserError(f"layer {self.param.name!r} (ROIPooling): roi batch index {batch} outside [0, {n})")
            for (h0, h1) in rows:
                for (w0, w1) in cols:
                    if h1 <= h0 or w1 <= w0:
                        cells.append(x.new_zeros(c))
                    else:
                        cells.append(x[batch, :, h0:h1, w0:w1].amax((1, 2)))
        ph, pw = self.pooled
        return torch.stack(cells).reshape(-1, ph, pw, c).permute(0, 3, 1, 2).contiguous()


@register("Upsample")
class Upsample(CaffeLayer):
    """Two forks' Upsample, told apart by their bottoms.

    caffe-segnet (alexgkendall, upsample_layer.cpp), bottoms (x, mask of a MAX Pooling): max unpooling,
    top zero except top[mask[i]] = x[i] in each (n, c) plane; output upsample_h x upsample_w, else
    H * scale_h - pad_out_h by W * scale_w - pad_out_w (scale for both unless scale_h/scale_w).
    YOLOv3 Caffe ports (upsample_layer with one bottom): nearest neighbour, each value repeated
    scale x scale, output (H * scale, W * scale).
    """

    def __init__(self, param: pb.LayerParameter, bottom_shapes, ctx: NetContext):
        super().__init__(param, bottom_shapes, ctx)
        up, name = param.upsample_param, param.name
        _need_4d(self, bottom_shapes[0])
        n, c, h, w = bottom_shapes[0]
        self.unpool = len(bottom_shapes) == 2
        if self.unpool:
            if tuple(bottom_shapes[1]) != tuple(bottom_shapes[0]):
                raise UserError(f"layer {name!r} (Upsample): mask {tuple(bottom_shapes[1])} must have the shape "
                                f"of the input {tuple(bottom_shapes[0])}")
            if up.HasField("upsample_h") and up.HasField("upsample_w"):
                out = (up.upsample_h, up.upsample_w)
            else:
                sh, sw = (up.scale_h, up.scale_w) if up.HasField("scale_h") else (up.scale, up.scale)
                if (up.pad_out_h and sh != 2) or (up.pad_out_w and sw != 2):
                    raise UserError(f"layer {name!r} (Upsample): pad_out_h/pad_out_w need scale 2")
                out = (h * sh - int(up.pad_out_h), w * sw - int(up.pad_out_w))
        elif len(bottom_shapes) == 1:
            if up.scale < 1:
                raise UserError(f"layer {name!r} (Upsample): scale must be positive")
            out = (h * up.scale, w * up.scale)
        else:
            raise UserError(f"layer {name!r} (Upsample): needs 1 bottom (nearest) or 2 (data, pooling mask)")
        if min(out) <= 0:
            raise UserError(f"layer {name!r} (Upsample): output size {out} must be positive")
        self.scale = up.scale
        self.top_shapes = [(n, c) + tuple(out)]

    def forward(self, x, mask=None):
        n, c, h, w = x.shape
        if not self.unpool:
            return x.repeat_interleave(self.scale, 2).repeat_interleave(self.scale, 3)
        oh, ow = self.top_shapes[0][2:]
        idx = mask.detach().to(torch.int64).reshape(n, c, h * w)
        if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= oh * ow):
            raise UserError(f"layer {self.param.name!r} (Upsample): mask index outside the {oh}x{ow} output "
                            "(the pooling that made it saw another size)")
        out = x.new_zeros(n, c, oh * ow).scatter(2, idx, x.reshape(n, c, h * w))
        return out.reshape(n, c, oh, ow)


def interp_size(param: pb.LayerParameter, bottom_shapes) -> tuple[int, int]:
    """PSPNet's Interp output size: exactly one of zoom_factor, shrink_factor, height+width, a 2nd bottom."""
    ip, name = param.interp_param, param.name
    if ip.pad_beg > 0 or ip.pad_end > 0:
        raise UserError(f"layer {name!r} (Interp): only non-positive pad_beg/pad_end (cropping) are supported")
    specs = [ip.HasField("zoom_factor"), ip.HasField("shrink_factor"), ip.HasField("height") and ip.HasField("width"),
             len(bottom_shapes) == 2]
    if sum(specs) != 1:
        raise UserError(f"layer {name!r} (Interp): give exactly one of zoom_factor, shrink_factor, height and "
                        "width, or a second bottom")
    h, w = (d + ip.pad_beg + ip.pad_end for d in bottom_shapes[0][2:])
    if ip.HasField("zoom_factor"):
        if ip.zoom_factor < 1:
            raise UserError(f"layer {name!r} (Interp): zoom_factor must be positive")
        return h + (h - 1) * (ip.zoom_factor - 1), w + (w - 1) * (ip.zoom_factor - 1)
    if ip.HasField("shrink_factor"):
        if ip.shrink_factor < 1:
            raise UserError(f"layer {name!r} (Interp): shrink_factor must be positive")
        return (h - 1) // ip.shrink_factor + 1, (w - 1) // ip.shrink_factor + 1
    if ip.HasField("height"):
        return ip.height, ip.width
    return tuple(bottom_shapes[1][2:4])


@register("Interp")
class Interp(CaffeLayer):
    """PSPNet's / DeepLab v2's Interp (hszhao/PSPNet interp_layer.cpp, util/interp.cpp): the input cropped
    by -pad_beg / -pad_end, then resized with the corners aligned (source = dest * (in-1)/(out-1)):
    bilinear, or nearest_neighbor taking floor(source + 0.5); equal sizes copy. Output size: zoom_factor
    Z: in + (in-1)(Z-1); shrink_factor S: (in-1)/S + 1; height and width; or bottom 1's size."""

    def __init__(self, param: pb.LayerParameter, bottom_shapes, ctx: NetContext):
        super().__init__(param, bottom_shapes, ctx)
        _need_4d(self, bottom_shapes[0])
        ip = param.interp_param
        if ip.interp_type not in ("bilinear", "nearest_neighbor"):
            raise UserError(f"layer {param.name!r} (Interp): interp_type must be bilinear or nearest_neighbor")
        self.size = interp_size(param, bottom_shapes)
        if min(self.size) <= 0 or min(d + ip.pad_beg + ip.pad_end for d in bottom_shapes[0][2:]) <= 0:
            raise UserError(f"layer {param.name!r} (Interp): sizes must stay positive, got {self.size}")
        self.crop = (-ip.pad_beg, -ip.pad_end)
        self.nearest = ip.interp_type == "nearest_neighbor"
        self.top_shapes = [tuple(bottom_shapes[0][:2]) + tuple(self.size)]

    def forward(self, x, *reference):
        b, e = self.crop
        x = x[..., b:x.shape[2] - e, b:x.shape[3] - e]
        if tuple(x.shape[2:]) == tuple(self.size):
            return x.clone()
        if not self.nearest:
            return F.interpolate(x, size=self.size, mode="bilinear", align_corners=True)
        index = []
        for size_in, size_out in zip(x.shape[2:], self.size):
            ratio = np.float32(size_in - 1) / np.float32(size_out - 1) if size_out > 1 else np.float32(0)
            index.append(torch.from_numpy(np.floor(ratio * np.arange(size_out, dtype=np.float32) + 0.5)
                                          .astype(np.int64)).to(x.device))
        return x[:, :, index[0]][:, :, :, index[1]]


def bn_flavor(bp: pb.BNParameter) -> str | None:
    """'segnet', 'pspnet' or None (nothing in bn_param tells) for a BN layer's parameters."""
    psp = [f for f in ("var_eps", "moving_average", "decay", "axis", "momentum", "eps", "frozen") if bp.HasField(f)]
    if psp and bp.HasField("bn_mode"):
        return "mixed"
    return "pspnet" if psp else ("segnet" if bp.HasField("bn_mode") else None)


@register("BN")
class BN(CaffeLayer):
    """BN of two forks, told apart by their fields (or by the caffemodel's blob count: 2 or 4).

    caffe-segnet (alexgkendall, bn_layer.cpp), blobs scale, shift (1,C,1,1): bn_mode INFERENCE
    y = x * scale + shift; LEARN (default; also at TEST) uses the batch's statistics over (N, H, W),
    var = E[x^2] - E[x]^2, y = (x - mean) / sqrt(var + 1e-9) * scale + shift.
    PSPNet (hszhao/PSPNet bn_layer.cpp), blobs scale, shift, mean, variance (1,C,1,1): the batch's mean
    and biased variance over (N, H, W), or at TEST with moving_average the stored ones;
    y = (x - mean) / sqrt(var + var_eps) * scale + shift. At TRAIN the stored statistics move:
    stat = decay * batch + (1 - decay) * stat. Only axis 1 is supported.
    """

    def __init__(self, param: pb.LayerParameter, bottom_shapes, ctx: NetContext):
        super().__init__(param, bottom_shapes, ctx)
        bp, shape = param.bn_param, tuple(bottom_shapes[0])
        _need_4d(self, shape)
        self.flavor = bn_flavor(bp)
        if self.flavor == "mixed":
            raise UserError(f"layer {param.name!r} (BN): bn_param mixes caffe-segnet's bn_mode with PSPNet's fields")
        if bp.axis != 1:
            raise UserError(f"layer {param.name!r} (BN): axis {bp.axis} is not supported (only 1)")
        self.channels = shape[1]
        self.add_blob("scale", (1, shape[1], 1, 1), bp.scale_filler)
        self.add_blob("shift", (1, shape[1], 1, 1), bp.shift_filler)
        if self.flavor == "pspnet":
            self._add_statistics()
        self.top_shapes = [shape]

    def _add_statistics(self) -> None:
        for name in ("mean", "variance"):
            if name not in self.blob_names:
                self.add_blob(name, (1, self.channels, 1, 1), None, learnable=False)

    def load_blobs(self, arrays) -> None:
        """Caffemodels tell the fork when bn_param does not: 4 blobs are PSPNet's."""
        if self.flavor is None and len(arrays) == 4:
            self.flavor = "pspnet"
            self._add_statistics()
        super().load_blobs(arrays)

    def param_specs(self) -> list[pb.ParamSpec]:
        """PSPNet forces lr_mult 0 and decay_mult 0 on the statistics."""
        specs = super().param_specs()
        return specs[:2] + [pb.ParamSpec(lr_mult=0.0, decay_mult=0.0) for _ in specs[2:]]

    @property
    def use_stored(self) -> bool:
        """Whether the stored statistics are used (PSPNet, TEST, moving_average)."""
        return self.flavor == "pspnet" and not self.ctx.train and self.param.bn_param.moving_average

    def forward(self, x):
        bp = self.param.bn_param
        if self.flavor != "pspnet":
            if bp.bn_mode == pb.BNParameter.INFERENCE:
                return x * self.scale + self.shift
            mean = x.mean((0, 2, 3), keepdim=True)
            var = (x * x).mean((0, 2, 3), keepdim=True) - mean * mean
            return (x - mean) / torch.sqrt(var + 1e-9) * self.scale + self.shift
        if self.use_stored:
            mean, var = self.mean, self.variance
        else:
            mean = x.mean((0, 2, 3), keepdim=True)
            var = ((x - mean) ** 2).mean((0, 2, 3), keepdim=True)
            if self.ctx.train:
                with torch.no_grad():
                    self.mean.mul_(1 - bp.decay).add_(bp.decay * mean.detach())
                    self.variance.mul_(1 - bp.decay).add_(bp.decay * var.detach())
        return (x - mean) / torch.sqrt(var + bp.var_eps) * self.scale + self.shift


@register("Python")
class Python(CaffeLayer):
    """Caffe's Python layer runs a class of the model author's code base, which no prototxt contains."""

    def __init__(self, param: pb.LayerParameter, bottom_shapes, ctx: NetContext):
        super().__init__(param, bottom_shapes, ctx)
        raise UserError(python_layer_message(param))


def python_layer_message(param: pb.LayerParameter) -> str:
    """Why a Python layer cannot run or convert, naming its module and class and the way around it."""
    pp = param.python_param
    return (f"layer {param.name!r} (Python): runs the Python class {pp.module}.{pp.layer} from the model's own "
            f"code, which cannot be run here; cut the net before it (--outputs {','.join(param.bottom) or 'BLOB'})")


@register("DenseImageData")
class DenseImageData(CaffeLayer):
    """caffe-segnet's image + label data layer: it reads files, so a converted net gets an Input instead."""

    def __init__(self, param: pb.LayerParameter, bottom_shapes, ctx: NetContext):
        super().__init__(param, bottom_shapes, ctx)
        raise UserError(f"layer {param.name!r} (DenseImageData): reads images from a list file "
                        f"({param.dense_image_data_param.source!r}); run the deploy form with "
                        f"--input-shape {param.top[0] if param.top else 'data'}=N,C,H,W")
