"""Representation distance between networks (Eqs. 4 and 9; Sections 5.3, 6.2; Appendix B.3), cached in the store.

Orientation (used everywhere in this module, its matrices and its store jobs):
    one_way[i, j] = min_E L(E(phi_i(x)), phi_j(x)), the loss of predicting net j's phi from net i's phi:
    Eq. 4's first term with phi_1 = net i and phi_2 = net j (source i, target j). Section 5.3 writes the
    same loss as ||phi_i(x) - E_1 phi_j(x)||^2 with the names swapped. A pair's store job is named
    "<source id>--<target id>".
L = L_L2 on the report split, normalised by the TARGET's phi (replicate.measure.metrics.l2): "authors" (default,
mean ||E(phi_i) - phi_j|| / mean ||phi_j||) and "per-neuron" (phi_j's neurons scaled by their second moments).
The map's own loss (mean squared error) is kept as well.

E(r) = ReLU(W r + b) (docs/protocol.md: no residual), fitted on the fit split with the figures' fitters
(replicate.measure.fitters, residual=False: fast ridges toward 0, paper starts at W = 0 (where the ReLU passes
no gradient: its maps stay E = 0, an L_L2 of 1), authors at W ~ N(0, 0.001^2), optionally with the authors'
gradient clipping); `fast` fits all targets of one source in one batched step (fit_targets). phi of each net is
fc7 of its own untransformed input (Crop nets: their resize side with Caffe's centre crop), the same phi jobs
the figures use; the splits are study.splits' (fit on val / report on test; ILSVRC: 50,000 train / val).

D (Eq. 4) = one_way + one_way^T by default (combine="sum": Eq. 4 as printed). Appendix B.3 says Eq. 4 "yields
a symmetric function by averaging two one-way distances": combine="mean" gives the average, half the sum.
Rankings (K-NN, family order, t-SNE) do not depend on the choice; magnitudes (Fig. 12's "typical distance")
differ by a factor of two, so the choice is recorded with the matrix. D' (Eq. 9) = |one_way - one_way^T|.
Both are symmetric with a zero diagonal.

CKA: linear CKA (Kornblith et al. 2019) between the nets' report-split phis, a fitting-free similarity, with
the Spearman correlation between D and 1 - CKA over the pairs i < j.
"""
from __future__ import annotations

import functools
from dataclasses import asdict, dataclass, field
from typing import Callable, Iterator, Sequence

import numpy as np
import torch
from tqdm import tqdm

from convert.errors import UserError
from replicate import zoo
from replicate.config import DEFAULT_L2, FITTER_SEED, MEASURE_CODE, code_fingerprint
from replicate.experiment_data import crop_side
from replicate.measure import fitters, metrics, pairs, study
from replicate.measure.fitters import AffineMap
from replicate.measure.phi import Source, View, phi

COMBINES = ("sum", "mean")
DEFAULT_COMBINE = "sum"
FIT_LOSS_SAMPLES = 4096   # the fit-split loss (optimisation quality, beside the report split's) is taken on these
SCORES = tuple(f"l2_{n.replace('-', '_')}" for n in metrics.L2_NORMALISATIONS)   # one-way score keys, and "loss"


# ------------------------------------------------------------------------------------- fitting and scoring
def fit_targets(x_fit: torch.Tensor, targets_fit: Sequence[torch.Tensor], *, seed: int = FITTER_SEED,
                **options) -> list[tuple[AffineMap, dict]]:
    """Distance maps from one source phi to every target phi at once (the fast fitter, batched over targets).

    Equals fit_fast(x_fit, y, residual=False, seed=seed) for each target y (the same random draws); options are
    fit_fast's (holdout, sgd_epochs, ...) and `chunk`, the targets batched together.
    """
    return fitters.fit_fast_many(x_fit, targets_fit, residual=False, seed=seed, **options)


def fit_maps(x_fit: torch.Tensor, targets_fit: Sequence[torch.Tensor], *, fitter: str = "fast",
             seed: int = FITTER_SEED, clip: float | None = None) -> Iterator[tuple[AffineMap, dict]]:
    """(map, record) per target, in order: fast in one batched step, paper/authors pair by pair as fitted."""
    fit = fitters.get_fitter(fitter)
    if fitter == "fast":
        yield from fit_targets(x_fit, targets_fit, seed=seed)
        return
    for y in targets_fit:
        yield fit(x_fit, y, residual=False, seed=seed, clip_gradients=clip)


def one_way(mapping: AffineMap, x_report: torch.Tensor, y_report: torch.Tensor) -> dict[str, float]:
    """L_L2 (both normalisations) of E(phi_source) against phi_target on the report split, and the map loss."""
    with torch.no_grad():
        mapped = mapping(x_report)
        return {**{key: metrics.l2(mapped, y_report, n) for key, n in zip(SCORES, metrics.L2_NORMALISATIONS)},
                "loss": fitters.squared_error(mapped, y_report)}


def _source_scores(i: int, targets: list[int], fit_phis: Sequence[torch.Tensor], report_phis: Sequence[torch.Tensor],
                   fitter: str, seed: int, clip: float | None) -> Iterator[tuple[int, dict]]:
    """(target, scores with the fit record) for each target of source i, as each map is fitted."""
    maps = fit_maps(fit_phis[i], [fit_phis[j] for j in targets], fitter=fitter, seed=seed, clip=clip)
    for j, (mapping, record) in zip(targets, maps):
        with torch.no_grad():   # on the first fit samples only: the whole fit split would cost a quarter of a fit
            fit_loss = fitters.loss(mapping, fit_phis[i][:FIT_LOSS_SAMPLES], fit_phis[j][:FIT_LOSS_SAMPLES])
        yield j, {**one_way(mapping, report_phis[i], report_phis[j]), "fit_loss": fit_loss, "fit": record,
                  "fit_samples": int(len(fit_phis[i])), "fit_loss_samples": min(FIT_LOSS_SAMPLES, len(fit_phis[i])),
                  "report_samples": int(len(report_phis[i])), "dim": int(report_phis[j].shape[1])}


def one_way_matrices(fit_phis: Sequence[torch.Tensor], report_phis: Sequence[torch.Tensor], *, fitter: str = "fast",
                     seed: int = FITTER_SEED, clip: float | None = None) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Every ordered pair's one-way distances from phis in memory (no store): ({normalisation: n x n}, map loss)."""
    _check_options(len(fit_phis), fitter, clip)
    n = len(fit_phis)
    scores = {(i, j): s for i in range(n)
              for j, s in _source_scores(i, [j for j in range(n) if j != i], fit_phis, report_phis, fitter, seed, clip)}
    return _matrices(n, scores)


def _matrices(n: int, scores: dict[tuple[int, int], dict]) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """The one-way matrix per normalisation and the map-loss matrix from per-pair scores (diagonal 0)."""
    one_way = {norm: np.zeros((n, n)) for norm in metrics.L2_NORMALISATIONS}
    map_loss = np.zeros((n, n))
    for (i, j), pair in scores.items():
        for key, norm in zip(SCORES, metrics.L2_NORMALISATIONS):
            one_way[norm][i, j] = pair[key]
        map_loss[i, j] = pair["loss"]
    return one_way, map_loss


# ------------------------------------------------------------------------------------------------ CKA
def linear_cka(x: torch.Tensor, y: torch.Tensor) -> float:
    """Linear CKA of two representations of the same samples: ||Y^T X||_F^2 / (||X^T X||_F ||Y^T Y||_F), centred."""
    return float(_cka_from_centred(_centred64(x), _centred64(y)))


def _centred64(r: torch.Tensor) -> torch.Tensor:
    r = r.double()
    return r - r.mean(0)


def _cka_from_centred(xc: torch.Tensor, yc: torch.Tensor, x_norm: torch.Tensor | None = None,
                      y_norm: torch.Tensor | None = None) -> torch.Tensor:
    x_norm = torch.linalg.matrix_norm(xc.T @ xc) if x_norm is None else x_norm
    y_norm = torch.linalg.matrix_norm(yc.T @ yc) if y_norm is None else y_norm
    denominator = x_norm * y_norm
    return (yc.T @ xc).square().sum() / denominator if denominator > 0 else torch.tensor(float("nan"))


def cka_matrix(phis: Sequence[torch.Tensor]) -> np.ndarray:
    """Linear CKA between every pair of representations (float64; symmetric, diagonal 1)."""
    n = len(phis)
    out = np.eye(n)
    norms = [torch.linalg.matrix_norm(_centred64(p).T @ _centred64(p)) for p in phis]
    for i in range(n):
        xc = _centred64(phis[i])    # centred per pair, not kept for all nets: 40,000 x 4096 doubles each
        for j in range(i + 1, n):
            out[i, j] = out[j, i] = float(_cka_from_centred(xc, _centred64(phis[j]), norms[i], norms[j]))
    return out


# ------------------------------------------------------------------------------------------- the matrix
@dataclass
class DistanceMatrix:
    """One dataset's representation distances between every pair of its nets (orientation: module docstring)."""
    dataset: str
    nets: list[zoo.Net]                        # matrix order
    one_way: dict[str, np.ndarray]             # normalisation -> [i, j]: net j's phi predicted from net i's
    D: dict[str, np.ndarray]                   # normalisation -> Eq. 4 (combine: sum or mean of the one-ways)
    D_prime: dict[str, np.ndarray]             # normalisation -> Eq. 9, |one_way - one_way^T|
    cka: np.ndarray                            # linear CKA, NaN where not computed
    map_loss: np.ndarray                       # [i, j]: the one-way map's mean squared error on the report split
    cka_spearman: dict[str, float]             # normalisation -> Spearman(D, 1 - CKA) over the pairs i < j
    config: dict = field(default_factory=dict)  # fitter, seed, combine, clip, splits, dropout, code fingerprint

    @classmethod
    def build(cls, dataset: str, nets: list[zoo.Net], one_way: dict[str, np.ndarray], *,
              combine: str = DEFAULT_COMBINE, cka: np.ndarray | None = None, map_loss: np.ndarray | None = None,
              config: dict | None = None) -> "DistanceMatrix":
        """D, D' and the CKA correlation from the one-way matrices (keys: the L2 normalisations)."""
        _check_count(len(nets))
        _check_combine(combine)
        n = len(nets)
        if set(one_way) != set(metrics.L2_NORMALISATIONS) or any(np.shape(m) != (n, n) for m in one_way.values()):
            raise UserError(f"one-way distances: expected an {n} x {n} matrix per normalisation "
                            f"({', '.join(metrics.L2_NORMALISATIONS)})")
        one_way = {k: _zero_diagonal(m) for k, m in one_way.items()}
        scale = 1.0 if combine == "sum" else 0.5
        D = {k: scale * (m + m.T) for k, m in one_way.items()}
        cka = np.full((n, n), np.nan) if cka is None else np.asarray(cka, dtype=float)
        upper = np.triu_indices(n, 1)
        rho = {k: pairs.spearman(d[upper], 1 - cka[upper]) if np.isfinite(cka[upper]).all() else float("nan")
               for k, d in D.items()}
        return cls(dataset, list(nets), one_way, D, {k: np.abs(m - m.T) for k, m in one_way.items()}, cka,
                   _zero_diagonal(np.zeros((n, n)) if map_loss is None else map_loss), rho,
                   {**(config or {}), "combine": combine})

    @property
    def families(self) -> list[str]:
        return [n.family for n in self.nets]

    def matrix(self, normalisation: str = DEFAULT_L2, kind: str = "D") -> np.ndarray:
        """D, D_prime or one_way under the named L2 normalisation."""
        metrics.check_l2(normalisation)
        if kind not in ("D", "D_prime", "one_way"):
            raise UserError(f"unknown distance matrix {kind!r}; expected one of D, D_prime, one_way")
        return getattr(self, kind)[normalisation]


def _zero_diagonal(m: np.ndarray) -> np.ndarray:
    """A float copy with the self pairs set to 0."""
    m = np.array(m, dtype=float)
    np.fill_diagonal(m, 0.0)
    return m


def _check_count(count: int) -> None:
    if count < 2:
        raise UserError(f"representation distance needs at least two networks; got {count}")


def _check_combine(combine: str) -> None:
    if combine not in COMBINES:
        raise UserError(f"unknown combine {combine!r}; expected one of {', '.join(COMBINES)}")


def _check_options(count: int, fitter: str, clip: float | None) -> None:
    _check_count(count)
    check_clip(fitter, clip)


def check_clip(fitter: str, clip: float | None) -> None:
    """A known fitter, and gradient clipping only where there is a gradient; UserError otherwise."""
    fitters.get_fitter(fitter)
    if clip is not None and (fitter == "fast" or not clip > 0):
        raise UserError(f"clip {clip}: expected a positive gradient norm for the paper or authors fitter "
                        f"(the fast fitter has no gradient to clip), or none")


# ------------------------------------------------------------------------------------------- the store
def _view(source: Source) -> View:
    """Each net's own untransformed input: its LMDB side (Crop nets: their S), Caffe's centre crop."""
    return View(crop_side(source.net, source.scale))


def _check_sources(sources: Sequence[Source]) -> None:
    first = sources[0]
    for s in sources[1:]:
        if (s.dataset, s.scale.name, s.images.source, str(s.images.root), s.dropout) != \
                (first.dataset, first.scale.name, first.images.source, str(first.images.root), first.dropout):
            raise UserError(f"representation distance: {s.net.id} is measured on {s.dataset}/{s.images.source} "
                            f"({s.scale.name}, dropout {s.dropout}); expected every net on the same data as "
                            f"{first.net.id} ({first.dataset}/{first.images.source}, {first.scale.name}, "
                            f"dropout {first.dropout})")
    ids = [s.net.id for s in sources]
    if len(set(ids)) != len(ids):
        raise UserError(f"representation distance: a network appears twice in {ids}; expected each once")


def _pair_config(src: Source, tgt: Source, fitter: str, seed: int, clip: float | None) -> dict:
    fit_split, limit, report_split = study.splits(src)
    return {"source": src.key(), "target": tgt.key(), "images": src.images.source,
            "images_dir": str(src.images.root), "source_view": asdict(_view(src)), "target_view": asdict(_view(tgt)),
            "fit_split": fit_split, "fit_limit": limit, "report_split": report_split, "fitter": fitter,
            "seed": seed, "clip_gradients": clip, "dropout": src.dropout, "code": code_fingerprint(MEASURE_CODE)}


def _phis(sources: Sequence[Source], split: str, limit: int | None = None) -> list[torch.Tensor]:
    return [torch.from_numpy(phi(s, _view(s), split, limit)[0]).to(s.device) for s in sources]


def distance_matrix(sources: Sequence[Source], *, fitter: str = "fast", seed: int = FITTER_SEED,
                    combine: str = DEFAULT_COMBINE, clip: float | None = None,
                    progress: bool = True) -> DistanceMatrix:
    """The distance matrix of one dataset's trained nets: every ordered pair a store job, fitted once.

    Per source net, its missing targets are fitted in one batched step (fast) or pair by pair (paper,
    authors), each pair stored as it finishes; a second run reads everything, a killed run resumes.
    """
    _check_options(len(sources), fitter, clip)
    _check_combine(combine)
    _check_sources(sources)
    first, n = sources[0], len(sources)
    fit_split, limit, report_split = study.splits(first)
    kind = f"distance-{first.scale.name}-{first.dataset}"
    jobs = [[first.store.job(kind, f"{src.net.id}--{tgt.net.id}", _pair_config(src, tgt, fitter, seed, clip))
             if i != j else None for j, tgt in enumerate(sources)] for i, src in enumerate(sources)]
    # phi is loaded (or extracted) only when something is left to compute: a stored matrix reads no phi
    report = functools.cache(lambda: _phis(sources, report_split))
    fit = functools.cache(lambda: _phis(sources, fit_split, limit))
    bar = tqdm(total=n * (n - 1), desc=f"distance {first.dataset}", unit="map", disable=not progress)
    for i in range(n):
        missing = [j for j in range(n) if j != i and not jobs[i][j].done]
        bar.update(n - 1 - len(missing))
        if not missing:
            continue
        for j in missing:
            jobs[i][j].begin()
        for j, scores in _source_scores(i, missing, fit(), report(), fitter, seed, clip):
            jobs[i][j].finish(scores)
            bar.update()
    bar.close()
    one_way, map_loss = _matrices(n, {(i, j): jobs[i][j].result() for i in range(n) for j in range(n) if i != j})
    config = {"scale": first.scale.name, "images": first.images.source, "fitter": fitter, "seed": seed,
              "clip_gradients": clip, "fit_split": fit_split, "fit_limit": limit, "report_split": report_split,
              "dropout": first.dropout, "phi": "fc7 after relu7 and drop7 at TEST, each net's own untransformed input",
              "code_fingerprint": code_fingerprint(MEASURE_CODE)}
    return DistanceMatrix.build(first.dataset, [s.net for s in sources], one_way, combine=combine,
                                cka=_stored_cka(sources, report, report_split), map_loss=map_loss, config=config)


def _stored_cka(sources: Sequence[Source], report: Callable[[], list[torch.Tensor]], report_split: str) -> np.ndarray:
    """cka_matrix of the report phis, a store job of its own (float64 products: hours on a CPU at paper scale)."""
    first = sources[0]
    config = {"nets": [s.key() for s in sources], "views": [asdict(_view(s)) for s in sources],
              "images": first.images.source, "images_dir": str(first.images.root), "split": report_split,
              "dropout": first.dropout, "code": code_fingerprint(MEASURE_CODE)}
    job = first.store.job(f"cka-{first.scale.name}-{first.dataset}", f"{len(sources)}-nets", config)
    if not job.done:
        job.begin()
        job.finish({"cka": cka_matrix(report()).tolist(), "nets": [s.net.id for s in sources]})
    return np.array(job.result()["cka"])
