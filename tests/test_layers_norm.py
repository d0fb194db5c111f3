"""BatchNorm, Scale, Bias, MVN and the small neuron layers against naive loops of Caffe's formulas."""
import numpy as np
import pytest
import torch

from convert import caffe_pb2 as pb
from convert.errors import UserError
from layer_helpers import one_layer_net, run_layer

rng = np.random.default_rng(0)


def naive_bn_test(x, mean_sum, var_sum, factor, eps):
    """Caffe's BatchNorm with global stats: blobs divided by the factor (0 if the factor is 0)."""
    scale = 0.0 if factor == 0 else 1.0 / factor
    y = np.empty_like(x, dtype=np.float64)
    for n in range(x.shape[0]):
        for c in range(x.shape[1]):
            y[n, c] = (x[n, c] - mean_sum[c] * scale) / np.sqrt(var_sum[c] * scale + eps)
    return y


def set_bn_blobs(net, mean, var, factor):
    bn = net.layer("bn")
    with torch.no_grad():
        bn.mean.copy_(torch.tensor(mean)), bn.variance.copy_(torch.tensor(var)), bn.factor.fill_(factor)


@pytest.mark.parametrize("factor", [2.5, 0.0])
def test_batchnorm_global_stats(factor):
    x = rng.normal(size=(2, 3, 4, 5)).astype(np.float32)
    mean, var = rng.normal(size=3).astype(np.float32), rng.uniform(1, 2, size=3).astype(np.float32)
    text = 'name: "bn" type: "BatchNorm" bottom: "b0" top: "y" batch_norm_param { eps: 0.01 }'
    net = one_layer_net(text, x.shape)
    set_bn_blobs(net, mean, var, factor)
    y = net({"b0": torch.from_numpy(x)}, outputs=["y"])["y"].detach().numpy()
    np.testing.assert_allclose(y, naive_bn_test(x, mean, var, factor, 0.01), rtol=1e-5, atol=1e-5)


def test_batchnorm_train_statistics_and_moving_average():
    text = ('name: "bn" type: "BatchNorm" bottom: "b0" top: "y" '
            'batch_norm_param { moving_average_fraction: 0.9 eps: 0.001 }')
    x1, x2 = (rng.normal(2, 3, size=(3, 2, 4, 4)).astype(np.float32) for _ in range(2))
    net = one_layer_net(text, x1.shape, phase=pb.TRAIN)
    blobs = [np.zeros(2), np.zeros(2), np.zeros(1)]
    m = 3 * 4 * 4
    for x in (x1, x2):
        y = net({"b0": torch.from_numpy(x)}, outputs=["y"])["y"].detach().numpy()
        for c in range(2):
            values = x[:, c].astype(np.float64).ravel()
            mu = sum(values) / m
            var = sum((v - mu) ** 2 for v in values) / m
            np.testing.assert_allclose(y[:, c], (x[:, c] - mu) / np.sqrt(var + 0.001), rtol=1e-4, atol=1e-5)
            blobs[0][c] = blobs[0][c] * 0.9 + mu
            blobs[1][c] = blobs[1][c] * 0.9 + m / (m - 1) * var
        blobs[2][0] = blobs[2][0] * 0.9 + 1
    bn = net.layer("bn")
    for ours, expected in zip(bn.caffe_blobs, blobs):
        np.testing.assert_allclose(ours.numpy(), expected, rtol=1e-5)


def test_batchnorm_blobs_are_not_learned():
    text = 'name: "bn" type: "BatchNorm" bottom: "b0" top: "y" param { lr_mult: 0 decay_mult: 0 }'
    net = one_layer_net(text, (2, 3, 4, 4))
    assert [(b.lr_mult, b.decay_mult) for b in net.learnable_blobs()] == [(0, 0), (0, 1), (0, 1)]
    assert not list(net.parameters())
    with pytest.raises(UserError, match="lr_mult"):
        one_layer_net('name: "bn" type: "BatchNorm" bottom: "b0" top: "y" param { lr_mult: 1 }', (2, 3, 4, 4))


def naive_scale(x, s, axis, b=None):
    """y[..., i..., ...] = x * s[i...] (+ b[i...]) with s aligned at `axis`, by explicit index loops."""
    y = np.empty_like(x, dtype=np.float64)
    for idx in np.ndindex(*x.shape):
        key = idx[axis:axis + s.ndim]
        y[idx] = x[idx] * s[key] + (b[key] if b is not None else 0.0)
    return y


def test_scale_blob_with_bias_over_two_axes():
    x = rng.normal(size=(2, 3, 4, 2)).astype(np.float32)
    text = ('name: "sc" type: "Scale" bottom: "b0" top: "y" scale_param { axis: 1 num_axes: 2 bias_term: true '
            'filler { type: "uniform" min: -1 max: 1 } bias_filler { type: "gaussian" std: 1 } }')
    net, out = run_layer(text, x)
    s, b = (t.detach().numpy() for t in net.layer("sc").caffe_blobs)
    assert s.shape == b.shape == (3, 4)
    np.testing.assert_allclose(out["y"], naive_scale(x, s, 1, b), rtol=1e-6, atol=1e-6)


def test_scale_default_filler_is_one_and_bottom_operand():
    x = rng.normal(size=(2, 3, 4)).astype(np.float32)
    net, out = run_layer('name: "sc" type: "Scale" bottom: "b0" top: "y"', x)
    np.testing.assert_array_equal(net.layer("sc").operand.detach().numpy(), np.ones(3))
    s = rng.normal(size=(3, 4)).astype(np.float32)
    _, out = run_layer('name: "sc" type: "Scale" bottom: "b0" bottom: "b1" top: "y"', x, s)
    np.testing.assert_allclose(out["y"], naive_scale(x, s, 1), rtol=1e-6)
    scalar = np.array(1.5, dtype=np.float32)
    _, out = run_layer('name: "sc" type: "Scale" bottom: "b0" bottom: "b1" top: "y"', x, scalar)
    np.testing.assert_allclose(out["y"], x * 1.5, rtol=1e-6)


def test_bias_blob_and_bottom():
    x = rng.normal(size=(2, 3, 4)).astype(np.float32)
    net, out = run_layer('name: "bi" type: "Bias" bottom: "b0" top: "y" bias_param { axis: -1 '
                         'filler { type: "uniform" min: -1 max: 1 } }', x)
    b = net.layer("bi").operand.detach().numpy()
    assert b.shape == (4,)
    np.testing.assert_allclose(out["y"], naive_scale(x, np.ones(4), 2, b), rtol=1e-6)
    b2 = rng.normal(size=(2, 3)).astype(np.float32)
    _, out = run_layer('name: "bi" type: "Bias" bottom: "b0" bottom: "b1" top: "y" bias_param { axis: 0 }', x, b2)
    np.testing.assert_allclose(out["y"], naive_scale(x, np.ones((2, 3)), 0, b2), rtol=1e-6)


@pytest.mark.parametrize("across,variance", [(False, True), (True, True), (False, False)])
def test_mvn(across, variance):
    x = rng.normal(1, 2, size=(2, 3, 4, 4)).astype(np.float32)
    text = (f'name: "m" type: "MVN" bottom: "b0" top: "y" mvn_param {{ across_channels: {str(across).lower()} '
            f'normalize_variance: {str(variance).lower()} }}')
    _, out = run_layer(text, x)
    expected = np.empty_like(x, dtype=np.float64)
    groups = [(n, slice(None)) for n in range(2)] if across else [(n, c) for n in range(2) for c in range(3)]
    for n, c in groups:
        v = x[n, c].astype(np.float64)
        d = v - v.mean()
        expected[n, c] = d / (np.sqrt((d ** 2).mean()) + 1e-9) if variance else d
    np.testing.assert_allclose(out["y"], expected, rtol=1e-5, atol=1e-5)


def test_threshold_clip_swish():
    x = rng.normal(size=(3, 5)).astype(np.float32)
    x[0, 0] = 0.25  # exactly at the threshold: not above it
    _, out = run_layer('name: "t" type: "Threshold" bottom: "b0" top: "y" threshold_param { threshold: 0.25 }', x)
    np.testing.assert_array_equal(out["y"], [[1.0 if v > 0.25 else 0.0 for v in row] for row in x])
    _, out = run_layer('name: "c" type: "Clip" bottom: "b0" top: "y" clip_param { min: -0.5 max: 0.3 }', x)
    lo, hi = np.float32(-0.5), np.float32(0.3)  # the proto's float values
    np.testing.assert_array_equal(out["y"], [[min(max(v, lo), hi) for v in row] for row in x])
    _, out = run_layer('name: "s" type: "Swish" bottom: "b0" top: "y" swish_param { beta: 1.5 }', x)
    np.testing.assert_allclose(out["y"], x / (1 + np.exp(-1.5 * x.astype(np.float64))), rtol=1e-6)
