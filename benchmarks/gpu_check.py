"""Issue 17: the GPU path in one prepared run of a few minutes; one JSON and one Markdown summary.

Run on a lent GPU:  .venv/bin/python benchmarks/gpu_check.py --device cuda --out /tmp/gpu_check
In the slow tier:   .venv/bin/python benchmarks/gpu_check.py --device cpu --quick --out DIR  (so it cannot rot)
ONNX Runtime's CUDA provider needs `pip install onnxruntime-gpu` (the `gpu` extra); without it the ONNX
rows run on the CPU provider and say so.

Sections (each timed; a failing section is recorded with its error and the others still run):
  fixtures  the real-Caffe fixture nets (caffenet_color, caffenet_gray, zoo) from their caffemodels: our Net
            on --device and ONNX Runtime (the provider it got) against Caffe's blobs, max over blobs of
            max|ours - caffe| / max|caffe| (the project's 1e-5 rule)
  real      AlexNet, GoogLeNet, ResNet-50 deploy nets with filler weights, batch 1: our Net on --device and
            ONNX Runtime against our Net in float64 on the CPU (the float64 rule of convert/onnx_check.py)
  training  the paper's ILSVRC CaffeNet (227 px, batch 256; --quick: RVL-CDIP, batch 32) through our Solver
            and Data layer on a synthetic LMDB (replicate.plan.synthetic_data): images/s; beside it a plain
            torch.nn CaffeNet at the same batch in fp32, channels_last, and autocast (bf16 on CUDA), with
            each variant's fc8 deviation from the same weights in fp32 on one batch (Caffe fidelity needs <= 1e-5:
            fp32 keeps it; channels_last reorders sums; bf16 autocast does not)
  maps      the fast fitter: one 4096-d equivariance map on 40,000 samples and 35 distance maps of one
            source net batched (fit_fast_many); --quick: 256-d on 2,048 samples, 5 targets
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
from bench_solver import reference_caffenet   # noqa: E402

from convert import protoio   # noqa: E402
from convert.deploy import deploy_net, input_shapes_of   # noqa: E402
from convert.net import Net, numpy_blobs   # noqa: E402
from convert.onnx_check import difference, float64_blobs, run_onnx   # noqa: E402
from convert.onnx_direct import to_onnx   # noqa: E402
from convert.protoio import atomic_write   # noqa: E402

CAFFE = ROOT / "tests" / "fixtures" / "caffe"
REAL = ROOT / "tests" / "fixtures" / "real_models"
FIXTURES = {"caffenet_color": "caffenet_color_iter_0", "caffenet_gray": "caffenet_gray_iter_0", "zoo": "zoo_iter_3"}
REAL_MODELS = ("alexnet", "googlenet", "resnet50")


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def run_net(net: Net, inputs: dict[str, np.ndarray], blobs: list[str], device: str) -> dict[str, np.ndarray]:
    with torch.no_grad():
        return numpy_blobs(net({k: torch.from_numpy(v).to(device) for k, v in inputs.items()}, outputs=blobs))


def fixtures(device: str, quick: bool) -> list[dict]:
    rows = []
    for name, weights in FIXTURES.items():
        ref = dict(np.load(CAFFE / f"blobs_{name}.npz"))
        deploy = deploy_net(protoio.read_net(CAFFE / f"{name}.prototxt"), {"data": ref["data"].shape})
        blobs = [b for b in ref if b != "data"]
        net = Net(deploy).to(device)
        net.load_weights(CAFFE / "weights" / f"{weights}.caffemodel")
        ours = run_net(net, {"data": ref["data"]}, blobs, device)
        onnx_out, provider = run_onnx(to_onnx(deploy, protoio.read_caffemodel(CAFFE / "weights" / f"{weights}.caffemodel"),
                                              outputs=blobs), {"data": ref["data"]})
        rows.append({"net": name, "blobs": len(blobs), "ours_vs_caffe": max(difference(ours[b], ref[b])[1] for b in blobs),
                     "onnx_vs_caffe": max(difference(onnx_out[b], ref[b])[1] for b in blobs), "provider": provider})
    return rows


def real_models(device: str, quick: bool) -> list[dict]:
    rows = []
    for name in REAL_MODELS:
        deploy = deploy_net(protoio.read_net(REAL / f"{name}_deploy.prototxt"))
        shape = input_shapes_of(deploy)["data"]
        deploy = deploy_net(deploy, {"data": (1,) + tuple(shape[1:])})
        net = Net(deploy, seed=0)
        weights = {lp.name: layer.blob_arrays() for lp, layer in net.named_layers() if layer.blob_names}
        inputs = {"data": np.random.default_rng(0).standard_normal((1,) + tuple(shape[1:])).astype(np.float32)}
        output = deploy.layer[-1].top[0]
        exact = float64_blobs(net, inputs, [output])[output]
        cpu32 = run_net(net, inputs, [output], "cpu")[output]
        ours = run_net(net.to(device), inputs, [output], device)[output]
        onnx_out, provider = run_onnx(to_onnx(deploy, weights), inputs)
        bound = 4 * max(difference(cpu32, exact)[1], 1e-6)   # the float64 rule (convert/onnx_check.py)
        rows.append({"net": name, "blob": output, "ours_cpu_f32_vs_f64": difference(cpu32, exact)[1],
                     "ours_device_vs_f64": difference(ours, exact)[1],
                     "onnx_vs_f64": difference(next(iter(onnx_out.values())), exact)[1], "bound": bound,
                     "provider": provider})
    return rows


def training(device: str, quick: bool) -> list[dict]:
    from replicate import plan
    from replicate.config import get_scale
    scale, dataset = get_scale("paper"), "rvl-cdip" if quick else "ilsvrc"
    iterations = 2 if quick else 200
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp:
        data = plan.synthetic_data(Path(tmp), scale, dataset)
        ours, batch = plan.train_rate(Path(tmp), scale, dataset, data, device, iterations)
    rows = [{"runner": "our Solver + Net + Data layer (fp32)", "batch": batch, "iterations": iterations,
             "images_per_second": ours, "fc8_vs_fp32": 0.0}]
    channels, classes = (1, 16) if dataset == "rvl-cdip" else (3, 1000)
    x = torch.randn(batch, channels, 227, 227, device=device)
    y = torch.randint(0, classes, (batch,), device=device)
    amp = torch.bfloat16   # autocast's half type on both devices (fp16 would need a gradient scaler)
    for variant in ("fp32", "channels_last", "autocast-bf16"):
        torch.manual_seed(0)
        model = reference_caffenet(classes)
        model[0] = torch.nn.Conv2d(channels, 96, 11, 4)
        model = model.to(device).train()
        inputs = x
        if variant == "channels_last":
            model, inputs = model.to(memory_format=torch.channels_last), x.to(memory_format=torch.channels_last)
        optimiser = torch.optim.SGD(model.parameters(), lr=0.001, momentum=0.9)

        def step():
            optimiser.zero_grad()
            with torch.autocast(device, dtype=amp, enabled=variant.startswith("autocast")):
                loss = torch.nn.functional.cross_entropy(model(inputs), y)
            loss.backward()
            optimiser.step()
        step()
        sync(device)
        started = time.perf_counter()
        for _ in range(iterations):
            step()
        sync(device)
        seconds = time.perf_counter() - started
        model.eval()
        with torch.no_grad():
            torch.manual_seed(0)
            base = reference_caffenet(classes)
            base[0] = torch.nn.Conv2d(channels, 96, 11, 4)
            base.load_state_dict(model.state_dict())
            base = base.to(device).eval()
            with torch.autocast(device, dtype=amp, enabled=variant.startswith("autocast")):
                out = model(inputs).float()
            deviation = difference(out.cpu().numpy(), base(x).float().cpu().numpy())[1]
        rows.append({"runner": f"plain torch.nn CaffeNet ({variant})", "batch": batch, "iterations": iterations,
                     "images_per_second": round(iterations * batch / seconds, 2), "fc8_vs_fp32": deviation})
    return rows


def maps(device: str, quick: bool) -> list[dict]:
    from replicate.measure.fitters import fit_fast, fit_fast_many
    dim, samples, targets = (256, 2048, 5) if quick else (4096, 40_000, 35)
    generator = torch.Generator().manual_seed(0)
    x = torch.relu(torch.randn(samples, dim, generator=generator)).to(device)
    ys = [torch.relu(x + 0.1 * torch.randn(samples, dim, generator=generator).to(device)) for _ in range(targets)]
    rows = []
    for what, fit in (("one equivariance map", lambda: fit_fast(x, ys[0])),
                      (f"{targets} distance maps of one source", lambda: fit_fast_many(x, ys))):
        sync(device)
        started = time.perf_counter()
        fit()
        sync(device)
        rows.append({"fit": what, "dim": dim, "samples": samples, "seconds": round(time.perf_counter() - started, 3)})
    return rows


SECTIONS = {"fixtures": fixtures, "real": real_models, "training": training, "maps": maps}


def environment(device: str) -> dict:
    import onnxruntime
    gpu = torch.cuda.get_device_name(0) if device == "cuda" else None
    return {"device": device, "gpu": gpu, "cpu": platform.processor() or platform.machine(), "torch": torch.__version__,
            "onnxruntime": onnxruntime.__version__, "providers": onnxruntime.get_available_providers(),
            "python": platform.python_version(), "date": time.strftime("%Y-%m-%d %H:%M")}


def markdown(report: dict) -> str:
    env = report["environment"]
    lines = [f"# gpu_check on {env['gpu'] or env['cpu']} ({env['device']})", "",
             f"torch {env['torch']}, onnxruntime {env['onnxruntime']} ({', '.join(env['providers'])}), {env['date']}", ""]
    for name, section in report["sections"].items():
        lines += [f"## {name} ({section['seconds']} s)", ""]
        if "error" in section:
            lines += [f"failed: {section['error']}", ""]
            continue
        keys = list(section["rows"][0])
        lines += ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
        lines += ["| " + " | ".join(f"{v:.2e}" if isinstance(v, float) and v < 1e-2 else str(v) for v in row.values())
                  + " |" for row in section["rows"]]
        lines.append("")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", choices=["cpu", "cuda"])
    parser.add_argument("--quick", action="store_true", help="small sizes (the slow test tier)")
    parser.add_argument("--only", nargs="+", choices=list(SECTIONS), default=list(SECTIONS))
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        print(f"gpu_check: --device cuda: no CUDA device is visible to torch {torch.__version__}", file=sys.stderr)
        return 2
    report = {"environment": environment(args.device), "quick": args.quick, "sections": {}}
    for name in args.only:
        started = time.perf_counter()
        try:
            section = {"rows": SECTIONS[name](args.device, args.quick)}
        except Exception as e:   # record it; the other sections still run
            section = {"error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()}
        section["seconds"] = round(time.perf_counter() - started, 1)
        report["sections"][name] = section
        print(f"gpu_check: {name} {'failed' if 'error' in section else 'done'} in {section['seconds']} s", flush=True)
    atomic_write(args.out / "gpu_check.json", (json.dumps(report, indent=1, default=str) + "\n").encode())
    atomic_write(args.out / "gpu_check.md", (markdown(report) + "\n").encode())
    print(markdown(report))
    return 1 if any("error" in s for s in report["sections"].values()) else 0


if __name__ == "__main__":
    sys.exit(main())
