"""Run every benchmark (benchmarks/bench_*.py) one after the other with its default settings: `make bench`.

Usage: .venv/bin/python benchmarks/run_all.py [--only NAME ...] [--skip NAME ...]
NAME is the part after `bench_` (e.g. fitters). Each script prints its own Markdown lines for its
section of benchmarks/RESULTS.md; copy them there with the date and the commit. Scripts that need a
scratch store get a temporary one. Benchmarks are timed on a shared machine: run them when it is idle.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
NEEDS_STORE = {"objects_learnability"}   # trains nets: give it a scratch results store


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", default=[], metavar="NAME")
    parser.add_argument("--skip", nargs="+", default=[], metavar="NAME")
    args = parser.parse_args()
    scripts = sorted(HERE.glob("bench_*.py"))
    names = [p.stem.removeprefix("bench_") for p in scripts]
    unknown = [n for n in args.only + args.skip if n not in names]
    if unknown:
        print(f"run_all: unknown benchmark(s) {unknown}; expected any of {', '.join(names)}", file=sys.stderr)
        return 2
    failed = []
    for script, name in zip(scripts, names):
        if (args.only and name not in args.only) or name in args.skip:
            continue
        print(f"\n## {name} ({script.name})", flush=True)
        started = time.time()
        with tempfile.TemporaryDirectory() as scratch:
            extra = ["--store", scratch] if name in NEEDS_STORE else []
            code = subprocess.call([sys.executable, str(script), *extra])
        print(f"({name}: exit {code}, {time.time() - started:.0f} s)", flush=True)
        if code:
            failed.append(name)
    if failed:
        print(f"run_all: failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
