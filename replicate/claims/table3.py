"""Claim kinds about Table 3: accuracy on untransformed images per family and training range.

Each check also reports its margin in accuracy points beside the seed noise (Evidence.noise: the sd of the
baseline runs, which differ only in seed) and whether |margin| exceeds it, i.e. whether the verdict, held
or failed, is more than a matter of seed (None where the noise is not measured). Margins: family_rank, the
gap between the chosen top (bottom) families and the rest; range_trend, the smallest accuracy change from a
family's mildest to its widest net; variance_share, the standard deviation of the family means.
"""
from __future__ import annotations

import numpy as np
from scipy import stats

from replicate import zoo
from replicate.claims.engine import Evidence, Outcome, checker


def family_scores(acc: dict[str, float], dataset: str) -> dict[str, float]:
    """Mean accuracy of each family's nets minus the baselines' mean (the 'family_rank' score)."""
    by_family: dict[str, list[float]] = {}
    for net in zoo.nets(dataset):
        if net.name in acc:
            by_family.setdefault(net.family, []).append(acc[net.name])
    base = np.mean(by_family.pop("baseline", [np.nan]))
    return {f: float(np.mean(v) - base) for f, v in by_family.items()}


def against_noise(margin: float, datasets: list[str], evidence: Evidence) -> dict:
    """The margin, the seed noise (mean over the datasets) and whether |margin| exceeds it."""
    sigmas = [(evidence.noise or {}).get(d, float("nan")) for d in datasets]
    sigma = float(np.mean(sigmas)) if sigmas else float("nan")
    known = not np.isnan(sigma)
    return {"margin (points)": round(float(margin), 4), "seed noise (points)": round(sigma, 4) if known else None,
            "margin above seed noise": bool(abs(margin) > sigma) if known else None}


def rank_margin(pooled: dict[str, float], top: list[str], bottom: list[str]) -> float:
    """How far the named top (bottom) families are above (below) the others; negative when the order fails."""
    rest = [f for f in pooled if f not in top]
    gaps = [min(pooled[f] for f in top) - max(pooled[f] for f in rest)] if top and rest else []
    middle = [f for f in pooled if f not in bottom]
    if bottom and middle:
        gaps.append(min(pooled[f] for f in middle) - max(pooled[f] for f in bottom))
    return min(gaps) if gaps else float("nan")


@checker("family_rank")
def family_rank(check: dict, evidence: Evidence) -> Outcome | None:
    results = evidence.accuracies or {}
    datasets = [d for d in check["datasets"] if d in results]
    if not datasets:
        return None
    per = [family_scores(results[d], d) for d in datasets]
    families = set.intersection(*(set(p) for p in per))
    pooled = {f: round(float(np.mean([p[f] for p in per])), 4) for f in families}
    order = sorted(pooled, key=pooled.get, reverse=True)
    top, bottom = check["top"], check["bottom"]
    holds = set(order[:len(top)]) == set(top) and (not bottom or set(order[-len(bottom):]) == set(bottom))
    return Outcome(holds, {f"family mean minus baseline ({'+'.join(datasets)})": {f: pooled[f] for f in order},
                           **against_noise(rank_margin(pooled, top, bottom), datasets, evidence)})


@checker("variance_share")
def variance_share(check: dict, evidence: Evidence) -> Outcome | None:
    acc = (evidence.accuracies or {}).get(check["dataset"])
    if acc is None:
        return None
    groups: dict[str, list[float]] = {}
    for net in zoo.nets(check["dataset"]):
        if net.family != "baseline" and net.name in acc:
            groups.setdefault(net.family, []).append(acc[net.name])
    values = np.concatenate([np.asarray(v) for v in groups.values()])
    total = float(((values - values.mean()) ** 2).sum())
    between = float(sum(len(v) * (np.mean(v) - values.mean()) ** 2 for v in groups.values()))
    share = between / total if total > 0 else float("nan")
    spread_of_means = float(np.std([np.mean(v) for v in groups.values()]))
    return Outcome(bool(share >= check["min_share"]), {"share explained by family": round(share, 4),
                                                       "needed": check["min_share"],
                                                       **against_noise(spread_of_means, [check["dataset"]], evidence)})


@checker("range_trend")
def range_trend(check: dict, evidence: Evidence) -> Outcome | None:
    acc = (evidence.accuracies or {}).get(check["dataset"])
    if acc is None:
        return None
    rhos, changes = {}, {}
    for family in check["families"]:
        nets = sorted((n for n in zoo.nets(check["dataset"], family) if n.name in acc), key=lambda n: n.range_rank)
        rhos[family] = round(float(stats.spearmanr([n.range_rank for n in nets], [acc[n.name] for n in nets]).statistic), 4)
        changes[family] = acc[nets[-1].name] - acc[nets[0].name]
    return Outcome(all(r > check["min_rho"] for r in rhos.values()),
                   {"Spearman rho, range vs accuracy": rhos,
                    "widest minus mildest (points)": {f: round(c, 4) for f, c in changes.items()},
                    **against_noise(min(changes.values()), [check["dataset"]], evidence)})


@checker("bold_is_family_best")
def bold_is_family_best(check: dict, evidence: Evidence) -> Outcome | None:
    """A fact about the published table: only evaluable where the evidence carries the bold flags."""
    if evidence.bold is None or evidence.accuracies is None:
        return None
    wrong = []
    for dataset in check["datasets"]:
        acc, bold = evidence.accuracies[dataset], evidence.bold[dataset]
        for family in zoo.FAMILIES:
            members = [n.name for n in zoo.nets(dataset, family) if n.name in acc]
            best = max((acc[m] for m in members), default=None)
            wrong += [f"{dataset}: {m}" for m in members if bold[m] != (family != "baseline" and acc[m] == best)]
    return Outcome(not wrong, {"cells whose bold flag disagrees with the family maximum": wrong})
