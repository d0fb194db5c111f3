"""Caffe's Datum record: image array <-> Datum, parsing with errors that name the record."""
from __future__ import annotations

import cv2
import numpy as np
from google.protobuf.message import DecodeError

from convert import caffe_pb2 as pb
from convert.errors import UserError


def image_to_datum(image: np.ndarray, label: int) -> pb.Datum:
    """An OpenCV image (HxW or HxWxC, uint8, BGR) as a raw Datum: CHW bytes, as Caffe's CVMatToDatum."""
    if image.ndim == 2:
        image = image[:, :, None]
    height, width, channels = image.shape
    data = np.ascontiguousarray(image.transpose(2, 0, 1)).tobytes()
    # Caffe sets `encoded: false` explicitly, so it is on the wire; byte-identical records need it too.
    return pb.Datum(channels=channels, height=height, width=width, data=data, label=label, encoded=False)


def encoded_datum(payload: bytes, image: np.ndarray, label: int) -> pb.Datum:
    """An encoded Datum (file or imencode bytes) carrying the decoded image's dimensions."""
    channels = 1 if image.ndim == 2 else image.shape[2]
    return pb.Datum(channels=channels, height=image.shape[0], width=image.shape[1], data=payload,
                    label=label, encoded=True)


def parse_datum(value: bytes, key: bytes | str, source: str = "") -> pb.Datum:
    """Parse one LMDB value as a Datum; UserError naming the key if it is not one."""
    datum = pb.Datum()
    where = f"{source}: record {_key_text(key)}"
    try:
        datum.ParseFromString(bytes(value))
    except DecodeError as e:
        raise UserError(f"{where}: not a Caffe Datum ({e})") from None
    if datum.encoded:
        return datum
    n = datum.channels * datum.height * datum.width
    have = len(datum.data) or len(datum.float_data)
    if n == 0 or have != n:
        raise UserError(f"{where}: not a Caffe Datum (channels*height*width = {n}, "
                        f"but it holds {have} values)")
    return datum


def decode(datum: pb.Datum, force_color: bool = False, force_gray: bool = False) -> np.ndarray:
    """An encoded Datum's image as CHW uint8 (native channels, or forced as Caffe's DataTransformer does)."""
    flag = cv2.IMREAD_COLOR if force_color else cv2.IMREAD_GRAYSCALE if force_gray else cv2.IMREAD_UNCHANGED
    image = cv2.imdecode(np.frombuffer(datum.data, np.uint8), flag)
    if image is None:
        raise UserError("encoded Datum: the image bytes cannot be decoded")
    if image.ndim == 2:
        return image[None]
    return image.transpose(2, 0, 1)


def datum_to_array(datum: pb.Datum, force_color: bool = False, force_gray: bool = False) -> np.ndarray:
    """A Datum's values as CHW: uint8 for raw or encoded data, float32 for float_data."""
    if datum.encoded:
        return decode(datum, force_color, force_gray)
    shape = (datum.channels, datum.height, datum.width)
    if datum.data:
        return np.frombuffer(datum.data, np.uint8).reshape(shape)
    return np.asarray(datum.float_data, np.float32).reshape(shape)


def _key_text(key: bytes | str) -> str:
    return key.decode("utf-8", errors="replace") if isinstance(key, (bytes, bytearray)) else str(key)
