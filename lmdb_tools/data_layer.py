"""The net's `Data` layer: batches from a Caffe LMDB through the DataTransformer, as Caffe's DataLayer.

Records are read sequentially in key order and wrap around at the end; every Data layer has its own
cursor starting at record 0 (a TEST net and a TRAIN net on the same DB both start there). The tops are
data (batch, C, H, W) float32 and, with a second top, label (batch,) float32. `data_param.source` and
`transform_param.mean_file` resolve against ctx.root, as Caffe resolves them against its working
directory. `rand_skip` skips Uniform[0, rand_skip) records at set-up (drawn from our generator).
Crop/mirror draws come from a numpy Generator seeded from ctx.seed, not Caffe's RNG stream.
Caffe does not save the cursor in its .solverstate; `seek(index)` / `cursor` let a solver do it.
`augment`, when set, transforms each stored image (uint8, HxW grey or HxWxC BGR) before the
DataTransformer: the hook the paper's training augmentation uses (the authors ran their transforms
inside their Caffe fork's transformer, before crop, mean and scale).
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch

from convert import caffe_pb2 as pb
from convert.errors import UserError, about
from convert.layers.base import CaffeLayer, NetContext, Shape
from convert.registry import register
from lmdb_tools.reader import LMDBDataset
from lmdb_tools.transformer import DataTransformer


@register("Data")
class DataLayer(CaffeLayer):
    """Caffe's Data layer over an LMDB source."""

    def __init__(self, param: pb.LayerParameter, bottom_shapes: Sequence[Shape], ctx: NetContext):
        super().__init__(param, bottom_shapes, ctx)
        data_param = param.data_param
        if not data_param.source:
            raise UserError(f"layer {param.name!r}: data_param.source is missing (the LMDB to read)")
        if data_param.backend != pb.DataParameter.LMDB and data_param.HasField("backend"):
            raise UserError(f"layer {param.name!r}: backend LEVELDB is not supported; use an LMDB")
        if data_param.batch_size < 1:
            raise UserError(f"layer {param.name!r}: data_param.batch_size must be at least 1")
        if len(param.top) not in (1, 2):
            raise UserError(f"layer {param.name!r}: a Data layer has 1 or 2 tops (data, label), "
                            f"got {len(param.top)}")
        self.batch_size = int(data_param.batch_size)
        self.dataset = LMDBDataset(ctx.root / data_param.source)   # opened first, as Caffe does
        rng = np.random.default_rng([ctx.seed, ctx.phase])
        self.transformer = DataTransformer(param.transform_param, ctx.phase, ctx.root, rng)
        self.dataset.transformer = self.transformer
        if len(self.dataset) == 0:
            raise UserError(f"layer {param.name!r}: {self.dataset.path} holds no records")
        self.cursor = int(rng.integers(data_param.rand_skip)) if data_param.rand_skip else 0
        self.augment: Callable[[np.ndarray], np.ndarray] | None = None
        with about(self.dataset.where(0)):
            first = self.transformer.from_datum(self.dataset.datum(0))
            sample = self.transformer.output_shape(first.shape)
        self.top_shapes = [(self.batch_size, *sample), (self.batch_size,)][:len(param.top)]
        # Moves with net.to(device), so batches are produced where the net lives.
        self.register_buffer("_device_anchor", torch.zeros(0), persistent=False)

    def seek(self, index: int) -> None:
        """Set the next record to read (e.g. restoring a solver's position on resume)."""
        self.cursor = index % len(self.dataset)

    def reset(self) -> None:
        """Start again at record 0."""
        self.seek(0)

    def next_batch(self) -> tuple[np.ndarray, np.ndarray]:
        """The next batch_size transformed images and labels, wrapping at the end of the DB."""
        data = np.empty(self.top_shapes[0], np.float32)
        labels = np.empty(self.batch_size, np.float32)
        for i in range(self.batch_size):
            datum = self.dataset.datum(self.cursor)
            with about(self.dataset.where(self.cursor)):
                image = self.transformer(self._augmented(self.transformer.from_datum(datum)))
            if image.shape != data.shape[1:]:
                raise UserError(f"{self.dataset.path}: record {self.dataset.keys[self.cursor]!r} gives "
                                f"{image.shape} after transform, the first record gave {data.shape[1:]}")
            data[i], labels[i] = image, datum.label
            self.cursor = (self.cursor + 1) % len(self.dataset)
        return data, labels

    def _augmented(self, chw: np.ndarray) -> np.ndarray:
        """The stored CHW image through `augment` (which works on OpenCV's HxW / HxWxC layout)."""
        if self.augment is None:
            return chw
        hwc = chw[0] if chw.shape[0] == 1 else chw.transpose(1, 2, 0)
        out = self.augment(np.ascontiguousarray(hwc))
        return out[None] if out.ndim == 2 else out.transpose(2, 0, 1)

    def forward(self) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        data, labels = self.next_batch()
        device = self._device_anchor.device
        tops = (_to(torch.from_numpy(data), device), _to(torch.from_numpy(labels), device))
        return tops if len(self.param.top) == 2 else tops[0]


def _to(batch: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A CPU batch on the net's device: to a GPU through pinned memory, copied without blocking the host."""
    if device.type != "cuda":
        return batch
    return batch.pin_memory().to(device, non_blocking=True)
