"""Inner products, softmax and the blob plumbing layers (split, concat, slice, reshape, ...)."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from convert import caffe_pb2 as pb
from convert.errors import UserError
from convert.layers.base import CaffeLayer, NetContext, Shape
from convert.registry import register


def canonical_axis(axis: int, ndim: int, layer: str) -> int:
    """Caffe's CanonicalAxisIndex: negative axes count from the end; out of range is an error."""
    if not -ndim <= axis < ndim:
        raise UserError(f"layer {layer!r}: axis {axis} is out of range for a {ndim}-D blob")
    return axis % ndim


@register("InnerProduct")
class InnerProduct(CaffeLayer):
    """y = x W^T + b over the axes from `axis` on, flattened (W is (N, K), or (K, N) with transpose)."""

    def __init__(self, param: pb.LayerParameter, bottom_shapes, ctx: NetContext):
        super().__init__(param, bottom_shapes, ctx)
        ip = param.inner_product_param
        shape = bottom_shapes[0]
        self.axis = canonical_axis(ip.axis, len(shape), param.name)
        k, n = math.prod(shape[self.axis:]), ip.num_output
        if n < 1:
            raise UserError(f"layer {param.name!r}: num_output must be at least 1, got {n}")
        self.transpose = ip.transpose
        self.add_blob("weight", (k, n) if self.transpose else (n, k), ip.weight_filler)
        if ip.bias_term:
            self.add_blob("bias", (n,), ip.bias_filler)
        self.top_shapes = [tuple(shape[:self.axis]) + (n,)]

    def forward(self, x):
        flat = x.flatten(self.axis) if x.dim() > self.axis + 1 else x
        weight = self.weight.t() if self.transpose else self.weight
        return F.linear(flat, weight, getattr(self, "bias", None))


@register("Softmax")
class Softmax(CaffeLayer):
    def __init__(self, param, bottom_shapes, ctx):
        super().__init__(param, bottom_shapes, ctx)
        self.axis = canonical_axis(param.softmax_param.axis, len(bottom_shapes[0]), param.name)
        self.top_shapes = [tuple(bottom_shapes[0])]

    def forward(self, x):
        return F.softmax(x, dim=self.axis)


@register("Split")
class Split(CaffeLayer):
    """One bottom copied to every top (Caffe inserts these itself; harmless when written out)."""

    def __init__(self, param, bottom_shapes, ctx):
        super().__init__(param, bottom_shapes, ctx)
        self.top_shapes = [tuple(bottom_shapes[0])] * len(param.top)

    def forward(self, x):
        return tuple(x for _ in self.param.top)


@register("Silence")
class Silence(CaffeLayer):
    """Consumes its bottoms, produces nothing (keeps them out of the net's outputs)."""

    def forward(self, *bottoms):
        return ()


@register("Flatten")
class Flatten(CaffeLayer):
    def __init__(self, param, bottom_shapes, ctx):
        super().__init__(param, bottom_shapes, ctx)
        shape = bottom_shapes[0]
        fp = param.flatten_param
        self.start = canonical_axis(fp.axis, len(shape), param.name)
        self.end = canonical_axis(fp.end_axis, len(shape), param.name)
        if self.end < self.start:
            raise UserError(f"layer {param.name!r}: end_axis {fp.end_axis} comes before axis {fp.axis} "
                            f"in a {len(shape)}-D blob")
        self.top_shapes = [tuple(shape[:self.start]) + (math.prod(shape[self.start:self.end + 1]),)
                           + tuple(shape[self.end + 1:])]

    def forward(self, x):
        return x.flatten(self.start, self.end)
