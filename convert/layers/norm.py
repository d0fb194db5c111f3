"""Normalisation and affine layers: BatchNorm, Scale, Bias, MVN (Caffe's batch_norm/scale/bias/mvn)."""
from __future__ import annotations

import math

import torch

from convert import caffe_pb2 as pb
from convert.errors import UserError
from convert.layers.base import CaffeLayer, NetContext, Shape
from convert.layers.common import canonical_axis
from convert.registry import register


def _channel_view(t: torch.Tensor, ndim: int) -> torch.Tensor:
    """A per-channel vector shaped to broadcast over (N, C, ...)."""
    return t.reshape((1, -1) + (1,) * (ndim - 2))


@register("BatchNorm")
class BatchNorm(CaffeLayer):
    """Caffe's BatchNorm: y = (x - mean) / sqrt(var + eps) per channel (axis 1), no affine part.

    Blobs: 0 mean sum, 1 variance sum, 2 scale factor (1 element). With global stats (default at
    TEST) mean = blob0 / blob2 and var = blob1 / blob2, where a factor of 0 gives 0 (Caffe's guard).
    Otherwise the batch statistics over (N, spatial) are used (variance biased), and every forward
    pass updates the blobs as Caffe does: blob2 = maf*blob2 + 1, blob0 = maf*blob0 + mean,
    blob1 = maf*blob1 + m/(m-1)*var, m = N * spatial. The blobs are never learned: Caffe forces
    lr_mult 0 on them and rejects any other value.
    """

    def __init__(self, param: pb.LayerParameter, bottom_shapes, ctx: NetContext):
        super().__init__(param, bottom_shapes, ctx)
        bp, shape = param.batch_norm_param, tuple(bottom_shapes[0])
        if not shape:
            raise UserError(f"layer {param.name!r}: BatchNorm needs a bottom with at least one axis")
        self.use_global_stats = bp.use_global_stats if bp.HasField("use_global_stats") else not ctx.train
        self.moving_average_fraction, self.eps = bp.moving_average_fraction, bp.eps
        channels = shape[1] if len(shape) > 1 else 1
        for i, spec in enumerate(param.param):
            if spec.lr_mult != 0:
                raise UserError(f"layer {param.name!r}: param {i} has lr_mult {spec.lr_mult}; BatchNorm "
                                "statistics cannot be learned (Caffe requires lr_mult 0)")
        for name, size in (("mean", channels), ("variance", channels), ("factor", 1)):
            self.add_blob(name, (size,), None, learnable=False)
        self.top_shapes = [shape]

    def param_specs(self) -> list[pb.ParamSpec]:
        """Caffe appends lr_mult 0 specs for the statistics (decay_mult keeps its value, default 1)."""
        return [pb.ParamSpec(lr_mult=0.0, decay_mult=s.decay_mult) for s in super().param_specs()]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 1:  # a 1-D bottom is one channel
            return self.forward(x.reshape(-1, 1)).reshape(x.shape)
        reduce_dims = [0] + list(range(2, x.dim()))
        if self.use_global_stats:
            factor = float(self.factor[0])
            scale = 0.0 if factor == 0 else 1.0 / factor
            mean, var = self.mean * scale, self.variance * scale
        else:
            mean = x.mean(reduce_dims)
            var = ((x - _channel_view(mean, x.dim())) ** 2).mean(reduce_dims)
            self._update_statistics(mean.detach(), var.detach(), x.numel() // x.shape[1])
        centred = x - _channel_view(mean, x.dim())
        return centred / torch.sqrt(_channel_view(var, x.dim()) + self.eps)

    @torch.no_grad()
    def _update_statistics(self, mean: torch.Tensor, var: torch.Tensor, m: int) -> None:
        maf = self.moving_average_fraction
        correction = m / (m - 1) if m > 1 else 1.0
        self.factor.mul_(maf).add_(1.0)
        self.mean.mul_(maf).add_(mean.to(self.mean.dtype))
        self.variance.mul_(maf).add_(correction * var.to(self.variance.dtype))


class _Affine(CaffeLayer):
    """Shared geometry of Scale and Bias: an operand broadcast over bottom axes [axis, axis + its ndim).

    The operand is bottom 1 when given, else a blob of shape bottom[axis : axis + num_axes]
    (num_axes -1: to the end). A 0-D operand multiplies / adds everywhere (axis is then 0).
    """

    def _setup_operand(self, axis: int, num_axes: int, filler: pb.FillerParameter, bottom_shapes) -> None:
        shape, name = tuple(bottom_shapes[0]), self.param.name
        if len(bottom_shapes) > 1:
            operand_shape = tuple(bottom_shapes[1])
        else:
            if num_axes < -1:
                raise UserError(f"layer {name!r}: num_axes must be -1 or non-negative, got {num_axes}")
            start = canonical_axis(axis, len(shape), name) if shape else 0
            end = len(shape) if num_axes == -1 else start + num_axes
            if end > len(shape):
                raise UserError(f"layer {name!r}: axis {axis} + num_axes {num_axes} exceed the bottom's "
                                f"{len(shape)} axes")
            operand_shape = shape[start:end]
            self.add_blob("operand", operand_shape, filler)
        self.axis = 0 if not operand_shape else canonical_axis(axis, len(shape), name)
        if shape[self.axis:self.axis + len(operand_shape)] != operand_shape:
            raise UserError(f"layer {name!r}: operand of shape {operand_shape} does not match bottom shape "
                            f"{shape} at axis {self.axis}")
        self.top_shapes = [shape]

    def _broadcast(self, operand: torch.Tensor, ndim: int) -> torch.Tensor:
        return operand.reshape((1,) * self.axis + tuple(operand.shape)
                               + (1,) * (ndim - self.axis - operand.dim()))


@register("Bias")
class Bias(_Affine):
    """y = x + b, b a blob (filler default constant 0) or bottom 1."""

    def __init__(self, param: pb.LayerParameter, bottom_shapes, ctx: NetContext):
        super().__init__(param, bottom_shapes, ctx)
        bp = param.bias_param
        self._setup_operand(bp.axis, bp.num_axes, bp.filler, bottom_shapes)

    def forward(self, x, *operand):
        b = operand[0] if operand else self.operand
        return x + self._broadcast(b, x.dim())


@register("Scale")
class Scale(_Affine):
    """y = x * s (+ b with bias_term); s a blob (filler default constant 1) or bottom 1.

    Blobs in Caffe's order: [scale, bias] with one bottom, [bias] with two.
    """

    def __init__(self, param: pb.LayerParameter, bottom_shapes, ctx: NetContext):
        super().__init__(param, bottom_shapes, ctx)
        sp = param.scale_param
        filler = sp.filler if sp.HasField("filler") else pb.FillerParameter(type="constant", value=1.0)
        self._setup_operand(sp.axis, sp.num_axes, filler, bottom_shapes)
        self.bias_term = sp.bias_term
        if self.bias_term:
            operand_shape = tuple(bottom_shapes[1]) if len(bottom_shapes) > 1 else tuple(self.operand.shape)
            self.add_blob("bias", operand_shape, sp.bias_filler)

    def forward(self, x, *operand):
        s = operand[0] if operand else self.operand
        y = x * self._broadcast(s, x.dim())
        if self.bias_term:
            y = y + self._broadcast(self.bias, x.dim())
        return y


@register("MVN")
class MVN(CaffeLayer):
    """Mean(-variance) normalisation per (n, c), or per n with across_channels: (x - mean) / (std + eps)."""

    def __init__(self, param: pb.LayerParameter, bottom_shapes, ctx: NetContext):
        super().__init__(param, bottom_shapes, ctx)
        if len(bottom_shapes[0]) < 2:
            raise UserError(f"layer {param.name!r}: MVN needs an (N, C, ...) bottom, got {tuple(bottom_shapes[0])}")
        self.top_shapes = [tuple(bottom_shapes[0])]

    def forward(self, x):
        mp = self.param.mvn_param
        groups = x.shape[0] if mp.across_channels else x.shape[0] * x.shape[1]
        flat = x.reshape(groups, -1)
        centred = flat - flat.mean(1, keepdim=True)
        if mp.normalize_variance:
            std = (centred ** 2).mean(1, keepdim=True).sqrt()
            centred = centred / (std + mp.eps)
        return centred.reshape(x.shape)
