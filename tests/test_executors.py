"""The executors: Ray trains the same nets as the local pool, a killed Ray worker is retried, bad input is one line."""
import json
import os
import signal
import sys
import threading
import time
from pathlib import Path

import pytest

from replicate import cli
from replicate.config import get_scale
from replicate.executors import LocalExecutor, RayExecutor, executor_for
from replicate.experiment_data import data_for
from replicate.pipeline import collect
from replicate.store import Store

ray = pytest.importorskip("ray")
NETS = {"baseline_1", "rotation_20"}


def results(store: Path) -> dict[str, bytes]:
    return {p.parent.name: p.read_bytes() for p in store.glob("train-*/*/result.json")}


def train(store: Store, executor) -> dict:
    scale = get_scale("smoke")
    data = {"rvl-cdip": data_for("rvl-cdip", scale, store, None, progress=False)}
    return collect(store, scale, ["rvl-cdip"], data, "caffe", "cpu", executor, progress=False, only=NETS)


@pytest.fixture(scope="module")
def local_store(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("local") / "store"
    train(Store(root), LocalExecutor(2))
    return root


@pytest.fixture(scope="module")
def ray_executor():
    with RayExecutor(workers=2) as executor:
        yield executor


def test_ray_trains_byte_identical_nets_and_a_second_run_dispatches_nothing(local_store, ray_executor, tmp_path):
    store = Store(tmp_path / "store")
    ray_executor.check(store.root, [store.root])
    accuracies = train(store, ray_executor)
    assert results(store.root) == results(local_store) and len(results(store.root)) == len(NETS)
    stamps = {p: p.stat().st_mtime_ns for p in store.root.glob("train-*/*/result.json")}
    assert train(store, ray_executor) == accuracies
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    for log in store.root.glob("train-*/*/history.log"):   # each net trained exactly once
        assert [line.split()[1] for line in log.read_text().splitlines()] == ["start", "done"]


def test_a_killed_ray_worker_is_retried_and_the_nets_equal_the_uninterrupted_ones(local_store, ray_executor, tmp_path):
    store = Store(tmp_path / "store")
    data_for("rvl-cdip", get_scale("smoke"), store, None, progress=False)   # before the watcher starts
    killed: list[int] = []

    def kill_first_training_worker():
        deadline = time.time() + 120
        while not killed and time.time() < deadline:
            for claim in store.root.glob("train-*/*/claim.json"):
                try:
                    pid = json.loads(claim.read_text())["pid"]
                except (OSError, ValueError):
                    continue
                if pid != os.getpid():
                    os.kill(pid, signal.SIGKILL)
                    killed.append(pid)
                    return
            time.sleep(0.02)

    watcher = threading.Thread(target=kill_first_training_worker)
    watcher.start()
    train(store, ray_executor)
    watcher.join()
    assert killed, "no training worker was seen to kill"
    assert results(store.root) == results(local_store)
    attempts = [log.read_text().count(" start ") for log in store.root.glob("train-*/*/history.log")]
    assert sorted(attempts)[-1] == 2 and sum(attempts) == len(NETS) + 1   # the killed net alone trained again


def test_bad_executor_input_is_one_line_and_exit_2(tmp_path, capsys, monkeypatch):
    base = ["table3", "--scale", "smoke", "--dataset", "rvl-cdip", "--out", str(tmp_path), "--quiet"]
    assert cli.main([*base, "--ray-address", "auto"]) == 2
    assert "only with --executor ray" in capsys.readouterr().err
    assert cli.main([*base, "--executor", "ray", "--ray-address", "127.0.0.1:1"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "nothing answers there" in err and "ray start --head" in err
    assert cli.main([*base, "--executor", "ray", "--ray-address", "no-port"]) == 2
    assert "expected 'auto' or HOST:PORT" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "ray", None)   # as if Ray were not installed
    assert cli.main([*base, "--executor", "ray"]) == 2
    err = capsys.readouterr().err
    assert "Ray is not installed" in err and "pip install" in err


def test_a_worker_that_cannot_see_the_store_is_named(ray_executor, tmp_path, monkeypatch):
    import replicate.executors as executors
    real = executors._probe
    monkeypatch.setattr(executors, "_probe", lambda root, token, paths: {**real(root, token, paths), "token": "x"})
    with pytest.raises(executors.UserError, match="cannot see the results store at .*mounts at the same path"):
        ray_executor.check(tmp_path, [tmp_path])
    monkeypatch.setattr(executors, "_probe", lambda root, token, paths: {**real(root, token, paths), "code": "other"})
    with pytest.raises(executors.UserError, match="runs code fingerprint other"):
        ray_executor.check(tmp_path, [tmp_path])
    monkeypatch.setattr(executors, "_probe", real)
    with pytest.raises(executors.UserError, match="cannot see .*nowhere"):
        ray_executor.check(tmp_path, [tmp_path / "nowhere"])


def test_unknown_executor_name_is_refused():
    with pytest.raises(Exception, match="expected one of local, ray"):
        executor_for("slurm")
