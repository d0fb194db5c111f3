"""The fork layers (convert/layers/fork.py) against naive loops of each fork's published formula, their
gradients where they train, their ONNX conversion, and the forks' ceil_mode read both ways."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from convert import caffe_pb2 as pb
from convert import protoio
from convert.errors import UserError
from convert.net import Net
from convert.onnx_check import check_onnx, opencv_blobs
from convert.onnx_direct import to_onnx
from convert.protoio import parse_text_proto
from layer_helpers import gradcheck_layer, one_layer_net, run_layer

rng = np.random.default_rng(5)


def normal(*shape):
    return rng.standard_normal(shape).astype(np.float32)


def last_layer(net: Net):
    return list(net.named_layers())[-1][1]


def c_round(v: float) -> int:
    """C's round(): halves away from zero."""
    return int(math.copysign(math.floor(abs(v) + 0.5), v))


# --- forward against naive loops ---

def test_shuffle_channel_moves_channel_i_of_group_g_to_i_times_groups_plus_g():
    x = normal(2, 6, 3, 2)
    _, out = run_layer('name: "s" type: "ShuffleChannel" bottom: "b0" top: "y" shuffle_channel_param { group: 3 }', x)
    expected = np.empty_like(x)
    per = 6 // 3
    for g in range(3):
        for i in range(per):
            expected[:, i * 3 + g] = x[:, g * per + i]
    np.testing.assert_array_equal(out["y"], expected)


@pytest.mark.parametrize("a_shape", [(2, 3), (2, 3, 1, 1)])
def test_axpy_is_a_times_bottom1_plus_bottom2(a_shape):
    a, x, y = normal(*a_shape), normal(2, 3, 4, 5), normal(2, 3, 4, 5)
    _, out = run_layer('name: "ax" type: "Axpy" bottom: "b0" bottom: "b1" bottom: "b2" top: "t"', a, x, y)
    expected = y.copy()
    for n in range(2):
        for c in range(3):
            expected[n, c] += a.reshape(2, 3)[n, c] * x[n, c]
    np.testing.assert_allclose(out["t"], expected, rtol=1e-6)


def test_axpy_opencv_importer_scales_the_other_bottom(tmp_path):
    """OpenCV 4.14 rewrites Axpy as Scale(bottom 2, bottom 0) + bottom 1: not SENet's a * bottom 1 + bottom 2."""
    a, x, y = normal(1, 3, 1, 1), normal(1, 3, 2, 2), normal(1, 3, 2, 2)
    text = "".join(f'layer {{ name: "in{i}" type: "Input" top: "b{i}" input_param {{ shape {{ {" ".join(f"dim: {d}" for d in v.shape)} }} }} }}\n'
                   for i, v in enumerate((a, x, y)))
    deploy = parse_text_proto(text + 'layer { name: "ax" type: "Axpy" bottom: "b0" bottom: "b1" bottom: "b2" top: "t" }',
                              pb.NetParameter)
    net = Net(deploy)
    net.save_caffemodel(tmp_path / "w.caffemodel")
    cv = opencv_blobs(deploy, tmp_path / "w.caffemodel", {"b0": a, "b1": x, "b2": y}, ["t"])
    if isinstance(cv, str):
        pytest.skip(cv)
    with torch.no_grad():
        ours = net({"b0": torch.from_numpy(a), "b1": torch.from_numpy(x), "b2": torch.from_numpy(y)})["t"].numpy()
    np.testing.assert_allclose(ours, a * x + y, rtol=1e-6)
    np.testing.assert_allclose(cv["t"], a * y + x, rtol=1e-6)


def test_permute_orders_axes_and_appends_the_rest():
    x = normal(2, 3, 4, 5)
    _, out = run_layer('name: "p" type: "Permute" bottom: "b0" top: "y" permute_param { order: 0 order: 2 }', x)
    np.testing.assert_array_equal(out["y"], x.transpose(0, 2, 1, 3))


@pytest.mark.parametrize("across,shared", [(True, True), (False, False), (False, True), (True, False)])
def test_normalize_l2_with_scale(across, shared):
    x = normal(2, 3, 2, 4)
    text = (f'name: "n" type: "Normalize" bottom: "b0" top: "y" norm_param {{ across_spatial: {str(across).lower()} '
            f'channel_shared: {str(shared).lower()} eps: 1e-6 scale_filler {{ type: "gaussian" std: 3 }} }}')
    net, out = run_layer(text, x)
    scale = last_layer(net).scale.detach().numpy().astype(np.float64)
    expected = np.zeros(x.shape)
    for n in range(2):
        if across:
            expected[n] = x[n] / math.sqrt(float((x[n].astype(np.float64) ** 2).sum()) + 1e-6)
        else:
            for i in range(2):
                for j in range(4):
                    v = x[n, :, i, j].astype(np.float64)
                    expected[n, :, i, j] = v / math.sqrt((v ** 2).sum() + 1e-6)
        expected[n] *= scale[0] if shared else scale.reshape(3, 1, 1)
    np.testing.assert_allclose(out["y"], expected, rtol=1e-5, atol=1e-6)


def naive_prior_boxes(fh, fw, img_h, img_w, mins, maxs, ratios, flip, clip, variance, offset=0.5, step=None):
    """SSD's prior_box_layer.cpp Forward_cpu, one prior at a time."""
    uniq = [1.0]
    for r in ratios:
        if all(abs(r - u) >= 1e-6 for u in uniq):
            uniq.append(r)
            if flip:
                uniq.append(1.0 / r)
    step_h, step_w = (step, step) if step else (img_h / fh, img_w / fw)
    boxes = []
    for h in range(fh):
        for w in range(fw):
            cx, cy = (w + offset) * step_w, (h + offset) * step_h
            for s, m in enumerate(mins):
                sizes = [(m, m)] + ([(math.sqrt(m * maxs[s]),) * 2] if maxs else [])
                sizes += [(m * math.sqrt(r), m / math.sqrt(r)) for r in uniq if abs(r - 1) >= 1e-6]
                for bw, bh in sizes:
                    boxes += [(cx - bw / 2) / img_w, (cy - bh / 2) / img_h, (cx + bw / 2) / img_w, (cy + bh / 2) / img_h]
    boxes = np.asarray(boxes)
    if clip:
        boxes = np.clip(boxes, 0, 1)
    var = np.tile(variance * (4 // len(variance)), len(boxes) // 4)
    return np.stack([boxes, var])[None]


@pytest.mark.parametrize("extra,args", [
    ("min_size: 30 max_size: 60 aspect_ratio: 2 flip: true variance: 0.1 variance: 0.1 variance: 0.2 variance: 0.2",
     dict(mins=[30], maxs=[60], ratios=[2], flip=True, clip=False, variance=[0.1, 0.1, 0.2, 0.2])),
    ("min_size: 20 aspect_ratio: 2 aspect_ratio: 3 aspect_ratio: 2 clip: true variance: 0.1 step: 16 offset: 0.25",
     dict(mins=[20], maxs=[], ratios=[2, 3, 2], flip=True, clip=True, variance=[0.1], step=16, offset=0.25)),
])
def test_prior_box_matches_ssd_loop(extra, args):
    """The second case leaves flip at SSD's default (true)."""
    feature, image = normal(1, 2, 3, 4), normal(1, 3, 48, 64)
    _, out = run_layer(f'name: "pb" type: "PriorBox" bottom: "b0" bottom: "b1" top: "y" prior_box_param {{ {extra} }}',
                       feature, image)
    expected = naive_prior_boxes(3, 4, 48, 64, **args)
    assert out["y"].shape == expected.shape
    np.testing.assert_allclose(out["y"], expected, rtol=1e-5, atol=1e-6)


def naive_detections(loc, conf, priors, variances, classes, threshold, nms, top_k, keep_top_k):
    """SSD's DetectionOutput: CENTER_SIZE decode, greedy NMS per class, keep_top_k over the image."""
    boxes = []
    for p, v, l in zip(priors, variances, loc):
        pw, ph = p[2] - p[0], p[3] - p[1]
        cx, cy = v[0] * l[0] * pw + (p[0] + p[2]) / 2, v[1] * l[1] * ph + (p[1] + p[3]) / 2
        w, h = math.exp(v[2] * l[2]) * pw, math.exp(v[3] * l[3]) * ph
        boxes.append((cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2))

    def iou(a, b):
        iw, ih = min(a[2], b[2]) - max(a[0], b[0]), min(a[3], b[3]) - max(a[1], b[1])
        if iw <= 0 or ih <= 0:
            return 0.0
        inter = iw * ih
        return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)

    found = []
    for c in range(1, classes):
        order = sorted((k for k in range(len(boxes)) if conf[k, c] > threshold), key=lambda k: -conf[k, c])[:top_k]
        kept = []
        for k in order:
            if all(iou(boxes[k], boxes[j]) <= nms for j in kept):
                kept.append(k)
        found += [(c, conf[k, c], k) for k in kept]
    found = sorted(found, key=lambda f: -f[1])[:keep_top_k]
    return sorted([(0, c, s, *boxes[k]) for c, s, k in found], key=lambda r: (r[1], -r[2]))


def test_detection_output_matches_naive_nms():
    feature, image = normal(1, 2, 4, 4), normal(1, 3, 64, 64)
    _, pri = run_layer('name: "pb" type: "PriorBox" bottom: "b0" bottom: "b1" top: "y" prior_box_param { '
                       'min_size: 20 max_size: 40 aspect_ratio: 2 flip: true variance: 0.1 variance: 0.1 '
                       'variance: 0.2 variance: 0.2 }', feature, image)
    priors = pri["y"]
    p = priors.shape[2] // 4
    classes = 4
    loc = 0.5 * normal(1, p * 4)
    logits = 3 * normal(p, classes)
    conf = (np.exp(logits) / np.exp(logits).sum(1, keepdims=True)).astype(np.float32).reshape(1, -1)
    text = (f'name: "det" type: "DetectionOutput" bottom: "b0" bottom: "b1" bottom: "b2" top: "d" '
            f'detection_output_param {{ num_classes: {classes} share_location: true background_label_id: 0 '
            f'nms_param {{ nms_threshold: 0.45 top_k: 20 }} code_type: CENTER_SIZE keep_top_k: 15 '
            f'confidence_threshold: 0.2 }}')
    _, out = run_layer(text, loc, conf, priors)
    got = out["d"].reshape(-1, 7)
    expected = np.asarray(naive_detections(loc.reshape(p, 4).astype(np.float64), conf.reshape(p, classes),
                                           priors[0, 0].reshape(p, 4).astype(np.float64),
                                           priors[0, 1].reshape(p, 4).astype(np.float64), classes, 0.2, 0.45, 20, 15))
    assert len(expected) == 15
    got = got[np.lexsort((-got[:, 2], got[:, 1]))]
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_detection_output_without_detections_is_one_minus_one_row():
    p = 2
    loc, conf = normal(1, p * 4), np.full((1, p * 3), 1 / 3, np.float32)
    priors = np.concatenate([np.tile([0.1, 0.1, 0.5, 0.5], p), np.full(p * 4, 0.1)]).reshape(1, 2, -1).astype(np.float32)
    _, out = run_layer('name: "det" type: "DetectionOutput" bottom: "b0" bottom: "b1" bottom: "b2" top: "d" '
                       'detection_output_param { num_classes: 3 confidence_threshold: 0.5 '
                       'nms_param { nms_threshold: 0.45 } }', loc, conf, priors)
    np.testing.assert_array_equal(out["d"], [[[[0, -1, -1, -1, -1, -1, -1]]]])


def naive_roi_pool(x, rois, ph, pw, scale):
    """caffe-fast-rcnn roi_pooling_layer.cpp Forward_cpu."""
    _, c, h, w = x.shape
    out = np.zeros((len(rois), c, ph, pw), np.float32)
    for r, (b, x1, y1, x2, y2) in enumerate(rois):
        sw, sh, ew, eh = (c_round(float(np.float32(v) * np.float32(scale))) for v in (x1, y1, x2, y2))
        rh, rw = max(eh - sh + 1, 1), max(ew - sw + 1, 1)
        bh, bw = np.float32(rh) / np.float32(ph), np.float32(rw) / np.float32(pw)
        for i in range(ph):
            for j in range(pw):
                hs = min(max(math.floor(np.float32(i) * bh) + sh, 0), h)
                he = min(max(math.ceil(np.float32(i + 1) * bh) + sh, 0), h)
                ws = min(max(math.floor(np.float32(j) * bw) + sw, 0), w)
                we = min(max(math.ceil(np.float32(j + 1) * bw) + sw, 0), w)
                if he > hs and we > ws:
                    out[r, :, i, j] = x[int(b), :, hs:he, ws:we].max((1, 2))
    return out


def test_roi_pooling_matches_fast_rcnn_loop():
    x = normal(2, 3, 10, 12)
    rois = np.asarray([[0, 0, 0, 47, 39], [1, 8, 4, 30, 20], [1, 5.5, 6, 6, 6.5], [0, 40, 30, 80, 90],
                       [1, -9, -9, 12, 3]], np.float32)
    _, out = run_layer('name: "r" type: "ROIPooling" bottom: "b0" bottom: "b1" top: "y" '
                       'roi_pooling_param { pooled_h: 3 pooled_w: 2 spatial_scale: 0.25 }', x, rois)
    np.testing.assert_array_equal(out["y"], naive_roi_pool(x, rois, 3, 2, 0.25))


POOL_MASK = ('layer { name: "pool" type: "Pooling" bottom: "b0" top: "p" top: "m" '
             'pooling_param { pool: MAX kernel_size: 2 stride: 2 } }')


def test_max_pooling_mask_is_the_flat_index_in_the_plane():
    x = normal(1, 2, 5, 6)
    _, out = run_layer(POOL_MASK[8:-2], x)
    for c in range(2):
        for i in range(3):
            for j in range(3):
                window = x[0, c, 2 * i:min(2 * i + 2, 5), 2 * j:min(2 * j + 2, 6)]
                di, dj = np.unravel_index(window.argmax(), window.shape)
                assert out["m"][0, c, i, j] == (2 * i + di) * 6 + 2 * j + dj
                assert out["p"][0, c, i, j] == window.max()


def unpool_net(h, w, extra="") -> pb.NetParameter:
    return parse_text_proto(
        f'layer {{ name: "in" type: "Input" top: "b0" input_param {{ shape {{ dim: 1 dim: 2 dim: {h} dim: {w} }} }} }}\n'
        + POOL_MASK + '\nlayer { name: "up" type: "Upsample" bottom: "p" bottom: "m" top: "u" '
        f'upsample_param {{ scale: 2 {extra} }} }}', pb.NetParameter)


@pytest.mark.parametrize("h,w,extra", [(4, 6, ""), (5, 7, "upsample_h: 5 upsample_w: 7"),
                                       (5, 7, "pad_out_h: true pad_out_w: true")])
def test_segnet_upsample_puts_each_value_back_at_its_mask_index(h, w, extra):
    net = Net(unpool_net(h, w, extra))
    x = normal(1, 2, h, w)
    with torch.no_grad():
        out = {k: v.numpy() for k, v in net(torch.from_numpy(x), outputs=["p", "m", "u"]).items()}
    expected = np.zeros((1, 2, h, w), np.float32)
    for c in range(2):
        for v, idx in zip(out["p"][0, c].ravel(), out["m"][0, c].ravel()):
            expected[0, c].flat[int(idx)] = v
    np.testing.assert_array_equal(out["u"], expected)


def test_yolo_upsample_repeats_each_value():
    x = normal(1, 2, 3, 2)
    _, out = run_layer('name: "u" type: "Upsample" bottom: "b0" top: "y" upsample_param { scale: 3 }', x)
    np.testing.assert_array_equal(out["y"], x.repeat(3, 2).repeat(3, 3))


def naive_interp(x, oh, ow, nearest=False):
    """PSPNet's caffe_cpu_interp2 (corners aligned); nearest takes the source rounded half up."""
    _, _, h, w = x.shape
    rh = (h - 1) / (oh - 1) if oh > 1 else 0.0
    rw = (w - 1) / (ow - 1) if ow > 1 else 0.0
    out = np.zeros(x.shape[:2] + (oh, ow))
    for i in range(oh):
        for j in range(ow):
            sr, sc = np.float32(rh) * np.float32(i), np.float32(rw) * np.float32(j)
            if nearest:
                out[:, :, i, j] = x[:, :, int(math.floor(sr + 0.5)), int(math.floor(sc + 0.5))]
                continue
            r0, c0 = int(sr), int(sc)
            r1, c1 = r0 + (r0 < h - 1), c0 + (c0 < w - 1)
            lr, lc = sr - r0, sc - c0
            out[:, :, i, j] = ((1 - lr) * ((1 - lc) * x[:, :, r0, c0] + lc * x[:, :, r0, c1])
                               + lr * ((1 - lc) * x[:, :, r1, c0] + lc * x[:, :, r1, c1]))
    return out


@pytest.mark.parametrize("param,size,crop", [("zoom_factor: 3", (13, 16), 0), ("shrink_factor: 2", (3, 3), 0),
                                             ("height: 9 width: 4", (9, 4), 0), ("height: 1 width: 1", (1, 1), 0),
                                             ("zoom_factor: 2 pad_beg: -1 pad_end: -1", (5, 7), 1),
                                             ('height: 11 width: 8 interp_type: "nearest_neighbor"', (11, 8), 0)])
def test_interp_matches_pspnet_loop(param, size, crop):
    x = normal(1, 2, 5, 6)
    _, out = run_layer(f'name: "i" type: "Interp" bottom: "b0" top: "y" interp_param {{ {param} }}', x)
    cropped = x[:, :, crop:5 - crop, crop:6 - crop]
    expected = naive_interp(cropped.astype(np.float64), *size, nearest="nearest" in param)
    assert out["y"].shape[2:] == size
    np.testing.assert_allclose(out["y"], expected, rtol=1e-5, atol=1e-6)


def test_interp_to_the_size_of_a_second_bottom():
    x, ref = normal(1, 2, 3, 4), normal(1, 5, 7, 6)
    _, out = run_layer('name: "i" type: "Interp" bottom: "b0" bottom: "b1" top: "y"', x, ref)
    np.testing.assert_allclose(out["y"], naive_interp(x.astype(np.float64), 7, 6), rtol=1e-5, atol=1e-6)


def set_bn(net, scale, shift, mean=None, var=None):
    layer = last_layer(net)
    with torch.no_grad():
        layer.scale.copy_(torch.from_numpy(scale))
        layer.shift.copy_(torch.from_numpy(shift))
        if mean is not None:
            layer.mean.copy_(torch.from_numpy(mean))
            layer.variance.copy_(torch.from_numpy(var))
    return layer


@pytest.mark.parametrize("mode", ["INFERENCE", "LEARN"])
def test_segnet_bn(mode):
    x, scale, shift = normal(3, 2, 4, 5), normal(1, 2, 1, 1), normal(1, 2, 1, 1)
    net = one_layer_net(f'name: "bn" type: "BN" bottom: "b0" top: "y" bn_param {{ bn_mode: {mode} }}', x.shape)
    set_bn(net, scale, shift)
    with torch.no_grad():
        y = net(torch.from_numpy(x))["y"].numpy()
    xd = x.astype(np.float64)
    if mode == "INFERENCE":
        expected = xd * scale + shift
    else:
        mean = xd.mean((0, 2, 3), keepdims=True)
        var = (xd ** 2).mean((0, 2, 3), keepdims=True) - mean ** 2
        expected = (xd - mean) / np.sqrt(var + 1e-9) * scale + shift
    np.testing.assert_allclose(y, expected, rtol=1e-4, atol=1e-5)


def test_pspnet_bn_uses_stored_statistics_at_test_and_moves_them_at_train():
    x, scale, shift = normal(3, 2, 4, 5), normal(1, 2, 1, 1), normal(1, 2, 1, 1)
    mean, var = normal(1, 2, 1, 1), (1 + rng.random((1, 2, 1, 1))).astype(np.float32)
    text = 'name: "bn" type: "BN" bottom: "b0" top: "y" bn_param { var_eps: 1e-5 decay: 0.2 moving_average: true }'
    net = one_layer_net(text, x.shape)
    set_bn(net, scale, shift, mean, var)
    with torch.no_grad():
        y = net(torch.from_numpy(x))["y"].numpy()
    np.testing.assert_allclose(y, (x - mean) / np.sqrt(var + 1e-5) * scale + shift, rtol=1e-5, atol=1e-5)

    train = one_layer_net(text, x.shape, phase=pb.TRAIN)
    layer = set_bn(train, scale, shift, mean, var)
    with torch.no_grad():
        y = train(torch.from_numpy(x))["y"].numpy()
    xd = x.astype(np.float64)
    bmean, bvar = xd.mean((0, 2, 3), keepdims=True), xd.var((0, 2, 3), keepdims=True)
    np.testing.assert_allclose(y, (xd - bmean) / np.sqrt(bvar + 1e-5) * scale + shift, rtol=1e-4, atol=1e-5)
    # PSPNet's caffe_cpu_axpby(decay, batch, 1 - decay, stored)
    np.testing.assert_allclose(layer.mean.numpy(), 0.2 * bmean + 0.8 * mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(layer.variance.numpy(), 0.2 * bvar + 0.8 * var, rtol=1e-5, atol=1e-6)


def test_bn_flavor_from_a_caffemodel_with_four_blobs():
    net = one_layer_net('name: "bn" type: "BN" bottom: "b0" top: "y"', (1, 2, 3, 3))
    layer = last_layer(net)
    arrays = [np.full((1, 2, 1, 1), v, np.float32) for v in (2.0, 1.0, 0.5, 4.0)]
    layer.load_blobs(arrays)
    assert layer.flavor == "pspnet" and layer.blob_names == ["scale", "shift", "mean", "variance"]


def naive_conv(x, wt, bias, stride, pad, dilation, groups):
    n, c, h, w = x.shape
    o, cg, kh, kw = wt.shape
    oh = (h + 2 * pad - (dilation * (kh - 1) + 1)) // stride + 1
    ow = (w + 2 * pad - (dilation * (kw - 1) + 1)) // stride + 1
    xp = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    out = np.zeros((n, o, oh, ow))
    for f in range(o):
        g = f // (o // groups)
        for i in range(oh):
            for j in range(ow):
                patch = xp[:, g * cg:(g + 1) * cg, i * stride:i * stride + dilation * (kh - 1) + 1:dilation,
                           j * stride:j * stride + dilation * (kw - 1) + 1:dilation]
                out[:, f, i, j] = (patch * wt[f]).sum((1, 2, 3)) + bias[f]
    return out


@pytest.mark.parametrize("kind,extra,groups,dil", [
    ("ConvolutionDepthwise", "num_output: 3 kernel_size: 3 stride: 2 pad: 1", 3, 1),
    ("DepthwiseConvolution", "num_output: 3 kernel_size: 3 pad: 1", 3, 1),
    ("HoleConvolution", "num_output: 4 kernel_size: 3 pad: 2 hole: 2", 1, 2)])
def test_fork_convolutions(kind, extra, groups, dil):
    x = normal(2, 3, 7, 6)
    net, out = run_layer(f'name: "c" type: "{kind}" bottom: "b0" top: "y" convolution_param {{ {extra} '
                         'weight_filler { type: "gaussian" std: 1 } bias_filler { type: "gaussian" std: 1 } }', x)
    wt, bias = (b.detach().numpy() for b in last_layer(net).caffe_blobs)
    stride = 2 if "stride: 2" in extra else 1
    pad = 2 if "pad: 2" in extra else 1
    np.testing.assert_allclose(out["y"], naive_conv(x, wt, bias, stride, pad, dil, groups), rtol=1e-4, atol=1e-5)


def test_depthwise_needs_one_filter_per_channel():
    with pytest.raises(UserError, match=r"layer 'c' \(ConvolutionDepthwise\): num_output 4 must equal"):
        one_layer_net('name: "c" type: "ConvolutionDepthwise" bottom: "b0" top: "y" '
                      'convolution_param { num_output: 4 kernel_size: 3 }', (1, 3, 5, 5))


# --- backward (autograd) where the layers train ---

GRAD_CASES = {
    "axpy": ('type: "Axpy"', [(2, 3), (2, 3, 2, 2), (2, 3, 2, 2)]),
    "shuffle": ('type: "ShuffleChannel" shuffle_channel_param { group: 2 }', [(1, 4, 2, 2)]),
    "permute": ('type: "Permute" permute_param { order: 0 order: 3 order: 1 order: 2 }', [(1, 2, 3, 2)]),
    "normalize": ('type: "Normalize" norm_param { across_spatial: false channel_shared: false }', [(2, 3, 2, 2)]),
    "normalize_across": ('type: "Normalize"', [(2, 3, 2, 2)]),
    "yolo_upsample": ('type: "Upsample" upsample_param { scale: 2 }', [(1, 2, 2, 3)]),
    "interp": ('type: "Interp" interp_param { height: 5 width: 3 }', [(1, 2, 3, 4)]),
    "depthwise": ('type: "ConvolutionDepthwise" convolution_param { num_output: 2 kernel_size: 3 pad: 1 '
                  'weight_filler { type: "gaussian" } }', [(1, 2, 4, 4)]),
    "hole": ('type: "HoleConvolution" convolution_param { num_output: 2 kernel_size: 2 hole: 2 '
             'weight_filler { type: "gaussian" } }', [(1, 2, 5, 5)]),
    "bn_segnet_learn": ('type: "BN" bn_param { bn_mode: LEARN scale_filler { type: "gaussian" } }', [(3, 2, 2, 2)]),
    "bn_pspnet_train": ('type: "BN" bn_param { var_eps: 1e-5 scale_filler { type: "gaussian" } }', [(3, 2, 2, 2)]),
}


@pytest.mark.parametrize("case", sorted(GRAD_CASES))
def test_fork_gradcheck(case, one_thread):
    assert gradcheck_layer(*GRAD_CASES[case])


@pytest.mark.parametrize("case", ["unpool", "roi"])
def test_fork_gradcheck_of_the_data_input(case, one_thread):
    """Upsample (given its mask) and ROIPooling (given its rois) pass gradients to the data only."""
    gen = torch.Generator().manual_seed(1)
    if case == "unpool":
        net = Net(unpool_net(4, 4)).double()
        x = torch.randn(1, 2, 4, 4, generator=gen, dtype=torch.float64, requires_grad=True)
        f = lambda x: net(x, outputs=["u"])["u"]
    else:
        net = one_layer_net('name: "r" type: "ROIPooling" bottom: "b0" bottom: "b1" top: "y" '
                            'roi_pooling_param { pooled_h: 2 pooled_w: 2 spatial_scale: 0.5 }', (1, 2, 6, 6), (2, 5),
                            dtype=torch.float64)
        rois = torch.tensor([[0, 0, 0, 9, 7], [0, 2, 4, 11, 11]], dtype=torch.float64)
        x = torch.randn(1, 2, 6, 6, generator=gen, dtype=torch.float64, requires_grad=True)
        f = lambda x: net({"b0": x, "b1": rois}, outputs=["y"])["y"]
    assert torch.autograd.gradcheck(f, [x], eps=1e-6, atol=1e-5)


# --- ONNX (direct route) against our Net, float64 rule ---

ONNX_NET = """
name: "forks"
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 2 dim: 6 dim: 8 dim: 10 } } }
layer { name: "img" type: "Input" top: "img" input_param { shape { dim: 2 dim: 3 dim: 64 dim: 80 } } }
layer { name: "rois" type: "Input" top: "rois" input_param { shape { dim: 3 dim: 5 } } }
layer { name: "dw" type: "ConvolutionDepthwise" bottom: "data" top: "dw" convolution_param { num_output: 6 kernel_size: 3 pad: 1 stride: 2 weight_filler { type: "gaussian" } bias_filler { type: "gaussian" } } }
layer { name: "hole" type: "HoleConvolution" bottom: "data" top: "hole" convolution_param { num_output: 4 kernel_size: 3 hole: 2 pad: 2 weight_filler { type: "gaussian" } } }
layer { name: "shuffle" type: "ShuffleChannel" bottom: "data" top: "shuffle" shuffle_channel_param { group: 3 } }
layer { name: "gap" type: "Pooling" bottom: "data" top: "gap" pooling_param { pool: AVE global_pooling: true } }
layer { name: "axpy" type: "Axpy" bottom: "gap" bottom: "shuffle" bottom: "data" top: "axpy" }
layer { name: "perm" type: "Permute" bottom: "data" top: "perm" permute_param { order: 0 order: 2 order: 3 order: 1 } }
layer { name: "norm" type: "Normalize" bottom: "data" top: "norm" norm_param { across_spatial: false channel_shared: false scale_filler { type: "gaussian" std: 5 } } }
layer { name: "norm_all" type: "Normalize" bottom: "data" top: "norm_all" }
layer { name: "prior" type: "PriorBox" bottom: "data" bottom: "img" top: "prior" prior_box_param { min_size: 16 max_size: 32 aspect_ratio: 2 flip: true clip: true variance: 0.1 variance: 0.1 variance: 0.2 variance: 0.2 } }
layer { name: "roi" type: "ROIPooling" bottom: "data" bottom: "rois" top: "roi" roi_pooling_param { pooled_h: 3 pooled_w: 2 spatial_scale: 0.125 } }
layer { name: "pool" type: "Pooling" bottom: "data" top: "pool" top: "mask" pooling_param { pool: MAX kernel_size: 2 stride: 2 } }
layer { name: "unpool" type: "Upsample" bottom: "pool" bottom: "mask" top: "unpool" upsample_param { scale: 2 } }
layer { name: "nearest" type: "Upsample" bottom: "data" top: "nearest" upsample_param { scale: 2 } }
layer { name: "zoom" type: "Interp" bottom: "data" top: "zoom" interp_param { zoom_factor: 2 pad_beg: -1 pad_end: -1 } }
layer { name: "shrink" type: "Interp" bottom: "data" top: "shrink" interp_param { shrink_factor: 3 } }
layer { name: "to_img" type: "Interp" bottom: "data" bottom: "img" top: "to_img" interp_param { interp_type: "bilinear" } }
layer { name: "bn_inf" type: "BN" bottom: "data" top: "bn_inf" bn_param { bn_mode: INFERENCE scale_filler { type: "gaussian" } shift_filler { type: "gaussian" } } }
layer { name: "bn_learn" type: "BN" bottom: "data" top: "bn_learn" bn_param { bn_mode: LEARN scale_filler { type: "gaussian" } } }
layer { name: "bn_psp" type: "BN" bottom: "data" top: "bn_psp" bn_param { var_eps: 1e-5 moving_average: true scale_filler { type: "gaussian" } } }
layer { name: "bn_psp_batch" type: "BN" bottom: "data" top: "bn_psp_batch" bn_param { var_eps: 1e-5 scale_filler { type: "gaussian" } } }
"""


def test_fork_layers_convert_to_onnx_and_pass_the_float64_rule():
    deploy = parse_text_proto(ONNX_NET, pb.NetParameter)
    net = Net(deploy, seed=3)
    with torch.no_grad():
        for lp, layer in net.named_layers():
            if lp.name == "bn_psp":
                layer.mean.normal_(0, 0.3)
                layer.variance.uniform_(0.5, 2.0)
    weights = {lp.name: layer.blob_arrays() for lp, layer in net.named_layers() if layer.blob_names}
    inputs = {"data": normal(2, 6, 8, 10), "img": normal(2, 3, 64, 80),
              "rois": np.asarray([[0, 0, 0, 79, 63], [1, 8, 16, 40, 30], [1, 30, 2, 31, 3]], np.float32)}
    outs = [lp.top[0] for lp in deploy.layer if lp.type != "Input"] + ["mask"]
    model = to_onnx(deploy, weights, outputs=outs)
    report = check_onnx(model, net, inputs)
    assert report.ok, report.table()
    assert sorted(r.blob for r in report.rows) == sorted(outs)


def test_detection_output_and_python_say_why_they_do_not_convert():
    deploy = parse_text_proto(ONNX_NET.split('layer { name: "dw"')[0] + """
layer { name: "loc" type: "Input" top: "loc" input_param { shape { dim: 1 dim: 8 } } }
layer { name: "conf" type: "Input" top: "conf" input_param { shape { dim: 1 dim: 6 } } }
layer { name: "pri" type: "Input" top: "pri" input_param { shape { dim: 1 dim: 2 dim: 8 } } }
layer { name: "det" type: "DetectionOutput" bottom: "loc" bottom: "conf" bottom: "pri" top: "det" detection_output_param { num_classes: 3 } }
""", pb.NetParameter)
    with pytest.raises(UserError) as err:
        to_onnx(deploy, {})
    message = str(err.value)
    assert "\n" not in message and "layer 'det'" in message and "'DetectionOutput'" in message
    assert "depends on the data" in message and "--outputs" in message


# --- the forks' ceil_mode (PoolingParameter field 13) ---

CEIL_NET = """layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 1 dim: 6 dim: 6 } } }
layer { name: "p_fork_floor" type: "Pooling" bottom: "data" top: "a" pooling_param { pool: MAX kernel_size: 3 stride: 2 ceil_mode: false } }
layer { name: "p_fork_ceil" type: "Pooling" bottom: "data" top: "b" pooling_param { pool: MAX kernel_size: 3 stride: 2 ceil_mode: true } }
layer { name: "p_bvlc" type: "Pooling" bottom: "data" top: "c" pooling_param { pool: MAX kernel_size: 3 stride: 2 round_mode: FLOOR } }
"""


def test_prototxt_ceil_mode_is_read_as_round_mode_with_a_warning(tmp_path, capsys):
    path = tmp_path / "fork.prototxt"
    path.write_text(CEIL_NET)
    net_param = protoio.read_net(path)
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "ceil_mode" in err and "line(s) 2, 3" in err and str(path) in err
    modes = [lp.pooling_param.round_mode for lp in net_param.layer[1:]]
    assert modes == [pb.PoolingParameter.FLOOR, pb.PoolingParameter.CEIL, pb.PoolingParameter.FLOOR]
    shapes = Net(net_param).blob_shapes
    assert shapes["a"] == (1, 1, 2, 2) and shapes["b"] == (1, 1, 3, 3) and shapes["c"] == (1, 1, 2, 2)
    assert protoio.prototxt_uses_ceil_mode(path)


def test_bvlc_round_mode_prototxt_reads_without_a_warning(tmp_path, capsys):
    path = tmp_path / "bvlc.prototxt"
    path.write_text(CEIL_NET.split("\n")[0] + "\n" + CEIL_NET.split("\n")[3] + "\n")
    net_param = protoio.read_net(path)
    assert capsys.readouterr().err == "" and not protoio.prototxt_uses_ceil_mode(path)
    assert net_param.layer[1].pooling_param.round_mode == pb.PoolingParameter.FLOOR


def _varint(v: int) -> bytes:
    out = b""
    while True:
        out += bytes([(v & 0x7F) | (0x80 if v > 0x7F else 0)])
        v >>= 7
        if not v:
            return out


def _field(number: int, payload: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def test_caffemodel_field13_read_both_ways(tmp_path, capsys):
    """The same bytes: field 13 = 0 / 1 is BVLC round_mode CEIL / FLOOR, but a fork's ceil_mode false / true."""
    def pooling_layer(name: str, value: int) -> bytes:
        pooling = _varint(1 << 3 | 0) + _varint(0) + _varint(2 << 3 | 0) + _varint(3) + _varint(13 << 3 | 0) + _varint(value)
        return _field(100, _field(1, name.encode()) + _field(2, b"Pooling") + _field(121, pooling))
    path = tmp_path / "fork.caffemodel"
    path.write_bytes(_field(1, b"n") + pooling_layer("zero", 0) + pooling_layer("one", 1))
    bvlc = protoio.read_caffemodel(path)
    assert capsys.readouterr().err == ""
    assert [lp.pooling_param.round_mode for lp in bvlc.layer] == [pb.PoolingParameter.CEIL, pb.PoolingParameter.FLOOR]
    fork = protoio.read_caffemodel(path, pooling_field13="ceil_mode")
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "zero, one" in err and "ceil_mode" in err
    assert [lp.pooling_param.round_mode for lp in fork.layer] == [pb.PoolingParameter.FLOOR, pb.PoolingParameter.CEIL]
    with pytest.raises(UserError, match="pooling_field13"):
        protoio.read_caffemodel(path, pooling_field13="bool")
