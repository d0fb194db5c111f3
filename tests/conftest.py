"""Shared test fixtures: paths to the real-Caffe golden files copied into tests/fixtures/."""
from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures"
CAFFE = FIXTURES / "caffe"
REAL_MODELS = FIXTURES / "real_models"


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread for small tensors: on a loaded 2-core box a 2-thread op mostly waits for its partner."""
    import torch
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def caffe_dir() -> Path:
    """The real-Caffe fixture directory (read-only by convention: copy before writing)."""
    return CAFFE


def rel_err(ours, ref) -> float:
    """The project's metric against Caffe: max|ours - ref| / max|ref|."""
    import numpy as np
    ours, ref = np.asarray(ours, dtype=np.float64), np.asarray(ref, dtype=np.float64)
    assert ours.shape == ref.shape, (ours.shape, ref.shape)
    scale = np.abs(ref).max()
    return float(np.abs(ours - ref).max() / (scale if scale > 0 else 1.0))


@pytest.fixture(scope="session")
def table3_smoke(tmp_path_factory) -> Path:
    """`replicate table3 --scale smoke` with the local executor, both datasets: the reference other runs must equal."""
    from replicate import cli
    out = tmp_path_factory.mktemp("table3")
    assert cli.main(["table3", "--scale", "smoke", "--out", str(out), "--quiet"]) == 0
    return out
