"""The image operations of Appendix A with the authors' parameterisations, literal pixel units.

Every function takes a uint8 image (HxW grey or HxWxC, BGR as OpenCV/Caffe store it) and returns
a new uint8 image of the same shape (crop: crop x crop). Pixels that come from outside the image
are `fill` (rotation, shear, perspective; default 0, black: what the authors' measurement code warps
raw images with; their training warps ran after mean subtraction, i.e. filled with the mean, see
training.py); values shifted out of [0, 255] are clipped. Parameters are taken literally at the image's
own size: families.py maps the paper's 227-px units to other sizes.
"""
from __future__ import annotations

import functools
import math
from typing import Sequence

import cv2
import numpy as np

from convert.errors import UserError

FLIPS = ("none", "flip_ud", "flip_lr", "flip_both")
ORIENTATIONS = ("h", "v")
UNIT_SQUARE = np.array([[0, 0], [1, 0], [1, 1], [0, 1]], dtype=np.float64)


def check_image(image: np.ndarray) -> np.ndarray:
    """Raise UserError unless image is uint8 HxW or HxWxC."""
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim not in (2, 3):
        shape = getattr(image, "shape", None)
        dtype = getattr(image, "dtype", type(image).__name__)
        raise UserError(f"image: got {dtype} of shape {shape}, expected uint8 HxW or HxWxC")
    return image


def _same_shape(out: np.ndarray, image: np.ndarray) -> np.ndarray:
    # OpenCV drops a trailing channel axis of length 1; put it back.
    return out.reshape(image.shape)


Fill = float | Sequence[float]   # grey levels of pixels from outside the image: one for all channels, or one each


def border_value(image: np.ndarray, fill: Fill) -> tuple[float, ...]:
    """OpenCV's borderValue for `fill`: one value per channel (a bare number would fill channels 2-4 with 0)."""
    channels = 1 if image.ndim == 2 else image.shape[2]
    values = tuple(float(v) for v in np.atleast_1d(np.asarray(fill, dtype=np.float64)))
    if len(values) not in (1, channels) or channels > 4:
        expected = "1" if channels == 1 else f"1 or {channels}"
        raise UserError(f"fill: got {len(values)} value(s) for {channels} channel(s), expected {expected}")
    return values * channels if len(values) == 1 else values


def _warp_affine(image: np.ndarray, matrix: np.ndarray, fill: Fill) -> np.ndarray:
    h, w = image.shape[:2]
    out = cv2.warpAffine(image, matrix, (w, h), flags=cv2.INTER_LINEAR,
                         borderMode=cv2.BORDER_CONSTANT, borderValue=border_value(image, fill))
    return _same_shape(out, image)


def identity(image: np.ndarray) -> np.ndarray:
    """The baseline: the image unchanged (a copy)."""
    return check_image(image).copy()


def shift(image: np.ndarray, shift: int | Sequence[int]) -> np.ndarray:
    """Add an integer per channel (one int: all channels tied, i.e. brightness), clip to [0, 255]."""
    check_image(image)
    channels = 1 if image.ndim == 2 else image.shape[2]
    values = np.atleast_1d(np.asarray(shift, dtype=np.int16))
    if values.size not in (1, channels):
        raise UserError(f"shift: got {values.size} values for {channels} channel(s), expected 1 or {channels}")
    return np.clip(image.astype(np.int16) + values, 0, 255).astype(np.uint8)


def crop(image: np.ndarray, resize: int, crop: int, x: int, y: int) -> np.ndarray:
    """Resize to resize x resize (bilinear, as Caffe's resize) and take the crop x crop window at (x, y)."""
    check_image(image)
    if not 0 < crop <= resize or not (0 <= x <= resize - crop and 0 <= y <= resize - crop):
        raise UserError(f"crop: window {crop}px at x={x}, y={y} does not fit a {resize}px image")
    resized = _same_shape(cv2.resize(image, (resize, resize), interpolation=cv2.INTER_LINEAR),
                          np.empty((resize, resize) + image.shape[2:]))
    return np.ascontiguousarray(resized[y:y + crop, x:x + crop])


def crop_offsets(resize: int, crop: int, steps: int = 5) -> list[int]:
    """Evenly spaced window offsets 0 .. resize-crop, floored (the authors' make_crop_transforms)."""
    return [int(i * (resize - crop) / (steps - 1)) for i in range(steps)]


def smooth(field: np.ndarray, sigma: float) -> np.ndarray:
    """scipy.ndimage.gaussian_filter(field, sigma, truncate=2.0), computed by OpenCV's separable filter."""
    # The same kernel (radius int(2 sigma + 0.5), normalised exp(-x^2 / 2 sigma^2)) and border
    # (scipy 'reflect' is OpenCV BORDER_REFLECT); OpenCV is about 10x faster, which keeps the
    # training sampler above 500 images/s.
    radius = int(2.0 * sigma + 0.5)
    x = np.arange(-radius, radius + 1)
    kernel = np.exp(-0.5 * (x / sigma) ** 2) if sigma > 0 else np.ones(1)
    kernel /= kernel.sum()
    return cv2.sepFilter2D(field, cv2.CV_64F, kernel, kernel, borderType=cv2.BORDER_REFLECT)


def elastic_field(shape: tuple[int, int], alpha: float, sigma: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Displacements (dx, dy): U(-alpha, alpha) per pixel, x first, each smoothed by a 2-sigma-truncated Gaussian."""
    # One draw of 2 x H x W is the same stream as drawing dx, then dy.
    dx, dy = np.random.default_rng(seed).uniform(-alpha, alpha, (2,) + tuple(shape))
    return smooth(dx, sigma), smooth(dy, sigma)


@functools.lru_cache(maxsize=8)
def _pixel_grid(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    ys, xs = np.indices((h, w), dtype=np.float64)
    xs.flags.writeable = ys.flags.writeable = False  # shared between calls
    return xs, ys


def elastic(image: np.ndarray, alpha: float, sigma: float, seed: int) -> np.ndarray:
    """Backward-map each pixel by a smoothed random field, clipped to the image, bilinear (Simard et al.)."""
    check_image(image)
    h, w = image.shape[:2]
    dx, dy = elastic_field((h, w), alpha, sigma, seed)
    xs, ys = _pixel_grid(h, w)
    # Clipping after the cast to float32 is the same as before it (rounding is monotone, bounds exact).
    map_x = np.clip((xs + dx).astype(np.float32), 0, w - 1)
    map_y = np.clip((ys + dy).astype(np.float32), 0, h - 1)
    # Coordinates are clipped to the image, so the border mode only matters for the zero-weight
    # neighbour at the last row/column; replicate equals the authors' scipy mode='reflect' there.
    out = cv2.remap(image, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return _same_shape(out, image)


def blur_ksize(sigma: float) -> int:
    """The authors' kernel size: int(4 sigma + 0.999), made odd by adding 1 (a support of about +-2 sigma)."""
    size = int(4 * sigma + 0.999)
    return size + 1 if size % 2 == 0 else size


def blur(image: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur with the authors' kernel size (OpenCV GaussianBlur, default reflect-101 border)."""
    check_image(image)
    if sigma < 0:
        raise UserError(f"blur: sigma={sigma}, expected >= 0")
    size = blur_ksize(sigma)
    return _same_shape(cv2.GaussianBlur(image, (size, size), sigma), image)


def noise(image: np.ndarray, sigma: float, seed: int, per_channel: bool = False) -> np.ndarray:
    """Add N(0, sigma) per pixel (one field for all channels, or per channel), clip, truncate to uint8."""
    check_image(image)
    if sigma < 0:
        raise UserError(f"noise: sigma={sigma}, expected >= 0")
    shape = image.shape if per_channel or image.ndim == 2 else image.shape[:2] + (1,)
    field = np.random.default_rng(seed).normal(0.0, sigma, shape)
    # astype truncates toward zero after the clip, as the authors' numpy code did.
    return np.clip(image + field, 0, 255).astype(np.uint8)


def mirror(image: np.ndarray, flip: str) -> np.ndarray:
    """flip_ud: rows reversed (paper's "horizontal"); flip_lr: columns reversed (paper's "vertical")."""
    check_image(image)
    if flip not in FLIPS:
        raise UserError(f"mirror: flip={flip!r}, expected one of {', '.join(FLIPS)}")
    rows = -1 if flip in ("flip_ud", "flip_both") else 1
    cols = -1 if flip in ("flip_lr", "flip_both") else 1
    return np.ascontiguousarray(image[::rows, ::cols])


def perspective_offsets(sigma: float, seed: int) -> np.ndarray:
    """Eight corner offsets N(0, sigma): (dx, dy) of corners (0,0), (1,0), (1,1), (0,1) in that order."""
    return np.random.default_rng(seed).normal(0.0, sigma, 8)


def perspective_matrix(offsets: Sequence[float], square: float = 1.0) -> np.ndarray:
    """Homography from the square of side `square` at the origin to its corners plus offsets (pixel coords)."""
    src = UNIT_SQUARE * square
    dst = src + np.asarray(offsets, dtype=np.float64).reshape(4, 2)
    return cv2.getPerspectiveTransform(src.astype(np.float32), dst.astype(np.float32))


def perspective(image: np.ndarray, sigma: float, seed: int, square: float = 1.0, fill: Fill = 0) -> np.ndarray:
    """Warp by the homography of perspective_matrix(perspective_offsets(sigma, seed), square), bilinear."""
    check_image(image)
    h, w = image.shape[:2]
    matrix = perspective_matrix(perspective_offsets(sigma, seed), square)
    out = cv2.warpPerspective(image, matrix, (w, h), flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_CONSTANT, borderValue=border_value(image, fill))
    return _same_shape(out, image)


def rotation_matrix(shape: tuple[int, ...], angle: float) -> np.ndarray:
    """OpenCV's rotation by angle degrees (positive: counter-clockwise on screen) about the pixel centre."""
    h, w = shape[:2]
    # ((w-1)/2, (h-1)/2) is the centre of the pixel grid; at 227 px it is (113, 113), the point the
    # authors' measurement code used (their training code used h/2. = 113.5).
    return cv2.getRotationMatrix2D(((w - 1) / 2, (h - 1) / 2), angle, 1.0)


def rotation(image: np.ndarray, angle: float, fill: Fill = 0) -> np.ndarray:
    """Rotate about the image centre, bilinear."""
    check_image(image)
    return _warp_affine(image, rotation_matrix(image.shape, angle), fill)


def shear_matrix(angle: float, orientation: str) -> np.ndarray:
    """[[1, tan, 0], [0, 1, 0]] (h) or [[1, 0, 0], [tan, 1, 0]] (v): about the top-left corner."""
    if orientation not in ORIENTATIONS:
        raise UserError(f"shear: orientation={orientation!r}, expected one of {', '.join(ORIENTATIONS)}")
    matrix = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    t = math.tan(math.radians(angle))
    if orientation == "h":
        matrix[0, 1] = t
    else:
        matrix[1, 0] = t
    return matrix


def shear(image: np.ndarray, angle: float, orientation: str = "h", fill: Fill = 0) -> np.ndarray:
    """Shear by angle degrees about the top-left corner (the authors' convention), bilinear."""
    check_image(image)
    return _warp_affine(image, shear_matrix(angle, orientation), fill)
