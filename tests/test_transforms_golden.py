"""Golden tests: each measurement transform equals an independent computation of the authors' formula."""
import math

import cv2
import numpy as np
import pytest
from scipy.ndimage import gaussian_filter, map_coordinates

from replicate.transforms import FAMILIES

SIZE = 227


def scene(channels: int) -> np.ndarray:
    """A fixed synthetic image: gradients, edges and texture, so any geometric error shows."""
    yy, xx = np.indices((SIZE, SIZE))
    base = (xx * 0.7 + yy * 0.3) % 256
    base[40:90, 30:200] = 20
    base[120:200, 100:140] = 240
    texture = np.random.default_rng(123).integers(0, 40, (SIZE, SIZE))
    grey = np.clip(base + texture, 0, 255).astype(np.uint8)
    return grey if channels == 0 else np.stack([grey, 255 - grey, grey // 2], axis=-1)


def grid(name):
    return FAMILIES[name].measurement_grid(SIZE)


def warp_affine(image, matrix):
    return cv2.warpAffine(image, matrix, (SIZE, SIZE), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=0)


@pytest.fixture(params=[0, 3], ids=["grey", "colour"])
def image(request):
    return scene(request.param)


def test_rotation_is_about_the_centre(image):
    for s in grid("rotation"):
        a = math.radians(s.params["angle"])
        c, sn, cx, cy = math.cos(a), math.sin(a), 113.0, 113.0
        matrix = np.array([[c, sn, (1 - c) * cx - sn * cy], [-sn, c, sn * cx + (1 - c) * cy]])
        np.testing.assert_array_equal(FAMILIES["rotation"].apply(image, **s.params), warp_affine(image, matrix))


def test_shear_is_about_the_top_left_corner(image):
    for s in grid("shear"):
        t = math.tan(math.radians(s.params["angle"]))
        assert s.params["orientation"] == "h"
        ours = FAMILIES["shear"].apply(image, **s.params)
        np.testing.assert_array_equal(ours, warp_affine(image, np.array([[1, t, 0], [0, 1, 0.0]])))
        np.testing.assert_array_equal(ours[0], image[0])  # the top row does not move
        centred = np.array([[1, t, -t * 113], [0, 1, 0.0]])
        assert np.abs(ours.astype(int) - warp_affine(image, centred)).max() > 100
    t = math.tan(math.radians(10))
    np.testing.assert_array_equal(FAMILIES["shear"].apply(image, angle=10.0, orientation="v"),
                                  warp_affine(image, np.array([[1, 0, 0], [t, 1, 0.0]])))


def homography(src, dst):
    """Solve the 8 unknowns of H (h33 = 1) from four point pairs: the textbook linear system."""
    rows, rhs = [], []
    for (x, y), (u, v) in zip(src, dst):
        rows.append([x, y, 1, 0, 0, 0, -u * x, -u * y]), rhs.append(u)
        rows.append([0, 0, 0, x, y, 1, -v * x, -v * y]), rhs.append(v)
    return np.append(np.linalg.solve(np.array(rows, float), np.array(rhs, float)), 1).reshape(3, 3)


def test_perspective_maps_the_unit_square_in_pixel_coordinates(image):
    unit = np.array([[0, 0], [1, 0], [1, 1], [0, 1]], float)
    for s in grid("perspective"):
        offsets = np.random.default_rng(s.params["seed"]).normal(0, s.params["sigma"], 8).reshape(4, 2)
        dst = (unit + offsets).astype(np.float32).astype(float)  # the corners as float32, as OpenCV takes them
        matrix = homography(unit, dst)
        ours = FAMILIES["perspective"].apply(image, **s.params)
        expected = cv2.warpPerspective(image, matrix, (SIZE, SIZE), flags=cv2.INTER_LINEAR,
                                       borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        np.testing.assert_array_equal(ours, expected)
        # Normalised (the square spanning the image) would be a far milder warp: must not match.
        side = SIZE - 1
        normalised = homography(unit * side, (unit + offsets) * side)
        mild = cv2.warpPerspective(image, normalised, (SIZE, SIZE), flags=cv2.INTER_LINEAR)
        assert np.mean(ours != mild) > 0.3


def test_blur_uses_the_authors_kernel(image):
    for s in grid("blur"):
        sigma = s.params["sigma"]
        size = int(4 * sigma + 0.999)
        size += 1 - size % 2
        ours = FAMILIES["blur"].apply(image, **s.params)
        np.testing.assert_array_equal(ours, cv2.GaussianBlur(image, (size, size), sigma))
        r = np.arange(size) - size // 2
        kernel = np.exp(-r**2 / (2 * sigma**2))
        kernel /= kernel.sum()
        by_hand = cv2.sepFilter2D(image.astype(np.float64), -1, kernel, kernel, borderType=cv2.BORDER_REFLECT_101)
        # OpenCV's uint8 GaussianBlur is a bit-exact fixed-point filter: within one grey level of the float one
        assert np.abs(ours.astype(float) - by_hand.round().reshape(image.shape)).max() <= 1


def elastic_maps(params):
    rng = np.random.default_rng(params["seed"])
    dx = gaussian_filter(rng.uniform(-params["alpha"], params["alpha"], (SIZE, SIZE)), params["sigma"], truncate=2)
    dy = gaussian_filter(rng.uniform(-params["alpha"], params["alpha"], (SIZE, SIZE)), params["sigma"], truncate=2)
    yy, xx = np.indices((SIZE, SIZE))
    return np.clip(xx + dx, 0, SIZE - 1), np.clip(yy + dy, 0, SIZE - 1)


def test_elastic_is_the_smoothed_uniform_field(image):
    for s in grid("elastic"):
        map_x, map_y = elastic_maps(s.params)
        ours = FAMILIES["elastic"].apply(image, **s.params)
        remapped = cv2.remap(image, map_x.astype(np.float32), map_y.astype(np.float32), cv2.INTER_LINEAR,
                             borderMode=cv2.BORDER_REPLICATE).reshape(image.shape)
        np.testing.assert_array_equal(ours, remapped)
        # The authors sampled with scipy map_coordinates(order=1); cv2.remap quantises each bilinear
        # weight to 1/32 (error <= 1/64 per axis), so it may differ by up to 255/32 plus rounding.
        planes = image.reshape(SIZE, SIZE, -1)
        scipy_out = np.stack([map_coordinates(planes[..., c].astype(float), [map_y, map_x], order=1)
                              for c in range(planes.shape[2])], axis=-1).reshape(image.shape)
        diff = np.abs(ours - scipy_out)
        assert diff.max() <= 255 / 32 + 0.5 and diff.mean() < 0.5


def test_noise_is_one_field_for_all_channels(image):
    for s in grid("noise"):
        field = np.random.default_rng(s.params["seed"]).normal(0, s.params["sigma"], (SIZE, SIZE))
        field = field if image.ndim == 2 else field[..., None]
        expected = np.clip(image.astype(float) + field, 0, 255).astype(np.uint8)
        np.testing.assert_array_equal(FAMILIES["noise"].apply(image, **s.params), expected)


def test_brightness_shifts_all_channels_together(image):
    values = [int(s.label) for s in grid("color_jitter")]
    assert values == [-45, -30, -25, -20, -15, -10, -5, -2, 2, 5, 10, 15, 20, 25, 30, 45]
    for s, v in zip(grid("color_jitter"), values):
        expected = np.clip(image.astype(int) + v, 0, 255).astype(np.uint8)
        np.testing.assert_array_equal(FAMILIES["color_jitter"].apply(image, **s.params), expected)


def test_crop_grid_is_five_by_five_in_scan_line_order(image):
    settings = FAMILIES["crop"].measurement_grid(SIZE, {"resize": 256})
    resized = cv2.resize(image, (256, 256))
    offsets = [0, 7, 14, 21, 29]  # int(i * (256 - 227) / 4)
    assert [(s.params["y"], s.params["x"]) for s in settings] == [(y, x) for y in offsets for x in offsets]
    for s in settings:
        y, x = s.params["y"], s.params["x"]
        np.testing.assert_array_equal(FAMILIES["crop"].apply(image, **s.params), resized[y:y + 227, x:x + 227])
    assert settings[12].params == FAMILIES["crop"].reference(SIZE, {"resize": 256})  # r2c2: Caffe's centre
    assert FAMILIES["crop"].reference(SIZE, {"resize": 256})["x"] == (256 - 227) // 2


def test_mirror_matches_the_authors_h_and_v(image):
    by_name = {s.label: FAMILIES["mirror"].apply(image, **s.params) for s in grid("mirror")}
    assert set(by_name) == {"flip_ud", "flip_lr", "flip_both"}
    np.testing.assert_array_equal(by_name["flip_ud"], cv2.flip(image, 0).reshape(image.shape))  # their "h"
    np.testing.assert_array_equal(by_name["flip_lr"], cv2.flip(image, 1).reshape(image.shape))  # their "v"
    np.testing.assert_array_equal(by_name["flip_both"], cv2.flip(image, -1).reshape(image.shape))
