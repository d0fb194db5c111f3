"""Document pages: `mini-docs` (office scans, RVL-CDIP's 16 classes) and `mini-docs-b` (historical pages).

Each class is a layout recipe drawn in page units with random margins, line pitch, block sizes and optional
elements, so classes vary inside and share elements (text blocks, rules, tables, logos) across. Pages fill
the image (fixed zoom and position, like resized RVL-CDIP scans) up to a slight skew and shift.
"""
from __future__ import annotations

import cv2
import numpy as np

from replicate.datasets.draw import Canvas, finish, paragraph, scribble, smooth_noise, words

RVL_CDIP_CLASSES = ("letter", "form", "email", "handwritten", "advertisement", "scientific report",
                    "scientific publication", "specification", "file folder", "news article", "budget",
                    "invoice", "presentation", "questionnaire", "resume", "memo")


def u(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(rng.uniform(lo, hi))


def logo(c, rng, x, y, s, ink):
    """A letterhead emblem: disc, square, or ring with initials."""
    kind = rng.integers(3)
    if kind == 0:
        c.circle(x + s / 2, y + s / 2, s / 2, ink)
    elif kind == 1:
        c.rect(x, y, x + s, y + s, ink)
    else:
        c.circle(x + s / 2, y + s / 2, s / 2, ink, thickness=s / 6)
    c.text(x + s * 1.2, y + s * 0.75, s * 0.55, rng, int(rng.integers(4, 10)), ink, bold=True)


def table(c, rng, x0, x1, y0, y1, rows, cols, ink, numbers=False, header=True):
    """A ruled grid with short cell contents (right-aligned blobs when `numbers`)."""
    ys = np.linspace(y0, y1, rows + 1)
    xs = np.sort(np.concatenate([[x0, x1], rng.uniform(x0 + 0.05, x1 - 0.05, cols - 1)]))
    vertical = rng.random() < 0.6
    for y in ys:
        c.line(x0, y, x1, y, ink, 0.0025)
    if vertical:
        for x in xs:
            c.line(x, y0, x, y1, ink, 0.0025)
    h = (y1 - y0) / rows
    for i in range(rows):
        for j in range(cols):
            if rng.random() < 0.15:
                continue
            w = (xs[j + 1] - xs[j]) * u(rng, 0.3, 0.8)
            xa = xs[j + 1] - 0.01 - w if (numbers and j > 0) else xs[j] + 0.01
            c.rect(xa, ys[i] + h * 0.3, xa + w, ys[i] + h * (0.75 if header and i == 0 else 0.65), ink)


def heading(c, rng, x, y, h, ink, n=None, center=False):
    n = n or int(rng.integers(5, 14))
    if center:
        x = 0.5 - n * h * 0.45
    c.text(x, y, h, rng, n, ink, bold=True)


def letter(c, rng, m, ink):
    y = m
    if rng.random() < 0.75:
        logo(c, rng, m, y, u(rng, 0.06, 0.1), ink)
        y += 0.13
    p = u(rng, 0.022, 0.032)
    words(c, rng, 0.62, 1 - m, y + 0.03, p * 0.45, ink, fill=0.8)  # date
    y = paragraph(c, rng, m, 0.45, y + 0.05, y + 0.05 + p * int(rng.integers(3, 5)), p, ink)
    words(c, rng, m, 0.3, y + p, p * 0.45, ink)  # salutation
    y += 1.5 * p
    for _ in range(int(rng.integers(2, 5))):
        end = min(y + p * int(rng.integers(3, 7)), 0.8)
        y = paragraph(c, rng, m, 1 - m, y, end, p, ink, indent=0.04) + p * 0.3
    scribble(c, rng, 0.55, 0.8, min(y + 0.07, 0.92), 0.04, ink, 0.004)


def form(c, rng, m, ink):
    heading(c, rng, m, m + 0.04, 0.035, ink, center=rng.random() < 0.5)
    y = m + 0.09
    cols = int(rng.integers(1, 4))
    while y < 1 - m - 0.05:
        h = u(rng, 0.04, 0.07)
        xs = np.linspace(m, 1 - m, cols + 1)
        for j in range(cols):
            c.rect(xs[j], y, xs[j + 1], y + h, ink, thickness=0.003)
            words(c, rng, xs[j] + 0.01, xs[j + 1], y + h * 0.35, h * 0.2, ink, fill=0.4)
        y += h + (0.0 if rng.random() < 0.6 else 0.02)
        if rng.random() < 0.3:
            cols = int(rng.integers(1, 5))


def email(c, rng, m, ink):
    p = u(rng, 0.02, 0.028)
    y = m
    for _ in range(int(rng.integers(3, 6))):  # From: To: Subject: lines
        y += p
        words(c, rng, m, m + 0.1, y, p * 0.45, ink, fill=0.9)
        words(c, rng, m + 0.13, u(rng, 0.4, 0.8), y, p * 0.45, ink)
    y += p
    c.line(m, y, 1 - m, y, ink, 0.003)
    while y < 0.85:
        quoted = rng.random() < 0.3
        x0 = m + (0.04 if quoted else 0.0)
        end = min(y + p * int(rng.integers(2, 6)), 1 - m)
        y = paragraph(c, rng, x0, u(rng, 0.75, 1 - m), y, end, p, ink) + p


def handwritten(c, rng, m, ink):
    p = u(rng, 0.045, 0.07)
    if rng.random() < 0.5:  # ruled paper
        for y in np.arange(m + p, 1 - m, p):
            c.line(0.02, y, 0.98, y, 200, 0.002)
    y = m + p
    while y < 1 - m:
        x0 = m + u(rng, 0.0, 0.05)
        scribble(c, rng, x0, u(rng, 0.5, 1 - m), y, p * 0.6, ink, u(rng, 0.003, 0.007))
        y += p * u(rng, 0.9, 1.2)


def advertisement(c, rng, m, ink):
    if rng.random() < 0.5:
        c.rect(0, 0, 1, u(rng, 0.2, 0.5), int(rng.integers(30, 120)))  # dark banner
    heading(c, rng, m, u(rng, 0.12, 0.3), u(rng, 0.06, 0.1), 255 if rng.random() < 0.4 else ink,
            n=int(rng.integers(3, 8)), center=True)
    for _ in range(int(rng.integers(1, 3))):
        x, y, w = u(rng, m, 0.45), u(rng, 0.35, 0.6), u(rng, 0.25, 0.45)
        block = (smooth_noise(rng, c.p(w), 5)[..., 0] * 200 + 20).astype(np.uint8)
        y0, x0 = c.p(y), c.p(x)
        h = min(block.shape[0], c.px - y0)
        wpx = min(block.shape[1], c.px - x0)
        c.img[y0:y0 + h, x0:x0 + wpx] = block[:h, :wpx]
    for _ in range(int(rng.integers(1, 4))):
        heading(c, rng, m, u(rng, 0.75, 0.95), u(rng, 0.025, 0.045), ink, center=True)


def scientific_report(c, rng, m, ink):
    heading(c, rng, m, m + 0.04, 0.03, ink)
    p = u(rng, 0.018, 0.026)
    y = m + 0.07
    while y < 1 - m - 0.05:
        if rng.random() < 0.3:
            heading(c, rng, m, y + p, p * 0.7, ink, n=int(rng.integers(4, 10)))
            y += 1.5 * p
        if rng.random() < 0.15:
            table(c, rng, m + 0.1, 1 - m - 0.1, y, y + 0.15, 5, 4, ink, numbers=True)
            y += 0.17
        y = paragraph(c, rng, m, 1 - m, y, min(y + p * int(rng.integers(4, 10)), 1 - m), p, ink, indent=0.03)


def scientific_publication(c, rng, m, ink):
    heading(c, rng, m, m + 0.05, 0.035, ink, center=True)
    words(c, rng, 0.3, 0.7, m + 0.09, 0.012, ink)  # authors
    p = u(rng, 0.014, 0.02)
    gutter = u(rng, 0.02, 0.04)
    top = m + 0.12
    for x0, x1 in ((m, 0.5 - gutter / 2), (0.5 + gutter / 2, 1 - m)):
        y = top
        if rng.random() < 0.35:
            c.rect(x0, y, x1, y + 0.2, ink, thickness=0.003)
            scribble(c, rng, x0 + 0.02, x1 - 0.02, y + 0.15, 0.08, ink, 0.003)  # a plotted curve
            y += 0.23
        paragraph(c, rng, x0, x1, y, 1 - m, p, ink)


def specification(c, rng, m, ink):
    heading(c, rng, m, m + 0.04, 0.03, ink)
    p = u(rng, 0.025, 0.035)
    y = m + 0.08
    split = u(rng, 0.3, 0.45)
    while y < 1 - m:
        c.text(m, y, p * 0.45, rng, int(rng.integers(1, 3)), ink)  # item number
        words(c, rng, m + 0.06, split, y, p * 0.4, ink, fill=u(rng, 0.4, 1.0))
        words(c, rng, split + 0.03, 1 - m, y, p * 0.4, ink, fill=u(rng, 0.2, 0.9))
        y += p
        if rng.random() < 0.15:
            c.line(m, y - p * 0.4, 1 - m, y - p * 0.4, ink, 0.002)


def file_folder(c, rng, m, ink):
    c.img[:] = np.uint8(int(rng.integers(150, 210)))  # folder board is darker than paper
    tab = u(rng, 0.1, 0.6)
    c.poly(np.array([[0.03, 0.15], [tab, 0.15], [tab + 0.04, 0.05], [tab + 0.3, 0.05], [tab + 0.34, 0.15],
                     [0.97, 0.15], [0.97, 0.97], [0.03, 0.97]]), ink, thickness=0.006)
    x, y = tab + 0.04, 0.07
    c.rect(x, y, x + 0.26, y + 0.06, 235)  # sticker label
    words(c, rng, x + 0.01, x + 0.25, y + 0.045, 0.02, ink)
    if rng.random() < 0.5:
        heading(c, rng, u(rng, 0.1, 0.5), u(rng, 0.3, 0.8), 0.05, ink, n=int(rng.integers(3, 8)))


def news_article(c, rng, m, ink):
    heading(c, rng, m, m + 0.06, u(rng, 0.05, 0.07), ink, n=int(rng.integers(6, 12)))
    c.line(m, m + 0.08, 1 - m, m + 0.08, ink, 0.005)
    cols = int(rng.integers(3, 5))
    xs = np.linspace(m, 1 - m, cols + 1)
    p = u(rng, 0.014, 0.02)
    photo_col = int(rng.integers(cols))
    for j in range(cols):
        y = m + 0.1
        if j == photo_col and rng.random() < 0.7:
            h = u(rng, 0.15, 0.3)
            c.rect(xs[j] + 0.01, y, xs[j + 1] - 0.01, y + h, int(rng.integers(60, 160)))
            y += h + 0.01
        paragraph(c, rng, xs[j] + 0.01, xs[j + 1] - 0.01, y, 1 - m, p, ink)


def budget(c, rng, m, ink):
    heading(c, rng, m, m + 0.04, 0.03, ink, center=rng.random() < 0.5)
    top = m + 0.08
    bottom = u(rng, 0.75, 1 - m)
    rows = int(rng.integers(10, 22))
    table(c, rng, m, 1 - m, top, bottom, rows, int(rng.integers(3, 7)), ink, numbers=True)
    c.line(0.5, bottom + 0.01, 1 - m, bottom + 0.01, ink, 0.004)  # totals rule


def invoice(c, rng, m, ink):
    logo(c, rng, m, m, u(rng, 0.06, 0.09), ink)
    heading(c, rng, 0.6, m + 0.05, 0.035, ink, n=int(rng.integers(5, 8)))
    p = 0.025
    paragraph(c, rng, m, 0.4, m + 0.12, m + 0.12 + 4 * p, p, ink)
    paragraph(c, rng, 0.55, 1 - m, m + 0.12, m + 0.12 + 3 * p, p, ink)
    top = u(rng, 0.35, 0.45)
    bottom = u(rng, 0.65, 0.8)
    table(c, rng, m, 1 - m, top, bottom, int(rng.integers(4, 10)), 4, ink, numbers=True)
    c.rect(0.6, bottom + 0.03, 1 - m, bottom + 0.09, ink, thickness=0.004)  # total box
    words(c, rng, 0.62, 1 - m - 0.02, bottom + 0.07, 0.02, ink)


def presentation(c, rng, m, ink):
    if rng.random() < 0.6:
        c.rect(0.03, 0.03, 0.97, 0.97, ink, thickness=0.008)
    heading(c, rng, m, m + 0.09, u(rng, 0.05, 0.08), ink, n=int(rng.integers(4, 9)), center=rng.random() < 0.5)
    y = m + 0.2
    if rng.random() < 0.35:  # bar chart
        n = int(rng.integers(3, 7))
        for i, h in enumerate(rng.uniform(0.1, 0.45, n)):
            x = 0.2 + i * 0.6 / n
            c.rect(x, 0.85 - h, x + 0.6 / n * 0.7, 0.85, int(rng.integers(0, 140)))
        c.line(0.15, 0.85, 0.85, 0.85, ink, 0.004)
        return
    p = u(rng, 0.07, 0.11)
    while y < 1 - m - 0.03:
        c.circle(m + 0.03, y - p * 0.2, 0.012, ink)
        words(c, rng, m + 0.07, 1 - m, y, p * 0.35, ink, fill=u(rng, 0.4, 1.0), gap=0.02)
        y += p


def questionnaire(c, rng, m, ink):
    heading(c, rng, m, m + 0.04, 0.03, ink, center=True)
    y = m + 0.1
    p = u(rng, 0.022, 0.03)
    while y < 1 - m - 0.05:
        c.text(m, y, p * 0.5, rng, int(rng.integers(1, 3)), ink)
        words(c, rng, m + 0.06, 1 - m, y, p * 0.45, ink, fill=u(rng, 0.5, 1.0))
        y += p * 1.3
        options = int(rng.integers(2, 6))
        vertical = rng.random() < 0.4
        for k in range(options):
            x = m + 0.08 + (0 if vertical else k * (0.8 - m) / options)
            c.rect(x, y - p * 0.6, x + p * 0.6, y, ink, thickness=0.003)
            words(c, rng, x + p, x + 0.12, y, p * 0.4, ink, fill=0.8)
            if vertical:
                y += p * 1.1
        y += p * (0.6 if vertical else 1.6)


def resume(c, rng, m, ink):
    heading(c, rng, m, m + 0.05, 0.045, ink, n=int(rng.integers(6, 12)), center=rng.random() < 0.6)
    words(c, rng, 0.3, 0.7, m + 0.09, 0.012, ink)  # contact line
    y = m + 0.13
    p = u(rng, 0.02, 0.027)
    while y < 1 - m - 0.05:
        heading(c, rng, m, y + p, p * 0.75, ink, n=int(rng.integers(5, 10)))
        c.line(m, y + p * 1.3, 1 - m, y + p * 1.3, ink, 0.002)
        y += p * 2
        for _ in range(int(rng.integers(2, 5))):
            y += p
            c.circle(m + 0.05, y - p * 0.2, 0.006, ink)
            words(c, rng, m + 0.08, 0.72, y, p * 0.42, ink, fill=u(rng, 0.5, 1.0))
            words(c, rng, 0.8, 1 - m, y, p * 0.42, ink, fill=0.9)  # dates column
        y += p


def memo(c, rng, m, ink):
    heading(c, rng, m, m + 0.05, u(rng, 0.04, 0.06), ink, n=int(rng.integers(4, 10)))
    p = u(rng, 0.022, 0.03)
    y = m + 0.08
    for _ in range(int(rng.integers(3, 5))):  # TO / FROM / DATE / RE
        y += p * 1.2
        c.text(m, y, p * 0.5, rng, int(rng.integers(2, 5)), ink, bold=True)
        words(c, rng, m + 0.15, u(rng, 0.4, 0.8), y, p * 0.45, ink)
    y += p
    c.line(m, y, 1 - m, y, ink, 0.005)
    while y < 0.85:
        y = paragraph(c, rng, m, 1 - m, y, min(y + p * int(rng.integers(2, 7)), 1 - m), p, ink) + p * 0.5


LAYOUTS = (letter, form, email, handwritten, advertisement, scientific_report, scientific_publication,
           specification, file_folder, news_article, budget, invoice, presentation, questionnaire, resume, memo)


# Share of pages drawn with another class's layout, like RVL-CDIP's ambiguous and mislabelled pages; it caps
# any classifier near 1 - 0.08 * 15/16 = 92.5% and keeps the mini nets below the 95% ceiling.
AMBIGUOUS = 0.08


def decorate(c, rng, ink):
    """Elements any office page may carry, whatever its class: fax header, footer, stamp, margin notes,
    punch holes, a dark scanner edge, a cut-off blank bottom."""
    if rng.random() < 0.3:
        words(c, rng, 0.02, 0.98, 0.025, 0.012, ink, fill=u(rng, 0.5, 1.0))
    if rng.random() < 0.4:
        words(c, rng, u(rng, 0.3, 0.5), 0.7, 0.975, 0.012, ink, fill=u(rng, 0.1, 0.5))
    if rng.random() < 0.15:
        x, y = rng.uniform(0.3, 0.8, 2)
        c.rect(x, y, x + 0.18, y + 0.08, int(rng.integers(60, 160)), thickness=0.006)
        c.text(x + 0.02, y + 0.06, 0.04, rng, 5, int(rng.integers(60, 160)), bold=True)
    if rng.random() < 0.2:
        x, y = rng.uniform(0.05, 0.7), rng.uniform(0.1, 0.9)
        scribble(c, rng, x, x + u(rng, 0.1, 0.3), y, 0.04, ink, 0.004)
    if rng.random() < 0.1:
        for y in (0.2, 0.5, 0.8):
            c.circle(0.03, y, 0.015, 40)
    if rng.random() < 0.15:
        edge = int(rng.integers(4))
        w = u(rng, 0.01, 0.05)
        box = [(0, 0, w, 1), (1 - w, 0, 1, 1), (0, 0, 1, w), (0, 1 - w, 1, 1)][edge]
        c.rect(*box, 10)
    if rng.random() < 0.25:  # the document ends early: blank the bottom
        c.rect(0, u(rng, 0.45, 0.85), 1, 0.95, int(c.img[c.px - 2, c.px // 2]))


def office_page(label: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """A grey office scan of class `label` (RVL_CDIP_CLASSES order), size x size uint8."""
    px = 2 * size
    paper = int(rng.integers(185, 250))
    c = Canvas(px, np.full((px, px), paper, np.uint8))
    layout = LAYOUTS[int(rng.integers(len(LAYOUTS)))] if rng.random() < AMBIGUOUS else LAYOUTS[label]
    ink = int(rng.integers(0, 90))
    layout(c, rng, u(rng, 0.04, 0.14), ink)
    decorate(c, rng, ink)
    if rng.random() < 0.3:  # out-of-focus scan
        c.img[:] = cv2.GaussianBlur(c.img, (0, 0), u(rng, 0.5, 1.5) * px / 128)
    dust, noise_sigma = u(rng, 0.0, 0.006), u(rng, 2.0, 14.0)
    pixels = np.random.default_rng(rng.integers(2**63))  # size-dependent draws last, so layouts match across sizes
    c.img[pixels.random((px, px)) < dust] = 0  # scanner dust
    return finish(c.img, size, rng, pixels, skew_deg=1.5, shift=0.02, noise_sigma=noise_sigma, border_value=paper)


# ---- mini-docs-b: historical pages, a different domain (stand-in for ANDOC) ----

HISTORICAL_CLASSES = ("census sheet", "parish register", "handwritten letter", "printed notice", "ledger",
                      "deed", "index card", "map")


def census_sheet(c, rng, m, ink):
    table(c, rng, 0.03, 0.97, u(rng, 0.08, 0.15), 0.97, int(rng.integers(18, 30)), int(rng.integers(6, 12)),
          ink, header=True)


def parish_register(c, rng, m, ink):
    for k in range(int(rng.integers(2, 4))):  # entries: marginal name + script block
        y0 = m + k * 0.3
        scribble(c, rng, m, 0.25, y0 + 0.05, 0.04, ink, 0.004)
        c.line(0.28, y0, 0.28, y0 + 0.28, ink, 0.003)
        for y in np.arange(y0 + 0.05, y0 + 0.28, 0.045):
            scribble(c, rng, 0.31, 1 - m, y, 0.03, ink, 0.003)


def handwritten_letter(c, rng, m, ink):
    scribble(c, rng, 0.55, 0.9, m + 0.05, 0.04, ink, 0.004)
    y = m + 0.15
    while y < 0.85:
        scribble(c, rng, m + (0.08 if rng.random() < 0.2 else 0.0), 1 - m, y, 0.035, ink, 0.004)
        y += u(rng, 0.05, 0.07)


def printed_notice(c, rng, m, ink):
    c.rect(0.04, 0.04, 0.96, 0.96, ink, thickness=0.006)
    c.rect(0.06, 0.06, 0.94, 0.94, ink, thickness=0.002)
    y = 0.18
    for h in sorted(rng.uniform(0.03, 0.08, int(rng.integers(3, 6))), reverse=True):
        heading(c, rng, m, y, h, ink, n=int(rng.integers(4, 12)), center=True)
        y += h * 2.2
    paragraph(c, rng, 0.15, 0.85, y, 0.9, 0.025, ink)


def ledger(c, rng, m, ink):
    for x in (0.12, 0.7, 0.82):
        c.line(x, 0.03, x, 0.97, ink, 0.003)
    for y in np.arange(0.08, 0.97, u(rng, 0.035, 0.05)):
        c.line(0.03, y, 0.97, y, 150, 0.0015)
        if rng.random() < 0.8:
            scribble(c, rng, 0.14, u(rng, 0.3, 0.68), y - 0.005, 0.025, ink, 0.003)
            scribble(c, rng, 0.72, 0.8, y - 0.005, 0.02, ink, 0.003)


def deed(c, rng, m, ink):
    c.text(m, m + 0.12, 0.1, rng, 1, ink, bold=True)  # decorated initial
    y = m + 0.05
    while y < 0.8:
        scribble(c, rng, m + (0.12 if y < m + 0.15 else 0.0), 1 - m, y, 0.025, ink, 0.003)
        y += 0.035
    c.circle(0.75, 0.88, 0.05, ink, thickness=0.006)  # seal


def index_card(c, rng, m, ink):
    c.rect(0.1, 0.25, 0.9, 0.75, 225)
    c.rect(0.1, 0.25, 0.9, 0.75, ink, thickness=0.003)
    c.line(0.1, 0.33, 0.9, 0.33, ink, 0.004)
    heading(c, rng, 0.13, 0.31, 0.04, ink, n=int(rng.integers(4, 10)))
    for y in np.arange(0.4, 0.72, 0.05):
        scribble(c, rng, 0.14, u(rng, 0.5, 0.86), y, 0.03, ink, 0.003)


def map_page(c, rng, m, ink):
    for _ in range(int(rng.integers(3, 7))):  # coast lines / rivers
        n = 12
        pts = np.cumsum(rng.normal(0, 0.06, (n, 2)), axis=0) + rng.uniform(0.2, 0.8, 2)
        c.poly(np.clip(pts, 0.03, 0.97), ink, closed=rng.random() < 0.5, thickness=0.004)
    for _ in range(int(rng.integers(4, 10))):
        x, y = rng.uniform(0.1, 0.85, 2)
        c.circle(x, y, 0.008, ink)
        c.text(x + 0.015, y, 0.025, rng, int(rng.integers(3, 8)), ink)
    c.rect(0.03, 0.03, 0.97, 0.97, ink, thickness=0.005)


HISTORICAL_LAYOUTS = (census_sheet, parish_register, handwritten_letter, printed_notice, ledger, deed,
                      index_card, map_page)


def historical_page(label: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """A grey historical page of class `label` (HISTORICAL_CLASSES order): aged uneven paper, faded ink,
    bleed-through from the back, stains, a darker vignette."""
    px = 2 * size
    paper = 120 + 90 * smooth_noise(rng, px, 6)[..., 0]  # uneven, darker than office paper
    back = Canvas(px, np.zeros((px, px), np.uint8))
    HISTORICAL_LAYOUTS[int(rng.integers(len(HISTORICAL_LAYOUTS)))](back, rng, 0.08, 255)
    c = Canvas(px, np.full((px, px), 255, np.uint8))
    HISTORICAL_LAYOUTS[label](c, rng, u(rng, 0.05, 0.1), 0)
    ink_strength = u(rng, 0.5, 0.9)  # faded ink
    img = paper * (1 - ink_strength * (255 - c.img) / 255.0) - 25 * cv2.flip(back.img, 1) / 255.0
    yy, xx = np.mgrid[0:px, 0:px] / px - 0.5
    img *= 1 - u(rng, 0.2, 0.5) * (xx ** 2 + yy ** 2)
    for _ in range(int(rng.integers(0, 3))):  # stains
        x, y, r = rng.uniform(0.1, 0.9), rng.uniform(0.1, 0.9), rng.uniform(0.05, 0.15)
        img *= 1 - 0.25 * np.exp(-((xx + 0.5 - x) ** 2 + (yy + 0.5 - y) ** 2) / r ** 2)
    page = np.clip(img, 0, 255).astype(np.uint8)
    noise_sigma = u(rng, 3.0, 10.0)
    pixels = np.random.default_rng(rng.integers(2**63))
    return finish(page, size, rng, pixels, skew_deg=2.5, shift=0.03, noise_sigma=noise_sigma, border_value=0)
