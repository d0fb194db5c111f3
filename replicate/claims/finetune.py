"""Claim kinds about Tables 2 and 4: equivariance accuracy before and after finetuning with Eq. 7.

Rows are dicts with family, row (0 = untransformed images), original and finetune (accuracy %), as
`published(table)` gives them for the paper's numbers and `replicate table2|table4` for a reproduction.
"""
from __future__ import annotations

from statistics import mean

from replicate import paper
from replicate.claims.engine import Evidence, Outcome, checker


def published(table: str) -> list[dict]:
    """The paper's rows of Table 2 or 4 in the evidence form."""
    return [{"family": r.family, "row": r.row, "original": r.original, "finetune": r.finetune}
            for r in paper.finetune_table(table)]


def _rows(evidence: Evidence, table: str, which: str = "all") -> list[dict] | None:
    rows = (evidence.finetune or {}).get(table)
    if rows is None:
        return None
    if which == "all":
        return rows
    return [r for r in rows if (r["row"] == 0) == (which == "untransformed")]


def _improved_fraction(rows: list[dict]) -> float:
    return sum(r["finetune"] > r["original"] for r in rows) / len(rows)


@checker("mean_delta")
def mean_delta(check: dict, evidence: Evidence) -> Outcome | None:
    rows = _rows(evidence, check["table"], check["rows"])
    if not rows:
        return None
    delta = mean(r["finetune"] - r["original"] for r in rows)
    return Outcome(check["low"] <= delta <= check["high"], {f"mean finetune - original ({check['rows']} rows)":
                                                            round(delta, 4), "range": [check["low"], check["high"]]})


@checker("fraction_improved")
def fraction_improved(check: dict, evidence: Evidence) -> Outcome | None:
    rows = _rows(evidence, check["table"], check["rows"])
    if not rows:
        return None
    fraction = _improved_fraction(rows)
    return Outcome(fraction > check["min_fraction"], {f"fraction improved ({check['rows']} rows)": round(fraction, 4),
                                                       "needs more than": check["min_fraction"]})


@checker("count_improved_families")
def count_improved_families(check: dict, evidence: Evidence) -> Outcome | None:
    rows = _rows(evidence, check["table"])
    if not rows:
        return None
    families = sorted({r["family"] for r in rows})
    improved = [f for f in families if all(r["finetune"] > r["original"] for r in rows if r["family"] == f)]
    return Outcome((len(improved), len(families)) == (check["count"], check["of"]),
                   {"improved families": improved, "of": len(families)})


@checker("compare_fraction_improved")
def compare_fraction_improved(check: dict, evidence: Evidence) -> Outcome | None:
    mine, other = _rows(evidence, check["table"]), _rows(evidence, check["than"])
    if not mine or not other:
        return None
    a, b = _improved_fraction(mine), _improved_fraction(other)
    return Outcome(a < b, {f"fraction improved, {check['table']}": round(a, 4),
                           f"fraction improved, {check['than']}": round(b, 4)})
