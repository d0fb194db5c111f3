"""Element-wise layers (Caffe's NeuronLayer family): top has the bottom's shape."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from convert import caffe_pb2 as pb
from convert.errors import UserError
from convert.layers.base import DROPOUT_PAPER, CaffeLayer, NetContext
from convert.registry import register


class Neuron(CaffeLayer):
    """Same shape in, same shape out."""

    def __init__(self, param: pb.LayerParameter, bottom_shapes, ctx: NetContext):
        super().__init__(param, bottom_shapes, ctx)
        self.top_shapes = [tuple(bottom_shapes[0])]


@register("ReLU")
class ReLU(Neuron):
    """y = max(x, 0) + negative_slope * min(x, 0)."""

    def forward(self, x):
        slope = self.param.relu_param.negative_slope
        return F.relu(x) if slope == 0 else F.leaky_relu(x, slope)


@register("PReLU")
class PReLU(Neuron):
    """ReLU with a learned slope per channel (or one shared); default initial slope 0.25."""

    def __init__(self, param, bottom_shapes, ctx):
        super().__init__(param, bottom_shapes, ctx)
        pp = param.prelu_param
        filler = pp.filler if pp.HasField("filler") else pb.FillerParameter(type="constant", value=0.25)
        if not pp.channel_shared and len(bottom_shapes[0]) < 2:
            raise UserError(f"layer {param.name!r}: PReLU needs an (N, C, ...) bottom, got {tuple(bottom_shapes[0])}")
        channels = 1 if pp.channel_shared else bottom_shapes[0][1]
        self.add_blob("slope", (channels,), filler)

    def forward(self, x):
        slope = self.slope.reshape((1, -1) + (1,) * (x.dim() - 2))
        return torch.where(x > 0, x, x * slope)


@register("ELU")
class ELU(Neuron):
    """y = x if x > 0 else alpha * (exp(x) - 1)."""

    def forward(self, x):
        return F.elu(x, self.param.elu_param.alpha)


@register("Sigmoid")
class Sigmoid(Neuron):
    def forward(self, x):
        return torch.sigmoid(x)


@register("TanH")
class TanH(Neuron):
    def forward(self, x):
        return torch.tanh(x)


@register("AbsVal")
class AbsVal(Neuron):
    def forward(self, x):
        return x.abs()


@register("BNLL")
class BNLL(Neuron):
    """y = log(1 + exp(x)), computed as Caffe does: x + log(1 + exp(-x)) for x > 0."""

    def forward(self, x):
        return torch.where(x > 0, x + torch.log1p(torch.exp(-x)), torch.log1p(torch.exp(x)))


@register("Power")
class Power(Neuron):
    """y = (shift + scale * x) ^ power."""

    def forward(self, x):
        p = self.param.power_param
        return (p.shift + p.scale * x).pow(p.power) if p.power != 1 else p.shift + p.scale * x


def _base_log(base: float) -> float:
    """ln(base), with Caffe's convention that base -1 means e."""
    if base != -1 and base <= 0:
        raise UserError(f"base must be positive (or -1 for e), got {base}")
    return 1.0 if base == -1 else math.log(base)


def _layer_base_log(layer: str, base: float) -> None:
    try:
        _base_log(base)
    except UserError as e:
        raise UserError(f"layer {layer!r}: {e}") from None


@register("Exp")
class Exp(Neuron):
    """y = base ^ (shift + scale * x), base -1 meaning e."""

    def __init__(self, param, bottom_shapes, ctx):
        super().__init__(param, bottom_shapes, ctx)
        _layer_base_log(param.name, param.exp_param.base)   # a bad base fails at construction

    def forward(self, x):
        p = self.param.exp_param
        return torch.exp(_base_log(p.base) * (p.shift + p.scale * x))


@register("Log")
class Log(Neuron):
    """y = log_base(shift + scale * x), base -1 meaning e."""

    def __init__(self, param, bottom_shapes, ctx):
        super().__init__(param, bottom_shapes, ctx)
        _layer_base_log(param.name, param.log_param.base)

    def forward(self, x):
        p = self.param.log_param
        return torch.log(p.shift + p.scale * x) / _base_log(p.base)


@register("Dropout")
class Dropout(Neuron):
    """Caffe's inverted dropout: keep with probability 1-p and scale by 1/(1-p) at TRAIN; identity at TEST.

    With the paper's convention (NetContext.dropout == "paper", footnote 2) there is no scaling at
    TRAIN and activations are multiplied by 1-p (halved for p = 0.5) at TEST. py-faster-rcnn's
    dropout_param.scale_train: false asks for that convention for this layer.
    """

    def __init__(self, param, bottom_shapes, ctx):
        super().__init__(param, bottom_shapes, ctx)
        if not 0 <= param.dropout_param.dropout_ratio < 1:
            raise UserError(f"layer {param.name!r}: dropout_ratio must be in [0, 1), got "
                            f"{param.dropout_param.dropout_ratio}")

    def forward(self, x):
        ratio = self.param.dropout_param.dropout_ratio
        paper = self.ctx.dropout == DROPOUT_PAPER or not self.param.dropout_param.scale_train
        if not self.ctx.train:
            return x * (1.0 - ratio) if paper else x
        keep = (torch.rand(x.shape, device=x.device) >= ratio).to(x.dtype)
        return x * keep if paper else x * keep / (1.0 - ratio)


@register("Threshold")
class Threshold(Neuron):
    """y = 1 if x > threshold else 0 (no gradient, as in Caffe)."""

    def forward(self, x):
        return (x.detach() > self.param.threshold_param.threshold).to(x.dtype)


@register("Clip")
class Clip(Neuron):
    """y = min(max(x, min), max); the gradient passes where min <= x <= max."""

    def forward(self, x):
        p = self.param.clip_param
        return x.clamp(p.min, p.max)


@register("Swish")
class Swish(Neuron):
    """y = x * sigmoid(beta * x)."""

    def forward(self, x):
        return x * torch.sigmoid(self.param.swish_param.beta * x)
