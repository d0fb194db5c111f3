"""Table 3 from the results store: published beside reproduced, diffs, verdicts or proxy checks.

Reproduced accuracies come in as {dataset: {net name: accuracy in %}}. The published numbers come
from paper_tables/ only. At paper scale each cell gets a verdict against the tolerance stated in
paper_tables/provenance.json; at mini/smoke scale the numbers are a proxy, so the table reports the
rank correlation with the published column and evaluates the paper's claims about Table 3 instead.
"""
from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats

from replicate import paper, zoo

Accuracies = dict[str, dict[str, float]]


@dataclass
class ClaimCheck:
    """One of the paper's statements evaluated on our numbers."""
    id: str
    quote: str
    holds: bool | None      # None: not evaluable on the datasets at hand
    evidence: str


def family_scores(acc: dict[str, float], dataset: str) -> dict[str, float]:
    """Mean accuracy of each family's nets minus the baselines' mean (the 'family_rank' score)."""
    by_family: dict[str, list[float]] = {}
    for net in zoo.nets(dataset):
        if net.name in acc:
            by_family.setdefault(net.family, []).append(acc[net.name])
    base = np.mean(by_family.pop("baseline", [np.nan]))
    return {f: float(np.mean(v) - base) for f, v in by_family.items()}


def _family_rank(check: dict, results: Accuracies) -> tuple[bool | None, str]:
    datasets = [d for d in check["datasets"] if d in results]
    if not datasets:
        return None, "no dataset of this claim was run"
    per = [family_scores(results[d], d) for d in datasets]
    families = set.intersection(*(set(p) for p in per))
    pooled = {f: float(np.mean([p[f] for p in per])) for f in families}
    order = sorted(pooled, key=pooled.get, reverse=True)
    top, bottom = check["top"], check["bottom"]
    holds = set(order[:len(top)]) == set(top) and (not bottom or set(order[-len(bottom):]) == set(bottom))
    text = ", ".join(f"{f} {pooled[f]:+.2f}" for f in order)
    return holds, f"family mean minus baseline ({'+'.join(datasets)}): {text}"


def _variance_share(check: dict, results: Accuracies) -> tuple[bool | None, str]:
    dataset = check["dataset"]
    if dataset not in results:
        return None, f"{dataset} was not run"
    groups: dict[str, list[float]] = {}
    for net in zoo.nets(dataset):
        if net.family != "baseline" and net.name in results[dataset]:
            groups.setdefault(net.family, []).append(results[dataset][net.name])
    values = np.concatenate([np.asarray(v) for v in groups.values()])
    total = float(((values - values.mean()) ** 2).sum())
    between = float(sum(len(v) * (np.mean(v) - values.mean()) ** 2 for v in groups.values()))
    share = between / total if total > 0 else float("nan")
    return bool(share >= check["min_share"]), f"family explains {share:.0%} of the variance (needs >= {check['min_share']:.0%})"


def _range_trend(check: dict, results: Accuracies) -> tuple[bool | None, str]:
    dataset = check["dataset"]
    if dataset not in results:
        return None, f"{dataset} was not run"
    rhos = {}
    for family in check["families"]:
        nets = [n for n in zoo.nets(dataset, family) if n.name in results[dataset]]
        rho = stats.spearmanr([n.range_rank for n in nets], [results[dataset][n.name] for n in nets]).statistic
        rhos[family] = float(rho)
    holds = all(r > check["min_rho"] for r in rhos.values())
    return holds, "Spearman rho of range vs accuracy: " + ", ".join(f"{f} {r:+.2f}" for f, r in rhos.items())


def _bold_is_family_best(check: dict, results: Accuracies) -> tuple[bool | None, str]:
    return None, "a fact about the published table (tests/test_paper_tables.py), not about a reproduction"


CHECKERS = {"family_rank": _family_rank, "variance_share": _variance_share, "range_trend": _range_trend,
            "bold_is_family_best": _bold_is_family_best}


def check_claims(results: Accuracies) -> list[ClaimCheck]:
    """Every Table 3 claim of paper_tables/claims.json evaluated on reproduced accuracies."""
    out = []
    for claim in paper.claims("table3"):
        holds, evidence = CHECKERS[claim.check["kind"]](claim.check, results)
        out.append(ClaimCheck(claim.id, claim.quote, holds, evidence))
    return out


def rank_correlation(results: Accuracies, dataset: str) -> float:
    """Spearman correlation between published and reproduced accuracy over the nets of one dataset."""
    rows = [r for r in paper.table3() if r.net in results.get(dataset, {})]
    if len(rows) < 3:
        return float("nan")
    return float(stats.spearmanr([r.accuracy[dataset] for r in rows],
                                 [results[dataset][r.net] for r in rows]).statistic)


def table3_rows(results: Accuracies, proxy: bool) -> list[dict]:
    """One dict per Table 3 row: published, reproduced, diff (and verdict at paper scale) per dataset."""
    rows = []
    for r in paper.table3():
        row = {"net": r.net, "family": r.family}
        for d in paper.DATASETS:
            col = paper.column(d)
            ours = results.get(d, {}).get(r.net)
            row[f"{col}_published"] = r.accuracy[d]
            row[f"{col}_reproduced"] = None if ours is None else round(ours, 2)
            row[f"{col}_diff"] = None if ours is None else round(ours - r.accuracy[d], 2)
            if not proxy:
                row[f"{col}_verdict"] = (None if ours is None else
                                         "agrees" if abs(ours - r.accuracy[d]) <= paper.tolerance(d) else "differs")
        rows.append(row)
    return rows


def _cell(value) -> str:
    return "—" if value is None or (isinstance(value, float) and math.isnan(value)) else (
        f"{value:+.2f}" if isinstance(value, float) and value < 0 else f"{value:.2f}" if isinstance(value, float) else str(value))


def render_markdown(results: Accuracies, scale: str, proxy: bool, header: dict) -> str:
    """Table 3 as Markdown: a header (configuration, proxy note), the table, correlations, claims."""
    datasets = [d for d in paper.DATASETS if d in results]
    lines = [f"# Table 3 — accuracy on untransformed test images (scale: {scale})", ""]
    if proxy:
        lines += [f"**Proxy:** `{scale}` scale runs on the embedded stand-in datasets with a small net; the "
                  "reproduced numbers are not comparable to the published ones. Judge it by the rank correlation "
                  "and the paper's claims below, not by the differences.", ""]
    lines += [f"- {k}: {v}" for k, v in header.items()] + [""]
    cols = ["CNN"]
    for d in datasets:
        cols += [f"{d} published", f"{d} reproduced", f"{d} diff"] + ([] if proxy else [f"{d} verdict"])
    lines += ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for row in table3_rows(results, proxy):
        cells = [row["net"]]
        for d in datasets:
            col = paper.column(d)
            cells += [_cell(row[f"{col}_published"]), _cell(row[f"{col}_reproduced"]), _cell(row[f"{col}_diff"])]
            if not proxy:
                cells.append(_cell(row[f"{col}_verdict"]))
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    for d in datasets:
        lines.append(f"Rank correlation (Spearman) published vs reproduced, {d}: {rank_correlation(results, d):+.2f}")
    lines += ["", "## The paper's statements about Table 3", ""]
    for c in check_claims(results):
        verdict = {True: "holds", False: "does not hold", None: "not evaluated"}[c.holds]
        lines.append(f"- **{verdict}** — “{c.quote}” ({c.id}): {c.evidence}")
    return "\n".join(lines) + "\n"


def render_csv(results: Accuracies, proxy: bool) -> str:
    """Table 3 as CSV with *_published, *_reproduced, *_diff (and *_verdict) columns."""
    rows = table3_rows(results, proxy)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def render_json(results: Accuracies, scale: str, proxy: bool, header: dict) -> str:
    """Everything behind the table, machine-readable."""
    return json.dumps({"scale": scale, "proxy": proxy, "config": header, "rows": table3_rows(results, proxy),
                       "rank_correlation": {d: rank_correlation(results, d) for d in results},
                       "claims": [asdict(c) for c in check_claims(results)]}, indent=1) + "\n"
