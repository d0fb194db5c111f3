"""Claim kinds about Figs. 1, 2, 7-10: invariance and equivariance curves of the zoo's nets.

Evidence: `curves` maps each measured curve (a Request: dataset, net, family, measured_on) to its rows,
one per setting of the family's measurement grid. Means are over the whole grid unless a kind says
otherwise. A check naming a dataset the run did not measure is not applicable; one naming none uses the
first dataset measured.
"""
from __future__ import annotations

from statistics import mean

from scipy.stats import spearmanr

from replicate.claims.engine import Evidence, Outcome, checker

CROP_GRID_SIDE = 5   # the crop grid: 5 x 5 windows in scan-line order (setting index = row * 5 + column)


def _dataset(check: dict, curves: dict) -> str | None:
    datasets = list(dict.fromkeys(r.dataset for r in curves))
    wanted = check.get("dataset")
    if wanted is None:
        return datasets[0] if datasets else None
    return wanted if wanted in datasets else None


def _curve(curves: dict, dataset: str, family: str, role: str, measured_on: str | None = None) -> list[dict] | None:
    """Rows of the baseline's or the widest net's curve on a family (None when not measured)."""
    mine = [r for r in curves if r.dataset == dataset and r.family == family
            and r.measured_on == (measured_on or dataset)]
    if role == "baseline":
        mine = [r for r in mine if r.net.family == "baseline"]
    else:
        mine = sorted((r for r in mine if r.net.family == family), key=lambda r: -r.net.range_rank)[:1]
    return curves[mine[0]] if mine else None


def _own_nets(curves: dict, dataset: str, family: str) -> list:
    """The measured curves of a family's own nets (not the baseline's) on that family's grid."""
    return [r for r in curves if r.dataset == dataset and r.family == family and r.net.family == family]


def _mean(rows: list[dict], line: str, key: str = "accuracy") -> float:
    values = [row[line][key] for row in rows]
    return mean(1.0 - v for v in values) if key.startswith("l2") else mean(values)


def _gap(rows: list[dict]) -> float:
    return mean(row["equivariance"]["accuracy"] - row["invariance"]["accuracy"] for row in rows)


def curve_checker(kind: str):
    """Register `fn(check, curves, dataset)` as the checker of a kind; not applicable without the dataset's curves."""
    def register(fn):
        def run(check: dict, evidence: Evidence) -> Outcome | None:
            curves = evidence.curves
            dataset = _dataset(check, curves) if curves else None
            return None if dataset is None else fn(check, curves, dataset)
        checker(kind)(run)
        return fn
    return register


@curve_checker("baseline_mild_drop")
def baseline_mild_drop(check: dict, curves: dict, ds: str) -> Outcome | None:
    drops = {}
    for family in check["families"]:
        rows = _curve(curves, ds, family, "baseline")
        if rows is None:
            return None
        mild = rows[:check["mild"]]
        drops[family] = round(mean(r["untransformed"]["accuracy"] - r["invariance"]["accuracy"] for r in mild), 4)
    return Outcome(all(d >= check["min_drop"] for d in drops.values()), {"baseline accuracy drop (mild settings)": drops})


@curve_checker("baseline_gap")
def baseline_gap(check: dict, curves: dict, ds: str) -> Outcome | None:
    gaps = {f: round(_gap(rows), 4) for f in sorted({r.family for r in curves})
            if (rows := _curve(curves, ds, f, "baseline")) is not None}
    exception = check["exception"]
    if len(gaps) < check["min_families"] or exception not in gaps:
        return None
    large = [f for f, g in gaps.items() if g >= check["min_gap"] and f != exception]
    holds = len(large) > (len(gaps) - 1) / 2 and gaps[exception] < check["min_gap"]
    return Outcome(holds, {"baseline mean (equivariance - invariance)": gaps, "families with a large gap": large})


@curve_checker("widest_gap_smaller")
def widest_gap_smaller(check: dict, curves: dict, ds: str) -> Outcome | None:
    pairs = {}
    for family in sorted({r.family for r in curves}):
        base, wide = _curve(curves, ds, family, "baseline"), _curve(curves, ds, family, "widest")
        if base is not None and wide is not None:
            pairs[family] = {"widest": round(_gap(wide), 4), "baseline": round(_gap(base), 4)}
    if len(pairs) < check["min_families"]:
        return None
    smaller = [f for f, p in pairs.items() if p["widest"] < p["baseline"]]
    return Outcome(len(smaller) > len(pairs) / 2, {"mean (equivariance - invariance)": pairs, "smaller": smaller})


@curve_checker("widest_above_baseline")
def widest_above_baseline(check: dict, curves: dict, ds: str) -> Outcome | None:
    means = {}
    for family in check["families"]:
        base, wide = _curve(curves, ds, family, "baseline"), _curve(curves, ds, family, "widest")
        if base is None or wide is None:
            return None
        means[family] = {"widest": round(_mean(wide, check["line"]), 4), "baseline": round(_mean(base, check["line"]), 4)}
    return Outcome(all(m["widest"] > m["baseline"] for m in means.values()), {f"mean {check['line']} accuracy": means})


@curve_checker("setting_compare")
def setting_compare(check: dict, curves: dict, ds: str) -> Outcome | None:
    rows = _curve(curves, ds, check["family"], check["net"])
    if rows is None:
        return None
    by_label = {row["label"]: row[check["line"]]["accuracy"] for row in rows}
    diff = by_label[check["a"]] - by_label[check["b"]]
    holds = diff >= check["margin"] if check["relation"] == "greater" else abs(diff) < check["margin"]
    return Outcome(holds, {check["a"]: round(by_label[check["a"]], 4), check["b"]: round(by_label[check["b"]], 4),
                           "difference": round(diff, 4)})


@curve_checker("robustness_range_trend")
def robustness_range_trend(check: dict, curves: dict, ds: str) -> Outcome | None:
    rhos = {}
    for family in sorted({r.family for r in curves} - set(check.get("except", []))):
        nets = [r for r in curves if r.dataset == ds and r.family == family]
        if len(nets) < 3:
            continue
        ranks = [r.net.range_rank for r in nets]
        for line in ("equivariance", "invariance"):
            rhos[f"{family} {line}"] = round(float(spearmanr(ranks, [_mean(curves[r], line) for r in nets]).statistic), 3)
    if not rhos:
        return None
    positive = sum(v > 0 for v in rhos.values())
    return Outcome(positive > len(rhos) / 2, {"Spearman rho (range rank vs mean accuracy)": rhos,
                                              "positive": f"{positive} of {len(rhos)}"})


@curve_checker("range_spread_small")
def range_spread_small(check: dict, curves: dict, ds: str) -> Outcome | None:
    nets = _own_nets(curves, ds, check["family"])
    if len(nets) < 2:
        return None
    means = {r.net.id: round(_mean(curves[r], check["line"]), 4) for r in nets}
    spread = max(means.values()) - min(means.values())
    return Outcome(spread <= check["max_spread"], {f"mean {check['line']} accuracy": means, "spread": round(spread, 4)})


@curve_checker("no_gap")
def no_gap(check: dict, curves: dict, ds: str) -> Outcome | None:
    nets = _own_nets(curves, ds, check["family"])
    if not nets:
        return None
    gaps = {r.net.id: round(_gap(curves[r]), 4) for r in nets}
    return Outcome(all(abs(g) <= check["max_gap"] for g in gaps.values()), {"mean (equivariance - invariance)": gaps})


def _inner_window(index: int) -> bool:
    """Whether a crop setting (scan-line index on the 5 x 5 grid) is one of the inner 3 x 3 windows."""
    row, col = divmod(index, CROP_GRID_SIDE)
    return 0 < row < CROP_GRID_SIDE - 1 and 0 < col < CROP_GRID_SIDE - 1


@curve_checker("crop_centre")
def crop_centre(check: dict, curves: dict, ds: str) -> Outcome | None:
    nets = [r for r in curves if r.dataset == ds and r.family == "crop"]
    if not nets:
        return None
    out = {}
    for r in nets:
        inner = [row[check["line"]]["accuracy"] for row in curves[r] if _inner_window(row["index"])]
        outer = [row[check["line"]]["accuracy"] for row in curves[r] if not _inner_window(row["index"])]
        out[r.net.id] = {"inner 3x3": round(mean(inner), 4), "outer ring": round(mean(outer), 4)}
    return Outcome(all(v["inner 3x3"] > v["outer ring"] for v in out.values()), {f"mean {check['line']} accuracy": out})


def _cross_domain(check: dict, curves: dict, ds: str) -> dict | None:
    """1 - L_L2 (authors' normalisation: what Fig. 10 plots) of the widest nets at home and on the other domain."""
    other = check["measured_on"]
    values = {}
    for family in check.get("families") or sorted({r.family for r in curves}):
        home, away = _curve(curves, ds, family, "widest"), _curve(curves, ds, family, "widest", other)
        if home is None or away is None:
            continue
        for line in check["lines"]:
            values[f"{family} {line}"] = {ds: round(_mean(home, line, "l2_authors"), 4),
                                          other: round(_mean(away, line, "l2_authors"), 4)}
    return values or None


@curve_checker("cross_domain_lower")
def cross_domain_lower(check: dict, curves: dict, ds: str) -> Outcome | None:
    if (values := _cross_domain(check, curves, ds)) is None:
        return None
    other = check["measured_on"]
    home, away = mean(v[ds] for v in values.values()), mean(v[other] for v in values.values())
    return Outcome(away < home, {"mean 1 - L_L2 (authors)": {ds: round(home, 4), other: round(away, 4)},
                                 "per family": values})


@curve_checker("cross_domain_higher")
def cross_domain_higher(check: dict, curves: dict, ds: str) -> Outcome | None:
    if (values := _cross_domain(check, curves, ds)) is None:
        return None
    return Outcome(all(v[check["measured_on"]] > v[ds] for v in values.values()), {"mean 1 - L_L2 (authors)": values})
