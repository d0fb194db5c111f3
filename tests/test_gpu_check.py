"""benchmarks/gpu_check.py on the CPU with small sizes (slow tier): the prepared GPU run cannot rot."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.py"


def test_gpu_check_runs_every_section_on_the_cpu(tmp_path):
    done = subprocess.run([sys.executable, str(SCRIPT), "--device", "cpu", "--quick", "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    sections = report["sections"]
    assert set(sections) == {"fixtures", "real", "training", "maps"}
    for row in sections["fixtures"]["rows"]:
        assert row["ours_vs_caffe"] <= 1e-5 and row["onnx_vs_caffe"] <= 1e-5, row
    for row in sections["real"]["rows"]:
        assert row["ours_device_vs_f64"] <= row["bound"] and row["onnx_vs_f64"] <= row["bound"], row
    runners = {r["runner"]: r for r in sections["training"]["rows"]}
    assert all(r["images_per_second"] > 0 for r in runners.values()) and len(runners) == 4
    assert runners["plain torch.nn CaffeNet (fp32)"]["fc8_vs_fp32"] <= 1e-6
    assert runners["plain torch.nn CaffeNet (autocast-bf16)"]["fc8_vs_fp32"] > 1e-5   # bf16 leaves Caffe fidelity
    assert all(r["seconds"] > 0 for r in sections["maps"]["rows"])
    assert "gpu_check on" in (tmp_path / "gpu_check.md").read_text()


def test_gpu_check_without_cuda_is_one_line_and_exit_2(tmp_path):
    import torch
    if torch.cuda.is_available():
        pytest.skip("a GPU is visible")
    done = subprocess.run([sys.executable, str(SCRIPT), "--device", "cuda", "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1 and "no CUDA device" in done.stderr
