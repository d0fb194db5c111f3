"""What each figure shows: its datasets, nets, families, the measured data and how lines and panels are laid out.

fig1 / fig7  (Figs. 1 and 7) one panel per family: the family's widest-range net (zoo.widest) against
             Baseline 1, equivariance and invariance accuracy (1 - L_err) over the family's grid; colours as
             the captions: blue/green the net's equivariance/invariance, red/black the baseline's. The
             baseline's crop panel is measured on the widest Crop net's resize side. fig1 defaults to
             ILSVRC, fig7 to RVL-CDIP.
fig2         (Fig. 2) training range vs robustness for select families (default noise and rotation):
             every net of the family and the baseline, one panel for equivariance, one for invariance.
fig8 / fig9  (Figs. 8, 9) every net of some families (fig8: colour jitter, elastic, crop, blur, noise;
             fig9: mirror, perspective, rotation, shear), two columns (equivariance, invariance) per
             dataset: RVL-CDIP first, then ILSVRC (the captions' layout).
fig10        (Fig. 10) RVL-CDIP's widest nets measured on the second document domain (ANDOC; its
             stand-in mini-docs-b at mini/smoke scale) with 1 - L_L2, beside the same nets on RVL-CDIP.
             Only L_L2: the nets do not classify ANDOC's classes.
"""
from __future__ import annotations

from dataclasses import dataclass

from convert.errors import UserError
from replicate import paper, zoo

MEASURED_FAMILIES = zoo.FAMILIES[1:]       # the nine transform families (the baseline has no grid)
FIG8_FAMILIES = ("color_jitter", "elastic", "crop", "blur", "noise")
FIG9_FAMILIES = ("mirror", "perspective", "rotation", "shear")
FIG2_FAMILIES = ("noise", "rotation")
CROSS_DOMAIN = {"rvl-cdip": "andoc"}       # Fig. 10: trained on -> measured on


@dataclass(frozen=True)
class Spec:
    """A figure: name, paper reference, layout kind, default datasets and families, plotted metric."""
    name: str
    figure: str                 # the paper's figure number(s) its claims are tagged with
    layout: str                 # "widest" (fig1/7/10) or "ranges" (fig2/8/9)
    datasets: tuple[str, ...]   # default --dataset
    families: tuple[str, ...]
    metric: str                 # "accuracy" or "l2"
    cross_domain: bool = False
    title: str = ""


SPECS = {s.name: s for s in (
    Spec("fig1", "1", "widest", ("ilsvrc",), MEASURED_FAMILIES, "accuracy",
         title="Invariance and equivariance accuracy (Fig. 1)"),
    Spec("fig2", "2", "ranges", ("rvl-cdip",), FIG2_FAMILIES, "accuracy",
         title="Training range vs robustness (Fig. 2)"),
    Spec("fig7", "7", "widest", ("rvl-cdip",), MEASURED_FAMILIES, "accuracy",
         title="Invariance and equivariance accuracy (Fig. 7)"),
    Spec("fig8", "8", "ranges", paper.DATASETS, FIG8_FAMILIES, "accuracy",
         title="Every network of some families (Fig. 8)"),
    Spec("fig9", "9", "ranges", paper.DATASETS, FIG9_FAMILIES, "accuracy",
         title="Every network of some families (Fig. 9)"),
    Spec("fig10", "10", "widest", ("rvl-cdip",), MEASURED_FAMILIES, "l2", cross_domain=True,
         title="Cross-dataset invariance and equivariance, 1 - L_L2 (Fig. 10)"),
)}


def get_spec(name: str) -> Spec:
    """The named figure; UserError listing the valid ones."""
    if name not in SPECS:
        raise UserError(f"unknown figure {name!r}; expected one of {', '.join(SPECS)}")
    return SPECS[name]


def check_datasets(spec: Spec, names: list[str] | None) -> tuple[str, ...]:
    """--dataset values for this figure (default: the figure's); UserError listing the valid ones."""
    valid = tuple(CROSS_DOMAIN) if spec.cross_domain else paper.DATASETS
    chosen = tuple(names) if names else spec.datasets
    for name in chosen:
        if name not in valid:
            raise UserError(f"{spec.name}: unknown dataset {name!r}; expected one of {', '.join(valid)}")
    return chosen


def check_families(spec: Spec, names: list[str] | None) -> tuple[str, ...]:
    """--families values (default: the figure's); UserError listing the valid ones."""
    if not names:
        return spec.families
    for name in names:
        if name not in MEASURED_FAMILIES:
            raise UserError(f"{spec.name}: unknown family {name!r}; expected one of {', '.join(MEASURED_FAMILIES)}")
    return tuple(names)


@dataclass(frozen=True, eq=False)   # hashed by identity: a zoo.Net holds a dict
class Request:
    """One measured curve: a net of `dataset` on a family's grid, measured on `measured_on` data."""
    dataset: str
    net: zoo.Net
    family: str
    measured_on: str
    measured_resize: int | None = None   # crop grids: the resize side (paper units) measured


def requests(spec: Spec, datasets: tuple[str, ...], families: tuple[str, ...]) -> list[Request]:
    """Every curve the figure needs."""
    out = []
    for dataset in datasets:
        baseline = zoo.get("baseline_1", dataset)
        domains = (dataset, CROSS_DOMAIN[dataset]) if spec.cross_domain else (dataset,)
        for family in families:
            if spec.layout == "widest":
                widest = zoo.widest(dataset, family)
                resize = int(widest.params["resize"]) if family == "crop" else None
                out += [Request(dataset, widest, family, d, resize) for d in domains]
                if not spec.cross_domain:
                    out.append(Request(dataset, baseline, family, dataset, resize))
            else:
                out += [Request(dataset, n, family, dataset) for n in (baseline, *zoo.nets(dataset, family))]
    return out
