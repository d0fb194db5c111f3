"""Pooling against Caffe's own loop (pooling_layer.cpp's formulas), on both of our code paths."""
import math

import numpy as np
import pytest

from convert import caffe_pb2 as pb
from layer_helpers import gradcheck_layer, one_layer_net, run_layer

rng = np.random.default_rng(2)
FLT_MAX = float(np.finfo(np.float32).max)


def naive_pool(x, k, s, p, method, darknet=False):
    """Caffe's Forward_cpu: ceil output size, last-window rule, AVE divisor up to H + pad. darknet: the
    Darknet2Caffe fork's Reshape, one more output row and column when (k - s) % 2 == 1 in C++ (k > s)."""
    n, c, h, w = x.shape
    extra = int(darknet and k > s and (k - s) % 2 == 1)
    size = [int(math.ceil((d + 2 * p - k) / s)) + 1 + extra for d in (h, w)]
    size = [o - 1 if p and (o - 1) * s >= d + p else o for o, d in zip(size, (h, w))]
    out = np.zeros((n, c, *size))
    for i in range(size[0]):
        for j in range(size[1]):
            hs, ws = i * s - p, j * s - p
            he, we = min(hs + k, h + p), min(ws + k, w + p)
            pool_size = (he - hs) * (we - ws)
            hs, ws, he, we = max(hs, 0), max(ws, 0), min(he, h), min(we, w)
            window = x[:, :, hs:he, ws:we].astype(np.float64)
            if method == "MAX":   # Caffe starts each max at -FLT_MAX (what a window past the image keeps)
                out[:, :, i, j] = window.max((2, 3), initial=-FLT_MAX)
            else:                 # and divides a window past the image by its size 0
                with np.errstate(invalid="ignore"):
                    out[:, :, i, j] = window.sum((2, 3)) / pool_size
    return out


@pytest.mark.parametrize("method", ["MAX", "AVE"])
@pytest.mark.parametrize("k,s,p,size", [(3, 2, 0, 8), (3, 2, 1, 7), (2, 2, 1, 6), (3, 2, 2, 7), (4, 3, 3, 9),
                                        (3, 1, 2, 5)])
def test_pooling_matches_caffe_loop(method, k, s, p, size):
    x = rng.normal(size=(2, 3, size, size + 1)).astype(np.float32)
    _, out = run_layer(f'name: "p" type: "Pooling" bottom: "b0" top: "y" '
                       f'pooling_param {{ pool: {method} kernel_size: {k} stride: {s} pad: {p} }}', x)
    expected = naive_pool(x, k, s, p, method)
    assert out["y"].shape == expected.shape
    np.testing.assert_allclose(out["y"], expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("method", ["MAX", "AVE"])
@pytest.mark.parametrize("k,s,p,size", [(2, 1, 0, 13), (3, 2, 0, 7), (4, 1, 1, 6), (3, 1, 0, 6), (2, 2, 0, 6)])
def test_darknet_pooling_rule_matches_the_forks_loop(method, k, s, p, size):
    """YOLOv3-tiny's 2x2/1 pooling keeps 13x13 at 13x13; even k - s (3/1, 2/2) sizes as BVLC."""
    x = rng.normal(size=(2, 3, size, size + 1)).astype(np.float32)
    text = f'name: "p" type: "Pooling" bottom: "b0" top: "y" pooling_param {{ pool: {method} kernel_size: {k} ' \
           f'stride: {s} pad: {p} }}'
    _, out = run_layer(text, x, pooling="darknet")
    expected = naive_pool(x, k, s, p, method, darknet=True)
    assert out["y"].shape == expected.shape
    np.testing.assert_allclose(out["y"], expected, rtol=1e-5, atol=1e-6)
    if (k, s) == (2, 1):
        assert expected.shape[2:] == x.shape[2:]


def test_darknet_pooling_gradient_and_onnx():
    """The extra window trains (gradcheck) and converts: ONNX Runtime agrees with the float64 net."""
    from convert.onnx_check import check_onnx
    from convert.onnx_direct import to_onnx
    text = 'type: "Pooling" pooling_param { pool: MAX kernel_size: 2 stride: 1 }'
    assert gradcheck_layer(text, [(1, 2, 5, 5)], pooling="darknet")
    net = one_layer_net(f'name: "p" {text} bottom: "b0" top: "y"', (1, 2, 5, 5), pooling="darknet")
    deploy = pb.NetParameter()
    deploy.layer.extend(net.layer_params)
    x = rng.normal(size=(1, 2, 5, 5)).astype(np.float32)
    report = check_onnx(to_onnx(deploy, {}, pooling="darknet"), net, {"b0": x})
    assert report.ok and report.rows[0].shape == (1, 2, 5, 5), report.table()
