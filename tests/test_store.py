"""The results store: keys, atomic completion, corrupt entries, rebuild."""
import json

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
    (job.dir / "running.pid").write_text("999999999")  # a killed process
    assert job.state == "partial"
    job.begin()
    job.finish({"accuracy": 0.5})
    assert job.done and job.state == "done"
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
