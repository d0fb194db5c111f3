"""`replicate train` / `replicate test` on bad input: one clear line, exit code 2; a diverging run stops."""
from __future__ import annotations

import json

import pytest

from conftest import CAFFE
from replicate.cli import main
from test_solver_fixture import cwd, make_run_dir


@pytest.fixture
def run_dir(tmp_path):
    return make_run_dir(tmp_path / "run")


def write_solver(run_dir, name, replace=(), net=None):
    text = (CAFFE / "train_solver.prototxt").read_text()
    for old, new in replace:
        assert old in text
        text = text.replace(old, new)
    if net is not None:
        text = text.replace('net: "train_net.prototxt"', f'net: "{net}"')
    (run_dir / name).write_text(text)


def write_net(run_dir, name, replace):
    text = (CAFFE / "train_net.prototxt").read_text()
    for old, new in replace:
        assert old in text
        text = text.replace(old, new)
    (run_dir / name).write_text(text)


def run(run_dir, capsys, *argv) -> tuple[int, str]:
    with cwd(run_dir):
        code = main(list(argv))
    return code, capsys.readouterr().err


@pytest.mark.parametrize("field, old, new, expected", [
    ("type", "solver_mode: CPU", 'solver_mode: CPU type: "Adamax"', "unknown type 'Adamax'"),
    ("lr_policy", 'lr_policy: "step"', 'lr_policy: "cosine"', "unknown lr_policy 'cosine'"),
])
def test_unknown_type_or_policy(run_dir, capsys, field, old, new, expected):
    write_solver(run_dir, "bad.prototxt", [(old, new)])
    code, err = run(run_dir, capsys, "train", "--solver", "bad.prototxt")
    assert code == 2 and expected in err and "Traceback" not in err


def test_missing_net_file(run_dir, capsys):
    write_solver(run_dir, "bad.prototxt", net="no_such_net.prototxt")
    code, err = run(run_dir, capsys, "train", "--solver", "bad.prototxt")
    assert code == 2 and "no_such_net.prototxt" in err


def test_weights_and_snapshot_together(run_dir, capsys):
    code, err = run(run_dir, capsys, "train", "--solver", "train_solver.prototxt", "--weights",
                    "solver/init.caffemodel", "--snapshot", "solver/train_iter_6.solverstate")
    assert code == 2 and "not both" in err


def test_snapshot_of_another_net_names_the_blobs(run_dir, capsys):
    write_net(run_dir, "wider.prototxt", [("num_output: 16", "num_output: 32")])
    write_solver(run_dir, "wider_solver.prototxt", net="wider.prototxt")
    code, err = run(run_dir, capsys, "train", "--solver", "wider_solver.prototxt",
                    "--snapshot", "solver/train_iter_6.solverstate")
    assert code == 2 and "another net" in err
    assert "ip1[0]" in err and "ip1[1]" in err and "ip2[0]" in err and "conv1" not in err


def test_snapshot_with_other_layer_names(run_dir, capsys):
    write_net(run_dir, "renamed.prototxt", [('name: "ip2"', 'name: "classifier"'), ('bottom: "ip2"', 'bottom: "classifier"'),
                                            ('top: "ip2"', 'top: "classifier"')])
    write_solver(run_dir, "renamed_solver.prototxt", net="renamed.prototxt")
    code, err = run(run_dir, capsys, "train", "--solver", "renamed_solver.prototxt",
                    "--snapshot", "solver/train_iter_6.solverstate")
    assert code == 2 and "another net" in err and "classifier" in err


def test_diverging_loss_stops_and_keeps_last_snapshot(run_dir, capsys):
    write_solver(run_dir, "hot.prototxt", [("base_lr: 0.05", "base_lr: 1e8"), ("snapshot: 6", "snapshot: 2"),
                                           ('snapshot_prefix: "solver/train"', 'snapshot_prefix: "hot/train"')])
    code, err = run(run_dir, capsys, "train", "--solver", "hot.prototxt")
    assert code == 2 and "loss is nan" in err
    snapshots = sorted(p.name for p in (run_dir / "hot").glob("*.solverstate"))
    assert snapshots and f"hot/{snapshots[-1]}" in err
    stopped_at = int(err.split("iteration ")[1].split(":")[0])
    assert snapshots[-1] == f"train_iter_{stopped_at - stopped_at % 2}.solverstate"   # none after the NaN
    assert "error iteration" in (run_dir / "hot" / "train.log").read_text()


def test_test_command_prints_caffes_outputs(run_dir, capsys):
    """`replicate test` on Caffe's iteration-12 weights prints Caffe's iteration-12 TEST outputs."""
    with cwd(run_dir):
        assert main(["test", "--model", "train_net.prototxt", "--weights", str(CAFFE / "solver" / "train_iter_12.caffemodel"),
                     "--iterations", "4"]) == 0
    out = capsys.readouterr().out
    assert "loss = 0.26006" in out and "(* 1 = 0.260063 loss)" in out and "accuracy = 1.0" in out


def test_dropout_convention_is_recorded(run_dir, capsys):
    write_solver(run_dir, "short.prototxt", [("max_iter: 12", "max_iter: 2"), ("snapshot: 6", "snapshot: 1")])
    code, _ = run(run_dir, capsys, "train", "--solver", "short.prototxt", "--dropout", "paper",
                  "--weights", "solver/init.caffemodel")
    assert code == 0
    log = (run_dir / "solver" / "train.log").read_text()
    assert '"dropout": "paper"' in log and '"seed": 11' in log
    sidecar = json.loads((run_dir / "solver" / "train_iter_2.solverstate.json").read_text())
    assert sidecar["dropout"] == "paper" and sidecar["weights"] == ["solver/init.caffemodel"]
