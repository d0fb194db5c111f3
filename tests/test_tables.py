"""Table 3 rendering and claim checks, on the published numbers themselves and on perturbed copies."""
import math

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


def test_markdown_has_every_net_and_the_proxy_note():
    text = tables.render_markdown(published(), "mini", proxy=True, header={"seed": 1},
                                  checks=check_claims(published()))
    assert "Proxy" in text
    for r in paper.table3():
        assert f"| {r.net} |" in text
    assert "verdict" not in text.split("## The paper")[0]
    csv_text = tables.render_csv(published(), proxy=False)
    assert csv_text.splitlines()[0].startswith("net,family,rvl_cdip_published,rvl_cdip_reproduced,rvl_cdip_diff")
