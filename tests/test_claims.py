"""The claims engine: every kind holds on hand-made numbers that satisfy it and fails on numbers that do not."""
import pytest

from replicate import claims, paper, zoo
from replicate.claims import Evidence
from replicate.experiments.invariance import Request

RVL = "rvl-cdip"


def kind_checker(kind: str):
    return claims.CHECKERS[kind]


# ------------------------------------------------------------------------------------------ Table 3
def accuracies(by_family: dict[str, float], dataset: str = RVL, rank_slope: float = 0.0) -> dict:
    """Every net of `dataset` at its family's accuracy (+ rank_slope x range_rank)."""
    return {dataset: {n.name: by_family.get(n.family, 50.0) + rank_slope * n.range_rank for n in zoo.nets(dataset)}}


def test_family_rank():
    check = {"kind": "family_rank", "datasets": [RVL], "top": ["shear"], "bottom": ["blur"]}
    good = accuracies({"shear": 60, "blur": 40})
    bad = accuracies({"shear": 40, "blur": 60})
    assert kind_checker("family_rank")(check, Evidence(accuracies=good)).holds
    assert not kind_checker("family_rank")(check, Evidence(accuracies=bad)).holds
    assert kind_checker("family_rank")({**check, "datasets": ["ilsvrc"]}, Evidence(accuracies=good)) is None


def test_variance_share():
    check = {"kind": "variance_share", "dataset": RVL, "min_share": 0.5}
    by_family = {f: 40 + 3 * i for i, f in enumerate(zoo.FAMILIES)}
    assert kind_checker("variance_share")(check, Evidence(accuracies=accuracies(by_family))).holds
    # within-family spread dominates when families are equal and ranges differ
    assert not kind_checker("variance_share")(check, Evidence(accuracies=accuracies({}, rank_slope=5))).holds


def test_range_trend():
    check = {"kind": "range_trend", "dataset": RVL, "families": ["rotation", "shear"], "min_rho": 0.0}
    assert kind_checker("range_trend")(check, Evidence(accuracies=accuracies({}, rank_slope=1))).holds
    assert not kind_checker("range_trend")(check, Evidence(accuracies=accuracies({}, rank_slope=-1))).holds


def test_bold_is_family_best():
    check = {"kind": "bold_is_family_best", "datasets": [RVL]}
    acc = accuracies({}, rank_slope=1)
    best = {n.name: n.family != "baseline" and n.range_rank == max(m.range_rank for m in zoo.nets(RVL, n.family))
            for n in zoo.nets(RVL)}
    assert kind_checker("bold_is_family_best")(check, Evidence(accuracies=acc, bold={RVL: best})).holds
    wrong = {**best, "Baseline 1": True}
    assert not kind_checker("bold_is_family_best")(check, Evidence(accuracies=acc, bold={RVL: wrong})).holds
    assert kind_checker("bold_is_family_best")(check, Evidence(accuracies=acc)) is None   # a reproduction


# ------------------------------------------------------------------------------------- Tables 2/4
def finetune_rows(deltas: dict[str, list[float]]) -> list[dict]:
    """Rows 0-2 per family with finetune = original + delta."""
    return [{"family": f, "row": i, "original": 50.0, "finetune": 50.0 + d}
            for f, ds in deltas.items() for i, d in enumerate(ds)]


@pytest.mark.parametrize("check, good, bad", [
    ({"kind": "mean_delta", "rows": "untransformed", "low": 0.25, "high": 1.0},
     {"a": [0.5, -1, -1], "b": [0.5, -1, -1]}, {"a": [2.0, 1, 1], "b": [1.0, 1, 1]}),
    ({"kind": "mean_delta", "rows": "transformed", "low": 0.25, "high": 1.0},
     {"a": [-3, 0.5, 0.5]}, {"a": [3, -0.5, 0.5]}),
    ({"kind": "fraction_improved", "rows": "transformed", "min_fraction": 0.5},
     {"a": [-1, 1, 1], "b": [-1, 1, -1]}, {"a": [1, 1, -1], "b": [1, -1, -1]}),
    ({"kind": "count_improved_families", "count": 1, "of": 2},
     {"a": [1, 1, 1], "b": [1, -1, 1]}, {"a": [1, 1, 1], "b": [1, 1, 1]}),
])
def test_finetune_kinds(check, good, bad):
    run = kind_checker(check["kind"])
    check = {"table": "table2", **check}
    assert run(check, Evidence(finetune={"table2": finetune_rows(good)})).holds
    assert not run(check, Evidence(finetune={"table2": finetune_rows(bad)})).holds
    assert run(check, Evidence(finetune={})) is None


def test_compare_fraction_improved():
    check = {"kind": "compare_fraction_improved", "table": "table4", "than": "table2"}
    more, fewer = finetune_rows({"a": [1, 1, 1]}), finetune_rows({"a": [1, -1, -1]})
    run = kind_checker("compare_fraction_improved")
    assert run(check, Evidence(finetune={"table4": fewer, "table2": more})).holds
    assert not run(check, Evidence(finetune={"table4": more, "table2": fewer})).holds
    assert run(check, Evidence(finetune={"table4": fewer})) is None


# ------------------------------------------------------------------------------------- Figs. 1-10
def rows(n: int, eq: float, inv: float, untransformed: float = 0.9, labels=None, l2: float = 0.5) -> list[dict]:
    """A flat curve of n settings (accuracies eq/inv; L_L2 l2 on both lines)."""
    line = lambda acc: {"accuracy": acc, "l2_authors": l2, "l2_per_neuron": l2, "loss": 1.0}
    return [{"index": i, "label": labels[i] if labels else f"s{i}", "equivariance": line(eq), "invariance": line(inv),
             "untransformed": line(untransformed)} for i in range(n)]


def curves_widest(gaps: dict[str, tuple[float, float]], dataset: str = RVL) -> dict:
    """Baseline 1 and the widest net on each family: {family: (baseline gap, widest gap)} at invariance 0.5."""
    out = {}
    for family, (base_gap, wide_gap) in gaps.items():
        out[Request(dataset, zoo.get("baseline_1", dataset), family, dataset)] = rows(4, 0.5 + base_gap, 0.5)
        out[Request(dataset, zoo.widest(dataset, family), family, dataset)] = rows(4, 0.5 + wide_gap, 0.5)
    return out


FIVE = ("blur", "noise", "rotation", "shear", "color_jitter")


def test_baseline_gap_and_widest_gap_smaller():
    base_gap = {"kind": "baseline_gap", "min_gap": 0.05, "min_families": 5, "exception": "color_jitter"}
    smaller = {"kind": "widest_gap_smaller", "min_families": 5}
    good = curves_widest({f: (0.0 if f == "color_jitter" else 0.2, 0.01) for f in FIVE})
    bad = curves_widest({f: (0.01, 0.2) for f in FIVE})
    for check in (base_gap, smaller):
        assert kind_checker(check["kind"])(check, Evidence(curves=good)).holds
        assert not kind_checker(check["kind"])(check, Evidence(curves=bad)).holds
    assert kind_checker("baseline_gap")(base_gap, Evidence(curves=curves_widest({"blur": (0.2, 0)}))) is None


def test_baseline_mild_drop_and_widest_above_baseline():
    drop = {"kind": "baseline_mild_drop", "families": ["blur"], "mild": 3, "min_drop": 0.05}
    above = {"kind": "widest_above_baseline", "families": ["blur"], "line": "equivariance"}
    good = curves_widest({"blur": (0.0, 0.3)})        # baseline invariance 0.5 < untransformed 0.9
    assert kind_checker("baseline_mild_drop")(drop, Evidence(curves=good)).holds
    assert kind_checker("widest_above_baseline")(above, Evidence(curves=good)).holds
    bad = {r: rows(4, 0.9, 0.9) if r.net.family == "baseline" else rows(4, 0.5, 0.5) for r in good}
    assert not kind_checker("baseline_mild_drop")(drop, Evidence(curves=bad)).holds
    assert not kind_checker("widest_above_baseline")(above, Evidence(curves=bad)).holds


def test_setting_compare():
    check = {"kind": "setting_compare", "family": "mirror", "net": "baseline", "line": "invariance",
             "a": "flip_lr", "b": "flip_ud", "relation": "greater", "margin": 0.05}
    request = Request(RVL, zoo.get("baseline_1", RVL), "mirror", RVL)
    curve = rows(2, 0.5, 0.5, labels=["flip_ud", "flip_lr"])
    curve[1]["invariance"] = {**curve[1]["invariance"], "accuracy": 0.7}
    assert kind_checker("setting_compare")(check, Evidence(curves={request: curve})).holds
    assert not kind_checker("setting_compare")({**check, "relation": "equal"}, Evidence(curves={request: curve})).holds


def curves_ranges(family: str, slope: float, dataset: str = RVL) -> dict:
    """Baseline 1 and every net of a family, mean accuracy 0.5 + slope x range_rank on both lines."""
    nets = (zoo.get("baseline_1", dataset), *zoo.nets(dataset, family))
    return {Request(dataset, n, family, dataset): rows(3, 0.5 + slope * n.range_rank, 0.5 + slope * n.range_rank)
            for n in nets}


def test_robustness_range_trend_and_range_spread_small():
    trend = {"kind": "robustness_range_trend", "except": []}
    spread = {"kind": "range_spread_small", "family": "rotation", "line": "invariance", "max_spread": 0.02}
    assert kind_checker("robustness_range_trend")(trend, Evidence(curves=curves_ranges("rotation", 0.05))).holds
    assert not kind_checker("robustness_range_trend")(trend, Evidence(curves=curves_ranges("rotation", -0.05))).holds
    assert kind_checker("range_spread_small")(spread, Evidence(curves=curves_ranges("rotation", 0.001))).holds
    assert not kind_checker("range_spread_small")(spread, Evidence(curves=curves_ranges("rotation", 0.05))).holds


def test_no_gap_and_crop_centre():
    no_gap = {"kind": "no_gap", "family": "crop", "max_gap": 0.02}
    centre = {"kind": "crop_centre", "line": "invariance"}
    request = Request(RVL, zoo.get("crop_320", RVL), "crop", RVL, 320)
    grid = rows(25, 0.5, 0.5)
    for row in grid:
        r, c = divmod(row["index"], 5)
        inner = 0 < r < 4 and 0 < c < 4
        row["invariance"] = {**row["invariance"], "accuracy": 0.8 if inner else 0.4}
        row["equivariance"] = dict(row["invariance"])
    assert kind_checker("no_gap")(no_gap, Evidence(curves={request: grid})).holds
    assert kind_checker("crop_centre")(centre, Evidence(curves={request: grid})).holds
    flipped = [{**row, "invariance": {**row["invariance"], "accuracy": 1.2 - row["invariance"]["accuracy"]}}
               for row in grid]
    assert not kind_checker("no_gap")(no_gap, Evidence(curves={request: flipped})).holds
    assert not kind_checker("crop_centre")(centre, Evidence(curves={request: flipped})).holds


def test_cross_domain_kinds():
    lower = {"kind": "cross_domain_lower", "measured_on": "andoc", "lines": ["invariance"]}
    higher = {"kind": "cross_domain_higher", "measured_on": "andoc", "families": ["mirror"], "lines": ["invariance"]}
    net = zoo.widest(RVL, "mirror")

    def curves(home_l2: float, away_l2: float) -> dict:
        return {Request(RVL, net, "mirror", RVL): rows(3, 0.5, 0.5, l2=home_l2),
                Request(RVL, net, "mirror", "andoc"): rows(3, 0.5, 0.5, l2=away_l2)}
    assert kind_checker("cross_domain_lower")(lower, Evidence(curves=curves(0.2, 0.4))).holds      # 1 - L_L2 lower away
    assert not kind_checker("cross_domain_lower")(lower, Evidence(curves=curves(0.4, 0.2))).holds
    assert kind_checker("cross_domain_higher")(higher, Evidence(curves=curves(0.4, 0.2))).holds
    assert not kind_checker("cross_domain_higher")(higher, Evidence(curves=curves(0.2, 0.4))).holds


# ------------------------------------------------------------------------------------------ engine
def test_every_kind_of_claims_json_has_exactly_one_checker():
    assert set(paper.claim_kinds()) <= set(claims.CHECKERS)
    with pytest.raises(ValueError, match="two checkers"):
        claims.checker("family_rank")(lambda check, evidence: None)


def test_claims_are_selected_by_table_or_figure_number():
    ids = {r.id for r in claims.evaluate_all(("3",), Evidence())}
    assert "F3a-knn-rvl" in ids and "F3-crop-unique-rvl" in ids and not any(i.startswith("T") for i in ids)
    results = claims.evaluate_all(("table2",), Evidence())
    assert [r.verdict for r in results] == [claims.engine.NOT_APPLICABLE] * len(results) and results
