"""The checker: provider choice (CUDA only when offered and actually granted), metric, report verdicts."""
import numpy as np
import pytest

from conftest import CAFFE
from convert import protoio
from convert.deploy import deploy_net
from convert.net import Net
from convert.onnx_check import CPU, CUDA, check_onnx, choose_providers, difference, open_session
from convert.onnx_direct import to_onnx


class FakeSession:
    """Stands in for onnxruntime.InferenceSession: records the request, grants what it is told to."""

    def __init__(self, granted):
        self.granted = granted

    def __call__(self, data, providers):
        self.requested = providers
        return self

    def get_providers(self):
        return self.granted


@pytest.mark.parametrize("available, expected", [
    (["CUDAExecutionProvider", "CPUExecutionProvider"], [CUDA, CPU]),
    (["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"], [CUDA, CPU]),
    (["AzureExecutionProvider", "CPUExecutionProvider"], [CPU]),
    (["CPUExecutionProvider"], [CPU]),
])
def test_provider_choice(available, expected):
    assert choose_providers(available) == expected


def test_session_reports_the_provider_it_got():
    gpu = FakeSession([CUDA, CPU])
    assert open_session(b"model", available=[CUDA, CPU], factory=gpu)[1] == CUDA
    assert gpu.requested == [CUDA, CPU]
    no_gpu = FakeSession([CPU])  # onnxruntime-gpu installed but no usable GPU: the session falls back
    assert open_session(b"model", available=[CUDA, CPU], factory=no_gpu)[1] == CPU
    cpu_only = FakeSession([CPU])
    assert open_session(b"model", available=[CPU], factory=cpu_only)[1] == CPU
    assert cpu_only.requested == [CPU]


def test_difference_is_relative_to_the_reference_maximum():
    ref = np.array([[1.0, -4.0], [2.0, 0.0]])
    assert difference(ref + [[0, 0], [0, 0.002]], ref) == pytest.approx((0.002, 0.0005))
    assert difference(np.zeros(3), np.zeros(3)) == (0.0, 0.0)
    assert difference(np.zeros(3), np.zeros(4))[1] == float("inf")


def test_report_flags_blobs_beyond_tolerance_and_uses_opencv():
    ref = dict(np.load(CAFFE / "blobs_caffenet_gray.npz"))
    deploy = deploy_net(protoio.read_net(CAFFE / "caffenet_gray.prototxt"), {"data": ref["data"].shape})
    weights = CAFFE / "weights" / "caffenet_gray_iter_0.caffemodel"
    net = Net(deploy)
    net.load_weights(weights)
    model = to_onnx(deploy, protoio.read_caffemodel(weights), outputs=["pool5", "fc8"])
    bad = dict(ref)
    bad["fc8"] = ref["fc8"] * 1.001
    report = check_onnx(model, net, {"data": ref["data"]}, opencv=(deploy, weights), reference=bad)
    assert report.runner == "onnxruntime CPUExecutionProvider"
    assert report.failed == ["fc8"] and not report.ok
    rows = {r.blob: r for r in report.rows}
    assert rows["pool5"].diffs["opencv_vs_f64"][1] <= rows["pool5"].bound
    assert rows["fc8"].diffs["float64"][1] <= rows["fc8"].bound
    assert rows["fc8"].diffs["reference_vs_f64"][1] > rows["fc8"].bound
    table = report.table()
    assert "CPUExecutionProvider" in table and "FAIL" in table.splitlines()[-1] and "fc8" in table.splitlines()[-1]
    fixed = check_onnx(model, net, {"data": ref["data"]}, opencv=(deploy, weights), reference=bad, tolerance=1e-5)
    fixed_rows = {r.blob: r for r in fixed.rows}
    assert fixed.failed == ["fc8"] and fixed_rows["pool5"].diffs["opencv"][1] <= 1e-5
    assert fixed_rows["fc8"].diffs["pytorch"][1] <= 1e-5 and fixed_rows["fc8"].diffs["reference"][1] > 1e-5


def test_float64_rule_tells_summation_order_from_wrong_semantics():
    """A deep-net-sized float32 error passes when ours is as large; a semantic error of the same size fails."""
    from convert.onnx_check import FACTOR, FLOOR, Row
    noisy = Row("b", (1,), {"float64": (0, 3e-5), "ours_f32_vs_f64": (0, 2e-5)}, None, ("float64",))
    assert noisy.ok and noisy.bound == FACTOR * 2e-5
    wrong = Row("b", (1,), {"float64": (0, 3e-5), "ours_f32_vs_f64": (0, 1e-8)}, None, ("float64",))
    assert not wrong.ok and wrong.bound == FACTOR * FLOOR
    fixed = Row("b", (1,), {"pytorch": (0, 3e-5)}, 1e-5)
    assert not fixed.ok and fixed.bound == 1e-5
