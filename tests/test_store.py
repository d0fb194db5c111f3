"""The results store: keys, atomic completion, corrupt entries, rebuild."""
import json
import os

import pytest

from convert.errors import UserError
from replicate.store import Store, config_key


def test_key_depends_on_every_value_not_on_order():
    assert config_key({"a": 1, "b": [1, 2]}) == config_key({"b": [1, 2], "a": 1})
    assert config_key({"a": 1}) != config_key({"a": 2})


def test_job_lifecycle(tmp_path):
    job = Store(tmp_path).job("train", "Baseline 1", {"seed": 1})
    assert job.state == "missing" and not job.done
    job.begin()
    assert job.state == "running"
    claim = job.dir / "claim.json"
    claim.write_text(json.dumps({**json.loads(claim.read_text()), "pid": 999999999, "token": "killed"}))  # a killed run
    assert job.state == "partial"
    job.begin()
    assert job.state == "running" and job.holder["pid"] == os.getpid()
    job.finish({"accuracy": 0.5})
    assert job.done and job.state == "done" and not claim.exists()
    assert [line.split()[1] for line in (job.dir / "history.log").read_text().splitlines()] == ["start", "start", "done"]
    assert job.result() == {"accuracy": 0.5}
    assert json.loads((job.dir / "config.json").read_text()) == {"seed": 1}


def test_corrupt_entry_names_itself_and_rebuild_removes_it(tmp_path):
    store = Store(tmp_path)
    job = store.job("train", "Rotation 5", {"seed": 3})
    job.begin()
    job.finish({"accuracy": 0.5})
    (job.dir / "result.json").write_text("{not json")
    with pytest.raises(UserError, match="corrupt.*--rebuild Rotation 5"):
        job.result()
    other = store.job("eval", "Rotation 5", {"seed": 3})
    other.begin()
    assert store.rebuild("Rotation 5", kinds=["train"]) == 1
    assert job.state == "missing" and other.state == "running"
    assert store.rebuild("Rotation 5") == 1 and other.state == "missing"


def test_a_moved_store_still_reads_as_done_and_records_no_absolute_path(tmp_path):
    first = Store(tmp_path / "a")
    config = {"lmdb": str(first.root / "data" / "train_lmdb"), "lr": 0.01}
    job = first.job("train", "net", config)
    job.begin()
    job.finish({"accuracy": 50.0})
    assert str(first.root) not in (job.dir / "result.json").read_text()
    (tmp_path / "a").rename(tmp_path / "b")
    moved = Store(tmp_path / "b")
    again = moved.job("train", "net", {"lmdb": str(moved.root / "data" / "train_lmdb"), "lr": 0.01})
    assert again.done and again.result() == {"accuracy": 50.0} and again.dir.name == job.dir.name
