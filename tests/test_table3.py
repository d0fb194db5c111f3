"""`replicate table3 --scale smoke` end to end: real trained nets, no recomputation, SIGKILL and resume."""
import csv
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from replicate import cli, paper, zoo
from replicate.config import get_scale
from replicate.experiment_data import data_for
from replicate.store import Store
from replicate.training import evaluate, resolved_net


def run_table3(out: Path, *extra: str) -> int:
    return cli.main(["table3", "--scale", "smoke", "--out", str(out), "--quiet", *extra])


def results_by_net(out: Path) -> dict[str, tuple[float, bytes]]:
    """result.json of every trained net: mtime and bytes (to prove nothing was recomputed)."""
    return {p.parent.name: (p.stat().st_mtime_ns, p.read_bytes())
            for p in (out / "store").glob("train-*/*/result.json")}


def table_rows(out: Path) -> list[dict]:
    with open(out / "table3" / "smoke" / "table3.csv", newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def smoke_run(table3_smoke) -> Path:
    return table3_smoke   # conftest: the whole smoke table, trained once per session


def test_table_has_every_net_with_published_and_reproduced_numbers(smoke_run):
    rows = table_rows(smoke_run)
    assert [r["net"] for r in rows] == [r.net for r in paper.table3()]
    for row, published in zip(rows, paper.table3()):
        for d in paper.DATASETS:
            col = paper.column(d)
            assert float(row[f"{col}_published"]) == published.accuracy[d]
            reproduced = float(row[f"{col}_reproduced"])
            assert 0 <= reproduced <= 100
            assert float(row[f"{col}_diff"]) == pytest.approx(reproduced - published.accuracy[d], abs=0.011)
    text = (smoke_run / "table3" / "smoke" / "table3.md").read_text()
    assert "Proxy" in text and "Rank correlation" in text
    verdicts = re.findall(r"^- \*\*(holds|does not hold|not applicable[^*]*)\*\* — .*\((T3-[\w-]+)\)", text, re.M)
    assert [claim for _, claim in verdicts] == [c.id for c in paper.claims("table3")]   # one verdict per claim


def test_reproduced_cells_come_from_the_stored_trained_nets(smoke_run):
    scale, store = get_scale("smoke"), Store(smoke_run / "store")
    rows = {r["net"]: r for r in table_rows(smoke_run)}
    for net_id in ("baseline_1", "rotation_20"):
        net = zoo.get(net_id, "rvl-cdip")
        [job_dir] = (smoke_run / "store" / "train-smoke-rvl-cdip").glob(f"{net_id}-*")
        data = data_for("rvl-cdip", scale, store, None, progress=False)
        accuracy = 100 * evaluate(resolved_net(scale, "rvl-cdip", data, net, data.eval_split),
                                  job_dir / "net.caffemodel", job_dir)
        assert float(rows[net.name]["rvl_cdip_reproduced"]) == pytest.approx(accuracy, abs=0.006)
    # Trained, not guessed: the document baselines beat chance (1/16) clearly.
    baselines = [float(rows[f"Baseline {i}"]["rvl_cdip_reproduced"]) for i in (1, 2, 3)]
    assert sum(baselines) / 3 > 2 * 100 / 16


def test_second_run_recomputes_nothing(smoke_run):
    before = results_by_net(smoke_run)
    table_before = table_rows(smoke_run)
    assert run_table3(smoke_run) == 0
    assert results_by_net(smoke_run) == before
    assert table_rows(smoke_run) == table_before


def test_sigkill_then_resume_recomputes_nothing_finished_and_gives_the_same_table(smoke_run, tmp_path):
    # Started as a user would, with a relative --out, in its own session so the kill takes its workers too.
    cmd = [sys.executable, "-m", "replicate.cli", "table3", "--scale", "smoke", "--dataset", "rvl-cdip",
           "--out", "runs", "--quiet"]
    out = tmp_path / "runs"
    proc = subprocess.Popen(cmd, cwd=tmp_path, start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 150
    while len(results_by_net(out)) < 4 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    finished = results_by_net(out)
    assert 4 <= len(finished) < 36, "the kill should land mid-training"
    assert run_table3(out, "--dataset", "rvl-cdip") == 0
    after = results_by_net(out)
    assert len(after) == 36
    assert all(after[name] == finished[name] for name in finished)
    resumed = {r["net"]: r["rvl_cdip_reproduced"] for r in table_rows(out)}
    uninterrupted = {r["net"]: r["rvl_cdip_reproduced"] for r in table_rows(smoke_run)}
    assert resumed == uninterrupted


def test_corrupt_store_entry_is_named_and_rebuild_recomputes_it(smoke_run, capsys):
    [result] = (smoke_run / "store" / "train-smoke-rvl-cdip").glob("shear_10-*/result.json")
    good = result.read_bytes()
    result.write_text("{truncated")
    assert run_table3(smoke_run, "--dataset", "rvl-cdip") == 2
    err = capsys.readouterr().err
    assert str(result) in err and "--rebuild shear_10" in err and len(err.strip().splitlines()) == 1
    other_dataset = results_by_net(smoke_run)
    assert run_table3(smoke_run, "--dataset", "rvl-cdip", "--rebuild", "shear_10") == 0
    # Only the selected dataset's shear_10 was recomputed; ILSVRC's stays as it was.
    [ilsvrc_job] = (smoke_run / "store" / "train-smoke-ilsvrc").glob("shear_10-*")
    assert results_by_net(smoke_run)[ilsvrc_job.name] == other_dataset[ilsvrc_job.name]
    # Deterministic training: the same network again (timings aside).
    assert json.loads(result.read_bytes())["result"]["accuracy"] == json.loads(good)["result"]["accuracy"]


@pytest.mark.parametrize("args, expected", [
    (["--scale", "paper"], "needs --data-root: download"),
    (["--scale", "paper", "--dataset", "rvl-cdip", "--data-root", "."], "not a prepared data directory"),
    (["--dataset", "mnist"], "unknown dataset 'mnist'; expected one of all, rvl-cdip, ilsvrc"),
    (["--scale", "huge"], "unknown scale 'huge'; expected one of smoke, mini, paper"),
    (["--rebuild", "alexnet"], "no such network or data set; valid names: baseline_1"),
])
def test_bad_input_one_line_exit_2(tmp_path, capsys, args, expected):
    assert cli.main(["table3", "--out", str(tmp_path), "--quiet", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert expected in err and len(err.splitlines()) == 1


def test_status_reports_the_finished_store(smoke_run, capsys):
    assert cli.main(["status", "--scale", "smoke", "--out", str(smoke_run)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert any(line.startswith("rvl-cdip (smoke, embedded:mini-docs): 36 done of 36") for line in lines), lines
    assert any(line.startswith("ilsvrc (smoke, embedded:mini-objects): 36 done of 36") for line in lines), lines


def test_data_embedded_lists_and_draws(tmp_path, capsys):
    assert cli.main(["data", "embedded", "--list"]) == 0
    assert "mini-docs" in capsys.readouterr().out
    out = tmp_path / "g.png"
    assert cli.main(["data", "embedded", "--gallery", "mini-objects", "--out", str(out), "--size", "32"]) == 0
    assert out.stat().st_size > 1000


def test_collect_trains_a_seed_replica_beside_the_stored_net(smoke_run, tmp_path):
    """replicas=2: replica 0 is the stored net (not retrained); replica 1 is a new job with seed + stride."""
    import shutil
    from replicate.config import REPLICA_SEED_STRIDE
    from replicate.executors import LocalExecutor
    from replicate.pipeline import collect
    out = tmp_path / "out"
    shutil.copytree(smoke_run / "store", out / "store")
    before = results_by_net(out)
    scale, store, net = get_scale("smoke"), Store(out / "store"), zoo.get("baseline_1", "rvl-cdip")
    data = data_for("rvl-cdip", scale, store, None, progress=False)
    collect(store, scale, ["rvl-cdip"], {"rvl-cdip": data}, "caffe", "cpu", LocalExecutor(1), progress=False,
            only={"baseline_1"}, replicas=2)
    after = results_by_net(out)
    assert all(after[k] == v for k, v in before.items()) and len(after) == len(before) + 1
    [new] = set(after) - set(before)
    config = json.loads((out / "store" / "train-smoke-rvl-cdip" / new / "config.json").read_text())
    assert new.startswith("baseline_1-") and config["seed"] == net.seed + REPLICA_SEED_STRIDE


@pytest.mark.slow
def test_seeds_train_replicas_beside_the_stored_nets_and_print_mean_and_spread(smoke_run, tmp_path):
    """--seeds 2: replica 0 is the stored net (not retrained), replica 1 trains with seed + stride; cells
    are their mean with the sample sd beside it, in the Markdown (±) and the CSV (*_spread)."""
    import shutil
    out = tmp_path / "out"
    shutil.copytree(smoke_run / "store", out / "store")
    before = results_by_net(out)
    assert run_table3(out, "--dataset", "rvl-cdip", "--seeds", "2") == 0
    after = results_by_net(out)
    assert all(after[k] == v for k, v in before.items())           # nothing stored was retrained
    assert len(after) - len(before) == len(zoo.nets("rvl-cdip"))    # one new replica per net
    body = json.loads((out / "table3" / "smoke" / "table3.json").read_text())
    single = {r["net"]: float(r["rvl_cdip_reproduced"]) for r in table_rows(smoke_run)}
    rows = {r["net"]: r for r in table_rows(out)}
    for name, (first, second) in body["replicas"]["rvl-cdip"].items():
        assert abs(first - single[name]) < 0.006                     # replica 0: the run without --seeds
        assert abs(float(rows[name]["rvl_cdip_reproduced"]) - (first + second) / 2) < 0.006
        assert abs(float(rows[name]["rvl_cdip_spread"]) - abs(first - second) / 2 ** 0.5) < 0.006
    assert any(a != b for a, b in body["replicas"]["rvl-cdip"].values())   # another seed, another net
    text = (out / "table3" / "smoke" / "table3.md").read_text()
    assert " ± " in text and "Seed noise, rvl-cdip:" in text and "2 per network" in text
    assert body["claims"][0]["numbers"]["seed noise (points)"] is not None
    assert run_table3(out, "--seeds", "0") == 2


def test_training_warps_fill_with_the_data_layers_mean_colour(smoke_run, tmp_path):
    from convert.protoio import write_text_proto
    from replicate.solver import Solver
    from replicate.training import attach_augmentation, resolved_solver
    scale, dataset = get_scale("smoke"), "rvl-cdip"
    data = data_for(dataset, scale, Store(smoke_run / "store"), None, progress=False)
    net = zoo.widest(dataset, "rotation")
    write_text_proto(tmp_path / "train_val.prototxt", resolved_net(scale, dataset, data, net))
    solver = Solver(resolved_solver(scale, dataset, net, tmp_path), root=tmp_path, seed=net.seed, progress=False)
    attach_augmentation(solver, net, scale)
    layer = solver.net.layer("data")
    mean = layer.transformer.mean_file.mean(axis=(1, 2))
    black = np.zeros((scale.input_size, scale.input_size, len(mean)), np.uint8).squeeze()
    # A rotated black image is black inside and the mean colour where the corners came from outside.
    brightest = np.max([layer.augment(black).reshape(-1, len(mean)).max(0) for _ in range(20)], axis=0)
    assert 100 < mean.min() and np.array_equal(brightest, np.rint(mean))


def test_perspective_sigma_code_trains_only_the_perspective_rows_anew_and_says_so(smoke_run, tmp_path):
    import shutil
    out = tmp_path / "out"
    shutil.copytree(smoke_run / "store", out / "store")
    before = results_by_net(out)
    assert run_table3(out, "--dataset", "rvl-cdip", "--perspective-sigma", "code") == 0
    after = results_by_net(out)
    assert all(after[k] == v for k, v in before.items())
    new = sorted(set(after) - set(before))
    assert [n.split("-code-")[0] for n in new] == sorted(n.id for n in zoo.nets("rvl-cdip", "perspective"))
    for name in new:
        config = json.loads((out / "store" / "train-smoke-rvl-cdip" / name / "config.json").read_text())
        paper_net = zoo.get(name.split("-code-")[0], "rvl-cdip")
        assert config["params"]["s_max"] == pytest.approx(paper_net.params["s_max"] / 10)
    rows, single = {r["net"]: r for r in table_rows(out)}, {r["net"]: r for r in table_rows(smoke_run)}
    for name, row in rows.items():   # every other row is the stored net's number
        if not name.startswith("Perspective"):
            assert row["rvl_cdip_reproduced"] == single[name]["rvl_cdip_reproduced"]
    body = json.loads((out / "table3" / "smoke" / "table3.json").read_text())
    assert body["options"]["extra"]["perspective_sigma"] == "code"
    assert "- perspective sigma: code (s_max 0.0001-0.0004" in (out / "table3" / "smoke" / "table3.md").read_text()
    with pytest.raises(SystemExit) as exit_code:   # argparse's own one-line usage error
        cli.main(["table3", "--scale", "smoke", "--perspective-sigma", "authors", "--out", str(out)])
    assert exit_code.value.code == 2
