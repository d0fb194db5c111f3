"""Check a converted model: run it (ONNX Runtime for ONNX), compare every output blob with our
PyTorch Net, with OpenCV's Caffe importer (where it loads the net) and with a fixture .npz.

Metric per blob (the project's, as for the real-Caffe fixtures): max |a - b| and
max |a - b| / max |b|.

Default rule (float64): the exact reference is our Net run in float64 on the same weights and
inputs. A float32 implementation (the converted model, OpenCV, a fixture) passes a blob when its
relative difference from float64 is at most FACTOR (4) times that of our own float32 run, with a
floor of FLOOR (1e-6, a few float32 roundings) for blobs our float32 run gets almost exactly right:
  |candidate - f64| / max|f64| <= 4 * max(|ours_f32 - f64| / max|f64|, 1e-6).
Deep nets thus pass when their float32 summation order differs (ResNet-152: ~1e-4 either way) and
fail when the semantics differ (an error many times float32's own). With a fixed tolerance
(`tolerance=T`, the CLI's --tolerance) the old rule applies instead: every relative difference
of the candidate from our float32 net, OpenCV and the fixture must be at most T.
ONNX Runtime runs on the CUDA provider when onnxruntime-gpu is installed and a GPU is present (the
session really gets it), on the CPU provider otherwise; the report says which one ran.
"""
from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

import numpy as np
import onnx
import torch
from google.protobuf import text_format

from convert import caffe_pb2 as pb
from convert.layers.base import POOLING_CAFFE
from convert.net import Net, numpy_blobs

CUDA, CPU = "CUDAExecutionProvider", "CPUExecutionProvider"
DEFAULT_TOLERANCE = 1e-5   # the fixed rule (--tolerance)
FACTOR = 4.0              # float64 rule: how much further from float64 than our float32 run
FLOOR = 1e-6              # float64 rule: our float32 error counted as at least this


def choose_providers(available: Sequence[str]) -> list[str]:
    """CUDA first when onnxruntime offers it (onnxruntime-gpu), always CPU as the fallback."""
    return [CUDA, CPU] if CUDA in available else [CPU]


def open_session(model: onnx.ModelProto | bytes, available: Sequence[str] | None = None,
                 factory: Callable | None = None):
    """An InferenceSession on the best provider, and the provider it actually got."""
    import onnxruntime as ort
    available = ort.get_available_providers() if available is None else available
    factory = factory or ort.InferenceSession
    data = model if isinstance(model, bytes) else model.SerializeToString()
    session = factory(data, providers=choose_providers(available))
    return session, session.get_providers()[0]  # CUDA can fail to initialise; onnxruntime then uses CPU


def run_onnx(model: onnx.ModelProto | bytes, inputs: Mapping[str, np.ndarray]) -> tuple[dict[str, np.ndarray], str]:
    """Every graph output of the model on the inputs, and the provider that ran."""
    session, provider = open_session(model)
    names = [o.name for o in session.get_outputs()]
    feeds = {i.name: np.ascontiguousarray(inputs[i.name], dtype=np.float32) for i in session.get_inputs()}
    return dict(zip(names, session.run(names, feeds))), provider


def difference(ours: np.ndarray, ref: np.ndarray) -> tuple[float, float]:
    """(max |ours - ref|, that divided by max |ref|); shapes must agree (inf otherwise)."""
    ours, ref = np.asarray(ours, np.float64), np.asarray(ref, np.float64)
    if ours.shape != ref.shape:
        return float("inf"), float("inf")
    if ours.size == 0:
        return 0.0, 0.0
    abs_diff = float(np.abs(ours - ref).max())
    scale = float(np.abs(ref).max())
    return abs_diff, abs_diff / (scale if scale > 0 else 1.0)


def opencv_blobs(deploy: pb.NetParameter, caffemodel: str | os.PathLike, inputs: Mapping[str, np.ndarray],
                 blobs: Sequence[str]) -> dict[str, np.ndarray] | str:
    """The blobs as OpenCV's Caffe importer computes them, or why it cannot ("n/a: ...").

    OpenCV names outputs by layer: a blob's final value is the output of the last layer writing it
    (only a layer's first top is reachable).
    """
    import cv2
    last_writer: dict[str, tuple[str, int]] = {}
    for lp in deploy.layer:
        for i, top in enumerate(lp.top):
            last_writer[top] = (lp.name, i)
    with tempfile.TemporaryDirectory() as tmp:
        proto = os.path.join(tmp, "deploy.prototxt")
        with open(proto, "w") as f:
            f.write(text_format.MessageToString(deploy))
        try:
            cvnet = cv2.dnn.readNetFromCaffe(proto, str(caffemodel))
        except cv2.error as e:
            return f"n/a: OpenCV cannot load the net ({_cv_message(e)})"
    if hasattr(cvnet, "enableWinograd"):  # Winograd 3x3 convolutions round several times more than direct ones
        cvnet.enableWinograd(False)
    for name, arr in inputs.items():
        cvnet.setInput(np.ascontiguousarray(arr, np.float32), name)
    wanted = [b for b in blobs if b in last_writer and last_writer[b][1] == 0 and b not in inputs]
    try:
        values = cvnet.forward([last_writer[b][0] for b in wanted])
    except cv2.error as e:
        return f"n/a: OpenCV cannot run the net ({_cv_message(e)})"
    return {b: np.asarray(v).reshape(v.shape) for b, v in zip(wanted, values)}


def _cv_message(error: Exception) -> str:
    """The reason in an OpenCV error, without its source location."""
    text = " ".join(str(error).split())
    return text.split(") ", 1)[-1].split("error: ", 1)[-1][:120]


@dataclass
class Row:
    """One checked blob: (max abs, relative) differences by name, None where n/a; `judged` names the
    ones held to `bound` (see the module docstring for the two rules)."""
    blob: str
    shape: tuple[int, ...]
    diffs: dict[str, tuple[float, float] | None]
    tolerance: float
    judged: tuple[str, ...] = ("pytorch", "opencv", "reference")

    @property
    def bound(self) -> float:
        """The largest relative difference that passes."""
        if self.tolerance is not None:
            return self.tolerance
        ours = self.diffs.get("ours_f32_vs_f64")
        return FACTOR * max(ours[1] if ours else 0.0, FLOOR)

    @property
    def ok(self) -> bool:
        return all(self.diffs.get(k) is None or self.diffs[k][1] <= self.bound for k in self.judged)


# Column titles of the diffs, in table order.
_TITLES = {"float64": "vs float64", "ours_f32_vs_f64": "ours f32 vs float64", "opencv_vs_f64": "opencv vs float64",
           "reference_vs_f64": "reference vs float64", "pytorch": "vs pytorch", "opencv": "vs opencv",
           "reference": "vs reference"}


@dataclass
class Report:
    """The check of one converted model."""
    runner: str                      # e.g. "onnxruntime CPUExecutionProvider"
    rows: list[Row]
    tolerance: float | None          # None: the float64 rule
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.rows)

    @property
    def failed(self) -> list[str]:
        return [r.blob for r in self.rows if not r.ok]

    @property
    def rule(self) -> str:
        """The pass criterion in words."""
        if self.tolerance is not None:
            return f"rule: relative difference from pytorch, opencv and reference <= {self.tolerance:g}"
        return (f"rule: relative difference from our float64 net <= {FACTOR:g} x max(ours f32 vs float64, "
                f"{FLOOR:g}) for the candidate, opencv and reference")

    def table(self) -> str:
        """One row per blob: shape, abs / rel difference per reference, the bound, verdict."""
        keys = [k for k in _TITLES if any(k in r.diffs for r in self.rows)]
        header = ["blob", "shape"] + [f"{_TITLES[k]} (abs / rel)" for k in keys] + ["bound", "verdict"]
        cell = lambda d: "n/a" if d is None else f"{d[0]:.2e} / {d[1]:.2e}"
        lines = [[r.blob, "x".join(map(str, r.shape))] + [cell(r.diffs.get(k)) for k in keys]
                 + [f"{r.bound:.1e}", "ok" if r.ok else f"FAIL > {r.bound:.1e}"] for r in self.rows]
        widths = [max(len(x[i]) for x in [header, *lines]) for i in range(len(header))]
        out = [f"ran on: {self.runner}", *self.notes, self.rule]
        out += ["  ".join(c.ljust(w) for c, w in zip(line, widths)).rstrip() for line in [header, *lines]]
        return "\n".join(out)


def float64_blobs(net: Net, inputs: Mapping[str, np.ndarray], blobs: Sequence[str]) -> dict[str, np.ndarray]:
    """The blobs from a float64 copy of the net (same weights, inputs cast up): the exact reference."""
    import copy
    net64 = copy.deepcopy(net).double()
    with torch.no_grad():
        return numpy_blobs(net64({k: torch.from_numpy(np.asarray(v, np.float64)) for k, v in inputs.items()},
                                 outputs=blobs))


def check_blobs(candidate: Mapping[str, np.ndarray], runner: str, net: Net, inputs: Mapping[str, np.ndarray], *,
                opencv: tuple[pb.NetParameter, str | os.PathLike] | None = None,
                reference: Mapping[str, np.ndarray] | None = None,
                tolerance: float | None = None) -> Report:
    """Compare the candidate's blobs with our PyTorch net (float32 and float64), OpenCV and a reference.

    tolerance None: the float64 rule; a number: the fixed rule (see the module docstring).
    """
    blobs = list(candidate)
    with torch.no_grad():
        ours = numpy_blobs(net({k: torch.from_numpy(np.asarray(v, np.float32)) for k, v in inputs.items()},
                               outputs=blobs))
    exact = float64_blobs(net, inputs, blobs) if tolerance is None else {}
    notes = []
    if net.ctx.pooling != POOLING_CAFFE:
        cv = f"n/a: OpenCV's Caffe importer sizes pooling as BVLC does, this net by the {net.ctx.pooling} rule"
    else:
        cv = opencv_blobs(opencv[0], opencv[1], inputs, blobs) if opencv else "n/a: no caffemodel given"
    if isinstance(cv, str):
        notes.append(f"opencv: {cv}")
        cv = {}
    rows = []
    for b in blobs:
        ref = reference.get(b) if reference is not None else None
        if tolerance is None:
            diffs = {"float64": difference(candidate[b], exact[b]),
                     "ours_f32_vs_f64": difference(ours[b], exact[b]),
                     "opencv_vs_f64": difference(cv[b], exact[b]) if b in cv else None,
                     "reference_vs_f64": difference(ref, exact[b]) if ref is not None else None}
            judged = ("float64", "opencv_vs_f64", "reference_vs_f64")
        else:
            diffs = {"pytorch": difference(candidate[b], ours[b]),
                     "opencv": difference(candidate[b], cv[b]) if b in cv else None,
                     "reference": difference(candidate[b], ref) if ref is not None else None}
            judged = ("pytorch", "opencv", "reference")
        rows.append(Row(b, tuple(np.shape(candidate[b])), diffs, tolerance, judged))
    return Report(runner, rows, tolerance, notes)


def check_onnx(model: onnx.ModelProto | bytes, net: Net, inputs: Mapping[str, np.ndarray], **kwargs) -> Report:
    """Run the model on ONNX Runtime and compare every output blob (see check_blobs)."""
    outputs, provider = run_onnx(model, inputs)
    return check_blobs(outputs, f"onnxruntime {provider}", net, inputs, **kwargs)
