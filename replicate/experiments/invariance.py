"""Figs. 1, 2, 7-10: invariance and equivariance of the zoo's fc7 (Eqs. 2, 8) over the measurement grids.

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

Outputs: OUT/figures/<scale>/<figure>-<datasets>.{png,pdf,csv,json}, each written atomically; the JSON
sidecar records the resolved options, the measurement configuration and the claim checks; the CSV holds
every plotted value with the raw metrics.
"""
from __future__ import annotations

import csv
import io
from dataclasses import dataclass

from tqdm import tqdm

from convert.errors import UserError
from convert.protoio import atomic_write
from replicate import zoo
from replicate.claims import Evidence
from replicate.config import FITTER_SEED, MEASURE_CODE, code_fingerprint
from replicate.experiments import register
from replicate.experiments.base import TRAINABLE, Context, Experiment, write_sidecar
from replicate.figures.plot import Line, Panel, draw
from replicate.measure import study
from replicate.measure.phi import Source, phi, views
from replicate.transforms import FAMILIES

MEASURED_FAMILIES = zoo.FAMILIES[1:]       # the nine transform families (the baseline has no grid)
FIG8_FAMILIES = ("color_jitter", "elastic", "crop", "blur", "noise")
FIG9_FAMILIES = ("mirror", "perspective", "rotation", "shear")
FIG2_FAMILIES = ("noise", "rotation")
CROSS_DOMAIN = {"rvl-cdip": "andoc"}       # Fig. 10: trained on -> measured on


@dataclass(frozen=True)
class Spec:
    """A figure: name, paper reference, layout kind, default datasets and families, plotted metric."""
    name: str
    figure: str                 # the paper's figure number its claims are tagged with
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
    Spec("fig8", "8", "ranges", TRAINABLE, FIG8_FAMILIES, "accuracy",
         title="Every network of some families (Fig. 8)"),
    Spec("fig9", "9", "ranges", TRAINABLE, FIG9_FAMILIES, "accuracy",
         title="Every network of some families (Fig. 9)"),
    Spec("fig10", "10", "widest", ("rvl-cdip",), MEASURED_FAMILIES, "l2", cross_domain=True,
         title="Cross-dataset invariance and equivariance, 1 - L_L2 (Fig. 10)"),
)}


def get_spec(name: str) -> Spec:
    """The named figure; UserError listing the valid ones."""
    if name not in SPECS:
        raise UserError(f"unknown figure {name!r}; expected one of {', '.join(SPECS)}")
    return SPECS[name]


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


Curves = dict[Request, list[dict]]


def source(ctx: Context, r: Request) -> Source:
    """What a curve's phi is computed from."""
    return ctx.source(r.dataset, r.net, r.measured_on)


def _measure_task(task: tuple) -> tuple[int, list[dict]]:
    index, src, family, fitter, seed, resize = task
    return index, study.measure(src, family, fitter, seed, resize)


def measure(ctx: Context, needed: list[Request]) -> Curves:
    """Every requested curve, setting by setting (stored results are read, missing ones computed).

    The reference phi of every net (shared by its curves) is computed first, here; then the curves are
    measured by the run's executor in processes of one thread each (as training: small nets scale better
    across processes; the store's claims keep two processes from computing one job).
    """
    scale, options = ctx.scale, ctx.options
    tasks = [(i, source(ctx, r), r.family, options.fitter, FITTER_SEED, r.measured_resize) for i, r in enumerate(needed)]
    sizes = [len(views(r.family, r.net, scale, r.measured_resize)[1]) for r in needed]
    bar = tqdm(total=sum(sizes) + len(needed), desc=f"{ctx.experiment.name}: measuring", unit="setting",
               disable=not options.progress)
    for i, src, family, *_ in tasks:
        ref = views(family, src.net, scale, needed[i].measured_resize)[0]
        fit_split, limit, report_split = study.splits(src)
        phi(src, ref, fit_split, limit)
        phi(src, ref, report_split)
        bar.update()
    curves: Curves = {}
    # In-process with one local worker (no spawn for a single process), else one executor task per curve
    in_process = options.executor == "local" and min(options.workers, len(tasks)) <= 1
    for i, rows in (map(_measure_task, tasks) if in_process else ctx.executor().map(_measure_task, tasks)):
        curves[needed[i]] = rows
        bar.update(sizes[i])
    bar.close()
    return {r: curves[r] for r in needed}


def value(row: dict, line: str, metric: str, l2: str) -> float:
    """The plotted number: accuracy (1 - L_err) or 1 - L_L2 with the chosen normalisation."""
    if metric == "accuracy":
        return row[line]["accuracy"]
    return 1.0 - row[line][f"l2_{l2.replace('-', '_')}"]


def panels(spec: Spec, curves: Curves, l2: str) -> tuple[list[Panel], int]:
    """The figure's panels and column count, laid out as the paper's."""
    ylabel = "accuracy (1 - L_err)" if spec.metric == "accuracy" else f"1 - L_L2 ({l2})"
    out: list[Panel] = []
    if spec.layout == "widest":
        families = list(dict.fromkeys(r.family for r in curves))
        for letter, family in zip("abcdefghijklmnop", families):
            mine = [r for r in curves if r.family == family]
            panel = Panel(f"({letter}) {FAMILIES[family].title}", [row["label"] for row in curves[mine[0]]], ylabel,
                          "measured transform")
            for r in mine:
                for line, colour in _colours(spec, r):
                    panel.lines.append(Line(_legend(spec, r, line), [value(row, line, spec.metric, l2)
                                                                    for row in curves[r]], *colour))
            out.append(panel)
        return out, 3
    datasets = list(dict.fromkeys(r.dataset for r in curves))
    for family in dict.fromkeys(r.family for r in curves):
        for dataset in datasets:
            mine = sorted((r for r in curves if r.family == family and r.dataset == dataset),
                          key=lambda r: r.net.range_rank)
            for line in ("equivariance", "invariance"):
                panel = Panel(f"{FAMILIES[family].title}, {dataset}: {line}",
                              [row["label"] for row in curves[mine[0]]], ylabel, "measured transform")
                for i, r in enumerate(mine):   # sorted by range: lighter is wider (nets of equal rank differ)
                    colour = "black" if r.net.family == "baseline" else _ramp(i / max(1, len(mine) - 1))
                    panel.lines.append(Line(r.net.name, [value(row, line, spec.metric, l2) for row in curves[r]],
                                            colour, "--" if r.net.family == "baseline" else "-"))
                out.append(panel)
    return out, 2 * len(datasets)


def _colours(spec: Spec, r: Request) -> list[tuple[str, tuple[str, str]]]:
    """The captions' colours: net blue (equivariance) / green (invariance), baseline red / black."""
    if spec.cross_domain:
        style = "-" if r.measured_on != r.dataset else ":"
        return [("equivariance", ("tab:blue", style)), ("invariance", ("tab:green", style))]
    if r.net.family == "baseline":
        return [("equivariance", ("tab:red", "-")), ("invariance", ("black", "-"))]
    return [("equivariance", ("tab:blue", "-")), ("invariance", ("tab:green", "-"))]


def _legend(spec: Spec, r: Request, line: str) -> str:
    where = f" on {r.measured_on}" if spec.cross_domain else ""
    return f"{r.net.name}{where}: {line}"


def _ramp(fraction: float) -> str:
    import matplotlib
    return matplotlib.colors.to_hex(matplotlib.colormaps["viridis"](0.15 + 0.75 * fraction))


def csv_text(spec: Spec, curves: Curves, l2: str) -> str:
    """Every plotted value (one row per curve point and line) with the raw metrics behind it."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["figure", "dataset", "measured_on", "family", "net", "net_name", "line", "index", "setting",
                     "plotted_metric", "plotted", "accuracy", "l2_per_neuron", "l2_authors", "map_loss",
                     "untransformed_accuracy"])
    plotted = "accuracy" if spec.metric == "accuracy" else f"1-l2_{l2}"
    for r, rows in curves.items():
        for row in rows:
            for line in ("equivariance", "invariance"):
                s = row[line]
                writer.writerow([spec.name, r.dataset, r.measured_on, r.family, r.net.id, r.net.name, line,
                                 row["index"], row["label"], plotted, f"{value(row, line, spec.metric, l2):.6f}",
                                 f"{s['accuracy']:.6f}", f"{s['l2_per_neuron']:.6f}", f"{s['l2_authors']:.6f}",
                                 f"{s['loss']:.6f}", f"{row['untransformed']['accuracy']:.6f}"])
    return buffer.getvalue()


def _experiment(spec: Spec) -> Experiment:
    """The registry entry of one figure."""
    def needed(ctx: Context) -> list[Request]:
        return requests(spec, ctx.options.datasets, ctx.options.families)

    def inputs(ctx: Context) -> dict[str, set[str]]:
        out: dict[str, set[str]] = {}
        for r in needed(ctx):
            out.setdefault(r.dataset, set()).add(r.net.id)
        return out

    def render(ctx: Context, curves: Curves, checks: list) -> list:
        options = ctx.options
        stem = options.out / "figures" / ctx.scale.name / f"{spec.name}-{'+'.join(options.datasets)}"
        config = {"figure": spec.name, "paper_figure": spec.figure, "datasets": list(options.datasets),
                  "families": list(options.families), "scale": ctx.scale.name, "fitter": options.fitter,
                  "fitter_seed": FITTER_SEED, "test_time_dropout": options.dropout,
                  "phi": "fc7 after relu7 and drop7 at TEST", "l2_normalisation": options.l2,
                  "plotted": spec.metric if spec.metric == "accuracy" else f"1 - L_L2 ({options.l2})",
                  "fit_split/report_split": {f"{r.dataset} on {r.measured_on}": study.splits(source(ctx, r))
                                             for r in curves},
                  "net_seeds": {r.net.id: r.net.seed for r in curves},
                  "measure_code_fingerprint": code_fingerprint(MEASURE_CODE)}
        figure_panels, columns = panels(spec, curves, options.l2)
        footer = (f"scale {ctx.scale.name} ({'proxy: embedded data' if ctx.scale.proxy else 'paper'}), fitter "
                  f"{options.fitter}, dropout {options.dropout}, L2 {options.l2}, data "
                  f"{', '.join(sorted({ctx.data(d).source for r in curves for d in (r.dataset, r.measured_on)}))}, "
                  f"code {config['measure_code_fingerprint']}")
        outputs = draw(figure_panels, columns, spec.title, footer, stem)
        atomic_write(stem.with_suffix(".csv"), csv_text(spec, curves, options.l2).encode())
        return [*outputs, stem.with_suffix(".csv"), write_sidecar(stem.with_suffix(".json"), ctx, checks, **config)]

    return Experiment(
        name=spec.name, paper=f"Fig. {spec.figure}", help=f"{spec.title.rsplit(' (Fig.', 1)[0]}: figure, CSV and claim checks",
        claims=(spec.figure,), datasets=tuple(CROSS_DOMAIN) if spec.cross_domain else TRAINABLE,
        default_datasets=spec.datasets,
        options=("dataset", "families", "scale", "fitter", "dropout", "l2", "out", "data_root", "device", "workers",
                 "executor", "ray_address", "quiet"),
        inputs=inputs, compute=lambda ctx: measure(ctx, needed(ctx)), evidence=lambda ctx, curves: Evidence(curves=curves),
        render=render, families=MEASURED_FAMILIES, default_families=spec.families)


for _spec in SPECS.values():
    register(_experiment(_spec))
