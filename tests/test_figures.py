"""Figure commands at smoke scale on two trained smoke nets (Baseline 1, the widest Mirror net); bad input."""
import csv
import json

import pytest
import torch

from convert.errors import UserError
from replicate import cli, pipeline, zoo
from replicate.config import get_scale
from replicate.executors import LocalExecutor
from replicate.experiment_data import data_for
from replicate import experiments, options
from replicate.experiments import base
from replicate.experiments.invariance import get_spec, requests
from replicate.measure import fitters
from replicate.measure.phi import Source, phi, views
from replicate.store import Store

NETS = {"baseline_1", "mirror_ud_lr"}


@pytest.fixture(scope="module")
def out(tmp_path_factory):
    """A store with the smoke RVL-CDIP data and the two nets trained (as the figure command would)."""
    out = tmp_path_factory.mktemp("figures")
    scale, store = get_scale("smoke"), Store(out / "store")
    data = data_for("rvl-cdip", scale, store, None, progress=False)
    pipeline.collect(store, scale, ["rvl-cdip"], {"rvl-cdip": data}, "caffe", "cpu", LocalExecutor(2), progress=False, only=NETS)
    return out


def test_fig7_writes_png_pdf_csv_json_and_claims(out, capsys):
    assert cli.main(["fig7", "--scale", "smoke", "--families", "mirror", "--out", str(out), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "B1-rvl-baseline-mirrors-equal" in printed and ("holds" in printed)
    stem = out / "figures" / "smoke" / "fig7-rvl-cdip"
    assert stem.with_suffix(".png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert stem.with_suffix(".pdf").read_bytes()[:4] == b"%PDF"
    rows = list(csv.DictReader(open(stem.with_suffix(".csv"))))
    # 2 nets x 3 flips x 2 lines, every value an accuracy in [0, 1]
    assert len(rows) == 12 and {r["setting"] for r in rows} == {"flip_ud", "flip_lr", "flip_both"}
    assert all(0 <= float(r["plotted"]) <= 1 and r["plotted"] == r["accuracy"] for r in rows)
    sidecar = json.loads(stem.with_suffix(".json").read_text())
    assert sidecar["config"]["test_time_dropout"] == "caffe" and sidecar["config"]["fitter"] == "fast"
    assert sidecar["config"]["l2_normalisation"] == "authors"
    verdicts = {c["id"]: c["verdict"] for c in sidecar["claims"]}
    assert verdicts["B1-rvl-baseline-mirrors-equal"] in ("holds", "does not hold")
    # the untransformed accuracy through the stored phi and fc8 is the net's Table 3 accuracy
    job = Source(Store(out / "store"), get_scale("smoke"), "rvl-cdip",
                 data_for("rvl-cdip", get_scale("smoke"), Store(out / "store"), None, progress=False),
                 data_for("rvl-cdip", get_scale("smoke"), Store(out / "store"), None, progress=False),
                 zoo.get("baseline_1", "rvl-cdip"), "caffe").train_job
    base = [r for r in rows if r["net"] == "baseline_1"][0]
    assert float(base["untransformed_accuracy"]) * 100 == pytest.approx(job.result()["accuracy"], abs=1e-6)


def test_fast_fitter_held_out_loss_no_worse_than_paper_on_real_phi(out):
    scale, store = get_scale("smoke"), Store(out / "store")
    data = data_for("rvl-cdip", scale, store, None, progress=False)
    source = Source(store, scale, "rvl-cdip", data, data, zoo.get("baseline_1", "rvl-cdip"), "caffe")
    ref, grid = views("mirror", source.net, scale)
    view = dict(grid)["flip_lr"]
    x_fit, y_fit = (torch.from_numpy(phi(source, v, "val")[0]) for v in (view, ref))
    x_rep, y_rep = (torch.from_numpy(phi(source, v, "test")[0]) for v in (view, ref))
    fast, _ = fitters.fit_fast(x_fit, y_fit)
    paper, _ = fitters.fit_paper(x_fit, y_fit)
    assert fitters.loss(fast, x_rep, y_rep) <= fitters.loss(paper, x_rep, y_rep)


def test_a_figure_for_nets_whose_training_failed_names_them_and_why(out, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("loss is nan at iteration 12")
    monkeypatch.setattr(pipeline, "collect", broken)
    spec = get_spec("fig7")
    run_options = options.RunOptions(datasets=("rvl-cdip",), families=("rotation",), scale="smoke", out=out,
                                     progress=False)
    ctx = base.Context(experiments.get("fig7"), run_options)
    with pytest.raises(UserError, match=r"rotation_20 \(missing\).*loss is nan at iteration 12"):
        base.train_missing(ctx, experiments.get("fig7").inputs(ctx))


@pytest.mark.parametrize("argv, expected", [
    (["fig7", "--dataset", "mnist"], "unknown dataset 'mnist'; expected one of rvl-cdip, ilsvrc"),
    (["fig10", "--dataset", "ilsvrc"], "unknown dataset 'ilsvrc'; expected one of rvl-cdip"),
    (["fig1", "--families", "zoom"], "unknown family 'zoom'; expected one of color_jitter, crop"),
    (["fig7", "--fitter", "exact", "--families", "mirror"], "unknown fitter 'exact'; expected one of fast, paper"),
    (["fig7", "--scale", "huge"], "unknown scale 'huge'"),
])
def test_bad_names_list_the_valid_ones(argv, expected, tmp_path, capsys):
    assert cli.main([*argv, "--out", str(tmp_path), "--quiet"]) == 2
    assert expected in capsys.readouterr().err
    assert not (tmp_path / "figures").exists()


def test_unknown_figure_lists_the_figures():
    with pytest.raises(UserError, match="fig1, fig2, fig7, fig8, fig9, fig10"):
        get_spec("fig3")


def test_requests_follow_the_captions():
    fig7 = requests(get_spec("fig7"), ("rvl-cdip",), get_spec("fig7").families)
    assert len(fig7) == 18 and {r.net.id for r in fig7 if r.family == "crop"} == {"crop_320", "baseline_1"}
    assert all(r.measured_resize == 320 for r in fig7 if r.family == "crop")
    fig10 = requests(get_spec("fig10"), ("rvl-cdip",), ("rotation",))
    assert [(r.net.id, r.measured_on) for r in fig10] == [("rotation_20", "rvl-cdip"), ("rotation_20", "andoc")]
    fig2 = requests(get_spec("fig2"), ("rvl-cdip",), ("blur",))
    assert [r.net.id for r in fig2] == ["baseline_1", "blur_1.5", "blur_3"]


def test_a_crop_window_at_the_centre_is_caffes_test_centre_crop(out):
    """The moved window (mean read at the window) reproduces Caffe's own TEST centre crop exactly."""
    from replicate.measure.phi import View, extract
    scale, store = get_scale("smoke"), Store(out / "store")
    data = data_for("rvl-cdip", scale, store, None, progress=False)
    source = Source(store, scale, "rvl-cdip", data, data, zoo.get("baseline_1", "rvl-cdip"), "caffe")
    ref, grid = views("crop", source.net, scale, measured_resize=320)
    assert ref.side > scale.input_size and ref.window is not None
    centre, _ = extract(source, ref, "val", limit=50)
    caffe, _ = extract(source, View(ref.side), "val", limit=50)
    corner, _ = extract(source, dict(grid)["r0c0"], "val", limit=50)
    assert (centre == caffe).all() and not (corner == caffe).all()
