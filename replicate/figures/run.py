"""Make one figure: data, missing nets trained (the Table 3 store), measurements, PNG/PDF/CSV/JSON, claim checks.

Outputs go to OUT/figures/<scale>/<figure>-<datasets>.{png,pdf,csv,json}, each written atomically. The
JSON sidecar records the full configuration (scale, fitter, dropout, L2 normalisation, seeds, code
fingerprint, store) and the claim checks; the CSV holds every plotted value with the raw metrics.
"""
from __future__ import annotations

import csv
import io
import json
import multiprocessing as mp
import os
import time
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from convert.errors import UserError
from convert.protoio import atomic_write
from replicate import pipeline, zoo
from replicate.config import MEASURE_CODE, code_fingerprint, get_scale
from replicate.experiment_data import ExperimentData, data_for
from replicate.figures import claims as claim_checks
from replicate.figures.plot import Line, Panel, draw
from replicate.figures.specs import Request, Spec, requests
from replicate.measure import metrics, study
from replicate.measure.fitters import get_fitter
from replicate.measure.phi import Source, phi, views
from replicate.store import Store
from replicate.training import job_for
from replicate.transforms import FAMILIES

SEED = 0   # seeds the fitters' sample orders and hold-outs


@dataclass(frozen=True)
class Options:
    """The command line of a figure command."""
    scale: str = "mini"
    fitter: str = "fast"
    dropout: str = "caffe"
    l2: str = metrics.DEFAULT_L2
    out: Path = Path("runs")
    data_root: Path | None = None
    device: str = "cpu"
    workers: int | None = None
    progress: bool = True


Curves = dict[Request, list[dict]]


def train_missing(spec: Spec, store: Store, options: Options, data: dict[str, ExperimentData],
                  needed: list[Request]) -> None:
    """Train the nets the figure needs through the Table 3 pipeline; UserError naming any that failed."""
    scale = get_scale(options.scale)
    by_dataset: dict[str, set[str]] = {}
    for r in needed:
        by_dataset.setdefault(r.dataset, set()).add(r.net.id)
    for dataset, ids in by_dataset.items():
        error = None
        try:
            pipeline.collect(store, scale, [dataset], {dataset: data[dataset]}, options.dropout, options.device,
                             options.workers or os.cpu_count() or 1, options.progress, only=ids)
        except Exception as e:   # a worker's failure: name the nets left unfinished and the reason
            error = f"{type(e).__name__}: {e}"
        failed = [i for i in sorted(ids)
                  if not job_for(store, scale, dataset, data[dataset], zoo.get(i, dataset), options.dropout).done]
        if failed or error:
            states = ", ".join(f"{i} ({job_for(store, scale, dataset, data[dataset], zoo.get(i, dataset), options.dropout).state})"
                               for i in failed)
            raise UserError(f"{spec.name}: training failed for {dataset} network(s) {states or sorted(ids)}: "
                            f"{error or 'no result recorded (or numeric code changed while training: it is part of every key)'}"
                            f"; rerun to resume, or `replicate table3 --rebuild ID`")


def measure(spec: Spec, store: Store, options: Options, data: dict[str, ExperimentData],
            needed: list[Request]) -> Curves:
    """Every requested curve, setting by setting (stored results are read, missing ones computed).

    The reference phi of every net (shared by its curves) is computed first, here; then the curves are
    measured in `workers` processes of one thread each (as training: small nets scale better across
    processes, and no two processes ever compute the same store job).
    """
    scale = get_scale(options.scale)
    fitter_seed = SEED
    tasks = [(i, _source(store, options, data, r), r.family, options.fitter, fitter_seed, r.measured_resize)
             for i, r in enumerate(needed)]
    sizes = [len(views(r.family, r.net, scale, r.measured_resize)[1]) for r in needed]
    bar = tqdm(total=sum(sizes) + len(needed), desc=f"{spec.name}: measuring", unit="setting",
               disable=not options.progress)
    for i, source, family, *_ in tasks:
        ref = views(family, source.net, scale, needed[i].measured_resize)[0]
        fit_split, limit, report_split = study.splits(source)
        phi(source, ref, fit_split, limit)
        phi(source, ref, report_split)
        bar.update()
    curves: Curves = {}
    workers = max(1, min(options.workers or os.cpu_count() or 1, len(tasks)))
    if workers == 1:
        results = map(_measure_task, tasks)
    else:
        pool = mp.get_context("spawn").Pool(workers, initializer=pipeline.worker_init)
        results = pool.imap_unordered(_measure_task, tasks)
    for i, rows in results:
        curves[needed[i]] = rows
        bar.update(sizes[i])
    if workers > 1:
        pool.close()
    bar.close()
    return {r: curves[r] for r in needed}


def _source(store: Store, options: Options, data: dict[str, ExperimentData], r: Request) -> Source:
    return Source(store, get_scale(options.scale), r.dataset, data[r.dataset], data[r.measured_on], r.net,
                  options.dropout, options.device)


def _measure_task(task: tuple) -> tuple[int, list[dict]]:
    index, source, family, fitter, seed, resize = task
    return index, study.measure(source, family, fitter, seed, resize)


def value(row: dict, line: str, metric: str, l2: str) -> float:
    """The plotted number: accuracy (1 - L_err) or 1 - L_L2 with the chosen normalisation."""
    if metric == "accuracy":
        return row[line]["accuracy"]
    return 1.0 - row[line][f"l2_{l2.replace('-', '_')}"]


def panels(spec: Spec, curves: Curves, options: Options) -> tuple[list[Panel], int]:
    """The figure's panels and column count, laid out as the paper's."""
    ylabel = "accuracy (1 - L_err)" if spec.metric == "accuracy" else f"1 - L_L2 ({options.l2})"
    out: list[Panel] = []
    if spec.layout == "widest":
        families = list(dict.fromkeys(r.family for r in curves))
        for letter, family in zip("abcdefghijklmnop", families):
            mine = [r for r in curves if r.family == family]
            first = curves[mine[0]]
            panel = Panel(f"({letter}) {FAMILIES[family].title}", [row["label"] for row in first], ylabel,
                          "measured transform")
            for r in mine:
                for line, colour in _colours(spec, r):
                    panel.lines.append(Line(_legend(spec, r, line), [value(row, line, spec.metric, options.l2)
                                                                    for row in curves[r]], *colour))
            out.append(panel)
        return out, 3
    datasets = list(dict.fromkeys(r.dataset for r in curves))
    families = list(dict.fromkeys(r.family for r in curves))
    for family in families:
        for dataset in datasets:
            mine = sorted((r for r in curves if r.family == family and r.dataset == dataset),
                          key=lambda r: r.net.range_rank)
            for line in ("equivariance", "invariance"):
                panel = Panel(f"{FAMILIES[family].title}, {dataset}: {line}",
                              [row["label"] for row in curves[mine[0]]], ylabel, "measured transform")
                for i, r in enumerate(mine):   # sorted by range: lighter is wider (nets of equal rank differ)
                    colour = "black" if r.net.family == "baseline" else _ramp(i / max(1, len(mine) - 1))
                    panel.lines.append(Line(r.net.name, [value(row, line, spec.metric, options.l2)
                                                         for row in curves[r]], colour,
                                            "--" if r.net.family == "baseline" else "-"))
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


def csv_text(spec: Spec, curves: Curves, options: Options) -> str:
    """Every plotted value (one row per curve point and line) with the raw metrics behind it."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["figure", "dataset", "measured_on", "family", "net", "net_name", "line", "index", "setting",
                     "plotted_metric", "plotted", "accuracy", "l2_per_neuron", "l2_authors", "map_loss",
                     "untransformed_accuracy"])
    plotted = "accuracy" if spec.metric == "accuracy" else f"1-l2_{options.l2}"
    for r, rows in curves.items():
        for row in rows:
            for line in ("equivariance", "invariance"):
                s = row[line]
                writer.writerow([spec.name, r.dataset, r.measured_on, r.family, r.net.id, r.net.name, line,
                                 row["index"], row["label"], plotted, f"{value(row, line, spec.metric, options.l2):.6f}",
                                 f"{s['accuracy']:.6f}", f"{s['l2_per_neuron']:.6f}", f"{s['l2_authors']:.6f}",
                                 f"{s['loss']:.6f}", f"{row['untransformed']['accuracy']:.6f}"])
    return buffer.getvalue()


def make(spec: Spec, datasets: tuple[str, ...], families: tuple[str, ...], options: Options) -> dict:
    """Run a figure end to end; return {"outputs": [...], "claims": [...], "seconds": ...}."""
    started = time.time()
    scale = get_scale(options.scale)
    get_fitter(options.fitter)
    metrics.check_l2(options.l2)
    store = Store(options.out / "store")
    needed = requests(spec, datasets, families)
    names = {d for r in needed for d in (r.dataset, r.measured_on)}
    data = {d: data_for(d, scale, store, options.data_root, options.progress) for d in sorted(names)}
    train_missing(spec, store, options, data, needed)
    curves = measure(spec, store, options, data, needed)
    checks = claim_checks.check(spec, curves)
    stem = options.out / "figures" / scale.name / f"{spec.name}-{'+'.join(datasets)}"
    config = {"figure": spec.name, "paper_figure": spec.figure, "datasets": list(datasets),
              "families": list(families), "scale": scale.name, "input_size": scale.input_size,
              "fitter": options.fitter, "fitter_seed": SEED, "test_time_dropout": options.dropout,
              "phi": "fc7 after relu7 and drop7 at TEST", "l2_normalisation": options.l2,
              "plotted": spec.metric if spec.metric == "accuracy" else f"1 - L_L2 ({options.l2})",
              "fit_split/report_split": {f"{r.dataset} on {r.measured_on}": study.splits(_source(store, options, data, r))
                                         for r in needed},
              "data": {d: data[d].source for d in data}, "net_seeds": {r.net.id: r.net.seed for r in needed},
              "code_fingerprint": code_fingerprint(MEASURE_CODE), "store": str(store.root),
              "proxy": scale.proxy}
    figure_panels, columns = panels(spec, curves, options)
    footer = (f"scale {scale.name} ({'proxy: embedded data' if scale.proxy else 'paper'}), fitter {options.fitter}, "
              f"dropout {options.dropout}, L2 {options.l2}, data {', '.join(data[d].source for d in data)}, "
              f"code {config['code_fingerprint']}")
    outputs = draw(figure_panels, columns, spec.title, footer, stem)
    atomic_write(stem.with_suffix(".csv"), csv_text(spec, curves, options).encode())
    seconds = round(time.time() - started, 1)
    sidecar = {"config": config, "claims": checks, "seconds": seconds}
    atomic_write(stem.with_suffix(".json"), (json.dumps(sidecar, indent=1, default=str) + "\n").encode())
    return {"outputs": [*outputs, stem.with_suffix(".csv"), stem.with_suffix(".json")], "claims": checks,
            "seconds": seconds}
