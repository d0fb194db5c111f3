"""The ten families of Appendix A (Table 3 training ranges, measurement grids of Figs. 1, 7-9) and FAMILIES.

Size rule (`Family.scaled`, k = size / 227): pixel lengths scale with k (blur sigma, elastic sigma,
crop sizes and offsets); angles and intensity shifts do not (rotation, shear, jitter, brightness).
Noise sigma scales with k too: a pixel at size n covers (227/n)**2 pixels of the 227-px image, whose iid
noise averages down by 227/n there, so sigma * k is the paper's noise seen at size n (measured in
benchmarks/RESULTS.md, "Transform strength"; without it the 64-px noise was 3.7x the paper's).
Elastic alpha scales with k**2: the field is white noise smoothed by a Gaussian, whose amplitude
after smoothing is about alpha / sigma, so alpha ~ k**2 with sigma ~ k gives displacements ~ k,
i.e. the same distortion relative to the image. Perspective offsets are in units of a square applied
to pixel coordinates; at size n the square's side is k and offsets scale by k, which makes the warp
conjugate (by the scaling x -> k x) to the one at 227: the same picture at every size.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from convert.errors import UserError
from replicate.transforms import ops
from lmdb_tools.layout import CROP_SIZES
from replicate.transforms.family import REFERENCE_SIZE, Family, Param, Setting, parse_bool, parse_ints

MEASUREMENT_SEED = 54321  # first seed of the fixed fields (elastic, noise, perspective); setting i uses +i
SEED = Param("seed", "integer", "seed of numpy.random.default_rng drawing the random field", int, minimum=0)
# Pixels a warp brings in from outside the image. Measurement grids fill 0 (black), as the authors' measurement
# code warped raw images; training fills the dataset's mean (replicate/training.py), as their fork warped
# mean-subtracted floats. The sampler's config key "fill" carries it (default_config: 0).
FILL = Param("fill", "grey levels", "value of pixels from outside the image: one (all channels) or one per "
             "channel in B,G,R order", lambda text: tuple(float(v) for v in text.split(",")))
WARP_DEFAULTS = {"fill": 0.0}


def _seed(rng: np.random.Generator) -> int:
    return int(rng.integers(2**63 - 1))


def _signed(values: tuple[float, ...]) -> list[float]:
    """-v_n .. -v_1, +v_1 .. +v_n."""
    return [-v for v in reversed(values)] + list(values)


def _fixed_grid(settings: Callable[[dict], list[Setting]], scale: Callable[[dict, float], dict]):
    """A grid stated at 227 px, scaled to the requested size."""
    return lambda config, size: [Setting(s.label, scale(s.params, size / REFERENCE_SIZE))
                                 for s in settings(config)]


def _identity_reference(config: dict, size: int) -> dict:
    return {}


def _scale_keys(linear: tuple[str, ...] = (), square: tuple[str, ...] = ()) -> Callable[[dict, float], dict]:
    """A size rule multiplying `linear` keys by k and `square` keys by k**2."""
    def scale(params: dict, k: float) -> dict:
        out = dict(params)
        for key in linear:
            if key in out:
                out[key] = out[key] * k
        for key in square:
            if key in out:
                out[key] = out[key] * k * k
        return out
    return scale


BASELINE = Family(
    name="baseline", title="Baseline", size_rule="no parameters",
    description="No augmentation: the input unchanged. Measured against every other family's grid.",
    params=(), apply_fn=ops.identity, training=({},),
    draw=lambda config, rng, channels, size: {},
    grid=lambda config, size: [], reference_params=_identity_reference,
)

BRIGHTNESS = (2, 5, 10, 15, 20, 25, 30, 45)
COLOR_JITTER = Family(
    name="color_jitter", title="Color Jitter",
    description="Adds an integer to each channel, the same at every pixel, then clips to [0, 255]. "
                "Training: per-channel shift round(N(0, sigma)). Measurement: brightness, one shift on "
                "all channels.",
    size_rule="intensities: unchanged at every size",
    params=(Param("shift", "grey levels", "integer added to every pixel: one value (all channels tied) "
                  "or one per channel in B,G,R order", parse_ints),),
    apply_fn=ops.shift,
    training=tuple({"sigma": s} for s in (5, 10, 15, 20)),
    draw=lambda config, rng, channels, size: {
        "shift": tuple(int(v) for v in np.rint(rng.normal(0.0, config["sigma"], channels)))},
    grid=lambda config, size: [Setting(f"{v:+d}", {"shift": (v,)}) for v in _signed(BRIGHTNESS)],
    reference_params=lambda config, size: {"shift": (0,)},
)



def _crop_geometry(config: dict, size: int) -> tuple[int, int]:
    """(resize, crop) in pixels at this size: S and 227 scaled by size/227; the crop is the net input."""
    return round(config["resize"] * size / REFERENCE_SIZE), size


def _crop_draw(config: dict, rng: np.random.Generator, channels: int, size: int) -> dict:
    resize, crop = _crop_geometry(config, size)
    x, y = (int(v) for v in rng.integers(0, resize - crop + 1, 2))
    return {"resize": resize, "crop": crop, "x": x, "y": y}


def _crop_grid(config: dict, size: int) -> list[Setting]:
    resize, crop = _crop_geometry(config, size)
    offsets = ops.crop_offsets(resize, crop)
    return [Setting(f"r{i}c{j}", {"resize": resize, "crop": crop, "x": x, "y": y})
            for i, y in enumerate(offsets) for j, x in enumerate(offsets)]


def _crop_reference(config: dict, size: int) -> dict:
    resize, crop = _crop_geometry(config, size)
    return {"resize": resize, "crop": crop, "x": (resize - crop) // 2, "y": (resize - crop) // 2}


CROP = Family(
    name="crop", title="Crop",
    description="Resizes to S x S (bilinear) and takes a window of the net's input size: random at "
                "TRAIN, centre ((S - 227) // 2, Caffe's) at TEST. Measurement: 25 windows on a 5x5 grid "
                "in scan-line order (row r0..r4 top to bottom, column c0..c4 left to right), offsets "
                "int(i * (S - 227) / 4) for i = 0..4 in each axis (evenly from 0 to S - 227, floored, "
                "as the authors' make_crop_transforms); r2c2 is the centre crop, the baseline. "
                "Measured at the net's own S (default 256, Table 2's 'center from 256x256').",
    size_rule="pixel lengths: S and the window scale to round(S * size / 227) and size",
    params=(Param("resize", "px", "side of the resized image S", int, minimum=1),
            Param("crop", "px", "side of the window (the net's input)", int, minimum=1),
            Param("x", "px", "left edge of the window", int, minimum=0),
            Param("y", "px", "top edge of the window", int, minimum=0)),
    apply_fn=ops.crop,
    training=tuple({"resize": s} for s in CROP_SIZES),
    draw=_crop_draw, grid=_crop_grid, reference_params=_crop_reference,
    default_config={"resize": 256},
)

ELASTIC_ALPHAS = (5, 10, 15)
ELASTIC_SIGMAS = (2, 2.5, 3, 3.5)
_elastic_scale = _scale_keys(linear=("sigma",), square=("alpha",))
ELASTIC = Family(
    name="elastic", title="Elastic Deformations",
    description="Displacement fields U(-alpha, alpha) per pixel for x and y, each smoothed by a Gaussian "
                "of sigma truncated at 2 sigma, added to the pixel grid, clipped to the image, bilinear. "
                "Training: fixed sigma, alpha ~ U[0, alpha_max], a fresh field per image. Measurement: "
                "one fixed field (fixed seed) per (alpha, sigma) in {5, 10, 15} x {2, 2.5, 3, 3.5}.",
    size_rule="sigma scales with size/227, alpha with (size/227)**2 (keeps the smoothed displacement "
              "a fixed fraction of the image)",
    params=(Param("alpha", "px", "half-width of the uniform per-pixel displacement before smoothing", minimum=0),
            Param("sigma", "px", "standard deviation of the smoothing Gaussian", minimum=0), SEED),
    apply_fn=ops.elastic,
    training=tuple({"sigma": s, "alpha_max": a} for s, a in ((2, 5), (2, 10), (3, 5), (3, 10))),
    draw=lambda config, rng, channels, size: _elastic_scale(
        {"alpha": rng.uniform(0, config["alpha_max"]), "sigma": config["sigma"], "seed": _seed(rng)},
        size / REFERENCE_SIZE),
    grid=_fixed_grid(lambda config: [
        Setting(f"a{a:g} s{s:g}", {"alpha": float(a), "sigma": float(s), "seed": MEASUREMENT_SEED + i})
        for i, (a, s) in enumerate((a, s) for a in ELASTIC_ALPHAS for s in ELASTIC_SIGMAS)], _elastic_scale),
    reference_params=lambda config, size: {"alpha": 0.0, "sigma": 0.0, "seed": MEASUREMENT_SEED},
    scale=_elastic_scale,
)

_linear_sigma = _scale_keys(linear=("sigma",))
BLUR = Family(
    name="blur", title="Gaussian Blur",
    description="OpenCV GaussianBlur with the authors' odd kernel size int(4 sigma + 0.999) (+1 if even). "
                "Training: sigma ~ U[0, s_max]. Measurement: sigma 0.5, 1, ..., 5.",
    size_rule="sigma is a pixel length: scales with size/227 (the kernel-size rule applies after scaling)",
    params=(Param("sigma", "px", "standard deviation of the Gaussian", minimum=0),),
    apply_fn=ops.blur,
    training=({"s_max": 1.5}, {"s_max": 3.0}),
    draw=lambda config, rng, channels, size: _linear_sigma(
        {"sigma": rng.uniform(0, config["s_max"])}, size / REFERENCE_SIZE),
    grid=_fixed_grid(lambda config: [Setting(f"{s:g}", {"sigma": s}) for s in (i / 2 for i in range(1, 11))],
                     _linear_sigma),
    reference_params=lambda config, size: {"sigma": 0.0},
    scale=_linear_sigma,
)

NOISE_SIGMAS = (2.5, 5, 7.5, 10, 12.5, 15, 20, 25, 30, 40)
NOISE = Family(
    name="noise", title="Gaussian Noise",
    description="Adds iid N(0, sigma) per pixel, clips to [0, 255] and truncates to uint8. per_channel=False: "
                "one field for all channels (the authors' measurement code); per_channel=True: a value per "
                "channel (their C++ training code, the training default here). Training: sigma ~ U[0, s_max], "
                "a fresh field per image. Measurement: one fixed field (fixed seed) per sigma.",
    size_rule="sigma scales with size/227: iid noise of the 227-px image, area-averaged to this size",
    params=(Param("sigma", "grey levels", "standard deviation of the noise", minimum=0), SEED,
            Param("per_channel", "bool", "draw a separate value for each channel", parse_bool)),
    apply_fn=ops.noise,
    training=tuple({"s_max": s} for s in (5, 10, 15, 20)),
    draw=lambda config, rng, channels, size: _linear_sigma(
        {"sigma": rng.uniform(0, config["s_max"]), "seed": _seed(rng), "per_channel": config["per_channel"]},
        size / REFERENCE_SIZE),
    grid=_fixed_grid(lambda config: [
        Setting(f"{s:g}", {"sigma": float(s), "seed": MEASUREMENT_SEED + i, "per_channel": False})
        for i, s in enumerate(NOISE_SIGMAS)], _linear_sigma),
    reference_params=lambda config, size: {"sigma": 0.0, "seed": MEASUREMENT_SEED, "per_channel": False},
    default_config={"per_channel": True},
    scale=_linear_sigma,
)


def _mirror_draw(config: dict, rng: np.random.Generator, channels: int, size: int) -> dict:
    mode = config["flip"]
    ud = mode in ("flip_ud", "flip_both") and rng.random() < 0.5
    lr = mode in ("flip_lr", "flip_both") and rng.random() < 0.5
    return {"flip": {(False, False): "none", (True, False): "flip_ud",
                     (False, True): "flip_lr", (True, True): "flip_both"}[(bool(ud), bool(lr))]}


MIRROR = Family(
    name="mirror", title="Mirror",
    description="flip_ud reverses the rows (a reflection over the horizontal axis: the paper's and Table 3's "
                "'horizontal mirror', the authors' 'h'); flip_lr reverses the columns (the paper's "
                "'vertical', 'v'); flip_both does both. Training: each named flip with p = 0.5 "
                "(flip_both: ud and lr independently). Measurement: all 4 combinations "
                "(none is the reference, the grid holds the other 3).",
    size_rule="no lengths: unchanged at every size",
    params=(Param("flip", "choice", "which axes to reverse", str, choices=ops.FLIPS),),
    apply_fn=ops.mirror,
    training=({"flip": "flip_ud"}, {"flip": "flip_lr"}, {"flip": "flip_both"}),
    draw=_mirror_draw,
    grid=lambda config, size: [Setting(f, {"flip": f}) for f in ops.FLIPS[1:]],
    reference_params=lambda config, size: {"flip": "none"},
)

# The authors' make_perspective_transforms(max_sigma, 10) steps sigma_k = k * max_sigma / 10 and draws
# offsets N(0, sigma_k / 2); with max_sigma = 0.004 (the widest training range) the offsets' std is 0.0002 k.
PERSPECTIVE_SIGMAS = tuple(0.0002 * i for i in range(1, 11))
_perspective_scale = _scale_keys(linear=("sigma", "square"))
PERSPECTIVE = Family(
    name="perspective", title="Perspective",
    description="Homography from the square (0,0),(1,0),(1,1),(0,1) to the same corners plus N(0, sigma) "
                "offsets in x and y, applied directly to pixel coordinates (cv2.getPerspectiveTransform + "
                "warpPerspective, bilinear, fill 0; training: the mean), so sigma = 0.001 is already a strong "
                "warp at 227 px. "
                "Training: sigma ~ U[0, s_max], fresh offsets per image. Measurement: 10 fixed warps "
                "(fixed seeds) with offset std 0.0002, 0.0004, ..., 0.002: the authors' generator of "
                "equally spaced sigma_k = k * 0.004 / 10 (widest training range) with offsets N(0, sigma_k / 2).",
    size_rule="square side and sigma scale with size/227: the warp is the 227-px warp conjugated by "
              "the scaling, so the picture is the same at every size",
    params=(Param("sigma", "unit-square units", "standard deviation of each corner offset", minimum=0), SEED,
            Param("square", "px", "side of the square the offsets are stated on (1 at 227 px)", minimum=1e-9), FILL),
    apply_fn=ops.perspective,
    training=tuple({"s_max": s} for s in (0.001, 0.002, 0.003, 0.004)),
    draw=lambda config, rng, channels, size: {**_perspective_scale(
        {"sigma": rng.uniform(0, config["s_max"]), "seed": _seed(rng), "square": 1.0}, size / REFERENCE_SIZE),
        "fill": config["fill"]},
    grid=_fixed_grid(lambda config: [
        Setting(f"{s:.4g}", {"sigma": s, "seed": MEASUREMENT_SEED + i, "square": 1.0})
        for i, s in enumerate(PERSPECTIVE_SIGMAS)], _perspective_scale),
    reference_params=lambda config, size: {"sigma": 0.0, "seed": MEASUREMENT_SEED, "square": size / REFERENCE_SIZE},
    scale=_perspective_scale, default_config=WARP_DEFAULTS,
)

ROTATION_ANGLES = (2.5, 5, 10, 15, 20, 25, 30, 45)
ROTATION = Family(
    name="rotation", title="Rotation",
    description="cv2.getRotationMatrix2D about the pixel centre ((w-1)/2, (h-1)/2), bilinear, fill 0 "
                "(training: the mean); "
                "positive angles turn counter-clockwise on screen. Training: theta ~ U[-t, t]. "
                "Measurement: +-{2.5, 5, 10, 15, 20, 25, 30, 45} (Appendix A; Section 5.1 says 40 last).",
    size_rule="angles: unchanged at every size",
    params=(Param("angle", "degrees", "rotation angle"), FILL),
    apply_fn=ops.rotation,
    training=tuple({"t": t} for t in (5, 10, 15, 20)),
    draw=lambda config, rng, channels, size: {"angle": rng.uniform(-config["t"], config["t"]), "fill": config["fill"]},
    grid=lambda config, size: [Setting(f"{a:+g}", {"angle": float(a)}) for a in _signed(ROTATION_ANGLES)],
    reference_params=lambda config, size: {"angle": 0.0}, default_config=WARP_DEFAULTS,
)

SHEAR_ANGLES = (5, 10, 15, 20, 25, 30)
SHEAR = Family(
    name="shear", title="Shear",
    description="Affine [[1, tan(theta), 0], [0, 1, 0]] (h) or [[1, 0, 0], [tan(theta), 1, 0]] (v) about the "
                "TOP-LEFT corner (the authors' convention, not the centre), bilinear, fill 0 (training: the mean). "
                "Training: theta ~ U[-t, t], h or v with p = 0.5. Measurement: horizontal only, +-{5, ..., 30}.",
    size_rule="angles: unchanged at every size",
    params=(Param("angle", "degrees", "shear angle theta"),
            Param("orientation", "choice", "h: rows slide along x; v: columns slide along y", str,
                  choices=ops.ORIENTATIONS), FILL),
    apply_fn=ops.shear,
    training=tuple({"t": t} for t in (5, 10, 15, 20)),
    draw=lambda config, rng, channels, size: {
        "angle": rng.uniform(-config["t"], config["t"]), "orientation": "h" if rng.random() < 0.5 else "v",
        "fill": config["fill"]},
    grid=lambda config, size: [Setting(f"{a:+g}", {"angle": float(a), "orientation": "h"})
                               for a in _signed(SHEAR_ANGLES)],
    reference_params=lambda config, size: {"angle": 0.0, "orientation": "h"}, default_config=WARP_DEFAULTS,
)

class Registry(dict):
    """Families by name; looking up an unknown name raises UserError listing the valid ones."""

    def __missing__(self, name: str) -> Family:
        raise UserError(f"unknown transform family {name!r}; expected one of {', '.join(self)}")


FAMILIES: dict[str, Family] = Registry((f.name, f) for f in (
    BASELINE, COLOR_JITTER, CROP, ELASTIC, BLUR, NOISE, MIRROR, PERSPECTIVE, ROTATION, SHEAR))
