"""Layers that bring data into the net without bottoms: Input (fed by the caller) and DummyData."""
from __future__ import annotations

import torch

from convert import caffe_pb2 as pb
from convert.errors import UserError
from convert.layers.base import CaffeLayer, NetContext
from convert.layers.fillers import fill
from convert.registry import register


@register("Input")
class Input(CaffeLayer):
    """Declares input blobs and their shapes; the caller passes the tensors to Net.forward."""

    is_input = True

    def __init__(self, param: pb.LayerParameter, bottom_shapes, ctx: NetContext):
        super().__init__(param, bottom_shapes, ctx)
        shapes = [tuple(int(d) for d in s.dim) for s in param.input_param.shape]
        if len(shapes) not in (1, len(param.top)):
            raise UserError(f"layer {param.name!r}: input_param needs 1 shape or one per top "
                            f"({len(param.top)}), got {len(shapes)}")
        self.top_shapes = shapes * len(param.top) if len(shapes) == 1 else shapes


@register("DummyData")
class DummyData(CaffeLayer):
    """Blobs filled by fillers (constant 0 by default) on every forward pass."""

    def __init__(self, param, bottom_shapes, ctx):
        super().__init__(param, bottom_shapes, ctx)
        dp, tops = param.dummy_data_param, len(param.top)
        if dp.shape:
            shapes = [tuple(int(d) for d in s.dim) for s in dp.shape]
        else:
            shapes = [tuple(int(v[i if len(v) > 1 else 0]) for v in (dp.num, dp.channels, dp.height, dp.width))
                      for i in range(tops)]
        fillers = list(dp.data_filler) or [pb.FillerParameter()]
        if len(shapes) not in (1, tops) or len(fillers) not in (1, tops):
            raise UserError(f"layer {param.name!r}: dummy_data_param needs 1 or {tops} shapes and fillers")
        self.top_shapes = shapes * tops if len(shapes) == 1 else shapes
        self.fillers = fillers * tops if len(fillers) == 1 else fillers
        self.register_buffer("_device_anchor", torch.zeros(0), persistent=False)

    def forward(self):
        # Filled by the net's CPU generator (the same numbers on every device), then moved to the net's device.
        device = self._device_anchor.device
        return tuple(fill(f, s, self.ctx.generator).to(device) for f, s in zip(self.fillers, self.top_shapes))
