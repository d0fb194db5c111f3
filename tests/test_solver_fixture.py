"""`replicate train` against real Caffe's 12-iteration run (tests/fixtures/caffe/solver/).

The run directory is a copy of the fixture directory in which lmdb/test_lmdb is a copy of
lmdb/train_lmdb: Caffe's test DB is not among the fixtures, and tests/fixtures/NOTES.md gives the
evidence that it held the same 64 images (test_caffe_test_db_was_train_lmdb below is that evidence).
"""
from __future__ import annotations

import json
import os
import re
import shutil
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

from conftest import CAFFE, rel_err
from convert import caffe_pb2 as pb
from convert import protoio
from replicate.cli import main

TRAJECTORY = json.loads((CAFFE / "solver" / "trajectory.json").read_text())


def make_run_dir(target: Path) -> Path:
    """A copy of the fixture layout the solver expects, test_lmdb standing in as a copy of train_lmdb."""
    target.mkdir(parents=True)
    for name in ("train_net.prototxt", "train_solver.prototxt"):
        shutil.copy(CAFFE / name, target / name)
    shutil.copytree(CAFFE / "solver", target / "solver")
    shutil.copytree(CAFFE / "lmdb" / "train_lmdb", target / "lmdb" / "train_lmdb")
    shutil.copytree(CAFFE / "lmdb" / "train_lmdb", target / "lmdb" / "test_lmdb")
    return target


@contextmanager
def cwd(path: Path):
    old = Path.cwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(old)


def train(run_dir: Path, *extra: str) -> int:
    with cwd(run_dir):
        return main(["train", "--solver", "train_solver.prototxt", *extra])


def log_entries(run_dir: Path, phase: str) -> list[dict[str, str]]:
    """The key=value records of one phase from the plain log."""
    lines = (run_dir / "solver" / "train.log").read_text().splitlines()
    return [dict(re.findall(r"(\w+)=(\S+)", line)) for line in lines if line.startswith(f"phase={phase} ")]


def model_errors(ours: Path, ref: Path) -> dict[str, float]:
    """Per blob max|ours - caffe| / max|caffe|."""
    mine = {l.name: l for l in protoio.read_caffemodel(ours).layer}
    return {f"{l.name}[{i}]": rel_err(protoio.blob_to_array(mine[l.name].blobs[i]), protoio.blob_to_array(b))
            for l in protoio.read_caffemodel(ref).layer for i, b in enumerate(l.blobs)}


@pytest.fixture(scope="module")
def full_run(tmp_path_factory) -> Path:
    run_dir = make_run_dir(tmp_path_factory.mktemp("solver") / "run")
    assert train(run_dir, "--weights", "solver/init.caffemodel") == 0
    return run_dir


def test_training_losses_match_caffe(full_run):
    ours = log_entries(full_run, "train")
    assert [int(e["iter"]) for e in ours] == [t["iter"] for t in TRAJECTORY["train"]]
    for mine, caffe in zip(ours, TRAJECTORY["train"]):
        assert abs(float(mine["loss"]) - caffe["loss"]) < 1e-4, caffe["iter"]
        if "lr" in caffe:
            assert float(mine["lr"]) == pytest.approx(caffe["lr"], rel=1e-6)


def test_test_outputs_match_caffe(full_run):
    ours = log_entries(full_run, "test")
    assert [int(e["iter"]) for e in ours] == [t["iter"] for t in TRAJECTORY["test"]]
    for mine, caffe in zip(ours, TRAJECTORY["test"]):
        assert abs(float(mine["loss"]) - caffe["loss"]) < 1e-4
        assert float(mine["accuracy"]) == caffe["accuracy"]


@pytest.mark.parametrize("it", [6, 12])
def test_snapshots_match_caffe(full_run, it):
    errors = model_errors(full_run / "solver" / f"train_iter_{it}.caffemodel",
                          CAFFE / "solver" / f"train_iter_{it}.caffemodel")
    assert len(errors) == 8 and max(errors.values()) <= 1e-5, errors
    read = lambda p: protoio.read_binary_proto(p, pb.SolverState, "solverstate")
    ours, caffe = read(full_run / "solver" / f"train_iter_{it}.solverstate"), read(
        CAFFE / "solver" / f"train_iter_{it}.solverstate")
    assert (ours.iter, ours.current_step, ours.learned_net) == (caffe.iter, caffe.current_step, caffe.learned_net)
    for mine, theirs in zip(ours.history, caffe.history, strict=True):
        assert rel_err(protoio.blob_to_array(mine), protoio.blob_to_array(theirs)) <= 1e-5
    sidecar = json.loads((full_run / "solver" / f"train_iter_{it}.solverstate.json").read_text())
    assert sidecar["dropout"] == "caffe" and sidecar["seed"] == 11
    assert sidecar["nets"]["train"]["data_layers"][0]["cursor"] == it * 8 % 64


def test_resume_from_caffe_solverstate(tmp_path):
    run_dir = make_run_dir(tmp_path / "run")
    assert train(run_dir, "--snapshot", "solver/train_iter_6.solverstate") == 0
    errors = model_errors(run_dir / "solver" / "train_iter_12.caffemodel", CAFFE / "solver" / "train_iter_12.caffemodel")
    assert max(errors.values()) <= 1e-5, errors
    resumed = log_entries(run_dir, "train")
    assert [float(e["loss"]) for e in resumed] == pytest.approx([t["loss"] for t in TRAJECTORY["train"][6:]], abs=1e-4)


def test_resume_from_ours_equals_uninterrupted(full_run, tmp_path):
    run_dir = make_run_dir(tmp_path / "run")
    shutil.copy(full_run / "solver" / "train_iter_6.caffemodel", run_dir / "solver")
    for suffix in (".solverstate", ".solverstate.json"):
        shutil.copy(full_run / "solver" / f"train_iter_6{suffix}", run_dir / "solver")
    assert train(run_dir, "--snapshot", "solver/train_iter_6.solverstate") == 0
    uninterrupted = protoio.read_caffemodel(full_run / "solver" / "train_iter_12.caffemodel")
    resumed = protoio.read_caffemodel(run_dir / "solver" / "train_iter_12.caffemodel")
    for a, b in zip(uninterrupted.layer, resumed.layer, strict=True):
        for x, y in zip(a.blobs, b.blobs, strict=True):
            assert np.array_equal(protoio.blob_to_array(x), protoio.blob_to_array(y)), a.name


def test_caffe_style_resume_rereads_from_record_zero(tmp_path):
    """--resume-data caffe mirrors a resumed Caffe process: fresh data layers, so the trajectory differs."""
    run_dir = make_run_dir(tmp_path / "run")
    assert train(run_dir, "--snapshot", "solver/train_iter_6.solverstate", "--resume-data", "caffe") == 0
    first = log_entries(run_dir, "train")[0]
    assert int(first["iter"]) == 6
    assert abs(float(first["loss"]) - TRAJECTORY["train"][6]["loss"]) > 1e-3   # batch 0, not batch 6
    errors = model_errors(run_dir / "solver" / "train_iter_12.caffemodel", CAFFE / "solver" / "train_iter_12.caffemodel")
    assert max(errors.values()) > 1e-3


def test_caffe_test_db_was_train_lmdb(tmp_path, capsys):
    """Evidence for NOTES.md: Caffe's TEST pass at iteration 0 equals ours on train_lmdb with init.caffemodel."""
    run_dir = make_run_dir(tmp_path / "run")
    with cwd(run_dir):
        assert main(["test", "--model", "train_net.prototxt", "--weights", "solver/init.caffemodel",
                     "--iterations", "4"]) == 0
    printed = dict(re.findall(r"^(\w+) = (\S+)", capsys.readouterr().out, re.M))
    caffe = TRAJECTORY["test"][0]
    assert abs(float(printed["loss"]) - caffe["loss"]) < 1e-4
    assert float(printed["accuracy"]) == caffe["accuracy"]
