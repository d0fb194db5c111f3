"""Convolution, Deconvolution, Pooling and LRN with Caffe's geometry and arithmetic."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from convert import caffe_pb2 as pb
from convert.errors import UserError
from convert.layers.base import POOLING_DARKNET, CaffeLayer, NetContext, Shape
from convert.registry import register


FLT_MAX = float(torch.finfo(torch.float32).max)


def _pair(repeated, single_h: int | None, single_w: int | None, default: int, what: str, layer: str) -> tuple[int, int]:
    """Caffe's 2-D size rule: explicit *_h/*_w, else one value for both, else one per axis, else default."""
    if single_h is not None or single_w is not None:
        if repeated:
            raise UserError(f"layer {layer!r}: give either {what} or {what}_h/{what}_w, not both")
        return int(single_h), int(single_w)
    values = list(repeated)
    if not values:
        return default, default
    if len(values) == 1:
        return int(values[0]), int(values[0])
    if len(values) == 2:
        return int(values[0]), int(values[1])
    raise UserError(f"layer {layer!r}: {what} has {len(values)} values; only 2-D spatial layers are supported")


def _opt(msg, field: str) -> int | None:
    return getattr(msg, field) if msg.HasField(field) else None


def conv_geometry(lp: pb.LayerParameter) -> dict[str, tuple[int, int]]:
    """kernel, stride, pad and dilation of a Convolution/Deconvolution layer by Caffe's 2-D rules."""
    cp, name = lp.convolution_param, lp.name
    if cp.axis != 1:
        raise UserError(f"layer {name!r}: convolution axis {cp.axis} is not supported (only 1)")
    return dict(kernel=_pair(cp.kernel_size, _opt(cp, "kernel_h"), _opt(cp, "kernel_w"), 0, "kernel_size", name),
                stride=_pair(cp.stride, _opt(cp, "stride_h"), _opt(cp, "stride_w"), 1, "stride", name),
                pad=_pair(cp.pad, _opt(cp, "pad_h"), _opt(cp, "pad_w"), 0, "pad", name),
                dilation=_pair(cp.dilation, None, None, 1, "dilation", name))


def _need_4d(layer: CaffeLayer, shape: Shape) -> None:
    if len(shape) != 4:
        raise UserError(f"layer {layer.param.name!r}: needs a 4-D (N,C,H,W) bottom, got shape {shape}")


class _ConvBase(CaffeLayer):
    """Shared geometry of Convolution and Deconvolution (ConvolutionParameter)."""

    transposed = False

    def __init__(self, param: pb.LayerParameter, bottom_shapes, ctx: NetContext):
        super().__init__(param, bottom_shapes, ctx)
        cp, name = param.convolution_param, param.name
        geometry = conv_geometry(param)
        _need_4d(self, bottom_shapes[0])
        n, c, h, w = bottom_shapes[0]
        self.kernel, self.stride = geometry["kernel"], geometry["stride"]
        self.pad, self.dilation = geometry["pad"], geometry["dilation"]
        if min(self.kernel) <= 0 or min(self.stride) <= 0 or min(self.dilation) <= 0:
            raise UserError(f"layer {name!r}: kernel {self.kernel}, stride {self.stride} and dilation "
                            f"{self.dilation} must be positive")
        self.group, num_output = cp.group, cp.num_output
        if self.group < 1 or num_output < 1:
            raise UserError(f"layer {name!r}: num_output {num_output} and group {self.group} must be at least 1")
        out = tuple(self.output_size(s, i) for i, s in enumerate((h, w)))
        if min(out) < 1:
            raise UserError(f"layer {name!r}: output would be {out[0]}x{out[1]} for a {h}x{w} input with kernel "
                            f"{self.kernel}, stride {self.stride}, pad {self.pad}, dilation {self.dilation}")
        if c % self.group or num_output % self.group:
            raise UserError(f"layer {name!r}: channels {c} and num_output {num_output} must divide by group {self.group}")
        if self.transposed:  # Caffe stores the deconvolution weight as (C_in, num_output/group, kh, kw)
            weight_shape = (c, num_output // self.group) + self.kernel
        else:
            weight_shape = (num_output, c // self.group) + self.kernel
        self.add_blob("weight", weight_shape, cp.weight_filler)
        if cp.bias_term:
            self.add_blob("bias", (num_output,), cp.bias_filler)
        self.top_shapes = [(n, num_output) + tuple(self.output_size(s, i) for i, s in enumerate((h, w)))]

    def output_size(self, size: int, axis: int) -> int:
        extent = self.dilation[axis] * (self.kernel[axis] - 1) + 1
        if self.transposed:
            return self.stride[axis] * (size - 1) + extent - 2 * self.pad[axis]
        return (size + 2 * self.pad[axis] - extent) // self.stride[axis] + 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bias = getattr(self, "bias", None)
        op = F.conv_transpose2d if self.transposed else F.conv2d
        return op(x, self.weight, bias, stride=self.stride, padding=self.pad, groups=self.group,
                  dilation=self.dilation)


@register("Convolution")
class Convolution(_ConvBase):
    """y = W * x + b, grouped and dilated; output floor((H + 2p - (d(k-1)+1)) / s) + 1."""


@register("Deconvolution")
class Deconvolution(_ConvBase):
    """The transpose of Convolution; output s(H-1) + d(k-1) + 1 - 2p."""
    transposed = True


@register("Pooling")
class Pooling(CaffeLayer):
    """MAX / AVE pooling with Caffe's ceil rounding, last-window clip and AVE divisor.

    Output size: ceil((H + 2p - k) / s) + 1 (floor with round_mode FLOOR), minus one when padding
    would make the last window start at or beyond H + p. MAX ignores padding. AVE divides by the
    window's extent clipped to [-p, H + p): padding counts, the ceil overhang beyond it does not.
    A second top of MAX pooling is Caffe's mask: the winner's index h * W + w in its plane (the first
    maximum in scan order), as floats. The forks' bool ceil_mode is read as round_mode (protoio).
    With the net's darknet pooling rule (NetContext.pooling), Darknet2Caffe's fork adds one window on
    both axes when kernel_h - stride_h is odd (its condition looks at the h axis only); the extra window
    is clipped at the image edge like any ceil overhang.
    """

    def __init__(self, param: pb.LayerParameter, bottom_shapes, ctx: NetContext):
        super().__init__(param, bottom_shapes, ctx)
        pp, name = param.pooling_param, param.name
        _need_4d(self, bottom_shapes[0])
        n, c, h, w = bottom_shapes[0]
        if pp.pool not in (pb.PoolingParameter.MAX, pb.PoolingParameter.AVE):
            raise UserError(f"layer {name!r}: STOCHASTIC pooling is not supported (MAX and AVE are)")
        self.method = pp.pool
        self.global_pooling = pp.global_pooling
        if self.global_pooling:
            if pp.HasField("kernel_size") or pp.HasField("kernel_h"):
                raise UserError(f"layer {name!r}: global_pooling takes no kernel size")
            self.kernel, self.pad, self.stride = (h, w), (0, 0), (1, 1)
        else:
            self.kernel = _pair([pp.kernel_size] if pp.HasField("kernel_size") else [],
                                _opt(pp, "kernel_h"), _opt(pp, "kernel_w"), 0, "kernel_size", name)
            self.pad = (pp.pad_h, pp.pad_w) if (pp.HasField("pad_h") or pp.HasField("pad_w")) else (pp.pad, pp.pad)
            self.stride = ((pp.stride_h, pp.stride_w) if (pp.HasField("stride_h") or pp.HasField("stride_w"))
                           else (pp.stride, pp.stride))
            if min(self.kernel) <= 0:
                raise UserError(f"layer {name!r}: pooling needs kernel_size (or kernel_h and kernel_w)")
            if min(self.stride) <= 0:
                raise UserError(f"layer {name!r}: pooling stride {self.stride} must be positive")
            if self.pad[0] >= self.kernel[0] or self.pad[1] >= self.kernel[1]:
                raise UserError(f"layer {name!r}: pad must be smaller than the kernel")
        self.ceil = pp.round_mode == pb.PoolingParameter.CEIL
        self.darknet_window = ctx.pooling == POOLING_DARKNET and self.darknet_rule_adds_window()
        self.top_shapes = [(n, c, self.output_size(h, 0), self.output_size(w, 1))]
        if min(self.top_shapes[0][2:]) < 1:
            raise UserError(f"layer {name!r}: output would be {self.top_shapes[0][2]}x{self.top_shapes[0][3]} for a "
                            f"{h}x{w} input with kernel {self.kernel}, stride {self.stride}, pad {self.pad}")
        self.with_mask = len(param.top) == 2 and self.method == pb.PoolingParameter.MAX
        if self.with_mask:
            if self.darknet_window:
                raise UserError(f"layer {name!r}: a mask top is not supported with the darknet pooling rule")
            if 2 * self.pad[0] > self.kernel[0] or 2 * self.pad[1] > self.kernel[1] or self._empty_last_window(h, w):
                raise UserError(f"layer {name!r}: a mask top needs pad <= kernel / 2 and no empty last window")
            self.top_shapes.append(self.top_shapes[0])

    def darknet_rule_adds_window(self) -> bool:
        """Whether the darknet rule changes this layer: kernel_h - stride_h odd and positive (the fork's C++ %)."""
        k, s = self.kernel[0], self.stride[0]
        return not self.global_pooling and k > s and (k - s) % 2 == 1

    def output_size(self, size: int, axis: int) -> int:
        if self.global_pooling:
            return 1
        k, p, s = self.kernel[axis], self.pad[axis], self.stride[axis]
        rounding = math.ceil if self.ceil else math.floor
        out = int(rounding((size + 2 * p - k) / s)) + 1 + self.darknet_window
        if p > 0 and (out - 1) * s >= size + p:  # the last window must start inside the image or its left pad
            out -= 1
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        kernel = (h, w) if self.global_pooling else self.kernel  # global: the bottom's current size
        if (2 * self.pad[0] <= kernel[0] and 2 * self.pad[1] <= kernel[1] and not self._empty_last_window(h, w)
                and not self.darknet_window):
            # PyTorch's pooling has Caffe's geometry (ceil, last-window rule, AVE divisor counting the
            # padding up to H + p) but accepts pad only up to k/2; this is the fast path.
            if self.with_mask:  # PyTorch's indices are Caffe's mask: h * W + w of the first maximum
                out, index = F.max_pool2d(x, kernel, self.stride, self.pad, ceil_mode=self.ceil, return_indices=True)
                return out, index.to(x.dtype)
            if self.method == pb.PoolingParameter.MAX:
                return F.max_pool2d(x, kernel, self.stride, self.pad, ceil_mode=self.ceil)
            return F.avg_pool2d(x, kernel, self.stride, self.pad, ceil_mode=self.ceil, count_include_pad=True)
        return self._padded_forward(x, kernel)

    def _empty_last_window(self, h: int, w: int) -> bool:
        """Ceil rounding without padding can add a window starting past the image: Caffe keeps it (MAX gives
        -FLT_MAX there, AVE 0/0), PyTorch drops it, so such a geometry takes the explicit path."""
        return self.ceil and not self.global_pooling and any(
            self.pad[i] == 0 and (self.output_size(n, i) - 1) * self.stride[i] >= n for i, n in enumerate((h, w)))

    def _padded_forward(self, x: torch.Tensor, kernel: tuple[int, int]) -> torch.Tensor:
        """Any pad < k: pad explicitly so every window lies inside, then pool without padding."""
        h, w = x.shape[-2:]
        out_h, out_w = self.output_size(h, 0), self.output_size(w, 1)
        extra_h = (out_h - 1) * self.stride[0] + kernel[0] - h - self.pad[0]
        extra_w = (out_w - 1) * self.stride[1] + kernel[1] - w - self.pad[1]
        pads = (self.pad[1], max(extra_w, 0), self.pad[0], max(extra_h, 0))
        if self.method == pb.PoolingParameter.MAX:
            # Caffe starts every max at -FLT_MAX: a window of padding alone gives that, not -inf.
            out = F.max_pool2d(F.pad(x, pads, value=-FLT_MAX), kernel, self.stride)
        else:
            total = F.avg_pool2d(F.pad(x, pads, value=0.0), kernel, self.stride, divisor_override=1)
            out = total / self._ave_divisor(h, w, kernel, out_h, out_w).to(x)
        return out[..., :out_h, :out_w]

    def _ave_divisor(self, h: int, w: int, kernel, out_h: int, out_w: int) -> torch.Tensor:
        """Window cells inside [-p, H + p) x [-p, W + p): the image plus its padding."""
        def extent(size: int, axis: int, n: int) -> torch.Tensor:
            starts = torch.arange(n) * self.stride[axis] - self.pad[axis]
            return (torch.clamp(starts + kernel[axis], max=size + self.pad[axis]) - starts).double()
        return extent(h, 0, out_h)[:, None] * extent(w, 1, out_w)[None, :]


@register("LRN")
class LRN(CaffeLayer):
    """Local response normalisation, Caffe's formula.

    ACROSS_CHANNELS: y = x / (k + alpha/n * sum_{n channels around c} x^2) ^ beta.
    WITHIN_CHANNEL: y = x / (1 + alpha * mean_{n x n window, zero-padded} x^2) ^ beta (Caffe builds it
    from AVE pooling with pad (n-1)/2, whose divisor is always n*n; k is not used).
    """

    def __init__(self, param: pb.LayerParameter, bottom_shapes, ctx: NetContext):
        super().__init__(param, bottom_shapes, ctx)
        lp = param.lrn_param
        _need_4d(self, bottom_shapes[0])
        if lp.local_size % 2 == 0:
            raise UserError(f"layer {param.name!r}: LRN local_size must be odd, got {lp.local_size}")
        self.size, self.alpha, self.beta, self.k = lp.local_size, lp.alpha, lp.beta, lp.k
        self.across = lp.norm_region == pb.LRNParameter.ACROSS_CHANNELS
        self.top_shapes = [tuple(bottom_shapes[0])]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        half = (self.size - 1) // 2
        sq = x * x
        if self.across:
            # The channel window as a sum of shifted slices of the zero-padded squares: 2-3x faster than a
            # 3-D pooling over a channel axis, and it keeps a channels_last input channels_last.
            padded = F.pad(sq, (0, 0, 0, 0, half, half))   # pad the channel axis
            channels = x.shape[1]
            window = padded[:, :channels]
            for offset in range(1, self.size):
                window = window + padded[:, offset:offset + channels]
            scale = self.k + (self.alpha / self.size) * window
        else:
            mean = F.avg_pool2d(sq, self.size, stride=1, padding=half, count_include_pad=True)
            scale = 1.0 + self.alpha * mean
        return x * scale.pow(-self.beta)
