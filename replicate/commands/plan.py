"""`replicate plan`: the work of every experiment at a scale and, once calibrated, its hours (replicate/plan.py).

    replicate plan --scale paper                 # nets, iterations, images, maps per experiment and dataset
    replicate plan --scale paper --calibrate     # + hours from a short measurement on this machine's --device

A calibration is written to OUT/plan/<scale>/calibration-<dataset>-<device>.json and used by later plans
on the same --out (its host and date are in it and in the plan). The plan: OUT/plan/<scale>/plan.{md,json}.
"""
from __future__ import annotations

import argparse
import json
import socket
import time
from pathlib import Path

from convert.errors import UserError
from convert.protoio import atomic_write
from replicate import options

OPTIONS = ("dataset", "scale", "data_root", "device", "workers", "out", "quiet")
DEFAULT_ITERATIONS = 3   # timed solver iterations / forward batches per calibration (after one warm-up)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("plan", help="what each experiment costs at a scale: nets, images, maps, hours")
    options.add(p, OPTIONS)
    p.add_argument("--calibrate", action="store_true",
                   help="measure training, forward and map-fitting rates on this machine's --device first")
    p.add_argument("--iterations", type=int, default=DEFAULT_ITERATIONS,
                   help=f"timed iterations per calibration (default {DEFAULT_ITERATIONS})")
    p.set_defaults(func=run)


def calibration_path(out: Path, scale: str, dataset: str, device: str) -> Path:
    return out / "plan" / scale / f"calibration-{dataset}-{device}.json"


def calibrations(resolved: options.RunOptions, calibrate: bool, iterations: int) -> dict[str, dict]:
    """Each dataset's calibration: measured now (--calibrate) or read from an earlier run."""
    from replicate import plan
    from replicate.config import get_scale
    found = {}
    for dataset in resolved.datasets:
        path = calibration_path(resolved.out, resolved.scale, dataset, resolved.device)
        if calibrate:
            if resolved.progress:
                print(f"calibrating {dataset} at {resolved.scale} on {resolved.device} ...", flush=True)
            measured = plan.calibrate(get_scale(resolved.scale), dataset, resolved.device, iterations)
            measured.update(host=socket.gethostname(), date=time.strftime("%Y-%m-%d %H:%M"))
            atomic_write(path, (json.dumps(measured, indent=1) + "\n").encode())
            found[dataset] = measured
        elif path.exists():
            try:
                found[dataset] = json.loads(path.read_text())
            except ValueError as e:
                raise UserError(f"{path}: corrupt calibration ({e}); rerun with --calibrate") from None
    return found


def run(args: argparse.Namespace) -> int:
    from replicate import plan
    from replicate.config import get_scale
    from replicate.experiments.base import TRAINABLE
    datasets = options.check_names("dataset", args.dataset, TRAINABLE, TRAINABLE, "plan")
    if args.iterations < 1:
        raise UserError(f"--iterations {args.iterations}: expected at least 1")
    resolved = options.resolve(args, OPTIONS, datasets)
    scale = get_scale(resolved.scale)
    rows, totals, notes = plan.count(scale, list(datasets), resolved.data_root)
    measured = calibrations(resolved, args.calibrate, args.iterations)
    table = []
    for (name, dataset), cost in [*rows.items(), *(((("total", d), c)) for d, c in totals.items())]:
        h = plan.hours(cost, measured[dataset]) if dataset in measured else None
        table.append({"experiment": name, "dataset": dataset, **plan.as_json(cost),
                      "worker_hours": None if h is None else {k: round(v, 3) for k, v in h.items()},
                      "wall_hours": None if h is None else round(h["total"] / resolved.workers, 3)})
    body = {"config": {**resolved.record(), "calibrate": args.calibrate, "iterations": args.iterations},
            "scale": scale.name, "notes": notes, "rows": table, "calibration": measured,
            "host": socket.gethostname(), "date": time.strftime("%Y-%m-%d %H:%M")}
    folder = resolved.out / "plan" / scale.name
    text = "\n".join(markdown(body, resolved.workers)) + "\n"
    atomic_write(folder / "plan.json", (json.dumps(body, indent=1) + "\n").encode())
    atomic_write(folder / "plan.md", text.encode())
    print(text + f"\nwritten: {folder / 'plan.md'}, {folder / 'plan.json'}")
    return 0


def markdown(body: dict, workers: int) -> list[str]:
    """The plan as a Markdown table, with its calibration and assumptions."""
    lines = [f"# Plan: `{body['scale']}` scale", "",
             "| experiment | dataset | nets trained | finetuned | iterations | train images | forward images | maps | "
             f"worker hours | wall hours ({workers} worker{'s' * (workers > 1)}) |", "|" + "---|" * 10]
    for r in body["rows"]:
        hours = r["worker_hours"]
        lines.append(f"| {'**total**' if r['experiment'] == 'total' else r['experiment']} | {r['dataset']} | "
                     f"{r['nets']} | {r['finetuned']} | {r['iterations']:.3g} | {r['train_images']:.3g} | {r['forward_images']:.3g} | "
                     f"{r['maps']} | {'—' if hours is None else _h(hours['total'])} | "
                     f"{'—' if hours is None else _h(r['wall_hours'])} |")
    lines += ["", "Totals count a job several experiments share once (the store computes it once)."]
    for dataset, c in body["calibration"].items():
        lines.append(f"- calibration {dataset}: {c['train_images_per_second']} training / "
                     f"{c['forward_images_per_second']} forward images/s, a {c['map']['dim']}-d map of "
                     f"{c['map']['samples'][-1]} samples in {c['map']['seconds'][-1]} s; {c['device']} of "
                     f"{c['host']}, {c['date']}, torch {c['torch']}, {c['threads']} threads")
    missing = [r["dataset"] for r in body["rows"] if r["worker_hours"] is None]
    if missing:
        lines.append(f"- no calibration for {', '.join(sorted(set(missing)))}: rerun with --calibrate for hours")
    lines += [f"- {note}" for note in body["notes"]]
    return lines


def _h(hours: float) -> str:
    """Hours, readable at every size (days beyond 48 h)."""
    return f"{hours:.2f} h" if hours < 48 else f"{hours / 24:.1f} d"
