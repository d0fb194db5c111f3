"""The contract every layer module follows (Caffe's Layer: SetUp with bottom shapes, Forward)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import nn

from convert import caffe_pb2 as pb
from convert.errors import UserError
from convert.memory import Budget

Shape = tuple[int, ...]

# Test-time dropout conventions (see docs/design.md): Caffe's inverted dropout is the identity at TEST;
# the paper's footnote 2 halves activations at TEST (i.e. multiplies by 1 - ratio, no scaling at TRAIN).
DROPOUT_CAFFE = "caffe"
DROPOUT_PAPER = "paper"

# Pooling output-size rules. caffe: BVLC's ceil((H + 2p - k) / s) + 1. darknet: the Darknet2Caffe fork's
# (ChenYingpeng/caffe-yolov3, caffe_layers/pooling_layer/pooling_layer.cpp) one extra window on both axes
# when kernel_h - stride_h is odd and positive, which keeps YOLOv3-tiny's 2x2 stride-1 max pooling at its
# input size as Darknet does; no field of the model's files says which rule its Caffe used.
POOLING_CAFFE = "caffe"
POOLING_DARKNET = "darknet"
POOLING_RULES = (POOLING_CAFFE, POOLING_DARKNET)


@dataclass
class NetContext:
    """What layers may need to know about the net they are built in."""
    phase: int = pb.TEST                 # pb.TRAIN or pb.TEST
    root: Path = field(default_factory=Path.cwd)   # relative paths in the prototxt resolve here, as in Caffe
    seed: int = 0                        # seeds fillers and data-layer randomness (crop, mirror)
    dropout: str = DROPOUT_CAFFE         # test-time dropout convention
    pooling: str = POOLING_CAFFE         # pooling output-size rule (POOLING_RULES)
    generator: torch.Generator | None = None  # filler RNG, created by the net from seed
    budget: Budget = field(default_factory=Budget)  # the net's blob memory, charged before allocating

    @property
    def train(self) -> bool:
        return self.phase == pb.TRAIN


class CaffeLayer(nn.Module):
    """A Caffe layer: built from its LayerParameter and bottom shapes; sets `top_shapes`.

    Caffe's blobs are attributes named in `blob_names`, in Caffe's blob order: nn.Parameters for
    learned ones, buffers for state that Caffe stores as blobs too (BatchNorm statistics). Naming them
    lets the net share a blob between layers (ParamSpec.name) by pointing two attributes at one tensor.
    forward(*bottoms) returns one tensor or a tuple, one per top.
    """

    default_loss_weight = 0.0  # loss layers set 1.0: Caffe's loss weight of top 0 when none is given

    def __init__(self, param: pb.LayerParameter, bottom_shapes: Sequence[Shape], ctx: NetContext):
        super().__init__()
        self.param = param
        self.ctx = ctx
        self.top_shapes: list[Shape] = []
        self.blob_names: list[str] = []

    @property
    def caffe_blobs(self) -> list[torch.Tensor]:
        """The layer's blobs in Caffe's order."""
        return [getattr(self, n) for n in self.blob_names]

    def add_blob(self, name: str, shape: Shape, filler: pb.FillerParameter | None, learnable: bool = True) -> None:
        """Create a Caffe blob as a Parameter (or buffer) filled by a Caffe filler."""
        from convert.layers.fillers import fill
        shape = tuple(int(d) for d in shape)
        if any(d < 1 for d in shape):
            raise UserError(f"layer {self.param.name!r}: its {name} blob would have shape {shape}; every dimension "
                            "must be at least 1")
        self.ctx.budget.charge(self.param.name, f"the {name} blob", shape)
        try:
            tensor = fill(filler if filler is not None else pb.FillerParameter(), shape, self.ctx.generator)
        except UserError as e:
            raise UserError(f"layer {self.param.name!r}: {name} filler: {e}") from None
        if learnable:
            self.register_parameter(name, nn.Parameter(tensor))
        else:
            self.register_buffer(name, tensor)
        self.blob_names.append(name)

    # ------------------------------------------------------------ weights
    def load_blobs(self, arrays: Sequence[np.ndarray]) -> None:
        """Copy Caffe blobs into this layer; a count or shape mismatch names layer, index and shapes."""
        name = self.param.name
        if len(arrays) != len(self.caffe_blobs):
            raise UserError(f"layer {name!r}: weights have {len(arrays)} blobs, the prototxt needs "
                            f"{len(self.caffe_blobs)}")
        for i, (arr, blob) in enumerate(zip(arrays, self.caffe_blobs)):
            arr = np.asarray(arr, dtype=np.float32)
            if tuple(arr.shape) != tuple(blob.shape):
                if arr.size == blob.numel() and legacy_equivalent(arr.shape, tuple(blob.shape)):
                    arr = arr.reshape(tuple(blob.shape))
                else:
                    raise UserError(f"layer {name!r}: blob {i} has shape {tuple(arr.shape)} in the weights, "
                                    f"the prototxt needs {tuple(blob.shape)}")
            with torch.no_grad():
                blob.copy_(torch.from_numpy(arr))

    def blob_arrays(self) -> list[np.ndarray]:
        """This layer's blobs as numpy arrays, in Caffe's order."""
        return [b.detach().cpu().numpy().copy() for b in self.caffe_blobs]

    def param_specs(self) -> list[pb.ParamSpec]:
        """lr_mult / decay_mult per learnable blob (Caffe's defaults 1/1 where not given)."""
        specs = list(self.param.param)
        return [specs[i] if i < len(specs) else pb.ParamSpec() for i in range(len(self.caffe_blobs))]


def legacy_equivalent(stored: Shape, wanted: Shape) -> bool:
    """Caffe accepts a legacy 4-D blob (1,1,N,K) for a 2-D (N,K) one: same dims once leading 1s are dropped."""
    strip = lambda s: tuple(d for i, d in enumerate(s) if not (d == 1 and all(x == 1 for x in s[:i + 1])))
    return strip(stored) == strip(wanted)
