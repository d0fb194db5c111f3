"""Table 3 rendering and claim checks, on the published numbers themselves and on perturbed copies."""
import math
import re

from replicate import claims, paper
from replicate.experiments import table3 as tables


def check_claims(results: dict) -> list:
    """Table 3's claims through the claims engine."""
    return claims.evaluate_all(("table3",), claims.Evidence(accuracies=results))


def published() -> dict:
    return {d: {r.net: r.accuracy[d] for r in paper.table3()} for d in paper.DATASETS}


def test_published_numbers_reproduce_themselves():
    results = published()
    for d in paper.DATASETS:
        assert math.isclose(tables.rank_correlation(results, d), 1.0)
    rows = tables.table3_rows(results, proxy=False)
    assert all(r["rvl_cdip_diff"] == 0 and r["rvl_cdip_verdict"] == "agrees" for r in rows)
    checks = {c.id: c.holds for c in check_claims(results)}
    # The paper's own claims hold on the paper's own numbers (as claims.json records).
    assert checks["T3-crop-shear-best-elastic-blur-worst"] is True
    assert checks["T3-shear-best"] is True
    assert checks["T3-rvl-type-over-parameters"] is True
    assert checks["T3-ilsvrc-larger-ranges-better"] is True


def test_claims_can_fail():
    results = published()
    for name in results["ilsvrc"]:
        if name.startswith("Shear"):
            results["ilsvrc"][name] -= 10  # shear now hurts
    checks = {c.id: c.holds for c in check_claims(results)}
    assert checks["T3-shear-best"] is False


def one_seed(results: dict) -> tables.Table3Result:
    return tables.Table3Result({d: {n: [a] for n, a in nets.items()} for d, nets in results.items()})


def test_markdown_has_every_net_and_the_proxy_note():
    text = tables.render_markdown(one_seed(published()), "mini", proxy=True, header={"seed": 1},
                                  checks=check_claims(published()))
    assert "Proxy" in text
    for r in paper.table3():
        assert f"| {r.net} |" in text
    assert "verdict" not in text.split("## The paper")[0]
    assert not re.search(r"\d ± \d", text)   # one seed: no spread to show (net names hold "θ = ±5")
    csv_text = tables.render_csv(one_seed(published()), proxy=False)
    assert csv_text.splitlines()[0].startswith("net,family,rvl_cdip_published,rvl_cdip_reproduced,rvl_cdip_diff")


def replicated(offsets: tuple[float, ...]) -> tables.Table3Result:
    """The published numbers with each replica k shifted by offsets[k] (every net alike)."""
    return tables.Table3Result({d: {n: [a + o for o in offsets] for n, a in nets.items()}
                                for d, nets in published().items()})


def test_seeds_give_mean_and_spread_in_markdown_and_csv():
    import csv
    import io
    result = replicated((-1.0, 0.0, 1.0))
    text = tables.render_markdown(result, "mini", proxy=True, header={}, checks=[])
    first = paper.table3()[0]
    assert f"| {first.net} | {first.accuracy['rvl-cdip']:.2f} | {first.accuracy['rvl-cdip']:.2f} ± 1.00 |" in text
    rows = list(csv.DictReader(io.StringIO(tables.render_csv(result, proxy=True))))
    assert all(float(r["rvl_cdip_spread"]) == 1.0 and float(r["rvl_cdip_diff"]) == 0.0 for r in rows)


def test_seed_noise_is_the_spread_of_all_baseline_runs():
    import numpy as np
    result = replicated((0.0, 2.0))
    base = [a + o for r in paper.table3() if r.family == "baseline" for a in [r.accuracy["ilsvrc"]] for o in (0, 2)]
    assert math.isclose(result.noise()["ilsvrc"], float(np.std(base, ddof=1)))
    assert "Seed noise, ilsvrc:" in tables.render_markdown(result, "mini", True, {}, [])


def test_claims_say_whether_their_margin_exceeds_the_seed_noise():
    results = published()
    quiet = {c.id: c.numbers for c in claims.evaluate_all(("table3",), claims.Evidence(results, noise={
        "rvl-cdip": 0.01, "ilsvrc": 0.01}))}
    loud = {c.id: c.numbers for c in claims.evaluate_all(("table3",), claims.Evidence(results, noise={
        "rvl-cdip": 50.0, "ilsvrc": 50.0}))}
    for claim_id in ("T3-shear-best", "T3-ilsvrc-larger-ranges-better", "T3-rvl-type-over-parameters"):
        assert quiet[claim_id]["margin above seed noise"] is True, quiet[claim_id]
        assert loud[claim_id]["margin above seed noise"] is False, loud[claim_id]
    unmeasured = {c.id: c.numbers for c in check_claims(results)}
    assert unmeasured["T3-shear-best"]["margin above seed noise"] is None
