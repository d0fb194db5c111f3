"""`replicate fig3|fig11|fig12` at smoke scale end to end: every net, one shared matrix, reruns, bad input."""
import csv
import json

import pytest

from replicate import cli, zoo

ARGS = ["--scale", "smoke", "--dataset", "rvl-cdip", "--quiet"]


def stored(out, kind: str) -> dict:
    """result.json of every job of a kind: mtime and bytes (to prove a rerun recomputed nothing)."""
    return {p.parent.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in (out / "store").glob(f"{kind}/*/result.json")}


@pytest.fixture(scope="module")
def out(tmp_path_factory):
    out = tmp_path_factory.mktemp("distance")
    assert cli.main(["fig3", *ARGS, "--out", str(out)]) == 0
    return out


def test_fig3_writes_the_figure_the_full_matrices_and_the_claims(out, capsys):
    stem = out / "figures" / "smoke" / "fig3-rvl-cdip"
    assert stem.with_suffix(".png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert stem.with_suffix(".pdf").read_bytes()[:4] == b"%PDF"
    rows = list(csv.DictReader(open(stem.with_suffix(".csv")).read().split("\n\n")[0].splitlines()))
    nets = [n.id for n in zoo.nets("rvl-cdip")]
    assert len(rows) == len(nets) ** 2 and {r["row_net"] for r in rows} == set(nets)
    by_pair = {(r["row_net"], r["col_net"]): r for r in rows}
    for (a, b), r in by_pair.items():   # D is the sum of the two one-way distances; D' their difference
        for n in ("per_neuron", "authors"):
            one, other = float(r[f"one_way_row_to_col_{n}"]), float(r[f"one_way_col_to_row_{n}"])
            assert float(r[f"D_{n}"]) == pytest.approx(one + other, abs=2e-6)
            assert float(r[f"D_prime_{n}"]) == pytest.approx(abs(one - other), abs=2e-6)
            assert float(by_pair[b, a][f"D_{n}"]) == float(r[f"D_{n}"])
    sidecar = json.loads(stem.with_suffix(".json").read_text())
    assert sidecar["config"]["options"]["l2"] == "per-neuron" and sidecar["config"]["options"]["extra"]["combine"] == "sum"
    verdicts = {c["id"]: c["verdict"] for c in sidecar["claims"]}
    assert verdicts["F3a-knn-rvl"] in ("holds", "does not hold") and verdicts["F3a-knn-ilsvrc"].startswith("not applicable")
    assert len(stored(out, "distance-smoke-rvl-cdip")) == len(nets) * (len(nets) - 1)


def test_fig11_and_fig12_reuse_the_stored_matrix(out, capsys):
    before = stored(out, "distance-smoke-rvl-cdip")
    assert cli.main(["fig12", *ARGS, "--out", str(out)]) == 0
    assert cli.main(["fig11", *ARGS, "--out", str(out), "--tsne-seeds", "3"]) == 0
    printed = capsys.readouterr().out
    assert "F12-typical-distance" in printed and "F11-tsne-unstable" in printed
    assert stored(out, "distance-smoke-rvl-cdip") == before
    assert (out / "figures" / "smoke" / "fig11-rvl-cdip.png").exists()


def test_a_corrupt_pair_is_named_and_rebuilt_alone(out, capsys):
    pair = "baseline_1--shear_20"
    [entry] = (out / "store" / "distance-smoke-rvl-cdip").glob(f"{pair}-*")
    (entry / "result.json").write_text("{not json")
    assert cli.main(["fig12", *ARGS, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert str(entry) in err and f"--rebuild {pair}" in err and len(err.strip().splitlines()) == 1
    before = stored(out, "distance-smoke-rvl-cdip")
    assert cli.main(["fig12", *ARGS, "--out", str(out), "--rebuild", pair]) == 0
    after = stored(out, "distance-smoke-rvl-cdip")
    assert {k for k in after if after[k] != before.get(k)} == {entry.name}


@pytest.mark.parametrize("argv, expected", [
    (["fig3", "--fitter", "exact"], "unknown fitter 'exact'; expected one of fast, paper"),
    (["fig3", "--dataset", "mnist"], "unknown dataset 'mnist'; expected one of all, rvl-cdip, ilsvrc"),
    (["fig12", "--clip-gradients", "5"], "clip 5.0: expected a positive gradient norm for the paper or authors fitter"),
    (["fig11", "--tsne-seeds", "1"], "--tsne-seeds 1: expected at least 2"),
    (["fig3", "--rebuild", "nosuch"], "--rebuild 'nosuch': no such network or data set; valid names: baseline_1"),
])
def test_bad_input_is_one_line_and_exit_2(argv, expected, tmp_path, capsys):
    assert cli.main([*argv, "--scale", "smoke", "--out", str(tmp_path), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert expected in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "figures").exists()
