"""Pooling against Caffe's own loop (pooling_layer.cpp's formulas), on both of our code paths."""
import math

import numpy as np
import pytest

from layer_helpers import run_layer

rng = np.random.default_rng(2)


def naive_pool(x, k, s, p, method):
    """Caffe's Forward_cpu: ceil output size, last-window rule, AVE divisor up to H + pad."""
    n, c, h, w = x.shape
    size = [int(math.ceil((d + 2 * p - k) / s)) + 1 for d in (h, w)]
    size = [o - 1 if p and (o - 1) * s >= d + p else o for o, d in zip(size, (h, w))]
    out = np.zeros((n, c, *size))
    for i in range(size[0]):
        for j in range(size[1]):
            hs, ws = i * s - p, j * s - p
            he, we = min(hs + k, h + p), min(ws + k, w + p)
            pool_size = (he - hs) * (we - ws)
            hs, ws, he, we = max(hs, 0), max(ws, 0), min(he, h), min(we, w)
            window = x[:, :, hs:he, ws:we].astype(np.float64)
            out[:, :, i, j] = window.max((2, 3)) if method == "MAX" else window.sum((2, 3)) / pool_size
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
