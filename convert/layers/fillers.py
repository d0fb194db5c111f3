"""Caffe's weight fillers (filler.hpp). Same distributions and fan computations; our own RNG stream.

fan_in = count / shape[0] and fan_out = count / shape[1], as Caffe computes them (for a convolution
weight (out, in/group, kh, kw), fan_in = in/group * kh * kw).
"""
from __future__ import annotations

import math
from typing import Sequence

import torch

from convert import caffe_pb2 as pb
from convert.errors import UserError


def _fan(filler: pb.FillerParameter, shape: Sequence[int]) -> float:
    count = math.prod(shape)
    fan_in = count / shape[0] if shape and shape[0] else count
    fan_out = count / shape[1] if len(shape) > 1 and shape[1] else count
    norm = filler.variance_norm
    if norm == pb.FillerParameter.AVERAGE:
        return (fan_in + fan_out) / 2.0
    return fan_out if norm == pb.FillerParameter.FAN_OUT else fan_in


def fill(filler: pb.FillerParameter, shape: Sequence[int], generator: torch.Generator | None = None) -> torch.Tensor:
    """A new float32 tensor of `shape` drawn as Caffe's filler of the given type would draw it."""
    shape = tuple(int(d) for d in shape)
    out = torch.empty(shape, dtype=torch.float32)
    kind = filler.type
    if kind == "constant":
        return out.fill_(filler.value)
    if kind == "uniform":
        if not -math.inf < filler.min <= filler.max < math.inf:
            raise UserError(f"uniform filler needs finite min <= max, got min {filler.min} max {filler.max}")
        return out.uniform_(filler.min, filler.max, generator=generator)
    if kind == "gaussian":
        if not (filler.std >= 0 and math.isfinite(filler.std) and math.isfinite(filler.mean)):
            raise UserError(f"gaussian filler needs a finite mean and std >= 0, got mean {filler.mean} std {filler.std}")
        out.normal_(filler.mean, filler.std, generator=generator)
        if filler.sparse >= 0:  # keep each weight with probability sparse / shape[0], as Caffe does
            keep = torch.rand(shape, generator=generator) < filler.sparse / shape[0]
            out *= keep
        return out
    if kind == "xavier":
        bound = math.sqrt(3.0 / _fan(filler, shape))
        return out.uniform_(-bound, bound, generator=generator)
    if kind == "msra":
        return out.normal_(0.0, math.sqrt(2.0 / _fan(filler, shape)), generator=generator)
    if kind == "positive_unitball":  # uniform [0,1), each row (per shape[0]) normalised to sum 1
        out.uniform_(0.0, 1.0, generator=generator)
        return out / out.reshape(shape[0], -1).sum(1).reshape((-1,) + (1,) * (len(shape) - 1))
    if kind == "bilinear":  # upsampling kernel for Deconvolution, identical for every (out, in) pair
        if len(shape) != 4 or shape[2] != shape[3]:
            raise UserError(f"bilinear filler needs a 4-D blob with a square kernel, got {shape}")
        k = shape[3]
        f = math.ceil(k / 2.0)
        c = (2 * f - 1 - f % 2) / (2.0 * f)
        ramp = torch.tensor([1 - abs(i / f - c) for i in range(k)], dtype=torch.float32)
        return out.copy_((ramp[:, None] * ramp[None, :]).expand(shape))
    raise UserError(f"unknown filler type {kind!r}; supported: constant, uniform, gaussian, xavier, msra, "
                    "positive_unitball, bilinear")
