"""Validation before allocation: bad layer parameters and over-budget nets fail at construction, by name.

Explicit cases for each check, then property tests (Hypothesis) of the prototxt-to-shape path: any
Convolution / Pooling geometry either builds with Caffe's output size or is a UserError, and a
random stack of layers either is a UserError or runs with exactly the shapes it announced.
"""
import math

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from convert import caffe_pb2 as pb
from convert import memory
from convert.errors import UserError
from convert.net import Net
from convert.protoio import parse_text_proto
from layer_helpers import one_layer_net

PROPERTY = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.mark.parametrize("layer, shapes, message", [
    ('type: "Convolution" convolution_param { num_output: 4 kernel_size: 3 group: 0 }', [(1, 4, 8, 8)], "group 0"),
    ('type: "Convolution" convolution_param { num_output: 0 kernel_size: 3 }', [(1, 4, 8, 8)], "num_output 0"),
    ('type: "Convolution" convolution_param { num_output: 4 kernel_size: 3 dilation: 0 }', [(1, 4, 8, 8)],
     "dilation"),
    ('type: "Convolution" convolution_param { num_output: 4 kernel_size: 9 }', [(1, 4, 8, 8)], "output would be"),
    ('type: "Convolution" convolution_param { num_output: 4 kernel_size: 3 group: 3 }', [(1, 4, 8, 8)],
     "divide by group"),
    ('type: "Pooling" pooling_param { kernel_size: 3 stride: 0 }', [(1, 4, 8, 8)], "stride"),
    ('type: "Pooling" pooling_param { kernel_size: 12 }', [(1, 4, 8, 8)], "output would be"),
    ('type: "InnerProduct" inner_product_param { num_output: 0 }', [(2, 5)], "num_output"),
    ('type: "InnerProduct" inner_product_param { num_output: 3 axis: 4 }', [(2, 5)], "axis 4"),
    ('type: "Slice" slice_param { axis: 1 }', [(2, 6)], "at least one top"),
    ('type: "Flatten" flatten_param { axis: 2 end_axis: 1 }', [(2, 3, 4)], "comes before"),
    ('type: "Dropout" dropout_param { dropout_ratio: 1 }', [(2, 3)], "dropout_ratio"),
    ('type: "Exp" exp_param { base: -2 }', [(2, 3)], "base"),
    ('type: "SoftmaxWithLoss"', [(4, 3), (5,)], "labels"),
    ('type: "Accuracy"', [(4, 3), (3,)], "labels"),
    ('type: "EuclideanLoss"', [(4, 3), (4, 2)], "count"),
    ('type: "Eltwise"', [(2, 3), (2, 4)], "differ in shape"),
    ('type: "Reshape" reshape_param { shape { dim: 5 } }', [(2, 3)], "changes the count"),
    ('type: "InnerProduct" inner_product_param { num_output: 3 weight_filler { type: "gaussian" std: -1 } }',
     [(2, 5)], "std"),
    ('type: "InnerProduct" inner_product_param { num_output: 3 weight_filler { type: "uniform" min: 1 max: 0 } }',
     [(2, 5)], "min <= max"),
])
def test_bad_parameters_name_the_layer_and_the_values(layer, shapes, message):
    bottoms = " ".join(f'bottom: "b{i}"' for i in range(len(shapes)))
    tops = 'top: "t"' if "Slice" not in layer else ""
    with pytest.raises(UserError, match=message) as e:
        one_layer_net(f'name: "bad" {bottoms} {tops} {layer}', *shapes)
    assert "'bad'" in str(e.value)


@pytest.mark.parametrize("bottoms, layer", [(0, "Convolution"), (0, "Concat"), (1, "SoftmaxWithLoss"),
                                            (3, "Crop"), (2, "ReLU")])
def test_bottom_counts_are_checked_before_the_layer_reads_them(bottoms, layer):
    names = " ".join(f'bottom: "b{i}"' for i in range(bottoms))
    with pytest.raises(UserError, match=f"has {bottoms} bottoms"):
        one_layer_net(f'name: "x" type: "{layer}" {names} top: "t"', *[(1, 2, 4, 4)] * max(bottoms, 1))


def test_input_dimensions_must_be_positive():
    with pytest.raises(UserError, match="every dimension must be at least 1"):
        one_layer_net('name: "r" type: "ReLU" bottom: "b0" top: "t"', (2, 0, 3))


def test_a_net_over_the_memory_limit_stops_with_the_estimate_before_allocating(monkeypatch):
    monkeypatch.setenv(memory.ENV, "1G")
    # 100000 x 100000 floats of weights: 37 GiB, refused before the filler runs.
    with pytest.raises(UserError, match=r"weight blob of shape \(100000, 100000\).*over the limit of 1 GiB"):
        one_layer_net('name: "fc" type: "InnerProduct" bottom: "b0" top: "t" inner_product_param { num_output: 100000 }',
                      (1, 100000))
    with pytest.raises(UserError, match="top 'b0'.*over the limit"):
        one_layer_net('name: "r" type: "ReLU" bottom: "b0" top: "t"', (100000, 100000, 100))
    monkeypatch.setenv(memory.ENV, "1T")
    one_layer_net('name: "r" type: "ReLU" bottom: "b0" top: "t"', (1000, 1000))


@pytest.mark.parametrize("text, size", [("512M", 512 * 2**20), ("8G", 8 * 2**30), ("1.5GiB", int(1.5 * 2**30)),
                                        ("123", 123)])
def test_sizes_parse(text, size):
    assert memory.parse_size(text) == size


def test_default_limit_is_a_fraction_of_the_machine(monkeypatch):
    monkeypatch.delenv(memory.ENV, raising=False)
    assert memory.limit() == int(memory.DEFAULT_FRACTION * memory.machine_memory())
    with pytest.raises(UserError, match="--max-memory"):
        memory.parse_size("lots")


# ------------------------------------------------------------------ properties ---

def caffe_conv_out(size, k, s, p, d):
    return (size + 2 * p - (d * (k - 1) + 1)) // s + 1


def caffe_pool_out(size, k, s, p):
    out = math.ceil((size + 2 * p - k) / s) + 1
    return out - 1 if p > 0 and (out - 1) * s >= size + p else out


@PROPERTY
@given(c=st.integers(1, 6), h=st.integers(1, 12), w=st.integers(1, 12), k=st.integers(0, 14),
       s=st.integers(0, 4), p=st.integers(0, 4), d=st.integers(0, 3), g=st.integers(0, 3), n=st.integers(0, 6))
def test_convolution_builds_with_caffe_geometry_or_says_why(c, h, w, k, s, p, d, g, n):
    text = (f'name: "conv" type: "Convolution" bottom: "b0" top: "t" convolution_param {{ num_output: {n} '
            f'kernel_size: {k} stride: {s} pad: {p} dilation: {d} group: {g} }}')
    try:
        net = one_layer_net(text, (2, c, h, w))
    except UserError as e:
        assert "'conv'" in str(e)
        valid = (min(k, s, d, g, n) > 0 and c % g == 0 and n % g == 0
                 and min(caffe_conv_out(h, k, s, p, d), caffe_conv_out(w, k, s, p, d)) >= 1)
        assert not valid, f"a valid convolution was refused: {e}"
        return
    top = (2, n, caffe_conv_out(h, k, s, p, d), caffe_conv_out(w, k, s, p, d))
    assert net.blob_shapes["t"] == top
    with torch.no_grad():
        assert tuple(net({"b0": torch.zeros(2, c, h, w)})["t"].shape) == top


@PROPERTY
@given(h=st.integers(1, 12), w=st.integers(1, 12), k=st.integers(0, 14), s=st.integers(0, 4), p=st.integers(0, 4),
       pool=st.sampled_from(["MAX", "AVE"]))
def test_pooling_builds_with_caffe_geometry_or_says_why(h, w, k, s, p, pool):
    text = (f'name: "pool" type: "Pooling" bottom: "b0" top: "t" pooling_param {{ pool: {pool} kernel_size: {k} '
            f'stride: {s} pad: {p} }}')
    try:
        net = one_layer_net(text, (1, 2, h, w))
    except UserError as e:
        assert "'pool'" in str(e)
        valid = k > 0 and s > 0 and p < k and min(caffe_pool_out(h, k, s, p), caffe_pool_out(w, k, s, p)) >= 1
        assert not valid, f"a valid pooling was refused: {e}"
        return
    top = (1, 2, caffe_pool_out(h, k, s, p), caffe_pool_out(w, k, s, p))
    assert net.blob_shapes["t"] == top
    with torch.no_grad():
        assert tuple(net({"b0": torch.zeros(1, 2, h, w)})["t"].shape) == top


LAYER = st.one_of(
    st.builds(lambda n, k, s, p, g: f'type: "Convolution" convolution_param {{ num_output: {n} kernel_size: {k} '
                                    f'stride: {s} pad: {p} group: {g} }}',
              st.integers(0, 8), st.integers(0, 6), st.integers(0, 3), st.integers(0, 3), st.integers(0, 2)),
    st.builds(lambda k, s, p: f'type: "Pooling" pooling_param {{ pool: MAX kernel_size: {k} stride: {s} pad: {p} }}',
              st.integers(0, 6), st.integers(0, 3), st.integers(0, 3)),
    st.builds(lambda n, a: f'type: "InnerProduct" inner_product_param {{ num_output: {n} axis: {a} }}',
              st.integers(0, 8), st.integers(-3, 3)),
    st.builds(lambda a, e: f'type: "Flatten" flatten_param {{ axis: {a} end_axis: {e} }}',
              st.integers(-4, 4), st.integers(-4, 4)),
    st.builds(lambda dims: 'type: "Reshape" reshape_param { shape { ' + " ".join(f"dim: {d}" for d in dims) + " } }",
              st.lists(st.integers(-2, 6), min_size=1, max_size=4)),
    st.builds(lambda n: f'type: "LRN" lrn_param {{ local_size: {n} }}', st.integers(0, 6)),
    st.builds(lambda a: f'type: "Softmax" softmax_param {{ axis: {a} }}', st.integers(-5, 5)),
    st.just('type: "ReLU"'), st.just('type: "Dropout"'),
)


@PROPERTY
@given(shape=st.lists(st.integers(-1, 9), min_size=1, max_size=4), layers=st.lists(LAYER, min_size=1, max_size=5))
def test_a_random_net_is_refused_by_name_or_runs_with_the_shapes_it_announced(shape, layers):
    text = f'name: "random" layer {{ name: "in" type: "Input" top: "x0" input_param {{ shape {{ ' + \
        " ".join(f"dim: {d}" for d in shape) + " } } }\n"
    for i, layer in enumerate(layers):
        text += f'layer {{ name: "l{i}" bottom: "x{i}" top: "x{i + 1}" {layer} }}\n'
    param = parse_text_proto(text, pb.NetParameter)
    try:
        net = Net(param, pb.TEST)
    except UserError as e:
        assert "layer '" in str(e)
        return
    assert all(d >= 1 for s in net.blob_shapes.values() for d in s)
    with torch.no_grad():
        blobs = net({"x0": torch.from_numpy(np.zeros(net.blob_shapes["x0"], np.float32))}, outputs="all")
    assert {k: tuple(v.shape) for k, v in blobs.items()} == net.blob_shapes
