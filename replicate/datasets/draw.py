"""Drawing primitives shared by the embedded generators: a square canvas addressed in page units [0, 1]."""
from __future__ import annotations

import cv2
import numpy as np

LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"


class Canvas:
    """A uint8 image of side `px` (grey or BGR) drawn on in page units: (0, 0) top-left, (1, 1) bottom-right."""

    def __init__(self, px: int, background: np.ndarray):
        self.px = px
        self.img = background

    def p(self, v: float) -> int:
        """Page units -> pixels."""
        return int(round(v * self.px))

    def pt(self, x: float, y: float) -> tuple[int, int]:
        return self.p(x), self.p(y)

    def rect(self, x0: float, y0: float, x1: float, y1: float, ink, thickness: float = -1) -> None:
        """Filled (thickness < 0) or outlined rectangle; outline thickness in page units."""
        t = -1 if thickness < 0 else max(1, self.p(thickness))
        cv2.rectangle(self.img, self.pt(x0, y0), self.pt(x1, y1), ink, t, cv2.LINE_AA)

    def line(self, x0: float, y0: float, x1: float, y1: float, ink, thickness: float) -> None:
        cv2.line(self.img, self.pt(x0, y0), self.pt(x1, y1), ink, max(1, self.p(thickness)), cv2.LINE_AA)

    def circle(self, x: float, y: float, r: float, ink, thickness: float = -1) -> None:
        t = -1 if thickness < 0 else max(1, self.p(thickness))
        cv2.circle(self.img, self.pt(x, y), max(1, self.p(r)), ink, t, cv2.LINE_AA)

    def poly(self, points: np.ndarray, ink, closed: bool = True, thickness: float = -1) -> None:
        """Polygon (filled if thickness < 0) or polyline through `points` (N x 2, page units)."""
        pts = np.round(np.asarray(points) * self.px * 16).astype(np.int32)  # 4 fractional bits
        if thickness < 0:
            cv2.fillPoly(self.img, [pts], ink, cv2.LINE_AA, shift=4)
        else:
            cv2.polylines(self.img, [pts], closed, ink, max(1, self.p(thickness)), cv2.LINE_AA, shift=4)

    def text(self, x: float, y: float, height: float, rng: np.random.Generator, n: int, ink,
             bold: bool = False) -> None:
        """n random glyphs of a Hershey font with baseline at y and cap height `height`."""
        scale = height * self.px / 22.0  # Hershey simplex caps are about 22 px at scale 1
        word = "".join(rng.choice(list(LETTERS), n))
        cv2.putText(self.img, word, self.pt(x, y), cv2.FONT_HERSHEY_SIMPLEX, scale, ink,
                    max(1, int(round(scale * (2.5 if bold else 1.4)))), cv2.LINE_AA)


def words(c: Canvas, rng: np.random.Generator, x0: float, x1: float, y: float, height: float, ink,
          fill: float = 1.0, gap: float = 0.012) -> None:
    """One line of text as word blobs from x0 towards x1 (fill = fraction of the width used)."""
    x, end = x0, x0 + (x1 - x0) * fill
    while x < end:
        w = min(float(rng.uniform(0.015, 0.07)), end - x)
        if w > 0.006:
            top = y - height * float(rng.uniform(0.75, 1.0))
            c.rect(x, top, x + w, y, ink)
        x += w + gap


def paragraph(c: Canvas, rng: np.random.Generator, x0: float, x1: float, y0: float, y1: float,
              pitch: float, ink, indent: float = 0.0) -> float:
    """Lines of word blobs filling [y0, y1] with line pitch `pitch`; the last line is short. Returns the end y."""
    y = y0 + pitch
    while y <= y1:
        last = y + pitch > y1
        words(c, rng, x0 + (indent if y == y0 + pitch else 0.0), x1, y, pitch * 0.45, ink,
              fill=float(rng.uniform(0.2, 0.7)) if last else float(rng.uniform(0.9, 1.0)))
        y += pitch
    return y


def scribble(c: Canvas, rng: np.random.Generator, x0: float, x1: float, y: float, height: float, ink,
             thickness: float) -> None:
    """A handwriting-like stroke: a loopy curve progressing from x0 to x1 around baseline y."""
    n = max(8, int((x1 - x0) / height * 6))
    t = np.linspace(0, 1, n)
    phase = np.cumsum(rng.uniform(0.6, 1.6, n))
    xs = x0 + (x1 - x0) * t + height * 0.35 * np.cos(phase * 2.2)
    ys = y - height * (0.5 + 0.45 * np.sin(phase * 2.2) * rng.uniform(0.5, 1.0, n))
    c.poly(np.stack([xs, ys], 1), ink, closed=False, thickness=thickness)


def smooth_noise(rng: np.random.Generator, px: int, cells: int, channels: int = 1) -> np.ndarray:
    """A smooth random field in [0, 1] of side px: uniform noise on a cells x cells grid, upsampled bicubically."""
    grid = rng.random((cells, cells, channels)).astype(np.float32)
    field = cv2.resize(grid, (px, px), interpolation=cv2.INTER_CUBIC)
    return np.clip(field.reshape(px, px, channels), 0.0, 1.0)


def finish(img: np.ndarray, size: int, rng: np.random.Generator, pixels: np.random.Generator, skew_deg: float,
           shift: float, noise_sigma: float, border_value) -> np.ndarray:
    """Skew and shift slightly about the centre (from rng), resize to size x size (INTER_AREA), add sensor
    noise (from pixels, the generator of size-dependent draws)."""
    if skew_deg or shift:
        img = skewed(img, rng, skew_deg, shift, border_value)
    img = cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA)
    noisy = img.astype(np.float32) + pixels.normal(0.0, noise_sigma, img.shape).astype(np.float32)
    return np.clip(noisy + 0.5, 0, 255).astype(np.uint8)


def skewed(img: np.ndarray, rng: np.random.Generator, skew_deg: float, shift: float, border_value) -> np.ndarray:
    """Rotate by U(-skew_deg, skew_deg) about the centre and shift by U(-shift, shift) of the side."""
    px = img.shape[0]
    m = cv2.getRotationMatrix2D((px / 2, px / 2), float(rng.uniform(-skew_deg, skew_deg)), 1.0)
    m[:, 2] += rng.uniform(-shift, shift, 2) * px
    return cv2.warpAffine(img, m, (px, px), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                          borderValue=border_value)
