"""One network over one family's measurement grid: invariance and equivariance per setting (Eq. 2), cached.

Splits (Section 5.5): maps are fitted on the fit split and scored on the report split. RVL-CDIP and the
embedded datasets: fit on val, report on test. ILSVRC (its eval split is val): fit on the first 50,000
records of the (shuffled) train LMDB, report on val. Each setting is one store job keyed by the trained
net, the measured data, the view, the splits, the fitter and its seed, and the measurement code; its
phi arrays are store jobs of their own (replicate.measure.phi), so a second fitter reuses them.
"""
from __future__ import annotations

from dataclasses import asdict

import torch

from replicate.config import MEASURE_CODE, code_fingerprint
from replicate.measure import fitters, metrics
from replicate.measure.phi import Source, View, classifier, phi, views
from replicate.store import Job

ILSVRC_FIT_IMAGES = 50_000


def splits(source: Source) -> tuple[str, int | None, str]:
    """(fit split, its record limit, report split) for the measured data."""
    return splits_for(source.images.eval_split)


def splits_for(eval_split: str) -> tuple[str, int | None, str]:
    """(fit split, its record limit, report split) of data whose labelled evaluation split is `eval_split`."""
    if eval_split == "val":   # ILSVRC: no labelled test split
        return "train", ILSVRC_FIT_IMAGES, "val"
    return "val", None, eval_split


def setting_job(source: Source, ref: View, view: View, fitter: str, seed: int = 0) -> Job:
    """The store entry of one setting's scores (done or not)."""
    fit_split, limit, report_split = splits(source)
    config = {**source.key(), "images": source.images.source,
              "images_dir": str(source.images.root), "reference": asdict(ref), "view": asdict(view),
              "fit_split": fit_split, "fit_limit": limit, "report_split": report_split, "fitter": fitter,
              "seed": seed, "dropout": source.dropout, "code": code_fingerprint(MEASURE_CODE)}
    return source.store.job(f"measure-{source.scale.name}-{source.dataset}", source.net.id, config)


def measure_setting(source: Source, ref: View, view: View, fitter: str, seed: int = 0) -> dict:
    """Invariance and equivariance scores of one setting on the report split (stored once, then read)."""
    fit_split, limit, report_split = splits(source)
    job = setting_job(source, ref, view, fitter, seed)
    if job.done:
        return job.result()
    def get(v: View, split: str, lim: int | None = None) -> torch.Tensor:
        return torch.from_numpy(phi(source, v, split, lim)[0]).to(source.device)

    x_fit, y_fit = get(view, fit_split, limit), get(ref, fit_split, limit)
    x_rep, y_rep = get(view, report_split), get(ref, report_split)
    labels = torch.from_numpy(phi(source, ref, report_split)[1]).to(source.device)
    w8, b8 = (torch.from_numpy(a).to(source.device) for a in classifier(source))
    job.begin()
    mapping, record = fitters.get_fitter(fitter)(x_fit, y_fit, seed=seed)
    with torch.no_grad():
        result = {"equivariance": metrics.scores(mapping(x_rep), y_rep, labels, w8, b8),
                  "invariance": metrics.scores(x_rep, y_rep, labels, w8, b8),
                  "untransformed": metrics.scores(y_rep, y_rep, labels, w8, b8),
                  "fit_loss": fitters.loss(mapping, x_fit, y_fit), "fit": record,
                  "fit_samples": int(len(x_fit)), "report_samples": int(len(x_rep)), "dim": int(x_rep.shape[1])}
    return job.finish(result)


def measure(source: Source, family: str, fitter: str = "fast", seed: int = 0,
            measured_resize: int | None = None) -> list[dict]:
    """One row per setting of the family's grid: label, index and the stored scores."""
    ref, grid = views(family, source.net, source.scale, measured_resize)
    rows = []
    for index, (label, view) in enumerate(grid):
        rows.append({"index": index, "label": label, **measure_setting(source, ref, view, fitter, seed)})
    return rows
