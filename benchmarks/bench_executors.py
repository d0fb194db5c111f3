"""Issue 14: the Ray executor's overhead against the local pool on Table 3 (the same nets on the same workers).

Run: .venv/bin/python benchmarks/bench_executors.py [--scale smoke|mini] [--workers 2] [--repeats 1]
Each repeat runs `replicate table3 --scale S --workers N` once per executor (local first, then ray) from
a fresh store holding only the embedded data (generated once beforehand and copied in, so data
generation is not timed), and a second time on the finished store (what a rerun costs: for Ray, starting
the local instance). The Ray wall time includes starting and stopping its local instance. It checks that
both executors' tables are identical, and prints Markdown rows for benchmarks/RESULTS.md.
"""
from __future__ import annotations

import argparse
import contextlib
import csv
import os
import shutil
import socket
import tempfile
import time
from pathlib import Path

from replicate import cli

EXECUTORS = ("local", "ray")


def table3(out: Path, scale: str, workers: int, executor: str) -> float:
    """Wall seconds of one `replicate table3` run."""
    started = time.perf_counter()
    with open(os.devnull, "w") as quiet, contextlib.redirect_stdout(quiet):   # the table's report
        code = cli.main(["table3", "--scale", scale, "--workers", str(workers), "--executor", executor,
                         "--out", str(out), "--quiet"])
    if code != 0:
        raise SystemExit(f"bench_executors: table3 with --executor {executor} exited {code}")
    return time.perf_counter() - started


def rows(out: Path, scale: str) -> list[dict]:
    with open(out / "table3" / scale / "table3.csv", newline="") as f:
        return list(csv.DictReader(f))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", default="smoke", choices=["smoke", "mini"])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-executors-") as scratch:
        template = Path(scratch) / "template"
        from replicate.config import get_scale
        from replicate.experiment_data import data_for
        from replicate.store import Store
        for dataset in ("rvl-cdip", "ilsvrc"):
            data_for(dataset, get_scale(args.scale), Store(template / "store"), None, progress=False)
        print(f"| scale | repeat | executor | workers | first run (s) | rerun (s) | host |")
        print("|---|---|---|---|---|---|---|")
        tables, first = {}, {e: [] for e in EXECUTORS}
        for repeat in range(args.repeats):
            for executor in EXECUTORS:
                out = Path(scratch) / f"{executor}-{repeat}"
                shutil.copytree(template, out)
                seconds = table3(out, args.scale, args.workers, executor)
                again = table3(out, args.scale, args.workers, executor)
                tables[executor] = rows(out, args.scale)
                first[executor].append(seconds)
                print(f"| {args.scale} | {repeat + 1} | {executor} | {args.workers} | {seconds:.1f} | {again:.1f} | "
                      f"{socket.gethostname()} |", flush=True)
                shutil.rmtree(out)
        assert tables["local"] == tables["ray"], "the executors' tables differ"
        local, ray = (sum(first[e]) / len(first[e]) for e in EXECUTORS)
        print(f"\nRay overhead at {args.scale}: {ray - local:+.1f} s on {local:.1f} s ({100 * (ray - local) / local:+.1f}%);"
              " tables identical")


if __name__ == "__main__":
    main()
