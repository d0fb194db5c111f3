"""Equivariance finetuning (Eqs. 5-7, Tables 2 and 4) at smoke scale: the generated Caffe net, its loss, the
store job (SIGKILL and resume) and the before/after measurements. Two smoke nets are trained once per module."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from convert import caffe_pb2 as pb
from convert import protoio
from convert.errors import UserError
from convert.net import Net
from replicate import paper, zoo
from replicate.config import get_scale
from replicate.executors import LocalExecutor
from replicate.experiment_data import data_for
from replicate.finetune import is_done, nets_of, reproduce, train
from replicate.finetune.net import Lambdas, deploy_branches, finetune_net, loss_weights
from replicate.finetune.views import family_rows, row_view
from replicate.measure.phi import apply_view
from replicate.solver import Solver
from replicate.store import Store
from replicate.training import job_for as train_job_for, resolved_net

DATASET, FAMILIES = "rvl-cdip", ["rotation", "crop"]
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    """Table 2's rotation and crop rows reproduced at smoke scale (trains, finetunes and measures two nets)."""
    store = Store(tmp_path_factory.mktemp("finetune") / "store")
    scale = get_scale("smoke")
    data = data_for(DATASET, scale, store, None, progress=False)
    rows = reproduce("table2", store, scale, data, executor=LocalExecutor(2), progress=False, families=FAMILIES)
    return {"store": store, "scale": scale, "data": data, "rows": rows}


def family(smoke, name: str):
    """(zoo net, reference view, branch views, finetune job) of one family of Table 2."""
    rows = family_rows(paper.finetune_table("table2"), name)
    net = zoo.get(rows[0].net, DATASET)
    ref, views = row_view(rows[0], net, smoke["scale"]), [row_view(r, net, smoke["scale"]) for r in rows[1:]]
    job = train.job_for(smoke["store"], smoke["scale"], DATASET, smoke["data"], net, ref, views, "caffe")
    return net, ref, views, job


def test_reproduce_gives_every_row_with_before_and_after(smoke):
    expected = [r for r in paper.finetune_table("table2") if r.family in FAMILIES]   # table order
    rows = smoke["rows"]
    assert [(r["family"], r["row"], r["paper_label"]) for r in rows] == [(r.family, r.row, r.paper_label)
                                                                         for r in expected]
    for row in rows:
        assert 0 <= row["original"] <= 100 and 0 <= row["finetune"] <= 100
        assert (smoke["store"].root / "finetune-smoke-rvl-cdip" / row["finetune_job"] / "result.json").exists()
        assert (smoke["store"].root / "train-smoke-rvl-cdip" / row["train_job"] / "result.json").exists()
    # Row 0 before finetuning is the Table 3 net's own accuracy (centre crop for Crop 256), through phi and fc8.
    for name in FAMILIES:
        net, *_ = family(smoke, name)
        stored = train_job_for(smoke["store"], smoke["scale"], DATASET, smoke["data"], net, "caffe").result()
        [row0] = [r for r in rows if r["family"] == name and r["row"] == 0]
        assert row0["original"] == pytest.approx(stored["accuracy"], abs=1e-6)
    assert nets_of("table2")["crop"].id == "crop_256"   # the paper's crop net, not the widest (320)
    args = ("table2", smoke["store"], smoke["scale"], smoke["data"])
    assert is_done(*args, families=FAMILIES) and not is_done(*args, families=["mirror"])
    assert not is_done(*args, families=FAMILIES, fitter="paper")


def test_views_follow_the_rows_and_the_size_rule():
    scale, table = get_scale("smoke"), paper.finetune_table("table2")
    crop = zoo.get("crop_256", DATASET)
    side = scale.crop_resize(256)
    windows = [row_view(r, crop, scale).window for r in family_rows(table, "crop")]
    assert windows == [((side - 32) // 2,) * 2, (0, 0), (side - 32, side - 32)]
    views = {(r.family, r.row): row_view(r, zoo.get(r.net, DATASET), scale) for r in table if r.row}
    assert views[("mirror", 1)].params == {"flip": "flip_ud"} and views[("mirror", 2)].params == {"flip": "flip_both"}
    assert views[("color_jitter", 2)].params == {"shift": (-15,)}
    assert views[("shear", 2)].params == {"angle": -15.0, "orientation": "v"}
    k = 32 / 227
    assert views[("elastic", 1)].params["sigma"] == pytest.approx(2.5 * k)
    assert views[("elastic", 1)].params["alpha"] == pytest.approx(5 * k * k)
    assert views[("blur", 2)].params == {"sigma": pytest.approx(2 * k)}
    assert views[("noise", 1)].params["sigma"] == pytest.approx(8.0 * k)   # noise sigma scales too
    assert views[("noise", 1)].params["per_channel"] is False
    assert views[("perspective", 1)].params["sigma"] == pytest.approx(0.0002 * k)   # the grid's mildest warp
    assert views[("perspective", 2)].params["sigma"] == pytest.approx(0.0004 * k)


def test_prototxt_has_one_copy_of_each_parameter_and_one_map_per_branch(smoke):
    net, ref, views, job = family(smoke, "rotation")
    param = protoio.read_net(job.dir / "train_val.prototxt")
    ft = Net(param, pb.TRAIN, root=job.dir)
    trained = Net(resolved_net(smoke["scale"], DATASET, smoke["data"], net), pb.TRAIN, root=job.dir)
    learnable = ft.learnable_blobs()
    assert [b.layer for b in learnable] == [b.layer for b in trained.learnable_blobs()] + \
        ["equiv_g1", "equiv_g1", "equiv_g2", "equiv_g2"]
    maps = [lp for lp in param.layer if lp.name.startswith("equiv_")]
    assert [lp.name for lp in maps] == ["equiv_g1", "equiv_g2"]
    assert all(lp.inner_product_param.weight_filler.type == "constant" for lp in maps)
    for lp, layer in ft.named_layers():
        base = lp.name.rsplit("_g", 1)[0]
        if layer.blob_names and not lp.name.startswith("equiv_"):
            assert [s.name for s in lp.param] == [f"{base}_w", f"{base}_b"]
            assert layer.weight is ft.layer(base).weight and layer.bias is ft.layer(base).bias
    assert {s.lr_mult for lp in param.layer if lp.name.startswith("fc8") for s in lp.param} == {0.0}
    assert {lp.name: pytest.approx(lp.loss_weight[0], rel=1e-6) for lp in param.layer if lp.loss_weight} == {
        "loss": 1.0, **{f"{kind}_g{j}": w for j in (1, 2)
                        for kind, w in zip(("loss", "equivariance_loss", "invariance_loss"),
                                           loss_weights(Lambdas(**job.config["lambdas"]), 2).values())}}


def _solver(param: pb.NetParameter, smoke, net, root: Path) -> Solver:
    solver = train.solver_param(smoke["scale"], DATASET, net.seed)
    solver.max_iter = 1
    weights = train_job_for(smoke["store"], smoke["scale"], DATASET, smoke["data"], net, "caffe").dir / "net.caffemodel"
    return Solver(solver, root=root, net_param=param, seed=net.seed, weights=str(weights), log_path=root / "log")


def test_zero_lambdas_make_one_step_a_plain_training_step(smoke, tmp_path):
    net, ref, views, _ = family(smoke, "rotation")
    plain = resolved_net(smoke["scale"], DATASET, smoke["data"], net)
    for layer in plain.layer:
        if layer.type == "Data":
            layer.data_param.batch_size = 10
        if layer.name == "fc8":
            for spec in layer.param:
                spec.lr_mult = 0   # the finetuning net's classifier is fixed too
    ft = finetune_net(plain, 2, Lambdas(0.0, 0.0, 0.0))
    a = _solver(plain, smoke, net, tmp_path / "a")   # each Solver seeds the global RNG (dropout): build, step, then the next
    a.step(1)
    b = _solver(ft, smoke, net, tmp_path / "b")
    for branch, view in enumerate([ref, *views]):
        apply_view(b.net.layer("data" if branch == 0 else f"data_g{branch}"), view)
    b.step(1)
    for lp, layer in a.net.named_layers():
        for name in layer.blob_names:
            assert torch.equal(getattr(layer, name), getattr(b.net.layer(lp.name), name)), (lp.name, name)
    assert not torch.equal(a.net.layer("fc7").weight, train_job_weights(smoke, net, "fc7"))   # it did move


def train_job_weights(smoke, net, layer: str) -> torch.Tensor:
    job = train_job_for(smoke["store"], smoke["scale"], DATASET, smoke["data"], net, "caffe")
    model = protoio.read_caffemodel(job.dir / "net.caffemodel")
    return torch.from_numpy(protoio.blob_to_array(next(l for l in model.layer if l.name == layer).blobs[0]))


def test_loss_of_one_batch_is_eq7_by_hand(smoke):
    net, ref, views, job = family(smoke, "rotation")
    param = protoio.read_net(job.dir / "train_val.prototxt")
    ft = Net(param, pb.TRAIN, root=job.dir, seed=net.seed)
    ft.load_weights(job.dir / "net.caffemodel")
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for j in (1, 2):   # a map that is not the identity, so x' != phi(gx)
            m = ft.layer(f"equiv_g{j}")
            m.weight.copy_(0.05 * torch.randn(m.weight.shape, generator=gen))
            m.bias.copy_(0.05 * torch.randn(m.bias.shape, generator=gen))
    for branch, view in enumerate([ref, *views]):
        apply_view(ft.layer("data" if branch == 0 else f"data_g{branch}"), view)
    with torch.no_grad():
        blobs = ft(outputs="all")
        lam, J = Lambdas(**job.config["lambdas"]), 2
        phi, labels = blobs["fc7"].double(), blobs["label"].long()   # fc7: after relu7, before drop7
        ce = lambda scores: F.cross_entropy(scores.double(), labels)
        terms = []
        for j in (1, 2):
            m = ft.layer(f"equiv_g{j}")
            phi_g = blobs[f"fc7_g{j}"].double()
            mapped = torch.relu(phi_g + phi_g @ m.weight.double().T + m.bias.double())
            assert torch.allclose(mapped, blobs[f"mapped_g{j}"].double(), atol=1e-5)
            terms.append(ce(blobs[f"fc8_g{j}"]) + lam.lambda1 * ((mapped - phi) ** 2).sum(1).mean()
                         + lam.lambda2 * ((phi_g - phi) ** 2).sum(1).mean())
        by_hand = ce(blobs["fc8"]) + lam.lambda3 * sum(terms) / J
        assert float(ft.loss(blobs)) == pytest.approx(float(by_hand), rel=1e-5)
    assert lam.lambda1 == 50 / 64 and lam.lambda2 == 25 / 64 and lam.lambda3 == 0.3   # smoke fc7 is 64 wide
    assert not torch.equal(blobs["data_g1"], blobs["data"])   # g applied to branch 1's copy of the records


def test_branches_read_the_same_records_and_random_crops(smoke):
    net, _, _, job = family(smoke, "crop")
    param = protoio.read_net(job.dir / "train_val.prototxt")
    ft = Net(param, pb.TRAIN, root=job.dir, seed=net.seed)
    assert ft.layer("data").transformer.crop and ft.layer("data").transformer.train   # Caffe's random crop
    for _ in range(2):
        blobs = ft(outputs=["data", "data_g1", "data_g2"])   # no fixed windows: Caffe's draws, in lockstep
        assert torch.equal(blobs["data"], blobs["data_g1"]) and torch.equal(blobs["data"], blobs["data_g2"])


def test_finetuning_lowers_the_loss_and_the_equivariance_loss(smoke):
    for name in FAMILIES:
        *_, job = family(smoke, name)
        result = job.result()
        assert result["loss_last_tenth"] < result["loss_first"]
        for row in (r for r in smoke["rows"] if r["family"] == name and r["row"] > 0):
            # The map's loss on the finetuning transforms (fitted on val, scored on test), and L_L2.
            assert row["scores"]["finetune"]["loss"] < row["scores"]["original"]["loss"], row
    l2 = {when: np.mean([r["scores"][when]["l2_authors"] for r in smoke["rows"] if r["row"] > 0])
          for when in ("original", "finetune")}
    assert l2["finetune"] < l2["original"]


def test_stored_prototxt_loads_in_our_net_and_in_opencv(smoke, tmp_path):
    net, _, _, job = family(smoke, "rotation")
    param = protoio.read_net(job.dir / "train_val.prototxt")
    for phase in (pb.TRAIN, pb.TEST):
        report = Net(param, phase, root=job.dir).load_weights(job.dir / "net.caffemodel")
        assert not report["untouched"]
        assert all("_g" in name for name in report["ignored"]) and (phase == pb.TEST) == bool(report["ignored"])
    # OpenCV's importer ignores phases, so no train_val with TRAIN and TEST Data layers loads (the Table 3
    # nets' neither); the deploy form of every branch does, and computes what our net computes.
    with pytest.raises(cv2.error, match="Duplicate blobs"):
        cv2.dnn.readNetFromCaffe(str(job.dir / "train_val.prototxt"))
    shapes = {b: (3, 1, 32, 32) for b in ("data", "data_g1", "data_g2")}
    deploy = deploy_branches(param, shapes)
    protoio.write_text_proto(tmp_path / "deploy.prototxt", deploy)
    ours = Net(deploy, pb.TEST)
    ours.load_weights(job.dir / "net.caffemodel")
    x = {b: np.random.default_rng(i).normal(size=s).astype(np.float32) for i, (b, s) in enumerate(shapes.items())}
    with torch.no_grad():
        expected = ours({b: torch.from_numpy(v) for b, v in x.items()}, outputs=["fc8", "fc8_g1", "mapped_g2"])
    cvnet = cv2.dnn.readNetFromCaffe(str(tmp_path / "deploy.prototxt"), str(job.dir / "net.caffemodel"))
    cvnet.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
    for b, v in x.items():
        cvnet.setInput(v, b)
    for blob, theirs in zip(expected, cvnet.forward(["fc8", "fc8_g1", "relu_mapped_g2"])):   # layer names
        ref = expected[blob].numpy()
        assert np.abs(ref - theirs).max() <= 1e-5 * np.abs(ref).max(), blob


KILLED_RUN = """
import sys, torch
from pathlib import Path
from replicate import paper, zoo
from replicate.config import get_scale
from replicate.experiment_data import data_for
from replicate.finetune import train
from replicate.finetune.views import family_rows, row_view
from replicate.store import Store
torch.set_num_threads(1)   # as a pipeline worker
store, scale = Store(sys.argv[1]), get_scale("smoke")
data = data_for("rvl-cdip", scale, store, None, progress=False)
rows = family_rows(paper.finetune_table("table2"), "rotation")
net = zoo.get(rows[0].net, "rvl-cdip")
ref, views = row_view(rows[0], net, scale), [row_view(r, net, scale) for r in rows[1:]]
job = train.job_for(store, scale, "rvl-cdip", data, net, ref, views, "caffe")
train.finetune(job, scale, "rvl-cdip", data, net, ref, views, "caffe")
"""


def test_sigkill_mid_finetuning_then_rerun_resumes_to_the_same_numbers(smoke, tmp_path):
    *_, job = family(smoke, "rotation")
    finished = job.dir.with_name(job.dir.name + ".finished")
    job.dir.rename(finished)
    store = smoke["store"]
    stale = [p.parent for p in store.root.glob("*/*/config.json")
             if json.loads(p.read_text()).get("weights_job") == job.dir.name]
    for path in stale:   # the after-finetuning measurements: recomputed from the resumed weights
        shutil.rmtree(path)
    script = tmp_path / "killed.py"
    script.write_text(KILLED_RUN)
    proc = subprocess.Popen([sys.executable, str(script), str(store.root)], cwd=ROOT, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not train._snapshots(job.dir) or train._snapshots(job.dir)[-1][0] < 20:
        if time.time() > deadline or proc.poll() is not None:
            break
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not job.done and list(job.dir.glob("net_iter_*.solverstate.json")), "the kill should land mid-run"
    *_, crop_job = family(smoke, "crop")
    crop_result = (crop_job.dir / "result.json").stat().st_mtime_ns
    rows = reproduce("table2", store, smoke["scale"], smoke["data"], executor=LocalExecutor(2), progress=False, families=FAMILIES)
    assert (crop_job.dir / "result.json").stat().st_mtime_ns == crop_result   # finished jobs are read
    resumed, uninterrupted = job.result(), json.loads((finished / "result.json").read_text())["result"]
    assert resumed["resumed_from"] >= 20
    for key in ("loss_first", "loss_last", "loss_last_tenth", "iterations"):
        assert resumed[key] == uninterrupted[key], key
    ours, theirs = (protoio.read_caffemodel(d / "net.caffemodel") for d in (job.dir, finished))
    for a, b in zip(ours.layer, theirs.layer):
        assert a.name == b.name
        for x, y in zip(a.blobs, b.blobs):
            assert np.array_equal(protoio.blob_to_array(x), protoio.blob_to_array(y)), a.name
    assert [r for r in rows if r["family"] == "rotation"] == [r for r in smoke["rows"] if r["family"] == "rotation"]
    assert not list(job.dir.glob("net_iter_*"))   # snapshots are removed once the job is done
    shutil.rmtree(finished)


def test_unknown_table_is_a_one_line_user_error(smoke):
    with pytest.raises(UserError) as err:
        reproduce("table5", smoke["store"], smoke["scale"], smoke["data"], progress=False)
    assert "table5" in str(err.value) and "table2" in str(err.value) and "\n" not in str(err.value)


def test_table_commands_give_one_line_and_exit_2_on_bad_input(tmp_path, capsys):
    from replicate import cli
    # paper scale without --data-root: the finetuned nets cannot be trained
    assert cli.main(["table2", "--scale", "paper", "--out", str(tmp_path), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "needs --data-root" in err[0] and not (tmp_path / "table2").exists()
    with pytest.raises(SystemExit) as exit_info:   # an unknown table is an unknown command
        cli.main(["table5"])
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_info.value.code == 2 and len(err) == 1 and "invalid choice: 'table5'" in err[0] and "table2" in err[0]
