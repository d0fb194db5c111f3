"""Caffe's DataTransformer (data_transformer.cpp, Transform(Datum)): crop, mirror, mean, scale.

Order and indexing as Caffe: the crop offset is random at TRAIN (h_off = Rand(H - crop + 1), then
w_off likewise) and centred at TEST ((H - crop) / 2, integer division); with `mirror: true` the flip is random
(p = 1/2) in BOTH phases, as Caffe's `do_mirror = mirror() && Rand(2)` ignores the phase (which is
why Caffe's TEST data layers leave mirror off); the mean file has the uncropped size and is read at the crop's position; mean values are one
value for all channels or one per channel; the result is (x - mean) * scale in float32, mirrored
left-right when chosen. force_color / force_gray only change how encoded Datums are decoded.
The random draws come from a numpy Generator, so TRAIN crops differ from Caffe's own RNG stream.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np

from convert import caffe_pb2 as pb
from convert.errors import UserError
from convert.protoio import read_binaryproto
from lmdb_tools.datum import datum_to_array


class DataTransformer:
    """Transforms CHW images (uint8 or float) into float32 network input as Caffe's Data layer does."""

    def __init__(self, param: pb.TransformationParameter | None = None, phase: int = pb.TEST,
                 root: str | os.PathLike = ".", rng: np.random.Generator | None = None):
        param = param if param is not None else pb.TransformationParameter()
        if param.force_color and param.force_gray:
            raise UserError("transform_param: force_color and force_gray cannot both be set")
        if param.mean_file and param.mean_value:
            raise UserError("transform_param: give mean_file or mean_value, not both")
        self.param = param
        self.train = phase == pb.TRAIN
        self.crop = int(param.crop_size)
        self.scale = np.float32(param.scale)
        self.rng = rng if rng is not None else np.random.default_rng(0)
        self.mean_file: np.ndarray | None = None
        if param.mean_file:
            path = Path(root) / param.mean_file
            mean = read_binaryproto(path)
            if mean.ndim not in (3, 4) or (mean.ndim == 4 and mean.shape[0] != 1) or mean.size == 0:
                raise UserError(f"{path}: a mean file holds one (1, C, H, W) image, this one has shape {mean.shape}")
            self.mean_file = mean.reshape(mean.shape[-3:]) if mean.ndim == 4 else mean
        self.mean_values = np.asarray(param.mean_value, np.float32)
        # (h_off, w_off): one crop window for every image, no mirror, instead of Caffe's draw (measuring
        # the Crop family's off-centre windows; the mean file is read at the same window).
        self.fixed_window: tuple[int, int] | None = None

    def __getstate__(self) -> dict:
        # The generated protobuf class does not pickle by reference (spawned DataLoader workers); its bytes do.
        return {**self.__dict__, "param": self.param.SerializeToString()}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state, param=pb.TransformationParameter.FromString(state["param"]))

    def reseed(self, seed: int | Sequence[int]) -> None:
        """Restart the crop/mirror draws from seed (each DataLoader worker needs its own stream)."""
        self.rng = np.random.default_rng(seed)

    def output_shape(self, shape: tuple[int, int, int]) -> tuple[int, int, int]:
        """(C, H, W) of the transformed image for an input of the given (C, H, W)."""
        c, h, w = shape
        return (c, self.crop, self.crop) if self.crop else (c, h, w)

    def from_datum(self, datum: pb.Datum) -> np.ndarray:
        """A Datum's image as CHW (encoded Datums decoded with force_color / force_gray)."""
        return datum_to_array(datum, self.param.force_color, self.param.force_gray)

    def __call__(self, image: np.ndarray) -> np.ndarray:
        """Transform one CHW image (uint8 or float32) into float32 CHW."""
        out = np.empty((1, *self.output_shape(image.shape)), np.float32)
        return self.transform_batch([image], out)[0]

    def transform_batch(self, images: Sequence[np.ndarray], out: np.ndarray) -> np.ndarray:
        """Transform CHW images into out (N, C, h, w) float32: the values and draws of N calls, vectorised.

        Draws come from self.rng image by image in Caffe's order, so N calls of `self(image)` starting
        from the same generator state give exactly these arrays.
        """
        return self.normalise(out, self.crop_batch(images, out))

    def crop_batch(self, images: Sequence[np.ndarray], out: np.ndarray) -> np.ndarray:
        """Crop (and mirror) CHW images into out (N, C, h, w), any dtype; each image's (h_off, w_off, mirror).

        The first half of the transform: it can run on uint8 where the batch is made, and `normalise`
        (mean, scale) on float32 where it is used, giving the same values as `transform_batch`.
        """
        draws = np.empty((len(images), 3), np.int64)
        for j, image in enumerate(images):
            h_off, w_off, mirror = draws[j] = self._draw(*image.shape[1:])
            if self.mean_file is not None and self.mean_file.shape != image.shape:
                raise UserError(f"mean file {self.param.mean_file}: shape {self.mean_file.shape} (C, H, W) "
                                f"does not match the data's {image.shape}")
            if self.output_shape(image.shape) != out.shape[1:]:
                raise UserError(f"image {j} of the batch is {image.shape} (C, H, W), but the batch holds "
                                f"{out.shape[1:]} after the transform")
            crop = image[:, h_off:h_off + out.shape[2], w_off:w_off + out.shape[3]]
            # Mirroring before the mean is exact: every later step is elementwise and the mean window
            # is mirrored with the image.
            out[j] = crop[:, :, ::-1] if mirror else crop
        return draws

    def normalise(self, out: np.ndarray, draws: np.ndarray) -> np.ndarray:
        """(out - mean) * scale in place on cropped float32 out (N, C, h, w), given crop_batch's draws."""
        _, c, h, w = out.shape
        if self.mean_file is not None:
            def window(h_off: int, w_off: int, mirror: int) -> np.ndarray:
                mean = self.mean_file[:, h_off:h_off + h, w_off:w_off + w]
                return mean[:, :, ::-1] if mirror else mean
            if len(draws) and (draws == draws[0]).all():   # e.g. TEST: one window for the whole batch
                out -= window(*draws[0])
            else:
                for j, draw in enumerate(draws):
                    out[j] -= window(*draw)
        elif self.mean_values.size:
            if self.mean_values.size not in (1, c):
                raise UserError(f"transform_param: {self.mean_values.size} mean_values for {c} channels; "
                                "give one value or one per channel")
            out -= self.mean_values.reshape(-1, 1, 1)
        if self.scale != 1:
            out *= self.scale
        return out

    def _draw(self, h: int, w: int) -> tuple[int, int, bool]:
        """Crop offsets and mirror flag, drawn in Caffe's order (mirror, h_off, w_off)."""
        if self.fixed_window is not None:
            return (*self.fixed_window, False)
        mirror = bool(self.param.mirror and self.rng.integers(2))
        if not self.crop:
            return 0, 0, mirror
        if h < self.crop or w < self.crop:
            raise UserError(f"transform_param: crop_size {self.crop} is larger than the image ({h}x{w})")
        if self.train:
            return int(self.rng.integers(h - self.crop + 1)), int(self.rng.integers(w - self.crop + 1)), mirror
        return (h - self.crop) // 2, (w - self.crop) // 2, mirror
