"""Caffe's Datum record: image array <-> Datum, parsing with errors that name the record."""
from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from typing import Iterator

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
    if value is None:   # a key the cursor listed that the tree cannot find again
        raise UserError(f"{where}: cannot be read back (the LMDB's index is damaged)")
    try:
        datum.ParseFromString(bytes(value))
    except DecodeError as e:
        raise UserError(f"{where}: not a Caffe Datum ({e})") from None
    if datum.encoded:
        return datum
    n = datum.channels * datum.height * datum.width
    have = len(datum.data) or len(datum.float_data)
    if min(datum.channels, datum.height, datum.width) < 1 or have != n:
        raise UserError(f"{where}: not a Caffe Datum (channels*height*width = {n}, "
                        f"but it holds {have} values)")
    return datum


def decode(datum: pb.Datum, force_color: bool = False, force_gray: bool = False) -> np.ndarray:
    """An encoded Datum's image as CHW uint8 (native channels, or forced as Caffe's DataTransformer does)."""
    flag = cv2.IMREAD_COLOR if force_color else cv2.IMREAD_GRAYSCALE if force_gray else cv2.IMREAD_UNCHANGED
    with _c_stderr() as said:
        try:
            image = cv2.imdecode(np.frombuffer(datum.data, np.uint8), flag)
        except cv2.error as e:   # e.g. no bytes at all
            image = None
            said.append(str(e).strip().splitlines()[-1])
    if image is None:
        why = "; ".join(line.strip() for line in said if line.strip())
        raise UserError(f"encoded Datum: its {len(datum.data)} image bytes cannot be decoded" + (f" ({why})" if why else ""))
    if said:   # a decoder's warnings on a good image go where they always went
        os.write(2, "".join(said).encode())
    if image.ndim == 2:
        return image[None]
    return image.transpose(2, 0, 1)


@contextmanager
def _c_stderr() -> Iterator[list[str]]:
    """Collect what C code (libpng, libjpeg) prints to fd 2 meanwhile, so a failed decode can say it in its error.

    fd 2 is the process's: output of other threads in the window lands here too (and is passed on).
    """
    said: list[str] = []
    read, write = os.pipe()
    os.set_blocking(write, False)   # a chatty decoder loses text instead of blocking on a full pipe
    saved = os.dup(2)
    try:
        sys.stderr.flush()
        os.dup2(write, 2)
        yield said
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(write)
        os.set_blocking(read, False)
        try:
            said.append(os.read(read, 1 << 16).decode(errors="replace"))
        except BlockingIOError:
            pass
        os.close(read)
        said[:] = [text for text in said if text]


def datum_to_array(datum: pb.Datum, force_color: bool = False, force_gray: bool = False) -> np.ndarray:
    """A Datum's values as CHW: uint8 for raw or encoded data, float32 for float_data."""
    if datum.encoded:
        return decode(datum, force_color, force_gray)
    shape = (datum.channels, datum.height, datum.width)
    if datum.data:
        return np.frombuffer(datum.data, np.uint8).reshape(shape)
    return np.asarray(datum.float_data, np.float32).reshape(shape)


def key_text(key: bytes | memoryview | str) -> str:
    """An LMDB key as text for messages (keys read with buffers=True are memoryviews)."""
    if isinstance(key, (bytes, bytearray, memoryview)):
        return bytes(key).decode("utf-8", errors="replace")
    return str(key)


_key_text = key_text
