"""The claims engine: every claim kind of paper_tables/claims.json checked by one registered function.

A checker is `fn(check, evidence) -> Outcome | None`: `check` is the claim's structured check (its
fields are defined under "kinds" in claims.json), `evidence` what a run measured. It returns None when
the evidence lacks what the check needs (the claim is then "not applicable"), else whether the claim
holds and the numbers behind the verdict. Tables, figures and the tests of the published numbers all
evaluate claims through `evaluate`, so a kind has exactly one implementation.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from replicate import paper

HOLDS, FAILS, NOT_APPLICABLE = "holds", "does not hold", "not applicable (not measured by this run)"


@dataclass(frozen=True)
class Outcome:
    """A checker's verdict and the numbers it rests on (JSON-serialisable)."""
    holds: bool
    numbers: dict


@dataclass
class Evidence:
    """What a run measured; each checker reads the part it needs."""
    accuracies: dict | None = None   # Table 3: {dataset: {net name: accuracy %}}
    bold: dict | None = None         # the published Table 3's bold flags: {dataset: {net name: bool}}
    curves: dict | None = None       # Figs. 1, 2, 7-10: {Request: rows of the measurement grid}
    finetune: dict | None = None     # Tables 2/4: {"table2": [{"family", "row", "original", "finetune"}, ...]}
    distances: dict | None = None    # Figs. 3, 11, 12: {dataset: DistanceMatrix}
    l2: str | None = None            # the L_L2 normalisation the run chose (None: replicate.config.DEFAULT_L2)
    noise: dict | None = None        # Table 3: {dataset: seed noise, the sd of its baseline runs in points}


Checker = Callable[[dict, Evidence], "Outcome | None"]
CHECKERS: dict[str, Checker] = {}


def checker(kind: str) -> Callable[[Checker], Checker]:
    """Register the checker of a claim kind (one per kind; a second registration is a bug)."""
    def register(fn: Checker) -> Checker:
        if kind in CHECKERS:
            raise ValueError(f"claim kind {kind!r} has two checkers")
        CHECKERS[kind] = fn
        return fn
    return register


@dataclass(frozen=True)
class ClaimResult:
    """One claim evaluated: verdict (holds / does not hold / not applicable) with its numbers."""
    id: str
    location: str
    quote: str
    verdict: str
    numbers: dict | None

    @property
    def holds(self) -> bool | None:
        return {HOLDS: True, FAILS: False}.get(self.verdict)


def evaluate(claim: paper.Claim, evidence: Evidence) -> ClaimResult:
    """One claim on the evidence."""
    if claim.check["kind"] not in CHECKERS:
        raise ValueError(f"claim kind {claim.check['kind']!r} has no checker")
    check = {"table": claim.table, **claim.check}   # a table's kinds read which table they are about
    outcome = CHECKERS[claim.check["kind"]](check, evidence)
    verdict = NOT_APPLICABLE if outcome is None else HOLDS if outcome.holds else FAILS
    return ClaimResult(claim.id, claim.location, claim.quote, verdict, None if outcome is None else outcome.numbers)


def about(tag: str) -> Callable[[paper.Claim], bool]:
    """Selects the claims about a table ("table3") or a figure number ("7"; "3" also takes "3a", "3b")."""
    def selected(claim: paper.Claim) -> bool:
        if tag.startswith("table"):
            return claim.table == tag
        return claim.figure is not None and any(t.strip().rstrip("abcdefgh") == tag for t in claim.figure.split(","))
    return selected


def evaluate_all(tags: tuple[str, ...], evidence: Evidence) -> list[ClaimResult]:
    """Every claim about any of the tables/figures `tags`, in claims.json order."""
    chosen = [about(t) for t in tags]
    return [evaluate(c, evidence) for c in paper.claims() if any(s(c) for s in chosen)]


def render(results: list[ClaimResult]) -> str:
    """The claim checks as text: one line per claim, its numbers indented below."""
    lines = []
    for r in results:
        lines.append(f"[{r.verdict}] {r.id} ({r.location}): \"{r.quote}\"")
        if r.numbers is not None:
            lines.append(f"    {r.numbers}")
    return "\n".join(lines)


def as_dicts(results: list[ClaimResult]) -> list[dict[str, Any]]:
    """JSON form of the results (for sidecars)."""
    return [{"id": r.id, "location": r.location, "quote": r.quote, "verdict": r.verdict, "numbers": r.numbers}
            for r in results]
