"""Eltwise, Concat, Slice, Reshape, Crop, Tile, Reduction, ArgMax against naive loops of Caffe's rules."""
import numpy as np
import pytest
import torch

from convert.errors import UserError
from layer_helpers import one_layer_net, run_layer

rng = np.random.default_rng(1)


def test_eltwise_sum_prod():
    a, b, c = (rng.normal(size=(2, 3, 4)).astype(np.float32) for _ in range(3))
    _, out = run_layer('name: "e" type: "Eltwise" bottom: "b0" bottom: "b1" bottom: "b2" top: "y" '
                       'eltwise_param { operation: SUM coeff: 1 coeff: -0.5 coeff: 2 }', a, b, c)
    np.testing.assert_allclose(out["y"], a - 0.5 * b + 2 * c, rtol=1e-6, atol=1e-6)
    _, out = run_layer('name: "e" type: "Eltwise" bottom: "b0" bottom: "b1" top: "y" '
                       'eltwise_param { operation: PROD }', a, b)
    np.testing.assert_allclose(out["y"], a * b, rtol=1e-6)


def test_eltwise_max_winner_and_gradient_follow_caffe_ties():
    a = np.array([[1.0, 2.0, 3.0, 0.0]], np.float32)
    b = np.array([[1.0, 5.0, 0.0, 0.0]], np.float32)
    c = np.array([[1.0, 5.0, 9.0, -1.0]], np.float32)
    # Caffe's scan: bottom 1 wins ties with bottom 0; later bottoms need to be strictly greater.
    winners = []
    for i in range(4):
        top, winner = (a[0, i], 0) if a[0, i] > b[0, i] else (b[0, i], 1)
        if c[0, i] > top:
            top, winner = c[0, i], 2
        winners.append(winner)
    net = one_layer_net('name: "e" type: "Eltwise" bottom: "b0" bottom: "b1" bottom: "b2" top: "y" '
                        'eltwise_param { operation: MAX }', a.shape, b.shape, c.shape)
    xs = [torch.tensor(v, requires_grad=True) for v in (a, b, c)]
    y = net({"b0": xs[0], "b1": xs[1], "b2": xs[2]}, outputs=["y"])["y"]
    y.sum().backward()
    np.testing.assert_array_equal(y.detach().numpy(), np.max([a, b, c], axis=0))
    grads = np.stack([x.grad.numpy()[0] for x in xs])
    np.testing.assert_array_equal(grads.argmax(0), winners)
    np.testing.assert_array_equal(grads.sum(0), np.ones(4))


def test_concat_and_legacy_concat_dim():
    a, b = rng.normal(size=(2, 3, 4)).astype(np.float32), rng.normal(size=(2, 5, 4)).astype(np.float32)
    _, out = run_layer('name: "c" type: "Concat" bottom: "b0" bottom: "b1" top: "y"', a, b)
    expected = np.zeros((2, 8, 4), np.float32)
    for n in range(2):
        for j in range(8):
            expected[n, j] = a[n, j] if j < 3 else b[n, j - 3]
    np.testing.assert_array_equal(out["y"], expected)
    c = rng.normal(size=(1, 3, 4)).astype(np.float32)
    _, out = run_layer('name: "c" type: "Concat" bottom: "b0" bottom: "b1" top: "y" concat_param { concat_dim: 0 }', a, c)
    np.testing.assert_array_equal(out["y"], np.concatenate([a, c], 0))
    with pytest.raises(UserError, match="cannot concatenate"):
        one_layer_net('name: "c" type: "Concat" bottom: "b0" bottom: "b1" top: "y"', (2, 3, 4), (2, 3, 5))


def test_slice_points_and_equal_split():
    x = rng.normal(size=(2, 6, 3)).astype(np.float32)
    _, out = run_layer('name: "s" type: "Slice" bottom: "b0" top: "p" top: "q" top: "r" '
                       'slice_param { axis: 1 slice_point: 1 slice_point: 4 }', x)
    for top, (lo, hi) in zip("pqr", [(0, 1), (1, 4), (4, 6)]):
        np.testing.assert_array_equal(out[top], [[x[n, j] for j in range(lo, hi)] for n in range(2)])
    _, out = run_layer('name: "s" type: "Slice" bottom: "b0" top: "p" top: "q" top: "r" slice_param { slice_dim: 2 }', x)
    for k, top in enumerate("pqr"):
        np.testing.assert_array_equal(out[top], x[:, :, k:k + 1])
    with pytest.raises(UserError, match="equal parts"):
        one_layer_net('name: "s" type: "Slice" bottom: "b0" top: "p" top: "q" top: "r" slice_param { axis: 1 }', (2, 5))


def naive_reshape(shape, dims, axis=0, num_axes=-1):
    """Caffe's ReshapeLayer rule written out directly."""
    start = axis if axis >= 0 else len(shape) + axis + 1
    end = len(shape) if num_axes == -1 else start + num_axes
    new = [shape[start + i] if d == 0 else d for i, d in enumerate(dims)]
    if -1 in new:
        new[new.index(-1)] = int(np.prod(shape[start:end]) // -np.prod(new))
    return tuple(shape[:start]) + tuple(new) + tuple(shape[end:])


@pytest.mark.parametrize("dims,axis,num_axes", [
    ([0, -1, 2], 0, -1), ([-1], 1, -1), ([2, 3], 1, 1), ([1, 1], -1, 0), ([0, 0, 1, -1], 0, -1), ([3, -1], 2, 2)])
def test_reshape(dims, axis, num_axes):
    x = rng.normal(size=(2, 6, 4, 3)).astype(np.float32)
    shape_text = " ".join(f"dim: {d}" for d in dims)
    _, out = run_layer(f'name: "r" type: "Reshape" bottom: "b0" top: "y" reshape_param {{ shape {{ {shape_text} }} '
                       f'axis: {axis} num_axes: {num_axes} }}', x)
    expected = naive_reshape(x.shape, dims, axis, num_axes)
    assert out["y"].shape == expected
    np.testing.assert_array_equal(out["y"].ravel(), x.ravel())


def test_crop_offsets():
    x = rng.normal(size=(2, 3, 7, 8)).astype(np.float32)
    ref = np.zeros((2, 3, 4, 5), np.float32)
    _, out = run_layer('name: "c" type: "Crop" bottom: "b0" bottom: "b1" top: "y" crop_param { axis: 2 offset: 1 offset: 2 }', x, ref)
    expected = np.array([[[[x[n, c, i + 1, j + 2] for j in range(5)] for i in range(4)] for c in range(3)] for n in range(2)])
    np.testing.assert_array_equal(out["y"], expected)
    ref1 = np.zeros((2, 2, 4, 5), np.float32)
    _, out = run_layer('name: "c" type: "Crop" bottom: "b0" bottom: "b1" top: "y" crop_param { axis: 1 offset: 1 }', x, ref1)
    np.testing.assert_array_equal(out["y"], x[:, 1:3, 1:5, 1:6])
    with pytest.raises(UserError, match="cannot crop"):
        one_layer_net('name: "c" type: "Crop" bottom: "b0" bottom: "b1" top: "y" crop_param { offset: 4 }',
                      x.shape, ref.shape)


def test_tile():
    x = rng.normal(size=(2, 3, 2)).astype(np.float32)
    _, out = run_layer('name: "t" type: "Tile" bottom: "b0" top: "y" tile_param { axis: 1 tiles: 3 }', x)
    expected = np.array([[[x[n, j % 3, k] for k in range(2)] for j in range(9)] for n in range(2)])
    np.testing.assert_array_equal(out["y"], expected)


@pytest.mark.parametrize("op", ["SUM", "ASUM", "SUMSQ", "MEAN"])
@pytest.mark.parametrize("axis", [0, 1, -1])
def test_reduction(op, axis):
    x = rng.normal(size=(2, 3, 4)).astype(np.float32)
    _, out = run_layer(f'name: "r" type: "Reduction" bottom: "b0" top: "y" '
                       f'reduction_param {{ operation: {op} axis: {axis} coeff: -1.5 }}', x)
    a = axis % 3
    expected = np.zeros(x.shape[:a])
    for idx in np.ndindex(*x.shape[:a]):
        values = x[idx].astype(np.float64).ravel()
        total = {"SUM": sum(values), "ASUM": sum(abs(values)), "SUMSQ": sum(values ** 2),
                 "MEAN": sum(values) / len(values)}[op]
        expected[idx] = -1.5 * total
    assert out["y"].shape == expected.shape
    np.testing.assert_allclose(out["y"], expected, rtol=1e-5)


def naive_argmax(values, k):
    """Caffe's partial_sort of (value, index) pairs with std::greater: ties put the larger index first."""
    pairs = sorted(((v, i) for i, v in enumerate(values)), reverse=True)[:k]
    return [i for _, i in pairs], [v for v, _ in pairs]


def test_argmax_without_axis():
    x = rng.integers(0, 4, size=(3, 2, 3, 1)).astype(np.float32)  # many ties
    _, out = run_layer('name: "a" type: "ArgMax" bottom: "b0" top: "y" argmax_param { top_k: 3 out_max_val: true }', x)
    assert out["y"].shape == (3, 2, 3, 1)
    for n in range(3):
        idx, val = naive_argmax(x[n].ravel().tolist(), 3)
        np.testing.assert_array_equal(out["y"][n, 0, :, 0], idx)
        np.testing.assert_array_equal(out["y"][n, 1, :, 0], val)
    _, out = run_layer('name: "a" type: "ArgMax" bottom: "b0" top: "y"', x.reshape(3, 6))
    assert out["y"].shape == (3, 1, 1)
    np.testing.assert_array_equal(out["y"][:, 0, 0], [naive_argmax(r.tolist(), 1)[0][0] for r in x.reshape(3, 6)])


def test_argmax_with_axis():
    x = rng.integers(0, 3, size=(2, 5, 3)).astype(np.float32)
    for out_max_val in (False, True):
        _, out = run_layer(f'name: "a" type: "ArgMax" bottom: "b0" top: "y" argmax_param {{ axis: 1 top_k: 2 '
                           f'out_max_val: {str(out_max_val).lower()} }}', x)
        assert out["y"].shape == (2, 2, 3)
        for n in range(2):
            for w in range(3):
                idx, val = naive_argmax(x[n, :, w].tolist(), 2)
                np.testing.assert_array_equal(out["y"][n, :, w], val if out_max_val else idx)
