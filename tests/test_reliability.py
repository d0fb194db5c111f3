"""Bad paths, full or read-only disks, concurrent runs, damaged snapshots: one line, exit 2, nothing half-written."""
import json
import os
import shutil
import stat
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch

from convert import protoio
from convert.errors import UserError
from replicate import cli
from replicate.solver import Solver
from replicate.store import Store

CAFFE = Path(__file__).parent / "fixtures" / "caffe"
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import fuzz  # noqa: E402


def one_error_line(capsys, *names) -> str:
    err = fuzz.message_lines(capsys.readouterr().err)   # without progress bars and warnings
    assert len(err) == 1, err
    assert all(str(n) in err[0] for n in names), err[0]
    return err[0]


@contextmanager
def small_tmpfs(path: Path, size: str = "64k"):
    """A tiny tmpfs at path (skips where mounting is not allowed); unmounted afterwards."""
    path.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                      capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


# ------------------------------------------------------------------ paths ---

@pytest.mark.parametrize("kind", ["directory", "missing", "dangling link", "under a file"])
def test_a_bad_input_path_is_one_line(tmp_path, capsys, kind):
    path = {"directory": tmp_path, "missing": tmp_path / "no.prototxt", "dangling link": tmp_path / "link",
            "under a file": tmp_path / "file" / "net.prototxt"}[kind]
    (tmp_path / "file").write_text("x")
    if kind == "dangling link":
        path.symlink_to(tmp_path / "nowhere")
    assert cli.main(["net", "summary", str(path)]) == 2
    one_error_line(capsys, path)


def test_device_cuda_without_cuda_is_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.chdir(tmp_path)
    assert cli.main(["train", "--solver", str(CAFFE / "train_solver.prototxt"), "--device", "cuda"]) == 2
    assert "--device cuda" in one_error_line(capsys)


def test_outputs_on_a_full_disk_are_one_line_and_leave_nothing(tmp_path, capsys):
    with small_tmpfs(tmp_path / "full") as full:
        with pytest.raises(OSError), open(full / "filler", "wb") as f:
            while True:
                f.write(b"x" * 4096)
                f.flush()
        out = full / "blobs.npz"
        args = ["net", "forward", str(CAFFE / "zoo.prototxt"), "--weights", str(CAFFE / "weights/zoo_iter_3.caffemodel"),
                "--input", f"data={CAFFE / 'zoo_input.npy'}", "--input", f"label={CAFFE / 'zoo_input.npy'}",
                "--out", str(out)]
        assert cli.main(args) == 2
        one_error_line(capsys, out)
        assert sorted(p.name for p in full.iterdir()) == ["filler"]


def test_outputs_in_a_read_only_directory_are_one_line_and_leave_nothing(tmp_path, capsys):
    with small_tmpfs(tmp_path / "ro", "1m") as ro:
        subprocess.run(["mount", "-o", "remount,ro", str(ro)], check=True)
        out = ro / "mean.binaryproto"
        assert cli.main(["lmdb", "mean", str(CAFFE / "lmdb/train_lmdb"), str(out)]) == 2
        one_error_line(capsys, out)
        assert list(ro.iterdir()) == []


@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_atomic_writes_honour_the_umask(tmp_path, umask):
    old = os.umask(umask)
    try:
        protoio.atomic_write(tmp_path / "f.bin", b"x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "f.bin").stat().st_mode) == 0o666 & ~umask
    assert [p.name for p in tmp_path.iterdir()] == ["f.bin"]


# ------------------------------------------------------------------ store ---

HOLDER = """
import sys, time
from pathlib import Path
from replicate.store import Store
job = Store(sys.argv[1]).job("train", "net", {"seed": 1})
job.begin()
(job.dir / "weights.bin").write_text("mine")
Path(sys.argv[2]).write_text("claimed")
while not Path(sys.argv[3]).exists():
    time.sleep(0.05)
job.finish({"accuracy": 1.0})
"""


def start_holder(tmp_path: Path) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(tmp_path / "store"), str(tmp_path / "claimed"),
                             str(tmp_path / "go")])
    deadline = time.time() + 60
    while not (tmp_path / "claimed").exists():
        assert proc.poll() is None and time.time() < deadline
        time.sleep(0.05)
    return proc


def test_a_second_run_waits_for_the_job_a_live_run_holds_and_uses_its_result(tmp_path):
    holder = start_holder(tmp_path)
    job = Store(tmp_path / "store").job("train", "net", {"seed": 1})
    assert job.state == "running"
    began = threading.Event()
    thread = threading.Thread(target=lambda: (job.begin(), began.set()))
    thread.start()
    time.sleep(0.5)
    assert not began.is_set() and (job.dir / "weights.bin").read_text() == "mine"   # nothing cleared
    (tmp_path / "go").write_text("")
    thread.join(60)
    assert holder.wait(60) == 0 and began.is_set()
    assert job.done and job.result() == {"accuracy": 1.0} and (job.dir / "weights.bin").exists()
    job.release()


def test_a_killed_runs_claim_is_taken_over_and_its_files_cleared(tmp_path):
    holder = start_holder(tmp_path)
    holder.kill()
    holder.wait()
    job = Store(tmp_path / "store").job("train", "net", {"seed": 1})
    assert job.state == "partial"
    job.begin()
    assert not (job.dir / "weights.bin").exists() and job.state == "running"
    job.finish({"accuracy": 0.5})
    assert job.result() == {"accuracy": 0.5}


# ----------------------------------------------------------------- solver ---

@pytest.fixture
def run_dir(tmp_path, monkeypatch) -> Path:
    target = tmp_path / "run"
    target.mkdir()
    for name in ("train_net.prototxt", "train_solver.prototxt"):
        shutil.copy(CAFFE / name, target / name)
    shutil.copytree(CAFFE / "solver", target / "solver")
    shutil.copytree(CAFFE / "lmdb" / "train_lmdb", target / "lmdb" / "train_lmdb")
    shutil.copytree(CAFFE / "lmdb" / "train_lmdb", target / "lmdb" / "test_lmdb")
    monkeypatch.chdir(target)
    return target


def our_snapshot(run_dir: Path) -> Path:
    solver = Solver("train_solver.prototxt", root=run_dir)
    solver.param.snapshot_prefix = "ours/train"
    solver.snapshot_prefix = "ours/train"
    solver.step(2)
    return solver.snapshot()


def test_the_sidecar_is_written_before_the_solverstate(run_dir, monkeypatch):
    solver = Solver("train_solver.prototxt", root=run_dir)
    solver.step(1)
    real = protoio.atomic_write

    def killed_at_the_state(path, data):
        if str(path).endswith(".solverstate"):
            raise KeyboardInterrupt   # the kill between the two writes
        real(path, data)
    monkeypatch.setattr(protoio, "atomic_write", killed_at_the_state)
    with pytest.raises(KeyboardInterrupt):
        solver.snapshot()
    assert (run_dir / "solver/train_iter_1.solverstate.json").exists()
    assert not (run_dir / "solver/train_iter_1.solverstate").exists()   # nothing to resume half-restored


def test_a_solverstate_without_its_sidecar_resumes_with_a_warning(run_dir):
    state = our_snapshot(run_dir)
    Path(f"{state}.json").unlink()
    with pytest.warns(UserWarning, match="random streams .* start afresh"):
        Solver("train_solver.prototxt", root=run_dir).restore(state)


@pytest.mark.parametrize("damage", [
    lambda d: "{truncated",
    lambda d: "[" * 100000 + "]" * 100000,
    lambda d: json.dumps({**d, "torch_rng": d["torch_rng"][:-8]}),
    lambda d: json.dumps({**d, "torch_rng": 17}),
    lambda d: json.dumps({**d, "iter": d["iter"] + 1}),
    lambda d: json.dumps({k: v for k, v in d.items() if k != "nets"}),
    lambda d: json.dumps({**d, "nets": {**d["nets"], "train": {**d["nets"]["train"], "data_layers": [
        {"cursor": -3, "rng": d["nets"]["train"]["data_layers"][0]["rng"]}]}}}),
    lambda d: json.dumps({**d, "nets": {**d["nets"], "train": {**d["nets"]["train"], "data_layers": [
        {"cursor": 0, "rng": {"bit_generator": "MT19937"}}]}}}),
])
def test_a_corrupt_sidecar_is_named_and_nothing_is_restored(run_dir, damage):
    state = our_snapshot(run_dir)
    sidecar = Path(f"{state}.json")
    sidecar.write_text(damage(json.loads(sidecar.read_text())))
    solver = Solver("train_solver.prototxt", root=run_dir)
    with pytest.raises(UserError, match="corrupt snapshot sidecar") as e:
        solver.restore(state)
    assert str(sidecar) in str(e.value) and solver.iter == 0


def test_a_huge_iter_in_a_solverstate_does_not_loop(run_dir):
    from convert import caffe_pb2 as pb
    state = pb.SolverState.FromString((run_dir / "solver/train_iter_6.solverstate").read_bytes())
    state.iter = 2**31 - 1
    (run_dir / "solver/huge.solverstate").write_bytes(state.SerializeToString())
    solver = Solver("train_solver.prototxt", root=run_dir)
    started = time.time()
    with pytest.warns(UserWarning):
        solver.restore("solver/huge.solverstate")
    assert time.time() - started < 5 and solver.iter == 2**31 - 1
    state.iter = -5
    (run_dir / "solver/negative.solverstate").write_bytes(state.SerializeToString())
    with pytest.raises(UserError, match="negative.solverstate: iter -5"):
        solver.restore("solver/negative.solverstate")


@pytest.mark.parametrize("interval, initialization", [(1, True), (3, False), (6, True), (7, False)])
def test_caffe_cursor_test_passes_in_closed_form_match_the_count(run_dir, interval, initialization):
    solver = Solver("train_solver.prototxt", root=run_dir)
    solver.param.test_interval, solver.param.test_initialization = interval, initialization
    layer = solver._data_layers(solver.test_nets[0])[0]
    for it in range(0, 40):
        solver.iter = it
        solver._continue_caffe_cursors()
        passes = sum(1 for k in range(it) if k % interval == 0 and (k > 0 or initialization))
        assert layer.cursor == passes * solver.param.test_iter[0] * layer.batch_size % len(layer.dataset)
