"""The paper's claims (paper_tables/claims.json) checked on published or reproduced numbers.

    engine       Outcome, Evidence, the checker registry, evaluate / evaluate_all / render
    table3       Table 3 kinds (family_rank, variance_share, range_trend, bold_is_family_best)
    finetune     Tables 2/4 kinds (mean_delta, fraction_improved, count_improved_families, ...)
    invariance   Figs. 1, 2, 7-10 kinds (baseline_gap, crop_centre, cross_domain_*, ...)
    distance     Figs. 3, 11, 12 kinds (knn_same_family, family_cluster, typical_distance, ...)

Every module of this package is imported here, so a new kind is a function in one of them (or a new
module) decorated with `@checker("kind")`, plus its definition under "kinds" in claims.json.
"""
import importlib
import pkgutil

from replicate.claims.engine import (CHECKERS, ClaimResult, Evidence, Outcome, as_dicts, checker, evaluate,
                                     evaluate_all, render)

for _module in pkgutil.iter_modules(__path__):
    if _module.name != "engine":
        importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["CHECKERS", "ClaimResult", "Evidence", "Outcome", "as_dicts", "checker", "evaluate", "evaluate_all",
           "render"]
