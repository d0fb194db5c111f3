"""Tables 2 and 4's rows as replicate.measure.phi Views: the fixed transform g of each row, scaled to the net.

A row's `measure` / `measure_params` (paper units at 227 px) become a View of the table's family, through the
family's size rule. Where the transform is a setting of the family's measurement grid (Figs. 7-9) the grid's
own setting is used, seed included, so the row measures exactly the field the figures measure; otherwise (noise
sigma 8 and 16, the vertical shear) the parameters are scaled by the size rule and the random fields use the
grid's first seed.

  none          the untransformed reference (row 0); the Crop family's reference is the centre window
  brightness    shift=v                    color_jitter shift (v,) on all channels
  crop          position=center|upper_left|bottom_right   the window at grid offsets (2,2), (0,0), (4,4) of the
                                           net's resize S (Crop 256: "center from 256x256", "upper left corner")
  elastic       sigma, alpha               one fixed displacement field
  blur          sigma;  noise sigma        one fixed kernel / one fixed noise field (all channels, as measured)
  mirror        flip_ud, flip_lr (0/1)     flip_ud is the paper's "Horz." (rows reversed), flip_lr "Vert."
  perspective   unlabelled=k               the k-th mildest warp of the measurement grid. The table leaves
                                           these rows unlabelled; its numbers show no cost over the
                                           untransformed row (RVL-CDIP +0.14 / +0.10, ILSVRC +0.72 / +0.42,
                                           where rotation -10 costs 0.9 points), i.e. mild warps, and the two
                                           mildest of the grid (offset std 0.0002, 0.0004) are the nearest reading
  rotation      deg;   shear  orientation=h|v, deg
"""
from __future__ import annotations

from convert.errors import UserError
from replicate import zoo
from replicate.config import Scale
from replicate.experiment_data import crop_side
from replicate.measure.phi import View
from replicate.paper import FinetuneRow
from replicate.transforms import FAMILIES, REFERENCE_SIZE
from replicate.transforms.families import MEASUREMENT_SEED

CROP_POSITIONS = {"upper_left": (0, 0), "center": (2, 2), "bottom_right": (4, 4)}   # (row, column) of the 5x5 grid
FLIPS = {(0, 0): "none", (1, 0): "flip_ud", (0, 1): "flip_lr", (1, 1): "flip_both"}


def _paper_params(row: FinetuneRow) -> dict:
    """The row's transform as the family's apply() parameters at 227 px (perspective: by grid index)."""
    p, where = row.measure_params, f"{row.net} row {row.row} ({row.measure})"
    try:
        if row.measure == "brightness":
            return {"shift": (int(p["shift"]),)}
        if row.measure == "elastic":
            return {"alpha": float(p["alpha"]), "sigma": float(p["sigma"])}
        if row.measure == "blur":
            return {"sigma": float(p["sigma"])}
        if row.measure == "noise":
            return {"sigma": float(p["sigma"]), "per_channel": False}
        if row.measure == "mirror":
            return {"flip": FLIPS[(int(p["flip_ud"]), int(p["flip_lr"]))]}
        if row.measure == "rotation":
            return {"angle": float(p["deg"])}
        if row.measure == "shear":
            return {"angle": float(p["deg"]), "orientation": str(p["orientation"])}
    except (KeyError, ValueError) as e:
        raise UserError(f"{where}: bad measure_params {dict(p)} ({e})") from None
    raise UserError(f"{where}: unknown measure {row.measure!r} for family {row.family!r}")


def row_view(row: FinetuneRow, net: zoo.Net, scale: Scale) -> View:
    """The View a table row measures (row 0: the reference), at the scale's input size."""
    family, size = FAMILIES[row.family], scale.input_size
    side = crop_side(net, scale)
    if row.family == "crop":
        config = {"resize": int(net.params["resize"])}
        position = "center" if row.measure == "none" else str(row.measure_params.get("position"))
        if position not in CROP_POSITIONS:
            raise UserError(f"{row.net} row {row.row}: crop position {position!r}; expected one of "
                            f"{', '.join(CROP_POSITIONS)}")
        r, c = CROP_POSITIONS[position]
        setting = family.measurement_grid(size, config)[5 * r + c]
        return View(side, window=(setting.params["x"], setting.params["y"]))
    if row.measure == "none":
        return View(side)
    if row.measure == "perspective":
        k = int(row.measure_params.get("unlabelled", 0))
        grid = family.measurement_grid(size)
        if not 1 <= k <= len(grid):
            raise UserError(f"{row.net} row {row.row}: perspective unlabelled={k}; expected 1..{len(grid)}")
        return View(side, row.family, dict(grid[k - 1].params))
    wanted = _paper_params(row)
    at_227 = family.measurement_grid(REFERENCE_SIZE)
    for i, setting in enumerate(at_227):
        if all(setting.params.get(key) == value for key, value in wanted.items()):
            return View(side, row.family, dict(family.measurement_grid(size)[i].params))
    seeded = {"seed": MEASUREMENT_SEED} if any(p.name == "seed" for p in family.params) else {}
    return View(side, row.family, family.scaled({**wanted, **seeded}, size))


def family_rows(table: tuple[FinetuneRow, ...], family: str) -> list[FinetuneRow]:
    """A family's rows in order (row 0 first)."""
    return sorted((r for r in table if r.family == family), key=lambda r: r.row)
