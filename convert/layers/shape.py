"""Blob plumbing and combining layers: Eltwise, Concat, Slice, Reshape, Crop, Tile, Reduction, ArgMax."""
from __future__ import annotations

import math

import torch

from convert import caffe_pb2 as pb
from convert.errors import UserError
from convert.layers.base import CaffeLayer, NetContext, Shape
from convert.layers.common import canonical_axis
from convert.registry import register


@register("Eltwise")
class Eltwise(CaffeLayer):
    """SUM (with coeff), PROD or MAX of same-shaped bottoms.

    MAX follows Caffe's scan: bottom 1 wins ties with bottom 0 (a > b picks a), later bottoms win
    only when strictly greater, and the gradient goes to the winner only.
    """

    def __init__(self, param: pb.LayerParameter, bottom_shapes, ctx: NetContext):
        super().__init__(param, bottom_shapes, ctx)
        ep, name = param.eltwise_param, param.name
        if len(bottom_shapes) < 2:
            raise UserError(f"layer {name!r}: Eltwise needs at least 2 bottoms")
        if any(tuple(s) != tuple(bottom_shapes[0]) for s in bottom_shapes):
            raise UserError(f"layer {name!r}: Eltwise bottoms differ in shape: {[tuple(s) for s in bottom_shapes]}")
        if ep.coeff and ep.operation != pb.EltwiseParameter.SUM:
            raise UserError(f"layer {name!r}: Eltwise coeff is only for SUM")
        if ep.coeff and len(ep.coeff) != len(bottom_shapes):
            raise UserError(f"layer {name!r}: Eltwise has {len(bottom_shapes)} bottoms but {len(ep.coeff)} coeffs")
        self.operation = ep.operation
        self.coeff = list(ep.coeff) or [1.0] * len(bottom_shapes)
        self.top_shapes = [tuple(bottom_shapes[0])]

    def forward(self, *xs):
        if self.operation == pb.EltwiseParameter.SUM:
            out = xs[0] * self.coeff[0] if self.coeff[0] != 1 else xs[0]
            for c, x in zip(self.coeff[1:], xs[1:]):
                out = out + (x * c if c != 1 else x)
            return out
        if self.operation == pb.EltwiseParameter.PROD:
            out = xs[0]
            for x in xs[1:]:
                out = out * x
            return out
        out = torch.where(xs[0] > xs[1], xs[0], xs[1])
        for x in xs[2:]:
            out = torch.where(x > out, x, out)
        return out


def _legacy_axis(msg, legacy_field: str, axis: int, ndim: int, layer: str) -> int:
    """Concat's concat_dim / Slice's slice_dim, when given, override axis (and must be non-negative)."""
    if msg.HasField(legacy_field):
        value = getattr(msg, legacy_field)
        if value >= ndim:
            raise UserError(f"layer {layer!r}: {legacy_field} {value} is out of range for a {ndim}-D blob")
        return value
    return canonical_axis(axis, ndim, layer)


@register("Concat")
class Concat(CaffeLayer):
    """Bottoms joined along axis (legacy concat_dim); all other dimensions must agree."""

    min_bottoms = 1

    def __init__(self, param: pb.LayerParameter, bottom_shapes, ctx: NetContext):
        super().__init__(param, bottom_shapes, ctx)
        shape, name = tuple(bottom_shapes[0]), param.name
        self.axis = _legacy_axis(param.concat_param, "concat_dim", param.concat_param.axis, len(shape), name)
        for s in bottom_shapes[1:]:
            s = tuple(s)
            if len(s) != len(shape) or s[:self.axis] + s[self.axis + 1:] != shape[:self.axis] + shape[self.axis + 1:]:
                raise UserError(f"layer {name!r}: cannot concatenate {shape} and {s} along axis {self.axis}")
        total = sum(s[self.axis] for s in bottom_shapes)
        self.top_shapes = [shape[:self.axis] + (total,) + shape[self.axis + 1:]]

    def forward(self, *xs):
        return xs[0] if len(xs) == 1 else torch.cat(xs, dim=self.axis)


@register("Slice")
class Slice(CaffeLayer):
    """The bottom cut along axis (legacy slice_dim) at slice_point, or into equal parts per top."""

    def __init__(self, param: pb.LayerParameter, bottom_shapes, ctx: NetContext):
        super().__init__(param, bottom_shapes, ctx)
        sp, shape, name, tops = param.slice_param, tuple(bottom_shapes[0]), param.name, len(param.top)
        self.axis = _legacy_axis(sp, "slice_dim", sp.axis, len(shape), name)
        dim = shape[self.axis]
        if tops < 1:
            raise UserError(f"layer {name!r}: a Slice needs at least one top")
        if sp.slice_point:
            points = [0] + list(sp.slice_point) + [dim]
            if len(sp.slice_point) != tops - 1 or any(b <= a for a, b in zip(points, points[1:])):
                raise UserError(f"layer {name!r}: slice_point {list(sp.slice_point)} must be {tops - 1} increasing "
                                f"points inside (0, {dim})")
            self.sizes = [b - a for a, b in zip(points, points[1:])]
        else:
            if dim % tops:
                raise UserError(f"layer {name!r}: axis {self.axis} of size {dim} does not split into {tops} equal parts")
            self.sizes = [dim // tops] * tops
        self.top_shapes = [shape[:self.axis] + (n,) + shape[self.axis + 1:] for n in self.sizes]

    def forward(self, x):
        return tuple(torch.split(x, self.sizes, dim=self.axis))


@register("Reshape")
class Reshape(CaffeLayer):
    """Replace bottom axes [axis, axis + num_axes) by `shape`: 0 copies the bottom's dimension there,
    -1 is inferred from the count. A negative axis counts from the end, with -1 meaning after the last."""

    def __init__(self, param: pb.LayerParameter, bottom_shapes, ctx: NetContext):
        super().__init__(param, bottom_shapes, ctx)
        self.top_shapes = [self.reshaped(tuple(bottom_shapes[0]))]

    def reshaped(self, shape: Shape) -> Shape:
        """The top shape for a bottom shape (Caffe's ReshapeLayer::Reshape)."""
        rp, name = self.param.reshape_param, self.param.name
        start = rp.axis if rp.axis >= 0 else len(shape) + rp.axis + 1
        end = len(shape) if rp.num_axes == -1 else start + rp.num_axes
        if not 0 <= start <= len(shape) or not start <= end <= len(shape):
            raise UserError(f"layer {name!r}: axis {rp.axis} / num_axes {rp.num_axes} out of range for {shape}")
        dims = [int(d) for d in rp.shape.dim]
        if dims.count(-1) > 1:
            raise UserError(f"layer {name!r}: at most one reshape dimension may be -1")
        new = []
        for i, d in enumerate(dims):
            if d == 0:
                if start + i >= len(shape):
                    raise UserError(f"layer {name!r}: dim {i} is 0 but the bottom has no axis {start + i}")
                d = shape[start + i]
            new.append(d)
        if -1 in new:
            known = math.prod(d for d in new if d != -1)
            middle = math.prod(shape[start:end])
            if known == 0 or middle % known:
                raise UserError(f"layer {name!r}: cannot infer -1 in {dims} for bottom shape {shape}")
            new[new.index(-1)] = middle // known
        top = tuple(shape[:start]) + tuple(new) + tuple(shape[end:])
        if math.prod(top) != math.prod(shape):
            raise UserError(f"layer {name!r}: reshape {shape} -> {top} changes the count")
        return top

    def forward(self, x):
        return x.reshape(self.reshaped(tuple(x.shape)))


@register("Crop")
class Crop(CaffeLayer):
    """Bottom 0 cropped to bottom 1's shape on axes >= axis, starting at offset (one for all, or one per axis)."""

    def __init__(self, param: pb.LayerParameter, bottom_shapes, ctx: NetContext):
        super().__init__(param, bottom_shapes, ctx)
        cp, name = param.crop_param, param.name
        big, ref = tuple(bottom_shapes[0]), tuple(bottom_shapes[1])
        if len(big) != len(ref):
            raise UserError(f"layer {name!r}: Crop bottoms {big} and {ref} differ in number of axes")
        self.start = start = canonical_axis(cp.axis, len(big), name)
        cropped = len(big) - start
        if len(cp.offset) not in (0, 1, cropped):
            raise UserError(f"layer {name!r}: give 0, 1 or {cropped} offsets, got {len(cp.offset)}")
        self.offsets = [0] * len(big)
        top = list(big)
        for i in range(start, len(big)):
            self.offsets[i] = cp.offset[0] if len(cp.offset) == 1 else (cp.offset[i - start] if cp.offset else 0)
            if big[i] < ref[i] + self.offsets[i]:
                raise UserError(f"layer {name!r}: cannot crop axis {i} of size {big[i]} to {ref[i]} at offset "
                                f"{self.offsets[i]}")
            top[i] = ref[i]
        self.top_shapes = [tuple(top)]

    def forward(self, x, reference):
        return x[tuple(slice(o, o + n) if i >= self.start else slice(None)
                       for i, (o, n) in enumerate(zip(self.offsets, reference.shape)))]


@register("Tile")
class Tile(CaffeLayer):
    """The bottom repeated `tiles` times along axis (whole blocks, as Caffe's tile copies them)."""

    def __init__(self, param: pb.LayerParameter, bottom_shapes, ctx: NetContext):
        super().__init__(param, bottom_shapes, ctx)
        tp, shape = param.tile_param, tuple(bottom_shapes[0])
        self.axis = canonical_axis(tp.axis, len(shape), param.name)
        if tp.tiles < 1:
            raise UserError(f"layer {param.name!r}: tiles must be positive, got {tp.tiles}")
        self.repeats = [1] * len(shape)
        self.repeats[self.axis] = tp.tiles
        self.top_shapes = [tuple(d * r for d, r in zip(shape, self.repeats))]

    def forward(self, x):
        return x.repeat(*self.repeats)


@register("Reduction")
class Reduction(CaffeLayer):
    """coeff * SUM / ASUM / SUMSQ / MEAN over every axis from `axis` on; top shape is bottom[:axis]."""

    def __init__(self, param: pb.LayerParameter, bottom_shapes, ctx: NetContext):
        super().__init__(param, bottom_shapes, ctx)
        shape = tuple(bottom_shapes[0])
        self.axis = canonical_axis(param.reduction_param.axis, len(shape), param.name)
        self.top_shapes = [shape[:self.axis]]

    def forward(self, x):
        rp = self.param.reduction_param
        flat = x.reshape(x.shape[:self.axis] + (-1,))
        op = rp.operation
        if op == pb.ReductionParameter.ASUM:
            out = flat.abs().sum(-1)
        elif op == pb.ReductionParameter.SUMSQ:
            out = (flat * flat).sum(-1)
        elif op == pb.ReductionParameter.MEAN:
            out = flat.sum(-1) / flat.shape[-1]
        else:
            out = flat.sum(-1)
        return out * rp.coeff if rp.coeff != 1 else out


@register("ArgMax")
class ArgMax(CaffeLayer):
    """Indices (or values) of the top_k largest entries, Caffe's layout and tie order (larger index first).

    With axis: along that axis, top = indices, or values if out_max_val. Without: over each item's
    flattened entries, top (N, 1, top_k, ...) indices, or (N, 2, top_k, ...) indices then values.
    Not differentiable (Caffe has no backward for it).
    """

    def __init__(self, param: pb.LayerParameter, bottom_shapes, ctx: NetContext):
        super().__init__(param, bottom_shapes, ctx)
        ap, shape, name = param.argmax_param, tuple(bottom_shapes[0]), param.name
        self.has_axis = ap.HasField("axis")
        if self.has_axis:
            self.axis = canonical_axis(ap.axis, len(shape), name)
            extent = shape[self.axis]
            top = list(shape)
            top[self.axis] = ap.top_k
        else:
            extent = math.prod(shape[1:])
            top = [1] * max(len(shape), 3)
            top[0], top[2] = shape[0], ap.top_k
            top[1] = 2 if ap.out_max_val else 1
        if not 1 <= ap.top_k <= extent:
            raise UserError(f"layer {name!r}: top_k {ap.top_k} must be in [1, {extent}]")
        self.top_k, self.out_max_val = ap.top_k, ap.out_max_val
        self.top_shapes = [tuple(top)]

    def forward(self, x):
        x = x.detach()
        data = x.movedim(self.axis, -1) if self.has_axis else x.reshape(x.shape[0], -1)
        # Caffe sorts (value, index) pairs descending: among equal values the larger index comes first.
        flipped = data.flip(-1)
        values, order = torch.sort(flipped, dim=-1, descending=True, stable=True)
        values, indices = values[..., :self.top_k], (data.shape[-1] - 1 - order[..., :self.top_k]).to(x.dtype)
        if self.has_axis:
            out = values if self.out_max_val else indices
            return out.movedim(-1, self.axis).contiguous()
        parts = [indices, values] if self.out_max_val else [indices]
        return torch.stack(parts, dim=1).reshape(self.top_shapes[0])
