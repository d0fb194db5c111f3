"""The executors: Ray gives the local pool's table and nets, survives killed workers and drivers, shares a store.

The reference is the session's local smoke Table 3 (conftest.table3_smoke). The drivers of the
kill and two-driver tests are separate processes (tests/drive_collect.py) joined to this process's
Ray instance, as a second user's command joins a cluster.
"""
import csv
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from replicate import cli
from replicate.config import get_scale
from replicate.executors import RayExecutor, executor_for
from replicate.experiment_data import data_for
from replicate.pipeline import collect
from replicate.store import HOST, Store

ray = pytest.importorskip("ray")
NETS = {"baseline_1", "rotation_20"}
DRIVER = Path(__file__).with_name("drive_collect.py")


def results(store: Path) -> dict[str, bytes]:
    """Every finished rvl-cdip net's result.json, by job directory name (the same in every store)."""
    return {p.parent.name: p.read_bytes() for p in store.glob("train-*-rvl-cdip/*/result.json")}


def attempts(store: Path) -> dict[str, list[str]]:
    """Each training job's history.log events (start, resume, done) in order."""
    return {log.parent.name: [line.split()[1] for line in log.read_text().splitlines()]
            for log in store.glob("train-*/*/history.log")}


def train(store: Store, executor) -> dict:
    scale = get_scale("smoke")
    data = {"rvl-cdip": data_for("rvl-cdip", scale, store, None, progress=False)}
    return collect(store, scale, ["rvl-cdip"], data, "caffe", "cpu", executor, progress=False, only=NETS)


def drive(store: Path, executor: str, nets: set[str], address: str | None = None) -> subprocess.Popen:
    """A driver process training `nets` into `store` (joined to the Ray cluster at `address`)."""
    return subprocess.Popen([sys.executable, str(DRIVER), str(store), executor, ",".join(sorted(nets)),
                             *([address] if address else [])], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)


@pytest.fixture(scope="module")
def local_results(table3_smoke) -> dict[str, bytes]:
    return results(table3_smoke / "store")


@pytest.fixture(scope="module")
def ray_executor():
    with RayExecutor(workers=2) as executor:
        yield executor


@pytest.fixture(scope="module")
def address(ray_executor) -> str:
    return ray.get_runtime_context().gcs_address


def table_columns(out: Path, prefix: str) -> list[dict]:
    with open(out / "table3" / "smoke" / "table3.csv", newline="") as f:
        return [{k: v for k, v in row.items() if k == "net" or k.startswith(prefix)} for row in csv.DictReader(f)]


def test_table3_on_ray_equals_the_local_table_and_a_second_run_dispatches_nothing(
        table3_smoke, local_results, ray_executor, tmp_path, monkeypatch):
    argv = ["table3", "--scale", "smoke", "--dataset", "rvl-cdip", "--executor", "ray", "--workers", "2",
            "--out", str(tmp_path), "--quiet"]
    assert cli.main(argv) == 0
    ours = results(tmp_path / "store")
    assert len(ours) == 36 and ours == local_results   # byte for byte
    assert table_columns(tmp_path, "rvl_cdip") == table_columns(table3_smoke, "rvl_cdip")
    stamps = {p: p.stat().st_mtime_ns for p in (tmp_path / "store").glob("train-*/*/result.json")}
    dispatched = []
    monkeypatch.setattr(RayExecutor, "map", lambda self, fn, tasks: dispatched.extend(tasks) or iter(()))
    assert cli.main(argv) == 0
    assert dispatched == [] and {p: p.stat().st_mtime_ns for p in stamps} == stamps
    assert set(map(tuple, attempts(tmp_path / "store").values())) == {("start", "done")}   # each net trained once


def test_a_killed_ray_worker_is_retried_and_the_nets_equal_the_uninterrupted_ones(local_results, ray_executor, tmp_path):
    store = Store(tmp_path / "store")
    data_for("rvl-cdip", get_scale("smoke"), store, None, progress=False)   # before the watcher starts
    killed: list[int] = []

    def kill_first_training_worker():
        # Only a worker mid-training: its attempt's start is logged and its result not yet written (a kill
        # between claiming and logging, or after finishing, would leave nothing to retry for that net).
        deadline = time.time() + 120
        while not killed and time.time() < deadline:
            for claim in store.root.glob("train-*/*/claim.json"):
                try:
                    pid = json.loads(claim.read_text())["pid"]
                    started = f" start {HOST} {pid}" in (claim.parent / "history.log").read_text()
                except (OSError, ValueError):
                    continue
                if pid != os.getpid() and started and not (claim.parent / "result.json").exists():
                    os.kill(pid, signal.SIGKILL)
                    killed.append(pid)
                    return
            time.sleep(0.02)

    watcher = threading.Thread(target=kill_first_training_worker)
    watcher.start()
    train(store, ray_executor)
    watcher.join()
    assert killed, "no training worker was seen to kill"
    assert results(store.root) == {k: v for k, v in local_results.items() if k.rsplit("-", 1)[0] in NETS}
    starts = [events.count("start") for events in attempts(store.root).values()]
    assert sorted(starts) == [1, 2]   # the killed net alone trained again


def test_a_killed_ray_driver_leaves_finished_nets_alone_and_a_rerun_completes(local_results, ray_executor,
                                                                                address, tmp_path):
    nets = {"baseline_1", "rotation_20", "shear_10", "blur_3", "noise_5", "crop_240"}
    store = tmp_path / "store"
    driver = drive(store, "ray", nets, address)
    deadline = time.time() + 120
    while len(results(store)) < 2 and time.time() < deadline and driver.poll() is None:
        time.sleep(0.1)
    os.kill(driver.pid, signal.SIGKILL)   # the driver alone: the cluster and its workers stay
    driver.wait()
    finished = results(store)
    assert 2 <= len(finished) < len(nets), "the kill should land mid-run"
    train_nets = collect(Store(store), get_scale("smoke"), ["rvl-cdip"],
                         {"rvl-cdip": data_for("rvl-cdip", get_scale("smoke"), Store(store), None, progress=False)},
                         "caffe", "cpu", ray_executor, progress=False, only=nets)
    assert len(train_nets["rvl-cdip"]) == len(nets)
    after = results(store)
    assert {k: after[k] for k in finished} == finished
    assert after == {k: v for k, v in local_results.items() if k.rsplit("-", 1)[0] in nets}
    history = attempts(store)
    assert all(history[name] == ["start", "done"] for name in finished)   # untouched by the rerun
    assert all(events[-1] == "done" and events.count("done") == 1 for events in history.values())


def test_two_drivers_on_one_store_train_every_net_once(local_results, address, tmp_path):
    nets = {"baseline_2", "rotation_10", "shear_20", "blur_1.5"}
    store = tmp_path / "store"
    drivers = [drive(store, "local", nets), drive(store, "ray", nets, address)]
    outputs = [d.communicate(timeout=300) for d in drivers]
    assert [d.returncode for d in drivers] == [0, 0], [err[-2000:] for _, err in outputs]
    local_accuracies, ray_accuracies = (json.loads(out) for out, _ in outputs)
    assert local_accuracies == ray_accuracies and len(local_accuracies["rvl-cdip"]) == len(nets)
    assert results(store) == {k: v for k, v in local_results.items() if k.rsplit("-", 1)[0] in nets}
    assert set(map(tuple, attempts(store).values())) == {("start", "done")}   # every net trained exactly once
    for job in store.glob("train-*/*"):   # and logged one training run
        assert len(list(job.glob("*.log"))) == 2   # history.log and the solver's log
        assert sum(line.count("Iteration 0,") for line in next(job.glob("net*.log")).read_text().splitlines()) <= 1


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
    monkeypatch.setattr(executors, "_probe", lambda token, paths: {**real(token, paths), "token": "x"})
    with pytest.raises(executors.UserError, match="cannot see the results store at .*mounts at the same path"):
        ray_executor.check(tmp_path, [tmp_path])
    monkeypatch.setattr(executors, "_probe", lambda token, paths: {**real(token, paths), "code": "other"})
    with pytest.raises(executors.UserError, match="runs code fingerprint other"):
        ray_executor.check(tmp_path, [tmp_path])
    monkeypatch.setattr(executors, "_probe", real)
    with pytest.raises(executors.UserError, match="cannot see .*nowhere"):
        ray_executor.check(tmp_path, [tmp_path / "nowhere"])


def test_unknown_executor_name_is_refused():
    with pytest.raises(Exception, match="expected one of local, ray"):
        executor_for("slurm")
