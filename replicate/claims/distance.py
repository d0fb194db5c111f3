"""Claim kinds about Figs. 3, 11, 12: the representation distances between each dataset's nets (Eqs. 4, 9).

Evidence: `distances` maps a dataset to its replicate.measure.distance.DistanceMatrix. Every kind reads Eq. 4's
D with L_L2 normalised as the check's optional "normalisation" says, else as the run chose (`--l2`, recorded in
Evidence.l2; the distance figures default to per-neuron), else replicate.config.DEFAULT_L2. A kind naming several datasets is evaluated on those the run measured (the numbers name them) and is
not applicable when it measured none of them, or too few nets for the kind.
"""
from __future__ import annotations

import numpy as np

from replicate.claims.engine import Evidence, Outcome, checker
from replicate.config import DEFAULT_L2
from replicate.measure import pairs

NOT_A_TRANSFORM = "baseline"   # "the most unique transform": the baseline family is no transform


def _matrix(check: dict, dm, evidence: Evidence) -> np.ndarray:
    """D under the check's normalisation, else the run's (--l2), else the default."""
    return dm.matrix(check.get("normalisation") or evidence.l2 or DEFAULT_L2)


def _measured(evidence: Evidence, datasets: list[str]) -> dict:
    """{dataset: DistanceMatrix} of the listed datasets the run measured."""
    found = evidence.distances or {}
    return {d: found[d] for d in datasets if d in found}


@checker("knn_same_family")
def knn_same_family(check: dict, evidence: Evidence) -> Outcome | None:
    dm = (evidence.distances or {}).get(check["dataset"])
    k = check["k"]
    if dm is None or k >= len(dm.nets):
        return None
    fraction = pairs.knn_same_family(_matrix(check, dm, evidence), dm.families, k)
    if np.isnan(fraction):
        return None   # no family with two nets measured
    return Outcome(bool(fraction >= check["low"]), {"same-family pairs within k": round(fraction, 4), "k": k,
                                                    "chance": round(k / (len(dm.nets) - 1), 4),
                                                    "needed": check["low"], "nets": len(dm.nets)})


@checker("family_cluster")
def family_cluster(check: dict, evidence: Evidence) -> Outcome | None:
    group = check["families"]
    means = {}
    for dataset, dm in _measured(evidence, check["datasets"]).items():
        members = sum(f in group for f in dm.families)
        if not set(group) <= set(dm.families) or members < 2 or members == len(dm.nets):
            continue
        within, across = pairs.cluster_contrast(_matrix(check, dm, evidence), dm.families, group)
        means[dataset] = {"within the group": round(within, 4), "to other nets": round(across, 4)}
    if not means:
        return None
    return Outcome(all(m["within the group"] < m["to other nets"] for m in means.values()),
                   {f"mean D ({'+'.join(group)})": means})


@checker("most_unique_family")
def most_unique_family(check: dict, evidence: Evidence) -> Outcome | None:
    dm = (evidence.distances or {}).get(check["dataset"])
    if dm is None:
        return None
    ranking = {f: round(v, 4) for f, v in pairs.uniqueness(_matrix(check, dm, evidence), dm.families).items()
               if f != NOT_A_TRANSFORM}
    if check["family"] not in ranking:
        return None
    position = list(ranking).index(check["family"]) + 1
    return Outcome(position <= check["rank"], {"mean D to other families' nets": ranking, "position": position,
                                               "needed": f"among the {check['rank']} most unique"})


@checker("typical_distance")
def typical_distance(check: dict, evidence: Evidence) -> Outcome | None:
    found = _measured(evidence, list(check["values"]))
    if not found:
        return None
    medians = {d: round(float(np.median(pairs.off_diagonal(_matrix(check, dm, evidence)))), 4) for d, dm in found.items()}
    holds = all(check["values"][d][0] <= m <= check["values"][d][1] for d, m in medians.items())
    return Outcome(holds, {"median D": medians, "needed": {d: check["values"][d] for d in found},
                           "combine": {d: dm.config.get("combine") for d, dm in found.items()}})


@checker("triangle_inequality_violated")
def triangle_inequality_violated(check: dict, evidence: Evidence) -> Outcome | None:
    fractions = {d: round(pairs.triangle_violations(_matrix(check, dm, evidence)), 6)
                 for d, dm in _measured(evidence, check["datasets"]).items() if len(dm.nets) >= 3}
    if not fractions:
        return None
    return Outcome(all(f > 0 for f in fractions.values()), {"fraction of triples violating it": fractions})


@checker("tsne_unstable")
def tsne_unstable(check: dict, evidence: Evidence) -> Outcome | None:
    agreement = {}
    for dataset, dm in _measured(evidence, check["datasets"]).items():
        if len(dm.nets) < 4:   # t-SNE needs a perplexity of at least 1: 4 points
            continue
        emb = pairs.tsne(_matrix(check, dm, evidence), list(range(check["seeds"])))
        agreement[dataset] = {"nearest-neighbour agreement": round(emb.nn_agreement, 4),
                              "distance agreement (Spearman)": round(emb.distance_agreement, 4),
                              "fidelity to D (Spearman)": round(emb.fidelity, 4)}
    if not agreement:
        return None
    return Outcome(all(a["nearest-neighbour agreement"] < check["max_agreement"] for a in agreement.values()),
                   {"t-SNE runs": check["seeds"], "needed": f"agreement < {check['max_agreement']}",
                    "per dataset": agreement})
