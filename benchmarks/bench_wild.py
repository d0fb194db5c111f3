"""Old Caffe models from the wild: conversion time and CPU inference, ONNX Runtime vs our PyTorch Net.

    .venv/bin/python benchmarks/bench_wild.py [--batches 1,16] [--seconds 5] [--threads N]

Nets: MobileNet v2 (tests/fixtures/wild/mobilenet_v2.prototxt) and ResNet-50
(tests/fixtures/real_models/resnet50_deploy.prototxt), 224x224, random weights (our fillers, seed 0,
BatchNorm statistics randomised as in tests/test_net_opencv.py). Conversion time: `to_onnx` plus
serialising the model, median of 3. Inference: after 2 warm-ups, repeated runs for at least --seconds;
the median run gives wall images/s, and the run's process CPU time (all threads) gives images per
CPU-second, which is what to compare on a shared machine. ORT's output is checked against the Net's
(float64 rule, convert.onnx_check) before timing. Prints Markdown for the `## wild` section of benchmarks/RESULTS.md.
"""
from __future__ import annotations

import datetime
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests"), str(Path(__file__).parent)]

from bench_onnx import cpu_model, timing_setup  # noqa: E402
from convert import protoio  # noqa: E402
from convert.deploy import deploy_net  # noqa: E402
from convert.net import Net  # noqa: E402
from convert.onnx_check import check_blobs  # noqa: E402
from convert.onnx_direct import to_onnx  # noqa: E402
from test_net_opencv import randomize_unfilled  # noqa: E402

NETS = {"MobileNet v2": ROOT / "tests" / "fixtures" / "wild" / "mobilenet_v2.prototxt",
        "ResNet-50": ROOT / "tests" / "fixtures" / "real_models" / "resnet50_deploy.prototxt"}


def timed(fn, seconds: float) -> tuple[float, float]:
    """Median (wall, process CPU) seconds of fn() over runs lasting at least `seconds`, after 2 warm-ups."""
    fn(), fn()
    walls, cpus, start = [], [], time.perf_counter()
    while time.perf_counter() - start < seconds or len(walls) < 3:
        w, c = time.perf_counter(), time.process_time()
        fn()
        walls.append(time.perf_counter() - w)
        cpus.append(time.process_time() - c)
    return statistics.median(walls), statistics.median(cpus)


def main() -> None:
    args, options = timing_setup(__doc__)
    print(f"# {cpu_model()}, nproc {os.cpu_count()}, threads {args.threads}, torch {torch.__version__}, "
          f"onnxruntime {ort.__version__}, {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC, "
          f"load average {os.getloadavg()[0]:.1f}")
    print("| net | batch | conversion (to_onnx + serialise) | our Net: img/s wall / per CPU-s | "
          "ONNX Runtime CPU: img/s wall / per CPU-s | ORT speed-up (wall / CPU) |")
    print("|---|---|---|---|---|---|")
    for name, prototxt in NETS.items():
        for batch in (int(b) for b in args.batches.split(",")):
            deploy = deploy_net(protoio.read_net(prototxt), {"data": (batch, 3, 224, 224)})
            net = Net(deploy, seed=0).eval()
            randomize_unfilled(net, seed=1)
            weights = {lp.name: layer.blob_arrays() for lp, layer in net.named_layers() if layer.blob_names}
            out = list(net.output_blobs)
            convert_times = []
            for _ in range(3):
                t0 = time.perf_counter()
                model = to_onnx(deploy, weights, outputs=out).SerializeToString()
                convert_times.append(time.perf_counter() - t0)
            session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
            x = np.random.default_rng(0).standard_normal((batch, 3, 224, 224)).astype(np.float32)
            xt = torch.from_numpy(x)
            theirs = dict(zip(out, session.run(out, {"data": x})))
            report = check_blobs(theirs, "onnxruntime CPU", net, {"data": x})
            assert report.ok, report.table()

            def run_torch():
                with torch.no_grad():
                    net(xt, outputs=out)

            tw, tc = timed(run_torch, args.seconds)
            ow, oc = timed(lambda: session.run(out, {"data": x}), args.seconds)
            print(f"| {name} | {batch} | {statistics.median(convert_times):.2f} s | {batch / tw:,.1f} / "
                  f"{batch / tc:,.1f} | {batch / ow:,.1f} / {batch / oc:,.1f} | {tw / ow:.2f}x / {tc / oc:.2f}x |",
                  flush=True)
    print(f"# load average at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
