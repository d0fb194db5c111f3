"""paper_tables/: every published cell present and parsing, equal to the paper's own lines, claims well-formed."""
import math
import shutil
from collections import Counter

import pytest
from scipy import stats

from convert.errors import UserError
from replicate import claims, paper, zoo
from replicate.claims import finetune as finetune_claims

EXCERPTS = paper.PAPER_TABLES / "excerpts"


def excerpt_cells(name: str) -> list[tuple[str, str, str]]:
    """(label, cell, cell) triples of a two-halves tab-separated table copied verbatim from paper.md."""
    lines = (EXCERPTS / f"{name}.txt").read_text(encoding="utf-8").splitlines()[1:]  # skip header
    triples = []
    for line in lines:
        fields = line.split("\t")
        assert len(fields) == 6, line
        for half in (fields[:3], fields[3:]):
            if half[1] or half[2]:
                triples.append(tuple(half))
    return triples


def test_table3_equals_the_papers_lines():
    published = Counter(excerpt_cells("table3"))
    ours = Counter((r.paper_label,
                    *(f"<b>{r.text[d]}</b>" if r.bold[d] else r.text[d] for d in paper.DATASETS))
                   for r in paper.table3())
    assert ours == published


@pytest.mark.parametrize("name", ["table2", "table4"])
def test_finetune_tables_equal_the_papers_lines(name):
    ours = Counter((r.paper_label, r.original_text, r.finetune_text) for r in paper.finetune_table(name))
    assert ours == Counter(excerpt_cells(name))


def test_every_table3_cell_present_and_parses():
    rows = paper.table3()
    assert len(rows) == 36 and len({r.net for r in rows}) == 36  # see provenance row_count_note
    for r in rows:
        for d in paper.DATASETS:
            assert 0 < r.accuracy[d] < 100 and math.isfinite(r.accuracy[d])
            assert len(r.text[d].split(".")[1]) == 2, "the paper prints two decimals"


@pytest.mark.parametrize("name", ["table2", "table4"])
def test_finetune_rows_present_and_tied_to_table3(name):
    rows = paper.finetune_table(name)
    assert len(rows) == 27
    assert Counter(r.family for r in rows) == Counter({f: 3 for f in zoo.FAMILIES if f != "baseline"})
    t3 = {r.net: r for r in paper.table3()}
    for r in rows:
        assert r.net in t3
        if r.row == 0:  # the untransformed row is the finetuned net's Table 3 accuracy
            assert r.original_text == t3[r.net].text[r.dataset]


def test_bold_marks_family_best():
    rows = paper.table3()
    for d in paper.DATASETS:
        for family in {r.family for r in rows}:
            members = [r for r in rows if r.family == family]
            best = max(r.accuracy[d] for r in members)
            for r in members:
                assert r.bold[d] == (family != "baseline" and r.accuracy[d] == best), (r.net, d)


@pytest.mark.parametrize("dataset", paper.DATASETS)
def test_tolerance_follows_documented_derivation(dataset):
    baselines = [r.accuracy[dataset] for r in paper.table3() if r.family == "baseline"]
    s = stats.tstd(baselines)
    bound = stats.t.ppf(0.975, len(baselines) - 1) * s * math.sqrt(2)
    assert paper.tolerance(dataset) == math.ceil(bound * 100 - 1e-9) / 100
    assert paper.provenance("table3")["split"][dataset] in ("test", "validation")


def test_claims_parse_and_refer_to_known_things():
    claims = paper.claims()
    kinds = paper.claim_kinds()
    assert len({c.id for c in claims}) == len(claims) >= 10
    assert {c.table for c in claims} >= {"table2", "table3", "table4"}
    for c in claims:
        assert c.quote and c.location and c.check["kind"] in kinds
        assert (c.table is None) != (c.figure is None)
        for key in ("top", "bottom", "families"):
            assert set(c.check.get(key, [])) <= set(zoo.FAMILIES)
        if c.location.endswith("caption") and c.table:
            assert c.quote in paper.provenance(c.table)["caption"]
    assert [c.id for c in paper.claims("table4")] == ["T4-three-of-nine", "T4-more-mixed-than-T2"]


@pytest.mark.parametrize("claim", [c for c in paper.claims() if c.table in ("table2", "table4")],
                         ids=lambda c: c.id)
def test_finetune_claims_hold_on_published_numbers(claim):
    evidence = claims.Evidence(finetune={t: finetune_claims.published(t) for t in paper.FINETUNE_TABLES})
    assert claims.evaluate(claim, evidence).verdict == "holds"


def test_table3_claims_hold_on_published_numbers():
    evidence = claims.Evidence(accuracies={d: {r.net: r.accuracy[d] for r in paper.table3()} for d in paper.DATASETS},
                               bold={d: {r.net: r.bold[d] for r in paper.table3()} for d in paper.DATASETS})
    assert {r.id: r.verdict for r in claims.evaluate_all(("table3",), evidence)} == \
        {c.id: "holds" for c in paper.claims("table3")}


def test_malformed_cell_names_file_and_line(tmp_path, monkeypatch):
    shutil.copytree(paper.PAPER_TABLES, tmp_path / "t")
    path = tmp_path / "t" / "table3.csv"
    lines = path.read_text(encoding="utf-8").splitlines()
    lines[5] = lines[5].replace("88.10", "88.1O")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    monkeypatch.setattr(paper, "PAPER_TABLES", tmp_path / "t")
    paper.table3.cache_clear()
    try:
        with pytest.raises(UserError, match=r"table3\.csv:6: .*not a number"):
            paper.table3()
    finally:
        paper.table3.cache_clear()


def test_unknown_table_and_dataset_are_user_errors():
    with pytest.raises(UserError, match="table2"):
        paper.finetune_table("table5")
    with pytest.raises(UserError, match="rvl-cdip"):
        paper.tolerance("andoc")
