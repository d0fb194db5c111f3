"""CaffeNet (ILSVRC, 227) inference on CPU: ONNX Runtime (direct-route model) vs our PyTorch Net, images/s.

    .venv/bin/python benchmarks/bench_onnx.py [--batches 1,16] [--seconds 5] [--threads N]

Same weights in both (our Net's fillers, seed 0); the script checks ORT's prob is within 1e-5 of the
Net's before timing. Each measurement: 2 warm-up runs, then repeated runs for at least --seconds; the
median run time gives images/s. Our PyTorch Net is the reference run in the same process.
Prints Markdown lines for the `## onnx` section of benchmarks/RESULTS.md.
"""
from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from convert import protoio
from convert.deploy import deploy_net
from convert.net import Net
from convert.onnx_check import difference
from convert.onnx_direct import to_onnx

PROTOTXT = Path(__file__).resolve().parents[1] / "prototxt" / "caffenet_ilsvrc_deploy.prototxt"


def median_seconds(fn, seconds: float) -> float:
    """Median wall time of fn() over repeated runs lasting at least `seconds` (after 2 warm-ups)."""
    fn(), fn()
    times, start = [], time.perf_counter()
    while time.perf_counter() - start < seconds or len(times) < 3:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "?"


def timing_setup(doc: str) -> tuple[argparse.Namespace, ort.SessionOptions]:
    """The timing options (--batches, --seconds, --threads) parsed, torch and ONNX Runtime set to the threads."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--batches", default="1,16")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    options = ort.SessionOptions()
    options.intra_op_num_threads = args.threads
    return args, options


def main() -> None:
    args, options = timing_setup(__doc__)
    print(f"# {cpu_model()}, nproc {os.cpu_count()}, threads {args.threads}, torch {torch.__version__}, "
          f"onnxruntime {ort.__version__}, {datetime.date.today()}")
    print("| batch | our PyTorch Net (reference) | ONNX Runtime CPU | ratio |")
    print("|---|---|---|---|")
    for batch in (int(b) for b in args.batches.split(",")):
        deploy = deploy_net(protoio.read_net(PROTOTXT), {"data": (batch, 3, 227, 227)})
        net = Net(deploy, seed=0).eval()
        weights = {lp.name: layer.blob_arrays() for lp, layer in net.named_layers() if layer.blob_names}
        model = to_onnx(deploy, weights, outputs=["prob"])
        session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
        x = np.random.default_rng(0).standard_normal((batch, 3, 227, 227)).astype(np.float32)
        xt = torch.from_numpy(x)
        with torch.no_grad():
            ours = net(xt, outputs=["prob"])["prob"].numpy()
        theirs = session.run(["prob"], {"data": x})[0]
        assert difference(theirs, ours)[1] <= 1e-5, "ONNX Runtime and the Net disagree"

        def run_torch():
            with torch.no_grad():
                net(xt, outputs=["prob"])

        t_torch = median_seconds(run_torch, args.seconds)
        t_ort = median_seconds(lambda: session.run(["prob"], {"data": x}), args.seconds)
        print(f"| {batch} | {batch / t_torch:,.1f} img/s | {batch / t_ort:,.1f} img/s | {t_torch / t_ort:.2f}x |",
              flush=True)


if __name__ == "__main__":
    main()
