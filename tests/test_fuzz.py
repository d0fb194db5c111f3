"""The fuzz tier: damaged copies of every fixture file end in exit 0 or 2 with one line naming the file.

benchmarks/fuzz.py does the work (seeded mutations, a forked child per case under a time and memory
limit); it runs in its own process here, so this test process's threads and imports cannot leak in.
"""
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
import fuzz  # noqa: E402


def run_fuzzer(tmp_path: Path, cases: int, seed: int) -> list[dict]:
    failures = tmp_path / "failures.json"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "fuzz.py"), "--cases", str(cases),
                           "--seed", str(seed), "--jobs", "2", "--json", str(failures)],
                          capture_output=True, text=True, timeout=1800)
    assert failures.exists(), proc.stdout + proc.stderr
    found = json.loads(failures.read_text())
    assert proc.returncode == 0 and not found, "\n".join(
        f"{f['reader']} #{f['index']} {f['outcome']}: {' '.join(f['argv'])}\n{f['stderr'][-800:]}" for f in found[:10])
    assert "| **all** |" in proc.stdout
    return found


def test_few_hundred_cases_over_every_reader_fail_cleanly(tmp_path):
    run_fuzzer(tmp_path, cases=27 * len(fuzz.READERS), seed=0)


@pytest.mark.slow
def test_thousands_of_cases(tmp_path):
    run_fuzzer(tmp_path, cases=4000, seed=1)


def test_message_lines_drop_progress_bars_and_warnings():
    err = ("inspect:   0%|          | 0/12 [00:00<?, ?rec/s]\rinspect:  50%|#    | 6/12 [00:00<00:00, 9.0rec/s]\n"
           "warning: x.prototxt: line 3: ceil_mode read as round_mode\n"
           "replicate lmdb: warning: no sidecar\n"
           "replicate lmdb: error: db: record 7: not a Caffe Datum\n")
    assert fuzz.message_lines(err) == ["replicate lmdb: error: db: record 7: not a Caffe Datum"]


@pytest.mark.parametrize("mutate", [fuzz.mutate_bytes, fuzz.mutate_npy, fuzz.mutate_mdb])
def test_mutations_are_seeded(mutate):
    import random
    data = (ROOT / "tests/fixtures/caffe/lmdb/train_lmdb/data.mdb").read_bytes()[:20000]
    assert mutate(data, random.Random(3)) == mutate(data, random.Random(3))
