"""The paper's statements about Figs. 1, 2, 7-10 (paper_tables/claims.json) checked on measured curves.

A claim applies to a figure when its `figure` tag lists the figure's number and the figure measured what
the check needs (datasets, families, nets); otherwise it is reported as not applicable. Every evaluated
claim carries the numbers behind its verdict. Means are over a family's whole measurement grid unless
the kind says otherwise (kinds are defined in claims.json).
"""
from __future__ import annotations

from statistics import mean

from scipy.stats import spearmanr

from replicate import paper
from replicate.figures.specs import Request, Spec

Curves = dict[Request, list[dict]]


def _curve(curves: Curves, dataset: str, family: str, role: str, measured_on: str | None = None) -> list[dict] | None:
    """Rows of the baseline's or the widest net's curve on a family (None when not measured)."""
    mine = [r for r in curves if r.dataset == dataset and r.family == family
            and r.measured_on == (measured_on or dataset)]
    if role == "baseline":
        mine = [r for r in mine if r.net.family == "baseline"]
    else:
        mine = sorted((r for r in mine if r.net.family == family), key=lambda r: -r.net.range_rank)[:1]
    return curves[mine[0]] if mine else None


def _mean(rows: list[dict], line: str, key: str = "accuracy") -> float:
    values = [row[line][key] for row in rows]
    return mean(1.0 - v for v in values) if key.startswith("l2") else mean(values)


def _gap(rows: list[dict]) -> float:
    return mean(row["equivariance"]["accuracy"] - row["invariance"]["accuracy"] for row in rows)


def _evaluate(check: dict, curves: Curves, datasets: tuple[str, ...]) -> tuple[bool, dict] | None:
    kind = check["kind"]
    dataset = check.get("dataset")
    if dataset is not None and dataset not in datasets:
        return None
    ds = dataset or datasets[0]
    if kind == "baseline_mild_drop":
        drops = {}
        for family in check["families"]:
            rows = _curve(curves, ds, family, "baseline")
            if rows is None:
                return None
            mild = rows[:check["mild"]]
            drops[family] = round(mean(r["untransformed"]["accuracy"] - r["invariance"]["accuracy"] for r in mild), 4)
        return all(d >= check["min_drop"] for d in drops.values()), {"baseline accuracy drop (mild settings)": drops}
    if kind == "baseline_gap":
        gaps = {}
        for family in {r.family for r in curves}:
            rows = _curve(curves, ds, family, "baseline")
            if rows is not None:
                gaps[family] = round(_gap(rows), 4)
        exception = check["exception"]
        if len(gaps) < check["min_families"] or exception not in gaps:
            return None
        large = [f for f, g in gaps.items() if g >= check["min_gap"] and f != exception]
        holds = len(large) > (len(gaps) - 1) / 2 and gaps[exception] < check["min_gap"]
        return holds, {"baseline mean (equivariance - invariance)": gaps, "families with a large gap": sorted(large)}
    if kind == "widest_gap_smaller":
        pairs = {}
        for family in {r.family for r in curves}:
            base, wide = _curve(curves, ds, family, "baseline"), _curve(curves, ds, family, "widest")
            if base is not None and wide is not None:
                pairs[family] = {"widest": round(_gap(wide), 4), "baseline": round(_gap(base), 4)}
        if len(pairs) < check["min_families"]:
            return None
        smaller = [f for f, p in pairs.items() if p["widest"] < p["baseline"]]
        return len(smaller) > len(pairs) / 2, {"mean (equivariance - invariance)": pairs, "smaller": sorted(smaller)}
    if kind == "widest_above_baseline":
        means = {}
        for family in check["families"]:
            base, wide = _curve(curves, ds, family, "baseline"), _curve(curves, ds, family, "widest")
            if base is None or wide is None:
                return None
            means[family] = {"widest": round(_mean(wide, check["line"]), 4), "baseline": round(_mean(base, check["line"]), 4)}
        return all(m["widest"] > m["baseline"] for m in means.values()), {f"mean {check['line']} accuracy": means}
    if kind == "setting_compare":
        rows = _curve(curves, ds, check["family"], check["net"])
        if rows is None:
            return None
        by_label = {row["label"]: row[check["line"]]["accuracy"] for row in rows}
        diff = by_label[check["a"]] - by_label[check["b"]]
        holds = diff >= check["margin"] if check["relation"] == "greater" else abs(diff) < check["margin"]
        return holds, {check["a"]: round(by_label[check["a"]], 4), check["b"]: round(by_label[check["b"]], 4),
                       "difference": round(diff, 4)}
    if kind == "robustness_range_trend":
        rhos = {}
        for family in sorted({r.family for r in curves} - set(check.get("except", []))):
            nets = [r for r in curves if r.dataset == ds and r.family == family]
            if len(nets) < 3:
                continue
            ranks = [r.net.range_rank for r in nets]
            for line in ("equivariance", "invariance"):
                rho = spearmanr(ranks, [_mean(curves[r], line) for r in nets]).statistic
                rhos[f"{family} {line}"] = round(float(rho), 3)
        if not rhos:
            return None
        positive = sum(v > 0 for v in rhos.values())
        return positive > len(rhos) / 2, {"Spearman rho (range rank vs mean accuracy)": rhos,
                                          "positive": f"{positive} of {len(rhos)}"}
    if kind == "range_spread_small":
        nets = [r for r in curves if r.dataset == ds and r.family == check["family"] and r.net.family == check["family"]]
        if len(nets) < 2:
            return None
        means = {r.net.id: round(_mean(curves[r], check["line"]), 4) for r in nets}
        spread = max(means.values()) - min(means.values())
        return spread <= check["max_spread"], {f"mean {check['line']} accuracy": means, "spread": round(spread, 4)}
    if kind == "no_gap":
        nets = [r for r in curves if r.dataset == ds and r.family == check["family"] and r.net.family == check["family"]]
        if not nets:
            return None
        gaps = {r.net.id: round(_gap(curves[r]), 4) for r in nets}
        return all(abs(g) <= check["max_gap"] for g in gaps.values()), {"mean (equivariance - invariance)": gaps}
    if kind == "crop_centre":
        nets = [r for r in curves if r.dataset == ds and r.family == "crop"]
        if not nets:
            return None
        out = {}
        for r in nets:
            values = {row["label"]: row[check["line"]]["accuracy"] for row in curves[r]}
            inner = [v for k, v in values.items() if k[1] in "123" and k[3] in "123"]
            outer = [v for k, v in values.items() if not (k[1] in "123" and k[3] in "123")]
            out[r.net.id] = {"inner 3x3": round(mean(inner), 4), "outer ring": round(mean(outer), 4)}
        return all(v["inner 3x3"] > v["outer ring"] for v in out.values()), {f"mean {check['line']} accuracy": out}
    if kind in ("cross_domain_lower", "cross_domain_higher"):
        other = check["measured_on"]
        values = {}
        for family in check.get("families") or sorted({r.family for r in curves}):
            home, away = _curve(curves, ds, family, "widest"), _curve(curves, ds, family, "widest", other)
            if home is None or away is None:
                continue
            for line in check["lines"]:
                # Fig. 10 plots 1 - L_L2 with the authors' normalisation (PROTOCOL.md)
                values[f"{family} {line}"] = {ds: round(_mean(home, line, "l2_authors"), 4),
                                              other: round(_mean(away, line, "l2_authors"), 4)}
        if not values:
            return None
        if kind == "cross_domain_lower":
            home_mean = mean(v[ds] for v in values.values())
            away_mean = mean(v[other] for v in values.values())
            return away_mean < home_mean, {"mean 1 - L_L2 (authors)": {ds: round(home_mean, 4), other: round(away_mean, 4)},
                                           "per family": values}
        return all(v[other] > v[ds] for v in values.values()), {"mean 1 - L_L2 (authors)": values}
    raise ValueError(f"claim kind {kind!r} has no checker")


def check(spec: Spec, curves: Curves) -> list[dict]:
    """Every claim tagged with this figure: holds / does not hold / not applicable, with its numbers."""
    datasets = tuple(dict.fromkeys(r.dataset for r in curves))
    out = []
    for claim in paper.claims():
        if claim.figure is None or spec.figure not in claim.figure.split(","):
            continue
        result = _evaluate(claim.check, curves, datasets)
        verdict = "not applicable (not measured by this run)" if result is None else \
            ("holds" if result[0] else "does not hold")
        out.append({"id": claim.id, "location": claim.location, "quote": claim.quote, "verdict": verdict,
                    "numbers": None if result is None else result[1]})
    return out


def render(checks: list[dict]) -> str:
    """The claim checks as text, one block per claim."""
    lines = []
    for c in checks:
        lines.append(f"[{c['verdict']}] {c['id']} ({c['location']}): \"{c['quote']}\"")
        if c["numbers"] is not None:
            lines.append(f"    {c['numbers']}")
    return "\n".join(lines)
